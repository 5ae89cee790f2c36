// Rows of the op table for ops/norm (layer_norm), its values against an xtensor reference and the composed
// form, float32, NoGrad, and bad inputs.
#include <boost/test/unit_test.hpp>

#include <cmath>
#include <xtensor/xarray.hpp>
#include <xtensor/xmath.hpp>
#include <xtensor/xview.hpp>

#include "support/op_table.hpp"
#include "support/xt.hpp"

using namespace tapegrad;
using namespace tapegrad::test;

TAPEGRAD_OP_ROWS(norm) {
  std::vector<OpRow> rows;
  auto ln = [](double eps) {
    return [eps](const std::vector<Tensor>& x) { return layer_norm(x[0], x[1], x[2], eps); };
  };
  // (rows..., E): several rows, rank 1, rank 3, E past 8 lanes, E = 1 (xhat is 0: y = bias).
  for (const Shape& s : {Shape{3, 4}, Shape{5}, Shape{2, 3, 6}, Shape{2, 19}, Shape{3, 1}}) {
    const Shape e{s[s.rank() - 1]};
    rows.push_back(row("layer_norm").sample("x " + s.str()).shapes({s, e, e}).fn(ln(1e-5)).second_order());
  }
  rows.push_back(row("layer_norm").sample("(4,3) eps 0.5").shapes({{4, 3}, {3}, {3}}).fn(ln(0.5)).second_order());
  // x with a large mean: the two-pass variance keeps its precision.
  rows.push_back(row("layer_norm").sample("(3,5) x around 100")
      .inputs([](Generator& g) {
        return std::vector<Tensor>{randn({3, 5}, g, 1.0, DType::f64) + 100.0, randn({5}, g, 1.0, DType::f64),
                                   randn({5}, g, 1.0, DType::f64)};
      })
      .fn(ln(1e-5)).second_order());
  rows.push_back(row("layer_norm").sample("(2,4) constant weight and bias").shapes({{2, 4}, {4}, {4}})
      .constant_input(1).constant_input(2).fn(ln(1e-5)).second_order());
  // One tensor as x and weight: both gradient contributions land in one buffer.
  rows.push_back(row("layer_norm").sample("(4,) x and weight the same tensor").shapes({{4}, {4}})
      .fn([](const std::vector<Tensor>& x) { return layer_norm(x[0], x[0], x[1]); }).second_order());
  // On a recorded input (tanh of x): the create_graph backward's gradients flow on into tanh.
  rows.push_back(row("layer_norm").sample("layer_norm(tanh(x)) * x").shapes({{2, 5}, {5}, {5}})
      .fn([](const std::vector<Tensor>& x) { return layer_norm(tanh(x[0]), x[1], x[2]) * x[0]; }).second_order());
  return rows;
}

namespace {

// y = (x - mean) / sqrt(var + eps) * w + b over the last axis of a 2-D x.
xt::xarray<double> ref_layer_norm(const xt::xarray<double>& x, const xt::xarray<double>& w, const xt::xarray<double>& b,
                                  double eps) {
  const std::size_t E = x.shape()[1];
  xt::xarray<double> mu = xt::sum(x, {1}, xt::keep_dims) / double(E);
  xt::xarray<double> xc = x - mu;
  xt::xarray<double> var = xt::sum(xc * xc, {1}, xt::keep_dims) / double(E);
  return xc / xt::sqrt(var + eps) * w + b;
}

}  // namespace

BOOST_AUTO_TEST_SUITE(norm)

BOOST_AUTO_TEST_CASE(layer_norm_matches_reference_and_composed_form) {
  Generator g(41);
  Tensor x = randn({4, 7}, g, 3.0, DType::f64).requires_grad_(), w = randn({7}, g, 1.0, DType::f64).requires_grad_();
  Tensor b = randn({7}, g, 1.0, DType::f64).requires_grad_();
  const auto want = ref_layer_norm(to_xt(x), to_xt(w), to_xt(b), 1e-5);
  Tensor y = layer_norm(x, w, b);
  BOOST_TEST(max_abs_diff(y, want) < 1e-14);
  // Each row of xhat has mean 0 and variance var / (var + eps) ~ 1.
  const Tensor yh = layer_norm(x, ones({7}, DType::f64), zeros({7}, DType::f64));
  const auto h = to_xt(yh);
  for (std::size_t r = 0; r < 4; ++r) {
    auto row_r = xt::view(h, r, xt::all());
    BOOST_TEST(std::abs(xt::mean(row_r)()) < 1e-14);
    BOOST_TEST(std::abs(xt::mean(row_r * row_r)() - 1.0) < 1e-5);
  }
  // Gradients equal those of the composed form.
  Tensor wout = randn({4, 7}, g, 1.0, DType::f64);
  const auto g1 = grad(sum(layer_norm(x, w, b) * wout), {x, w, b});
  const auto g2 = grad(sum(layer_norm_composed(x, w, b) * wout), {x, w, b});
  for (std::size_t k = 0; k < 3; ++k) BOOST_TEST(max_abs_diff(g1[k], to_xt(g2[k])) < 1e-13, "input " << k);
  // float32, and a rank-3 input (rows are every leading index).
  BOOST_TEST(max_abs_diff(layer_norm(x.to(DType::f32), w.to(DType::f32), b.to(DType::f32)), want) < 2e-5);
  Tensor x3 = reshape(x.detach(), {2, 2, 7});
  BOOST_TEST(max_abs_diff(reshape(layer_norm(x3, w, b), {4, 7}), want) < 1e-14);
}

BOOST_AUTO_TEST_CASE(layer_norm_no_grad_forward_matches) {
  Generator g(42);
  Tensor x = randn({3, 5}, g, 1.0, DType::f64).requires_grad_(), w = randn({5}, g, 1.0, DType::f64);
  Tensor b = randn({5}, g, 1.0, DType::f64);
  const auto want = to_xt(layer_norm(x, w, b));
  NoGrad no_grad;
  Tensor y = layer_norm(x, w, b);
  BOOST_TEST(!y.requires_grad());
  BOOST_TEST(max_abs_diff(y, want) == 0.0);
}

BOOST_AUTO_TEST_CASE(layer_norm_bad_inputs_name_the_op_and_shapes) {
  const Tensor x = zeros({2, 4}, DType::f64), w = zeros({4}, DType::f64);
  expect_error([&] { layer_norm(x, zeros({3}, DType::f64), w); }, {"layer_norm", "weight", "(4,)", "(3,)", "(2, 4)"});
  expect_error([&] { layer_norm(x, w, zeros({4, 1}, DType::f64)); }, {"layer_norm", "bias", "(4, 1)", "(2, 4)"});
  expect_error([&] { layer_norm(x, Tensor(), w); }, {"layer_norm", "weight", "(undefined)"});
  expect_error([&] { layer_norm(scalar(1.0, DType::f64), w, w); }, {"layer_norm", "(..., E)", "()"});
  expect_error([&] { layer_norm(zeros({3, 0}, DType::f64), zeros({0}, DType::f64), zeros({0}, DType::f64)); },
               {"layer_norm", "E >= 1", "(3, 0)"});
  expect_error([&] { layer_norm(Tensor(), w, w); }, {"layer_norm", "(undefined)"});
  expect_error([&] { layer_norm(x, zeros({4}), w); }, {"layer_norm", "weight", "float32", "float64", "(2, 4)"});
  expect_error([&] { layer_norm(x, w, w, -1.0); }, {"layer_norm", "eps", "(2, 4)"});
}

BOOST_AUTO_TEST_SUITE_END()
