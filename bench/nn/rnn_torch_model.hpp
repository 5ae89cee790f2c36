// The recurrent problems of bench/nn/rnn_problem.hpp in LibTorch: the same weights, inputs, loss and SGD
// step, gradients returned in the engine's layout. Shared by bench_rnn_torch and bench_threads_torch (torch
// headers only in these translation units).
#pragma once

#include <torch/torch.h>

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "nn/rnn_problem.hpp"

namespace tapegrad::bench {

inline torch::Tensor tt(const std::vector<float>& v, std::vector<std::int64_t> shape) {
  return torch::from_blob(const_cast<float*>(v.data()), shape, torch::kFloat32).clone();
}

inline std::vector<double> values(const torch::Tensor& t) {
  const torch::Tensor c = t.detach().contiguous().to(torch::kFloat64);
  return std::vector<double>(c.data_ptr<double>(), c.data_ptr<double>() + c.numel());
}

struct TorchModel {
  Cell cell;
  Dims d;
  torch::nn::RNN rnn{nullptr};
  torch::nn::LSTM lstm{nullptr};
  torch::nn::GRU gru{nullptr};
  torch::Tensor W_in, W, b, W_out, c;  // binadd (loop of ops, engine layout) and the Elman output layer
  torch::Tensor x, h0, c0, target;
  std::vector<torch::Tensor> weights;
  std::unique_ptr<torch::optim::SGD> opt;

  explicit TorchModel(const Problem& p) : cell(p.cell), d(p.d) {
    const auto T = std::int64_t(d.T), B = std::int64_t(d.B), I = std::int64_t(d.I), H = std::int64_t(d.H),
               G = std::int64_t(p.G);
    torch::NoGradGuard no_grad;
    x = tt(p.x, {T, B, I}).requires_grad_();
    h0 = tt(p.h0, {1, B, H}).requires_grad_();
    auto set_rnn = [&](torch::nn::Module& m, const torch::Tensor& bias_hh) {
      m.named_parameters()["weight_ih_l0"].copy_(tt(p.W_x, {I, G}).t());
      m.named_parameters()["weight_hh_l0"].copy_(tt(p.W_h, {H, G}).t());
      m.named_parameters()["bias_ih_l0"].copy_(tt(p.b, {G}));
      m.named_parameters()["bias_hh_l0"].copy_(bias_hh);
      for (auto& t : m.parameters()) weights.push_back(t);
    };
    switch (cell) {
      case Cell::binadd:
        W_in = tt(p.W_x, {I, H}).requires_grad_();
        W = tt(p.W_h, {H, H}).requires_grad_();
        b = tt(p.b, {H}).requires_grad_();
        weights = {W_in, W, b};
        break;
      case Cell::elman:
        rnn = torch::nn::RNN(torch::nn::RNNOptions(I, H).nonlinearity(torch::kTanh));
        set_rnn(*rnn, torch::zeros({G}));
        break;
      case Cell::lstm:
        lstm = torch::nn::LSTM(torch::nn::LSTMOptions(I, H));
        set_rnn(*lstm, torch::zeros({G}));
        c0 = tt(p.c0, {1, B, H}).requires_grad_();
        break;
      case Cell::gru:
        gru = torch::nn::GRU(torch::nn::GRUOptions(I, H));
        set_rnn(*gru, torch::cat({torch::zeros({2 * H}), tt(p.b_hn, {H})}));
        break;
    }
    if (cell == Cell::binadd || cell == Cell::elman) {
      W_out = tt(p.W_out, {H, 1}).requires_grad_();
      c = tt(p.c, {1}).requires_grad_();
      weights.push_back(W_out);
      weights.push_back(c);
      target = tt(p.target, {T * B, 1});
    } else {
      target = tt(p.target, {T, B, H});
    }
    opt = std::make_unique<torch::optim::SGD>(weights, torch::optim::SGDOptions(kLr));
  }

  torch::Tensor forward_backward() {
    torch::Tensor loss;
    if (cell == Cell::binadd || cell == Cell::elman) {
      torch::Tensor z;  // (T, B, H)
      if (cell == Cell::binadd) {
        std::vector<torch::Tensor> zs;
        torch::Tensor h = h0[0];
        for (std::int64_t t = 0; t < std::int64_t(d.T); ++t) {
          h = torch::sigmoid(torch::addmm(b, x[t], W_in) + torch::mm(h, W));
          zs.push_back(h);
        }
        z = torch::stack(zs);
      } else {
        z = std::get<0>(rnn->forward(x, h0));
      }
      const torch::Tensor y = torch::sigmoid(torch::addmm(c, z.reshape({std::int64_t(d.T * d.B), std::int64_t(d.H)}), W_out));
      loss = 0.5 * (y - target).pow(2).sum();
    } else if (cell == Cell::lstm) {
      loss = (std::get<0>(lstm->forward(x, std::make_tuple(h0, c0))) * target).sum();
    } else {
      loss = (std::get<0>(gru->forward(x, h0)) * target).sum();
    }
    loss.backward();
    return loss;
  }

  void train_step() {
    forward_backward();
    opt->step();
    opt->zero_grad();
    x.mutable_grad().zero_();
    h0.mutable_grad().zero_();
    if (c0.defined()) c0.mutable_grad().zero_();
  }

  // name -> gradient in the engine's layout.
  std::map<std::string, std::vector<double>> grads() {
    std::map<std::string, std::vector<double>> g;
    const std::int64_t H = std::int64_t(d.H);
    if (cell == Cell::binadd) {
      g["W_x"] = values(W_in.grad());
      g["W_h"] = values(W.grad());
      g["b"] = values(b.grad());
    } else {
      torch::nn::Module& m = cell == Cell::elman ? static_cast<torch::nn::Module&>(*rnn)
                             : cell == Cell::lstm ? static_cast<torch::nn::Module&>(*lstm)
                                                  : static_cast<torch::nn::Module&>(*gru);
      auto ps = m.named_parameters();
      g["W_x"] = values(ps["weight_ih_l0"].grad().t());
      g["W_h"] = values(ps["weight_hh_l0"].grad().t());
      g["b"] = values(ps["bias_ih_l0"].grad());
      if (cell == Cell::gru) g["b_hn"] = values(ps["bias_hh_l0"].grad().slice(0, 2 * H, 3 * H));
    }
    if (W_out.defined()) {
      g["W_out"] = values(W_out.grad());
      g["c"] = values(c.grad());
    }
    g["x"] = values(x.grad());
    g["h0"] = values(h0.grad());
    if (c0.defined()) g["c0"] = values(c0.grad());
    return g;
  }
};

}  // namespace tapegrad::bench
