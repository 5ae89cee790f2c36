#include "tapegrad/autograd/tape.hpp"

#include <algorithm>
#include <atomic>
#include <cstring>
#include <functional>

#include "tapegrad/autograd/leaf.hpp"
#include "tapegrad/autograd/op.hpp"

namespace tapegrad {

namespace {
// Epochs are unique across all tapes, so a leaf's cached (tape, epoch) can never match a newer tape
// that happens to reuse an old tape's address.
std::atomic<std::uint64_t> g_next_epoch{1};

// Scope tapes are pooled per thread rather than freed, so a handle that outlives its scope still points
// at a live tape whose epoch has moved on: using it is a clear error, never a read of freed memory.
std::vector<std::unique_ptr<Tape>>& spare_tapes() {
  thread_local std::vector<std::unique_ptr<Tape>> pool;
  return pool;
}
}  // namespace

Tape::Tape() : epoch_(g_next_epoch++) {}

Tape& Tape::init_current() {
  thread_local Tape default_tape;
  current_tape_ = &default_tape;
  return default_tape;
}

Tape::Scope::Scope() : previous_(current_tape_) {
  auto& pool = spare_tapes();
  if (pool.empty()) pool.push_back(std::make_unique<Tape>());
  tape_ = pool.back().release();
  pool.pop_back();
  current_tape_ = tape_;
}
Tape::Scope::~Scope() {
  current_tape_ = previous_;
  tape_->clear();
  spare_tapes().emplace_back(tape_);
}

void Tape::clear() {
  nodes_.clear();
  slots_.clear();
  leaves_.clear();
  leaf_slots_.clear();
  arena_.reset();
  epoch_ = g_next_epoch++;
  released_ = false;
  swept_ = false;
}

void Tape::release() {
  nodes_.clear();
  released_ = true;
}

std::uint32_t Tape::new_slot(const Shape& shape, DType dtype, void* data) {
  // Field by field: assigning a braced Slot{...} builds and memmoves a temporary (a fifth of an op).
  detail::Slot& s = slots_.emplace_back();
  s.data = data ? data : arena_.allocate(shape.numel() * dtype_size(dtype));
  s.grad = nullptr;
  s.shape = shape;
  s.dtype = dtype;
  s.requires_grad = false;
  s.producer = -1;
  s.leaf = nullptr;
  s.view_of = detail::Slot::none;
  s.grad_shared = s.keep_grad = false;
  return static_cast<std::uint32_t>(slots_.size() - 1);
}

std::uint32_t Tape::new_view(const Shape& shape, DType dtype, std::uint32_t of, std::size_t byte_offset) {
  const std::uint32_t id = new_slot(shape, dtype, static_cast<char*>(slots_[of].data) + byte_offset);
  slots_[id].view_of = of;
  slots_[id].view_offset = byte_offset;
  return id;
}

const detail::Slot& detail::TensorInternals::slot(const Tape& tape, std::uint32_t i) { return tape.slot(i); }

std::shared_ptr<detail::LeafImpl> Tape::leaf_of(std::uint32_t slot) const {
  for (std::size_t k = leaf_slots_.size(); k-- > 0;)
    if (leaf_slots_[k] == slot) return leaves_[k];
  return nullptr;
}

std::uint32_t Tape::slot_for(const Tensor& t) {
  if (!t.is_leaf()) return detail::TensorInternals::slot_index(t);
  detail::LeafImpl* leaf = detail::TensorInternals::leaf(t).get();
  if (leaf->tape == this && leaf->epoch == epoch_) return leaf->slot;
  detail::Slot& s = slots_[new_slot(leaf->shape, leaf->dtype, leaf->data)];
  s.requires_grad = leaf->requires_grad;
  s.leaf = leaf;
  s.version = leaf->version;
  if (leaf->requires_grad) {
    if (!leaf->grad) leaf->grad = detail::TensorInternals::leaf(zeros(leaf->shape, leaf->dtype));
    s.grad = leaf->grad->data;
  }
  leaves_.push_back(detail::TensorInternals::leaf(t));
  leaf->tape = this;
  leaf->epoch = epoch_;
  leaf->slot = static_cast<std::uint32_t>(slots_.size() - 1);
  leaf_slots_.push_back(leaf->slot);
  return leaf->slot;
}

// ----- the sweep -----

struct Engine {
  // grad()'s two algorithms, below.
  static std::vector<Tensor> grad_values(Tape& tape, std::uint32_t root_id, const std::vector<Tensor>& xs,
                                         const std::vector<std::int64_t>& where, const GradOptions& options);
  static std::vector<Tensor> grad_graph(Tape& tape, const Tensor& root, std::uint32_t root_id,
                                        const std::vector<Tensor>& xs, const std::vector<std::int64_t>& where,
                                        const GradOptions& options);

  // Validates the root and returns its slot index; writes the seed into its gradient.
  static std::uint32_t seed_root(Tape& tape, const Tensor& root, const Tensor& seed, const char* who) {
    if (!root.defined()) throw Error(std::string(who) + ": root tensor is undefined");
    if (root.tape() != &tape) throw Error(std::string(who) + ": root belongs to another thread's tape");
    if (detail::TensorInternals::epoch(root) != tape.epoch() || tape.released_)
      throw Error(std::string(who) + ": the graph of this root (shape " +
                  (detail::TensorInternals::epoch(root) == tape.epoch() ? root.shape().str() : std::string("?")) +
                  ") was already released by an earlier backward(); pass retain_graph=true to keep it");
    check_seed(root, seed, who);
    check_versions(tape, who);
    return detail::TensorInternals::slot_index(root);
  }

  static void check_seed(const Tensor& root, const Tensor& seed, const char* who) {
    const Shape& rs = root.shape();
    if (!root.requires_grad()) throw Error(std::string(who) + ": root of shape " + rs.str() + " does not require grad");
    if (!seed.defined() && rs.numel() != 1)
      throw Error(std::string(who) + ": root of shape " + rs.str() + " is not a scalar; pass a seed gradient of that shape");
    if (seed.defined() && (seed.shape() != rs || seed.dtype() != root.dtype()))
      throw Error(std::string(who) + ": seed of shape " + seed.shape().str() + " (" + dtype_name(seed.dtype()) +
                  ") does not match root of shape " + rs.str() + " (" + dtype_name(root.dtype()) + ")");
  }

  // Once per sweep, O(leaves): an owned tensor written in place since it entered the graph (an optimizer
  // step, nn::load, a write through data<T>()) would make backward compute from values the forward never
  // saw. Also catches a write between two ops of the same graph.
  static void check_versions(Tape& tape, const char* who) {
    for (const std::uint32_t id : tape.leaf_slots_) {
      const detail::Slot& s = tape.slots_[id];
      if (s.leaf->version == s.version) continue;
      const auto first = std::find_if(tape.nodes_.begin(), tape.nodes_.end(), [id](const detail::Node& n) {
        return std::find(n.inputs(), n.inputs() + n.n_in, id) != n.inputs() + n.n_in;
      });
      const char* first_op = first == tape.nodes_.end() ? "?" : first->op->name;
      // The graph can never be swept now: release it, so the next forward starts a fresh one.
      const std::string what = std::string(who) + ": tensor " + (s.leaf->name.empty() ? "(unnamed)" : "'" + s.leaf->name + "'") +
                  " of shape " + s.shape.str() + " (" + dtype_name(s.dtype) + "), used by op '" + first_op +
                  "', was modified in place after the graph recorded it (version " + std::to_string(s.version) +
                  " then, " + std::to_string(s.leaf->version) +
                  " now): an optimizer step, nn::load or a write through data<T>() between a forward and its "
                  "backward; run the forward again after the write (the graph was released)";
      tape.release();
      throw Error(what);
    }
  }

  static void sweep_from(Tape& tape, std::int32_t start) {
    tape.deferred_.clear();
    for (std::int32_t n = start; n >= 0; --n) {
      const detail::Node& node = tape.nodes_[static_cast<std::size_t>(n)];
      const detail::Slot& out = tape.slots_[node.out];
      if (!out.grad || out.grad_shared) continue;  // nothing flows through, or it already went (a view)
      BackwardCtx ctx(tape, node);
      node.backward(ctx);
      if (detail::anomaly_mode) detail::check_grads(tape, node);
    }
    run_deferred(tape);
  }

  // The deferred updates, grouped by (buffer, function) in the order they came: one call per group.
  static void run_deferred(Tape& tape) {
    auto& d = tape.deferred_;
    if (d.empty()) return;
    std::stable_sort(d.begin(), d.end(), [](const Tape::Deferred& x, const Tape::Deferred& y) {
      if (x.grad != y.grad) return std::less<void*>()(x.grad, y.grad);
      return std::less<DeferredFn>()(x.fn, y.fn);
    });
    thread_local std::vector<const void*> group;
    for (std::size_t i = 0; i < d.size();) {
      std::size_t j = i;
      group.clear();
      for (; j < d.size() && d[j].grad == d[i].grad && d[j].fn == d[i].fn; ++j) group.push_back(d[j].payload);
      d[i].fn(d[i].grad, group.data(), group.size());
      i = j;
    }
    d.clear();
  }

  // A retained graph swept before: recorded tensors' gradients start from zero again.
  static void begin_sweep(Tape& tape) {
    if (tape.swept_)
      for (std::size_t i = 0; i < tape.num_slots(); ++i)
        if (!tape.slot(i).leaf) tape.slot(i).clear_grad();
    tape.swept_ = true;
  }
  static void mark_swept(Tape& tape) { tape.swept_ = true; }

  static void write_seed(Tape& tape, std::uint32_t root, const Tensor& seed) {
    auto& rs = tape.slots_[root];
    rs.grad = tape.arena_.allocate(rs.shape.numel() * dtype_size(rs.dtype));
    put_seed(rs.grad, rs.shape.numel(), rs.dtype, seed, false);
  }
  // The create_graph sweep over nodes start down to stop: each node's backward written in ops, recorded
  // on this tape, adds into g (indexed by slot).
  static void graph_sweep(Tape& tape, std::vector<Tensor>& g, std::int32_t start, std::int32_t stop) {
    for (std::int32_t n = start; n >= stop; --n) {
      const detail::Node node = tape.node(static_cast<std::size_t>(n));  // copy: the tape grows meanwhile
      if (!g[node.out].defined()) continue;
      if (!node.graph_backward)
        throw Error(std::string("grad(create_graph): op '") + node.op->name + "' has no differentiable backward");
      GraphCtx ctx(tape, node, g[node.out], g);
      node.graph_backward(ctx);
    }
  }

  // grad = seed (ones without one); with add, grad += seed.
  static void put_seed(void* grad, std::size_t n, DType dtype, const Tensor& seed, bool add) {
    dispatch(dtype, [&](auto z) {
      using T = decltype(z);
      T* g = static_cast<T*>(grad);
      const T* s = seed.defined() ? static_cast<const T*>(seed.raw_data()) : nullptr;
      for (std::size_t i = 0; i < n; ++i) g[i] = add ? g[i] + (s ? s[i] : T(1)) : (s ? s[i] : T(1));
    });
  }
};

void backward(const Tensor& root, const Tensor& seed, bool retain_graph) {
  Tape& tape = Tape::current();
  if (root.defined() && root.is_leaf()) {  // d x / d x is the seed itself
    Engine::check_seed(root, seed, "backward");
    auto* leaf = detail::TensorInternals::leaf(root).get();
    if (!leaf->grad) leaf->grad = detail::TensorInternals::leaf(zeros(leaf->shape, leaf->dtype));
    return Engine::put_seed(leaf->grad->data, leaf->shape.numel(), leaf->dtype, seed, true);
  }
  const std::uint32_t root_id = Engine::seed_root(tape, root, seed, "backward");
  Engine::begin_sweep(tape);
  Engine::write_seed(tape, root_id, seed);
  Engine::sweep_from(tape, tape.slot(root_id).producer);
  if (!retain_graph) tape.release();
}

namespace {

// Where each x sits on the tape: its slot, or -1 when it is not part of this graph (its gradient is zero).
std::vector<std::int64_t> slots_of(Tape& tape, const std::vector<Tensor>& xs) {
  std::vector<std::int64_t> where(xs.size(), -1);
  for (std::size_t k = 0; k < xs.size(); ++k) {
    const Tensor& x = xs[k];
    if (!x.defined()) throw Error("grad: input " + std::to_string(k) + " is undefined");
    if (x.is_leaf()) {
      const auto* leaf = detail::TensorInternals::leaf(x).get();
      if (leaf->tape == &tape && leaf->epoch == tape.epoch()) where[k] = leaf->slot;
    } else {
      (void)detail::TensorInternals::slot(x);  // validates
      where[k] = detail::TensorInternals::slot_index(x);
    }
  }
  return where;
}

}  // namespace

// grad() without create_graph: the plain sweep into the tape's gradient buffers, with the leaves' own
// gradients set aside (grad() leaves them untouched) and copied out for the xs.
std::vector<Tensor> Engine::grad_values(Tape& tape, std::uint32_t root_id, const std::vector<Tensor>& xs,
                                        const std::vector<std::int64_t>& where, const GradOptions& options) {
  std::vector<void*> saved_leaf_grads(tape.num_slots());
  for (std::size_t i = 0; i < tape.num_slots(); ++i) {
    saved_leaf_grads[i] = tape.slot(i).grad;
    tape.slot(i).clear_grad();  // leaves too: their grad() stays untouched
  }
  for (const std::int64_t w : where)  // a view asked for keeps a gradient of its own
    if (w >= 0) tape.slot(static_cast<std::size_t>(w)).keep_grad = true;
  write_seed(tape, root_id, options.seed);
  sweep_from(tape, tape.slot(root_id).producer);
  mark_swept(tape);
  std::vector<Tensor> result(xs.size());
  for (std::size_t k = 0; k < xs.size(); ++k) {
    result[k] = zeros_like(xs[k]);
    if (where[k] >= 0 && tape.slot(where[k]).grad)
      std::memcpy(result[k].raw_data(), tape.slot(where[k]).grad, xs[k].numel() * dtype_size(xs[k].dtype()));
  }
  for (std::size_t i = 0; i < tape.num_slots(); ++i) {
    if (tape.slot(i).leaf) tape.slot(i).grad = saved_leaf_grads[i];
    tape.slot(i).keep_grad = false;
  }
  if (!options.retain_graph) tape.release();
  return result;
}

// grad() with create_graph: the sweep runs each node's backward written in ops, recording it on this tape,
// so the gradients are tensors of the graph and can be differentiated again.
std::vector<Tensor> Engine::grad_graph(Tape& tape, const Tensor& root, std::uint32_t root_id,
                                       const std::vector<Tensor>& xs, const std::vector<std::int64_t>& where,
                                       const GradOptions& options) {
  detail::ModeGuard recording(detail::grad_mode, true);
  std::vector<Tensor> g(tape.num_slots());
  g[root_id] = options.seed.defined() ? options.seed : ones_like(root);
  graph_sweep(tape, g, tape.slot(root_id).producer, 0);
  std::vector<Tensor> result(xs.size());
  for (std::size_t k = 0; k < xs.size(); ++k)
    result[k] = where[k] >= 0 && g[where[k]].defined() ? g[where[k]] : zeros_like(xs[k]);
  return result;
}

std::vector<Tensor> grad(const Tensor& root, const std::vector<Tensor>& xs, const GradOptions& options) {
  Tape& tape = Tape::current();
  if (root.defined() && root.is_leaf())
    throw Error("grad: root of shape " + root.shape().str() + " is an owned tensor, not the result of recorded ops");
  const std::uint32_t root_id = Engine::seed_root(tape, root, options.seed, "grad");
  const std::vector<std::int64_t> where = slots_of(tape, xs);
  return options.create_graph ? Engine::grad_graph(tape, root, root_id, xs, where, options)
                              : Engine::grad_values(tape, root_id, xs, where, options);
}

// The nodes forward() just recorded, swept from gout: only they, so the gradients stop at this node's inputs.
void GraphCtx::sweep_recomputed(const Tensor& y, std::size_t first_node) {
  if (y.is_leaf()) return;  // nothing recorded: no input needs a gradient
  grads_.resize(tape_.num_slots());
  grads_[detail::TensorInternals::slot_index(y)] = gout_;
  Engine::graph_sweep(tape_, grads_, detail::TensorInternals::slot(y).producer, static_cast<std::int32_t>(first_node));
}

}  // namespace tapegrad
