// Fused steps of the Elman RNN and fused pointwise parts of the LSTM and GRU steps. An optimisation, not new math: nn::LSTMCell and
// nn::GRUCell compose exactly the same formulas from primitive ops when built with `fused = false`, and
// the tests check both forms against the same gradient checks and conformance cases. Fusing turns the
// ~13 elementwise nodes of a step (slices, sigmoids, tanh, products and sums, their gradient buffers)
// into one or two, which is what the per-step cost at batch 1 and the memory traffic at batch 32 are
// made of.
//
// a (B, 4H) holds the gate pre-activations [a_i a_f a_g a_o] (PyTorch's order), c_prev and c are (B, H),
// the peepholes p_i, p_f, p_o are (H) (diagonal, elementwise).
#pragma once

#include "tapegrad/autograd/tensor.hpp"
#include "tapegrad/ops/activation.hpp"

namespace tapegrad {

// One Elman (simple RNN) step after its input projection, in one node (nn::RNNCell's math):
//   h = f(xp + h_prev W),   xp = x_t W_in + b (B, H), h_prev (B, H), W (H, H), f sigmoid / tanh / relu.
// The same as f(addmm(xp, h_prev, W)), without the pre-activation's buffer and its gradient's: backward
// takes f' from h itself (sigmoid h (1 - h), tanh 1 - h^2, relu [h > 0]).
Tensor rnn_cell(const Tensor& xp, const Tensor& h_prev, const Tensor& W, Activation f);

// c = sigmoid(a_f + p_f c_prev) * c_prev + sigmoid(a_i + p_i c_prev) * tanh(a_g)   (the CEC update)
Tensor lstm_cell(const Tensor& a, const Tensor& c_prev);
Tensor lstm_cell(const Tensor& a, const Tensor& c_prev, const Tensor& p_i, const Tensor& p_f);

// h = sigmoid(a_o + p_o c) * tanh(c)   (the output gate reads the new c through its peephole)
Tensor lstm_hidden(const Tensor& a, const Tensor& c);
Tensor lstm_hidden(const Tensor& a, const Tensor& c, const Tensor& p_o);

// The whole pointwise part of a GRU step in PyTorch's convention (reset gate after the recurrent
// product), from xp = x_t W_x + b (B, 3H) and hp = h_(t-1) W_h (B, 3H), blocks [r z n] in both:
//   r = sigmoid(xp_r + hp_r),  z = sigmoid(xp_z + hp_z),  n = tanh(xp_n + r * (hp_n + b_hn)),
//   h_t = (1 - z) * n + z * h_(t-1).        h (B, H), b_hn (H).
Tensor gru_cell(const Tensor& xp, const Tensor& hp, const Tensor& h, const Tensor& b_hn);

}  // namespace tapegrad
