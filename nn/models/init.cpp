#include "tapegrad/nn/models/init.hpp"

#include <cmath>
#include <vector>

namespace tapegrad::nn::init {

namespace {
std::pair<double, double> fans(const Shape& s) {
  if (s.rank() == 0) return {1, 1};
  if (s.rank() == 1) return {double(s[0]), double(s[0])};
  if (s.rank() == 4) {  // conv filters (F, C, KH, KW): fan_in = C KH KW, fan_out = F KH KW
    const double field = double(s[2] * s[3]);
    return {double(s[1]) * field, double(s[0]) * field};
  }
  double in = 1;  // the product of all sizes but the last (numel / out divides by zero when out is 0)
  for (std::size_t k = 0; k + 1 < s.rank(); ++k) in *= double(s[k]);
  return {in, double(s.back())};
}
// A shape without elements has nothing to draw (and a fan of 0 would make the scale infinite): as
// PyTorch's init, a no-op that returns the empty tensor.
bool nothing_to_draw(const Shape& s) { return s.numel() == 0; }
}  // namespace

Tensor normal(const Shape& shape, double std, Generator& gen, DType dtype) { return randn(shape, gen, std, dtype); }

Tensor lecun_normal(const Shape& shape, Generator& gen, DType dtype) {
  if (nothing_to_draw(shape)) return zeros(shape, dtype);
  return randn(shape, gen, 1.0 / std::sqrt(fans(shape).first), dtype);
}

Tensor glorot_normal(const Shape& shape, Generator& gen, DType dtype) {
  if (nothing_to_draw(shape)) return zeros(shape, dtype);
  auto [in, out] = fans(shape);
  return randn(shape, gen, std::sqrt(2.0 / (in + out)), dtype);
}

Tensor glorot_uniform(const Shape& shape, Generator& gen, DType dtype) {
  if (nothing_to_draw(shape)) return zeros(shape, dtype);
  auto [in, out] = fans(shape);
  const double a = std::sqrt(6.0 / (in + out));
  return uniform(shape, -a, a, gen, dtype);
}

Tensor he_normal(const Shape& shape, Generator& gen, DType dtype) {
  if (nothing_to_draw(shape)) return zeros(shape, dtype);
  return randn(shape, gen, std::sqrt(2.0 / fans(shape).first), dtype);
}

// A (rows x cols) matrix with orthonormal rows or columns: Gram-Schmidt on a Gaussian matrix.
Tensor orthogonal(const Shape& shape, Generator& gen, double gain, DType dtype) {
  if (shape.rank() != 2) throw Error("orthogonal: needs a matrix shape, got " + shape.str());
  const std::size_t r = shape[0], c = shape[1];
  const bool tall = r >= c;
  const std::size_t n = tall ? c : r, len = tall ? r : c;  // n orthonormal vectors of length len
  std::vector<double> v(n * len);
  for (auto& x : v) x = gen.normal();
  for (std::size_t i = 0; i < n; ++i) {
    double* vi = &v[i * len];
    for (std::size_t j = 0; j < i; ++j) {
      const double* vj = &v[j * len];
      double d = 0;
      for (std::size_t k = 0; k < len; ++k) d += vi[k] * vj[k];
      for (std::size_t k = 0; k < len; ++k) vi[k] -= d * vj[k];
    }
    double norm = 0;
    for (std::size_t k = 0; k < len; ++k) norm += vi[k] * vi[k];
    norm = std::sqrt(norm);
    for (std::size_t k = 0; k < len; ++k) vi[k] /= norm;
  }
  std::vector<double> m(r * c);
  for (std::size_t i = 0; i < r; ++i)
    for (std::size_t j = 0; j < c; ++j) m[i * c + j] = gain * (tall ? v[j * len + i] : v[i * len + j]);
  return from_values(m, shape, dtype);
}

}  // namespace tapegrad::nn::init
