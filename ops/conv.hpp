// Convolution and pooling, NCHW.
#pragma once

#include "tapegrad/autograd/tensor.hpp"

namespace tapegrad {

// x (N, C, H, W), w (F, C, KH, KW), b (F) or undefined; zero padding. Output side:
// (H + 2 * padding - KH) / stride + 1 (the course's 5x5, 3x3, stride 2, pad 1 gives 3x3). im2col + GEMM.
Tensor conv2d(const Tensor& x, const Tensor& w, const Tensor& b, std::size_t stride = 1, std::size_t padding = 0);
// Max over kernel x kernel windows moved by stride; the gradient goes to each window's (first) maximum.
Tensor max_pool2d(const Tensor& x, std::size_t kernel, std::size_t stride);

}  // namespace tapegrad
