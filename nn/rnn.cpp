#include "tapegrad/nn/rnn.hpp"

#include <algorithm>
#include <utility>

#include "tapegrad/autograd/autobatch.hpp"
#include "tapegrad/autograd/tape.hpp"
#include "tapegrad/nn/init.hpp"
#include "tapegrad/ops/activation.hpp"
#include "tapegrad/ops/elementwise.hpp"
#include "tapegrad/ops/linalg.hpp"
#include "tapegrad/ops/recurrent.hpp"
#include "tapegrad/ops/shape.hpp"

namespace tapegrad::nn {

namespace {

std::string num(std::size_t n) { return std::to_string(n); }

Tensor init_matrix(Init init, const Shape& shape, Generator& gen, double std, DType dtype) {
  switch (init) {
    case Init::normal: return init::normal(shape, std, gen, dtype);
    case Init::lecun: return init::lecun_normal(shape, gen, dtype);
    case Init::glorot: return init::glorot_uniform(shape, gen, dtype);
    case Init::he: return init::he_normal(shape, gen, dtype);
    case Init::orthogonal: return init::orthogonal(shape, gen, 1.0, dtype);
  }
  throw Error("init: unknown initialiser");
}

// `gates` blocks of (rows, H), each drawn as its own matrix, side by side: (rows, gates * H).
Tensor init_fused(Init init, std::size_t rows, std::size_t H, std::size_t gates, Generator& gen, double std,
                  DType dtype) {
  NoGrad no_grad;
  std::vector<Tensor> blocks;
  for (std::size_t k = 0; k < gates; ++k) blocks.push_back(init_matrix(init, {rows, H}, gen, std, dtype));
  return gates == 1 ? blocks[0] : concat(blocks, 1);
}

// A bound weight must be defined, of the given shape and of the cell's dtype.
void expect_shape(const char* cell, const char* name, const Tensor& t, const Shape& shape, DType dtype) {
  if (!t.defined() || t.shape() != shape)
    throw Error(std::string(cell) + ": " + name + " is " + shape_str(t) + ", expected " + shape.str());
  if (t.dtype() != dtype)
    throw Error(std::string(cell) + ": " + name + " " + t.shape().str() + " is " + dtype_name(t.dtype()) +
                ", the other weights " + dtype_name(dtype));
}

void expect_matrix(const char* cell, const char* name, const Tensor& t) {
  if (!t.defined() || t.rank() != 2) throw Error(std::string(cell) + ": " + name + " must be a matrix, got " + shape_str(t));
}

}  // namespace

Tensor activate(Activation a, const Tensor& x) {
  switch (a) {
    case Activation::sigmoid: return sigmoid(x);
    case Activation::tanh: return tanh(x);
    case Activation::relu: return relu(x);
    case Activation::identity: return x;
  }
  throw Error("activate: unknown activation");
}

// ---- RecurrentCell ----------------------------------------------------------------------------------

State RecurrentCell::initial_state(std::size_t batch) const {
  State s;
  s.h = zeros({batch, hidden_size()}, dtype());
  if (has_cell_state()) s.c = zeros({batch, hidden_size()}, dtype());
  return s;
}

void RecurrentCell::check_state(const State& s, std::size_t batch) const {
  const Shape want{batch, hidden_size()};
  if (!s.h.defined() || s.h.shape() != want)
    throw Error(kind() + ": state h is " + shape_str(s.h) + ", expected (B, H) = " + want.str());
  if (has_cell_state()) {
    if (!s.c.defined() || s.c.shape() != want)
      throw Error(kind() + ": state c is " + shape_str(s.c) + ", expected (B, H) = " + want.str());
  } else if (s.c.defined()) {
    throw Error(kind() + ": has no memory cell, but the state has c " + shape_str(s.c));
  }
  if (s.h.dtype() != dtype() || (s.c.defined() && s.c.dtype() != dtype()))
    throw Error(kind() + ": state h " + s.h.shape().str() + " is " + dtype_name(s.h.dtype()) + ", the cell is " +
                dtype_name(dtype()));
}

State RecurrentCell::step(const Tensor& x, const State& s) const {
  if (!x.defined() || x.rank() != 2 || x.size(1) != input_size())
    throw Error(kind() + ": input x is " + shape_str(x) + ", expected (B, I) with I = " + num(input_size()));
  check_state(s, x.size(0));
  return step_projected(project(x), s);
}

// ---- RNNCell ----------------------------------------------------------------------------------------

RNNCell::RNNCell(std::size_t I, std::size_t H, Generator& gen, Activation act, Init init, double std, DType dtype)
    : activation(act) {
  W_in = register_parameter("W_in", init_matrix(init, {I, H}, gen, std, dtype));
  W = register_parameter("W", init_matrix(init, {H, H}, gen, std, dtype));
  b = register_parameter("b", zeros({H}, dtype));
}

RNNCell::RNNCell(const RNNWeights& w, Activation act) : W_in(w.W_in), W(w.W), b(w.b), activation(act) {
  expect_matrix("RNNCell", "W_in", W_in);
  expect_matrix("RNNCell", "W", W);
  const std::size_t I = W_in.size(0), H = W_in.size(1);
  expect_shape("RNNCell", "W", W, {H, H}, W_in.dtype());
  expect_shape("RNNCell", "b", b, {H}, W_in.dtype());
  (void)I;
}

Tensor RNNCell::project(const Tensor& x) const {
  if (!x.defined() || x.rank() != 2 || x.size(1) != input_size())
    throw Error("RNNCell: input " + shape_str(x) + " does not fit W_in " + W_in.shape().str());
  return linear(x, W_in, b);
}

// z_t = f(x_t W_in + b + z_(t-1) W)
State RNNCell::step_projected(const Tensor& xp, const State& s) const {
  return {fused ? rnn_cell(xp, s.h, W, activation) : rnn_cell_composed(xp, s.h, W, activation), {}};
}

Tensor RNNCell::run_projected(const Tensor& xp, const State& s) const {
  return fused && whole_sequence ? rnn_sequence(xp, s.h, W, activation) : Tensor();
}

// ---- LSTMCell ---------------------------------------------------------------------------------------

LSTMCell::LSTMCell(std::size_t I, std::size_t H, Generator& gen, bool peep, Init init, double std, DType dtype) {
  W_x = register_parameter("W_x", init_fused(init, I, H, 4, gen, std, dtype));
  W_h = register_parameter("W_h", init_fused(init, H, H, 4, gen, std, dtype));
  Tensor bias = zeros({4 * H}, dtype);
  dispatch(dtype, [&](auto z) {
    using T = decltype(z);
    for (std::size_t k = H; k < 2 * H; ++k) bias.data<T>()[k] = T(1);  // forget gate: remember at first
  });
  b = register_parameter("b", bias);
  if (peep) {
    p_i = register_parameter("p_i", zeros({H}, dtype));
    p_f = register_parameter("p_f", zeros({H}, dtype));
    p_o = register_parameter("p_o", zeros({H}, dtype));
  }
}

LSTMCell::LSTMCell(const LSTMWeights& w) : W_x(w.W_x), W_h(w.W_h), b(w.b), p_i(w.p_i), p_f(w.p_f), p_o(w.p_o) {
  expect_matrix("LSTMCell", "W_x", W_x);
  expect_matrix("LSTMCell", "W_h", W_h);
  const std::size_t I = W_x.size(0), H = W_h.size(0);
  const DType d = W_h.dtype();
  expect_shape("LSTMCell", "W_x", W_x, {I, 4 * H}, d);
  expect_shape("LSTMCell", "W_h", W_h, {H, 4 * H}, d);
  expect_shape("LSTMCell", "b", b, {4 * H}, d);
  const int n = int(p_i.defined()) + int(p_f.defined()) + int(p_o.defined());
  if (n != 0 && n != 3) throw Error("LSTMCell: peepholes p_i, p_f, p_o must be all defined or none");
  if (n == 3) {
    expect_shape("LSTMCell", "p_i", p_i, {H}, d);
    expect_shape("LSTMCell", "p_f", p_f, {H}, d);
    expect_shape("LSTMCell", "p_o", p_o, {H}, d);
  }
}

Tensor LSTMCell::project(const Tensor& x) const {
  if (!x.defined() || x.rank() != 2 || x.size(1) != input_size())
    throw Error("LSTMCell: input " + shape_str(x) + " does not fit W_x " + W_x.shape().str());
  return linear(x, W_x, b);
}

State LSTMCell::step_projected(const Tensor& xp, const State& s) const {
  const bool peep = peepholes();
  if (fused) {
    const Tensor a = addmm(xp, s.h, W_h);
    State next;
    next.c = peep ? lstm_cell(a, s.c, p_i, p_f) : lstm_cell(a, s.c);
    next.h = peep ? lstm_hidden(a, next.c, p_o) : lstm_hidden(a, next.c);
    return next;
  }
  const Tensor a = xp + matmul(s.h, W_h);
  State next;
  next.c = lstm_cell_composed(a, s.c, p_i, p_f);  // undefined peepholes are absent
  next.h = lstm_hidden_composed(a, next.c, p_o);
  return next;
}

// ---- GRUCell ----------------------------------------------------------------------------------------

GRUCell::GRUCell(std::size_t I, std::size_t H, Generator& gen, GRUConvention conv, Init init, double std,
                 DType dtype)
    : convention(conv) {
  W_x = register_parameter("W_x", init_fused(init, I, H, 3, gen, std, dtype));
  if (conv == GRUConvention::course) {
    W_h = register_parameter("W_h", init_fused(init, H, H, 2, gen, std, dtype));
    U_h = register_parameter("U_h", init_fused(init, H, H, 1, gen, std, dtype));
  } else {
    W_h = register_parameter("W_h", init_fused(init, H, H, 3, gen, std, dtype));
  }
  b = register_parameter("b", zeros({3 * H}, dtype));
  if (conv == GRUConvention::reset_after) b_hn = register_parameter("b_hn", zeros({H}, dtype));
}

GRUCell::GRUCell(const GRUWeights& w)
    : W_x(w.W_x), W_h(w.W_h), U_h(w.U_h), b(w.b), b_hn(w.b_hn), convention(w.convention) {
  expect_matrix("GRUCell", "W_x", W_x);
  expect_matrix("GRUCell", "W_h", W_h);
  const std::size_t I = W_x.size(0), H = W_h.size(0);
  const DType d = W_h.dtype();
  expect_shape("GRUCell", "W_x", W_x, {I, 3 * H}, d);
  expect_shape("GRUCell", "b", b, {3 * H}, d);
  if (convention == GRUConvention::course) {
    expect_shape("GRUCell", "W_h (course: r, z blocks)", W_h, {H, 2 * H}, d);
    expect_shape("GRUCell", "U_h", U_h, {H, H}, d);
    if (b_hn.defined()) throw Error("GRUCell: b_hn " + shape_str(b_hn) + " belongs to the reset_after convention, not course");
  } else {
    expect_shape("GRUCell", "W_h (reset_after: r, z, n blocks)", W_h, {H, 3 * H}, d);
    expect_shape("GRUCell", "b_hn", b_hn, {H}, d);
    if (U_h.defined()) throw Error("GRUCell: U_h " + shape_str(U_h) + " belongs to the course convention, not reset_after");
  }
}

Tensor GRUCell::project(const Tensor& x) const {
  if (!x.defined() || x.rank() != 2 || x.size(1) != input_size())
    throw Error("GRUCell: input " + shape_str(x) + " does not fit W_x " + W_x.shape().str());
  return linear(x, W_x, b);
}

State GRUCell::step_projected(const Tensor& xp, const State& s) const {
  if (convention == GRUConvention::reset_after) {
    const Tensor hp = matmul(s.h, W_h);
    return {fused ? gru_cell(xp, hp, s.h, b_hn) : gru_cell_composed(xp, hp, s.h, b_hn), {}};
  }
  const std::size_t H = hidden_size();
  const auto a = split(xp, {2 * H, H}, 1);  // [a_r a_z], a_n
  const auto rz = chunk(sigmoid(addmm(a[0], s.h, W_h)), 2, 1);
  const Tensor h_bar = tanh(addmm(a[1], rz[0] * s.h, U_h));
  return {s.h + rz[1] * (h_bar - s.h), {}};  // (1 - z) h + z h_bar
}

// ---- run --------------------------------------------------------------------------------------------

Sequence run(const RecurrentCell& cell, const Tensor& x, const State& s0, bool reverse) {
  if (!x.defined() || x.rank() != 3)
    throw Error("run(" + cell.kind() + "): input x is " + shape_str(x) + ", expected a sequence (T, B, I)");
  const std::size_t T = x.size(0), B = x.size(1), I = x.size(2);
  if (T == 0) throw Error("run(" + cell.kind() + "): empty sequence x " + x.shape().str() + " (T = 0)");
  if (I != cell.input_size())
    throw Error("run(" + cell.kind() + "): input x " + x.shape().str() + " has I = " + num(I) + ", the cell expects " +
                num(cell.input_size()));
  State s = s0.h.defined() ? s0 : cell.initial_state(B);
  cell.check_state(s, B);

  // The input half of every gate for all T steps at once: one (T*B, I) x (I, G) matmul and one bias add,
  // then a row slice per step (rows t*B .. (t+1)*B).
  const Tensor xp = cell.project(reshape(x, {T * B, I}));
  Sequence seq;
  seq.steps.resize(T);
  // One op for all steps where the cell has one (not in an autobatch task: there the steps of many
  // examples batch step by step); the steps are then row blocks of its output.
  if (!reverse && !autobatch::in_task()) seq.outputs = cell.run_projected(xp, s);
  if (seq.outputs.defined()) {
    for (std::size_t t = 0; t < T; ++t) seq.steps[t] = select(seq.outputs, 0, t);  // views, no copies
    seq.last = {seq.steps[T - 1], {}};
    return seq;
  }
  for (std::size_t k = 0; k < T; ++k) {
    const std::size_t t = reverse ? T - 1 - k : k;
    s = cell.step_projected(slice(xp, 0, t * B, (t + 1) * B), s);
    seq.steps[t] = s.h;
  }
  seq.outputs = reshape(concat(seq.steps, 0), {T, B, cell.hidden_size()});
  seq.last = s;
  return seq;
}

// ---- StackedRNN -------------------------------------------------------------------------------------

StackedRNN::StackedRNN(std::vector<std::unique_ptr<RecurrentCell>> layers) {
  for (auto& l : layers) add(std::move(l));
}

RecurrentCell& StackedRNN::add(std::unique_ptr<RecurrentCell> layer) {
  if (!layer) throw Error("StackedRNN: layer " + num(layers_.size()) + " is null");
  if (!layers_.empty() && layer->input_size() != layers_.back()->hidden_size())
    throw Error("StackedRNN: layer " + num(layers_.size()) + " (" + layer->kind() + ") takes I = " +
                num(layer->input_size()) + ", but layer " + num(layers_.size() - 1) + " gives H = " +
                num(layers_.back()->hidden_size()));
  layers_.push_back(std::move(layer));
  register_module("layer" + num(layers_.size() - 1), *layers_.back());
  return *layers_.back();
}

std::vector<State> StackedRNN::initial_states(std::size_t batch) const {
  std::vector<State> s;
  for (const auto& l : layers_) s.push_back(l->initial_state(batch));
  return s;
}

StackedRNN::Result StackedRNN::operator()(const Tensor& x, const std::vector<State>& s0) const {
  if (layers_.empty()) throw Error("StackedRNN: no layers");
  if (!s0.empty() && s0.size() != layers_.size())
    throw Error("StackedRNN: " + num(s0.size()) + " initial states for " + num(layers_.size()) + " layers");
  Result r;
  Tensor in = x;
  for (std::size_t k = 0; k < layers_.size(); ++k) {
    Sequence seq = run(*layers_[k], in, s0.empty() ? State{} : s0[k]);
    in = seq.outputs;
    r.last.push_back(seq.last);
  }
  r.outputs = in;
  return r;
}

// ---- Bidirectional ----------------------------------------------------------------------------------

Bidirectional::Bidirectional(std::unique_ptr<RecurrentCell> forward, std::unique_ptr<RecurrentCell> backward)
    : fwd_(std::move(forward)), bwd_(std::move(backward)) {
  if (!fwd_ || !bwd_) throw Error("Bidirectional: both cells are needed");
  if (fwd_->input_size() != bwd_->input_size())
    throw Error("Bidirectional: forward " + fwd_->kind() + " takes I = " + num(fwd_->input_size()) + ", backward " +
                bwd_->kind() + " takes I = " + num(bwd_->input_size()));
  register_module("forward", *fwd_);
  register_module("backward", *bwd_);
}

Bidirectional::Result Bidirectional::operator()(const Tensor& x, const State& s0f, const State& s0b) const {
  Sequence f = run(*fwd_, x, s0f);
  Sequence b = run(*bwd_, x, s0b, /*reverse=*/true);  // already aligned with t: no flips needed
  return {concat({f.outputs, b.outputs}, 2), f.last, b.last};
}

// ---- TruncatedBPTT ----------------------------------------------------------------------------------

TruncatedBPTT::TruncatedBPTT(const RecurrentCell& cell, std::size_t window) : cell_(cell), window_(window) {
  if (window == 0) throw Error("TruncatedBPTT(" + cell.kind() + "): window must be at least 1 step");
}

State TruncatedBPTT::run(const Tensor& x, const State& s0, const Callback& on_window) const {
  if (!x.defined() || x.rank() != 3)
    throw Error("TruncatedBPTT(" + cell_.kind() + "): input x is " + shape_str(x) + ", expected a sequence (T, B, I)");
  const std::size_t T = x.size(0);
  if (T == 0) throw Error("TruncatedBPTT(" + cell_.kind() + "): empty sequence x " + x.shape().str() + " (T = 0)");
  State s = s0;
  for (std::size_t begin = 0, k = 0; begin < T; begin += window_, ++k) {
    const std::size_t end = std::min(T, begin + window_);
    Window w{k, begin, end, slice(x, 0, begin, end), {}};
    w.seq = tapegrad::nn::run(cell_, w.inputs, s);
    // The cut: the next window starts from these values, with no graph behind them.
    s.h = w.seq.last.h.detach();
    s.c = w.seq.last.c.defined() ? w.seq.last.c.detach() : Tensor();
    if (on_window) on_window(w);
  }
  return s;
}

// ---- ElmanRNN ---------------------------------------------------------------------------------------

ElmanRNN::ElmanRNN(std::size_t I, std::size_t H, std::size_t O, Generator& gen, Activation hidden, Activation output,
                   Init init, double std, DType dtype)
    : cell(I, H, gen, hidden, init, std, dtype), out(H, O, gen, true, dtype), output_activation(output) {
  register_module("cell", cell);
  register_module("out", out);
}

ElmanRNN::Result ElmanRNN::operator()(const Tensor& x, const State& z0) const {
  Sequence seq = run(cell, x, z0);
  return {activate(output_activation, out(seq.outputs)), seq.outputs, seq.last};
}

}  // namespace tapegrad::nn
