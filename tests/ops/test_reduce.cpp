// Rows of the op table for ops/reduce, forward values against xtensor, and bad inputs.
#include <boost/test/unit_test.hpp>

#include <set>
#include <xtensor/xarray.hpp>
#include <xtensor/xmath.hpp>
#include <xtensor/xsort.hpp>

#include "support/op_table.hpp"
#include "support/xt.hpp"

using namespace tapegrad;
using namespace tapegrad::test;

namespace {

std::string axes_name(const std::vector<long>& axes, bool keepdims) {
  std::string s = "axes (";
  for (long a : axes) s += std::to_string(a) + " ";
  return s + ")" + (keepdims ? " keepdims" : "");
}

}  // namespace

// Every reduction twice: as is, and squared (see push_plain_and_squared).
TAPEGRAD_OP_ROWS(reduce) {
  std::vector<OpRow> rows;
  for (const Shape& s : {Shape{2, 3}, Shape{}, Shape{1, 4, 1}, Shape{5}}) {
    const std::string all = "all of " + s.str();
    push_plain_and_squared(rows, row("sum").sample(all).shapes({s})
        .fn([](const std::vector<Tensor>& x) { return sum(x[0]); }).second_order());
    push_plain_and_squared(rows, row("mean").sample(all).shapes({s})
        .fn([](const std::vector<Tensor>& x) { return mean(x[0]); }).second_order());
    push_plain_and_squared(rows, row("max").sample(all).shapes({s}).domain(Domain::away_from_kinks)
        .fn([](const std::vector<Tensor>& x) { return tapegrad::max(x[0]); }).second_order());
  }
  struct Axes {
    Shape s;
    std::vector<long> axes;
  };
  for (const Axes& r : std::vector<Axes>{{{2, 3, 4}, {0, 2}}, {{2, 3}, {-1}}, {{3, 1}, {1}}, {{2, 3}, {}},
                                         {{2, 3, 4}, {-3, -1, 1}}, {{1, 4, 1}, {0}}, {{4}, {0}}}) {
    for (bool keep : {false, true}) {
      const std::string tag = r.s.str() + " " + axes_name(r.axes, keep);
      push_plain_and_squared(rows, row("sum").sample(tag).shapes({r.s})
          .fn([r, keep](const std::vector<Tensor>& x) { return sum(x[0], r.axes, keep); }).second_order());
      push_plain_and_squared(rows, row("mean").sample(tag).shapes({r.s})
          .fn([r, keep](const std::vector<Tensor>& x) { return mean(x[0], r.axes, keep); }).second_order());
    }
  }
  struct Axis {
    Shape s;
    long axis;
  };
  for (const Axis& r : std::vector<Axis>{{{3, 4}, 1}, {{3, 4}, -2}, {{1, 3}, 0}, {{2, 3, 4}, 1}, {{5}, -1}, {{3, 1}, 1}}) {
    for (bool keep : {false, true}) {
      const std::string tag = r.s.str() + " axis " + std::to_string(r.axis) + (keep ? " keepdims" : "");
      push_plain_and_squared(rows, row("max").sample(tag).shapes({r.s}).domain(Domain::away_from_kinks)
          .fn([r, keep](const std::vector<Tensor>& x) { return tapegrad::max(x[0], r.axis, keep); }).second_order());
    }
  }
  for (auto [from, to] : std::vector<std::pair<Shape, Shape>>{
           {{2, 3}, {3}}, {{2, 3}, {2, 1}}, {{2, 3}, {}}, {{4, 1, 3}, {1, 3}}, {{2, 3}, {2, 3}}, {{}, {}}}) {
    push_plain_and_squared(rows, row("sum_to").sample(from.str() + " -> " + to.str()).shapes({from})
        .fn([to = to](const std::vector<Tensor>& x) { return sum_to(x[0], to); }).second_order());
  }
  return rows;
}

BOOST_AUTO_TEST_SUITE(reduce)

// The differentiable backward must give the same gradient as the fast one.
BOOST_AUTO_TEST_CASE(graph_backward_equals_fast_backward) {
  const std::set<std::string> ours = {"sum", "mean", "max", "sum_to"};
  std::size_t compared = 0;
  for (const OpRow& row : op_table()) {
    if (!ours.count(row.op)) continue;
    BOOST_TEST_CONTEXT("op " << row.op << " / " << row.sample) {
      Generator gen(7);
      auto xs = sample_inputs(row, gen);
      Tape::Scope scope;
      Tensor y = row.fn(xs);
      Tensor w = randn(y.shape(), gen, 1.0, DType::f64);
      auto fast = grad(y, xs, {w, true, false});
      auto slow = grad(y, xs, {w, true, true});
      BOOST_TEST((fast[0].shape() == slow[0].shape()));
      BOOST_TEST(max_abs_diff(slow[0], to_xt(fast[0])) <= 1e-12);
      ++compared;
    }
  }
  BOOST_TEST(compared > 50u);
}

BOOST_AUTO_TEST_CASE(forward_matches_xtensor) {
  Generator gen(31);
  Tensor a = randn({2, 3, 4}, gen, 1.0, DType::f64);
  xt::xarray<double> xa = to_xt(a);
  BOOST_TEST(max_abs_diff(sum(a), xt::sum(xa)) < 1e-14);
  BOOST_TEST(max_abs_diff(sum(a, {1}), xt::sum(xa, {1})) < 1e-14);
  BOOST_TEST(max_abs_diff(sum(a, {0, -1}), xt::sum(xa, {0, 2})) < 1e-14);
  BOOST_TEST(max_abs_diff(sum(a, {2, 0}, true), xt::sum(xa, {0, 2}, xt::keep_dims)) < 1e-14);
  BOOST_TEST(max_abs_diff(sum(a, {}), xa) == 0.0);
  BOOST_TEST(max_abs_diff(mean(a), xt::mean(xa)) < 1e-15);
  BOOST_TEST(max_abs_diff(mean(a, {-2}), xt::mean(xa, {1})) < 1e-15);
  BOOST_TEST(max_abs_diff(mean(a, {0, 1}, true), xt::mean(xa, {0, 1}, xt::keep_dims)) < 1e-15);
  BOOST_TEST(max_abs_diff(tapegrad::max(a), xt::amax(xa)) == 0.0);
  BOOST_TEST(max_abs_diff(tapegrad::max(a, 0), xt::amax(xa, {0})) == 0.0);
  BOOST_TEST(max_abs_diff(tapegrad::max(a, -1), xt::amax(xa, {2})) == 0.0);
  BOOST_TEST(max_abs_diff(tapegrad::max(a, 1, true), xt::amax(xa, {1}, xt::keep_dims)) == 0.0);
  xt::xarray<double> rows = xt::sum(xa, {0, 2});
  rows.reshape({3, 1});
  BOOST_TEST(max_abs_diff(sum_to(a, {3, 1}), rows) < 1e-14);
  Tensor s = scalar(2.5, DType::f64);
  BOOST_TEST(sum(s).item() == 2.5);
  BOOST_TEST(tapegrad::max(s).item() == 2.5);
  BOOST_TEST((sum(s).shape() == Shape{}));
  BOOST_TEST((mean(a, {0, 1, 2}, true).shape() == Shape{1, 1, 1}));
  // float32
  Tensor f = randn({4, 5}, gen);
  xt::xarray<double> xf = to_xt(f);
  BOOST_TEST(max_abs_diff(sum(f, {0}), xt::sum(xf, {0})) < 1e-5);
  BOOST_TEST(max_abs_diff(tapegrad::max(f, 1), xt::amax(xf, {1})) == 0.0);
}

BOOST_AUTO_TEST_CASE(max_gradient_goes_to_the_first_maximum) {
  Tensor x = from_values({1, 3, 3, 2, 5, 5, 5, 0}, {2, 4}, DType::f64).requires_grad_();
  backward(sum(tapegrad::max(x, 1)));
  BOOST_TEST(x.grad().to_vector() == (std::vector<double>{0, 1, 0, 0, 1, 0, 0, 0}));
  x.zero_grad();
  backward(tapegrad::max(x));
  BOOST_TEST(x.grad().to_vector() == (std::vector<double>{0, 0, 0, 0, 1, 0, 0, 0}));
  x.zero_grad();
  backward(sum(tapegrad::max(x, 0, true) * from_values({1, 2, 3, 4}, {1, 4}, DType::f64)));
  BOOST_TEST(x.grad().to_vector() == (std::vector<double>{0, 0, 0, 4, 1, 2, 3, 0}));
}

BOOST_AUTO_TEST_CASE(mean_and_sum_gradients) {
  Tensor x = parameter(ones({2, 3}, DType::f64));
  backward(sum(mean(x, {1}) * from_values({1, 2}, {2}, DType::f64)));
  const std::vector<double> third = {1. / 3, 1. / 3, 1. / 3, 2. / 3, 2. / 3, 2. / 3};
  const std::vector<double> g = x.grad().to_vector();
  for (std::size_t i = 0; i < 6; ++i) BOOST_TEST(g[i] == third[i], boost::test_tools::tolerance(1e-15));
}

BOOST_AUTO_TEST_CASE(bad_inputs_name_the_op_and_shapes) {
  Tensor a = zeros({2, 3}, DType::f64), s = scalar(1.0, DType::f64);
  expect_error([&] { sum(a, {2}); }, {"sum", "axis 2", "(2, 3)"});
  expect_error([&] { sum(a, {-3}); }, {"sum", "axis -3", "(2, 3)"});
  expect_error([&] { sum(a, {1, -1}); }, {"sum", "(1, -1)", "twice", "(2, 3)"});
  expect_error([&] { mean(a, {0, 0}, true); }, {"mean", "(0, 0)", "(2, 3)"});
  expect_error([&] { mean(a, {5}); }, {"mean", "axis 5", "(2, 3)"});
  expect_error([&] { tapegrad::max(a, 2); }, {"max", "axis 2", "(2, 3)"});
  expect_error([&] { tapegrad::max(s, 0); }, {"max", "axis 0", "()"});
  expect_error([&] { tapegrad::max(zeros({0, 3}, DType::f64)); }, {"max", "(0, 3)"});
  expect_error([&] { tapegrad::max(zeros({2, 0}, DType::f64), 1); }, {"max", "(2, 0)"});
  expect_error([&] { sum_to(a, {3, 3}); }, {"sum_to", "(3, 3)", "(2, 3)"});
  expect_error([&] { sum_to(a, {1, 2, 3}); }, {"sum_to", "(1, 2, 3)", "(2, 3)"});
}

BOOST_AUTO_TEST_SUITE_END()
