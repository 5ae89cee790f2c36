#include "tapegrad/autograd/tape.hpp"

#include <malloc.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <sstream>

#include "tapegrad/autograd/leaf.hpp"

namespace tapegrad {

// ----- registry -----

namespace {
std::vector<const OpInfo*>& registry() {
  static std::vector<const OpInfo*> ops;
  return ops;
}

// glibc hands large freed blocks back to the OS and faults them in again on the next allocation; that
// made xtensor's dot up to 5x slower than raw BLAS here. Keep blocks up to 32 MiB on the heap and the
// heap's top untrimmed. TAPEGRAD_KEEP_MALLOC=1 leaves glibc's defaults alone.
struct MallocTuning {
  MallocTuning() {
    if (const char* keep = std::getenv("TAPEGRAD_KEEP_MALLOC"); keep && *keep == '1') return;
    mallopt(M_MMAP_THRESHOLD, 32 << 20);
    mallopt(M_TRIM_THRESHOLD, 512 << 20);
  }
} malloc_tuning;
}  // namespace

const std::vector<const OpInfo*>& registered_ops() { return registry(); }
detail::OpRegistrar::OpRegistrar(const OpInfo* op) { registry().push_back(op); }

// ----- arena -----

namespace detail {

Arena::~Arena() {
  for (auto& c : chunks_) std::free(c.base);
}

void* Arena::allocate_slow(std::size_t bytes) {
  while (current_ < chunks_.size() && offset_ + bytes > chunks_[current_].size) {
    ++current_;
    offset_ = 0;
  }
  if (current_ == chunks_.size()) {
    std::size_t size = std::max<std::size_t>(bytes, chunks_.empty() ? (1u << 20) : chunks_.back().size * 2);
    char* base = static_cast<char*>(std::aligned_alloc(64, size));
    if (!base) throw std::bad_alloc();
    chunks_.push_back({base, size});
    offset_ = 0;
  }
  void* p = chunks_[current_].base + offset_;
  offset_ += bytes;
  in_use_ += bytes;
  return p;
}

std::size_t Arena::capacity() const {
  std::size_t c = 0;
  for (auto& ch : chunks_) c += ch.size;
  return c;
}

void Arena::reset() {
  peak_ = std::max(peak_, in_use_);
  if (chunks_.size() > 1) {  // merge, so the next step of the same size fits one chunk
    const std::size_t total = capacity();
    for (auto& c : chunks_) std::free(c.base);
    chunks_.clear();
    char* base = static_cast<char*>(std::aligned_alloc(64, total));
    if (!base) throw std::bad_alloc();
    chunks_.push_back({base, total});
  }
  current_ = 0;
  offset_ = 0;
  in_use_ = 0;
}

}  // namespace detail

// ----- tape -----


namespace {
thread_local bool t_grad_enabled = true;
thread_local bool t_anomaly = false;
// Epochs are unique across all tapes, so a leaf's cached (tape, epoch) can never match a newer tape
// that happens to reuse an old tape's address.
std::atomic<std::uint64_t> g_next_epoch{1};
}  // namespace

Tape::Tape() : epoch_(g_next_epoch++) {}
Tape::~Tape() = default;

Tape& Tape::init_current() {
  thread_local Tape default_tape;
  current_tape_ = &default_tape;
  return default_tape;
}

// Scope tapes are pooled per thread rather than freed, so a handle that outlives its scope still points
// at a live tape whose epoch has moved on: using it is a clear error, never a read of freed memory.
namespace {
std::vector<std::unique_ptr<Tape>>& spare_tapes() {
  thread_local std::vector<std::unique_ptr<Tape>> pool;
  return pool;
}
}  // namespace

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

void Tape::begin_recording() {
  if (released_) clear();
}

std::uint32_t Tape::new_slot(const Shape& shape, DType dtype) {
  detail::Slot& s = slots_.emplace_back();
  s.data = arena_.allocate(shape.numel() * dtype_size(dtype));
  s.grad = nullptr;
  s.shape = shape;
  s.dtype = dtype;
  s.requires_grad = false;
  s.producer = -1;
  s.leaf = nullptr;
  return static_cast<std::uint32_t>(slots_.size() - 1);
}

std::uint32_t Tape::slot_for(const Tensor& t) {
  if (!t.is_leaf()) return t.slot_index();
  detail::LeafImpl* leaf = t.leaf().get();
  if (leaf->tape == this && leaf->epoch == epoch_) return leaf->slot;
  detail::Slot& s = slots_.emplace_back();
  s.shape = leaf->shape;
  s.dtype = leaf->dtype;
  s.data = leaf->data;
  s.grad = nullptr;
  s.requires_grad = leaf->requires_grad;
  s.producer = -1;
  s.leaf = leaf;
  if (leaf->requires_grad) {
    if (!leaf->grad) {
      leaf->grad = detail::make_leaf(leaf->shape, leaf->dtype);
      std::memset(leaf->grad->data, 0, leaf->shape.numel() * dtype_size(leaf->dtype));
    }
    s.grad = leaf->grad->data;
  }
  s.version = leaf->version;
  leaves_.push_back(t.leaf());
  leaf_slots_.push_back(static_cast<std::uint32_t>(slots_.size() - 1));
  leaf->tape = this;
  leaf->epoch = epoch_;
  leaf->slot = static_cast<std::uint32_t>(slots_.size() - 1);
  return leaf->slot;
}

std::string Tape::to_dot() const {
  std::ostringstream os;
  os << "digraph tape {\n  rankdir=TB;\n  node [fontname=\"Helvetica\", fontsize=10];\n";
  std::vector<bool> used(slots_.size(), false);
  for (std::size_t n = 0; n < nodes_.size(); ++n) {
    const auto& node = nodes_[n];
    os << "  n" << n << " [shape=box, style=filled, fillcolor=\"#dde8f7\", label=\"" << node.op->name << "\"];\n";
    for (std::uint32_t k = 0; k < node.n_in; ++k) {
      used[node.inputs()[k]] = true;
      os << "  s" << node.inputs()[k] << " -> n" << n << ";\n";
    }
    used[node.out] = true;
    os << "  n" << n << " -> s" << node.out << ";\n";
  }
  for (std::size_t i = 0; i < slots_.size(); ++i) {
    if (!used[i]) continue;
    const auto& s = slots_[i];
    std::string label = s.shape.str();
    if (s.leaf && !s.leaf->name.empty()) label = s.leaf->name + "\\n" + label;
    os << "  s" << i << " [shape=ellipse, label=\"" << label << "\"";
    if (s.leaf) os << ", style=filled, fillcolor=\"" << (s.requires_grad ? "#f7e3c4" : "#eeeeee") << "\"";
    os << "];\n";
  }
  os << "}\n";
  return os.str();
}

// ----- modes -----

bool grad_enabled() { return t_grad_enabled; }
NoGrad::NoGrad() : previous_(t_grad_enabled) { t_grad_enabled = false; }
NoGrad::~NoGrad() { t_grad_enabled = previous_; }

bool anomaly_enabled() { return t_anomaly; }
DetectAnomaly::DetectAnomaly() : previous_(t_anomaly) { t_anomaly = true; }
DetectAnomaly::~DetectAnomaly() { t_anomaly = previous_; }

namespace {
bool all_finite(const void* data, std::size_t n, DType d) {
  return dispatch(d, [&](auto z) {
    using T = decltype(z);
    const T* p = static_cast<const T*>(data);
    for (std::size_t i = 0; i < n; ++i)
      if (!std::isfinite(p[i])) return false;
    return true;
  });
}
}  // namespace

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
  recording_ = any_grad && t_grad_enabled;
  if (!recording_) return;
  if (tape_->released()) {
    for (std::size_t k = 0; k < n_in_; ++k)
      if (!input(k)->is_leaf())
        throw Error(std::string(op_->name) + ": input " + std::to_string(k) + " of shape " + input(k)->shape().str() +
                    " belongs to a graph that backward() released; detach() it to carry it into a new graph");
    tape_->begin_recording();
  }
  node_.op = op_;
  node_.n_in = static_cast<std::uint32_t>(n_in_);
  std::uint32_t* ids = node_.in_inline;
  if (n_in_ > 3) ids = node_.in_ext = static_cast<std::uint32_t*>(tape_->allocate(n_in_ * sizeof(std::uint32_t)));
  for (std::size_t k = 0; k < n_in_; ++k) ids[k] = tape_->slot_for(*input(k));
}

Tensor OpCall::output(const Shape& shape) {
  if (!recording_) {
    out_ = empty(shape, dtype_);
    return out_;
  }
  const std::uint32_t id = tape_->new_slot(shape, dtype_);
  auto& s = tape_->slot(id);
  s.requires_grad = true;
  s.producer = static_cast<std::int32_t>(tape_->num_nodes());
  node_.out = id;
  out_ = Tensor::from_slot(tape_, id, tape_->epoch());
  return out_;
}

void* OpCall::save_bytes(std::size_t bytes) {
  if (recording_) return tape_->allocate(bytes);
  thread_local std::vector<std::unique_ptr<char[]>> spare;  // forward-only scratch, reused per thread
  thread_local std::size_t next = 0;
  if (next >= 64) next = 0;
  if (spare.size() <= next) spare.resize(next + 1);
  spare[next].reset(new char[bytes ? bytes : 1]);
  return spare[next++].get();
}

void OpCall::record(BackwardFn backward, GraphBackwardFn graph_backward) {
  if (t_anomaly && out_.defined() && !all_finite(out_.raw_data(), out_.numel(), dtype_)) {
    std::string shapes;
    for (std::size_t k = 0; k < n_in_; ++k) shapes += (k ? ", " : "") + input(k)->shape().str();
    throw Error(std::string("anomaly: op '") + op_->name + "' produced a non-finite value in its output of shape " +
                out_.shape().str() + " from inputs " + shapes);
  }
  if (!recording_) return;
  node_.backward = backward;
  node_.graph_backward = graph_backward;
  tape_->push_node(node_);
}

// ----- backward -----

void* BackwardCtx::grad_buffer(std::size_t i, bool* fresh) {
  auto& s = tape_.slot(node_.inputs()[i]);
  if (fresh) *fresh = false;
  if (!s.grad) {
    const std::size_t bytes = s.shape.numel() * dtype_size(s.dtype);
    s.grad = tape_.allocate(bytes);
    if (fresh) *fresh = true;  // the caller overwrites it all
    else std::memset(s.grad, 0, bytes);
  }
  return s.grad;
}

bool BackwardCtx::defer(std::size_t i, DeferredFn fn, const DeferredUpdate& update) {
  const auto& s = tape_.slot(node_.inputs()[i]);
  if (!s.leaf || t_anomaly) return false;
  tape_.defer({grad_buffer(i, nullptr), fn, update});
  return true;
}

Tensor GraphCtx::in(std::size_t i) const {
  const std::uint32_t id = node_.inputs()[i];
  const auto& s = tape_.slot(id);
  if (s.leaf) return Tensor::from_leaf(s.leaf->shared_from_this());
  return Tensor::from_slot(&tape_, id, tape_.epoch());
}

Tensor GraphCtx::out() const { return Tensor::from_slot(&tape_, node_.out, tape_.epoch()); }

void GraphCtx::accumulate(std::size_t i, const Tensor& g) {
  if (!needs(i)) return;
  const std::uint32_t id = node_.inputs()[i];
  const Shape& s = tape_.slot(id).shape;
  Tensor gi = g.shape() == s ? g : detail::graph_sum_to(g, s);
  grads_[id] = grads_[id].defined() ? detail::graph_add(grads_[id], gi) : gi;
}

struct Engine {
  // Validates the root and returns its slot index; writes the seed into its gradient.
  static std::uint32_t seed_root(Tape& tape, const Tensor& root, const Tensor& seed, const char* who) {
    if (!root.defined()) throw Error(std::string(who) + ": root tensor is undefined");
    if (root.tape() != &tape) throw Error(std::string(who) + ": root belongs to another thread's tape");
    if (root.epoch() != tape.epoch() || tape.released_)
      throw Error(std::string(who) + ": the graph of this root (shape " +
                  (root.epoch() == tape.epoch() ? root.shape().str() : std::string("?")) +
                  ") was already released by an earlier backward(); pass retain_graph=true to keep it");
    const auto& rs = root.slot();
    if (!rs.requires_grad) throw Error(std::string(who) + ": root of shape " + rs.shape.str() + " does not require grad");
    if (!seed.defined() && rs.shape.numel() != 1)
      throw Error(std::string(who) + ": root of shape " + rs.shape.str() +
                  " is not a scalar; pass a seed gradient of that shape");
    if (seed.defined() && (seed.shape() != rs.shape || seed.dtype() != rs.dtype))
      throw Error(std::string(who) + ": seed of shape " + seed.shape().str() + " (" + dtype_name(seed.dtype()) +
                  ") does not match root of shape " + rs.shape.str() + " (" + dtype_name(rs.dtype) + ")");
    check_versions(tape, who);
    return root.slot_index();
  }

  // Once per sweep, O(leaves): an owned tensor written in place since it entered the graph (an optimizer
  // step, nn::load, a write through data<T>()) would make backward compute from values the forward never
  // saw. Also catches a write between two ops of the same graph.
  static void check_versions(Tape& tape, const char* who) {
    for (const std::uint32_t id : tape.leaf_slots_) {
      const detail::Slot& s = tape.slots_[id];
      if (s.leaf->version == s.version) continue;
      const char* first_op = "?";
      for (const detail::Node& node : tape.nodes_) {
        const std::uint32_t* in = node.inputs();
        if (std::find(in, in + node.n_in, id) != in + node.n_in) {
          first_op = node.op->name;
          break;
        }
      }
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

  static void check_grads(Tape& tape, const detail::Node& node) {
    for (std::uint32_t k = 0; k < node.n_in; ++k) {
      const auto& s = tape.slot(node.inputs()[k]);
      if (s.grad && !all_finite(s.grad, s.shape.numel(), s.dtype))
        throw Error(std::string("anomaly: backward of op '") + node.op->name +
                    "' produced a non-finite gradient for input " + std::to_string(k) + " of shape " + s.shape.str() +
                    " (output " + tape.slot(node.out).shape.str() + ")");
    }
  }

  static void sweep_from(Tape& tape, std::int32_t start) {
    tape.deferred_.clear();
    for (std::int32_t n = start; n >= 0; --n) {
      const detail::Node& node = tape.nodes_[static_cast<std::size_t>(n)];
      if (!tape.slots_[node.out].grad) continue;  // nothing flows through this node
      BackwardCtx ctx(tape, node);
      node.backward(ctx);
      if (t_anomaly) check_grads(tape, node);
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
    thread_local std::vector<DeferredUpdate> group;
    for (std::size_t i = 0; i < d.size();) {
      std::size_t j = i;
      group.clear();
      for (; j < d.size() && d[j].grad == d[i].grad && d[j].fn == d[i].fn; ++j) group.push_back(d[j].update);
      d[i].fn(d[i].grad, group.data(), group.size());
      i = j;
    }
    d.clear();
  }

  // A retained graph swept before: recorded tensors' gradients start from zero again.
  static void begin_sweep(Tape& tape) {
    if (tape.swept_)
      for (std::size_t i = 0; i < tape.num_slots(); ++i)
        if (!tape.slot(i).leaf) tape.slot(i).grad = nullptr;
    tape.swept_ = true;
  }
  static void mark_swept(Tape& tape) { tape.swept_ = true; }

  static void write_seed(Tape& tape, std::uint32_t root, const Tensor& seed) {
    auto& rs = tape.slots_[root];
    const std::size_t n = rs.shape.numel();
    rs.grad = tape.arena_.allocate(n * dtype_size(rs.dtype));
    dispatch(rs.dtype, [&](auto z) {
      using T = decltype(z);
      T* g = static_cast<T*>(rs.grad);
      if (seed.defined()) std::memcpy(g, seed.raw_data(), n * sizeof(T));
      else std::fill_n(g, n, T(1));
    });
  }
};

void backward(const Tensor& root, const Tensor& seed, bool retain_graph) {
  Tape& tape = Tape::current();
  if (root.defined() && root.is_leaf()) {  // d x / d x is the seed itself
    auto* leaf = root.leaf().get();
    if (!leaf->requires_grad) throw Error("backward: root of shape " + leaf->shape.str() + " does not require grad");
    if (seed.defined() && (seed.shape() != leaf->shape || seed.dtype() != leaf->dtype))
      throw Error("backward: seed of shape " + seed.shape().str() + " does not match root " + leaf->shape.str());
    if (!seed.defined() && leaf->shape.numel() != 1)
      throw Error("backward: root of shape " + leaf->shape.str() + " is not a scalar; pass a seed gradient of that shape");
    if (!leaf->grad) leaf->grad = zeros(leaf->shape, leaf->dtype).leaf();
    dispatch(leaf->dtype, [&](auto z) {
      using T = decltype(z);
      T* g = static_cast<T*>(leaf->grad->data);
      for (std::size_t i = 0; i < leaf->shape.numel(); ++i)
        g[i] += seed.defined() ? static_cast<const T*>(seed.raw_data())[i] : T(1);
    });
    return;
  }
  const std::uint32_t root_id = Engine::seed_root(tape, root, seed, "backward");
  Engine::begin_sweep(tape);
  Engine::write_seed(tape, root_id, seed);
  Engine::sweep_from(tape, tape.slot(root_id).producer);
  if (!retain_graph) tape.release();
}

std::vector<Tensor> grad(const Tensor& root, const std::vector<Tensor>& xs, const GradOptions& options) {
  Tape& tape = Tape::current();
  if (root.defined() && root.is_leaf())
    throw Error("grad: root of shape " + root.shape().str() + " is an owned tensor, not the result of recorded ops");
  const std::uint32_t root_id = Engine::seed_root(tape, root, options.seed, "grad");
  // Where each x sits on this tape (or nowhere: its gradient is zero).
  std::vector<std::int64_t> where(xs.size(), -1);
  for (std::size_t k = 0; k < xs.size(); ++k) {
    const Tensor& x = xs[k];
    if (!x.defined()) throw Error("grad: input " + std::to_string(k) + " is undefined");
    if (x.is_leaf()) {
      const auto* leaf = x.leaf().get();
      if (leaf->tape == &tape && leaf->epoch == tape.epoch()) where[k] = leaf->slot;
    } else {
      (void)x.slot();  // validates
      where[k] = x.slot_index();
    }
  }
  std::vector<Tensor> result(xs.size());

  if (!options.create_graph) {
    std::vector<void*> saved_leaf_grads(tape.num_slots());
    for (std::size_t i = 0; i < tape.num_slots(); ++i) {
      saved_leaf_grads[i] = tape.slot(i).grad;
      tape.slot(i).grad = nullptr;  // leaves too: their grad() stays untouched
    }
    Engine::write_seed(tape, root_id, options.seed);
    Engine::sweep_from(tape, tape.slot(root_id).producer);
    Engine::mark_swept(tape);
    for (std::size_t k = 0; k < xs.size(); ++k) {
      result[k] = zeros(xs[k].shape(), xs[k].dtype());
      if (where[k] >= 0 && tape.slot(where[k]).grad)
        std::memcpy(result[k].raw_data(), tape.slot(where[k]).grad, xs[k].numel() * dtype_size(xs[k].dtype()));
    }
    for (std::size_t i = 0; i < tape.num_slots(); ++i)
      if (tape.slot(i).leaf) tape.slot(i).grad = saved_leaf_grads[i];
    if (!options.retain_graph) tape.release();
    return result;
  }

  // create_graph: the sweep runs each node's backward written in ops, recording it on this tape.
  const bool previous = t_grad_enabled;
  t_grad_enabled = true;
  try {
    std::vector<Tensor> g(tape.num_slots());
    const auto& rs = tape.slot(root_id);
    g[root_id] = options.seed.defined() ? options.seed : ones(rs.shape, rs.dtype);
    for (std::int32_t n = tape.slot(root_id).producer; n >= 0; --n) {
      const detail::Node node = tape.node(static_cast<std::size_t>(n));  // copy: the tape grows meanwhile
      if (!g[node.out].defined()) continue;
      if (!node.graph_backward)
        throw Error(std::string("grad(create_graph): op '") + node.op->name + "' has no differentiable backward");
      const Tensor gout = g[node.out];
      GraphCtx ctx(tape, node, gout, g);
      node.graph_backward(ctx);
    }
    for (std::size_t k = 0; k < xs.size(); ++k)
      result[k] = where[k] >= 0 && g[where[k]].defined() ? g[where[k]] : zeros(xs[k].shape(), xs[k].dtype());
  } catch (...) {
    t_grad_enabled = previous;
    throw;
  }
  t_grad_enabled = previous;
  return result;
}

// ----- broadcasting, undone -----

namespace detail {
template <class T> void sum_to_accumulate(T* dst, const Shape& dst_shape, const T* src, const Shape& src_shape) {
  const std::size_t n = src_shape.numel();
  if (dst_shape == src_shape) {
    for (std::size_t i = 0; i < n; ++i) dst[i] += src[i];
    return;
  }
  if (dst_shape.numel() == 1) {
    T acc = 0;
    for (std::size_t i = 0; i < n; ++i) acc += src[i];
    dst[0] += acc;
    return;
  }
  const std::size_t r = src_shape.rank();
  if (dst_shape.rank() > r) throw Error("sum_to: cannot reduce " + src_shape.str() + " to " + dst_shape.str());
  // dst strides aligned to src's axes, 0 where dst broadcasts.
  std::array<std::size_t, Shape::max_rank> dstride{};
  const auto ds = strides_of(dst_shape);
  const std::size_t off = r - dst_shape.rank();
  for (std::size_t k = 0; k < r; ++k) {
    if (k < off) continue;
    const std::size_t d = dst_shape[k - off];
    if (d != 1 && d != src_shape[k]) throw Error("sum_to: cannot reduce " + src_shape.str() + " to " + dst_shape.str());
    dstride[k] = d == 1 ? 0 : ds[k - off];
  }
  // Odometer over src, innermost axis in a tight loop.
  std::array<std::size_t, Shape::max_rank> idx{};
  const std::size_t inner = r ? src_shape[r - 1] : 1;
  const std::size_t inner_stride = r ? dstride[r - 1] : 0;
  std::size_t dpos = 0;
  for (std::size_t i = 0; i < n; i += inner) {
    if (inner_stride) {
      for (std::size_t j = 0; j < inner; ++j) dst[dpos + j] += src[i + j];
    } else {
      T acc = 0;
      for (std::size_t j = 0; j < inner; ++j) acc += src[i + j];
      dst[dpos] += acc;
    }
    for (std::size_t k = r - 1; k-- > 0;) {  // advance the outer axes
      dpos += dstride[k];
      if (++idx[k] < src_shape[k]) break;
      dpos -= dstride[k] * src_shape[k];
      idx[k] = 0;
    }
  }
}
template void sum_to_accumulate<float>(float*, const Shape&, const float*, const Shape&);
template void sum_to_accumulate<double>(double*, const Shape&, const double*, const Shape&);
}  // namespace detail

}  // namespace tapegrad
