#include "tapegrad/nn/training/gradient_flow.hpp"

#include <cmath>
#include <string>

#include "tapegrad/autograd/tape.hpp"
#include "tapegrad/ops/shape.hpp"

namespace tapegrad::nn {

TracedSequence run_traced(const RecurrentCell& cell, const Tensor& x, const State& s0) {
  if (!x.defined() || x.rank() != 3 || x.size(0) == 0 || x.size(2) != cell.input_size())
    throw Error("run_traced(" + cell.kind() + "): input x is " + shape_str(x) +
                ", expected a non-empty sequence (T, B, " + std::to_string(cell.input_size()) + ")");
  const std::size_t T = x.size(0), B = x.size(1), I = x.size(2);
  State s = s0.h.defined() ? s0 : cell.initial_state(B);
  cell.check_state(s, B);
  const Tensor xp = cell.project(reshape(x, {T * B, I}));
  TracedSequence seq;
  std::vector<Tensor> hs(T);
  for (std::size_t t = 0; t < T; ++t) {
    s = cell.step_projected(slice(xp, 0, t * B, (t + 1) * B), s);
    seq.states.push_back(s);
    hs[t] = s.h;
  }
  seq.outputs = reshape(concat(hs, 0), {T, B, cell.hidden_size()});
  seq.last = s;
  return seq;
}

namespace {

double norm_of(const Tensor& g, NormOver over) {
  const std::vector<double> v = g.to_vector();
  if (over == NormOver::batch || g.rank() < 2 || g.size(0) == 0) {
    double sum = 0;
    for (double x : v) sum += x * x;
    return std::sqrt(sum);
  }
  const std::size_t rows = g.size(0), cols = v.size() / rows;
  double mean = 0;
  for (std::size_t r = 0; r < rows; ++r) {
    double sum = 0;
    for (std::size_t j = 0; j < cols; ++j) sum += v[r * cols + j] * v[r * cols + j];
    mean += std::sqrt(sum) / double(rows);
  }
  return mean;
}

}  // namespace

GradientFlow gradient_norms_over_time(const Tensor& loss, const std::vector<State>& states, NormOver norm) {
  if (!loss.defined() || loss.numel() != 1)
    throw Error("gradient_norms_over_time: the loss must be a scalar, got " +
                (loss.defined() ? loss.shape().str() : std::string("an undefined tensor")));
  if (states.empty()) throw Error("gradient_norms_over_time: no states (a run of T = 0 steps)");
  const bool with_c = states[0].c.defined();
  std::vector<Tensor> xs;
  for (std::size_t t = 0; t < states.size(); ++t) {
    if (!states[t].h.defined() || states[t].c.defined() != with_c)
      throw Error("gradient_norms_over_time: state " + std::to_string(t) + " has " +
                  (states[t].h.defined() ? "" : "no h, ") + (states[t].c.defined() ? "a c" : "no c") +
                  ", unlike state 0 (" + (with_c ? "with" : "without") + " c)");
    xs.push_back(states[t].h);
  }
  if (with_c)
    for (const State& s : states) xs.push_back(s.c);
  GradOptions options;
  options.retain_graph = true;  // the training step's backward(loss) still follows
  const std::vector<Tensor> grads = grad(loss, xs, options);
  GradientFlow flow;
  const std::size_t T = states.size();
  for (std::size_t t = 0; t < T; ++t) flow.h.push_back(norm_of(grads[t], norm));
  if (with_c)
    for (std::size_t t = 0; t < T; ++t) flow.c.push_back(norm_of(grads[T + t], norm));
  return flow;
}

GradientFlow gradient_norms_over_time(const Tensor& loss, const Sequence& seq, NormOver norm) {
  std::vector<State> states;
  for (const Tensor& h : seq.steps) states.push_back({h, Tensor()});
  return gradient_norms_over_time(loss, states, norm);
}

double decay_per_step(const std::vector<double>& norms) {
  const std::size_t T = norms.size();
  double n = 0, sx = 0, sy = 0, sxx = 0, sxy = 0;
  for (std::size_t t = 0; t < T; ++t) {
    if (!(norms[t] > 0) || !std::isfinite(norms[t])) continue;
    const double x = static_cast<double>(T - 1 - t), y = std::log(norms[t]);
    n += 1, sx += x, sy += y, sxx += x * x, sxy += x * y;
  }
  const double denominator = n * sxx - sx * sx;
  if (n < 2 || denominator <= 0)
    throw Error("decay_per_step: needs at least two steps with a positive, finite norm, got " + std::to_string(int(n)) +
                " of " + std::to_string(T));
  return std::exp((n * sxy - sx * sy) / denominator);
}

}  // namespace tapegrad::nn
