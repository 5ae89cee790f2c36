#include "tapegrad/nn/models/rnn.hpp"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <utility>

#include "tapegrad/autograd/autobatch.hpp"
#include "tapegrad/autograd/diagnostics.hpp"
#include "tapegrad/autograd/op.hpp"
#include "tapegrad/autograd/tape.hpp"
#include "tapegrad/nn/models/init.hpp"
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

std::vector<Tensor> RecurrentCell::step_tensors() const {
  throw Error(kind() + ": run_checkpointed supports the built-in cells (RNNCell, LSTMCell, GRUCell) only: this "
              "cell does not say which weights its steps read (RecurrentCell::step_tensors, spec)");
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
  if (!x.defined() || x.rank() < 2 || x.size(x.rank() - 1) != input_size())  // (N, I), or (T, B, I) from run()
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
  if (!x.defined() || x.rank() < 2 || x.size(x.rank() - 1) != input_size())  // (N, I), or (T, B, I) from run()
    throw Error("LSTMCell: input " + shape_str(x) + " does not fit W_x " + W_x.shape().str());
  return linear(x, W_x, b);
}

std::vector<Tensor> LSTMCell::step_tensors() const {
  if (peepholes()) return {W_x, W_h, b, p_i, p_f, p_o};
  return {W_x, W_h, b};
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
  if (!x.defined() || x.rank() < 2 || x.size(x.rank() - 1) != input_size())  // (N, I), or (T, B, I) from run()
    throw Error("GRUCell: input " + shape_str(x) + " does not fit W_x " + W_x.shape().str());
  return linear(x, W_x, b);
}

std::vector<Tensor> GRUCell::step_tensors() const {
  if (convention == GRUConvention::course) return {W_x, W_h, U_h, b};
  return {W_x, W_h, b, b_hn};
}

RecurrentCell::Spec GRUCell::spec() const {
  return {Spec::Kind::gru, Activation::tanh, fused, convention == GRUConvention::course};
}

State GRUCell::step_projected(const Tensor& xp, const State& s) const {
  if (convention == GRUConvention::reset_after) {
    const Tensor hp = matmul(s.h, W_h);
    return {fused ? gru_cell(xp, hp, s.h, b_hn) : gru_cell_composed(xp, hp, s.h, b_hn), {}};
  }
  return {gru_course_composed(xp, s.h, W_h, U_h), {}};
}

// ---- run --------------------------------------------------------------------------------------------

namespace {

// The checks of run() and run_checkpointed(); returns the start state (zeros when s0 has no h).
State start_state(const char* who, const RecurrentCell& cell, const Tensor& x, const State& s0) {
  if (!x.defined() || x.rank() != 3)
    throw Error(std::string(who) + "(" + cell.kind() + "): input x is " + shape_str(x) + ", expected a sequence (T, B, I)");
  const std::size_t T = x.size(0), B = x.size(1), I = x.size(2);
  if (T == 0) throw Error(std::string(who) + "(" + cell.kind() + "): empty sequence x " + x.shape().str() + " (T = 0)");
  if (I != cell.input_size())
    throw Error(std::string(who) + "(" + cell.kind() + "): input x " + x.shape().str() + " has I = " + num(I) +
                ", the cell expects " + num(cell.input_size()));
  State s = s0.h.defined() ? s0 : cell.initial_state(B);
  cell.check_state(s, B);
  return s;
}

}  // namespace

Sequence run(const RecurrentCell& cell, const Tensor& x, const State& s0, bool reverse) {
  State s = start_state("run", cell, x, s0);
  const std::size_t T = x.size(0), B = x.size(1), I = x.size(2);

  // The input half of every gate for all T steps at once: one (T*B, I) x (I, G) matmul and one bias add,
  // then a row slice per step (rows t*B .. (t+1)*B).
  // When recording, the built-in cells project x (T, B, I) as it is and the result is reshaped (a view):
  // reshaping a leaf x first would keep a copy of it on the tape. Under NoGrad every reshape copies, and
  // x (I wide) is the cheaper one.
  const bool as_is = grad_enabled() && cell.spec().kind != RecurrentCell::Spec::Kind::none;
  const Tensor xp = as_is ? reshape(cell.project(x), {T * B, cell.gate_size()}) : cell.project(reshape(x, {T * B, I}));
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

// ---- run_checkpointed --------------------------------------------------------------------------------
// One node per segment of steps [begin, end): inputs x (T, B, I), h, [c], the cell's step_tensors();
// output (n [+ 1], B, H): h after each of the n steps, then c after the last (cells with a memory cell).
// Forward runs the steps under NoGrad; backward runs them again, recorded, in a graph of its own (the cell
// built again from its spec over leaves holding the inputs' values) and takes the inputs' gradients from it.

namespace {

// Not in the op table (it needs a cell, not only tensors): tests/nn/models/test_checkpoint.cpp checks its gradients
// against run()'s and by central differences, its create_graph path and its bad inputs.
const OpInfo op_rnn_segment{"rnn_segment", "nn"};

struct SegmentAttrs {
  RecurrentCell::Spec spec;  // the cell is built again from this and the node's inputs
  std::size_t begin, end;
};

// A cell of the given kind and settings over `t` (step_tensors() order); it binds them.
std::unique_ptr<RecurrentCell> rebuild(const RecurrentCell::Spec& s, const std::vector<Tensor>& t) {
  using Kind = RecurrentCell::Spec::Kind;
  if (s.kind == Kind::rnn) {
    auto c = std::make_unique<RNNCell>(RNNWeights{t.at(0), t.at(1), t.at(2)}, s.activation);
    c->fused = s.fused;
    return c;
  }
  if (s.kind == Kind::lstm) {
    auto c = std::make_unique<LSTMCell>(t.size() == 6 ? LSTMWeights{t[0], t[1], t[2], t[3], t[4], t[5]}
                                                      : LSTMWeights{t.at(0), t.at(1), t.at(2), {}, {}, {}});
    c->fused = s.fused;
    return c;
  }
  if (s.kind == Kind::gru) {
    auto c = std::make_unique<GRUCell>(s.gru_course ? GRUWeights{t.at(0), t.at(1), t.at(2), t.at(3), {}, GRUConvention::course}
                                                    : GRUWeights{t.at(0), t.at(1), {}, t.at(2), t.at(3), GRUConvention::reset_after});
    c->fused = s.fused;
    return c;
  }
  throw Error("run_checkpointed: the cell gives no spec (RecurrentCell::spec): built-in cells only");
}

// The steps of x_seg (n, B, I) from s, as run() takes them, packed as the segment's output.
Tensor run_segment(const RecurrentCell& cell, const Tensor& x_seg, State s) {
  const std::size_t n = x_seg.size(0), B = x_seg.size(1), I = x_seg.size(2);
  const Tensor xp = cell.project(reshape(x_seg, {n * B, I}));
  std::vector<Tensor> parts;
  parts.reserve(n + 1);
  for (std::size_t t = 0; t < n; ++t) {
    s = cell.step_projected(slice(xp, 0, t * B, (t + 1) * B), s);
    parts.push_back(s.h);
  }
  if (s.c.defined()) parts.push_back(s.c);
  return reshape(concat(parts, 0), {parts.size(), B, cell.hidden_size()});
}

// The node's inputs, in order: x, h, [c (LSTM)], the step tensors.
std::size_t first_weight(const RecurrentCell::Spec& s) { return s.kind == RecurrentCell::Spec::Kind::lstm ? 3 : 2; }

void segment_backward(BackwardCtx& c) {
  const SegmentAttrs& a = c.attrs<SegmentAttrs>();
  const std::size_t B = c.in_shape(0)[1], I = c.in_shape(0)[2], n = a.end - a.begin, H = c.out_shape()[2];
  const std::size_t w0 = first_weight(a.spec);
  dispatch(c.dtype(), [&](auto z) {
    using T = decltype(z);
    Tape::Scope scope;  // a graph of its own, for the recomputation, recorded even if backward runs in NoGrad
    detail::ModeGuard grad_on(detail::grad_mode, true);
    std::vector<Tensor> leaves(c.num_inputs()), want;
    std::vector<std::size_t> which;
    auto leaf = [&](std::size_t i, const T* values, const Shape& shape) {
      leaves[i] = from_data<T>(values, shape);
      if (c.needs(i)) {
        leaves[i].requires_grad_();
        want.push_back(leaves[i]);
        which.push_back(i);
      }
    };
    leaf(0, c.in<T>(0) + a.begin * B * I, {n, B, I});
    for (std::size_t i = 1; i < c.num_inputs(); ++i) leaf(i, c.in<T>(i), c.in_shape(i));
    if (want.empty()) return;
    const auto cell = rebuild(a.spec, std::vector<Tensor>(leaves.begin() + std::ptrdiff_t(w0), leaves.end()));
    const Tensor y = run_segment(*cell, leaves[0], State{leaves[1], w0 == 3 ? leaves[2] : Tensor()});
    GradOptions options;
    options.seed = from_data<T>(c.gout<T>(), c.out_shape());
    const std::vector<Tensor> grads = grad(y, want, options);
    for (std::size_t k = 0; k < which.size(); ++k) {
      const Tensor& g = grads[k];
      if (!g.defined()) continue;
      const T* pg = static_cast<const T*>(g.raw_data());
      if (which[k] == 0) {  // x's gradient: the segment's rows
        T* gx = c.grad<T>(0) + a.begin * B * I;
        for (std::size_t e = 0; e < n * B * I; ++e) gx[e] += pg[e];
      } else {
        c.accumulate<T>(which[k], pg, g.shape());
      }
    }
    (void)H;
  });
}

void segment_graph_backward(GraphCtx& g) {
  const SegmentAttrs& a = g.attrs<SegmentAttrs>();
  const std::size_t w0 = first_weight(a.spec);
  g.differentiate([&] {
    std::vector<Tensor> weights;
    for (std::size_t i = w0; i < g.num_inputs(); ++i) weights.push_back(g.in(i));
    const auto cell = rebuild(a.spec, weights);
    return run_segment(*cell, slice(g.in(0), 0, a.begin, a.end), State{g.in(1), w0 == 3 ? g.in(2) : Tensor()});
  });
}

Tensor segment(const RecurrentCell& cell, const Tensor& x, const State& s, std::size_t begin, std::size_t end,
               const std::vector<Tensor>& weights) {
  std::vector<Tensor> in{x, s.h};
  if (cell.has_cell_state()) in.push_back(s.c);
  in.insert(in.end(), weights.begin(), weights.end());
  OpCall call(op_rnn_segment, in);
  const std::size_t B = x.size(1), H = cell.hidden_size(), rows = end - begin + (cell.has_cell_state() ? 1 : 0);
  Tensor y = call.output({rows, B, H});
  {
    NoGrad no_grad;
    const Tensor v = run_segment(cell, slice(x, 0, begin, end), s);
    std::memcpy(y.raw_data(), v.raw_data(), rows * B * H * dtype_size(call.dtype()));
  }
  SegmentAttrs& a = call.attrs<SegmentAttrs>();
  a.spec = cell.spec();
  a.begin = begin;
  a.end = end;
  call.record(segment_backward, segment_graph_backward);
  return y;
}

}  // namespace

Sequence run_checkpointed(const RecurrentCell& cell, const Tensor& x, const State& s0, std::size_t every) {
  State s = start_state("run_checkpointed", cell, x, s0);
  const std::size_t T = x.size(0), B = x.size(1), H = cell.hidden_size();
  if (every == 0) every = std::max<std::size_t>(1, std::size_t(std::lround(std::sqrt(double(T)))));
  const std::vector<Tensor> weights = cell.step_tensors();
  if (cell.spec().kind == RecurrentCell::Spec::Kind::none)
    throw Error("run_checkpointed(" + cell.kind() + "): the cell gives no spec (RecurrentCell::spec): built-in cells only");
  for (const Tensor& w : weights)
    if (!w.defined() || w.dtype() != x.dtype())
      throw Error("run_checkpointed(" + cell.kind() + "): input x " + x.shape().str() + " is " + dtype_name(x.dtype()) +
                  ", the cell's weights " + (w.defined() ? dtype_name(w.dtype()) : std::string("undefined")));
  Sequence seq;
  seq.steps.resize(T);
  std::vector<Tensor> hs;
  for (std::size_t begin = 0; begin < T; begin += every) {
    const std::size_t end = std::min(T, begin + every), n = end - begin;
    const Tensor y = segment(cell, x, s, begin, end, weights);
    const Tensor h = slice(y, 0, 0, n);
    hs.push_back(h);
    for (std::size_t t = 0; t < n; ++t) seq.steps[begin + t] = reshape(slice(y, 0, t, t + 1), {B, H});
    s.h = seq.steps[end - 1];
    if (cell.has_cell_state()) s.c = reshape(slice(y, 0, n, n + 1), {B, H});
  }
  seq.outputs = hs.size() == 1 ? hs[0] : concat(hs, 0);
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
