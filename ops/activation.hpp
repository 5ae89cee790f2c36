// Activations. softmax and log_softmax are numerically stable (the row maximum is subtracted).
#pragma once

#include "tapegrad/autograd/tensor.hpp"

namespace tapegrad {

Tensor sigmoid(const Tensor& x);
Tensor tanh(const Tensor& x);
Tensor relu(const Tensor& x);        // gradient 0 at x = 0
Tensor softplus(const Tensor& x);    // log(1 + e^x), stable for large |x|
Tensor log_sigmoid(const Tensor& x); // -softplus(-x), stable for large |x|
Tensor softmax(const Tensor& x, long axis = -1);
Tensor log_softmax(const Tensor& x, long axis = -1);

// The hidden activations of a recurrent cell (nn::RNNCell, rnn_cell in ops/recurrent.hpp).
enum class Activation { sigmoid, tanh, relu };

}  // namespace tapegrad
