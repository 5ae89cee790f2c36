#include "tapegrad/nn/models/interchange.hpp"

#include <cstring>

#include "tapegrad/autograd/tape.hpp"
#include "tapegrad/ops/elementwise.hpp"
#include "tapegrad/ops/shape.hpp"

namespace tapegrad::nn {

namespace {


// Checks a PyTorch-layout layer with `gates` gate blocks; returns (I, H).
std::pair<std::size_t, std::size_t> check_pytorch(const char* who, const PyTorchRNNWeights& w, std::size_t gates) {
  if (!w.weight_hh.defined() || w.weight_hh.rank() != 2 || !w.weight_ih.defined() || w.weight_ih.rank() != 2)
    throw Error(std::string(who) + ": weight_ih " + shape_str(w.weight_ih) + " and weight_hh " + shape_str(w.weight_hh) +
                " must be matrices");
  const std::size_t H = w.weight_hh.size(1), I = w.weight_ih.size(1);
  const Shape ih{gates * H, I}, hh{gates * H, H}, bias{gates * H};
  if (w.weight_ih.shape() != ih || w.weight_hh.shape() != hh || !w.bias_ih.defined() || w.bias_ih.shape() != bias ||
      !w.bias_hh.defined() || w.bias_hh.shape() != bias)
    throw Error(std::string(who) + ": expected weight_ih " + ih.str() + ", weight_hh " + hh.str() + ", bias_ih and bias_hh " +
                bias.str() + " (" + std::to_string(gates) + " gates, H = " + std::to_string(H) + "), got " +
                shape_str(w.weight_ih) + ", " + shape_str(w.weight_hh) + ", " + shape_str(w.bias_ih) + ", " + shape_str(w.bias_hh));
  return {I, H};
}

void expect(const char* who, const char* name, const Tensor& t, const Shape& s) {
  if (!t.defined() || t.shape() != s)
    throw Error(std::string(who) + ": " + name + " is " + shape_str(t) + ", expected " + s.str());
}

void copy_into(const char* who, const char* name, Tensor& dst, const Tensor& src) {
  if (!dst.defined() || !src.defined() || dst.shape() != src.shape())
    throw Error(std::string(who) + ": " + name + " " + shape_str(src) + " does not fit the cell's " + shape_str(dst));
  const Tensor v = src.to(dst.dtype());
  std::memcpy(dst.raw_data(), v.raw_data(), v.numel() * dtype_size(v.dtype()));
}

std::string layer_key(const char* base, std::size_t layer, bool reverse) {
  return std::string(base) + "_l" + std::to_string(layer) + (reverse ? "_reverse" : "");
}

}  // namespace

// ---- PyTorch ----------------------------------------------------------------------------------------
// Exports copy (b + 0.0, transpose): the result never aliases the cell's parameters.

RNNWeights rnn_from_pytorch(const PyTorchRNNWeights& w) {
  check_pytorch("rnn_from_pytorch", w, 1);
  return {transpose(w.weight_ih), transpose(w.weight_hh), w.bias_ih + w.bias_hh};
}

PyTorchRNNWeights rnn_to_pytorch(const RNNWeights& w) {
  RNNCell check(w);  // validates the shapes
  return {transpose(w.W_in), transpose(w.W), w.b + 0.0, zeros_like(w.b)};
}

LSTMWeights lstm_from_pytorch(const PyTorchRNNWeights& w) {
  check_pytorch("lstm_from_pytorch", w, 4);
  return {transpose(w.weight_ih), transpose(w.weight_hh), w.bias_ih + w.bias_hh, {}, {}, {}};
}

PyTorchRNNWeights lstm_to_pytorch(const LSTMWeights& w) {
  LSTMCell check(w);
  if (check.peepholes())
    throw Error("lstm_to_pytorch: this LSTM has peepholes p_i " + shape_str(w.p_i) + ", PyTorch's layout has none");
  return {transpose(w.W_x), transpose(w.W_h), w.b + 0.0, zeros_like(w.b)};
}

GRUWeights gru_from_pytorch(const PyTorchRNNWeights& w) {
  const std::size_t H = check_pytorch("gru_from_pytorch", w, 3).second;
  GRUWeights g;
  g.W_x = transpose(w.weight_ih);
  g.W_h = transpose(w.weight_hh);
  // b = bias_ih + [b_hr b_hz 0]: the r and z biases add up; the n block of bias_hh stays inside r * (...).
  g.b = w.bias_ih + pad(slice(w.bias_hh, 0, 0, 2 * H), 0, 0, H);
  g.b_hn = slice(w.bias_hh, 0, 2 * H, 3 * H);
  g.convention = GRUConvention::reset_after;
  return g;
}

PyTorchRNNWeights gru_to_pytorch(const GRUWeights& w) {
  GRUCell check(w);
  if (w.convention != GRUConvention::reset_after)
    throw Error("gru_to_pytorch: W_h " + shape_str(w.W_h) +
                " is a course-convention GRU (reset before the matmul); PyTorch's GRU is reset_after");
  const std::size_t H = check.hidden_size();
  return {transpose(w.W_x), transpose(w.W_h), w.b + 0.0, pad(w.b_hn, 0, 2 * H, 0)};
}

PyTorchRNNWeights pytorch_layer(const StateDict& state, std::size_t layer, bool reverse) {
  PyTorchRNNWeights w;
  Tensor* dst[] = {&w.weight_ih, &w.weight_hh, &w.bias_ih, &w.bias_hh};
  const char* names[] = {"weight_ih", "weight_hh", "bias_ih", "bias_hh"};
  for (int k = 0; k < 4; ++k) {
    const std::string key = layer_key(names[k], layer, reverse);
    auto it = state.find(key);
    if (it == state.end()) throw Error("pytorch_layer: the state dict has no '" + key + "'");
    *dst[k] = it->second;
  }
  return w;
}

void put_pytorch_layer(StateDict& state, const PyTorchRNNWeights& w, std::size_t layer, bool reverse) {
  state[layer_key("weight_ih", layer, reverse)] = w.weight_ih;
  state[layer_key("weight_hh", layer, reverse)] = w.weight_hh;
  state[layer_key("bias_ih", layer, reverse)] = w.bias_ih;
  state[layer_key("bias_hh", layer, reverse)] = w.bias_hh;
}

// ---- the course's layout ----------------------------------------------------------------------------

LSTMWeights lstm_from_course(const CourseLSTMWeights& w) {
  if (!w.W_i.defined() || w.W_i.rank() != 2) throw Error("lstm_from_course: W_i must be a matrix, got " + shape_str(w.W_i));
  const std::size_t I = w.W_i.size(0), H = w.W_i.size(1);
  const char* who = "lstm_from_course";
  expect(who, "W_f", w.W_f, {I, H}), expect(who, "W_g", w.W_g, {I, H}), expect(who, "W_o", w.W_o, {I, H});
  expect(who, "U_i", w.U_i, {H, H}), expect(who, "U_f", w.U_f, {H, H}), expect(who, "U_g", w.U_g, {H, H});
  expect(who, "U_o", w.U_o, {H, H});
  expect(who, "b_i", w.b_i, {H}), expect(who, "b_f", w.b_f, {H}), expect(who, "b_g", w.b_g, {H}), expect(who, "b_o", w.b_o, {H});
  LSTMWeights out{concat({w.W_i, w.W_f, w.W_g, w.W_o}, 1), concat({w.U_i, w.U_f, w.U_g, w.U_o}, 1),
                  concat({w.b_i, w.b_f, w.b_g, w.b_o}, 0), w.p_i, w.p_f, w.p_o};
  LSTMCell check(out);  // peepholes: all or none, shapes
  return out;
}

CourseLSTMWeights lstm_to_course(const LSTMWeights& w) {
  LSTMCell check(w);
  const auto Wx = chunk(w.W_x, 4, 1), Wh = chunk(w.W_h, 4, 1), b = chunk(w.b, 4, 0);
  return {Wx[0], Wx[1], Wx[2], Wx[3], Wh[0], Wh[1], Wh[2], Wh[3], b[0], b[1], b[2], b[3], w.p_i, w.p_f, w.p_o};
}

GRUWeights gru_from_course(const CourseGRUWeights& w) {
  if (!w.W_r.defined() || w.W_r.rank() != 2) throw Error("gru_from_course: W_r must be a matrix, got " + shape_str(w.W_r));
  const std::size_t I = w.W_r.size(0), H = w.W_r.size(1);
  const char* who = "gru_from_course";
  expect(who, "W_z", w.W_z, {I, H}), expect(who, "W_h", w.W_h, {I, H});
  expect(who, "U_r", w.U_r, {H, H}), expect(who, "U_z", w.U_z, {H, H}), expect(who, "U_h", w.U_h, {H, H});
  expect(who, "b_r", w.b_r, {H}), expect(who, "b_z", w.b_z, {H}), expect(who, "b_h", w.b_h, {H});
  GRUWeights g;
  g.W_x = concat({w.W_r, w.W_z, w.W_h}, 1);
  g.W_h = concat({w.U_r, w.U_z}, 1);
  g.U_h = w.U_h;
  g.b = concat({w.b_r, w.b_z, w.b_h}, 0);
  g.convention = GRUConvention::course;
  return g;
}

CourseGRUWeights gru_to_course(const GRUWeights& w) {
  GRUCell check(w);
  if (w.convention != GRUConvention::course)
    throw Error("gru_to_course: W_h " + shape_str(w.W_h) +
                " is a reset_after GRU (r * (h W_hn + b_hn)); the course's layout is the course convention");
  const auto Wx = chunk(w.W_x, 3, 1), Wh = chunk(w.W_h, 2, 1), b = chunk(w.b, 3, 0);
  return {Wx[0], Wx[1], Wx[2], Wh[0], Wh[1], w.U_h, b[0], b[1], b[2]};
}

// ---- loading values into a cell --------------------------------------------------------------------

void load_weights(RNNCell& cell, const RNNWeights& w) {
  RNNCell check(w, cell.activation);
  copy_into("load_weights(RNNCell)", "W_in", cell.W_in, w.W_in);
  copy_into("load_weights(RNNCell)", "W", cell.W, w.W);
  copy_into("load_weights(RNNCell)", "b", cell.b, w.b);
}

void load_weights(LSTMCell& cell, const LSTMWeights& w) {
  LSTMCell check(w);
  if (check.peepholes() != cell.peepholes())
    throw Error(std::string("load_weights(LSTMCell): the weights ") + (check.peepholes() ? "have" : "have no") +
                " peepholes, the cell W_h " + cell.W_h.shape().str() + (cell.peepholes() ? " has" : " has none"));
  const char* who = "load_weights(LSTMCell)";
  copy_into(who, "W_x", cell.W_x, w.W_x);
  copy_into(who, "W_h", cell.W_h, w.W_h);
  copy_into(who, "b", cell.b, w.b);
  if (cell.peepholes()) {
    copy_into(who, "p_i", cell.p_i, w.p_i);
    copy_into(who, "p_f", cell.p_f, w.p_f);
    copy_into(who, "p_o", cell.p_o, w.p_o);
  }
}

void load_weights(GRUCell& cell, const GRUWeights& w) {
  GRUCell check(w);
  const char* who = "load_weights(GRUCell)";
  if (w.convention != cell.convention)
    throw Error(std::string(who) + ": the weights (W_h " + shape_str(w.W_h) + ") and the cell (W_h " + cell.W_h.shape().str() +
                ") use different GRU conventions");
  copy_into(who, "W_x", cell.W_x, w.W_x);
  copy_into(who, "W_h", cell.W_h, w.W_h);
  copy_into(who, "b", cell.b, w.b);
  if (cell.convention == GRUConvention::course) copy_into(who, "U_h", cell.U_h, w.U_h);
  else copy_into(who, "b_hn", cell.b_hn, w.b_hn);
}

}  // namespace tapegrad::nn
