// Linalg family: matmul through cblas. One node per product; backward accumulates straight into the
// gradient buffers (dA += dC B^T, dB += A^T dC; beta = 0 into a fresh buffer). 1-row: xsimd loops when the
// matrix is small, else blas::product's routing (gemv for the forward and dA, ger for dB), which the hand
// BPTT shares: OpenBLAS 0.3.21 does not route 1-row gemm to gemv, and is 3-4x slower there.
#include "tapegrad/ops/linalg.hpp"

#include <algorithm>
#include <climits>
#include <cstring>
#include <functional>
#include <string>
#include <vector>
#include <xsimd/xsimd.hpp>

#include "tapegrad/autograd/op.hpp"
#include "tapegrad/ops/batching.hpp"
#include "tapegrad/ops/blas.hpp"
#include "tapegrad/ops/lanes.hpp"
#include "tapegrad/ops/products.hpp"
#include "tapegrad/ops/shape.hpp"

namespace tapegrad {

TAPEGRAD_OP(op_matmul, "matmul", "linalg");
TAPEGRAD_OP(op_addmm, "addmm", "linalg");
TAPEGRAD_OP(op_linear, "linear", "linalg");

// Batching rules (autograd/autobatch.hpp): with a shared weight, the calls' rows stacked make one product
// with that weight (a GEMM in place of n thin ones); with both factors per-example, a batched product.
namespace {
using autobatch::Group;
TAPEGRAD_BATCH_RULE(matmul_rule, op_matmul, [](const Group& g) {
  if (batching::call_rank(g, 0) != 2 || batching::call_rank(g, 1) != 2 || g.shared(0)) return Tensor();
  return matmul(g.in(0), g.in(1));  // (n,M,K)x(K,N) with a shared b; (n,M,K)x(n,K,N) batched
});
TAPEGRAD_BATCH_RULE(addmm_rule, op_addmm, [](const Group& g) {
  if (g.shared(0) || g.shared(1) || !g.shared(2)) return Tensor();
  return batching::split_rows(addmm(batching::merged_rows(g.in(0)), batching::merged_rows(g.in(1)), g.in(2)), g.size());
});
TAPEGRAD_BATCH_RULE(linear_rule, op_linear, [](const Group& g) {
  if (g.shared(0) || !g.shared(1) || !g.shared(2)) return Tensor();
  return linear(g.in(0), g.in(1), g.in(2));  // x seen as rows over all leading axes: one GEMM
});
}  // namespace

namespace {

using blas::gemm;

// Up to this many weights a 1-row product runs as the xsimd loops below: OpenBLAS's gemv/ger call
// overhead is several times the arithmetic of a 16x16 matrix (binary addition's), while at 64x64 its
// gemv beat the loops (an Elman step at B = 1: 1,024 measured better than 4,096 as the switch point).
constexpr std::size_t kSmall = 1024;

template <class T> using Vec = xsimd::batch<T>;

// y (n) += x (k) B (k, n): two vectors of y stay in registers while the rows of B stream past (the
// compiler's loop would load and store y once per row).
template <class T> void row_times(std::size_t k, std::size_t n, const T* x, const T* b, T* y) {
  using V = Vec<T>;
  constexpr std::size_t S = V::size;
  std::size_t j = 0;
  for (; j + 2 * S <= n; j += 2 * S) {
    V y0 = V::load_unaligned(y + j), y1 = V::load_unaligned(y + j + S);
    for (std::size_t i = 0; i < k; ++i) {
      const V xi(x[i]);
      y0 = xsimd::fma(xi, V::load_unaligned(b + i * n + j), y0);
      y1 = xsimd::fma(xi, V::load_unaligned(b + i * n + j + S), y1);
    }
    y0.store_unaligned(y + j);
    y1.store_unaligned(y + j + S);
  }
  for (; j < n; ++j) {
    T s = y[j];
    for (std::size_t i = 0; i < k; ++i) s += x[i] * b[i * n + j];
    y[j] = s;
  }
}

// y (k) += B (k, n) g (n): S rows of B at a time, one vector accumulator each, summed across by haddp.
template <class T> void times_row(std::size_t k, std::size_t n, const T* b, const T* g, T* y) {
  using V = Vec<T>;
  constexpr std::size_t S = V::size;
  const std::size_t nv = n - n % S;
  std::size_t i = 0;
  for (; i + S <= k; i += S) {
    V acc[S];
    for (std::size_t r = 0; r < S; ++r) acc[r] = V(T(0));
    for (std::size_t j = 0; j < nv; j += S) {
      const V gj = V::load_unaligned(g + j);
      for (std::size_t r = 0; r < S; ++r) acc[r] = xsimd::fma(V::load_unaligned(b + (i + r) * n + j), gj, acc[r]);
    }
    V sums = xsimd::haddp(acc) + V::load_unaligned(y + i);
    sums.store_unaligned(y + i);
    for (std::size_t r = 0; r < S; ++r)
      for (std::size_t j = nv; j < n; ++j) y[i + r] += b[(i + r) * n + j] * g[j];
  }
  for (; i < k; ++i) {
    const T* br = b + i * n;
    y[i] += kernels::lanes_reduce(n, T(0), [br, g](std::size_t j) { return br[j] * g[j]; }, std::plus<T>());
  }
}

}  // namespace

template <class T>
void kernels::product(std::size_t m, std::size_t k, std::size_t n, const T* a, const T* b, T* c, T beta) {
  if (k == 0) {  // an empty sum (BLAS would reject lda = 0)
    if (beta == T(0)) std::fill_n(c, m * n, T(0));
    return;
  }
  if (m == 1 && k * n <= kSmall) {
    if (beta == T(0)) std::fill_n(c, n, T(0));  // the loop adds
    row_times(k, n, a, b, c);
  } else {
    blas::product(false, false, m, n, k, a, k, b, n, beta, c, n);  // one row: gemv
  }
}

namespace {

// dA (m, k) += G (m, n) B^T; beta = 0 (dA = ...) when dA is a fresh, uninitialised buffer.
template <class T> void grad_a(std::size_t m, std::size_t k, std::size_t n, const T* g, const T* b, T* da, T beta) {
  if (m == 1 && k * n <= kSmall) {
    if (beta == T(0)) std::fill_n(da, k, T(0));  // the loop adds
    times_row(k, n, b, g, da);
  } else {
    blas::product(false, true, m, k, n, g, n, b, n, beta, da, k);  // one row: gemv
  }
}

// dB (k, n) += A^T G (m, n); beta as above.
template <class T> void grad_b(std::size_t m, std::size_t k, std::size_t n, const T* a, const T* g, T* db, T beta) {
  if (m == 1 && k * n <= kSmall) {
    // A small rank-1 update as a plain (vectorised) loop: OpenBLAS's ger makes one axpy call per row,
    // 3-5x slower for 16x16 (binary addition's recurrent matrix); from 64x256 up both run at memory speed.
    if (beta == T(0)) std::fill_n(db, k * n, T(0));
    for (std::size_t i = 0; i < k; ++i) {
      const T ai = a[i];
      T* __restrict row = db + i * n;
      const T* __restrict gr = g;
      for (std::size_t j = 0; j < n; ++j) row[j] += ai * gr[j];
    }
  } else {
    blas::product(true, false, k, n, m, a, k, g, n, beta, db, n);  // one row: ger
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

}  // namespace

bool kernels::may_defer_grad_b(std::size_t m, std::size_t k, std::size_t n) { return m < kThin && k * n > kSmall; }

// Each pass writes all of its buffer, so a fresh one is written with beta = 0; a thin product's dB into a
// leaf is deferred (stacked_grad_b).
template <class T>
void kernels::product_grads(BackwardCtx& c, std::size_t ia, std::size_t ib, std::size_t batches, std::size_t m,
                            std::size_t k, std::size_t n, const T* g) {
  const T *a = c.in<T>(ia), *b = c.in<T>(ib);
  bool fresh = false;
  if (c.needs(ia)) {
    T* da = c.grad_for_write<T>(ia, fresh);
    const T beta = fresh ? T(0) : T(1);
    for (std::size_t t = 0; t < batches; ++t) grad_a(m, k, n, g + t * m * n, b + t * k * n, da + t * m * k, beta);
  }
  if (c.needs(ib) &&
      !(batches == 1 && kernels::may_defer_grad_b(m, k, n) && defer_grad_b(c, ib, a, g, m, k, n))) {
    T* db = c.grad_for_write<T>(ib, fresh);
    const T beta = fresh ? T(0) : T(1);
    for (std::size_t t = 0; t < batches; ++t) grad_b(m, k, n, a + t * m * k, g + t * m * n, db + t * k * n, beta);
  }
}

template <class T>
void kernels::product_bt(std::size_t m, std::size_t k, std::size_t n, const T* g, const T* b, T* c, T beta) {
  grad_a(m, k, n, g, b, c, beta);
}
template <class T>
void kernels::product_at(std::size_t m, std::size_t k, std::size_t n, const T* a, const T* g, T* c, T beta) {
  grad_b(m, k, n, a, g, c, beta);
}

template void kernels::product_bt<float>(std::size_t, std::size_t, std::size_t, const float*, const float*, float*, float);
template void kernels::product_bt<double>(std::size_t, std::size_t, std::size_t, const double*, const double*, double*,
                                          double);
template void kernels::product_at<float>(std::size_t, std::size_t, std::size_t, const float*, const float*, float*, float);
template void kernels::product_at<double>(std::size_t, std::size_t, std::size_t, const double*, const double*, double*,
                                          double);
template void kernels::product<float>(std::size_t, std::size_t, std::size_t, const float*, const float*, float*, float);
template void kernels::product<double>(std::size_t, std::size_t, std::size_t, const double*, const double*, double*,
                                       double);
template void kernels::product_grads<float>(BackwardCtx&, std::size_t, std::size_t, std::size_t, std::size_t,
                                            std::size_t, std::size_t, const float*);
template void kernels::product_grads<double>(BackwardCtx&, std::size_t, std::size_t, std::size_t, std::size_t,
                                             std::size_t, std::size_t, const double*);

namespace {

struct ProductAttrs {  // `batches` products of (m, k) x (k, n)
  std::size_t batches, m, k, n;
};

[[noreturn]] void bad_shapes(const Tensor& a, const Tensor& b, const std::string& why) {
  throw Error("matmul: cannot multiply " + a.shape().str() + " by " + b.shape().str() + ": " + why);
}

}  // namespace

// C = A B.  dA = dC B^T,  dB = A^T dC  (per batch; summed over the batch for a shared weight).
Tensor matmul(const Tensor& a, const Tensor& b) {
  if (autobatch::in_task()) if (Tensor batched = autobatch::detail::out_of_line([&] { return autobatch::defer(matmul_rule, {&a, &b}); }); batched.defined()) return batched;
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
    for (std::size_t t = 0; t < batches; ++t) kernels::product(m, k, n, pa + t * m * k, pb + t * k * n, py + t * m * n, T(0));
  });

  call.record(
      [](BackwardCtx& c) {
        const ProductAttrs p = c.attrs<ProductAttrs>();
        if (p.m == 0 || p.n == 0 || p.k == 0) return;  // every gradient is an empty sum
        dispatch(c.dtype(), [&](auto z) { using T = decltype(z);
          kernels::product_grads<T>(c, 0, 1, p.batches, p.m, p.k, p.n, c.gout<T>()); });
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
  if (autobatch::in_task()) if (Tensor batched = autobatch::detail::out_of_line([&] { return autobatch::defer(addmm_rule, {&c, &a, &b}); }); batched.defined()) return batched;
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
    kernels::product(m, k, n, static_cast<const T*>(a.raw_data()), static_cast<const T*>(b.raw_data()), py, T(1));
  });
  call.record(
      [](BackwardCtx& c) {
        const std::size_t m = c.out_shape()[0], n = c.out_shape()[1], k = c.in_shape(1)[1];
        dispatch(c.dtype(), [&](auto z) {
          using T = decltype(z);
          if (c.needs(0)) c.accumulate<T>(0, c.gout<T>(), c.out_shape());
          if (m == 0 || n == 0 || k == 0) return;
          kernels::product_grads<T>(c, 1, 2, 1, m, k, n, c.gout<T>());
        });
      },
      [](GraphCtx& g) {
        g.accumulate(0, g.gout());
        if (g.needs(1)) g.accumulate(1, matmul(g.gout(), transpose(g.in(2))));
        if (g.needs(2)) g.accumulate(2, matmul(transpose(g.in(1)), g.gout()));
      });
  return y;
}

// y = x W + b, x seen as (rows, I). Forward: each row of y = b, then y += x W (beta 1). Backward:
// dx += dy W^T, dW += x^T dy (as matmul's), db += the column sums of dy.
Tensor linear(const Tensor& x, const Tensor& W, const Tensor& b) {
  if (autobatch::in_task()) if (Tensor batched = autobatch::detail::out_of_line([&] { return autobatch::defer(linear_rule, {&x, &W, &b}); }); batched.defined()) return batched;
  if (!x.defined() || !W.defined() || !b.defined())
    throw Error(std::string("linear: input ") + (!x.defined() ? "x" : !W.defined() ? "W" : "b") + " is undefined");
  if (W.rank() != 2 || x.rank() < 1 || x.size(-1) != W.size(0) || b.rank() != 1 || b.size(0) != W.size(1))
    throw Error("linear: x W + b needs x (..., I), W (I, O), b (O); got x " + x.shape().str() + ", W " +
                W.shape().str() + ", b " + b.shape().str());
  const std::size_t k = W.size(0), n = W.size(1);
  Shape out(x.shape().begin(), x.shape().end() - 1);
  const std::size_t rows = out.checked_numel("linear");  // the leading sizes' product (k may be 0)
  out.push_back(n);
  out.checked_numel("linear");
  for (std::size_t d : {rows, k, n})
    if (d > std::size_t(INT_MAX))
      throw Error("linear: a dimension of x " + x.shape().str() + " or W " + W.shape().str() + " exceeds the BLAS int range");
  OpCall call(op_linear, {&x, &W, &b});
  Tensor y = call.output(out);
  dispatch(call.dtype(), [&](auto z) {
    using T = decltype(z);
    T* py = y.data<T>();
    const T* pb = static_cast<const T*>(b.raw_data());
    for (std::size_t r = 0; r < rows; ++r) std::copy_n(pb, n, py + r * n);
    if (rows == 0 || n == 0) return;
    kernels::product(rows, k, n, static_cast<const T*>(x.raw_data()), static_cast<const T*>(W.raw_data()), py, T(1));
  });
  call.record(
      [](BackwardCtx& c) {
        const Shape& xs = c.in_shape(0);
        const std::size_t k = c.in_shape(1)[0], n = c.in_shape(1)[1];
        const std::size_t rows = Shape(xs.begin(), xs.end() - 1).numel();
        dispatch(c.dtype(), [&](auto z) {
          using T = decltype(z);
          const T* g = c.gout<T>();
          if (c.needs(2)) c.accumulate<T>(2, g, Shape{rows, n});
          if (rows == 0 || n == 0 || k == 0) return;
          kernels::product_grads<T>(c, 0, 1, 1, rows, k, n, g);
        });
      },
      [](GraphCtx& g) {
        const Shape& xs = g.in_shape(0);
        const std::size_t rows = Shape(xs.begin(), xs.end() - 1).numel();
        const Tensor g2 = reshape(g.gout(), {rows, g.in_shape(1)[1]});
        g.accumulate(2, g2);  // summed down to b's (O) by the engine
        if (g.needs(0)) g.accumulate(0, reshape(matmul(g2, transpose(g.in(1))), xs));
        if (g.needs(1)) g.accumulate(1, matmul(transpose(reshape(g.in(0), {rows, xs[xs.rank() - 1]})), g2));
      });
  return y;
}

}  // namespace tapegrad
