// The tape: one node per recorded op, in execution order. Execution order is already a topological
// order, so backward is one reverse loop over a vector: no recursion, no graph search.
//
// Memory: values and gradients of recorded ops come from the tape's bump arena, reset in O(1) when the
// next graph starts after a backward() that released the tape. Owned tensors (parameters, inputs)
// hold their own buffers; a leaf's gradient is accumulated straight into its own gradient buffer.
// Writing an op: autograd/op.hpp.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "tapegrad/autograd/arena.hpp"
#include "tapegrad/autograd/diagnostics.hpp"
#include "tapegrad/autograd/tensor.hpp"

namespace tapegrad {

struct OpInfo;
class BackwardCtx;
class GraphCtx;
using BackwardFn = void (*)(BackwardCtx&);
using GraphBackwardFn = void (*)(GraphCtx&);

// A gradient update an op hands the engine to run after the sweep (BackwardCtx::defer): fn applies a
// group of updates to one gradient buffer, each described by an op-owned payload in tape memory.
using DeferredFn = void (*)(void* grad, const void* const* payloads, std::size_t count);

namespace detail {
struct Node {
  const OpInfo* op = nullptr;
  BackwardFn backward = nullptr;
  GraphBackwardFn graph_backward = nullptr;  // backward written in ops, for create_graph
  std::uint32_t out = 0;
  std::uint32_t n_in = 0;
  std::uint32_t in_inline[3] = {0, 0, 0};
  std::uint32_t* in_ext = nullptr;  // arena array when an op has more than 3 inputs
  const void* attrs = nullptr;      // the op's attributes and saved values (OpCall::attrs), in the arena
  const std::uint32_t* inputs() const { return n_in <= 3 ? in_inline : in_ext; }
};
}  // namespace detail

class Tape {
 public:
  Tape();
  Tape(const Tape&) = delete;
  Tape& operator=(const Tape&) = delete;

  std::size_t num_nodes() const { return nodes_.size(); }
  std::size_t num_slots() const { return slots_.size(); }
  std::uint64_t epoch() const { return epoch_; }
  const std::uint64_t* epoch_ptr() const { return &epoch_; }
  bool released() const { return released_; }
  std::size_t bytes_in_use() const { return arena_.bytes_in_use(); }
  std::size_t peak_bytes() const { return arena_.peak_bytes(); }
  void reset_peak() { arena_.reset_peak(); }

  // Drop the whole graph and its values now (for example after a forward pass that needs no backward).
  void clear();

  // Graphviz DOT of the recorded graph: ops as boxes, tensors as ellipses with their shapes.
  std::string to_dot() const;

  // The tape of the calling thread. Tape::Scope swaps in a fresh one for a nested, separate graph.
  static Tape& current() {
    Tape* t = current_tape_;
    return t ? *t : init_current();
  }
  // Makes t the calling thread's tape and returns the previous one (autobatch's task switches).
  static Tape* exchange_current(Tape* t) {
    Tape* previous = current_tape_;
    current_tape_ = t;
    return previous;
  }
  class Scope {
   public:
    Scope();
    ~Scope();
    Scope(const Scope&) = delete;
    Scope& operator=(const Scope&) = delete;
    Tape& tape() { return *tape_; }

   private:
    Tape* tape_;
    Tape* previous_;
  };

 private:
  // The internals: the core's own classes (recording, the backward contexts, the sweep, tensors, anomaly
  // checks) use them; ops reach a tape only through those.
  friend struct Engine;
  friend class OpCall;
  friend class NodeCtx;
  friend class BackwardCtx;
  friend class GraphCtx;
  friend class Tensor;
  friend struct detail::TensorInternals;
  friend void backward(const Tensor& root, const Tensor& seed, bool retain_graph);
  friend void detail::check_grads(const Tape& tape, const detail::Node& node);
  detail::Slot& slot(std::uint32_t i) { return slots_[i]; }
  const detail::Slot& slot(std::uint32_t i) const { return slots_[i]; }
  const detail::Node& node(std::size_t i) const { return nodes_[i]; }
  void* allocate(std::size_t bytes) { return arena_.allocate(bytes); }
  std::uint32_t slot_for(const Tensor& t);  // registers an owned tensor on first use in this graph
  std::shared_ptr<detail::LeafImpl> leaf_of(std::uint32_t slot) const;  // the owned tensor of a leaf slot
  // A slot for a new value: in fresh arena memory, or over `data` (a view of another slot's values).
  std::uint32_t new_slot(const Shape& shape, DType dtype, void* data = nullptr);
  std::uint32_t new_view(const Shape& shape, DType dtype, std::uint32_t of, std::size_t byte_offset);
  void push_node(const detail::Node& n) { nodes_.push_back(n); }
  struct Deferred {
    void* grad;
    DeferredFn fn;
    const void* payload;
  };
  void defer(const Deferred& d) { deferred_.push_back(d); }
  void release();  // after a backward without retain: the graph is gone, values readable until next graph

  static Tape& init_current();
  // An inline, constant-initialised thread_local: read directly, with no TLS wrapper call (the wrapper of
  // an extern thread_local also tripped UBSan's null-pointer check).
  static inline thread_local Tape* current_tape_ = nullptr;
  bool swept_ = false;  // a backward ran over this graph (it was retained): clear gradients first
  detail::SlotStore slots_;
  std::vector<detail::Node> nodes_;
  std::vector<Deferred> deferred_;  // updates waiting for the end of the current sweep
  std::vector<std::shared_ptr<detail::LeafImpl>> leaves_;  // owned tensors kept alive by this graph
  std::vector<std::uint32_t> leaf_slots_;                  // their slots, for the version check
  detail::Arena arena_;
  std::uint64_t epoch_ = 1;
  bool released_ = false;
};

// Reverse sweep from `root`: accumulates d root / d leaf into every leaf's grad(). A non-scalar root
// needs a seed of its shape. Without retain_graph the tape is released afterwards.
void backward(const Tensor& root, const Tensor& seed = Tensor(), bool retain_graph = false);

// Functional gradients d root / d x for each x (leaves or recorded tensors); leaves' grad() untouched.
// With create_graph the backward pass is itself recorded, so the results can be differentiated again.
struct GradOptions {
  Tensor seed;
  bool retain_graph = false;
  bool create_graph = false;  // implies retain_graph
};
std::vector<Tensor> grad(const Tensor& root, const std::vector<Tensor>& xs, const GradOptions& options = {});

// Calls f(T{}) with T = float or double for a dtype.
template <class F> decltype(auto) dispatch(DType d, F&& f) {
  if (d == DType::f32) return f(float{});
  return f(double{});
}

}  // namespace tapegrad
