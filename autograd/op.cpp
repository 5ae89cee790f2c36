#include "tapegrad/autograd/op.hpp"

#include <cstring>
#include <memory>
#include <string>

#include "tapegrad/autograd/autobatch.hpp"
#include "tapegrad/autograd/leaf.hpp"

namespace tapegrad {

namespace {
std::vector<const OpInfo*>& registry() {
  static std::vector<const OpInfo*> ops;
  return ops;
}
}  // namespace

const std::vector<const OpInfo*>& registered_ops() { return registry(); }
detail::OpRegistrar::OpRegistrar(const OpInfo* op) { registry().push_back(op); }

void detail::throw_attrs_mismatch(const char* op, const void* attrs) {
  throw Error(std::string(op) + ": its backward read ctx.attrs<A>() " +
              (attrs ? "with another type A than the forward's OpCall::attrs<A>()"
                     : "but the forward never called OpCall::attrs<A>()"));
}

// ----- recording -----

OpCall::OpCall(const OpInfo& op, std::initializer_list<const Tensor*> inputs) : op_(&op) {
  if (inputs.size() <= 3) {
    for (const Tensor* t : inputs) few_[n_in_++] = t;
  } else {
    many_.assign(inputs.begin(), inputs.end());
    n_in_ = many_.size();
  }
  init();
}

OpCall::OpCall(const OpInfo& op, const std::vector<Tensor>& inputs) : op_(&op) {
  many_.reserve(inputs.size());
  for (const Tensor& t : inputs) many_.push_back(&t);
  n_in_ = many_.size();
  if (n_in_ == 0) throw Error(std::string(op.name) + ": needs at least one input");
  init();
}

void OpCall::init() {
  if (autobatch::in_task()) autobatch::detail::count_eager(*op_);  // unbatched: counted by name
  bool any_grad = false;
  tape_ = &Tape::current();
  for (std::size_t k = 0; k < n_in_; ++k) {
    const Tensor& t = *input(k);
    if (!t.defined()) throw Error(std::string(op_->name) + ": input " + std::to_string(k) + " is undefined");
    if (t.tape() && t.tape() != tape_)
      throw Error(std::string(op_->name) + ": input " + std::to_string(k) +
                  " belongs to another thread's tape (or to a closed Tape::Scope)");
    const DType d = t.dtype();  // validates a tape tensor (thread, epoch)
    if (k == 0) dtype_ = d;
    else if (d != dtype_)
      throw Error(std::string(op_->name) + ": mixed dtypes: input 0 " + input(0)->shape().str() + " is " +
                  dtype_name(dtype_) + ", input " + std::to_string(k) + " " + t.shape().str() + " is " + dtype_name(d));
    any_grad = any_grad || t.requires_grad();
  }
  recording_ = any_grad && detail::grad_mode;
  if (!recording_) return;
  if (tape_->released()) {
    for (std::size_t k = 0; k < n_in_; ++k)
      if (!input(k)->is_leaf())
        throw Error(std::string(op_->name) + ": input " + std::to_string(k) + " of shape " + input(k)->shape().str() +
                    " belongs to a graph that backward() released; detach() it to carry it into a new graph");
    tape_->clear();  // a new graph
  }
  node_.op = op_;
  node_.n_in = static_cast<std::uint32_t>(n_in_);
  std::uint32_t* ids = node_.in_inline;
  if (n_in_ > 3) ids = node_.in_ext = static_cast<std::uint32_t*>(tape_->allocate(n_in_ * sizeof(std::uint32_t)));
  for (std::size_t k = 0; k < n_in_; ++k) ids[k] = tape_->slot_for(*input(k));
}

Tensor OpCall::output(const Shape& shape) {
  if (!recording_) {
    Tensor out = empty(shape, dtype_);
    out_data_ = out.raw_data();
    out_shape_ = &out.shape();
    return out;
  }
  return output_slot(tape_->new_slot(shape, dtype_));
}

Tensor OpCall::output_view(const Shape& shape, std::size_t i, std::size_t offset) {
  const Tensor& x = *input(i);
  const std::size_t size = dtype_size(dtype_);
  if (recording_ && !x.is_leaf()) return output_slot(tape_->new_view(shape, dtype_, node_.inputs()[i], offset * size));
  const char* values = static_cast<const char*>(x.raw_data()) + offset * size;
  Tensor y = output(shape);
  if (shape.numel()) std::memcpy(y.raw_data(), values, shape.numel() * size);
  return y;
}

Tensor OpCall::output_slot(std::uint32_t id) {
  auto& s = tape_->slot(id);
  s.requires_grad = true;
  s.producer = static_cast<std::int32_t>(tape_->num_nodes());
  node_.out = id;
  out_data_ = s.data;
  out_shape_ = &s.shape;
  return detail::TensorInternals::from_slot(tape_, id, tape_->epoch());
}

// Forward-only scratch: one arena per thread, reset when the last OpCall using it ends (ops may nest).
namespace {
struct Scratch {
  detail::Arena arena;
  int users = 0;
};
thread_local Scratch t_scratch;
}  // namespace

void* OpCall::save_bytes(std::size_t bytes) {
  if (recording_) return tape_->allocate(bytes);
  if (!scratch_) {
    scratch_ = true;
    ++t_scratch.users;
  }
  return t_scratch.arena.allocate(bytes);
}

OpCall::~OpCall() {
  if (scratch_ && --t_scratch.users == 0) t_scratch.arena.reset();
}

void OpCall::record(BackwardFn backward, GraphBackwardFn graph_backward) {
  if (detail::anomaly_mode && out_shape_) detail::check_output(op_->name, out_data_, *out_shape_, dtype_, inputs(), n_in_);
  if (!recording_) return;
  node_.backward = backward;
  node_.graph_backward = graph_backward;
  tape_->push_node(node_);
}

// ----- backward contexts -----

void* BackwardCtx::grad_buffer(std::size_t i, bool* fresh) { return slot_grad(node_.inputs()[i], fresh); }

void* BackwardCtx::slot_grad(std::uint32_t id, bool* fresh) {
  auto& s = tape_.slot(id);
  if (fresh) *fresh = false;
  if (!s.grad && s.view_of != detail::Slot::none && !s.keep_grad) {  // a view: its place in the viewed gradient
    s.grad = static_cast<char*>(slot_grad(s.view_of, nullptr)) + s.view_offset;
    s.grad_shared = true;
  }
  if (!s.grad) {
    const std::size_t bytes = s.shape.numel() * dtype_size(s.dtype);
    s.grad = tape_.allocate(bytes);
    if (fresh) *fresh = true;  // the caller overwrites it all
    else std::memset(s.grad, 0, bytes);
  }
  return s.grad;
}

bool BackwardCtx::defer(std::size_t i, DeferredFn fn, const void* payload) {
  if (!in_slot(i).leaf || detail::anomaly_mode) return false;
  tape_.defer({grad_buffer(i, nullptr), fn, payload});
  return true;
}

Tensor GraphCtx::in(std::size_t i) const {
  const std::uint32_t id = node_.inputs()[i];
  if (in_slot(i).leaf) return detail::TensorInternals::from_leaf(tape_.leaf_of(id));
  return detail::TensorInternals::from_slot(&tape_, id, tape_.epoch());
}

Tensor GraphCtx::out() const { return detail::TensorInternals::from_slot(&tape_, node_.out, tape_.epoch()); }

void GraphCtx::accumulate(std::size_t i, const Tensor& g) {
  if (!needs(i)) return;
  const std::uint32_t id = node_.inputs()[i];
  Tensor gi = g.shape() == in_shape(i) ? g : detail::graph_sum_to(g, in_shape(i));
  grads_[id] = grads_[id].defined() ? detail::graph_add(grads_[id], gi) : gi;
}

}  // namespace tapegrad
