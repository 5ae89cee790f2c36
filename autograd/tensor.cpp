#include "tapegrad/autograd/tensor.hpp"

#include <malloc.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <iomanip>
#include <ostream>
#include <vector>

#include "tapegrad/autograd/leaf.hpp"
#include "tapegrad/autograd/tape.hpp"

namespace tapegrad {

namespace {
std::atomic<DType> g_default_dtype{DType::f32};
}  // namespace

DType default_dtype() { return g_default_dtype.load(); }
void set_default_dtype(DType d) { g_default_dtype.store(d); }

Tensor Tensor::from_leaf(std::shared_ptr<detail::LeafImpl> leaf) {
  Tensor t;
  t.shape_ = &leaf->shape;
  t.data_ = leaf->data;
  t.dtype_ = leaf->dtype;
  t.leaf_ = std::move(leaf);
  return t;
}

Tensor Tensor::from_slot(Tape* tape, std::uint32_t slot, std::uint64_t epoch) {
  Tensor t;
  const detail::Slot& s = tape->slot(slot);
  t.tape_ = tape;
  t.slot_ = slot;
  t.epoch_ = epoch;
  t.epoch_src_ = tape->epoch_ptr();
  t.shape_ = &s.shape;
  t.data_ = s.data;
  t.dtype_ = s.dtype;
  return t;
}

// Only the epoch is checked on access: epochs are unique across tapes and a tape's memory outlives its
// handles (Scope tapes are pooled per thread), so a stale handle always fails the check. Use on another
// thread's tape is caught where it matters, when an op takes the tensor (OpCall).
const detail::Slot& Tensor::slot() const {
  check();
  return tape_->slot(slot_);
}

void Tensor::throw_undefined() const { throw Error("tensor is undefined"); }

void Tensor::throw_stale() const {
  throw Error("tensor belongs to a graph that backward() released and a new graph replaced (or to a closed "
              "Tape::Scope); detach() values that must outlive their graph (truncated BPTT), or pass retain_graph");
}

void Tensor::throw_dtype(DType wanted) const {
  throw Error(std::string("data<") + dtype_name(wanted) + ">: tensor of shape " + shape_->str() + " is " +
              dtype_name(dtype_));
}

bool Tensor::leaf_requires_grad() const { return leaf_->requires_grad; }

std::uint64_t Tensor::version() const {
  check();
  return leaf_ ? leaf_->version : 0;
}
void Tensor::bump_version() {
  if (leaf_) ++leaf_->version;
}

std::size_t Tensor::size(long axis) const { return shape()[normalize_axis("size", axis, shape())]; }

Tensor& Tensor::requires_grad_(bool on) {
  if (!leaf_) throw Error("requires_grad_: only owned (leaf) tensors can change requires_grad; use detach()");
  leaf_->requires_grad = on;
  return *this;
}

Tensor Tensor::grad() const {
  if (!leaf_) {
    check();
    throw Error("grad(): only leaves keep a gradient; use tapegrad::grad(root, {x}) for a recorded tensor of shape " +
                shape().str());
  }
  if (!leaf_->grad) return Tensor();
  return from_leaf(leaf_->grad);
}

void Tensor::zero_grad() {
  if (leaf_ && leaf_->grad) {
    std::memset(leaf_->grad->data, 0, leaf_->grad->shape.numel() * dtype_size(leaf_->grad->dtype));
    ++leaf_->grad->version;
  }
}

namespace {
double value_at(const Tensor& t, std::size_t i) {
  return t.dtype() == DType::f32 ? static_cast<const float*>(t.raw_data())[i]
                                 : static_cast<const double*>(t.raw_data())[i];
}
}  // namespace

double Tensor::item() const {
  if (numel() != 1) throw Error("item: tensor of shape " + shape().str() + " has " + std::to_string(numel()) + " elements, not 1");
  return value_at(*this, 0);
}

double Tensor::at(std::initializer_list<std::size_t> index) const {
  const Shape& s = shape();
  if (index.size() != s.rank())
    throw Error("at: " + std::to_string(index.size()) + " indices for a tensor of shape " + s.str());
  std::size_t flat = 0, k = 0;
  for (auto i : index) {
    if (i >= s[k]) throw Error("at: index " + std::to_string(i) + " out of range on axis " + std::to_string(k) + " of shape " + s.str());
    flat = flat * s[k] + i;
    ++k;
  }
  return value_at(*this, flat);
}

std::vector<double> Tensor::to_vector() const {
  std::vector<double> v(numel());
  for (std::size_t i = 0; i < v.size(); ++i) v[i] = value_at(*this, i);
  return v;
}

Tensor Tensor::detach() const {
  auto leaf = detail::make_leaf(shape(), dtype());
  std::memcpy(leaf->data, raw_data(), numel() * dtype_size(dtype()));
  return from_leaf(std::move(leaf));
}

Tensor Tensor::to(DType d) const { return from_values(to_vector(), shape(), d); }

Tensor& Tensor::set_name(const std::string& name) {
  if (!leaf_) throw Error("set_name: only owned tensors carry a name");
  leaf_->name = name;
  return *this;
}

std::string Tensor::name() const { return leaf_ ? leaf_->name : std::string(); }

std::string shape_str(const Tensor& t) { return t.defined() ? t.shape().str() : std::string("(undefined)"); }

std::ostream& operator<<(std::ostream& os, const Tensor& t) {
  if (!t.defined()) return os << "Tensor(undefined)";
  const Shape& s = t.shape();
  os << "Tensor(shape=" << s.str() << ", dtype=" << dtype_name(t.dtype());
  if (t.requires_grad()) os << ", requires_grad";
  os << ")\n";
  const auto values = t.to_vector();
  const std::size_t last = s.rank() ? s.back() : 1;
  const std::size_t limit = 1000;
  for (std::size_t i = 0; i < values.size() && i < limit; ++i) {
    os << std::setw(12) << std::setprecision(6) << values[i];
    if ((i + 1) % (last ? last : 1) == 0) os << '\n';
  }
  if (values.size() > limit) os << "... (" << values.size() - limit << " more)\n";
  return os;
}

void tune_malloc() {
  mallopt(M_MMAP_THRESHOLD, 32 << 20);
  mallopt(M_TRIM_THRESHOLD, 512 << 20);
}

// ----- creation -----

namespace {
// Every creation function checks its shape here first, so an absurd shape names the function.
Tensor create(const char* who, const Shape& shape, DType dtype) {
  shape.checked_numel(who);
  return detail::TensorInternals::from_leaf(detail::make_leaf(shape, dtype));
}
// value(i) gives element i.
template <class F> Tensor generate(const char* who, const Shape& shape, DType dtype, F value) {
  Tensor t = create(who, shape, dtype);
  dispatch(dtype, [&](auto z) {
    using T = decltype(z);
    T* p = static_cast<T*>(t.raw_data());
    for (std::size_t i = 0, n = shape.numel(); i < n; ++i) p[i] = static_cast<T>(value(i));
  });
  return t;
}
}  // namespace

Tensor empty(const Shape& shape, DType dtype) { return create("empty", shape, dtype); }
Tensor full(const Shape& shape, double value, DType dtype) {
  return generate("full", shape, dtype, [=](std::size_t) { return value; });
}
Tensor zeros(const Shape& shape, DType dtype) { return generate("zeros", shape, dtype, [](std::size_t) { return 0; }); }
Tensor ones(const Shape& shape, DType dtype) { return generate("ones", shape, dtype, [](std::size_t) { return 1; }); }
Tensor scalar(double value, DType dtype) { return full(Shape{}, value, dtype); }
Tensor zeros_like(const Tensor& t) { return zeros(t.shape(), t.dtype()); }
Tensor ones_like(const Tensor& t) { return ones(t.shape(), t.dtype()); }

Tensor arange(double start, double stop, double step, DType dtype) {
  if (step == 0 || !std::isfinite(start) || !std::isfinite(stop) || !std::isfinite(step))
    throw Error("arange: start, stop and step must be finite and step non-zero");
  const double n = std::ceil((stop - start) / step);
  // Checked before the conversion: a double beyond size_t's range does not convert (undefined behaviour).
  if (!(n <= double(Shape::max_numel)))
    throw Error("arange: [" + std::to_string(start) + ", " + std::to_string(stop) + ") in steps of " +
                std::to_string(step) + " has " + std::to_string(n) + " elements, more than fit in memory");
  return generate("arange", Shape{n > 0 ? static_cast<std::size_t>(n) : 0}, dtype,
                  [=](std::size_t i) { return start + step * static_cast<double>(i); });
}

Tensor from_values(const std::vector<double>& values, const Shape& shape, DType dtype) {
  if (values.size() != shape.checked_numel("from_values"))
    throw Error("from_values: " + std::to_string(values.size()) + " values for shape " + shape.str());
  return generate("from_values", shape, dtype, [&](std::size_t i) { return values[i]; });
}

template <class T> Tensor from_data(const T* values, const Shape& shape) {
  Tensor t = create("from_data", shape, dtype_of<T>::value);
  std::memcpy(t.data<T>(), values, shape.numel() * sizeof(T));
  return t;
}
template Tensor from_data<float>(const float*, const Shape&);
template Tensor from_data<double>(const double*, const Shape&);

Tensor randn(const Shape& shape, Generator& gen, double std, DType dtype) {
  if (!(std >= 0) || !std::isfinite(std)) throw Error("randn: std " + std::to_string(std) + " must be finite and >= 0");
  return generate("randn", shape, dtype, [&](std::size_t) { return gen.normal(0.0, std); });
}

Tensor uniform(const Shape& shape, double lo, double hi, Generator& gen, DType dtype) {
  if (!(lo <= hi) || !std::isfinite(lo) || !std::isfinite(hi))
    throw Error("uniform: [" + std::to_string(lo) + ", " + std::to_string(hi) + ") must be finite with lo <= hi");
  return generate("uniform", shape, dtype, [&](std::size_t) { return gen.uniform(lo, hi); });
}

Tensor adopt(std::shared_ptr<void> owner, void* data, const Shape& shape, DType dtype) {
  if (!data && shape.checked_numel("adopt")) throw Error("adopt: null data for shape " + shape.str());
  auto leaf = std::make_shared<detail::LeafImpl>();
  leaf->shape = shape;
  leaf->dtype = dtype;
  leaf->owner = std::move(owner);
  leaf->data = data;
  return detail::TensorInternals::from_leaf(std::move(leaf));
}

}  // namespace tapegrad
