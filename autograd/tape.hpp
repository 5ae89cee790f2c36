// The tape: one node per recorded op, in execution order. Execution order is already a topological
// order, so backward is one reverse loop over a vector: no recursion, no graph search.
//
// Memory: values and gradients of recorded ops come from the tape's bump arena, reset in O(1) when the
// next graph starts after a backward() that released the tape. Owned tensors (parameters, inputs)
// hold their own buffers; a leaf's gradient is accumulated straight into its own gradient buffer.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "tapegrad/autograd/tensor.hpp"

namespace tapegrad {

// Every op declares itself once, with TAPEGRAD_OP below; the registry lets the op tests prove that
// each registered op has a row in the op table.
struct OpInfo {
  const char* name;
  const char* family;
};
const std::vector<const OpInfo*>& registered_ops();
namespace detail {
struct OpRegistrar {
  explicit OpRegistrar(const OpInfo* op);
};
}  // namespace detail
#define TAPEGRAD_OP(var, name, family)                 \
  static const ::tapegrad::OpInfo var{name, family}; \
  static const ::tapegrad::detail::OpRegistrar var##_registrar { &var }

class BackwardCtx;
class GraphCtx;
using BackwardFn = void (*)(BackwardCtx&);
using GraphBackwardFn = void (*)(GraphCtx&);

// A gradient update an op hands the engine to run after the sweep (BackwardCtx::defer): the op's own
// operands (a, g and their sizes), and the function that applies a group of them to one gradient buffer.
struct DeferredUpdate {
  const void* a;
  const void* g;
  std::size_t m, k, n;
};
using DeferredFn = void (*)(void* grad, const DeferredUpdate* updates, std::size_t count);

namespace detail {

struct Slot {
  void* data = nullptr;
  void* grad = nullptr;  // null until a gradient reaches it (leaves: their own gradient buffer)
  Shape shape;
  DType dtype = DType::f32;
  bool requires_grad = false;
  std::int32_t producer = -1;  // index of the node that wrote it; -1 for leaves
  LeafImpl* leaf = nullptr;    // owned tensors registered on this tape
  std::uint64_t version = 0;   // leaves: the leaf's version when it entered this graph
};

struct Node {
  const OpInfo* op = nullptr;
  BackwardFn backward = nullptr;
  GraphBackwardFn graph_backward = nullptr;  // backward written in ops, for create_graph
  std::uint32_t out = 0;
  std::uint32_t n_in = 0;
  std::uint32_t in_inline[3] = {0, 0, 0};
  std::uint32_t* in_ext = nullptr;  // arena array when an op has more than 3 inputs
  double f[2] = {0, 0};             // small attributes (scalars, axes, flags) ...
  std::int64_t i[4] = {0, 0, 0, 0};
  void* saved = nullptr;            // ... and larger ones, in the arena
  const std::uint32_t* inputs() const { return n_in <= 3 ? in_inline : in_ext; }
};

// A chunked bump allocator. reset() is O(1) and keeps the memory; after a step that overflowed the
// first chunk, the chunks are merged so the next step runs from one chunk.
class Arena {
 public:
  Arena() = default;
  Arena(const Arena&) = delete;
  Arena& operator=(const Arena&) = delete;
  ~Arena();
  void* allocate(std::size_t bytes) {  // 64-byte aligned; the common case is a pointer bump
    bytes = bytes ? (bytes + 63) & ~std::size_t(63) : 64;
    if (current_ < chunks_.size() && offset_ + bytes <= chunks_[current_].size) {
      void* p = chunks_[current_].base + offset_;
      offset_ += bytes;
      in_use_ += bytes;
      return p;
    }
    return allocate_slow(bytes);
  }
  void reset();
  std::size_t bytes_in_use() const { return in_use_; }
  std::size_t peak_bytes() const { return peak_ > in_use_ ? peak_ : in_use_; }
  std::size_t capacity() const;
  void reset_peak() { peak_ = in_use_; }

 private:
  void* allocate_slow(std::size_t bytes);
  struct Chunk {
    char* base;
    std::size_t size;
  };
  std::vector<Chunk> chunks_;
  std::size_t current_ = 0, offset_ = 0, in_use_ = 0, peak_ = 0;
};

// Slots in fixed blocks: a slot never moves once made, so references to its shape stay valid while
// later ops (or create_graph backward passes) add slots. Blocks are kept across graphs.
class SlotStore {
 public:
  static constexpr std::size_t block = 1024;
  std::size_t size() const { return size_; }
  Slot& operator[](std::size_t i) { return blocks_[i / block][i % block]; }
  const Slot& operator[](std::size_t i) const { return blocks_[i / block][i % block]; }
  Slot& emplace_back() {  // the next slot, in place; the caller sets every field
    if (size_ == blocks_.size() * block) blocks_.emplace_back(new Slot[block]);
    return (*this)[size_++];
  }
  void clear() { size_ = 0; }

 private:
  std::vector<std::unique_ptr<Slot[]>> blocks_;
  std::size_t size_ = 0;
};

}  // namespace detail

class Tape {
 public:
  Tape();
  ~Tape();
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

  // Internals used by ops and by the engine.
  detail::Slot& slot(std::uint32_t i) { return slots_[i]; }
  const detail::Slot& slot(std::uint32_t i) const { return slots_[i]; }
  const detail::Node& node(std::size_t i) const { return nodes_[i]; }
  void* allocate(std::size_t bytes) { return arena_.allocate(bytes); }
  void begin_recording();  // starts a new graph if the last one was released
  std::uint32_t slot_for(const Tensor& t);  // registers an owned tensor on first use in this graph
  std::uint32_t new_slot(const Shape& shape, DType dtype);
  void push_node(const detail::Node& n) { nodes_.push_back(n); }
  struct Deferred {
    void* grad;
    DeferredFn fn;
    DeferredUpdate update;
  };
  void defer(const Deferred& d) { deferred_.push_back(d); }
  void release();  // after a backward without retain: the graph is gone, values readable until next graph

  // The tape of the calling thread. Tape::Scope swaps in a fresh one for a nested, separate graph.
  static Tape& current() {
    Tape* t = current_tape_;
    return t ? *t : init_current();
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
  friend struct Engine;
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
  Tape* previous_ = nullptr;
};

// Grad mode (thread-local). NoGrad: nothing inside it is recorded.
bool grad_enabled();
class NoGrad {
 public:
  NoGrad();
  ~NoGrad();
  NoGrad(const NoGrad&) = delete;
  NoGrad& operator=(const NoGrad&) = delete;

 private:
  bool previous_;
};

// Anomaly mode (thread-local): the first op whose output or input gradient is not finite raises an
// Error naming the op and the shapes.
bool anomaly_enabled();
class DetectAnomaly {
 public:
  DetectAnomaly();
  ~DetectAnomaly();
  DetectAnomaly(const DetectAnomaly&) = delete;
  DetectAnomaly& operator=(const DetectAnomaly&) = delete;

 private:
  bool previous_;
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

// ---------------------------------------------------------------------------------------------
// Writing an op. Forward and backward stand side by side:
//
//   Tensor tanh(const Tensor& x) {
//     OpCall call(op_tanh, {&x});
//     Tensor y = call.output(x.shape());
//     ... y = tanh(x) ...
//     call.record([](BackwardCtx& c) { /* gx += gy * (1 - y*y) */ },
//                 [](GraphCtx& g) { g.accumulate(0, g.gout() * (1 - g.out() * g.out())); });
//     return y;
//   }
class OpCall {
 public:
  OpCall(const OpInfo& op, std::initializer_list<const Tensor*> inputs);
  OpCall(const OpInfo& op, const std::vector<Tensor>& inputs);

  const char* name() const { return op_->name; }
  bool recording() const { return recording_; }
  DType dtype() const { return dtype_; }
  Tensor output(const Shape& shape);  // values uninitialised; tape tensor if recording, else owned
  template <class T> T* save(std::size_t n) {  // memory for backward (arena; scratch if not recording)
    return static_cast<T*>(save_bytes(n * sizeof(T)));
  }
  detail::Node& node() { return node_; }  // attributes: node().f[], node().i[], node().saved
  void record(BackwardFn backward, GraphBackwardFn graph_backward = nullptr);

 private:
  void init();
  void* save_bytes(std::size_t bytes);
  const OpInfo* op_;
  std::vector<const Tensor*> many_;
  const Tensor* few_[3] = {nullptr, nullptr, nullptr};
  std::size_t n_in_ = 0;
  const Tensor* input(std::size_t i) const { return many_.empty() ? few_[i] : many_[i]; }
  DType dtype_ = DType::f32;
  bool recording_ = false;
  Tensor out_;
  detail::Node node_;
  Tape* tape_ = nullptr;
};

// What a backward function sees: raw, contiguous buffers of the inputs, output and output gradient.
class BackwardCtx {
 public:
  BackwardCtx(Tape& tape, const detail::Node& node) : tape_(tape), node_(node) {}
  const detail::Node& node() const { return node_; }
  std::size_t num_inputs() const { return node_.n_in; }
  DType dtype() const { return tape_.slot(node_.out).dtype; }
  const Shape& in_shape(std::size_t i) const { return in_slot(i).shape; }
  const Shape& out_shape() const { return tape_.slot(node_.out).shape; }
  bool needs(std::size_t i) const { return in_slot(i).requires_grad; }
  template <class T> const T* in(std::size_t i) const { return static_cast<const T*>(in_slot(i).data); }
  template <class T> const T* out() const { return static_cast<const T*>(tape_.slot(node_.out).data); }
  template <class T> const T* gout() const { return static_cast<const T*>(tape_.slot(node_.out).grad); }
  // The input's gradient buffer (its shape), zero-filled on first use: accumulate into it with +=.
  template <class T> T* grad(std::size_t i) { return static_cast<T*>(grad_buffer(i, nullptr)); }
  // The same buffer for an op that writes every element of it in one pass. When the buffer is new,
  // `fresh` is set and it is uninitialised: assign (=) instead of accumulating (+=), which saves its
  // zero-fill. Ask for it right before that pass: an input used twice by one op gets the same buffer,
  // no longer fresh, the second time.
  template <class T> T* grad_for_write(std::size_t i, bool& fresh) { return static_cast<T*>(grad_buffer(i, &fresh)); }
  // += g summed down to the input's shape: the one place where broadcasting is undone.
  template <class T> void accumulate(std::size_t i, const T* g, const Shape& g_shape);
  template <class T> T* scratch(std::size_t n) { return static_cast<T*>(tape_.allocate(n * sizeof(T))); }
  // Hands the engine an update of input i's gradient to run after the sweep, together with the other
  // updates of the same buffer by the same fn: matmul turns many thin dW += a^T g (one per time step at
  // batch 1) into one GEMM over all their rows, as a hand-written BPTT does. Only for leaves (nothing
  // reads their gradient during the sweep) and outside anomaly mode; returns false otherwise, and the op
  // then does the update itself. a and g must live until the sweep ends (tape memory does).
  bool defer(std::size_t i, DeferredFn fn, const DeferredUpdate& update);

 private:
  const detail::Slot& in_slot(std::size_t i) const { return tape_.slot(node_.inputs()[i]); }
  void* grad_buffer(std::size_t i, bool* fresh);
  Tape& tape_;
  const detail::Node& node_;
};

// What a create_graph backward sees: the same values as tensors, so its arithmetic is recorded too.
class GraphCtx {
 public:
  GraphCtx(Tape& tape, const detail::Node& node, const Tensor& gout, std::vector<Tensor>& grads)
      : tape_(tape), node_(node), gout_(gout), grads_(grads) {}
  const detail::Node& node() const { return node_; }
  std::size_t num_inputs() const { return node_.n_in; }
  const Shape& in_shape(std::size_t i) const { return tape_.slot(node_.inputs()[i]).shape; }
  bool needs(std::size_t i) const { return tape_.slot(node_.inputs()[i]).requires_grad; }
  Tensor in(std::size_t i) const;
  Tensor out() const;
  const Tensor& gout() const { return gout_; }
  void accumulate(std::size_t i, const Tensor& g);  // summed down to the input's shape by the engine

 private:
  Tape& tape_;
  const detail::Node& node_;
  Tensor gout_;
  std::vector<Tensor>& grads_;
};

// Hooks the engine needs from the op families (defined in ops/): the differentiable sum down to a
// broadcast input's shape, and the sum of two gradients, used by create_graph backward.
namespace detail {
Tensor graph_sum_to(const Tensor& g, const Shape& shape);
Tensor graph_add(const Tensor& a, const Tensor& b);
// Raw += with the reduction of broadcast axes.
template <class T> void sum_to_accumulate(T* dst, const Shape& dst_shape, const T* src, const Shape& src_shape);
}  // namespace detail

template <class T>
void BackwardCtx::accumulate(std::size_t i, const T* g, const Shape& g_shape) {
  if (g_shape == in_shape(i)) {
    bool fresh = false;
    T* d = grad_for_write<T>(i, fresh);
    const std::size_t n = g_shape.numel();
    if (fresh) {
      std::memcpy(d, g, n * sizeof(T));
    } else {
      for (std::size_t k = 0; k < n; ++k) d[k] += g[k];
    }
    return;
  }
  detail::sum_to_accumulate<T>(grad<T>(i), in_shape(i), g, g_shape);
}

// Calls f(T{}) with T = float or double for a dtype.
template <class F> decltype(auto) dispatch(DType d, F&& f) {
  if (d == DType::f32) return f(float{});
  return f(double{});
}

}  // namespace tapegrad
