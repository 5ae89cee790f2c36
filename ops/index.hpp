// Lookups by integer index.
#pragma once

#include <cstdint>
#include <vector>

#include "tapegrad/autograd/tensor.hpp"

namespace tapegrad {

// Integer ids with a shape (token ids, targets). Never differentiated.
struct Index {
  std::vector<std::int64_t> values;
  Shape shape;
  Index() = default;
  Index(std::vector<std::int64_t> v) : values(std::move(v)), shape{values.size()} {}
  Index(std::vector<std::int64_t> v, const Shape& s) : values(std::move(v)), shape(s) {}
};

// out[..., :] = weight[ids[...], :]; weight is (V, D), out is ids.shape + (D,). Backward scatter-adds,
// so repeated ids accumulate.
Tensor embedding(const Tensor& weight, const Index& ids);

}  // namespace tapegrad
