// Matrix products through BLAS. Backward writes the gradient buffers (beta = 0 fresh, 1 accumulating); a 1-row
// product runs as gemv/ger (OpenBLAS 0.3.21 does not route 1-row gemm to gemv: 3-4x slower at batch 1).
#pragma once

#include "tapegrad/autograd/tensor.hpp"

namespace tapegrad {

// (M,K) x (K,N) -> (M,N);  (B,M,K) x (B,K,N) -> (B,M,N);  (B,M,K) x (K,N) -> (B,M,N) (shared weight).
Tensor matmul(const Tensor& a, const Tensor& b);

// c + a b for 2-D a (M,K), b (K,N) and c (M,N) exactly (no broadcasting): one node and one buffer instead
// of matmul's and add's (torch.addmm). A recurrent step's x_t W_x + b + h_(t-1) W_h is addmm(xp_t, h, W_h).
Tensor addmm(const Tensor& c, const Tensor& a, const Tensor& b);

// x W + b over the last axis: x (..., I), W (I, O), b (O) -> (..., O). One node, one GEMM over all the
// leading rows, the bias written before the product (torch.nn.functional.linear, with W stored (I, O)).
// nn::Linear and the recurrent cells' input projections use it.
Tensor linear(const Tensor& x, const Tensor& W, const Tensor& b);

}  // namespace tapegrad
