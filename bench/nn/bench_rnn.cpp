// Training steps of recurrent nets: the engine (nn cells composed from ops, BPTT = the tape's backward)
// against hand-derived BPTT on raw buffers (bench/reference/reference_bptt: ElmanBPTT, LSTMBPTT, GRUBPTT, cblas) with a
// plain SGD loop. LibTorch, when CMake finds it, is in bench_rnn_torch.cpp (the binary bench_rnn_torch holds
// all three, so that their ratios come from one process and one run).
//
// One iteration = one training step of one batch: forward over T steps, loss, backward, SGD on every
// weight (the problems are described in rnn_problem.hpp). float32, one thread. Arguments T/B/I/H.
//
//   BM_<cell>_engine/T/B/I/H   engine: nn::run over nn::RNNCell / LSTMCell / GRUCell, backward, nn::SGD
//   BM_lstm_composed/T/B/I/H   the engine with LSTMCell::fused = false (the step composed from primitive
//                              ops instead of the fused lstm_cell / lstm_hidden ops)
//   BM_<cell>_hand/T/B/I/H     reference::ElmanBPTT / LSTMBPTT / GRUBPTT forward + backward, w -= lr g
//                              loops; weight gradients per step (WeightGrads::per_step)
//   BM_<cell>_hand_fused/...   the same with the weight gradients as one GEMM over all steps
//                              (WeightGrads::fused); the floor is the faster of the two
//   BM_lstm_gemm_floor/T/B/I/H only the GEMMs of one LSTM training step, on preallocated buffers (raw
//                              cblas): the input projection and its two gradients, per time step the
//                              recurrent product and dh, and dW_h += h^T da as the engine does it (per
//                              time step at B >= 16, one GEMM over all steps below). What an implementation
//                              making these calls cannot go below.
//   BM_lstm_memory_engine/...  1,000 engine steps (fixed): the tape's bytes and the process's peak RSS
//                              must not grow between step 10 and step 1,000
//   BM_lstm_profile_engine/... a fixed 200 steps, for callgrind (scripts/bench.sh rnn-profile)
//
// Counters: us_per_sequence = step time / B; tape_B_per_step (engine) = the tape's peak bytes during a
// step / T; saved_B_per_step (hand) = its buffers' bytes / T (activations saved by forward, and with the
// backward workspace).
//
// Before timing, each bench checks the engine's loss and gradients (every weight, x, h_0, c_0) against
// both hand BPTT variants in float32, normwise relative 1e-4, and reports an error instead of a figure if
// they differ.
#include <benchmark/benchmark.h>
#include <cblas.h>
#include <sys/resource.h>
#include <unistd.h>

#include <cstdio>
#include <map>
#include <string>
#include <tuple>
#include <vector>

#include "nn/rnn_hand.hpp"
#include "nn/rnn_problem.hpp"
#include "tapegrad/bench/reference/reference_bptt.hpp"

namespace {

using namespace tapegrad;
using namespace tapegrad::bench;
namespace ref = tapegrad::reference;

// ---- the check before timing ------------------------------------------------------------------------

constexpr double kTol = 1e-4;  // float32, normwise relative

struct Check {
  std::string why;                 // empty when the engine agrees with the reference
  double tape_bytes_per_step = 0;  // the tape's peak bytes in one training step's graph / T
};

// The engine's loss and gradients after one forward + backward against both hand BPTT variants.
// Computed once per configuration.
const Check& check(Cell cell, const Dims& d, bool fused = true) {
  static std::map<std::string, Check> cache;
  const std::string key = d.key(cell) + (fused ? "" : "/composed");
  if (auto it = cache.find(key); it != cache.end()) return it->second;
  Check r;
  Tape& tape = Tape::current();
  try {
    const Problem p(cell, d);
    EngineModel e(p, DType::f32, fused);
    tape.clear();
    tape.reset_peak();
    const double loss = e.forward_backward().item();
    r.tape_bytes_per_step = double(tape.peak_bytes()) / double(d.T);
    for (ref::WeightGrads w : {ref::WeightGrads::per_step, ref::WeightGrads::fused}) {
      HandModel h(p, w);
      h.forward_backward();
      const auto want = h.grads();
      const std::string against = std::string(" against hand BPTT (") + ref::weight_grads_name(w) + ")";
      close_to({loss}, {double(h.loss)}, kTol, "loss" + against, r.why);
      for (const auto& [name, g] : e.grads()) {
        if (!g.defined()) {
          r.why += "d/d" + name + ": no gradient; ";
          continue;
        }
        close_to(g.to_vector(), want.at(name), kTol, "d/d" + name + against, r.why);
      }
    }
  } catch (const std::exception& ex) {
    r.why = std::string("exception: ") + ex.what();
  }
  tape.clear();
  return cache[key] = r;
}

bool checked(benchmark::State& state, Cell cell, bool fused = true) {
  const Check& c = check(cell, dims_of(state), fused);
  if (!c.why.empty()) state.SkipWithError(c.why.c_str());
  return c.why.empty();
}

// us per sequence = step time / B (an inverted rate: the console prints "us_per_sequence=12.3u").
void set_counters(benchmark::State& state, const Dims& d) {
  state.counters["us_per_sequence"] =
      benchmark::Counter(double(d.B) * 1e-6, benchmark::Counter::kIsIterationInvariantRate | benchmark::Counter::kInvert);
}

// ---- the benchmarks ---------------------------------------------------------------------------------

void BM_engine(benchmark::State& state, Cell cell, bool fused = true) {
  if (!checked(state, cell, fused)) return;
  const Dims d = dims_of(state);
  const Problem p(cell, d);
  EngineModel m(p, DType::f32, fused);
  Tape::current().clear();
  for (auto _ : state) m.train_step();
  Tape::current().clear();
  set_counters(state, d);
  state.counters["tape_B_per_step"] = check(cell, d, fused).tape_bytes_per_step;
}

void BM_hand(benchmark::State& state, Cell cell, ref::WeightGrads w) {
  if (!checked(state, cell)) return;
  const Dims d = dims_of(state);
  HandModel m{Problem(cell, d), w};
  for (auto _ : state) {
    m.train_step();
    benchmark::ClobberMemory();
  }
  set_counters(state, d);
  state.counters["saved_B_per_step"] = double(HandModel::saved_bytes(cell, d, false)) / double(d.T);
  state.counters["workspace_B_per_step"] = double(HandModel::saved_bytes(cell, d, true)) / double(d.T);
}

// C (m,n) = beta C + op(A) op(B), row-major; a 1-row product as gemv (as the engine and hand code do).
void sgemm_rm(bool ta, bool tb, int m, int n, int k, const float* a, const float* b, float beta, float* c) {
  if (m == 1 && !ta) {
    cblas_sgemv(CblasRowMajor, tb ? CblasNoTrans : CblasTrans, tb ? n : k, tb ? k : n, 1.0f, b, tb ? k : n, a, 1, beta,
                c, 1);
    return;
  }
  cblas_sgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans, m, n, k, 1.0f, a,
              ta ? m : k, b, tb ? k : n, beta, c, n);
}

void BM_lstm_gemm_floor(benchmark::State& state) {
  const Dims d = dims_of(state);
  const int T = int(d.T), B = int(d.B), I = int(d.I), H = int(d.H), G = 4 * H, TB = T * B;
  std::vector<float> x(std::size_t(TB) * I, 0.5f), wx(std::size_t(I) * G, 0.01f), wh(std::size_t(H) * G, 0.01f),
      xp(std::size_t(TB) * G), h(std::size_t(T + 1) * B * H, 0.1f), dxp(std::size_t(TB) * G, 0.01f),
      dh(std::size_t(B) * H), dwx(wx.size()), dwh(wh.size()), dx(x.size());
  for (auto _ : state) {
    sgemm_rm(false, false, TB, G, I, x.data(), wx.data(), 0.0f, xp.data());  // x W_x, all steps at once
    for (int t = 0; t < T; ++t)  // + h_(t-1) W_h
      sgemm_rm(false, false, B, G, H, h.data() + std::size_t(t) * B * H, wh.data(), 1.0f, xp.data() + std::size_t(t) * B * G);
    for (int t = T; t-- > 0;) {
      const float* da = dxp.data() + std::size_t(t) * B * G;
      sgemm_rm(false, true, B, H, G, da, wh.data(), 0.0f, dh.data());  // dh = da W_h^T
      if (B >= 16) sgemm_rm(true, false, H, G, B, h.data() + std::size_t(t) * B * H, da, 1.0f, dwh.data());
    }
    if (B < 16) sgemm_rm(true, false, H, G, TB, h.data(), dxp.data(), 1.0f, dwh.data());  // dW_h, all steps
    sgemm_rm(true, false, I, G, TB, x.data(), dxp.data(), 0.0f, dwx.data());  // dW_x = x^T dxp
    sgemm_rm(false, true, TB, I, G, dxp.data(), wx.data(), 0.0f, dx.data());  // dx = dxp W_x^T
    benchmark::ClobberMemory();
  }
  set_counters(state, d);
}

// Resident set now, in kB (/proc/self/statm), and the process's peak so far (getrusage).
long rss_now_kb() {
  long pages = 0, resident = 0;
  if (FILE* f = std::fopen("/proc/self/statm", "r")) {
    if (std::fscanf(f, "%ld %ld", &pages, &resident) != 2) resident = 0;
    std::fclose(f);
  }
  return resident * (sysconf(_SC_PAGESIZE) / 1024);
}
long rss_peak_kb() {
  rusage u{};
  getrusage(RUSAGE_SELF, &u);
  return u.ru_maxrss;
}

// 1,000 engine training steps: the tape's bytes in use and peak, and the resident set, after step 10 and
// after step 1,000. Any growth of the tape, or more than 1 MB of resident set, is an error.
void BM_lstm_memory_engine(benchmark::State& state) {
  if (!checked(state, Cell::lstm)) return;
  const Dims d = dims_of(state);
  const Problem p(Cell::lstm, d);
  EngineModel m(p);
  Tape& tape = Tape::current();
  tape.clear();
  std::size_t in_use10 = 0, peak10 = 0;
  long rss10 = 0;
  std::int64_t k = 0;
  for (auto _ : state) {
    m.train_step();
    if (++k == 10) {
      tape.reset_peak();
      in_use10 = tape.bytes_in_use();
      peak10 = tape.peak_bytes();
      rss10 = rss_now_kb();
    }
  }
  const std::size_t in_use = tape.bytes_in_use(), peak = tape.peak_bytes();
  const long rss = rss_now_kb();
  tape.clear();
  set_counters(state, d);
  state.counters["steps"] = double(k);
  state.counters["tape_in_use_B_step10"] = double(in_use10);
  state.counters["tape_in_use_B_end"] = double(in_use);
  state.counters["tape_peak_B_step10"] = double(peak10);
  state.counters["tape_peak_B_end"] = double(peak);
  state.counters["tape_B_per_step"] = double(peak) / double(d.T);
  state.counters["hand_saved_B_per_step"] = double(HandModel::saved_bytes(Cell::lstm, d, false)) / double(d.T);
  state.counters["rss_kB_step10"] = double(rss10);
  state.counters["rss_kB_end"] = double(rss);
  state.counters["maxrss_kB"] = double(rss_peak_kb());
  if (k < 10) return;
  if (in_use > in_use10 || peak > peak10 || rss > rss10 + 1024)
    state.SkipWithError(("memory grew between step 10 and step " + std::to_string(k) + ": tape in use " +
                         std::to_string(in_use10) + " -> " + std::to_string(in_use) + " B, peak " + std::to_string(peak10) +
                         " -> " + std::to_string(peak) + " B, resident " + std::to_string(rss10) + " -> " +
                         std::to_string(rss) + " kB")
                            .c_str());
}

const bool registered = [] {
  using benchmark::RegisterBenchmark;
  for (const Config& c : grid()) {
    const std::vector<std::int64_t> args{std::int64_t(c.d.T), std::int64_t(c.d.B), std::int64_t(c.d.I),
                                         std::int64_t(c.d.H)};
    const std::string base = std::string("BM_") + cell_name(c.cell);
    const Cell cell = c.cell;
    RegisterBenchmark((base + "_engine").c_str(), [cell](benchmark::State& s) { BM_engine(s, cell); })
        ->Args(args)
        ->MeasureProcessCPUTime()
        ->Unit(benchmark::kMicrosecond);
    RegisterBenchmark((base + "_hand").c_str(),
                      [cell](benchmark::State& s) { BM_hand(s, cell, ref::WeightGrads::per_step); })
        ->Args(args)
        ->MeasureProcessCPUTime()
        ->Unit(benchmark::kMicrosecond);
    if (c.main)
      RegisterBenchmark((base + "_hand_fused").c_str(),
                        [cell](benchmark::State& s) { BM_hand(s, cell, ref::WeightGrads::fused); })
          ->Args(args)
          ->MeasureProcessCPUTime()
          ->Unit(benchmark::kMicrosecond);
    if ((cell == Cell::elman || cell == Cell::binadd) && c.d.B == 1)  // the default path: a node per step
      RegisterBenchmark((base + "_engine_steps").c_str(), [cell](benchmark::State& s) { BM_engine(s, cell, false); })
          ->Args(args)
          ->MeasureProcessCPUTime()
          ->Unit(benchmark::kMicrosecond);
    if (cell == Cell::lstm && c.main)
      RegisterBenchmark("BM_lstm_composed", [](benchmark::State& s) { BM_engine(s, Cell::lstm, false); })
          ->Args(args)
          ->MeasureProcessCPUTime()
          ->Unit(benchmark::kMicrosecond);
  }
  for (const Config& c : grid())
    if (c.cell == Cell::lstm && c.main && c.d.H == 256)
      RegisterBenchmark("BM_lstm_gemm_floor", BM_lstm_gemm_floor)
          ->Args({std::int64_t(c.d.T), std::int64_t(c.d.B), std::int64_t(c.d.I), std::int64_t(c.d.H)})
          ->MeasureProcessCPUTime()
          ->Unit(benchmark::kMicrosecond);
  RegisterBenchmark("BM_lstm_memory_engine", BM_lstm_memory_engine)
      ->Args({100, 1, 32, 64})
      ->Iterations(1000)
      ->Repetitions(1)
      ->Unit(benchmark::kMicrosecond);
  // Fixed iteration counts, for instruction counts under callgrind (scripts/bench.sh rnn-profile):
  //   valgrind --tool=callgrind --toggle-collect='*BM_engine*' bench_nn --benchmark_filter='^BM_profile_...'
  for (const auto& [cell, d, iters] : {std::tuple<Cell, Dims, int>{Cell::binadd, {8, 1, 2, 16}, 2000},
                                       {Cell::elman, {20, 1, 32, 64}, 200}, {Cell::lstm, {20, 1, 32, 64}, 200},
                                       {Cell::lstm, {20, 32, 128, 256}, 10}}) {
    const std::vector<std::int64_t> args{std::int64_t(d.T), std::int64_t(d.B), std::int64_t(d.I), std::int64_t(d.H)};
    const Cell cl = cell;
    RegisterBenchmark((std::string("BM_profile_") + cell_name(cell) + "_engine").c_str(),
                      [cl](benchmark::State& s) { BM_engine(s, cl); })
        ->Args(args)->Iterations(iters)->Repetitions(1)->Unit(benchmark::kMicrosecond);
    RegisterBenchmark((std::string("BM_profile_") + cell_name(cell) + "_hand").c_str(),
                      [cl](benchmark::State& s) { BM_hand(s, cl, ref::WeightGrads::per_step); })
        ->Args(args)->Iterations(iters)->Repetitions(1)->Unit(benchmark::kMicrosecond);
    RegisterBenchmark((std::string("BM_profile_") + cell_name(cell) + "_hand_fused").c_str(),
                      [cl](benchmark::State& s) { BM_hand(s, cl, ref::WeightGrads::fused); })
        ->Args(args)->Iterations(iters)->Repetitions(1)->Unit(benchmark::kMicrosecond);
  }
  return true;
}();

}  // namespace
