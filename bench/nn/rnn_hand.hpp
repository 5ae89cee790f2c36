// The hand implementation of bench/nn/bench_rnn.cpp's training problems (rnn_problem.hpp):
// reference::ElmanBPTT / LSTMBPTT / GRUBPTT forward + backward on raw buffers and a w -= lr g loop,
// shared by bench_rnn.cpp (times) and bench_rnn_memory.cpp (memory, peak RSS).
#pragma once

#include <cblas.h>

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "nn/rnn_problem.hpp"
#include "tapegrad/bench/reference/reference_bptt.hpp"

namespace tapegrad::bench {

namespace ref = tapegrad::reference;

struct HandModel {
  Problem p;  // owns the weights, updated in place
  std::unique_ptr<ref::ElmanBPTT<float>> elman;
  std::unique_ptr<ref::LSTMBPTT<float>> lstm;
  std::unique_ptr<ref::GRUBPTT<float>> gru;
  const ref::LSTMGrads<float>* lstm_grads = nullptr;  // from the last backward()
  const ref::ElmanGrads<float>* elman_grads = nullptr;
  const ref::GRUGrads<float>* gru_grads = nullptr;
  float loss = 0;

  HandModel(const Problem& problem, ref::WeightGrads w) : p(problem) {
    const Dims& d = p.d;
    if (p.cell == Cell::lstm) {
      lstm = std::make_unique<ref::LSTMBPTT<float>>(d.I, d.H, w);
    } else if (p.cell == Cell::gru) {
      gru = std::make_unique<ref::GRUBPTT<float>>(d.I, d.H, w);
    } else {
      elman = std::make_unique<ref::ElmanBPTT<float>>(
          d.I, d.H, 1, p.cell == Cell::binadd ? ref::Activation::sigmoid : ref::Activation::tanh, ref::Activation::sigmoid,
          w);
    }
  }

  void forward_backward() {
    const Dims& d = p.d;
    if (lstm) {
      const float* h = lstm->forward({p.W_x.data(), p.W_h.data(), p.b.data()}, p.x.data(), p.h0.data(), p.c0.data(),
                                     d.T, d.B);
      loss = cblas_sdot(int(d.T * d.B * d.H), h, 1, p.target.data(), 1);  // E = sum(h * R)
      lstm_grads = &lstm->backward(p.target.data());
    } else if (gru) {
      const float* h = gru->forward({p.W_x.data(), p.W_h.data(), p.b.data(), p.b_hn.data()}, p.x.data(), p.h0.data(),
                                    d.T, d.B);
      loss = cblas_sdot(int(d.T * d.B * d.H), h, 1, p.target.data(), 1);  // E = sum(h * R)
      gru_grads = &gru->backward(p.target.data());
    } else {
      elman->forward({p.W_x.data(), p.W_h.data(), p.b.data(), p.W_out.data(), p.c.data()}, p.x.data(), p.h0.data(),
                     d.T, d.B);
      loss = elman->half_sum_loss(p.target.data());
      elman_grads = &elman->backward_half_sum(p.target.data());
    }
  }

  static void sgd(std::vector<float>& w, const std::vector<float>& g) {
    float* __restrict pw = w.data();
    const float* __restrict pg = g.data();
    for (std::size_t i = 0, n = w.size(); i < n; ++i) pw[i] -= kLr * pg[i];
  }

  void train_step() {
    forward_backward();
    if (lstm) {
      const auto& g = *lstm_grads;
      sgd(p.W_x, g.W_x);
      sgd(p.W_h, g.W_h);
      sgd(p.b, g.b);
    } else if (gru) {
      const auto& g = *gru_grads;
      sgd(p.W_x, g.W_x);
      sgd(p.W_h, g.W_h);
      sgd(p.b, g.b);
      sgd(p.b_hn, g.b_hn);
    } else {
      const auto& g = *elman_grads;
      sgd(p.W_x, g.W_in);
      sgd(p.W_h, g.W);
      sgd(p.b, g.b);
      sgd(p.W_out, g.W_out);
      sgd(p.c, g.c);
    }
  }

  // name -> gradient, named as EngineModel::grads().
  std::map<std::string, std::vector<double>> grads() const {
    auto v = [](const std::vector<float>& f) { return std::vector<double>(f.begin(), f.end()); };
    if (lstm) {
      const auto& g = *lstm_grads;
      return {{"W_x", v(g.W_x)}, {"W_h", v(g.W_h)}, {"b", v(g.b)}, {"x", v(g.x)}, {"h0", v(g.h0)}, {"c0", v(g.c0)}};
    }
    if (gru) {
      const auto& g = *gru_grads;
      return {{"W_x", v(g.W_x)}, {"W_h", v(g.W_h)}, {"b", v(g.b)}, {"b_hn", v(g.b_hn)}, {"x", v(g.x)}, {"h0", v(g.h0)}};
    }
    const auto& g = *elman_grads;
    return {{"W_x", v(g.W_in)}, {"W_h", v(g.W)}, {"b", v(g.b)}, {"W_out", v(g.W_out)},
            {"c", v(g.c)},      {"x", v(g.x)},   {"h0", v(g.z0)}};
  }

  // Bytes of the buffers the hand version keeps per sequence: saved by forward (activations) and in all
  // (with backward's workspace: deltas, running dh/dc, the dy copy; not the gradients of the weights).
  static std::size_t saved_bytes(Cell cell, const Dims& d, bool with_backward) {
    const std::size_t T = d.T, B = d.B, H = d.H, f = sizeof(float);
    if (cell == Cell::lstm)  // gates (T,B,4H), h and c (T+1,B,H), tanh(c) (T,B,H); da (T,B,4H), dh, dc (B,H)
      return f * (T * B * 4 * H + 2 * (T + 1) * B * H + T * B * H +
                  (with_backward ? T * B * 4 * H + 2 * B * H : 0));
    if (cell == Cell::gru)  // x W_x + b (T,B,3H), r z n v (T,B,4H), h (T+1,B,H); h W_h (B,3H), dxp, dhp (T,B,3H), dh
      return f * (T * B * 3 * H + T * B * 4 * H + (T + 1) * B * H +
                  (with_backward ? B * 3 * H + 2 * T * B * 3 * H + B * H : 0));
    // z (T+1,B,H), y (T,B,1); delta_out (T,B,1), delta (T,B,H)
    return f * ((T + 1) * B * H + T * B + (with_backward ? T * B + T * B * H : 0));
  }
};

}  // namespace tapegrad::bench
