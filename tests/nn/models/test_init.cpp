// Initialisers: their spreads match their names (the course's "Xavier" is LeCun's), orthogonal is orthogonal.
#include <boost/test/unit_test.hpp>

#include <cmath>

#include "support/xt.hpp"

using namespace tapegrad;
using namespace tapegrad::test;

namespace {
double stddev(const Tensor& t) {
  const auto v = t.to_vector();
  double m = 0, s = 0;
  for (double x : v) m += x;
  m /= v.size();
  for (double x : v) s += (x - m) * (x - m);
  return std::sqrt(s / v.size());
}
}  // namespace

BOOST_AUTO_TEST_SUITE(init)

BOOST_AUTO_TEST_CASE(spreads_match_their_names) {
  Generator gen(3);
  const std::size_t in = 400, out = 100;  // 40,000 draws: the sample std is within ~0.4% (1 sigma)
  const double tol = 0.02;                // 5 sigma, relative
  BOOST_TEST(stddev(nn::init::normal({in, out}, 0.3, gen)) == 0.3, boost::test_tools::tolerance(tol));
  BOOST_TEST(stddev(nn::init::lecun_normal({in, out}, gen)) == 1 / std::sqrt(400.0), boost::test_tools::tolerance(tol));
  BOOST_TEST(stddev(nn::init::glorot_normal({in, out}, gen)) == std::sqrt(2.0 / 500), boost::test_tools::tolerance(tol));
  BOOST_TEST(stddev(nn::init::he_normal({in, out}, gen)) == std::sqrt(2.0 / 400), boost::test_tools::tolerance(tol));
  // glorot_uniform: U(-a, a) with a = sqrt(6 / (in + out)), std a / sqrt(3).
  Tensor u = nn::init::glorot_uniform({in, out}, gen);
  const double a = std::sqrt(6.0 / 500);
  for (double x : u.to_vector()) BOOST_TEST((x >= -a && x <= a));
  BOOST_TEST(stddev(u) == a / std::sqrt(3.0), boost::test_tools::tolerance(tol));
}

BOOST_AUTO_TEST_CASE(orthogonal_has_orthonormal_columns_or_rows) {
  Generator gen(4);
  for (Shape s : {Shape{6, 4}, Shape{4, 6}, Shape{5, 5}}) {
    Tensor q = nn::init::orthogonal(s, gen, 1.0, DType::f64);
    xt::xarray<double> m = to_xt(q);
    const bool tall = s[0] >= s[1];
    const std::size_t n = tall ? s[1] : s[0];
    for (std::size_t i = 0; i < n; ++i)
      for (std::size_t j = 0; j < n; ++j) {
        double d = 0;
        for (std::size_t k = 0; k < (tall ? s[0] : s[1]); ++k) d += tall ? m(k, i) * m(k, j) : m(i, k) * m(j, k);
        BOOST_TEST(std::abs(d - (i == j ? 1.0 : 0.0)) <= 1e-12, "Q^T Q at " << i << "," << j << " is " << d);
      }
  }
  expect_error([&] { nn::init::orthogonal({2, 2, 2}, gen); }, {"orthogonal", "(2, 2, 2)"});
}

BOOST_AUTO_TEST_SUITE_END()
