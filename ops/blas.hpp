// Internal: BLAS calls by element type, row-major throughout (not part of the public API).
// Only translation units without xtensor-blas may include this (cblas.h and xtensor-blas clash).
#pragma once

#include <cblas.h>

#include <algorithm>
#include <cstddef>

#include "tapegrad/ops/blas_info.hpp"
#include "tapegrad/ops/parallel_for.hpp"

namespace tapegrad::blas {

// Every wrapper first makes the once-per-process check of the BLAS core (ops/blas_info.hpp): a user whose
// OpenBLAS runs generic kernels on an AVX2 / AVX-512 CPU hears it on the first product. Then it sets
// OpenBLAS's threads for the call's size (ops/parallel_for.hpp: one thread for small products).
inline void before(std::size_t m, std::size_t n, std::size_t k) {
  warn_if_generic_blas();
  parallel::blas_threads_for(m * n * k);
}

// C (m, n) = beta C + op(A) op(B). Callers check the dimensions.
inline void gemm(CBLAS_TRANSPOSE ta, CBLAS_TRANSPOSE tb, std::size_t m, std::size_t n, std::size_t k, const float* a,
                 std::size_t lda, const float* b, std::size_t ldb, float beta, float* c, std::size_t ldc) {
  before(m, n, k);
  cblas_sgemm(CblasRowMajor, ta, tb, int(m), int(n), int(k), 1.0f, a, int(lda), b, int(ldb), beta, c, int(ldc));
}
inline void gemm(CBLAS_TRANSPOSE ta, CBLAS_TRANSPOSE tb, std::size_t m, std::size_t n, std::size_t k, const double* a,
                 std::size_t lda, const double* b, std::size_t ldb, double beta, double* c, std::size_t ldc) {
  before(m, n, k);
  cblas_dgemm(CblasRowMajor, ta, tb, int(m), int(n), int(k), 1.0, a, int(lda), b, int(ldb), beta, c, int(ldc));
}
// y = beta y + op(A) x, A is (m, n) row-major.
inline void gemv(CBLAS_TRANSPOSE ta, std::size_t m, std::size_t n, const float* a, const float* x, float beta, float* y) {
  before(m, n, 1);
  cblas_sgemv(CblasRowMajor, ta, int(m), int(n), 1.0f, a, int(std::max<std::size_t>(n, 1)), x, 1, beta, y, 1);
}
inline void gemv(CBLAS_TRANSPOSE ta, std::size_t m, std::size_t n, const double* a, const double* x, double beta, double* y) {
  before(m, n, 1);
  cblas_dgemv(CblasRowMajor, ta, int(m), int(n), 1.0, a, int(std::max<std::size_t>(n, 1)), x, 1, beta, y, 1);
}
// A (m, n) += x y^T.
inline void ger(std::size_t m, std::size_t n, const float* x, const float* y, float* a) {
  before(m, n, 1);
  cblas_sger(CblasRowMajor, int(m), int(n), 1.0f, x, 1, y, 1, a, int(std::max<std::size_t>(n, 1)));
}
inline void ger(std::size_t m, std::size_t n, const double* x, const double* y, double* a) {
  before(m, n, 1);
  cblas_dger(CblasRowMajor, int(m), int(n), 1.0, x, 1, y, 1, a, int(std::max<std::size_t>(n, 1)));
}

// C (m, n) = beta C + op(A) op(B), row-major, op(A) (m, k) and op(B) (k, n); lda, ldb the row lengths as
// stored. The one-row routing every caller wants: OpenBLAS 0.3.21 runs a 1-row GEMM through its full packing
// path, 3-4x slower than gemv, so one row of A goes to gemv and a rank-1 product (k = 1, A^T b) to ger. Both
// add into C, so beta = 0 first zero-fills it: gemv's own beta = 0 scales y, and NaN * 0 in stale memory
// stays NaN. Used by ops/linalg.cpp (above its xsimd loops for tiny matrices) and by the hand BPTT.
template <class T>
void product(bool ta, bool tb, std::size_t m, std::size_t n, std::size_t k, const T* a, std::size_t lda, const T* b,
             std::size_t ldb, T beta, T* c, std::size_t ldc) {
  const bool one_row = m == 1 && !ta && ldb == (tb ? k : n), rank_one = k == 1 && ta && !tb && ldc == n;
  if ((one_row || rank_one) && beta != T(1)) {
    if (beta == T(0)) std::fill_n(c, m == 1 ? n : m * n, T(0));
    else for (std::size_t i = 0, len = m == 1 ? n : m * n; i < len; ++i) c[i] *= beta;
  }
  if (one_row) {  // c (n) += op(B)^T a: B stored (k, n) -> trans; stored (n, k) -> no trans
    gemv(tb ? CblasNoTrans : CblasTrans, tb ? n : k, tb ? k : n, b, a, T(1), c);
  } else if (rank_one) {  // C += a^T b with a (1, m), b (1, n)
    ger(m, n, a, b, c);
  } else {
    gemm(ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans, m, n, k, a, lda, b, ldb, beta, c, ldc);
  }
}

}  // namespace tapegrad::blas
