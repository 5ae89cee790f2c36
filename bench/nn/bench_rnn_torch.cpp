// LibTorch baselines of bench_rnn.cpp (optional target bench_rnn_torch, built when CMake finds Torch; the
// binary also holds every engine and hand bench of bench_rnn.cpp, so the ratios come from one run).
//
//   BM_<cell>_torch/T/B/I/H   the same training step written as a LibTorch user would: torch::nn::RNN
//                             (tanh) / LSTM / GRU over the whole sequence (binadd: its sigmoid hidden layer
//                             is not a torch::nn::RNN nonlinearity, so a loop of torch ops, as the course
//                             writes it), the loss, backward(), torch::optim::SGD. One intra-op thread.
//
// Before timing, LibTorch's loss and gradients (every weight, x, h_0, c_0) are checked against the
// engine's in float32 (normwise relative 1e-4), with the same initial values (PyTorch's layout is the
// transpose: weight_ih = W_x^T, weight_hh = W_h^T; bias_hh is zero, its gradient equals bias_ih's).
#include <benchmark/benchmark.h>
#include <torch/torch.h>

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "nn/rnn_problem.hpp"

namespace {

using namespace tapegrad::bench;
using tapegrad::Tape;

torch::Tensor tt(const std::vector<float>& v, std::vector<std::int64_t> shape) {
  return torch::from_blob(const_cast<float*>(v.data()), shape, torch::kFloat32).clone();
}

std::vector<double> values(const torch::Tensor& t) {
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

void torch_threads() {
  if (torch::get_num_threads() != 1) torch::set_num_threads(1);
}

// LibTorch against the engine, once per configuration.
const std::string& check(Cell cell, const Dims& d) {
  static std::map<std::string, std::string> cache;
  const std::string key = d.key(cell);
  if (auto it = cache.find(key); it != cache.end()) return it->second;
  std::string why;
  try {
    torch_threads();
    const Problem p(cell, d);
    EngineModel e(p);
    Tape::current().clear();
    const double engine_loss = e.forward_backward().item();
    TorchModel t(p);
    const double torch_loss = t.forward_backward().item<double>();
    close_to({torch_loss}, {engine_loss}, 1e-4, "loss", why);
    auto tg = t.grads();
    for (const auto& [name, g] : e.grads()) close_to(tg.at(name), g.to_vector(), 1e-4, "d/d" + name, why);
    if (!why.empty()) why += " (LibTorch against the engine)";
  } catch (const std::exception& ex) {
    why = std::string("exception: ") + ex.what();
  }
  Tape::current().clear();
  return cache[key] = why;
}

void BM_torch(benchmark::State& state, Cell cell) {
  const Dims d = dims_of(state);
  if (const std::string& why = check(cell, d); !why.empty()) {
    state.SkipWithError(why.c_str());
    return;
  }
  torch_threads();
  // On the heap: on the stack of this (stack-realigning) function, GCC 12 -O3 crashed on return.
  const auto m = std::make_unique<TorchModel>(Problem(cell, d));
  for (auto _ : state) m->train_step();
  state.counters["us_per_sequence"] =
      benchmark::Counter(double(d.B) * 1e-6, benchmark::Counter::kIsIterationInvariantRate | benchmark::Counter::kInvert);
}

const bool registered = [] {
  torch::set_num_threads(1);
  benchmark::AddCustomContext("torch_version", TORCH_VERSION);
  benchmark::AddCustomContext("torch_num_threads", std::to_string(torch::get_num_threads()));
  for (const Config& c : grid()) {
    if (!c.main) continue;
    const Cell cell = c.cell;
    benchmark::RegisterBenchmark((std::string("BM_") + cell_name(cell) + "_torch").c_str(),
                                 [cell](benchmark::State& s) { BM_torch(s, cell); })
        ->Args({std::int64_t(c.d.T), std::int64_t(c.d.B), std::int64_t(c.d.I), std::int64_t(c.d.H)})
        ->MeasureProcessCPUTime()
        ->Unit(benchmark::kMicrosecond);
  }
  return true;
}();

}  // namespace
