// Tensor: a handle to a dense, row-major, n-dimensional float32/float64 value.
//
// Two kinds of tensor share this handle (see docs/ARCHITECTURE.md):
//  - owned tensors (leaves): parameters, inputs, constants, results computed without recording, detach().
//    They own their buffer (reference counted) and live as long as a handle does.
//  - tape tensors: the outputs of recorded ops. Their values live in the thread's tape arena; the handle is
//    (tape, slot, epoch). They stay readable until the next graph starts recording after a backward() that
//    released the tape; after that, using one is a clear error (detach() what must outlive the graph).
#pragma once

#include <cstdint>
#include <iosfwd>
#include <memory>
#include <random>
#include <string>
#include <vector>
#include <utility>

#include "tapegrad/autograd/shape.hpp"

namespace tapegrad {

class Tape;
namespace detail {
struct LeafImpl;
struct Slot;
struct TensorInternals;
}  // namespace detail

class Tensor {
 public:
  Tensor() = default;

  bool defined() const { return shape_ != nullptr; }
  // The accessors are inline: ops call them often. A tape tensor is checked against its tape's epoch.
  const Shape& shape() const {
    check();
    return *shape_;
  }
  DType dtype() const {
    check();
    return dtype_;
  }
  std::size_t rank() const { return shape().rank(); }
  std::size_t numel() const { return shape().numel(); }
  std::size_t size(long axis) const;  // size along an axis; negative counts from the end

  // Autograd.
  bool requires_grad() const {
    check();
    return leaf_ ? leaf_requires_grad() : true;  // recorded tensors always lead to something that wants one
  }
  Tensor& requires_grad_(bool on = true);  // leaves only
  bool is_leaf() const { return leaf_ != nullptr; }
  Tensor grad() const;  // accumulated gradient of a leaf; undefined before any backward reached it
  void zero_grad();     // fill the leaf's gradient with zeros (keeps the buffer)
  Tensor detach() const;  // an owned copy of the value, cut from the graph (truncated BPTT)
  Tensor clone() const { return detach(); }

  // Values. data<T>() checks the dtype; values are contiguous, row-major. The non-const overload hands out
  // the buffer for writing, so on an owned tensor it counts as an in-place write (bump_version); read
  // through a const Tensor& (the const overload) to leave the version alone.
  template <class T> const T* data() const {
    check();
    if (dtype_ != dtype_of<T>::value) throw_dtype(dtype_of<T>::value);
    return static_cast<const T*>(data_);
  }
  template <class T> T* data() {
    const T* p = static_cast<const Tensor&>(*this).data<T>();
    if (leaf_) bump_version();
    return const_cast<T*>(p);
  }
  void* raw_data() const {
    check();
    return data_;
  }
  double item() const;                                   // rank-0 or one-element tensors
  double at(std::initializer_list<std::size_t> index) const;  // element, as double
  std::vector<double> to_vector() const;                  // all values, as double
  Tensor to(DType d) const;                               // owned copy in another dtype

  // Version counter of an owned tensor (as PyTorch's _version): every in-place write the library makes
  // bumps it, and backward() raises an Error when a tensor a graph recorded has changed since. Code that
  // writes through raw_data() calls bump_version() itself. Recorded tensors: always 0.
  std::uint64_t version() const;
  void bump_version();

  // A readable name (used by the Graphviz export and error messages).
  Tensor& set_name(const std::string& name);
  std::string name() const;

  // The tape that recorded this tensor (nullptr for an owned tensor).
  Tape* tape() const { return tape_; }

 private:
  // The engine's side (leaf, slot, epoch): the core and ops' hooks reach it through detail::TensorInternals.
  friend struct detail::TensorInternals;
  static Tensor from_leaf(std::shared_ptr<detail::LeafImpl> leaf);
  static Tensor from_slot(Tape* tape, std::uint32_t slot, std::uint64_t epoch);
  const std::shared_ptr<detail::LeafImpl>& leaf() const { return leaf_; }
  std::uint32_t slot_index() const { return slot_; }
  std::uint64_t epoch() const { return epoch_; }
  const detail::Slot& slot() const;  // throws when its graph was released and replaced

  void check() const {
    if (!shape_) throw_undefined();
    if (epoch_src_ && *epoch_src_ != epoch_) throw_stale();
  }
  [[noreturn]] void throw_undefined() const;
  [[noreturn]] void throw_stale() const;
  [[noreturn]] void throw_dtype(DType wanted) const;
  bool leaf_requires_grad() const;

  std::shared_ptr<detail::LeafImpl> leaf_;
  Tape* tape_ = nullptr;
  // Cached at creation: a leaf's shape and buffer never move; a recorded tensor's slot never moves
  // (Tape's SlotStore), and its values stay valid while its tape's epoch equals epoch_.
  const std::uint64_t* epoch_src_ = nullptr;
  const Shape* shape_ = nullptr;
  void* data_ = nullptr;
  std::uint64_t epoch_ = 0;
  std::uint32_t slot_ = 0;
  DType dtype_ = DType::f32;
};

namespace detail {
// A Tensor's internals, for the core (tape, ops' recording, autobatch) and ops' hooks that stack rows; not
// for models. A leaf's shared state, its slot on its tape, its graph's epoch, and the two constructors.
struct TensorInternals {
  static Tensor from_leaf(std::shared_ptr<LeafImpl> leaf) { return Tensor::from_leaf(std::move(leaf)); }
  static Tensor from_slot(Tape* tape, std::uint32_t slot, std::uint64_t epoch) {
    return Tensor::from_slot(tape, slot, epoch);
  }
  static const std::shared_ptr<LeafImpl>& leaf(const Tensor& t) { return t.leaf(); }
  static std::uint32_t slot_index(const Tensor& t) { return t.slot_index(); }
  static std::uint64_t epoch(const Tensor& t) { return t.epoch(); }
  static const Slot& slot(const Tensor& t) { return t.slot(); }
  static const Slot& slot(const Tape& tape, std::uint32_t i);  // any slot of a tape (a view's base)
};
}  // namespace detail

std::ostream& operator<<(std::ostream& os, const Tensor& t);
// The shape for an error message: "(2, 3)", or "(undefined)".
std::string shape_str(const Tensor& t);

// The dtype used when a creation function is not told one (float32 unless changed).
DType default_dtype();
void set_default_dtype(DType d);

// An explicit, seedable source of randomness. Random draws (init, VAE noise, dropout masks, negative
// samples) come from one of these and enter the graph as constants.
class Generator {
 public:
  explicit Generator(std::uint64_t seed = 0) : engine_(seed) {}
  double normal(double mean = 0.0, double std = 1.0) { return std::normal_distribution<double>(mean, std)(engine_); }
  double uniform(double lo = 0.0, double hi = 1.0) { return std::uniform_real_distribution<double>(lo, hi)(engine_); }
  std::uint64_t below(std::uint64_t n) { return std::uniform_int_distribution<std::uint64_t>(0, n - 1)(engine_); }
  std::mt19937_64& engine() { return engine_; }

 private:
  std::mt19937_64 engine_;
};

// Creation: owned tensors.
Tensor empty(const Shape& shape, DType dtype = default_dtype());
Tensor zeros(const Shape& shape, DType dtype = default_dtype());
Tensor ones(const Shape& shape, DType dtype = default_dtype());
Tensor full(const Shape& shape, double value, DType dtype = default_dtype());
Tensor scalar(double value, DType dtype = default_dtype());  // rank 0
Tensor arange(double start, double stop, double step = 1.0, DType dtype = default_dtype());
Tensor from_values(const std::vector<double>& values, const Shape& shape, DType dtype = default_dtype());
template <class T> Tensor from_data(const T* values, const Shape& shape);  // copies
Tensor randn(const Shape& shape, Generator& gen, double std = 1.0, DType dtype = default_dtype());
Tensor uniform(const Shape& shape, double lo, double hi, Generator& gen, DType dtype = default_dtype());
Tensor zeros_like(const Tensor& t);
Tensor ones_like(const Tensor& t);

// Adopt foreign memory without copying: `owner` keeps `data` alive (for example an xtensor container).
Tensor adopt(std::shared_ptr<void> owner, void* data, const Shape& shape, DType dtype);

// Opt-in heap tuning for a training process (examples and benches call it first thing in main): glibc
// hands large freed blocks back to the OS and faults them in again on the next allocation, which made
// xtensor's dot up to 5x slower than raw BLAS here. Keeps blocks up to 32 MiB on the heap and the heap's
// top untrimmed. The library never changes malloc's settings by itself.
void tune_malloc();

// Parameters: an owned tensor that requires grad.
inline Tensor parameter(Tensor t) { return t.requires_grad_(true); }

}  // namespace tapegrad
