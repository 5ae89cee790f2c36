// The op author's API: registration, recording a call (OpCall) and the two backward contexts. Forward
// and backward stand side by side: a worked example is in docs/ARCHITECTURE.md, "How to add an op".
#pragma once

#include <cstddef>
#include <cstring>
#include <initializer_list>
#include <new>
#include <type_traits>
#include <vector>

#include "tapegrad/autograd/tape.hpp"

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

// Debug builds (and TAPEGRAD_CHECK_ATTRS: the sanitized build defines it) check ctx.attrs<A>(): the struct
// OpCall::attrs<A>() made carries its type's tag just before it, so a backward reading another type is an
// Error naming the op, not a reinterpretation of bytes. Node's layout is the same in every build.
#if !defined(NDEBUG) || defined(TAPEGRAD_CHECK_ATTRS)
#define TAPEGRAD_ATTRS_CHECKED 1
#endif
inline constexpr std::size_t kAttrsTagBytes = alignof(std::max_align_t);
template <class A> const void* attrs_tag() {
  static const char tag = 0;
  return &tag;
}
[[noreturn]] void throw_attrs_mismatch(const char* op, const void* attrs);
}  // namespace detail
#define TAPEGRAD_OP(var, name, family)                 \
  static const ::tapegrad::OpInfo var{name, family}; \
  static const ::tapegrad::detail::OpRegistrar var##_registrar { &var }

class OpCall {
 public:
  OpCall(const OpInfo& op, std::initializer_list<const Tensor*> inputs);
  OpCall(const OpInfo& op, const std::vector<Tensor>& inputs);
  ~OpCall();
  OpCall(const OpCall&) = delete;
  OpCall& operator=(const OpCall&) = delete;

  const char* name() const { return op_->name; }
  bool recording() const { return recording_; }
  DType dtype() const { return dtype_; }
  Tensor output(const Shape& shape);  // values uninitialised; tape tensor if recording, else owned
  // An output holding input i's values from element `offset` on (the same values reshaped, a run of
  // rows): a view, no copy, when recording and input i is a value of this graph (nothing changes those
  // until the graph ends), whose gradient is input i's at that place; else a copy.
  Tensor output_view(const Shape& shape, std::size_t i, std::size_t offset);
  // The op's attributes and saved values: a struct of its own, made here once per call and read back by
  // its backward as ctx.attrs<A>(). It lives in the tape's arena (per-thread scratch, reused, when not
  // recording), so it must be trivially destructible: arrays in it are pointers from save<T>(n).
  template <class A> A& attrs() {
    static_assert(std::is_trivially_destructible_v<A>, "op attributes live in the arena: no destructor runs");
    static_assert(alignof(A) <= detail::kAttrsTagBytes, "op attributes: at most max_align_t's alignment");
#ifdef TAPEGRAD_ATTRS_CHECKED
    char* p = static_cast<char*>(save_bytes(detail::kAttrsTagBytes + sizeof(A)));
    *reinterpret_cast<const void**>(p) = detail::attrs_tag<A>();
    A* a = new (p + detail::kAttrsTagBytes) A{};
#else
    A* a = new (save_bytes(sizeof(A))) A{};
#endif
    node_.attrs = a;
    return *a;
  }
  template <class T> T* save(std::size_t n) { return static_cast<T*>(save_bytes(n * sizeof(T))); }
  void record(BackwardFn backward, GraphBackwardFn graph_backward = nullptr);

 private:
  void init();
  Tensor output_slot(std::uint32_t id);
  void* save_bytes(std::size_t bytes);
  const OpInfo* op_;
  std::vector<const Tensor*> many_;
  const Tensor* few_[3] = {nullptr, nullptr, nullptr};
  std::size_t n_in_ = 0;
  const Tensor* const* inputs() const { return many_.empty() ? few_ : many_.data(); }
  const Tensor* input(std::size_t i) const { return inputs()[i]; }
  DType dtype_ = DType::f32;
  bool recording_ = false;
  bool scratch_ = false;  // holds per-thread scratch (not recording)
  const void* out_data_ = nullptr;  // the output, for anomaly mode's check in record()
  const Shape* out_shape_ = nullptr;
  detail::Node node_;
  Tape* tape_ = nullptr;
};

// What both backward contexts know of the node: its attributes and its inputs.
class NodeCtx {
 public:
  NodeCtx(Tape& tape, const detail::Node& node) : tape_(tape), node_(node) {}
  const detail::Node& node() const { return node_; }
  template <class A> const A& attrs() const {
#ifdef TAPEGRAD_ATTRS_CHECKED
    const char* p = static_cast<const char*>(node_.attrs);
    if (!p || *reinterpret_cast<const void* const*>(p - detail::kAttrsTagBytes) != detail::attrs_tag<A>())
      detail::throw_attrs_mismatch(node_.op->name, p);
#endif
    return *static_cast<const A*>(node_.attrs);
  }
  std::size_t num_inputs() const { return node_.n_in; }
  const Shape& in_shape(std::size_t i) const { return in_slot(i).shape; }
  bool needs(std::size_t i) const { return in_slot(i).requires_grad; }

 protected:
  detail::Slot& in_slot(std::size_t i) const { return tape_.slot(node_.inputs()[i]); }
  Tape& tape_;
  const detail::Node& node_;
};

// What a backward function sees: raw, contiguous buffers of the inputs, output and output gradient.
class BackwardCtx : public NodeCtx {
 public:
  using NodeCtx::NodeCtx;
  DType dtype() const { return tape_.slot(node_.out).dtype; }
  const Shape& out_shape() const { return tape_.slot(node_.out).shape; }
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
  // updates of the same buffer by the same fn, so that an op can merge many small updates (thin products
  // of a batch-1 recurrence) into one large one, as a hand-written BPTT does. Only for leaves (nothing
  // reads their gradient during the sweep) and outside anomaly mode; returns false otherwise, and the op
  // then does the update itself. The payload (the op's own description of the update) and what it points
  // to must live until the sweep ends: tape memory (scratch) does.
  bool defer(std::size_t i, DeferredFn fn, const void* payload);

 private:
  void* grad_buffer(std::size_t i, bool* fresh);
  void* slot_grad(std::uint32_t id, bool* fresh);
};

// What a create_graph backward sees: the same values as tensors, so its arithmetic is recorded too.
class GraphCtx : public NodeCtx {
 public:
  GraphCtx(Tape& tape, const detail::Node& node, const Tensor& gout, std::vector<Tensor>& grads)
      : NodeCtx(tape, node), gout_(gout), grads_(grads) {}
  Tensor in(std::size_t i) const;
  Tensor out() const;
  const Tensor& gout() const { return gout_; }
  void accumulate(std::size_t i, const Tensor& g);  // summed down to the input's shape by the engine
  // For a fused op: forward() recomputes the op's output from in(i) in primitive ops, and the engine
  // sweeps what it recorded from gout(), so the derivative is that of the composed form, not written twice.
  template <class F> void differentiate(F forward) {
    const std::size_t first = tape_.num_nodes();
    sweep_recomputed(forward(), first);
  }

 private:
  void sweep_recomputed(const Tensor& y, std::size_t first_node);
  Tensor gout_;
  std::vector<Tensor>& grads_;
};

// Hooks the engine needs from the op families (defined in ops/): the differentiable sum down to a
// broadcast input's shape, and the sum of two gradients, used by create_graph backward.
namespace detail {
Tensor graph_sum_to(const Tensor& g, const Shape& shape);
Tensor graph_add(const Tensor& a, const Tensor& b);
}  // namespace detail

template <class T>
void BackwardCtx::accumulate(std::size_t i, const T* g, const Shape& g_shape) {
  if (g_shape != in_shape(i)) return detail::sum_to_accumulate<T>(grad<T>(i), in_shape(i), g, g_shape);
  bool fresh = false;
  T* d = grad_for_write<T>(i, fresh);
  if (fresh) return (void)std::memcpy(d, g, g_shape.numel() * sizeof(T));
  for (std::size_t k = 0, n = g_shape.numel(); k < n; ++k) d[k] += g[k];
}

}  // namespace tapegrad
