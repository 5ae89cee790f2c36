// Reductions over axes, with keepdims.
#pragma once

#include <vector>

#include "tapegrad/autograd/tensor.hpp"

namespace tapegrad {

Tensor sum(const Tensor& x);  // all elements -> rank 0
Tensor sum(const Tensor& x, const std::vector<long>& axes, bool keepdims = false);
Tensor mean(const Tensor& x);
Tensor mean(const Tensor& x, const std::vector<long>& axes, bool keepdims = false);
// max: the gradient goes to the first maximum along the reduced axis (ties broken by position).
Tensor max(const Tensor& x);
Tensor max(const Tensor& x, long axis, bool keepdims = false);
// Sum a broadcast value back down to `shape` (the engine's un-broadcast, as a differentiable op).
Tensor sum_to(const Tensor& x, const Shape& shape);

}  // namespace tapegrad
