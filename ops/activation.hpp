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

// The activations of a recurrent cell (nn::RNNCell, rnn_cell in ops/recurrent.hpp) and of the hand BPTT
// references (bench/reference/reference_bptt.hpp, whose output layer may be the identity): one enum for all of them.
enum class Activation { sigmoid, tanh, relu, identity };
inline const char* activation_name(Activation a) {
  switch (a) {
    case Activation::sigmoid: return "sigmoid";
    case Activation::tanh: return "tanh";
    case Activation::relu: return "relu";
    case Activation::identity: return "identity";
  }
  return "?";
}
// The activation a of x as the op it names (identity: x itself). The one dispatch over Activation on
// tensors: the cells, their composed forms and the examples' hand-unrolled RNNs use it.
Tensor activate(Activation a, const Tensor& x);

}  // namespace tapegrad
