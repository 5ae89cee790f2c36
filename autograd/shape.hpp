// Shape, dtype and the errors every op raises.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <stdexcept>
#include <string>
#include <vector>

namespace tapegrad {

// Every bad input raises this (or a subclass); the message names the op and the shapes.
class Error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

enum class DType : std::uint8_t { f32, f64 };

const char* dtype_name(DType d);
inline std::size_t dtype_size(DType d) { return d == DType::f32 ? 4 : 8; }

template <class T> struct dtype_of;
template <> struct dtype_of<float> { static constexpr DType value = DType::f32; };
template <> struct dtype_of<double> { static constexpr DType value = DType::f64; };

// A small inline shape (rank <= 8): shapes live inside tape slots, so no heap allocation per op.
class Shape {
 public:
  static constexpr std::size_t max_rank = 8;

  Shape() = default;
  Shape(std::initializer_list<std::size_t> dims) : Shape(dims.begin(), dims.end()) {}
  explicit Shape(const std::vector<std::size_t>& dims) : Shape(dims.begin(), dims.end()) {}
  template <class It> Shape(It first, It last) {
    for (; first != last; ++first) push_back(static_cast<std::size_t>(*first));
  }

  std::size_t rank() const { return rank_; }
  std::size_t size() const { return rank_; }  // number of dimensions, as std containers
  // The largest element count a tensor may have: its bytes (8 per element at most) and every offset into
  // it must fit a ptrdiff_t.
  static constexpr std::size_t max_numel = std::size_t(PTRDIFF_MAX) / 8;
  // Every element count goes through here: a shape whose product overflows, or exceeds max_numel, is an
  // Error (a product that wrapped would silently size a buffer too small).
  std::size_t numel() const { return checked_numel(nullptr); }
  // The same, naming the function that was given the shape.
  std::size_t checked_numel(const char* who) const {
    std::size_t n = 1;
    bool overflow = false;
    for (std::size_t i = 0; i < rank_; ++i) overflow |= __builtin_mul_overflow(n, dims_[i], &n);
    if (overflow || n > max_numel) throw_too_large(who);
    return n;
  }
  std::size_t operator[](std::size_t i) const { return dims_[i]; }
  std::size_t& operator[](std::size_t i) { return dims_[i]; }
  std::size_t back() const { return dims_[rank_ - 1]; }
  const std::size_t* begin() const { return dims_.data(); }
  const std::size_t* end() const { return dims_.data() + rank_; }
  void push_back(std::size_t d);
  std::vector<std::size_t> to_vector() const { return {begin(), end()}; }
  std::string str() const;  // "(2, 3)"; "()" for rank 0

  friend bool operator==(const Shape& a, const Shape& b) {  // a plain loop: std::equal calls memcmp
    if (a.rank_ != b.rank_) return false;
    for (std::size_t i = 0; i < a.rank_; ++i)
      if (a.dims_[i] != b.dims_[i]) return false;
    return true;
  }
  friend bool operator!=(const Shape& a, const Shape& b) { return !(a == b); }

 private:
  [[noreturn]] void throw_too_large(const char* who) const;
  std::array<std::size_t, max_rank> dims_{};
  std::size_t rank_ = 0;
};

// NumPy broadcasting of two shapes; throws Error naming `op` when they do not broadcast.
Shape broadcast_shapes(const char* op, const Shape& a, const Shape& b);

// Row-major contiguous strides of a shape.
std::array<std::size_t, Shape::max_rank> strides_of(const Shape& s);

// An axis of shape s, negative counting from the end; out of range throws, naming `op` and the shape.
std::size_t normalize_axis_slow(const char* op, long axis, const Shape& s);
inline std::size_t normalize_axis(const char* op, long axis, const Shape& s) {
  if (axis >= 0 && static_cast<std::size_t>(axis) < s.rank()) return static_cast<std::size_t>(axis);
  return normalize_axis_slow(op, axis, s);
}

namespace detail {
// Raw dst += src, summed over the axes along which dst was broadcast to src_shape.
template <class T> void sum_to_accumulate(T* dst, const Shape& dst_shape, const T* src, const Shape& src_shape);
}  // namespace detail

}  // namespace tapegrad
