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
#include "nn/rnn_torch_model.hpp"

namespace {

using namespace tapegrad::bench;
using tapegrad::Tape;

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
