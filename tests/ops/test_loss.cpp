// Rows of the op table for ops/loss, forward values against xtensor references, stability, bad inputs.
#include <boost/test/unit_test.hpp>

#include <cmath>
#include <xtensor/xarray.hpp>
#include <xtensor/xmath.hpp>

#include "support/op_table.hpp"
#include "support/xt.hpp"

using namespace tapegrad;
using namespace tapegrad::test;

TAPEGRAD_OP_ROWS(loss) {
  std::vector<OpRow> rows;
  auto mse = [](Reduction r) { return [r](const std::vector<Tensor>& x) { return mse_loss(x[0], x[1], r); }; };
  rows.push_back(row("mse_loss").sample("mean (3,4)").shapes({{3, 4}, {3, 4}}).fn(mse(Reduction::mean)).second_order());
  rows.push_back(row("mse_loss").sample("sum (2,3) constant target").shapes({{2, 3}, {2, 3}}).constant_input(1)
      .fn(mse(Reduction::sum)).second_order());
  rows.push_back(row("mse_loss").sample("half_sum (5,)").shapes({{5}, {5}})
      .fn(mse(Reduction::half_sum)).second_order());
  rows.push_back(row("mse_loss").sample("mean rank 0").shapes({{}, {}}).fn(mse(Reduction::mean)).second_order());
  rows.push_back(row("mse_loss").sample("half_sum (1,4,1)").shapes({{1, 4, 1}, {1, 4, 1}})
      .fn(mse(Reduction::half_sum)).second_order());

  // Targets are an Index captured by the row; only the logits are an input.
  auto sce = [](Index t) { return [t](const std::vector<Tensor>& x) { return softmax_cross_entropy(x[0], t); }; };
  rows.push_back(row("softmax_cross_entropy").sample("(4,5)").shapes({{4, 5}})
      .fn(sce(Index({1, 4, 0, 1}))).second_order());
  rows.push_back(row("softmax_cross_entropy").sample("(6,7) repeated targets").shapes({{6, 7}})
      .fn(sce(Index({6, 6, 0, 3, 3, 6}))).second_order());
  rows.push_back(row("softmax_cross_entropy").sample("(2,19) rows past 8 lanes").shapes({{2, 19}})
      .fn(sce(Index({18, 5}))).second_order());
  rows.push_back(row("softmax_cross_entropy").sample("(1,3) one row").shapes({{1, 3}})
      .fn(sce(Index({2}))).second_order());
  rows.push_back(row("softmax_cross_entropy").sample("(3,1) one class").shapes({{3, 1}})
      .fn(sce(Index({0, 0, 0}))).second_order());
  rows.push_back(row("softmax_cross_entropy").sample("(3,4) wide logits N(0, 25)")
      .inputs([](Generator& g) { return std::vector<Tensor>{randn({3, 4}, g, 5.0, DType::f64)}; })
      .fn(sce(Index({3, 0, 2}))).second_order());

  // Logits N(0, 4), targets in (0, 1): soft labels, constant or differentiable.
  auto bce_inputs = [](Shape s) {
    return [s](Generator& g) {
      return std::vector<Tensor>{randn(s, g, 2.0, DType::f64), uniform(s, 0.0, 1.0, g, DType::f64)};
    };
  };
  auto bce = [](const std::vector<Tensor>& x) { return binary_cross_entropy_with_logits(x[0], x[1]); };
  rows.push_back(row("binary_cross_entropy_with_logits").sample("(3,4) constant targets").inputs(bce_inputs({3, 4}))
      .constant_input(1).fn(bce).second_order());
  rows.push_back(row("binary_cross_entropy_with_logits").sample("(5,) both differentiable").inputs(bce_inputs({5}))
      .fn(bce).second_order());
  rows.push_back(row("binary_cross_entropy_with_logits").sample("rank 0").inputs(bce_inputs({}))
      .fn(bce).second_order());
  rows.push_back(row("binary_cross_entropy_with_logits").sample("(2,1,3)").inputs(bce_inputs({2, 1, 3}))
      .constant_input(1).fn(bce).second_order());
  return rows;
}

namespace {

xt::xarray<double> ref_log_softmax_rows(const xt::xarray<double>& x) {
  xt::xarray<double> m = xt::amax(x, {1}, xt::keep_dims);
  xt::xarray<double> s = xt::sum(xt::exp(x - m), {1}, xt::keep_dims);
  return x - m - xt::log(s);
}

}  // namespace

BOOST_AUTO_TEST_SUITE(loss)

BOOST_AUTO_TEST_CASE(mse_matches_reference_and_both_inputs_get_gradients) {
  Generator gen(31);
  Tensor y = randn({3, 4}, gen, 1.0, DType::f64).requires_grad_(), d = randn({3, 4}, gen, 1.0, DType::f64).requires_grad_();
  xt::xarray<double> r = to_xt(y) - to_xt(d);
  const double ss = xt::sum(r * r)();
  BOOST_TEST(mse_loss(y, d).rank() == 0u);
  BOOST_TEST(mse_loss(y, d, Reduction::mean).item() == ss / 12.0, boost::test_tools::tolerance(1e-15));
  BOOST_TEST(mse_loss(y, d, Reduction::sum).item() == ss, boost::test_tools::tolerance(1e-15));
  BOOST_TEST(mse_loss(y, d, Reduction::half_sum).item() == 0.5 * ss, boost::test_tools::tolerance(1e-15));
  // E = 1/2 sum (d - y)^2: dE/dy = y - d, dE/dd = d - y.
  auto g = grad(mse_loss(y, d, Reduction::half_sum), {y, d});
  BOOST_TEST(max_abs_diff(g[0], r) < 1e-15);
  BOOST_TEST(max_abs_diff(g[1], -r) < 1e-15);
  auto gm = grad(mse_loss(y, d), {y});
  BOOST_TEST(max_abs_diff(gm[0], r * (2.0 / 12.0)) < 1e-15);
  // float32
  Tensor yf = y.to(DType::f32), df = d.to(DType::f32);
  BOOST_TEST(mse_loss(yf, df).item() == ss / 12.0, boost::test_tools::tolerance(1e-6));
}

BOOST_AUTO_TEST_CASE(softmax_cross_entropy_matches_reference) {
  Generator gen(32);
  Tensor x = randn({5, 7}, gen, 2.0, DType::f64).requires_grad_();
  const Index t({3, 0, 6, 3, 1});
  xt::xarray<double> ls = ref_log_softmax_rows(to_xt(x));
  double ref = 0;
  for (std::size_t n = 0; n < 5; ++n) ref -= ls(n, static_cast<std::size_t>(t.values[n]));
  ref /= 5.0;
  Tensor l = softmax_cross_entropy(x, t);
  BOOST_TEST(l.rank() == 0u);
  BOOST_TEST(l.item() == ref, boost::test_tools::tolerance(1e-14));
  // dL/dx = (softmax - onehot) / N
  xt::xarray<double> expect = xt::exp(ls);
  for (std::size_t n = 0; n < 5; ++n) expect(n, static_cast<std::size_t>(t.values[n])) -= 1.0;
  expect /= 5.0;
  BOOST_TEST(max_abs_diff(grad(l, {x})[0], expect) < 1e-15);
  // Agrees with the composition -mean(log_softmax[t]).
  BOOST_TEST(softmax_cross_entropy(x.to(DType::f32), t).item() == ref, boost::test_tools::tolerance(1e-6));
}

BOOST_AUTO_TEST_CASE(softmax_cross_entropy_stable_for_huge_logits) {
  // Row 0: the target is far below the max (loss ~ 2e4); row 1: the target is the max by 1e4 (loss ~ 0).
  Tensor x = from_values({1e4, -1e4, 0, 0, 1e4, 0}, {2, 3}, DType::f64).requires_grad_();
  Tensor l = softmax_cross_entropy(x, Index({1, 1}));
  BOOST_TEST(std::isfinite(l.item()));
  BOOST_TEST(l.item() == (2e4 + 0.0) / 2.0, boost::test_tools::tolerance(1e-12));
  const auto g = grad(l, {x})[0].to_vector();
  const std::vector<double> expect = {0.5, -0.5, 0, 0, 0, 0};
  for (std::size_t i = 0; i < 6; ++i) BOOST_TEST(g[i] == expect[i], boost::test_tools::tolerance(1e-12));
  Tensor xf = from_values({100, -100, 0}, {1, 3}, DType::f32);
  BOOST_TEST(softmax_cross_entropy(xf, Index({1})).item() == 200.0, boost::test_tools::tolerance(1e-6));
}

BOOST_AUTO_TEST_CASE(bce_with_logits_matches_reference_and_is_stable) {
  Generator gen(33);
  Tensor x = randn({4, 3}, gen, 2.0, DType::f64).requires_grad_();
  Tensor t = uniform({4, 3}, 0.0, 1.0, gen, DType::f64);
  xt::xarray<double> xx = to_xt(x), xt_ = to_xt(t);
  xt::xarray<double> sg = 1.0 / (1.0 + xt::exp(-xx));
  const double ref = xt::mean(-(xt_ * xt::log(sg) + (1.0 - xt_) * xt::log(1.0 - sg)))();
  Tensor l = binary_cross_entropy_with_logits(x, t);
  BOOST_TEST(l.rank() == 0u);
  BOOST_TEST(l.item() == ref, boost::test_tools::tolerance(1e-13));
  BOOST_TEST(max_abs_diff(grad(l, {x})[0], (sg - xt_) / 12.0) < 1e-15);
  // |x| = 1000: log(1 + e^1000) would overflow; the stable form gives exact values.
  Tensor xe = from_values({1000, -1000, 1000, -1000}, {4}, DType::f64).requires_grad_();
  Tensor te = from_values({1, 1, 0, 0}, {4}, DType::f64);
  Tensor le = binary_cross_entropy_with_logits(xe, te);
  BOOST_TEST(le.item() == (0.0 + 1000.0 + 1000.0 + 0.0) / 4.0);
  const auto g = grad(le, {xe})[0].to_vector();
  const std::vector<double> expect = {0.0, -0.25, 0.25, 0.0};
  for (std::size_t i = 0; i < 4; ++i) BOOST_TEST(g[i] == expect[i]);
}

BOOST_AUTO_TEST_CASE(bad_inputs_name_the_op_and_shapes) {
  Tensor a = zeros({2, 3}, DType::f64), b = zeros({3}, DType::f64), c = zeros({3, 2}, DType::f64);
  expect_error([&] { mse_loss(a, b); }, {"mse_loss", "(2, 3)", "(3,)"});  // would broadcast: refused
  expect_error([&] { mse_loss(a, c); }, {"mse_loss", "(2, 3)", "(3, 2)"});
  expect_error([&] { mse_loss(a, zeros({2, 3}, DType::f32)); }, {"mse_loss", "float64", "float32"});
  expect_error([&] { mse_loss(zeros({0}, DType::f64), zeros({0}, DType::f64)); }, {"mse_loss", "empty", "(0,)"});
  expect_error([&] { mse_loss(a, Tensor()); }, {"mse_loss", "undefined"});
  Tensor logits = zeros({3, 4}, DType::f64);
  expect_error([&] { softmax_cross_entropy(zeros({4}, DType::f64), Index({1})); }, {"softmax_cross_entropy", "(N, C)", "(4,)"});
  expect_error([&] { softmax_cross_entropy(logits, Index({1, 2})); }, {"softmax_cross_entropy", "2 targets", "(3, 4)", "expected 3"});
  expect_error([&] { softmax_cross_entropy(logits, Index({0, 4, 1})); }, {"softmax_cross_entropy", "id 4", "row 1", "[0, 4)", "(3, 4)"});
  expect_error([&] { softmax_cross_entropy(logits, Index({0, 1, -1})); }, {"softmax_cross_entropy", "id -1", "row 2", "(3, 4)"});
  expect_error([&] { softmax_cross_entropy(logits, Index({0, 1, 2}, Shape{1, 2})); }, {"softmax_cross_entropy", "(1, 2)", "(3, 4)"});
  expect_error([&] { softmax_cross_entropy(zeros({0, 4}, DType::f64), Index(std::vector<std::int64_t>{})); }, {"softmax_cross_entropy", "empty", "(0, 4)"});
  expect_error([&] { binary_cross_entropy_with_logits(a, b); }, {"binary_cross_entropy_with_logits", "(2, 3)", "(3,)"});
  expect_error([&] { binary_cross_entropy_with_logits(a, zeros({2, 3}, DType::f32)); },
               {"binary_cross_entropy_with_logits", "float64", "float32"});
}

BOOST_AUTO_TEST_SUITE_END()
