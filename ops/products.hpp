// Internal: the matrix products of the linalg family, for ops that fuse a product with what follows it
// (the recurrent family's rnn_cell). Defined in linalg.cpp, for float and double. Not installed.
#pragma once

#include <cstddef>

namespace tapegrad {
class BackwardCtx;
}

namespace tapegrad::kernels {

// C (m, n) = beta C + A (m, k) B (k, n), beta 0 or 1 (with 0, C is not read). One row runs as gemv, or as
// plain loops for a small matrix.
template <class T> void product(std::size_t m, std::size_t k, std::size_t n, const T* a, const T* b, T* c, T beta);

// C (m, k) = beta C + G (m, n) B^T and C (k, n) = beta C + A^T G (m, n) with A (m, k): the two gradients
// of a product, routed as product() (one row: the loops or gemv / ger), for ops that run a recurrence.
template <class T> void product_bt(std::size_t m, std::size_t k, std::size_t n, const T* g, const T* b, T* c, T beta);
template <class T> void product_at(std::size_t m, std::size_t k, std::size_t n, const T* a, const T* g, T* c, T beta);

// The backward of C = A B for the node's inputs ia (A) and ib (B), `batches` products of (m,k)x(k,n),
// given C's gradient g: dA += g B^T, dB += A^T g. A thin product's dB into a leaf is deferred and merged
// with the other steps' into one GEMM after the sweep.
// Whether product_grads may defer dB for products of this size (then g must stay unchanged until the
// sweep ends).
bool may_defer_grad_b(std::size_t m, std::size_t k, std::size_t n);

template <class T>
void product_grads(BackwardCtx& c, std::size_t ia, std::size_t ib, std::size_t batches, std::size_t m, std::size_t k,
                   std::size_t n, const T* g);

}  // namespace tapegrad::kernels
