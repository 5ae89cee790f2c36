#include "tapegrad/autograd/shape.hpp"

#include <sstream>

namespace tapegrad {

const char* dtype_name(DType d) { return d == DType::f32 ? "float32" : "float64"; }

Shape::Shape(std::initializer_list<std::size_t> dims) {
  for (auto d : dims) push_back(d);
}

Shape::Shape(const std::vector<std::size_t>& dims) {
  for (auto d : dims) push_back(d);
}

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

std::size_t normalize_axis_slow(const char* op, long axis, std::size_t rank) {
  const long r = static_cast<long>(rank);
  if (axis < -r || axis >= r)
    throw Error(std::string(op) + ": axis " + std::to_string(axis) + " out of range for rank " + std::to_string(rank));
  return static_cast<std::size_t>(axis < 0 ? axis + r : axis);
}

}  // namespace tapegrad
