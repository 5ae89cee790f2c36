// Linalg family: matmul through cblas. One node per product; backward accumulates straight into the
// gradient buffers (dA += dC B^T, dB += A^T dC; beta = 0 into a fresh buffer). 1-row: gemv (forward,
// dA) and ger (dB), or as plain loops when the matrix is small: OpenBLAS 0.3.21 does not route 1-row gemm
// to gemv, and is 3-4x slower there.
#include "tapegrad/ops/linalg.hpp"

#include <algorithm>
#include <climits>
#include <cstring>
#include <functional>
#include <string>
#include <vector>

#include "tapegrad/autograd/op.hpp"
#include "tapegrad/ops/blas.hpp"
#include "tapegrad/ops/lanes.hpp"
#include "tapegrad/ops/shape.hpp"

namespace tapegrad {

TAPEGRAD_OP(op_matmul, "matmul", "linalg");
TAPEGRAD_OP(op_addmm, "addmm", "linalg");

namespace {

using blas::gemm;
using blas::gemv;
using blas::ger;

// Below this many weights a 1-row product runs as plain loops: OpenBLAS's gemv/ger call overhead is
// several times the arithmetic of a 16x16 matrix (binary addition's), and from about 64x256 up the
// loops and BLAS run at the same (memory) speed.
constexpr std::size_t kSmall = 4096;

// y (n) += x (k) B (k, n), by rows of B (vectorised over n).
template <class T> void row_times(std::size_t k, std::size_t n, const T* x, const T* b, T* y) {
  for (std::size_t i = 0; i < k; ++i) {
    const T xi = x[i];
    const T* __restrict br = b + i * n;
    T* __restrict yr = y;
    for (std::size_t j = 0; j < n; ++j) yr[j] += xi * br[j];
  }
}

// y (k) += B (k, n) g (n): one dot product per row of B.
template <class T> void times_row(std::size_t k, std::size_t n, const T* b, const T* g, T* y) {
  for (std::size_t i = 0; i < k; ++i) {
    const T* br = b + i * n;
    y[i] += kernels::lanes_reduce(n, T(0), [br, g](std::size_t j) { return br[j] * g[j]; }, std::plus<T>());
  }
}

// C (m, n) = beta C + A (m, k) B (k, n), beta 0 or 1 (with 0, C is not read).
template <class T>
void product(std::size_t m, std::size_t k, std::size_t n, const T* a, const T* b, T* c, T beta) {
  if (m == 1 || k == 0) {
    // One row: OpenBLAS's gemv scales y by beta = 0 (NaN * 0 stays NaN in stale memory), so zero it here.
    // k = 0: an empty sum (BLAS would reject lda = 0).
    if (beta == T(0)) std::fill_n(c, m * n, T(0));
    if (k == 0) return;
    if (k * n <= kSmall) row_times(k, n, a, b, c);
    else gemv(CblasTrans, k, n, b, a, T(1), c);  // c^T += B^T a^T
  } else {
    gemm(CblasNoTrans, CblasNoTrans, m, n, k, a, k, b, n, beta, c, n);
  }
}

// dA (m, k) += G (m, n) B^T; beta = 0 (dA = ...) when dA is a fresh, uninitialised buffer.
template <class T> void grad_a(std::size_t m, std::size_t k, std::size_t n, const T* g, const T* b, T* da, T beta) {
  if (m == 1) {
    if (beta == T(0)) std::fill_n(da, k, T(0));  // as in product(): gemv and the loop add
    if (k * n <= kSmall) times_row(k, n, b, g, da);
    else gemv(CblasNoTrans, k, n, b, g, T(1), da);  // da^T += B g^T
  } else {
    gemm(CblasNoTrans, CblasTrans, m, k, n, g, n, b, n, beta, da, k);  // beta = 0: C is not read
  }
}

// dB (k, n) += A^T G (m, n); beta as above.
template <class T> void grad_b(std::size_t m, std::size_t k, std::size_t n, const T* a, const T* g, T* db, T beta) {
  if (m == 1) {
    if (beta == T(0)) std::fill_n(db, k * n, T(0));
    if (k * n <= kSmall) {
      // A small rank-1 update as a plain (vectorised) loop: OpenBLAS's ger makes one axpy call per row,
      // 3-5x slower for 16x16 (binary addition's recurrent matrix); from 64x256 up both run at memory speed.
      for (std::size_t i = 0; i < k; ++i) {
        const T ai = a[i];
        T* __restrict row = db + i * n;
        const T* __restrict gr = g;
        for (std::size_t j = 0; j < n; ++j) row[j] += ai * gr[j];
      }
    } else {
      ger(k, n, a, g, db);  // rank-1 update a^T g
    }
  } else {
    gemm(CblasTrans, CblasNoTrans, k, n, m, a, k, g, n, beta, db, n);
  }
}

// The deferred dB += A^T G of several thin products into one weight's gradient (BackwardCtx::defer): the
// rows of every A and every G stacked, then one GEMM over all of them, where each product alone would be
// a ger or a GEMM with an inner size of a few rows.
struct ThinProduct {  // one deferred dB += A^T G, A (m,k) and G (m,n) in tape memory
  const void* a;
  const void* g;
  std::size_t m, k, n;
};
template <class T> void stacked_grad_b(void* grad, const void* const* payloads, std::size_t count) {
  T* db = static_cast<T*>(grad);
  const auto product = [payloads](std::size_t i) -> const ThinProduct& {
    return *static_cast<const ThinProduct*>(payloads[i]);
  };
  const std::size_t k = product(0).k, n = product(0).n;
  if (count == 1) {
    const ThinProduct& u = product(0);
    grad_b(u.m, k, n, static_cast<const T*>(u.a), static_cast<const T*>(u.g), db, T(1));
    return;
  }
  std::size_t rows = 0;
  for (std::size_t i = 0; i < count; ++i) rows += product(i).m;
  thread_local std::vector<T> a_rows, g_rows;
  a_rows.resize(rows * k);
  g_rows.resize(rows * n);
  for (std::size_t i = 0, r = 0; i < count; r += product(i).m, ++i) {
    std::copy_n(static_cast<const T*>(product(i).a), product(i).m * k, a_rows.data() + r * k);
    std::copy_n(static_cast<const T*>(product(i).g), product(i).m * n, g_rows.data() + r * n);
  }
  gemm(CblasTrans, CblasNoTrans, k, n, rows, a_rows.data(), k, g_rows.data(), n, T(1), db, n);
}

// Defers a thin product's dB into a leaf; false when the engine will not take it.
template <class T>
bool defer_grad_b(BackwardCtx& c, std::size_t ib, const T* a, const T* g, std::size_t m, std::size_t k, std::size_t n) {
  ThinProduct* u = c.scratch<ThinProduct>(1);
  *u = {a, g, m, k, n};
  return c.defer(ib, stacked_grad_b<T>, u);
}

// Thin products (fewer rows than this) into a weight bigger than kSmall defer their weight gradient.
constexpr std::size_t kThin = 16;

// The backward of C = A B for the node's inputs ia (A) and ib (B), `batches` products of (m,k)x(k,n):
// dA += G B^T, dB += A^T G. Each pass writes all of its buffer, so a fresh one is written with beta = 0;
// a thin product's dB into a leaf is deferred (stacked_grad_b).
template <class T>
void product_grads(BackwardCtx& c, std::size_t ia, std::size_t ib, std::size_t batches, std::size_t m, std::size_t k,
                   std::size_t n) {
  const T *g = c.gout<T>(), *a = c.in<T>(ia), *b = c.in<T>(ib);
  bool fresh = false;
  if (c.needs(ia)) {
    T* da = c.grad_for_write<T>(ia, fresh);
    const T beta = fresh ? T(0) : T(1);
    for (std::size_t t = 0; t < batches; ++t) grad_a(m, k, n, g + t * m * n, b + t * k * n, da + t * m * k, beta);
  }
  if (c.needs(ib) &&
      !(batches == 1 && m < kThin && k * n > kSmall && defer_grad_b(c, ib, a, g, m, k, n))) {
    T* db = c.grad_for_write<T>(ib, fresh);
    const T beta = fresh ? T(0) : T(1);
    for (std::size_t t = 0; t < batches; ++t) grad_b(m, k, n, a + t * m * k, g + t * m * n, db + t * k * n, beta);
  }
}

struct ProductAttrs {  // `batches` products of (m, k) x (k, n)
  std::size_t batches, m, k, n;
};

[[noreturn]] void bad_shapes(const Tensor& a, const Tensor& b, const std::string& why) {
  throw Error("matmul: cannot multiply " + a.shape().str() + " by " + b.shape().str() + ": " + why);
}

}  // namespace

// C = A B.  dA = dC B^T,  dB = A^T dC  (per batch; summed over the batch for a shared weight).
Tensor matmul(const Tensor& a, const Tensor& b) {
  if (!a.defined() || !b.defined())
    throw Error(std::string("matmul: input ") + (a.defined() ? "1" : "0") + " is undefined");
  const Shape &sa = a.shape(), &sb = b.shape();
  const std::size_t ra = sa.rank(), rb = sb.rank();
  if (!((ra == 2 && rb == 2) || (ra == 3 && rb == 3) || (ra == 3 && rb == 2)))
    bad_shapes(a, b, "expected (M,K)x(K,N), (B,M,K)x(B,K,N) or (B,M,K)x(K,N)");
  const std::size_t k = sa[ra - 1];
  if (sb[rb - 2] != k)
    bad_shapes(a, b, "inner dimensions " + std::to_string(k) + " and " + std::to_string(sb[rb - 2]) + " differ");
  if (ra == 3 && rb == 3 && sa[0] != sb[0])
    bad_shapes(a, b, "batch sizes " + std::to_string(sa[0]) + " and " + std::to_string(sb[0]) + " differ");

  // Batched: `batches` products of (m,k)x(k,n), b advancing per batch. 2-D and shared weight: one product,
  // the shared weight's batch folded into the rows.
  const bool batched = ra == 3 && rb == 3;
  const std::size_t batches = batched ? sa[0] : 1;
  const std::size_t m = batched ? sa[1] : (ra == 3 ? sa[0] * sa[1] : sa[0]);
  const std::size_t n = sb[rb - 1];
  for (std::size_t d : {m, k, n})
    if (d > std::size_t(INT_MAX)) bad_shapes(a, b, "a dimension exceeds the BLAS int range");
  OpCall call(op_matmul, {&a, &b});
  Shape out;
  for (std::size_t i = 0; i + 1 < ra; ++i) out.push_back(sa[i]);
  out.push_back(n);
  call.attrs<ProductAttrs>() = {batches, m, k, n};

  Tensor y = call.output(out);
  dispatch(call.dtype(), [&](auto z) {
    using T = decltype(z);
    const T* pa = static_cast<const T*>(a.raw_data());
    const T* pb = static_cast<const T*>(b.raw_data());
    T* py = y.data<T>();
    if (m == 0 || n == 0) return;
    for (std::size_t t = 0; t < batches; ++t) product(m, k, n, pa + t * m * k, pb + t * k * n, py + t * m * n, T(0));
  });

  call.record(
      [](BackwardCtx& c) {
        const ProductAttrs p = c.attrs<ProductAttrs>();
        if (p.m == 0 || p.n == 0 || p.k == 0) return;  // every gradient is an empty sum
        dispatch(c.dtype(), [&](auto z) { product_grads<decltype(z)>(c, 0, 1, p.batches, p.m, p.k, p.n); });
      },
      [](GraphCtx& g) {
        const Tensor a = g.in(0), b = g.in(1);
        if (g.needs(0)) g.accumulate(0, matmul(g.gout(), transpose(b)));
        if (g.needs(1)) {
          if (a.rank() == 3 && b.rank() == 2) {  // shared weight: fold the batch into the rows
            const Shape sa = a.shape();
            const Tensor a2 = reshape(a, Shape{sa[0] * sa[1], sa[2]});
            const Tensor g2 = reshape(g.gout(), Shape{sa[0] * sa[1], b.shape()[1]});
            g.accumulate(1, matmul(transpose(a2), g2));
          } else {
            g.accumulate(1, matmul(transpose(a), g.gout()));
          }
        }
      });
  return y;
}

// Y = C + A B.  dC = dY,  dA = dY B^T,  dB = A^T dY.
Tensor addmm(const Tensor& c, const Tensor& a, const Tensor& b) {
  if (!c.defined() || !a.defined() || !b.defined())
    throw Error(std::string("addmm: input ") + (!c.defined() ? "0" : !a.defined() ? "1" : "2") + " is undefined");
  if (a.rank() != 2 || b.rank() != 2 || c.rank() != 2 || a.size(1) != b.size(0) || c.size(0) != a.size(0) ||
      c.size(1) != b.size(1))
    throw Error("addmm: c + a b needs c (M,N), a (M,K), b (K,N); got c " + c.shape().str() + ", a " + a.shape().str() +
                ", b " + b.shape().str());
  const std::size_t m = a.size(0), k = a.size(1), n = b.size(1);
  for (std::size_t d : {m, k, n})
    if (d > std::size_t(INT_MAX)) throw Error("addmm: a dimension of a " + a.shape().str() + " or b " + b.shape().str() + " exceeds the BLAS int range");
  OpCall call(op_addmm, {&c, &a, &b});
  Tensor y = call.output({m, n});
  dispatch(call.dtype(), [&](auto z) {
    using T = decltype(z);
    T* py = y.data<T>();
    std::copy_n(static_cast<const T*>(c.raw_data()), m * n, py);
    if (m == 0 || n == 0) return;
    product(m, k, n, static_cast<const T*>(a.raw_data()), static_cast<const T*>(b.raw_data()), py, T(1));
  });
  call.record(
      [](BackwardCtx& c) {
        const std::size_t m = c.out_shape()[0], n = c.out_shape()[1], k = c.in_shape(1)[1];
        dispatch(c.dtype(), [&](auto z) {
          using T = decltype(z);
          if (c.needs(0)) c.accumulate<T>(0, c.gout<T>(), c.out_shape());
          if (m == 0 || n == 0 || k == 0) return;
          product_grads<T>(c, 1, 2, 1, m, k, n);
        });
      },
      [](GraphCtx& g) {
        g.accumulate(0, g.gout());
        if (g.needs(1)) g.accumulate(1, matmul(g.gout(), transpose(g.in(2))));
        if (g.needs(2)) g.accumulate(2, matmul(transpose(g.in(1)), g.gout()));
      });
  return y;
}

}  // namespace tapegrad
