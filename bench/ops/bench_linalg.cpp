// matmul + backward through the engine against the same three products called on raw cblas, float32:
//   C = A B,  dA += dC B^T,  dB += A^T dC     (gemm; for a 1-row A: gemv, gemv, ger)
//
//   BM_matmul_engine/N      BM_matmul_cblas/N        (N x N) x (N x N), N = 64 ... 1024
//   BM_matmul_row_engine/K  BM_matmul_row_cblas/K    (1 x K) x (K x K), K = 64 ... 1024 (batch 1)
//
// The engine side is what a training step pays: matmul records a node and writes C into the tape arena,
// backward(C, dC) copies the seed and runs the node's backward into the leaves' gradient buffers. Both
// sides accumulate into their gradients (beta = 1) on every iteration, so they do the same arithmetic.
// Engine and cblas run side by side in one process, registered in pairs, so their ratio is meaningful
// even when absolute times drift.
//
// Before timing, every bench checks that the engine's C, dA and dB equal the raw cblas ones (max abs
// difference within 1e-4 of the largest value) and reports an error instead of a figure if not.
#include <cblas.h>

#include <benchmark/benchmark.h>

#include <algorithm>
#include <cmath>
#include <map>
#include <random>
#include <string>
#include <tuple>
#include <vector>

#include "tapegrad/autograd/tape.hpp"
#include "tapegrad/ops/linalg.hpp"

namespace {

using namespace tapegrad;

const int kSizes[] = {64, 128, 256, 512, 1024};

struct Problem {
  int m, k, n;
  std::vector<float> a, b, dc;

  Problem(int m_, int k_, int n_) : m(m_), k(k_), n(n_) {
    std::mt19937 gen(static_cast<unsigned>(m * 7919 + k * 31 + n));
    std::normal_distribution<float> normal(0.0f, 1.0f);
    auto fill = [&](std::vector<float>& v, std::size_t size) {
      v.resize(size);
      for (auto& x : v) x = normal(gen);
    };
    fill(a, std::size_t(m) * k);
    fill(b, std::size_t(k) * n);
    fill(dc, std::size_t(m) * n);
  }
  double flops() const { return 3.0 * 2.0 * m * k * n; }  // three products of 2 m k n each
};

// The raw baseline: the forward product and the two backward products, accumulating into da, db.
void cblas_step(const Problem& p, float* c, float* da, float* db) {
  const int m = p.m, k = p.k, n = p.n;
  if (m == 1) {
    cblas_sgemv(CblasRowMajor, CblasTrans, k, n, 1.0f, p.b.data(), n, p.a.data(), 1, 0.0f, c, 1);     // c = B^T a
    cblas_sgemv(CblasRowMajor, CblasNoTrans, k, n, 1.0f, p.b.data(), n, p.dc.data(), 1, 1.0f, da, 1);  // da += B dc
    cblas_sger(CblasRowMajor, k, n, 1.0f, p.a.data(), 1, p.dc.data(), 1, db, n);                        // dB += a dc^T
    return;
  }
  cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, m, n, k, 1.0f, p.a.data(), k, p.b.data(), n, 0.0f, c, n);
  cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, m, k, n, 1.0f, p.dc.data(), n, p.b.data(), n, 1.0f, da, k);
  cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, k, n, m, 1.0f, p.a.data(), k, p.dc.data(), n, 1.0f, db, n);
}

struct EngineSide {
  Tensor a, b, seed;
  explicit EngineSide(const Problem& p)
      : a(parameter(from_data(p.a.data(), Shape{std::size_t(p.m), std::size_t(p.k)}))),
        b(parameter(from_data(p.b.data(), Shape{std::size_t(p.k), std::size_t(p.n)}))),
        seed(from_data(p.dc.data(), Shape{std::size_t(p.m), std::size_t(p.n)})) {}
};

// Max |got - want| within 1e-4 of the largest |want| (at least 1).
bool close(const float* got, const std::vector<float>& want, const char* what, std::string& why) {
  double scale = 1, diff = 0;
  for (std::size_t i = 0; i < want.size(); ++i) {
    scale = std::max(scale, double(std::abs(want[i])));
    diff = std::max(diff, double(std::abs(got[i] - want[i])));
  }
  if (diff <= 1e-4 * scale) return true;
  why = std::string(what) + ": engine and cblas differ by " + std::to_string(diff) + " (scale " +
        std::to_string(scale) + ")";
  return false;
}

// Empty when the engine's C, dA, dB equal cblas's; computed once per shape.
std::string check_matmul(int m, int k, int n) {
  static std::map<std::tuple<int, int, int>, std::string> cache;
  const auto key = std::make_tuple(m, k, n);
  if (auto it = cache.find(key); it != cache.end()) return it->second;
  std::string why;
  try {
    const Problem p(m, k, n);
    std::vector<float> c(std::size_t(m) * n), da(std::size_t(m) * k, 0.0f), db(std::size_t(k) * n, 0.0f);
    cblas_step(p, c.data(), da.data(), db.data());

    EngineSide e(p);  // fresh leaves: gradients start at zero
    Tape::current().clear();
    Tensor ce = matmul(e.a, e.b);
    if (ce.shape() != Shape{std::size_t(m), std::size_t(n)}) {
      why = "engine output shape " + ce.shape().str();
    } else if (close(ce.data<float>(), c, "C", why)) {
      backward(ce, e.seed);
      if (!e.a.grad().defined() || !e.b.grad().defined()) why = "engine left a gradient undefined";
      else if (close(e.a.grad().data<float>(), da, "dA", why)) close(e.b.grad().data<float>(), db, "dB", why);
    }
  } catch (const std::exception& ex) {
    why = std::string("exception: ") + ex.what();
  }
  Tape::current().clear();
  return cache[key] = why;
}

void set_counters(benchmark::State& state, const Problem& p) {
  state.counters["flops"] = benchmark::Counter(p.flops(), benchmark::Counter::kIsIterationInvariantRate);
}

void matmul_engine(benchmark::State& state, int m, int k, int n) {
  if (const std::string why = check_matmul(m, k, n); !why.empty()) {
    state.SkipWithError(why.c_str());
    return;
  }
  const Problem p(m, k, n);
  EngineSide e(p);
  Tape::current().clear();
  for (auto _ : state) {
    Tensor c = matmul(e.a, e.b);
    backward(c, e.seed);
  }
  Tape::current().clear();
  set_counters(state, p);
}

void matmul_cblas(benchmark::State& state, int m, int k, int n) {
  if (const std::string why = check_matmul(m, k, n); !why.empty()) {
    state.SkipWithError(why.c_str());
    return;
  }
  const Problem p(m, k, n);
  std::vector<float> c(std::size_t(m) * n), da(std::size_t(m) * k, 0.0f), db(std::size_t(k) * n, 0.0f);
  for (auto _ : state) {
    cblas_step(p, c.data(), da.data(), db.data());
    benchmark::ClobberMemory();
  }
  set_counters(state, p);
}

void BM_matmul_engine(benchmark::State& s) { const int n = int(s.range(0)); matmul_engine(s, n, n, n); }
void BM_matmul_cblas(benchmark::State& s) { const int n = int(s.range(0)); matmul_cblas(s, n, n, n); }
void BM_matmul_row_engine(benchmark::State& s) { const int k = int(s.range(0)); matmul_engine(s, 1, k, k); }
void BM_matmul_row_cblas(benchmark::State& s) { const int k = int(s.range(0)); matmul_cblas(s, 1, k, k); }

// Engine and cblas registered in pairs, size by size, so each pair runs back to back.
const bool registered = [] {
  for (const int n : kSizes) {
    benchmark::RegisterBenchmark("BM_matmul_engine", BM_matmul_engine)->Arg(n)->Unit(benchmark::kMicrosecond);
    benchmark::RegisterBenchmark("BM_matmul_cblas", BM_matmul_cblas)->Arg(n)->Unit(benchmark::kMicrosecond);
  }
  for (const int k : kSizes) {
    benchmark::RegisterBenchmark("BM_matmul_row_engine", BM_matmul_row_engine)->Arg(k)->Unit(benchmark::kMicrosecond);
    benchmark::RegisterBenchmark("BM_matmul_row_cblas", BM_matmul_row_cblas)->Arg(k)->Unit(benchmark::kMicrosecond);
  }
  return true;
}();

}  // namespace
