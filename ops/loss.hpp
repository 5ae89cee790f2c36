// Losses. Each returns a scalar (rank 0).
#pragma once

#include "tapegrad/autograd/tensor.hpp"
#include "tapegrad/ops/index.hpp"

namespace tapegrad {

enum class Reduction { mean, sum, half_sum };  // half_sum: the course's E = 1/2 sum (d - y)^2

// Squared error between prediction y and target d (same shapes; d is usually a constant).
Tensor mse_loss(const Tensor& y, const Tensor& d, Reduction reduction = Reduction::mean);
// Fused, stable softmax cross-entropy: logits (N, C), targets N class ids; mean over N.
Tensor softmax_cross_entropy(const Tensor& logits, const Index& targets);
// Stable binary cross-entropy on logits: mean of max(x,0) - x t + log(1 + e^-|x|); targets in [0, 1].
Tensor binary_cross_entropy_with_logits(const Tensor& logits, const Tensor& targets);

}  // namespace tapegrad
