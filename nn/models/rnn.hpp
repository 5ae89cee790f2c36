// Recurrent cells (Elman, LSTM, GRU), the sequence runner, stacked and bidirectional RNNs, truncated BPTT.
// Everything is composed from the engine's ops: backpropagation through time is the tape's backward.
//
// Layout: row vectors, as in the course. A step takes x (B, I) and a state h (B, H) [c (B, H) for LSTM];
// a sequence is x (T, B, I) -> outputs (T, B, H). Gates are fused: one (I, G) input matrix and one
// (H, G) recurrent matrix, so a step costs one matmul per matrix and the gates are slices of the result.
//
// Cells are Modules. A cell built from sizes owns its parameters; a cell built from a weights struct
// (RNNWeights, LSTMWeights, GRUWeights) *binds* the given tensors as they are (leaves or recorded
// results, e.g. PyTorch-layout weights imported through ops in nn/models/interchange.hpp) and registers no
// parameters: gradients flow back to wherever those tensors came from.
#pragma once

#include <cstddef>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "tapegrad/autograd/tensor.hpp"
#include "tapegrad/nn/models/linear.hpp"
#include "tapegrad/nn/models/module.hpp"
#include "tapegrad/ops/activation.hpp"

namespace tapegrad::nn {

using Activation = tapegrad::Activation;  // sigmoid, tanh, relu, identity (ops/activation.hpp)
using tapegrad::activate;          // ops/activation.hpp
using tapegrad::activation_name;   // ops/activation.hpp

// Weight initialisers for the cells' matrices (per gate block for LSTM/GRU), see nn/models/init.hpp.
// normal: N(0, std^2); lecun: the course's "Xavier" N(0, 1/n_in); glorot: Glorot uniform; he: N(0, 2/n_in);
// orthogonal: orthonormal rows/columns.
enum class Init { normal, lecun, glorot, he, orthogonal };

// The recurrent state. c is defined only for LSTM (the memory cell / CEC).
struct State {
  Tensor h;
  Tensor c;
};

// A cell maps (x_t, state_(t-1)) to state_t. The work splits in two so that a runner can do the input
// half for all T steps at once: project(x) = x W_x + b for x (N, I) -> (N, G), and step_projected,
// which adds the recurrent half. step(x, s) = step_projected(project(x), s), with the inputs checked.
class RecurrentCell : public Module {
 public:
  virtual std::string kind() const = 0;  // "RNNCell", "LSTMCell", "GRUCell" (error messages)
  virtual std::size_t input_size() const = 0;
  virtual std::size_t hidden_size() const = 0;
  virtual std::size_t gate_size() const = 0;  // G: the width of project()'s result
  virtual bool has_cell_state() const { return false; }
  virtual DType dtype() const = 0;

  // Zeros: h (B, H), and c (B, H) for cells with a memory cell.
  virtual State initial_state(std::size_t batch) const;
  // x (N, I) -> (N, G), the input half of every gate (bias included).
  virtual Tensor project(const Tensor& x) const = 0;
  // xp (B, G) from project(); s the previous state. No checks: run() and step() check.
  virtual State step_projected(const Tensor& xp, const State& s) const = 0;
  // All T steps at once from project()'s (T*B, G) rows, when the cell has one op for them: the outputs
  // (T, B, H); undefined (the default) makes run() step.
  virtual Tensor run_projected(const Tensor& xp, const State& s) const { return Tensor(); }

  // One step: x (B, I). Checks the ranks and shapes of x and s (Error naming the cell and the shapes).
  State step(const Tensor& x, const State& s) const;
  // Throws unless s fits this cell at batch size `batch`.
  void check_state(const State& s, std::size_t batch) const;

  // For run_checkpointed(), which builds the cell again over other tensors in backward: the tensors
  // project() and step_projected() read (the weights), and the cell's kind and settings as plain data
  // (the graph may outlive the cell). The built-in cells give both; the defaults throw / say none.
  struct Spec {
    enum class Kind : unsigned char { none, rnn, lstm, gru };
    Kind kind = Kind::none;
    Activation activation = Activation::tanh;  // RNNCell
    bool fused = true;
    bool gru_course = false;  // GRUCell: GRUConvention::course
  };
  virtual std::vector<Tensor> step_tensors() const;
  virtual Spec spec() const { return {}; }
};

// ---- Elman ------------------------------------------------------------------------------------------

struct RNNWeights {
  Tensor W_in;  // (I, H)
  Tensor W;     // (H, H)
  Tensor b;     // (H)
};

// Elman RNN (the course's notation, row vectors):
//   u_t = x_t W_in + z_(t-1) W + b,   z_t = f(u_t),   f in {sigmoid, tanh, relu}.
// The state h is z_t. The output layer y_t = g(z_t W_out + c) is separate (Linear + activation; see
// ElmanRNN below).
// fused (default true): a step is the one op rnn_cell (ops/recurrent.hpp); fused = false composes it as
// f(addmm(...)) (rnn_cell_composed), the reference form, checked against the same cases.
class RNNCell : public RecurrentCell {
 public:
  // W_in and W drawn with `init` (std is used by Init::normal only), b zeros.
  RNNCell(std::size_t input_size, std::size_t hidden_size, Generator& gen, Activation activation = Activation::tanh,
          Init init = Init::lecun, double std = 0.01, DType dtype = default_dtype());
  RNNCell(const RNNWeights& weights, Activation activation = Activation::tanh);  // binds, see top

  std::string kind() const override { return "RNNCell"; }
  std::size_t input_size() const override { return W_in.size(0); }
  std::size_t hidden_size() const override { return W.size(0); }
  std::size_t gate_size() const override { return W.size(0); }
  DType dtype() const override { return W.dtype(); }
  Tensor project(const Tensor& x) const override;
  State step_projected(const Tensor& xp, const State& s) const override;
  Tensor run_projected(const Tensor& xp, const State& s) const override;  // whole_sequence: rnn_sequence
  RNNWeights weights() const { return {W_in, W, b}; }
  std::vector<Tensor> step_tensors() const override { return {W_in, W, b}; }
  Spec spec() const override { return {Spec::Kind::rnn, activation, fused, false}; }

  Tensor W_in, W, b;
  Activation activation;
  bool fused = true;
  // With fused, run() computes all T steps as the one op rnn_sequence (one node where stepping records
  // 2T, and dW as one product): the fast path for small graphs. The steps are then row blocks of its
  // output, so their gradients (grad(), gradient_norms_over_time) hold only what reaches them from outside
  // the recurrence, not through the later steps: leave it off to study the gradient of each state.
  bool whole_sequence = false;
};

// ---- LSTM -------------------------------------------------------------------------------------------

struct LSTMWeights {
  Tensor W_x;  // (I, 4H), gate blocks in order i, f, g, o (PyTorch's order)
  Tensor W_h;  // (H, 4H)
  Tensor b;    // (4H)
  Tensor p_i, p_f, p_o;  // (H) each: peepholes, all three defined or none
};

// LSTM (row vectors; CEC = constant error carousel, the memory cell c):
//   [a_i a_f a_g a_o] = x_t W_x + h_(t-1) W_h + b
//   i = sigmoid(a_i + p_i * c_(t-1))      入力ゲート input gate
//   f = sigmoid(a_f + p_f * c_(t-1))      忘却ゲート forget gate
//   g = tanh(a_g)                         candidate
//   c_t = f * c_(t-1) + i * g             CEC
//   o = sigmoid(a_o + p_o * c_t)          出力ゲート output gate (its peephole sees the new c_t)
//   h_t = o * tanh(c_t)
// Peepholes p_* are diagonal (elementwise); without them the p_* terms are absent.
// Default init: each (I, H) and (H, H) gate block drawn with `init`, b zeros except the forget block = 1,
// peepholes zeros.
// fused (default true): the pointwise half runs as the two fused ops lstm_cell and lstm_hidden
// (ops/recurrent.hpp: 2 nodes per step instead of ~13). fused = false composes the same formulas from
// primitive ops (lstm_cell_composed, lstm_hidden_composed: slice, sigmoid, tanh, *, +): the reference
// form, checked against the same cases; the fused ops' create_graph backward differentiates it.
class LSTMCell : public RecurrentCell {
 public:
  LSTMCell(std::size_t input_size, std::size_t hidden_size, Generator& gen, bool peepholes = false,
           Init init = Init::glorot, double std = 0.01, DType dtype = default_dtype());
  explicit LSTMCell(const LSTMWeights& weights);  // binds, see top

  std::string kind() const override { return "LSTMCell"; }
  std::size_t input_size() const override { return W_x.size(0); }
  std::size_t hidden_size() const override { return W_h.size(0); }
  std::size_t gate_size() const override { return 4 * W_h.size(0); }
  bool has_cell_state() const override { return true; }
  DType dtype() const override { return W_h.dtype(); }
  bool peepholes() const { return p_i.defined(); }
  Tensor project(const Tensor& x) const override;
  State step_projected(const Tensor& xp, const State& s) const override;
  LSTMWeights weights() const { return {W_x, W_h, b, p_i, p_f, p_o}; }
  std::vector<Tensor> step_tensors() const override;  // W_x, W_h, b [, p_i, p_f, p_o]
  Spec spec() const override { return {Spec::Kind::lstm, Activation::tanh, fused, false}; }

  Tensor W_x, W_h, b, p_i, p_f, p_o;
  bool fused = true;
};

// ---- GRU --------------------------------------------------------------------------------------------

// Where the reset gate acts. course: on h before the recurrent matmul (Chung et al. 2014, Chainer, the
// course); reset_after: on the matmul's result, r * (h W_hn + b_hn) (PyTorch, cuDNN). Not equivalent.
enum class GRUConvention { course, reset_after };

struct GRUWeights {
  Tensor W_x;   // (I, 3H), gate blocks r, z, n (n: the candidate h_bar)
  Tensor W_h;   // course: (H, 2H) for r, z;  reset_after: (H, 3H) for r, z, n
  Tensor U_h;   // course only: (H, H), the candidate's recurrent matrix (applied to r * h)
  Tensor b;     // (3H)
  Tensor b_hn;  // reset_after only: (H), the hidden-side candidate bias, inside r * (...)
  GRUConvention convention = GRUConvention::course;
};

// GRU (row vectors), [a_r a_z a_n] = x_t W_x + b:
//   r = sigmoid(a_r + h_(t-1) W_hr)       リセットゲート reset gate
//   z = sigmoid(a_z + h_(t-1) W_hz)       更新ゲート update gate
//   course:      h_bar = tanh(a_n + (r * h_(t-1)) U_h)
//   reset_after: h_bar = tanh(a_n + r * (h_(t-1) W_hn + b_hn))
//   h_t = (1 - z) * h_(t-1) + z * h_bar   (course; computed as h + z * (h_bar - h))
//   h_t = (1 - z) * h_bar + z * h_(t-1)   (reset_after, as PyTorch: z keeps the old state)
// Default init: each gate block drawn with `init`, biases zeros.
class GRUCell : public RecurrentCell {
 public:
  GRUCell(std::size_t input_size, std::size_t hidden_size, Generator& gen,
          GRUConvention convention = GRUConvention::course, Init init = Init::glorot, double std = 0.01,
          DType dtype = default_dtype());
  explicit GRUCell(const GRUWeights& weights);  // binds, see top

  std::string kind() const override { return "GRUCell"; }
  std::size_t input_size() const override { return W_x.size(0); }
  std::size_t hidden_size() const override { return W_h.size(0); }
  std::size_t gate_size() const override { return 3 * W_h.size(0); }
  DType dtype() const override { return W_h.dtype(); }
  Tensor project(const Tensor& x) const override;
  State step_projected(const Tensor& xp, const State& s) const override;
  GRUWeights weights() const { return {W_x, W_h, U_h, b, b_hn, convention}; }
  std::vector<Tensor> step_tensors() const override;  // W_x, W_h, then U_h, b (course) or b, b_hn
  Spec spec() const override;

  Tensor W_x, W_h, U_h, b, b_hn;
  GRUConvention convention;
  // reset_after only (the course convention is always composed): fused (default) runs the pointwise part
  // as the one fused op gru_cell (ops/recurrent.hpp); false composes it from primitive ops, the reference
  // form, checked against the same cases.
  bool fused = true;
};

// ---- running over sequences ------------------------------------------------------------------------

struct Sequence {
  Tensor outputs;            // (T, B, H): h_t for every t, in time order
  std::vector<Tensor> steps; // the same h_t, one (B, H) tensor per step (attention, per-step losses)
  State last;                // the state after the last step read (t = T-1, or t = 0 when reversed)
};

// Runs the cell over x (T, B, I) from s0 (default: zeros). The input half x W_x + b of all T steps is one
// (T*B, I) x (I, G) matmul before the loop; each step then adds only the recurrent matmul.
// reverse: reads t = T-1 down to 0; outputs stay aligned with t (outputs[t] is the state after reading x_t).
Sequence run(const RecurrentCell& cell, const Tensor& x, const State& s0 = {}, bool reverse = false);

// The same sequence with recomputation (opt-in, for long sequences; PyTorch's torch.utils.checkpoint over
// segments, Chen et al. 2016): x is cut into segments of `every` steps (0: about sqrt(T)). Each segment is
// one node: its forward runs the cell under NoGrad and keeps only its inputs (the state it starts from;
// x and the weights are leaves or values the graph holds anyway) and its outputs; its backward runs the
// segment again with recording on, in a nested graph, and backpropagates through it. The graph then
// holds h_t for every t (the outputs) and c at the segment ends, not the steps' gate values and
// projections, at about one more forward's time. Gradients equal run()'s up to rounding (each segment
// projects its own rows); create_graph works (it differentiates the recomputation). The built-in cells
// only (a custom cell is a clear error: RecurrentCell::step_tensors, spec). Forward order only.
Sequence run_checkpointed(const RecurrentCell& cell, const Tensor& x, const State& s0 = {}, std::size_t every = 0);

// Layers of cells: layer k's outputs (T, B, H_k) are layer k+1's inputs.
class StackedRNN : public Module {
 public:
  StackedRNN() = default;
  explicit StackedRNN(std::vector<std::unique_ptr<RecurrentCell>> layers);
  // Appends a layer; its input size must equal the previous layer's hidden size.
  RecurrentCell& add(std::unique_ptr<RecurrentCell> layer);
  template <class Cell, class... Args> Cell& emplace(Args&&... args) {
    return static_cast<Cell&>(add(std::make_unique<Cell>(std::forward<Args>(args)...)));
  }

  struct Result {
    Tensor outputs;           // (T, B, H_last): the top layer's outputs
    std::vector<State> last;  // each layer's final state, bottom first
  };
  // s0: one state per layer, or empty for zeros.
  Result operator()(const Tensor& x, const std::vector<State>& s0 = {}) const;
  std::vector<State> initial_states(std::size_t batch) const;
  std::size_t num_layers() const { return layers_.size(); }
  RecurrentCell& layer(std::size_t k) const { return *layers_.at(k); }

 private:
  std::vector<std::unique_ptr<RecurrentCell>> layers_;
};

// Two cells over the same sequence, one forward and one backward in time:
//   out_t = concat(h_fwd_t, h_bwd_t) on the feature axis -> (T, B, 2H)
// where h_bwd is computed from x_(T-1) down to x_0 and re-aligned with t (the course's
// concat(h_f, h_b[::-1])).
class Bidirectional : public Module {
 public:
  Bidirectional(std::unique_ptr<RecurrentCell> forward, std::unique_ptr<RecurrentCell> backward);

  struct Result {
    Tensor outputs;             // (T, B, H_fwd + H_bwd)
    State last_forward;         // after x_(T-1)
    State last_backward;        // after x_0
  };
  Result operator()(const Tensor& x, const State& s0_forward = {}, const State& s0_backward = {}) const;
  RecurrentCell& forward_cell() const { return *fwd_; }
  RecurrentCell& backward_cell() const { return *bwd_; }

 private:
  std::unique_ptr<RecurrentCell> fwd_, bwd_;
};

// ---- truncated BPTT --------------------------------------------------------------------------------

// Truncated backpropagation through time: runs a cell over a long x (T, B, I) in windows of `window`
// steps (the last may be shorter). Each window is a fresh graph; the state carried into the next window
// is detached (values kept, graph cut), so gradients flow back at most `window` steps. The callback
// gets each window's result and does the rest (loss, backward, optimiser step):
//
//   TruncatedBPTT tbptt(cell, 20);
//   State s = tbptt.run(x, {}, [&](const TruncatedBPTT::Window& w) {
//     Tensor loss = mse_loss(sigmoid(out(w.seq.outputs)), slice(d, 0, w.begin, w.end));
//     backward(loss);
//     opt.step();
//     model.zero_grad();
//   });
class TruncatedBPTT {
 public:
  TruncatedBPTT(const RecurrentCell& cell, std::size_t window);

  struct Window {
    std::size_t index;  // 0, 1, ...
    std::size_t begin;  // first time step (inclusive)
    std::size_t end;    // last time step (exclusive)
    Tensor inputs;      // x[begin:end], (end - begin, B, I)
    Sequence seq;       // the cell run over inputs from the carried state
  };
  using Callback = std::function<void(const Window&)>;

  // Returns the (detached) state after the last step; s0 default zeros.
  State run(const Tensor& x, const State& s0, const Callback& on_window) const;
  std::size_t window() const { return window_; }

 private:
  const RecurrentCell& cell_;
  std::size_t window_;
};

// ---- a small model for the course's examples -------------------------------------------------------

// Elman RNN with its output layer (the course's notation):
//   z_t = f(x_t W_in + z_(t-1) W + b),   y_t = g(z_t W_out + c)
// The output layer is one (T, B, H) x (H, O) matmul over all steps.
class ElmanRNN : public Module {
 public:
  ElmanRNN(std::size_t input_size, std::size_t hidden_size, std::size_t output_size, Generator& gen,
           Activation hidden = Activation::sigmoid, Activation output = Activation::sigmoid, Init init = Init::lecun,
           double std = 0.01, DType dtype = default_dtype());

  struct Result {
    Tensor y;    // (T, B, O)
    Tensor z;    // (T, B, H)
    State last;  // z_(T-1), to carry on
  };
  Result operator()(const Tensor& x, const State& z0 = {}) const;

  RNNCell cell;   // W_in, W, b
  Linear out;     // W_out = out.W (H, O), c = out.b (O)
  Activation output_activation;
};

}  // namespace tapegrad::nn
