// Normalisation family: layer norm over the last axis (Ba et al. 2016), as the Transformer uses it.
#pragma once

#include "tapegrad/autograd/tensor.hpp"

namespace tapegrad {

// y = (x - mean) / sqrt(var + eps) * weight + bias over the last axis of x (..., E), var the biased
// variance (divided by E), weight and bias (E): torch.nn.functional.layer_norm. One node: forward keeps
// the mean and 1/sqrt(var + eps) of each row, not the six buffers of the composed form.
Tensor layer_norm(const Tensor& x, const Tensor& weight, const Tensor& bias, double eps = 1e-5);

// The same in primitive ops (mean, sub, mul, sqrt, div, add); no checks. The fused op's create_graph
// backward differentiates it.
Tensor layer_norm_composed(const Tensor& x, const Tensor& weight, const Tensor& bias, double eps = 1e-5);

}  // namespace tapegrad
