// Fused steps of the Elman RNN and fused pointwise parts of the LSTM and GRU steps. An optimisation, not
// new math: the math stands once, in nn/models/rnn.hpp above RNNCell, LSTMCell and GRUCell (reset_after); the
// *_composed functions below write it in primitive ops, nn's cells use them with `fused = false`, and the
// fused ops' create_graph backward differentiates them. Fusing turns the nodes of a step (the Elman
// step's product and activation; the LSTM's ~13 slices, sigmoids, tanh, products and sums with their
// gradient buffers) into one or two, which is what the per-step cost at batch 1 and the memory traffic at
// batch 32 are made of.
//
// a (B, 4H) holds the gate pre-activations [a_i a_f a_g a_o] (PyTorch's order), c_prev and c are (B, H),
// the peepholes p_i, p_f, p_o are (H).
#pragma once

#include "tapegrad/autograd/tensor.hpp"
#include "tapegrad/ops/activation.hpp"

namespace tapegrad {

// h_t = f(xp + h_prev W) of an Elman step from xp = x_t W_in + b (B, H), h_prev (B, H), W (H, H). Backward
// takes f' from h itself (sigmoid h (1 - h), tanh 1 - h^2, relu [h > 0]): no pre-activation is kept.
Tensor rnn_cell(const Tensor& xp, const Tensor& h_prev, const Tensor& W, Activation f);

// All T Elman steps in one op: h_t = f(xp_t + h_(t-1) W) for t = 0..T-1 from h_(-1) = h0 (B, H), with xp
// (T, B, H) or (T*B, H) (project()'s rows, time-major). Returns (T, B, H). Backward is BPTT over the
// saved outputs: the deltas of all steps, then dW as one product over all T*B rows (as a hand-written BPTT
// does), where T rnn_cell nodes would cost T nodes and T views of xp.
Tensor rnn_sequence(const Tensor& xp, const Tensor& h0, const Tensor& W, Activation f);

// The new memory cell c_t from a and c_prev (gates i, f, g).
Tensor lstm_cell(const Tensor& a, const Tensor& c_prev);
Tensor lstm_cell(const Tensor& a, const Tensor& c_prev, const Tensor& p_i, const Tensor& p_f);

// h_t from a and the new c (gate o; its peephole reads the new c).
Tensor lstm_hidden(const Tensor& a, const Tensor& c);
Tensor lstm_hidden(const Tensor& a, const Tensor& c, const Tensor& p_o);

// h_t of a GRU step in the reset_after convention, from xp = x_t W_x + b (B, 3H) and hp = h_(t-1) W_h
// (B, 3H), blocks [r z n] in both; h = h_(t-1) (B, H), b_hn (H).
Tensor gru_cell(const Tensor& xp, const Tensor& hp, const Tensor& h, const Tensor& b_hn);

// The same in primitive ops (addmm, slice, sigmoid, tanh, relu, *, +); undefined peepholes are absent.
// No checks.
Tensor rnn_cell_composed(const Tensor& xp, const Tensor& h_prev, const Tensor& W, Activation f);
Tensor rnn_sequence_composed(const Tensor& xp, const Tensor& h0, const Tensor& W, Activation f);
Tensor lstm_cell_composed(const Tensor& a, const Tensor& c_prev, const Tensor& p_i = {}, const Tensor& p_f = {});
Tensor lstm_hidden_composed(const Tensor& a, const Tensor& c, const Tensor& p_o = {});
Tensor gru_cell_composed(const Tensor& xp, const Tensor& hp, const Tensor& h, const Tensor& b_hn);

// h_t of a GRU step in the course's convention (the reset gate before the product; no fused form), from
// xp = x_t W_x + b (B, 3H) with blocks [r z n], h = h_(t-1) (B, H), W_h (H, 2H) the r and z blocks, U_h (H, H):
//   [r z] = sigmoid(xp_rz + h W_h),  h_bar = tanh(xp_n + (r h) U_h),  h_t = (1 - z) h + z h_bar.
// No checks (GRUCell checks its weights).
Tensor gru_course_composed(const Tensor& xp, const Tensor& h, const Tensor& W_h, const Tensor& U_h);

}  // namespace tapegrad
