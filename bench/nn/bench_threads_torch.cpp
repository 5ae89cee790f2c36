// LibTorch's side of bench_threads.cpp (optional binary bench_threads_torch, built when CMake finds Torch;
// it holds the engine's benches too, so the 1- and 2-thread figures of both come from one run).
//
//   BM_threads_lstm_torch/T/B/I/H/n   torch::nn::LSTM over the sequence, E = sum(h * R), backward(),
//                                     torch::optim::SGD, with at::set_num_threads(n) and OpenBLAS at n
//                                     threads (LibTorch's products run on the same libopenblas)
//
// Before timing, LibTorch's loss and gradients are checked against the engine's at n threads (normwise
// relative 1e-4, the same initial values; PyTorch's layout is the transpose, weight_ih = W_x^T).
#include <benchmark/benchmark.h>
#include <torch/torch.h>

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "nn/rnn_problem.hpp"
#include "nn/rnn_torch_model.hpp"
#include "tapegrad/ops/parallel.hpp"

namespace {

using namespace tapegrad::bench;
using tapegrad::Tape;

void use_threads(int n) {
  tapegrad::set_num_threads(n);  // OpenBLAS (shared) and the engine
  torch::set_num_threads(n);     // LibTorch's intra-op pool
}

const std::string& check(const Dims& d, int threads) {
  static std::map<std::string, std::string> cache;
  const std::string key = d.key(Cell::lstm) + "/" + std::to_string(threads);
  if (auto it = cache.find(key); it != cache.end()) return it->second;
  std::string why;
  try {
    use_threads(threads);
    const Problem p(Cell::lstm, d);
    EngineModel e(p);
    Tape::current().clear();
    const double engine_loss = e.forward_backward().item();
    TorchModel t(p);
    close_to({t.forward_backward().item<double>()}, {engine_loss}, 1e-4, "loss", why);
    auto tg = t.grads();
    for (const auto& [name, g] : e.grads()) close_to(tg.at(name), g.to_vector(), 1e-4, "d/d" + name, why);
    if (!why.empty()) why += " (LibTorch against the engine)";
  } catch (const std::exception& ex) {
    why = std::string("exception: ") + ex.what();
  }
  Tape::current().clear();
  return cache[key] = why;
}

void BM_torch(benchmark::State& state) {
  const Dims d = dims_of(state);
  const int threads = int(state.range(4));
  if (const std::string& why = check(d, threads); !why.empty()) {
    state.SkipWithError(why.c_str());
    return;
  }
  use_threads(threads);
  const auto m = std::make_unique<TorchModel>(Problem(Cell::lstm, d));  // on the heap, as in bench_rnn_torch
  for (auto _ : state) m->train_step();
  state.counters["threads"] = threads;
  state.counters["us_per_sequence"] =
      benchmark::Counter(double(d.B) * 1e-6, benchmark::Counter::kIsIterationInvariantRate | benchmark::Counter::kInvert);
}

const bool registered = [] {
  benchmark::AddCustomContext("torch_version", TORCH_VERSION);
  benchmark::AddCustomContext("torch_num_threads", "1 or 2, per benchmark (the last argument)");
  for (const Dims& d : std::vector<Dims>{{20, 128, 512, 512}, {20, 1, 32, 64}, {20, 32, 32, 64}})
    for (int n : {1, 2})
      benchmark::RegisterBenchmark("BM_threads_lstm_torch", BM_torch)
          ->Args({std::int64_t(d.T), std::int64_t(d.B), std::int64_t(d.I), std::int64_t(d.H), n})
          ->UseRealTime()
          ->Unit(benchmark::kMicrosecond);
  return true;
}();

}  // namespace
