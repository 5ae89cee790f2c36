// Weight initialisers, named for what they are. Shapes are row-vector layout (fan_in, fan_out) for
// matrices; conv filters (F, C, KH, KW) have fan_in C KH KW; for other ranks fan_in is the product of
// all axes but the last.
// The course calls N(0,1)/sqrt(n_in) "Xavier": that is LeCun's initialisation (lecun_normal). The real
// Xavier (Glorot) uses 2/(fan_in + fan_out). The course's He is N(0,1)*sqrt(2/n_in) (he_normal).
#pragma once

#include "tapegrad/autograd/tensor.hpp"

namespace tapegrad::nn::init {

Tensor normal(const Shape& shape, double std, Generator& gen, DType dtype = default_dtype());
Tensor lecun_normal(const Shape& shape, Generator& gen, DType dtype = default_dtype());   // std = 1/sqrt(fan_in)
Tensor glorot_normal(const Shape& shape, Generator& gen, DType dtype = default_dtype());  // std = sqrt(2/(fan_in+fan_out))
Tensor glorot_uniform(const Shape& shape, Generator& gen, DType dtype = default_dtype()); // U(+-sqrt(6/(fan_in+fan_out)))
Tensor he_normal(const Shape& shape, Generator& gen, DType dtype = default_dtype());      // std = sqrt(2/fan_in)
Tensor orthogonal(const Shape& shape, Generator& gen, double gain = 1.0, DType dtype = default_dtype());

}  // namespace tapegrad::nn::init
