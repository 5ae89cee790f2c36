#include "tapegrad/autograd/shape.hpp"

#include <sstream>

namespace tapegrad {

const char* dtype_name(DType d) { return d == DType::f32 ? "float32" : "float64"; }

void Shape::push_back(std::size_t d) {
  if (rank_ == max_rank) throw Error("Shape: rank above " + std::to_string(max_rank) + " is not supported");
  dims_[rank_++] = d;
}

void Shape::throw_too_large(const char* who) const {
  throw Error(std::string(who ? who : "Shape") + ": shape " + str() + " has more elements than fit in memory (" +
              "the product of its sizes overflows or exceeds 2^60)");
}

std::string Shape::str() const {
  std::ostringstream os;
  os << '(';
  for (std::size_t i = 0; i < rank_; ++i) os << (i ? ", " : "") << dims_[i];
  if (rank_ == 1) os << ',';
  os << ')';
  return os.str();
}

Shape broadcast_shapes(const char* op, const Shape& a, const Shape& b) {
  if (a == b) return a;
  const std::size_t r = a.rank() > b.rank() ? a.rank() : b.rank();
  Shape out;
  for (std::size_t k = 0; k < r; ++k) {
    const std::size_t da = k + a.rank() >= r ? a[k + a.rank() - r] : 1;
    const std::size_t db = k + b.rank() >= r ? b[k + b.rank() - r] : 1;
    if (da != db && da != 1 && db != 1)
      throw Error(std::string(op) + ": shapes " + a.str() + " and " + b.str() + " do not broadcast");
    out.push_back(da == 1 ? db : da);
  }
  return out;
}

std::array<std::size_t, Shape::max_rank> strides_of(const Shape& s) {
  std::array<std::size_t, Shape::max_rank> st{};
  std::size_t acc = 1;
  for (std::size_t k = s.rank(); k-- > 0;) {
    st[k] = acc;
    acc *= s[k];
  }
  return st;
}

std::size_t normalize_axis_slow(const char* op, long axis, const Shape& s) {
  const long r = static_cast<long>(s.rank());
  if (axis < -r || axis >= r)
    throw Error(std::string(op) + ": axis " + std::to_string(axis) + " out of range for input of shape " + s.str() +
                " (rank " + std::to_string(r) + ")");
  return static_cast<std::size_t>(axis < 0 ? axis + r : axis);
}

// The one place where broadcasting is undone: += src summed down to dst_shape.
namespace detail {
template <class T> void sum_to_accumulate(T* dst, const Shape& dst_shape, const T* src, const Shape& src_shape) {
  const std::size_t n = src_shape.numel();
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
