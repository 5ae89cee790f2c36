// The training problems of bench/nn/bench_rnn.cpp (engine, hand) and bench/nn/bench_rnn_torch.cpp
// (LibTorch): weights and data drawn once per (cell, T, B, I, H) from a fixed seed as plain float
// buffers, so every implementation starts from the same values; and the engine's training step, shared
// by both files (the torch file checks LibTorch's gradients against it).
//
// One training step per sequence batch = forward over T steps, loss, backward, plain SGD on every weight.
//   binadd  the course's binary-addition RNN: Elman 2-16-1, sigmoid hidden and output, T = 8, B = 1,
//           E = 1/2 sum (d - y)^2 with x_t the bits of two 7-bit numbers and d_t the bits of their sum
//   elman   Elman RNN I-H-1, tanh hidden, sigmoid output, E = 1/2 sum (d - y)^2, d random in (0, 1)
//   lstm    LSTM I-H, E = sum(h * R) over all h_t, R a fixed random (T, B, H) tensor
//   gru     GRU I-H (PyTorch's reset_after convention), E = sum(h * R)
// x and the initial state require gradients in every implementation: the hand BPTT always computes
// dE/dx and dE/dh_0, so the engine is asked for the same work.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "tapegrad/autograd/tape.hpp"
#include "tapegrad/nn/training/optim.hpp"
#include "tapegrad/nn/models/rnn.hpp"
#include "tapegrad/ops/activation.hpp"
#include "tapegrad/ops/elementwise.hpp"
#include "tapegrad/ops/linalg.hpp"
#include "tapegrad/ops/loss.hpp"
#include "tapegrad/ops/reduce.hpp"
#include "tapegrad/ops/shape.hpp"

namespace tapegrad::bench {

enum class Cell { binadd, elman, lstm, gru };
inline const char* cell_name(Cell c) {
  switch (c) {
    case Cell::binadd: return "binadd";
    case Cell::elman: return "elman";
    case Cell::lstm: return "lstm";
    case Cell::gru: return "gru";
  }
  return "?";
}

constexpr float kLr = 1e-3f;  // small, so that timing loops of thousands of steps stay finite

struct Dims {
  std::size_t T, B, I, H;
  std::string key(Cell c) const {
    return std::string(cell_name(c)) + "/" + std::to_string(T) + "/" + std::to_string(B) + "/" + std::to_string(I) +
           "/" + std::to_string(H);
  }
};

// Benchmarks take the arguments T, B, I, H.
template <class State> Dims dims_of(const State& s) {
  return {std::size_t(s.range(0)), std::size_t(s.range(1)), std::size_t(s.range(2)), std::size_t(s.range(3))};
}

// Row-major buffers in the engine's layout (row vectors; x W): gates fused, blocks in PyTorch's order
// (LSTM i, f, g, o; GRU r, z, n).
struct Problem {
  Cell cell;
  Dims d;
  std::size_t G = 0;  // gate width: H (Elman), 4H (LSTM), 3H (GRU)
  std::vector<float> W_x, W_h, b, b_hn, W_out, c;  // (I, G), (H, G), (G), GRU (H), Elman (H, 1), (1)
  std::vector<float> x, h0, c0;                    // (T, B, I), (B, H), LSTM (B, H)
  std::vector<float> target;                       // Elman: d (T, B, 1); LSTM/GRU: R (T, B, H)

  Problem(Cell cell_, Dims d_) : cell(cell_), d(d_) {
    Generator gen(7 + d.T * 131 + d.B * 17 + d.I * 5 + d.H);
    const std::size_t T = d.T, B = d.B, I = d.I, H = d.H;
    G = cell == Cell::lstm ? 4 * H : cell == Cell::gru ? 3 * H : H;
    auto draw = [&](std::vector<float>& v, std::size_t n, double sd) {
      v.resize(n);
      for (auto& e : v) e = float(gen.normal(0.0, sd));
    };
    draw(W_x, I * G, 1.0 / std::sqrt(double(I)));
    draw(W_h, H * G, 1.0 / std::sqrt(double(H)));
    draw(b, G, 0.1);
    draw(h0, B * H, 0.1);
    if (cell == Cell::lstm) draw(c0, B * H, 0.1);
    if (cell == Cell::gru) draw(b_hn, H, 0.1);
    if (cell == Cell::binadd || cell == Cell::elman) {
      draw(W_out, H, 1.0 / std::sqrt(double(H)));
      draw(c, 1, 0.1);
    }
    if (cell == Cell::binadd) {  // a + b, bits least significant first
      const unsigned a = unsigned(gen.below(128)), bb = unsigned(gen.below(128)), s = a + bb;
      x.resize(T * B * I);
      target.resize(T * B);
      for (std::size_t t = 0; t < T; ++t) {
        x[t * 2] = float((a >> t) & 1u);
        x[t * 2 + 1] = float((bb >> t) & 1u);
        target[t] = float((s >> t) & 1u);
      }
      for (auto& e : W_x) e = float(gen.normal(0.0, 1.0));  // the course's N(0, 1) for this toy
    } else {
      draw(x, T * B * I, 1.0);
      if (cell == Cell::elman) {
        target.resize(T * B);
        for (auto& e : target) e = float(gen.uniform(0.05, 0.95));
      } else {
        draw(target, T * B * H, 1.0);
      }
    }
  }
};

inline Tensor tensor(const std::vector<float>& v, const Shape& s) { return from_data<float>(v.data(), s); }

// The engine: nn cells (composed from ops) bound to parameter tensors holding the problem's values,
// nn::SGD over the weights. dtype f64 builds a copy in double precision (for the GRU's check).
struct EngineModel {
  Cell cell;
  Dims d;
  Tensor W_x, W_h, b, b_hn, W_out, c, x, h0, c0, target;
  std::unique_ptr<nn::RecurrentCell> rnn;
  std::unique_ptr<nn::SGD> opt;
  bool checkpointed = false;  // nn::run_checkpointed (segments of about sqrt(T) steps) instead of nn::run

  // fused: the LSTM's pointwise half as the fused ops (nn::LSTMCell's default); false: composed from
  // primitive ops. For binary addition and Elman, fused runs all steps as the one op rnn_sequence (opt-in
  // RNNCell::whole_sequence) and false the default path, one fused rnn_cell per step.
  explicit EngineModel(const Problem& p, DType dtype = DType::f32, bool fused = true) : cell(p.cell), d(p.d) {
    const std::size_t T = d.T, B = d.B, I = d.I, H = d.H;
    auto param = [&](const std::vector<float>& v, const Shape& s) { return parameter(tensor(v, s).to(dtype)); };
    W_x = param(p.W_x, {I, p.G});
    W_h = param(p.W_h, {H, p.G});
    b = param(p.b, {p.G});
    x = param(p.x, {T, B, I});
    h0 = param(p.h0, {B, H});
    std::vector<Tensor> weights{W_x, W_h, b};
    switch (cell) {
      case Cell::binadd:
      case Cell::elman:
        W_out = param(p.W_out, {H, 1});
        c = param(p.c, {1});
        weights.push_back(W_out);
        weights.push_back(c);
        target = tensor(p.target, {T * B, 1}).to(dtype);
        rnn = std::make_unique<nn::RNNCell>(
            nn::RNNWeights{W_x, W_h, b}, cell == Cell::binadd ? nn::Activation::sigmoid : nn::Activation::tanh);
        // fused: all steps as one op (rnn_sequence, RNNCell::whole_sequence); false: nn::RNNCell's default,
        // one rnn_cell node per step.
        static_cast<nn::RNNCell&>(*rnn).whole_sequence = fused;
        break;
      case Cell::lstm:
        c0 = param(p.c0, {B, H});
        target = tensor(p.target, {T, B, H}).to(dtype);
        rnn = std::make_unique<nn::LSTMCell>(nn::LSTMWeights{W_x, W_h, b, {}, {}, {}});
        static_cast<nn::LSTMCell&>(*rnn).fused = fused;
        break;
      case Cell::gru:
        b_hn = param(p.b_hn, {H});
        weights.push_back(b_hn);
        target = tensor(p.target, {T, B, H}).to(dtype);
        rnn = std::make_unique<nn::GRUCell>(
            nn::GRUWeights{W_x, W_h, {}, b, b_hn, nn::GRUConvention::reset_after});
        break;
    }
    opt = std::make_unique<nn::SGD>(weights, kLr);
  }

  // Forward + loss + backward; gradients accumulate into the leaves. Returns the loss (readable until the
  // next graph starts).
  Tensor forward_backward() const {
    Tensor loss = forward();
    backward(loss);
    return loss;
  }

  // Forward and loss only: the graph stays recorded (bench_rnn_memory reads the tape's bytes here).
  Tensor forward() const {
    const nn::Sequence seq = checkpointed ? nn::run_checkpointed(*rnn, x, nn::State{h0, c0}) : nn::run(*rnn, x, nn::State{h0, c0});
    if (cell == Cell::binadd || cell == Cell::elman) {
      // y_t = sigmoid(z_t W_out + c) for all t at once, as nn::ElmanRNN does.
      const Tensor y = sigmoid(linear(reshape(seq.outputs, {d.T * d.B, d.H}), W_out, c));
      return mse_loss(y, target, Reduction::half_sum);
    }
    return sum(seq.outputs * target);
  }

  // A full training step: forward, backward, SGD, gradients zeroed for the next step.
  // x, h0, c0 are not updated; their gradients are cleared like the weights'.
  void train_step() {
    forward_backward();
    opt->step();
    opt->zero_grad();
    x.zero_grad();
    h0.zero_grad();
    if (c0.defined()) c0.zero_grad();
  }

  // name -> gradient, after forward_backward(); names as in the hand and torch checks.
  std::vector<std::pair<std::string, Tensor>> grads() const {
    std::vector<std::pair<std::string, Tensor>> g{{"W_x", W_x.grad()}, {"W_h", W_h.grad()}, {"b", b.grad()},
                                                  {"x", x.grad()}, {"h0", h0.grad()}};
    if (c0.defined()) g.emplace_back("c0", c0.grad());
    if (W_out.defined()) {
      g.emplace_back("W_out", W_out.grad());
      g.emplace_back("c", c.grad());
    }
    if (b_hn.defined()) g.emplace_back("b_hn", b_hn.grad());
    return g;
  }
};

// The benchmarks: the main grid (every implementation) and, for the LSTM, the scaling points (engine and
// hand only), without duplicates, in a fixed order.
struct Config {
  Cell cell;
  Dims d;
  bool main;  // in the main grid (LibTorch too)
};
inline std::vector<Config> grid() {
  std::vector<Config> out;
  auto add = [&](Cell c, Dims d, bool main) {
    for (const auto& e : out)
      if (e.cell == c && e.d.key(c) == d.key(c)) return;
    out.push_back({c, d, main});
  };
  add(Cell::binadd, {8, 1, 2, 16}, true);
  for (Cell c : {Cell::elman, Cell::lstm, Cell::gru})
    for (std::size_t B : {1, 32})
      for (auto [I, H] : {std::pair<std::size_t, std::size_t>{32, 64}, {128, 256}})
        for (std::size_t T : {20, 100}) add(c, {T, B, I, H}, true);
  for (std::size_t T : {10, 30, 100, 300, 1000}) add(Cell::lstm, {T, 1, 32, 64}, false);  // time
  for (std::size_t H : {16, 64, 256, 1024}) add(Cell::lstm, {20, 1, 32, H}, false);       // width
  return out;
}

// max |got - want| / max |want| (normwise; elementwise relative differences mean nothing for entries that
// are zero up to rounding). Appends a reason to `why` and returns false above `tol`.
inline bool close_to(const std::vector<double>& got, const std::vector<double>& want, double tol,
                     const std::string& what, std::string& why) {
  double num = 0, den = 0;
  if (got.size() != want.size()) {
    why += what + ": " + std::to_string(got.size()) + " values, expected " + std::to_string(want.size()) + "; ";
    return false;
  }
  for (std::size_t i = 0; i < got.size(); ++i) {
    num = std::max(num, std::abs(got[i] - want[i]));
    den = std::max(den, std::abs(want[i]));
  }
  const double rel = den == 0 ? num : num / den;
  if (rel <= tol && std::isfinite(rel)) return true;
  why += what + ": relative difference " + std::to_string(rel) + " > " + std::to_string(tol) + "; ";
  return false;
}

}  // namespace tapegrad::bench
