// Test helpers: tensors to and from xtensor, comparisons, expected errors.
#pragma once

#include <boost/test/unit_test.hpp>

#include <cmath>
#include <functional>
#include <initializer_list>
#include <string>
#include <xtensor/xadapt.hpp>
#include <xtensor/xarray.hpp>

#include <tapegrad/tapegrad.hpp>

namespace tapegrad::test {

inline xt::xarray<double> to_xt(const Tensor& t) {
  std::vector<double> v = t.to_vector();
  std::vector<std::size_t> shape = t.shape().to_vector();
  return xt::adapt(v, shape);
}

inline Tensor from_xt(const xt::xarray<double>& a) {
  return from_values(std::vector<double>(a.begin(), a.end()), Shape(a.shape().begin(), a.shape().end()), DType::f64);
}

// Largest |t - ref|; shapes must match exactly (no broadcasting in comparisons).
template <class E> double max_abs_diff(const Tensor& t, const E& ref) {
  xt::xarray<double> r = ref;
  xt::xarray<double> a = to_xt(t);
  if (a.shape() != r.shape()) return INFINITY;
  double m = 0;
  for (std::size_t i = 0; i < a.size(); ++i) m = std::max(m, std::abs(a.flat(i) - r.flat(i)));
  return m;
}

// f must throw tapegrad::Error whose message contains every fragment.
inline void expect_error(const std::function<void()>& f, std::initializer_list<std::string> fragments) {
  try {
    f();
  } catch (const Error& e) {
    const std::string msg = e.what();
    for (const auto& frag : fragments) BOOST_TEST(msg.find(frag) != std::string::npos, "message '" << msg << "' lacks '" << frag << "'");
    return;
  }
  BOOST_TEST(false, "no tapegrad::Error thrown (expected one mentioning " << *fragments.begin() << ")");
}

}  // namespace tapegrad::test
