// Linear and Embedding layers.
#pragma once

#include "tapegrad/nn/models/module.hpp"
#include "tapegrad/ops/index.hpp"

namespace tapegrad::nn {

// y = x W + b (row vectors): x (..., in) -> (..., out). W is (in, out), b is (out). Default init:
// glorot_uniform for W, zeros for b.
class Linear : public Module {
 public:
  Linear(std::size_t in, std::size_t out, Generator& gen, bool bias = true, DType dtype = default_dtype());
  Tensor operator()(const Tensor& x) const;
  Tensor W, b;  // b undefined without bias
};

// Row lookup: ids -> ids.shape + (dim,). Default init N(0, 1).
class Embedding : public Module {
 public:
  Embedding(std::size_t vocab, std::size_t dim, Generator& gen, DType dtype = default_dtype());
  Tensor operator()(const Index& ids) const;
  Tensor weight;
};

}  // namespace tapegrad::nn
