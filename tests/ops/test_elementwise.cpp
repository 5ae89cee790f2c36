// Rows of the op table for ops/elementwise, and forward values against xtensor.
#include <boost/test/unit_test.hpp>

#include <xtensor/xarray.hpp>
#include <xtensor/xmath.hpp>

#include "support/op_table.hpp"
#include "support/xt.hpp"

using namespace tapegrad;
using namespace tapegrad::test;

TAPEGRAD_OP_ROWS(elementwise) {
  auto bin = [](Tensor (*op)(const Tensor&, const Tensor&)) {
    return [op](const std::vector<Tensor>& x) { return op(x[0], x[1]); };
  };
  std::vector<OpRow> rows;
  // The binary ops over the broadcasting cases: same shape, row/column broadcast, size-1 axes, rank 0.
  const std::vector<std::pair<std::string, std::vector<Shape>>> samples = {
      {"same (2,3)", {{2, 3}, {2, 3}}},      {"row (2,3)x(3)", {{2, 3}, {3}}},
      {"col (2,3)x(2,1)", {{2, 3}, {2, 1}}}, {"both (3,1)x(1,4)", {{3, 1}, {1, 4}}},
      {"rank0 ()x(2,2)", {{}, {2, 2}}},      {"rank3 (2,1,3)x(4,1)", {{2, 1, 3}, {4, 1}}},
      // One operand a repeated trailing block of the other (the rows fast path), on either side.
      {"row first (3)x(2,3)", {{3}, {2, 3}}}, {"block (1,3,4)x(2,3,4)", {{1, 3, 4}, {2, 3, 4}}},
      {"block (2,3,4)x(3,4)", {{2, 3, 4}, {3, 4}}}};
  for (auto& [name, shapes] : samples) {
    rows.push_back(row("add").sample(name).shapes(shapes).fn(bin(add)).second_order());
    rows.push_back(row("sub").sample(name).shapes(shapes).fn(bin(sub)).second_order());
    rows.push_back(row("mul").sample(name).shapes(shapes).fn(bin(mul)).second_order());
    rows.push_back(row("div").sample(name).shapes(shapes).domain(Domain::positive).fn(bin(div)).second_order());
    rows.push_back(row("pow").sample(name).shapes(shapes).domain(Domain::positive)
        .fn(bin(tapegrad::pow)).second_order());
  }
  auto un = [](auto op) { return [op](const std::vector<Tensor>& x) { return op(x[0]); }; };
  for (const Shape& s : {Shape{2, 3}, Shape{}, Shape{1, 4, 1}}) {
    const std::string n = "shape " + s.str();
    rows.push_back(row("neg").sample(n).shapes({s}).fn(un([](const Tensor& x) { return neg(x); })).second_order());
    rows.push_back(row("exp").sample(n).shapes({s})
        .fn(un([](const Tensor& x) { return tapegrad::exp(x); })).second_order());
    rows.push_back(row("log").sample(n).shapes({s}).domain(Domain::positive)
        .fn(un([](const Tensor& x) { return tapegrad::log(x); })).second_order());
    rows.push_back(row("sqrt").sample(n).shapes({s}).domain(Domain::positive)
        .fn(un([](const Tensor& x) { return tapegrad::sqrt(x); })).second_order());
    rows.push_back(row("abs").sample(n).shapes({s}).domain(Domain::away_from_kinks)
        .fn(un([](const Tensor& x) { return tapegrad::abs(x); })).second_order());
    rows.push_back(row("clamp").sample(n).shapes({s}).domain(Domain::away_from_kinks)
        .fn(un([](const Tensor& x) { return clamp(x, -0.42, 0.33); })).second_order());
    rows.push_back(row("pow_scalar").sample(n + " p=3").shapes({s})
        .fn(un([](const Tensor& x) { return tapegrad::pow(x, 3.0); })).second_order());
    rows.push_back(row("pow_scalar").sample(n + " p=-1.5").shapes({s}).domain(Domain::positive)
        .fn(un([](const Tensor& x) { return tapegrad::pow(x, -1.5); })).second_order());
    rows.push_back(row("add_scalar").sample(n).shapes({s})
        .fn(un([](const Tensor& x) { return 2.5 - x; })).second_order());
    rows.push_back(row("mul_scalar").sample(n).shapes({s})
        .fn(un([](const Tensor& x) { return x * -1.7; })).second_order());
  }
  // where: the mask (input 0) is a constant of 0/1 values; a and b broadcast against it.
  auto where_inputs = [](Shape m, Shape a, Shape b) {
    return [m, a, b](Generator& g) {
      Tensor mask = bernoulli_mask(m, 0.5, g, DType::f64);
      return std::vector<Tensor>{mask, randn(a, g, 1.0, DType::f64), randn(b, g, 1.0, DType::f64)};
    };
  };
  auto where_fn = [](const std::vector<Tensor>& x) { return where(x[0], x[1], x[2]); };
  rows.push_back(row("where").sample("same (3,4)").inputs(where_inputs({3, 4}, {3, 4}, {3, 4})).constant_input(0)
      .fn(where_fn).second_order());
  rows.push_back(row("where").sample("broadcast (3,4) a(4) b()").inputs(where_inputs({3, 4}, {4}, {})).constant_input(0)
      .fn(where_fn).second_order());
  // dropout is a composite (mul by a constant mask / keep_prob).
  auto dropout_inputs = [](Generator& g) {
    return std::vector<Tensor>{randn({4, 5}, g, 1.0, DType::f64), bernoulli_mask({4, 5}, 0.7, g, DType::f64)};
  };
  rows.push_back(row("dropout").sample("(4,5) keep 0.7").inputs(dropout_inputs).constant_input(1)
      .fn([](const std::vector<Tensor>& x) { return dropout(x[0], x[1], 0.7); }).second_order().composite());
  return rows;
}

BOOST_AUTO_TEST_SUITE(elementwise)

BOOST_AUTO_TEST_CASE(forward_matches_xtensor) {
  Generator gen(11);
  Tensor a = randn({3, 4}, gen, 1.0, DType::f64), b = uniform({4}, 0.5, 2.0, gen, DType::f64);
  xt::xarray<double> xa = to_xt(a), xb = to_xt(b);
  BOOST_TEST(max_abs_diff(add(a, b), xa + xb) == 0.0);
  BOOST_TEST(max_abs_diff(sub(a, b), xa - xb) == 0.0);
  BOOST_TEST(max_abs_diff(mul(a, b), xa * xb) == 0.0);
  BOOST_TEST(max_abs_diff(div(a, b), xa / xb) == 0.0);
  BOOST_TEST(max_abs_diff(tapegrad::pow(b, a), xt::pow(xb, xa)) < 1e-15);
  // The block on the left, and a rank-3 tensor with a (rows, cols) block on either side.
  BOOST_TEST(max_abs_diff(sub(b, a), xb - xa) == 0.0);
  BOOST_TEST(max_abs_diff(div(b, a), xb / xa) == 0.0);
  Tensor c3 = randn({2, 3, 4}, gen, 1.0, DType::f64);
  xt::xarray<double> xc3 = to_xt(c3);
  BOOST_TEST(max_abs_diff(sub(c3, a), xc3 - xa) == 0.0);
  BOOST_TEST(max_abs_diff(sub(a, c3), xa - xc3) == 0.0);
  BOOST_TEST(max_abs_diff(mul(reshape(a, {1, 3, 4}), c3), xa * xc3) == 0.0);
  BOOST_TEST(max_abs_diff(tapegrad::exp(a), xt::exp(xa)) < 1e-15);
  BOOST_TEST(max_abs_diff(tapegrad::log(b), xt::log(xb)) < 1e-15);
  BOOST_TEST(max_abs_diff(tapegrad::sqrt(b), xt::sqrt(xb)) < 1e-15);
  BOOST_TEST(max_abs_diff(tapegrad::abs(a), xt::abs(xa)) == 0.0);
  BOOST_TEST(max_abs_diff(clamp(a, -0.5, 0.5), xt::clip(xa, -0.5, 0.5)) == 0.0);
  BOOST_TEST(max_abs_diff(2.0 - a, 2.0 - xa) == 0.0);
  BOOST_TEST(max_abs_diff(a * 3.0, xa * 3.0) == 0.0);
  BOOST_TEST(max_abs_diff(-a, -xa) == 0.0);
  Tensor m = from_values({1, 0, 0, 1}, {4}, DType::f64);
  xt::xarray<double> xm = to_xt(m);
  BOOST_TEST(max_abs_diff(where(m, a, b), xt::where(xm > 0, xa, xb)) == 0.0);
}

BOOST_AUTO_TEST_CASE(float32_forward) {
  Generator gen(12);
  Tensor a = randn({5}, gen), b = randn({5}, gen);
  BOOST_TEST((a.dtype() == DType::f32));
  Tensor y = a * b + 1.0;
  for (std::size_t i = 0; i < 5; ++i) BOOST_TEST(y.at({i}) == a.at({i}) * b.at({i}) + 1.0, boost::test_tools::tolerance(1e-6));
}

BOOST_AUTO_TEST_CASE(bad_inputs_name_the_op_and_shapes) {
  Tensor a = zeros({2, 3}, DType::f64), b = zeros({4}, DType::f64), c = zeros({2, 3}, DType::f32);
  expect_error([&] { add(a, b); }, {"add", "(2, 3)", "(4,)"});
  expect_error([&] { mul(a, c); }, {"mul", "float64", "float32"});
  expect_error([&] { clamp(a, 1.0, -1.0); }, {"clamp"});
  expect_error([&] { dropout(a, zeros({3, 2}, DType::f64), 0.5); }, {"dropout", "(3, 2)", "(2, 3)"});
  expect_error([&] { dropout(a, zeros({2, 3}, DType::f64), 0.0); }, {"dropout", "keep_prob"});
  expect_error([&] { where(parameter(zeros({2, 3}, DType::f64)), a, a); }, {"where", "mask"});
}

BOOST_AUTO_TEST_SUITE_END()
