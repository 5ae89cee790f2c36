// Tensor: creation, access, printing, dtypes, xtensor interop.
#include <boost/test/unit_test.hpp>

#include <sstream>
#include <tapegrad/autograd/xtensor.hpp>

#include "support/xt.hpp"

using namespace tapegrad;
using namespace tapegrad::test;

BOOST_AUTO_TEST_SUITE(tensor)

BOOST_AUTO_TEST_CASE(creation_and_access) {
  Tensor z = zeros({2, 3});
  BOOST_TEST((z.dtype() == DType::f32));  // float32 by default
  BOOST_TEST(z.numel() == 6u);
  BOOST_TEST(z.rank() == 2u);
  BOOST_TEST(z.size(-1) == 3u);
  for (double v : z.to_vector()) BOOST_TEST(v == 0.0);
  Tensor o = ones({4}, DType::f64);
  BOOST_TEST(o.at({3}) == 1.0);
  Tensor f = full({2, 2}, 2.5, DType::f64);
  BOOST_TEST(f.at({1, 0}) == 2.5);
  Tensor s = scalar(3.0);
  BOOST_TEST(s.rank() == 0u);
  BOOST_TEST(s.item() == 3.0);
  Tensor a = arange(0, 5, 1, DType::f64);
  BOOST_TEST(a.to_vector() == std::vector<double>({0, 1, 2, 3, 4}), boost::test_tools::per_element());
  Tensor v = from_values({1, 2, 3, 4, 5, 6}, {2, 3}, DType::f64);
  BOOST_TEST(v.at({1, 2}) == 6.0);
  Tensor c = v.to(DType::f32);
  BOOST_TEST((c.dtype() == DType::f32));
  BOOST_TEST(c.at({0, 1}) == 2.0);
}

BOOST_AUTO_TEST_CASE(random_is_seeded) {
  Generator g1(42), g2(42), g3(43);
  Tensor a = randn({3, 3}, g1), b = randn({3, 3}, g2), c = randn({3, 3}, g3);
  BOOST_TEST(a.to_vector() == b.to_vector(), boost::test_tools::per_element());
  BOOST_TEST(a.to_vector() != c.to_vector());
  Tensor u = uniform({1000}, -0.5, 0.5, g1, DType::f64);
  for (double x : u.to_vector()) BOOST_TEST((x >= -0.5 && x < 0.5));
}

BOOST_AUTO_TEST_CASE(printing) {
  std::ostringstream os;
  os << from_values({1, 2}, {2}, DType::f64).requires_grad_();
  BOOST_TEST(os.str().find("shape=(2,)") != std::string::npos);
  BOOST_TEST(os.str().find("float64") != std::string::npos);
  BOOST_TEST(os.str().find("requires_grad") != std::string::npos);
}

BOOST_AUTO_TEST_CASE(xtensor_interop_without_copies) {
  xt::xarray<double> a = {{1.0, 2.0, 3.0}, {4.0, 5.0, 6.0}};
  const double* before = a.data();
  Tensor t = from_xtensor(std::move(a));
  BOOST_TEST(t.data<double>() == before);  // adopted, not copied
  BOOST_TEST(t.shape() == Shape({2, 3}));
  auto view = as_xtensor<double>(t);
  view(1, 1) = 50.0;  // writes through
  BOOST_TEST(t.at({1, 1}) == 50.0);
  xt::xarray<double> back = to_xarray<double>(t);
  BOOST_TEST(back(0, 2) == 3.0);
}

BOOST_AUTO_TEST_CASE(bad_access) {
  Tensor t = zeros({2, 3}, DType::f64);
  expect_error([&] { t.item(); }, {"item", "(2, 3)"});
  expect_error([&] { t.at({2, 0}); }, {"at", "(2, 3)"});
  expect_error([&] { t.at({0}); }, {"at", "(2, 3)"});
  expect_error([&] { t.data<float>(); }, {"float32", "(2, 3)", "float64"});
  expect_error([&] { from_values({1, 2, 3}, {2, 2}); }, {"from_values", "(2, 2)"});
  expect_error([&] { Tensor().shape(); }, {"undefined"});
  expect_error([&] { zeros({1, 1, 1, 1, 1, 1, 1, 1, 1}); }, {"rank"});
}

BOOST_AUTO_TEST_SUITE_END()
