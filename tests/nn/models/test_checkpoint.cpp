// run_checkpointed (nn/models/rnn.hpp): recomputation over segments gives run()'s outputs and gradients (float64,
// to 1e-12) for Elman, LSTM (fused, composed, peepholes) and GRU (both conventions) at every segment
// length; central-difference and second-order checks through it; weights bound to recorded tensors; the
// memory it saves; bad inputs.
#include <boost/test/unit_test.hpp>

#include <algorithm>
#include <cmath>
#include <functional>
#include <memory>
#include <string>

#include <tapegrad/nn/models/rnn.hpp>

#include "support/xt.hpp"

using namespace tapegrad;
using namespace tapegrad::nn;
using namespace tapegrad::test;

namespace {

constexpr std::size_t B = 2, I = 3, H = 4;

Tensor rnd(const Shape& s, Generator& g, double std = 0.6) { return parameter(randn(s, g, std, DType::f64)); }

// A cell over the given weights (its step_tensors() order), as a factory so that each run gets its own.
using Make = std::function<std::unique_ptr<RecurrentCell>(const std::vector<Tensor>&)>;

struct Case {
  std::string name;
  std::vector<Shape> weights;
  Make make;
  bool has_c;
};

std::vector<Case> cases() {
  std::vector<Case> c;
  for (Activation f : {Activation::tanh, Activation::sigmoid})
    c.push_back({std::string("Elman ") + activation_name(f), {{I, H}, {H, H}, {H}},
                 [f](const std::vector<Tensor>& w) { return std::make_unique<RNNCell>(RNNWeights{w[0], w[1], w[2]}, f); },
                 false});
  for (bool fused : {true, false})
    c.push_back({std::string("LSTM ") + (fused ? "fused" : "composed"), {{I, 4 * H}, {H, 4 * H}, {4 * H}},
                 [fused](const std::vector<Tensor>& w) {
                   auto cell = std::make_unique<LSTMCell>(LSTMWeights{w[0], w[1], w[2], {}, {}, {}});
                   cell->fused = fused;
                   return cell;
                 },
                 true});
  c.push_back({"LSTM peepholes", {{I, 4 * H}, {H, 4 * H}, {4 * H}, {H}, {H}, {H}},
               [](const std::vector<Tensor>& w) {
                 return std::make_unique<LSTMCell>(LSTMWeights{w[0], w[1], w[2], w[3], w[4], w[5]});
               },
               true});
  c.push_back({"GRU reset_after", {{I, 3 * H}, {H, 3 * H}, {3 * H}, {H}},
               [](const std::vector<Tensor>& w) {
                 return std::make_unique<GRUCell>(GRUWeights{w[0], w[1], {}, w[2], w[3], GRUConvention::reset_after});
               },
               false});
  c.push_back({"GRU course", {{I, 3 * H}, {H, 2 * H}, {H, H}, {3 * H}},
               [](const std::vector<Tensor>& w) {
                 return std::make_unique<GRUCell>(GRUWeights{w[0], w[1], w[2], w[3], {}, GRUConvention::course});
               },
               false});
  return c;
}

double max_diff(const Tensor& a, const Tensor& b) {
  BOOST_REQUIRE(a.defined() && b.defined());
  BOOST_REQUIRE(a.shape() == b.shape());
  const auto va = a.to_vector(), vb = b.to_vector();
  double d = 0;
  for (std::size_t i = 0; i < va.size(); ++i) d = std::max(d, std::abs(va[i] - vb[i]));
  return d;
}

// Loss over every output and the final state, with fixed random weights, so that each path carries gradient.
Tensor loss_of(const Sequence& s, std::size_t T, bool has_c) {
  Generator g(99);
  Tensor l = sum(s.outputs * randn({T, B, H}, g, 1.0, DType::f64)) + sum(s.last.h * randn({B, H}, g, 1.0, DType::f64));
  if (has_c) l = l + sum(s.last.c * randn({B, H}, g, 1.0, DType::f64));
  return l;
}

}  // namespace

BOOST_AUTO_TEST_CASE(checkpointed_gradients_equal_the_plain_run) {
  const std::size_t T = 7;
  for (const Case& c : cases()) {
    for (std::size_t every : {std::size_t(0), std::size_t(1), std::size_t(2), std::size_t(3), std::size_t(7),
                              std::size_t(10)}) {
      Generator g(5);
      std::vector<Tensor> w;
      for (const Shape& s : c.weights) w.push_back(rnd(s, g));
      const Tensor x = rnd({T, B, I}, g), h0 = rnd({B, H}, g);
      const Tensor c0 = c.has_c ? rnd({B, H}, g) : Tensor();
      std::vector<Tensor> xs = w;
      xs.insert(xs.end(), {x, h0});
      if (c.has_c) xs.push_back(c0);
      const auto cell = c.make(w);
      const std::string what = c.name + ", every " + std::to_string(every);

      const Sequence plain = run(*cell, x, {h0, c0});
      const Tensor out = plain.outputs.detach(), last_h = plain.last.h.detach(), step3 = plain.steps[3].detach();
      const Tensor last_c = c.has_c ? plain.last.c.detach() : Tensor();
      const auto want = grad(loss_of(plain, T, c.has_c), xs);
      const Sequence ck = run_checkpointed(*cell, x, {h0, c0}, every);
      BOOST_TEST(max_diff(ck.outputs, out) <= 1e-12, what << ": outputs");
      BOOST_TEST(max_diff(ck.last.h, last_h) <= 1e-12, what << ": last h");
      if (c.has_c) BOOST_TEST(max_diff(ck.last.c, last_c) <= 1e-12, what << ": last c");
      BOOST_TEST(ck.steps.size() == T);
      BOOST_TEST(max_diff(ck.steps[3], step3) <= 1e-12, what << ": step 3");
      const auto got = grad(loss_of(ck, T, c.has_c), xs);
      for (std::size_t k = 0; k < xs.size(); ++k)
        BOOST_TEST(max_diff(got[k], want[k]) <= 1e-12, what << ": gradient of input " << k);

      // backward() into the leaves' grad() as well
      Tape::current().clear();
      for (Tensor& t : xs) t.zero_grad();
      backward(loss_of(run_checkpointed(*cell, x, {h0, c0}, every), T, c.has_c));
      for (std::size_t k = 0; k < xs.size(); ++k)
        BOOST_TEST(max_diff(xs[k].grad(), want[k]) <= 1e-12, what << ": backward, grad() of input " << k);
    }
  }
}

BOOST_AUTO_TEST_CASE(checkpointed_gradcheck_and_second_order) {
  const std::size_t T = 5;
  for (const Case& c : cases()) {
    Generator g(7);
    std::vector<Tensor> in;
    for (const Shape& s : c.weights) in.push_back(rnd(s, g));
    const std::size_t nw = in.size();
    in.insert(in.end(), {rnd({T, B, I}, g), rnd({B, H}, g)});
    if (c.has_c) in.push_back(rnd({B, H}, g));
    const Function f = [&c, nw](const std::vector<Tensor>& v) {
      const auto cell = c.make({v.begin(), v.begin() + std::ptrdiff_t(nw)});
      const Sequence s = run_checkpointed(*cell, v[nw], {v[nw + 1], c.has_c ? v[nw + 2] : Tensor()}, 2);
      return c.has_c ? concat({reshape(s.outputs, {T * B, H}), s.last.c}, 0) : s.outputs;
    };
    const GradcheckResult r = gradcheck(f, in);
    BOOST_TEST(r.ok, c.name << ": " << r.message);
    BOOST_TEST(r.checks > 0u);
    const GradcheckResult r2 = gradgradcheck(f, in);
    BOOST_TEST(r2.ok, c.name << " (second order): " << r2.message);
  }
}

BOOST_AUTO_TEST_CASE(checkpointed_weights_bound_to_recorded_tensors) {
  // The weights are results of ops (as nn/interchange.hpp imports them): gradients reach the leaves.
  const std::size_t T = 6;
  Generator g(8);
  const Tensor Wx = rnd({I, 4 * H}, g), Wh = rnd({H, 4 * H}, g), b = rnd({4 * H}, g), x = rnd({T, B, I}, g);
  auto loss = [&](bool checkpointed) {
    LSTMCell cell(LSTMWeights{Wx * 1.5, transpose(transpose(Wh)), b + 0.0, {}, {}, {}});
    const Sequence s = checkpointed ? run_checkpointed(cell, x, {}, 4) : run(cell, x);
    return loss_of(s, T, true);
  };
  const auto want = grad(loss(false), {Wx, Wh, b, x});
  const auto got = grad(loss(true), {Wx, Wh, b, x});
  for (std::size_t k = 0; k < want.size(); ++k) BOOST_TEST(max_diff(got[k], want[k]) <= 1e-12, "input " << k);
}

BOOST_AUTO_TEST_CASE(checkpointed_forward_keeps_less_on_the_tape) {
  const std::size_t T = 64, Bm = 8, Hm = 32;
  Generator g(9);
  LSTMCell cell(16, Hm, g, false, Init::glorot, 0.01, DType::f64);
  const Tensor x = rnd({T, Bm, 16}, g);
  Tape& tape = Tape::current();
  tape.clear();
  const std::size_t before = tape.bytes_in_use();
  { const Sequence s = run(cell, x); }
  const std::size_t plain = tape.bytes_in_use() - before;
  tape.clear();
  { const Sequence s = run_checkpointed(cell, x); }
  const std::size_t ck = tape.bytes_in_use() - before;
  tape.clear();
  // plain: the projection (4 blocks per step), a (4), c, h and the outputs; checkpointed: h (views of the
  // segments' outputs), c at the segment ends and the outputs.
  BOOST_TEST(ck * 4 < plain, "checkpointed " << ck << " B, plain " << plain << " B");
}

namespace {
struct NoWeightsCell : RecurrentCell {  // a custom cell that does not override step_tensors / spec
  Tensor W = parameter(zeros({H, H}, DType::f64));
  std::string kind() const override { return "NoWeightsCell"; }
  std::size_t input_size() const override { return H; }
  std::size_t hidden_size() const override { return H; }
  std::size_t gate_size() const override { return H; }
  DType dtype() const override { return DType::f64; }
  Tensor project(const Tensor& x) const override { return x; }
  State step_projected(const Tensor& xp, const State& s) const override { return {tanh(xp + matmul(s.h, W)), {}}; }
};
}  // namespace

BOOST_AUTO_TEST_CASE(checkpointed_bad_inputs) {
  Generator g(10);
  LSTMCell lstm(I, H, g, false, Init::glorot, 0.01, DType::f64);
  GRUCell gru(I, H, g, GRUConvention::reset_after, Init::glorot, 0.01, DType::f64);
  const Tensor h = zeros({B, H}, DType::f64);
  expect_error([&] { run_checkpointed(lstm, zeros({0, B, I}, DType::f64)); }, {"run_checkpointed", "LSTMCell", "T = 0"});
  expect_error([&] { run_checkpointed(gru, zeros({B, I}, DType::f64)); }, {"run_checkpointed", "GRUCell", "(T, B, I)"});
  expect_error([&] { run_checkpointed(gru, zeros({3, B, I + 1}, DType::f64)); }, {"GRUCell", "I = 4"});
  expect_error([&] { run_checkpointed(lstm, zeros({3, B, I}, DType::f64), {h, {}}); }, {"LSTMCell", "state c"});
  expect_error([&] { run_checkpointed(lstm, zeros({3, B, I}, DType::f32)); }, {"run_checkpointed", "float32", "float64"});
  NoWeightsCell custom;
  BOOST_TEST(run(custom, zeros({3, B, H}, DType::f64)).outputs.size(0) == 3u);  // run() does not need them
  expect_error([&] { run_checkpointed(custom, zeros({3, B, H}, DType::f64)); }, {"NoWeightsCell", "step_tensors"});
}
