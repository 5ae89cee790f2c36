// Rows of the op table for ops/activation, forward values against xtensor, stability at large |x|.
#include <boost/test/unit_test.hpp>

#include <cmath>
#include <xtensor/xarray.hpp>
#include <xtensor/xmath.hpp>
#include <xtensor/xview.hpp>

#include "support/op_table.hpp"
#include "support/xt.hpp"

using namespace tapegrad;
using namespace tapegrad::test;

TAPEGRAD_OP_ROWS(activation) {
  std::vector<OpRow> rows;
  auto un = [](Tensor (*op)(const Tensor&)) { return [op](const std::vector<Tensor>& x) { return op(x[0]); }; };
  for (const Shape& s : {Shape{2, 3}, Shape{}, Shape{1, 4, 1}, Shape{5}}) {
    const std::string n = "shape " + s.str();
    rows.push_back(row("sigmoid").sample(n).shapes({s}).fn(un(sigmoid)).second_order());
    rows.push_back(row("tanh").sample(n).shapes({s}).fn(un(tapegrad::tanh)).second_order());
    rows.push_back(row("relu").sample(n).shapes({s}).domain(Domain::away_from_kinks).fn(un(relu)).second_order());
    rows.push_back(row("softplus").sample(n).shapes({s}).fn(un(softplus)).second_order());
    rows.push_back(row("log_sigmoid").sample(n).shapes({s}).fn(un(log_sigmoid)).second_order());
  }
  // Larger |x|: the stable branches (e^-|x| small) of softplus / log_sigmoid / sigmoid.
  auto wide = [](Generator& g) { return std::vector<Tensor>{randn({3, 4}, g, 6.0, DType::f64)}; };
  rows.push_back(row("softplus").sample("wide N(0, 36) (3,4)").inputs(wide).fn(un(softplus)).second_order());
  rows.push_back(row("log_sigmoid").sample("wide N(0, 36) (3,4)").inputs(wide).fn(un(log_sigmoid)).second_order());
  rows.push_back(row("sigmoid").sample("wide N(0, 36) (3,4)").inputs(wide).fn(un(sigmoid)).second_order());
  // softmax / log_softmax over the last axis, the first axis, a middle axis, size-1 axes, rank 1.
  const std::vector<std::tuple<std::string, Shape, long>> samples = {
      {"(3,4) axis -1", {3, 4}, -1},   {"(3,4) axis 0", {3, 4}, 0},    {"(2,3,4) axis 1", {2, 3, 4}, 1},
      {"(2,3,4) axis -3", {2, 3, 4}, -3}, {"(4,1) axis -1", {4, 1}, -1}, {"(1,5) axis 0", {1, 5}, 0},
      {"(6,) axis 0", {6}, 0},         {"(2,1,3) axis 2", {2, 1, 3}, 2}, {"(2,19) axis -1 (8-lane rows)", {2, 19}, -1}};
  for (const auto& [name, shape, axis] : samples) {
    const long ax = axis;
    rows.push_back(row("softmax").sample(name).shapes({shape})
        .fn([ax](const std::vector<Tensor>& x) { return softmax(x[0], ax); }).second_order());
    rows.push_back(row("log_softmax").sample(name).shapes({shape})
        .fn([ax](const std::vector<Tensor>& x) { return log_softmax(x[0], ax); }).second_order());
  }
  return rows;
}

namespace {

// Reference softmax along an axis: exp(x - max) / sum, with xtensor reductions.
xt::xarray<double> ref_softmax(const xt::xarray<double>& x, std::size_t axis) {
  xt::xarray<double> m = xt::amax(x, {axis}, xt::keep_dims);
  xt::xarray<double> e = xt::exp(x - m);
  xt::xarray<double> s = xt::sum(e, {axis}, xt::keep_dims);
  return e / s;
}

xt::xarray<double> ref_log_softmax(const xt::xarray<double>& x, std::size_t axis) {
  xt::xarray<double> m = xt::amax(x, {axis}, xt::keep_dims);
  xt::xarray<double> s = xt::sum(xt::exp(x - m), {axis}, xt::keep_dims);
  return x - m - xt::log(s);
}

}  // namespace

BOOST_AUTO_TEST_SUITE(activation)

BOOST_AUTO_TEST_CASE(forward_matches_xtensor) {
  Generator gen(21);
  Tensor a = randn({4, 5}, gen, 2.0, DType::f64);
  xt::xarray<double> xa = to_xt(a);
  BOOST_TEST(max_abs_diff(sigmoid(a), 1.0 / (1.0 + xt::exp(-xa))) < 1e-15);
  BOOST_TEST(max_abs_diff(tapegrad::tanh(a), xt::tanh(xa)) < 1e-15);
  BOOST_TEST(max_abs_diff(relu(a), xt::maximum(xa, 0.0)) == 0.0);
  BOOST_TEST(max_abs_diff(softplus(a), xt::log(1.0 + xt::exp(xa))) < 1e-14);
  BOOST_TEST(max_abs_diff(log_sigmoid(a), -xt::log(1.0 + xt::exp(-xa))) < 1e-14);
  Tensor s = scalar(0.3, DType::f64);
  BOOST_TEST(tapegrad::tanh(s).rank() == 0u);
  BOOST_TEST(tapegrad::tanh(s).item() == std::tanh(0.3), boost::test_tools::tolerance(1e-15));
}

BOOST_AUTO_TEST_CASE(softmax_matches_xtensor_on_every_axis) {
  Generator gen(22);
  Tensor x = randn({3, 4, 5}, gen, 3.0, DType::f64);
  xt::xarray<double> xx = to_xt(x);
  for (long axis : {0L, 1L, 2L, -1L, -2L}) {
    const std::size_t ax = static_cast<std::size_t>(axis < 0 ? axis + 3 : axis);
    BOOST_TEST_CONTEXT("axis " << axis) {
      BOOST_TEST(max_abs_diff(softmax(x, axis), ref_softmax(xx, ax)) < 1e-15);
      BOOST_TEST(max_abs_diff(log_softmax(x, axis), ref_log_softmax(xx, ax)) < 1e-14);
      xt::xarray<double> sums = xt::sum(to_xt(softmax(x, axis)), {ax});
      BOOST_TEST(xt::amax(xt::abs(sums - 1.0))() < 1e-15);
    }
  }
  // Rows longer than the 8 accumulator lanes, with a tail.
  Tensor w = randn({3, 37}, gen, 3.0, DType::f64);
  BOOST_TEST(max_abs_diff(softmax(w, -1), ref_softmax(to_xt(w), 1)) < 1e-15);
  BOOST_TEST(max_abs_diff(log_softmax(w, 1), ref_log_softmax(to_xt(w), 1)) < 1e-14);
}

BOOST_AUTO_TEST_CASE(softmax_stable_for_huge_logits) {
  // Logits around 1e4 overflow a naive exp; the max is subtracted, so results are finite and shift-invariant.
  Tensor x = from_values({1e4, 1e4 + 1, 1e4 - 2, -1e4, 3e4, 3e4 + 0.5}, {2, 3}, DType::f64);
  Tensor y = log_softmax(x, -1), p = softmax(x, -1);
  for (double v : y.to_vector()) BOOST_TEST(std::isfinite(v));
  for (double v : p.to_vector()) BOOST_TEST(std::isfinite(v));
  xt::xarray<double> ref = ref_log_softmax(to_xt(from_values({0, 1, -2}, {1, 3}, DType::f64)), 1);
  for (std::size_t j = 0; j < 3; ++j) BOOST_TEST(y.at({0, j}) == ref(0, j), boost::test_tools::tolerance(1e-12));
  BOOST_TEST(y.at({1, 2}) == -std::log1p(std::exp(-0.5)), boost::test_tools::tolerance(1e-12));
  BOOST_TEST(y.at({1, 0}) == -4e4 - 0.5 - std::log1p(std::exp(-0.5)), boost::test_tools::tolerance(1e-12));
  BOOST_TEST(p.at({1, 0}) == 0.0);
  // float32, with the strided (middle-axis) path too.
  Tensor xf = from_values({100, 90, 95, 80, 100, 70}, {1, 3, 2}, DType::f32);
  Tensor pf = softmax(xf, 1);
  const auto v = pf.to_vector();
  for (double e : v) BOOST_TEST(std::isfinite(e));
  BOOST_TEST(v[0] + v[2] + v[4] == 1.0, boost::test_tools::tolerance(1e-6));
  BOOST_TEST(v[1] + v[3] + v[5] == 1.0, boost::test_tools::tolerance(1e-6));
}

BOOST_AUTO_TEST_CASE(softplus_and_log_sigmoid_stable_for_large_magnitudes) {
  Tensor x = from_values({-1000, -50, 0, 50, 1000}, {5}, DType::f64).requires_grad_();
  const auto sp = softplus(x).to_vector(), ls = log_sigmoid(x).to_vector(), sg = sigmoid(x).to_vector();
  BOOST_TEST(sp[4] == 1000.0);
  BOOST_TEST(sp[0] == 0.0);
  BOOST_TEST(sp[2] == std::log(2.0), boost::test_tools::tolerance(1e-15));
  BOOST_TEST(sp[1] == std::exp(-50.0), boost::test_tools::tolerance(1e-12));  // no cancellation
  BOOST_TEST(ls[0] == -1000.0);
  BOOST_TEST(ls[4] == 0.0);
  BOOST_TEST(ls[3] == -std::exp(-50.0), boost::test_tools::tolerance(1e-12));
  BOOST_TEST(sg[0] == 0.0);
  BOOST_TEST(sg[4] == 1.0);
  // Gradients at the extremes are finite: softplus' = sigmoid(x), log_sigmoid' = sigmoid(-x).
  auto g = grad(sum(softplus(x) + log_sigmoid(x) * 2.0), {x})[0].to_vector();
  const std::vector<double> expect = {2.0, 1.0 / (1.0 + std::exp(50.0)) + 2.0 / (1.0 + std::exp(-50.0)), 1.5,
                                      1.0 / (1.0 + std::exp(-50.0)) + 2.0 / (1.0 + std::exp(50.0)), 1.0};
  for (std::size_t i = 0; i < 5; ++i) {
    BOOST_TEST(std::isfinite(g[i]));
    BOOST_TEST(g[i] == expect[i], boost::test_tools::tolerance(1e-14));
  }
  // float32 does not overflow either.
  Tensor xf = from_values({-100, 100}, {2}, DType::f32);
  BOOST_TEST(softplus(xf).at({1}) == 100.0);
  BOOST_TEST(log_sigmoid(xf).at({0}) == -100.0);
  BOOST_TEST(sigmoid(xf).at({0}) == 0.0);
}

BOOST_AUTO_TEST_CASE(float32_forward_and_backward) {
  Generator gen(23);
  Tensor x = randn({7, 9}, gen).requires_grad_();  // 63 elements: exercises vector body and tail
  BOOST_TEST((x.dtype() == DType::f32));
  const auto xv = x.to_vector();
  const auto t = tapegrad::tanh(x).to_vector(), s = sigmoid(x).to_vector();
  for (std::size_t i = 0; i < xv.size(); ++i) {
    BOOST_TEST(t[i] == std::tanh(xv[i]), boost::test_tools::tolerance(2e-6));
    BOOST_TEST(s[i] == 1.0 / (1.0 + std::exp(-xv[i])), boost::test_tools::tolerance(2e-6));
  }
  auto g = grad(sum(tapegrad::tanh(x)), {x})[0].to_vector();
  for (std::size_t i = 0; i < xv.size(); ++i) BOOST_TEST(g[i] == 1.0 - t[i] * t[i], boost::test_tools::tolerance(1e-5));
  Tensor ls = log_softmax(x, 0);
  xt::xarray<double> ref = ref_log_softmax(to_xt(x), 0);
  BOOST_TEST(max_abs_diff(ls, ref) < 1e-5);
}

BOOST_AUTO_TEST_CASE(bad_inputs_name_the_op_and_shapes) {
  Tensor a = zeros({2, 3}, DType::f64);
  expect_error([&] { softmax(a, 2); }, {"softmax", "axis 2", "(2, 3)"});
  expect_error([&] { softmax(a, -3); }, {"softmax", "axis -3", "(2, 3)"});
  expect_error([&] { log_softmax(a, 5); }, {"log_softmax", "axis 5", "(2, 3)"});
  expect_error([&] { softmax(scalar(1.0, DType::f64), -1); }, {"softmax", "()"});
  expect_error([&] { sigmoid(Tensor()); }, {"sigmoid", "undefined"});
}

BOOST_AUTO_TEST_SUITE_END()
