// Per-op overhead of the tape: record + backward of a chain of small elementwise/activation ops.
//
// The chain (100 ops, then sum): for k = 0..99, step k % 3 is
//   0: y = y * w_j     1: y = tanh(y)     2: y = y + b_j
// with y_0 = x, every w_j, b_j a 1xW parameter; loss = sum(y_100); backward(loss). That is 101 recorded
// nodes (34 mul, 33 tanh, 33 add, 1 sum); "ns_per_op" is the time of one iteration divided by 101.
//
// At W = 16 the arithmetic is a few ns per op, so the figure is the engine's fixed cost per op (target
// 0.1 us record+backward; DyNet ~0.12 us, LibTorch 1.13 ~3.4 us on this machine). W = 256 adds
// arithmetic, which separates the fixed overhead from the per-element cost.
//
//   BM_tape_chain/W         record + backward(sum(y)), the training-step pattern (the headline figure)
//   BM_tape_chain_record/W  record only, then Tape::clear() (backward = chain - record)
//   BM_tape_chain_nograd/W  forward only under NoGrad (owned tensors, nothing recorded)
//   BM_tape_chain_profile/16, BM_tape_chain_nograd_profile/16
//                           a fixed 2000 iterations (for callgrind), not in the tables
//   BM_tape_chain_raw/W     the same forward and hand-written backward as plain loops on preallocated
//                           buffers: the arithmetic floor (tanh as Eigen's rational approximation,
//                           vectorised; libm's scalar tanhf alone would cost ~15 ns a value)
//
// Before timing, each bench checks its answer (loss and every parameter's gradient) against the
// hand-written adjoint in double precision, and reports an error instead of a figure if it differs.
#include <benchmark/benchmark.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "tapegrad/autograd/tape.hpp"
#include "tapegrad/ops/activation.hpp"
#include "tapegrad/ops/elementwise.hpp"
#include "tapegrad/ops/reduce.hpp"

namespace {

using namespace tapegrad;

constexpr int kChainOps = 100;
constexpr int kMuls = (kChainOps + 2) / 3;  // steps 0, 3, ..., 99
constexpr int kTanhs = (kChainOps + 1) / 3;
constexpr int kAdds = kChainOps / 3;
static_assert(kMuls + kTanhs + kAdds == kChainOps);
constexpr int kNodes = kChainOps + 1;  // + sum
constexpr std::uint64_t kSeed = 2024;

// ns per op, from the iteration (CPU) time: value * iterations / time, inverted, with value = kNodes * 1e-9.
// (The console prints an inverted rate with an "s" suffix: "ns_per_op=202s" reads 202 ns per op.)
void set_per_op_counters(benchmark::State& state) {
  state.counters["ns_per_op"] = benchmark::Counter(kNodes * 1e-9, benchmark::Counter::kIsIterationInvariantRate |
                                                                      benchmark::Counter::kInvert);
  state.counters["ops"] = kNodes;
}

// The parameters, as owned tensors, and the chain through the engine.
struct Chain {
  Tensor x;
  std::vector<Tensor> w, b;

  explicit Chain(std::size_t width) {
    Generator gen(kSeed);
    const Shape s{1, width};
    x = parameter(randn(s, gen, 1.0, DType::f32));
    for (int j = 0; j < kMuls; ++j) w.push_back(parameter(uniform(s, 0.5, 1.5, gen, DType::f32)));
    for (int j = 0; j < kAdds; ++j) b.push_back(parameter(randn(s, gen, 0.1, DType::f32)));
  }

  Tensor forward() const {
    Tensor y = x;
    for (int k = 0; k < kChainOps; ++k) {
      switch (k % 3) {
        case 0: y = y * w[k / 3]; break;
        case 1: y = tanh(y); break;
        default: y = y + b[k / 3]; break;
      }
    }
    return sum(y);
  }
};

// tanh for the raw float loops: Eigen's fast float tanh (a 13/6 rational approximation on [-7.9, 7.9],
// within a few ulp; Eigen also returns a itself for |a| < 4e-4, where p/q is within an ulp anyway).
// Under GCC's default -ftrapping-math the clamp's compares stay branches and the loop is not vectorised
// (scalar, it cost ~3x the engine's xsimd tanh); this one kernel opts out of trapping math.
#if defined(__GNUC__) && !defined(__clang__)
#define TAPEGRAD_BENCH_NO_TRAPPING_MATH __attribute__((optimize("no-trapping-math")))
#else
#define TAPEGRAD_BENCH_NO_TRAPPING_MATH
#endif
TAPEGRAD_BENCH_NO_TRAPPING_MATH void tanh_kernel(float* __restrict out, const float* __restrict in, std::size_t n) {
  for (std::size_t i = 0; i < n; ++i) {
    constexpr float c = 7.90531110763549805f;  // (not std::min/max: GCC will not inline them into a
    const float a = in[i];                      //  function with its own optimize attribute)
    const float x = a < -c ? -c : (a > c ? c : a);
    const float x2 = x * x;
    float p = x2 * -2.76076847742355e-16f + 2.00018790482477e-13f;
    p = x2 * p + -8.60467152213735e-11f;
    p = x2 * p + 5.12229709037114e-08f;
    p = x2 * p + 1.48572235717979e-05f;
    p = x2 * p + 6.37261928875436e-04f;
    p = x2 * p + 4.89352455891786e-03f;
    p = x * p;
    float q = x2 * 1.19825839466702e-06f + 1.18534705686654e-04f;
    q = x2 * q + 2.26843463243900e-03f;
    q = x2 * q + 4.89352518554385e-03f;
    out[i] = p / q;
  }
}
void tanh_kernel(double* out, const double* in, std::size_t n) {  // the double reference stays exact
  for (std::size_t i = 0; i < n; ++i) out[i] = std::tanh(in[i]);
}

// The same chain as plain loops: forward keeps every intermediate (as the tape does), backward is the
// hand-written adjoint, accumulating into the gradients (+=) as the engine does.
template <class T> struct RawChain {
  std::size_t n;
  std::vector<T> x, gx;
  std::vector<std::vector<T>> w, b, gw, gb, ys;
  std::vector<T> g;

  RawChain(const Chain& c, std::size_t width) : n(width), gx(width, T(0)), g(width) {
    auto values = [](const Tensor& t) {
      const auto v = t.to_vector();
      return std::vector<T>(v.begin(), v.end());
    };
    x = values(c.x);
    for (const auto& t : c.w) w.push_back(values(t));
    for (const auto& t : c.b) b.push_back(values(t));
    gw.assign(w.size(), std::vector<T>(n, T(0)));
    gb.assign(b.size(), std::vector<T>(n, T(0)));
    ys.assign(kChainOps + 1, std::vector<T>(n));
  }

  T forward() {
    std::copy(x.begin(), x.end(), ys[0].begin());
    for (int k = 0; k < kChainOps; ++k) {
      const T* in = ys[k].data();
      T* out = ys[k + 1].data();
      switch (k % 3) {
        case 0: { const T* wj = w[k / 3].data(); for (std::size_t i = 0; i < n; ++i) out[i] = in[i] * wj[i]; } break;
        case 1: tanh_kernel(out, in, n); break;
        default: { const T* bj = b[k / 3].data(); for (std::size_t i = 0; i < n; ++i) out[i] = in[i] + bj[i]; } break;
      }
    }
    T loss = 0;
    for (std::size_t i = 0; i < n; ++i) loss += ys[kChainOps][i];
    return loss;
  }

  void backward() {
    std::fill(g.begin(), g.end(), T(1));  // d sum / d y = 1
    for (int k = kChainOps - 1; k >= 0; --k) {
      const T* in = ys[k].data();
      const T* out = ys[k + 1].data();
      switch (k % 3) {
        case 0: {  // y = u w: gw += g u, gu = g w
          const T* wj = w[k / 3].data();
          T* gwj = gw[k / 3].data();
          for (std::size_t i = 0; i < n; ++i) {
            gwj[i] += g[i] * in[i];
            g[i] *= wj[i];
          }
        } break;
        case 1:  // y = tanh u: gu = g (1 - y^2)
          for (std::size_t i = 0; i < n; ++i) g[i] *= T(1) - out[i] * out[i];
          break;
        default: {  // y = u + b: gb += g, gu = g
          T* gbj = gb[k / 3].data();
          for (std::size_t i = 0; i < n; ++i) gbj[i] += g[i];
        } break;
      }
    }
    for (std::size_t i = 0; i < n; ++i) gx[i] += g[i];
  }
};

// Max |got - want| over the values, against a tolerance relative to the largest |want| (at least 1).
template <class T> bool close(const std::vector<double>& got, const std::vector<T>& want, std::string& why,
                              const std::string& what) {
  double scale = 1, diff = 0;
  for (std::size_t i = 0; i < want.size(); ++i) {
    scale = std::max(scale, std::abs(double(want[i])));
    diff = std::max(diff, std::abs(got[i] - double(want[i])));
  }
  if (got.size() == want.size() && diff <= 1e-4 * scale) return true;
  why = what + ": max abs diff " + std::to_string(diff) + " against the hand-written adjoint (scale " +
        std::to_string(scale) + ")";
  return false;
}

// Engine (record + backward) and raw float loops, both against the double-precision adjoint. Empty when
// both agree. Computed once per width.
std::string check_chain(std::size_t width) {
  static std::map<std::size_t, std::string> cache;
  if (auto it = cache.find(width); it != cache.end()) return it->second;
  std::string why;
  try {
    Chain c(width);  // fresh parameters: gradients start at zero
    RawChain<double> ref(c, width);
    const double want_loss = ref.forward();
    ref.backward();

    Tape::current().clear();
    Tensor loss = c.forward();
    if (Tape::current().num_nodes() != static_cast<std::size_t>(kNodes))
      why = "engine recorded " + std::to_string(Tape::current().num_nodes()) + " nodes, expected " +
            std::to_string(kNodes);
    const bool ok = why.empty() && close(loss.to_vector(), std::vector<double>{want_loss}, why, "engine loss");
    if (ok) {
      backward(loss);
      bool good = close(c.x.grad().to_vector(), ref.gx, why, "engine d/dx");
      for (int j = 0; good && j < kMuls; ++j)
        good = close(c.w[j].grad().to_vector(), ref.gw[j], why, "engine d/dw" + std::to_string(j));
      for (int j = 0; good && j < kAdds; ++j)
        good = close(c.b[j].grad().to_vector(), ref.gb[j], why, "engine d/db" + std::to_string(j));
      if (good) {
        NoGrad guard;
        close(c.forward().to_vector(), std::vector<double>{want_loss}, why, "engine no_grad loss");
      }
    }
    if (why.empty()) {
      RawChain<float> raw(c, width);
      const float raw_loss = raw.forward();
      raw.backward();
      bool good = close(std::vector<double>{raw_loss}, std::vector<double>{want_loss}, why, "raw loss");
      good = good && close(std::vector<double>(raw.gx.begin(), raw.gx.end()), ref.gx, why, "raw d/dx");
    }
  } catch (const std::exception& e) {
    why = std::string("exception: ") + e.what();
  }
  Tape::current().clear();
  return cache[width] = why;
}

bool checked(benchmark::State& state) {
  const std::string why = check_chain(static_cast<std::size_t>(state.range(0)));
  if (!why.empty()) state.SkipWithError(why.c_str());
  return why.empty();
}

void BM_tape_chain(benchmark::State& state) {
  if (!checked(state)) return;
  Chain c(static_cast<std::size_t>(state.range(0)));
  Tape::current().clear();
  for (auto _ : state) {
    Tensor loss = c.forward();
    backward(loss);
  }
  Tape::current().clear();
  set_per_op_counters(state);
}

void BM_tape_chain_record(benchmark::State& state) {
  if (!checked(state)) return;
  Chain c(static_cast<std::size_t>(state.range(0)));
  Tape& tape = Tape::current();
  tape.clear();
  for (auto _ : state) {
    Tensor loss = c.forward();
    benchmark::DoNotOptimize(loss.raw_data());
    tape.clear();
  }
  set_per_op_counters(state);
}

void BM_tape_chain_nograd(benchmark::State& state) {
  if (!checked(state)) return;
  Chain c(static_cast<std::size_t>(state.range(0)));
  NoGrad guard;
  for (auto _ : state) {
    Tensor loss = c.forward();
    benchmark::DoNotOptimize(loss.raw_data());
  }
  set_per_op_counters(state);
}

void BM_tape_chain_raw(benchmark::State& state) {
  if (!checked(state)) return;
  Chain c(static_cast<std::size_t>(state.range(0)));
  RawChain<float> raw(c, static_cast<std::size_t>(state.range(0)));
  for (auto _ : state) {
    benchmark::DoNotOptimize(raw.forward());
    raw.backward();
    benchmark::ClobberMemory();
  }
  set_per_op_counters(state);
}

BENCHMARK(BM_tape_chain)->Arg(16)->Arg(256);
// The same loops, a fixed 2000 iterations in one run, for instruction counts (scripts/bench.sh profile):
//   valgrind --tool=callgrind --toggle-collect='*BM_tape_chain*' bench_autograd --benchmark_filter=...
// Ir per op = collected Ir / (2000 * 101).
BENCHMARK(BM_tape_chain)->Name("BM_tape_chain_profile")->Arg(16)->Iterations(2000)->Repetitions(1);
BENCHMARK(BM_tape_chain_nograd)->Name("BM_tape_chain_nograd_profile")->Arg(16)->Iterations(2000)->Repetitions(1);
BENCHMARK(BM_tape_chain_record)->Arg(16)->Arg(256);
BENCHMARK(BM_tape_chain_nograd)->Arg(16)->Arg(256);
BENCHMARK(BM_tape_chain_raw)->Arg(16)->Arg(256);

}  // namespace
