// Intra-op threads (ops/parallel.hpp): the same LSTM training step at 1 and 2 threads, the engine here and
// LibTorch in bench_threads_torch.cpp (the binary bench_threads_torch holds both, so the ratios come from
// one process and one run). One iteration = one training step (rnn_problem.hpp: forward over T steps,
// E = sum(h * R), backward, SGD). float32. Arguments T/B/I/H/threads. Wall time (UseRealTime): the CPU
// time of a 2-thread run sums both cores.
//
//   BM_threads_lstm_engine/T/B/I/H/n    the engine with tapegrad::set_num_threads(n) (its kernels and
//                                       OpenBLAS's threads)
//   BM_threads_lstm_gemm/T/B/I/H/n      only the GEMMs of that step on preallocated buffers (raw cblas at n
//                                       OpenBLAS threads): the part OpenBLAS's threads can speed up
//   BM_threads_grain/n/threads/split   tanh forward + backward of an (n) vector (the unary kernels: 2n and 4n
//                                       elements of work): split = 0 with the engine's threshold
//                                       (parallel::min_work()), 1 with every loop split at 2 threads: where
//                                       splitting starts to pay is the threshold to choose
//
// Before timing, each engine bench runs forward + backward three times from fresh models: the first two at
// n threads must give bitwise equal loss and gradients (determinism at a fixed count), and all must agree
// with a one-thread run (normwise relative 1e-5); else it reports an error instead of a figure.
#include <benchmark/benchmark.h>
#include <cblas.h>

#include <cstring>
#include <map>
#include <string>
#include <vector>

#include "nn/rnn_problem.hpp"
#include "tapegrad/ops/parallel.hpp"
#include "tapegrad/ops/parallel_for.hpp"

namespace {

using namespace tapegrad;
using namespace tapegrad::bench;

// The thread settings of each configuration: B = 128, H = 512 (the figure the issue asks for) and the
// batch-1 points of bench_rnn (I = 32, H = 64), at T = 20.
const std::vector<Dims>& thread_dims() {
  static const std::vector<Dims> d{{20, 128, 512, 512}, {20, 1, 32, 64}, {20, 32, 32, 64}};
  return d;
}

std::vector<std::vector<double>> run_once(const Dims& d, int threads) {
  set_num_threads(threads);
  const Problem p(Cell::lstm, d);
  EngineModel e(p);
  Tape::current().clear();
  std::vector<std::vector<double>> out{{e.forward_backward().item()}};
  for (const auto& [name, g] : e.grads()) out.push_back(g.to_vector());  // float32 values, exactly
  Tape::current().clear();
  return out;
}

const std::string& check(const Dims& d, int threads) {
  static std::map<std::string, std::string> cache;
  const std::string key = d.key(Cell::lstm) + "/" + std::to_string(threads);
  if (auto it = cache.find(key); it != cache.end()) return it->second;
  std::string why;
  const auto a = run_once(d, threads), b = run_once(d, threads), one = run_once(d, 1);
  for (std::size_t k = 0; k < a.size(); ++k) {
    if (a[k].size() != b[k].size() || std::memcmp(a[k].data(), b[k].data(), a[k].size() * sizeof(double)) != 0)
      why += "output " + std::to_string(k) + " differs between two runs at " + std::to_string(threads) + " threads; ";
    close_to(a[k], one[k], 1e-5,
             "output " + std::to_string(k) + " against one thread", why);
  }
  return cache[key] = why;
}

void BM_engine(benchmark::State& state) {
  const Dims d = dims_of(state);
  const int threads = int(state.range(4));
  if (const std::string& why = check(d, threads); !why.empty()) {
    state.SkipWithError(why.c_str());
    return;
  }
  set_num_threads(threads);
  EngineModel m(Problem(Cell::lstm, d));
  for (auto _ : state) m.train_step();
  state.counters["threads"] = threads;
  state.counters["us_per_sequence"] =
      benchmark::Counter(double(d.B) * 1e-6, benchmark::Counter::kIsIterationInvariantRate | benchmark::Counter::kInvert);
}

// The GEMMs of one training step as the engine issues them at B >= 16 (bench_rnn's BM_lstm_gemm_floor):
// forward x_t W_x and h W_h per step; backward da W_x^T, da W_h^T, and x^T da, h^T da per step.
void BM_gemm(benchmark::State& state) {
  const Dims d = dims_of(state);
  const int threads = int(state.range(4));
  set_num_threads(threads);
  const int T = int(d.T), B = int(d.B), I = int(d.I), H = int(d.H), G = 4 * H;
  std::vector<float> x(std::size_t(T) * B * I, 0.5f), Wx(std::size_t(I) * G, 0.01f), Wh(std::size_t(H) * G, 0.01f),
      h(std::size_t(B) * H, 0.1f), a(std::size_t(B) * G), da(std::size_t(B) * G, 0.01f), dx(std::size_t(B) * I),
      dh(std::size_t(B) * H), gWx(Wx.size()), gWh(Wh.size());
  for (auto _ : state) {
    for (int t = 0; t < T; ++t) {
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, B, G, I, 1, x.data() + std::size_t(t) * B * I, I, Wx.data(),
                  G, 0, a.data(), G);
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, B, G, H, 1, h.data(), H, Wh.data(), G, 1, a.data(), G);
    }
    for (int t = 0; t < T; ++t) {
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, B, I, G, 1, da.data(), G, Wx.data(), G, 0, dx.data(), I);
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, B, H, G, 1, da.data(), G, Wh.data(), G, 0, dh.data(), H);
      cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, I, G, B, 1, x.data() + std::size_t(t) * B * I, I, da.data(),
                  G, 1, gWx.data(), G);
      cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, H, G, B, 1, h.data(), H, da.data(), G, 1, gWh.data(), G);
    }
    benchmark::DoNotOptimize(gWh.data());
  }
  state.counters["threads"] = threads;
}

void BM_grain(benchmark::State& state) {
  const std::size_t n = std::size_t(state.range(0));
  const int threads = int(state.range(1));
  const bool split = state.range(2) != 0;
  set_num_threads(threads);
  if (split) parallel::set_min_work(0);
  Generator gen(3);
  const Tensor x = parameter(randn({n}, gen));
  for (auto _ : state) {
    Tape::Scope scope;
    const Tensor y = tanh(x);
    backward(y, ones({n}));
  }
  parallel::set_min_work(parallel::kMinWork);
  state.counters["elements"] = double(n);
}

const bool registered = [] {
  for (std::int64_t n : {1024, 4096, 8192, 16384, 32768, 131072, 524288})
    for (std::int64_t t : {1, 2})
      for (std::int64_t split : {0, 1}) {
        if (t == 1 && split) continue;
        benchmark::RegisterBenchmark("BM_threads_grain", BM_grain)->Args({n, t, split})->UseRealTime()->Unit(benchmark::kMicrosecond);
      }
  for (const Dims& d : thread_dims())
    for (int n : {1, 2}) {
      const std::vector<std::int64_t> args{std::int64_t(d.T), std::int64_t(d.B), std::int64_t(d.I), std::int64_t(d.H), n};
      benchmark::RegisterBenchmark("BM_threads_lstm_engine", BM_engine)->Args(args)->UseRealTime()->Unit(benchmark::kMicrosecond);
      benchmark::RegisterBenchmark("BM_threads_lstm_gemm", BM_gemm)->Args(args)->UseRealTime()->Unit(benchmark::kMicrosecond);
    }
  return true;
}();

}  // namespace
