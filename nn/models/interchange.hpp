// Weight interchange for the recurrent cells: PyTorch's layout and the course's layout, both ways.
//
// The conversions are composed from ops (transpose, add, slice, concat, pad), so they are differentiable:
// a cell bound to imported weights (LSTMCell(lstm_from_pytorch(w))) sends its gradients back to the
// PyTorch-layout tensors. Called with leaves that need no gradient (or under NoGrad) they return owned
// tensors, which load_weights copies into a cell's parameters.
//
// PyTorch (one layer, one direction; column-vector layout, gates stacked along rows):
//   RNN:  weight_ih (H, I), weight_hh (H, H), bias_ih (H), bias_hh (H)
//   LSTM: weight_ih (4H, I), weight_hh (4H, H), bias_ih (4H), bias_hh (4H); gate order i, f, g, o
//   GRU:  weight_ih (3H, I), weight_hh (3H, H), bias_ih (3H), bias_hh (3H); gate order r, z, n; the n
//         block of bias_hh is b_hn, used inside r * (h W_hn + b_hn): PyTorch's GRU is reset_after.
// Ours (rnn.hpp): row vectors, W_x = weight_ih^T, W_h = weight_hh^T, one fused bias b = bias_ih + bias_hh
// (GRU: except the n block of bias_hh, kept as b_hn).
//
// Export puts the whole fused bias in bias_ih and zeros in bias_hh (GRU: b_hn in bias_hh's n block).
// So export(import(w)) gives back weight_ih and weight_hh exactly, and biases with the same sum
// bias_ih + bias_hh (exactly w when w's bias_hh was zero there): the same function. A cell keeps one
// fused bias, so the split between the two PyTorch biases is not recoverable. import(export(cell)) is
// the cell, exactly.
#pragma once

#include <cstddef>
#include <map>
#include <string>

#include "tapegrad/nn/models/rnn.hpp"

namespace tapegrad::nn {

struct PyTorchRNNWeights {
  Tensor weight_ih, weight_hh, bias_ih, bias_hh;
};

RNNWeights rnn_from_pytorch(const PyTorchRNNWeights& w);
PyTorchRNNWeights rnn_to_pytorch(const RNNWeights& w);
LSTMWeights lstm_from_pytorch(const PyTorchRNNWeights& w);       // no peepholes
PyTorchRNNWeights lstm_to_pytorch(const LSTMWeights& w);         // Error for a peephole LSTM
GRUWeights gru_from_pytorch(const PyTorchRNNWeights& w);         // convention reset_after
PyTorchRNNWeights gru_to_pytorch(const GRUWeights& w);           // Error for the course convention

// A state dict of torch.nn.RNN/LSTM/GRU: keys weight_ih_l{layer}{_reverse}, weight_hh_..., bias_ih_...,
// bias_hh_... (missing keys: Error naming them).
using StateDict = std::map<std::string, Tensor>;
PyTorchRNNWeights pytorch_layer(const StateDict& state, std::size_t layer = 0, bool reverse = false);
void put_pytorch_layer(StateDict& state, const PyTorchRNNWeights& w, std::size_t layer = 0, bool reverse = false);

// The course's layout: one matrix per gate, row vectors. x W_* is (B, H), h U_* is (B, H).
struct CourseLSTMWeights {
  Tensor W_i, W_f, W_g, W_o;  // (I, H)
  Tensor U_i, U_f, U_g, U_o;  // (H, H)
  Tensor b_i, b_f, b_g, b_o;  // (H)
  Tensor p_i, p_f, p_o;       // (H) peepholes, optional (all or none)
};
struct CourseGRUWeights {
  Tensor W_r, W_z, W_h;  // (I, H)
  Tensor U_r, U_z, U_h;  // (H, H)
  Tensor b_r, b_z, b_h;  // (H)
};

LSTMWeights lstm_from_course(const CourseLSTMWeights& w);
CourseLSTMWeights lstm_to_course(const LSTMWeights& w);
GRUWeights gru_from_course(const CourseGRUWeights& w);   // convention course
CourseGRUWeights gru_to_course(const GRUWeights& w);     // Error for reset_after

// Copy values into a cell's own parameters, in place (shapes, peepholes and GRU convention must match;
// values are converted to the cell's dtype). The parameters stay the same leaves (an optimiser holding
// them keeps working); nothing is recorded.
void load_weights(RNNCell& cell, const RNNWeights& w);
void load_weights(LSTMCell& cell, const LSTMWeights& w);
void load_weights(GRUCell& cell, const GRUWeights& w);

}  // namespace tapegrad::nn
