// Shape ops: views of the same values in another arrangement (always copied into the tape: nodes keep
// owning, contiguous buffers).
#pragma once

#include <cstdint>
#include <vector>

#include "tapegrad/autograd/tensor.hpp"

namespace tapegrad {

Tensor reshape(const Tensor& x, const Shape& shape);
Tensor transpose(const Tensor& x);  // swaps the last two axes
Tensor permute(const Tensor& x, const std::vector<std::size_t>& axes);
Tensor slice(const Tensor& x, long axis, std::size_t start, std::size_t stop);  // [start, stop), step 1
Tensor select(const Tensor& x, long axis, std::size_t index);  // x[..., index, ...]: axis removed
Tensor pad(const Tensor& x, long axis, std::size_t before, std::size_t after);  // zeros around, on one axis
Tensor index_select(const Tensor& x, long axis, const std::vector<std::int64_t>& indices);
// The adjoint of index_select: a tensor with `size` entries on `axis`, src's entries added at indices.
Tensor index_add(const Tensor& src, long axis, const std::vector<std::int64_t>& indices, std::size_t size);
Tensor concat(const std::vector<Tensor>& xs, long axis);
std::vector<Tensor> split(const Tensor& x, const std::vector<std::size_t>& sizes, long axis);
// n pieces along axis; when n does not divide the size, the first size % n pieces get one more (numpy's
// array_split; pieces may be empty when n exceeds the size).
std::vector<Tensor> chunk(const Tensor& x, std::size_t n, long axis);
// Inputs of one shape, stacked along a new axis (axis in [-(rank+1), rank]).
Tensor stack(const std::vector<Tensor>& xs, long axis = 0);
Tensor flip(const Tensor& x, long axis);  // reverse along an axis
Tensor broadcast_to(const Tensor& x, const Shape& shape);

}  // namespace tapegrad
