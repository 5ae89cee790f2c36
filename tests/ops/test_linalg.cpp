// Rows of the op table for ops/linalg, and matmul against xtensor-blas (an independent product).
#include <boost/test/unit_test.hpp>

#include <xtensor/xarray.hpp>
#include <xtensor/xmath.hpp>
#include <xtensor/xview.hpp>
#include <xtensor-blas/xlinalg.hpp>

#include "support/op_table.hpp"
#include "support/xt.hpp"

using namespace tapegrad;
using namespace tapegrad::test;

TAPEGRAD_OP_ROWS(linalg) {
  auto mm = [](const std::vector<Tensor>& x) { return matmul(x[0], x[1]); };
  std::vector<OpRow> rows;
  const std::vector<std::pair<std::string, std::vector<Shape>>> samples = {
      {"2-D (3,4)x(4,5)", {{3, 4}, {4, 5}}},
      {"M=1 gemv + small rank-1 loop (1,4)x(4,5)", {{1, 4}, {4, 5}}},
      {"M=1 gemv + ger, K*N > 1024 (1,80)x(80,64)", {{1, 80}, {80, 64}}},
      {"M=1 vector loops with tails (1,13)x(13,19)", {{1, 13}, {13, 19}}},
      {"M=1 N=1 (1,4)x(4,1)", {{1, 4}, {4, 1}}},
      {"K=1 outer product (3,1)x(1,4)", {{3, 1}, {1, 4}}},
      {"N=1 (3,4)x(4,1)", {{3, 4}, {4, 1}}},
      {"batched (2,3,4)x(2,4,5)", {{2, 3, 4}, {2, 4, 5}}},
      {"batched M=1 (3,1,4)x(3,4,2)", {{3, 1, 4}, {3, 4, 2}}},
      {"shared weight (2,3,4)x(4,5)", {{2, 3, 4}, {4, 5}}},
      {"shared weight B*M=1 (1,1,4)x(4,3)", {{1, 1, 4}, {4, 3}}},
  };
  for (auto& [name, shapes] : samples) rows.push_back(row("matmul").sample(name).shapes(shapes).fn(mm).second_order());
  // The same tensor on both sides: both gradient contributions land in one buffer.
  rows.push_back(row("matmul").sample("a x a (3,3)").shapes({{3, 3}})
      .fn([](const std::vector<Tensor>& x) { return matmul(x[0], x[0]); }).second_order());
  // addmm = c + a b: multi-row (gemm), one row (gemv + the small rank-1 loop, and ger), the same tensor as
  // both factors, and as addend and factor.
  auto amm = [](const std::vector<Tensor>& x) { return addmm(x[0], x[1], x[2]); };
  rows.push_back(row("addmm").sample("(3,5) + (3,4)x(4,5)").shapes({{3, 5}, {3, 4}, {4, 5}}).fn(amm).second_order());
  rows.push_back(row("addmm").sample("one row (1,5) + (1,4)x(4,5)").shapes({{1, 5}, {1, 4}, {4, 5}})
      .fn(amm).second_order());
  rows.push_back(row("addmm").sample("one row, vector loops with tails (1,19) + (1,13)x(13,19)")
      .shapes({{1, 19}, {1, 13}, {13, 19}}).fn(amm).second_order());
  rows.push_back(row("addmm").sample("one row, K*N > 1024 (1,64) + (1,80)x(80,64)").shapes({{1, 64}, {1, 80}, {80, 64}})
      .fn(amm).second_order());
  rows.push_back(row("addmm").sample("K=0 (2,3) + (2,0)x(0,3)").shapes({{2, 3}, {2, 0}, {0, 3}})
      .fn(amm).second_order());
  rows.push_back(row("addmm").sample("a x a + c (3,3)").shapes({{3, 3}, {3, 3}})
      .fn([](const std::vector<Tensor>& x) { return addmm(x[0], x[1], x[1]); }).second_order());
  rows.push_back(row("addmm").sample("c x c + c (3,3)").shapes({{3, 3}})
      .fn([](const std::vector<Tensor>& x) { return addmm(x[0], x[0], x[0]); }).second_order());
  // linear = x W + b over the last axis: 2-D (gemm), one row (the loops, and gemv with a deferred dW),
  // 3-D and 1-D x, I = 0, x used as its own weight.
  auto lin = [](const std::vector<Tensor>& x) { return linear(x[0], x[1], x[2]); };
  const std::vector<std::pair<std::string, std::vector<Shape>>> linear_samples = {
      {"(3,4)W(4,5)+b", {{3, 4}, {4, 5}, {5}}},
      {"one row (1,13)W(13,19)+b", {{1, 13}, {13, 19}, {19}}},
      {"one row, K*N > 1024 (1,80)W(80,64)+b", {{1, 80}, {80, 64}, {64}}},
      {"3-D x (2,3,4)W(4,2)+b", {{2, 3, 4}, {4, 2}, {2}}},
      {"1-D x (4)W(4,3)+b", {{4}, {4, 3}, {3}}},
      {"I=0 (2,0)W(0,3)+b", {{2, 0}, {0, 3}, {3}}},
  };
  for (auto& [name, shapes] : linear_samples)
    rows.push_back(row("linear").sample(name).shapes(shapes).fn(lin).second_order());
  rows.push_back(row("linear").sample("x as its own weight (3,3)").shapes({{3, 3}, {3}})
      .fn([](const std::vector<Tensor>& x) { return linear(x[0], x[0], x[1]); }).second_order());
  // A constant operand: only the other one gets a gradient.
  rows.push_back(row("matmul").sample("constant weight (2,3)x(3,4)").shapes({{2, 3}, {3, 4}}).constant_input(1)
      .fn(mm).second_order());
  return rows;
}

namespace {

xt::xarray<double> dot2(const xt::xarray<double>& a, const xt::xarray<double>& b) { return xt::linalg::dot(a, b); }

// Reference product for every supported layout, built from 2-D xtensor-blas products.
xt::xarray<double> reference(const xt::xarray<double>& a, const xt::xarray<double>& b) {
  if (a.dimension() == 2) return dot2(a, b);
  const std::size_t bs = a.shape()[0], m = a.shape()[1], k = a.shape()[2];
  if (b.dimension() == 2) {
    xt::xarray<double> a2 = xt::reshape_view(a, {bs * m, k});
    xt::xarray<double> r = dot2(a2, b);
    return xt::xarray<double>(xt::reshape_view(r, {bs, m, b.shape()[1]}));
  }
  xt::xarray<double> out = xt::zeros<double>({bs, m, b.shape()[2]});
  for (std::size_t t = 0; t < bs; ++t) {
    xt::xarray<double> at = xt::view(a, t), bt = xt::view(b, t);
    xt::view(out, t) = dot2(at, bt);
  }
  return out;
}

xt::xarray<double> swap_last(const xt::xarray<double>& x) {
  if (x.dimension() == 2) return xt::transpose(x);
  return xt::transpose(x, {0, 2, 1});
}

const std::vector<std::pair<Shape, Shape>> layouts = {
    {{3, 4}, {4, 5}}, {{1, 4}, {4, 5}}, {{1, 80}, {80, 64}}, {{1, 7}, {7, 1}}, {{3, 1}, {1, 4}}, {{3, 4}, {4, 1}}, {{6, 5}, {5, 6}},
    {{2, 3, 4}, {2, 4, 5}}, {{3, 1, 4}, {3, 4, 2}}, {{2, 3, 4}, {4, 5}}, {{1, 1, 4}, {4, 3}}, {{4, 2, 3}, {3, 1}}};

}  // namespace

BOOST_AUTO_TEST_SUITE(linalg)

BOOST_AUTO_TEST_CASE(matmul_float64_matches_xtensor_blas) {
  Generator gen(21);
  for (const auto& [sa, sb] : layouts) {
    BOOST_TEST_CONTEXT("matmul " << sa.str() << " x " << sb.str()) {
      Tensor a = randn(sa, gen, 1.0, DType::f64), b = randn(sb, gen, 1.0, DType::f64);
      const xt::xarray<double> ref = reference(to_xt(a), to_xt(b));
      BOOST_TEST(max_abs_diff(matmul(a, b), ref) < 1e-13);
      // Recording or not, the same values.
      Tape::Scope scope;
      Tensor pa = parameter(a.clone());
      BOOST_TEST(max_abs_diff(matmul(pa, b), ref) < 1e-13);
    }
  }
}

BOOST_AUTO_TEST_CASE(matmul_float32_within_1e5) {
  Generator gen(22);
  for (const auto& [sa, sb] : layouts) {
    BOOST_TEST_CONTEXT("matmul " << sa.str() << " x " << sb.str()) {
      Tensor a = randn(sa, gen, 1.0, DType::f64), b = randn(sb, gen, 1.0, DType::f64);
      Tensor y = matmul(a.to(DType::f32), b.to(DType::f32));
      BOOST_TEST((y.dtype() == DType::f32));
      // The float64 reference of the float32-rounded inputs: only the product's rounding differs.
      const xt::xarray<double> ref = reference(to_xt(a.to(DType::f32)), to_xt(b.to(DType::f32)));
      BOOST_TEST(max_abs_diff(y, ref) < 1e-5);
    }
  }
}

// Backward against dA = dC B^T, dB = A^T dC (summed over the batch for a shared weight), in both
// dtypes, and accumulating: a second backward adds the same gradient again (beta = 1).
BOOST_AUTO_TEST_CASE(matmul_backward_matches_formulas_and_accumulates) {
  Generator gen(23);
  for (DType dt : {DType::f64, DType::f32}) {
    const double tol = dt == DType::f64 ? 1e-12 : 1e-5;
    for (const auto& [sa, sb] : layouts) {
      BOOST_TEST_CONTEXT("matmul " << sa.str() << " x " << sb.str() << " " << dtype_name(dt)) {
        Tensor a = parameter(randn(sa, gen, 1.0, dt)), b = parameter(randn(sb, gen, 1.0, dt));
        Tensor y = matmul(a, b);
        Tensor seed = randn(y.shape(), gen, 1.0, dt);
        const xt::xarray<double> xa = to_xt(a), xb = to_xt(b), g = to_xt(seed);
        xt::xarray<double> ga, gb;
        if (sa.rank() == 3 && sb.rank() == 2) {
          const std::size_t rows = sa[0] * sa[1];
          xt::xarray<double> a2 = xt::reshape_view(xa, {rows, sa[2]}), g2 = xt::reshape_view(g, {rows, sb[1]});
          ga = xt::reshape_view(xt::xarray<double>(dot2(g2, xt::transpose(xb))), {sa[0], sa[1], sa[2]});
          gb = dot2(xt::transpose(a2), g2);
        } else {
          ga = reference(g, swap_last(xb));
          gb = reference(swap_last(xa), g);
        }
        backward(y, seed);
        BOOST_TEST(max_abs_diff(a.grad(), ga) < tol);
        BOOST_TEST(max_abs_diff(b.grad(), gb) < tol);
        backward(matmul(a, b), seed);
        BOOST_TEST(max_abs_diff(a.grad(), 2.0 * ga) < 2 * tol);
        BOOST_TEST(max_abs_diff(b.grad(), 2.0 * gb) < 2 * tol);
      }
    }
  }
}

BOOST_AUTO_TEST_CASE(one_node_per_matmul) {
  Tape::Scope scope;
  Generator gen(24);
  Tensor a = parameter(randn({2, 3, 4}, gen, 1.0, DType::f64)), b = parameter(randn({2, 4, 5}, gen, 1.0, DType::f64));
  matmul(a, b);
  BOOST_TEST(scope.tape().num_nodes() == 1u);
}

BOOST_AUTO_TEST_CASE(empty_inner_dimension_gives_zeros) {
  Tensor a = parameter(zeros({2, 0}, DType::f64)), b = parameter(zeros({0, 3}, DType::f64));
  Tensor y = matmul(a, b);
  BOOST_TEST(max_abs_diff(y, xt::xarray<double>(xt::zeros<double>({2, 3}))) == 0.0);
  backward(y, ones({2, 3}, DType::f64));
  BOOST_TEST(a.grad().numel() == 0u);
  BOOST_TEST(b.grad().numel() == 0u);
}

BOOST_AUTO_TEST_CASE(bad_inputs_name_the_op_and_shapes) {
  auto z = [](Shape s, DType d = DType::f64) { return zeros(s, d); };
  expect_error([&] { matmul(z({3}), z({3, 2})); }, {"matmul", "(3,)", "(3, 2)"});
  expect_error([&] { matmul(z({2, 3}), z({4, 5})); }, {"matmul", "(2, 3)", "(4, 5)", "inner"});
  expect_error([&] { matmul(z({2, 3, 4}), z({3, 4, 5})); }, {"matmul", "(2, 3, 4)", "(3, 4, 5)", "batch"});
  expect_error([&] { matmul(z({2, 3, 4}), z({2, 5, 6})); }, {"matmul", "(2, 3, 4)", "(2, 5, 6)"});
  expect_error([&] { matmul(z({3, 4}), z({2, 4, 5})); }, {"matmul", "(3, 4)", "(2, 4, 5)"});
  expect_error([&] { matmul(z({2, 2, 3, 4}), z({4, 5})); }, {"matmul", "(2, 2, 3, 4)", "(4, 5)"});
  expect_error([&] { matmul(z({}), z({})); }, {"matmul", "()"});
  expect_error([&] { matmul(z({2, 3}), z({3, 4}, DType::f32)); }, {"matmul", "(2, 3)", "(3, 4)", "float64", "float32"});
  expect_error([&] { matmul(Tensor(), z({3, 4})); }, {"matmul", "undefined"});
  expect_error([&] { addmm(z({3, 4}), z({3, 4}), z({4, 5})); }, {"addmm", "c (3, 4)", "a (3, 4)", "b (4, 5)"});
  expect_error([&] { addmm(z({5}), z({3, 4}), z({4, 5})); }, {"addmm", "c (5,)"});
  expect_error([&] { addmm(z({3, 5}), z({3, 4}), z({3, 5})); }, {"addmm", "a (3, 4)", "b (3, 5)"});
  expect_error([&] { addmm(z({3, 5}), z({2, 3, 4}), z({4, 5})); }, {"addmm", "a (2, 3, 4)"});
  expect_error([&] { addmm(z({3, 5}, DType::f32), z({3, 4}), z({4, 5})); }, {"addmm", "float"});
  expect_error([&] { addmm(Tensor(), z({3, 4}), z({4, 5})); }, {"addmm", "input 0", "undefined"});
  expect_error([&] { linear(z({2, 3}), z({4, 5}), z({5})); }, {"linear", "x (2, 3)", "W (4, 5)", "b (5,)"});
  expect_error([&] { linear(z({2, 4}), z({4, 5}), z({4})); }, {"linear", "W (4, 5)", "b (4,)"});
  expect_error([&] { linear(z({2, 4}), z({4}), z({4})); }, {"linear", "W (4,)"});
  expect_error([&] { linear(z({}), z({4, 5}), z({5})); }, {"linear", "x ()"});
  expect_error([&] { linear(z({2, 4}), z({4, 5}), z({1, 5})); }, {"linear", "b (1, 5)"});
  expect_error([&] { linear(z({2, 4}), z({4, 5}), Tensor()); }, {"linear", "b", "undefined"});
  expect_error([&] { linear(z({2, 4}, DType::f32), z({4, 5}), z({5})); }, {"linear", "float"});
}

// A weight used by many thin products (one row each, as an RNN at batch 1): its gradient is deferred to
// one GEMM over all the rows at the end of the sweep. It must equal the sum of the per-product gradients,
// through backward() and through grad(), with matmul and addmm mixed, and with an anomaly check on (where
// nothing is deferred).
BOOST_AUTO_TEST_CASE(deferred_weight_gradient_equals_the_sum) {
  Generator gen(10);
  const std::size_t k = 80, n = 64, steps = 5;  // k * n > 1024: the deferred path
  Tensor W = parameter(randn({k, n}, gen, 0.1, DType::f64));
  std::vector<Tensor> a, r;
  for (std::size_t t = 0; t < steps; ++t) {
    a.push_back(randn({1, k}, gen, 1.0, DType::f64));
    r.push_back(randn({1, n}, gen, 1.0, DType::f64));
  }
  auto loss = [&] {
    Tensor l = sum(matmul(a[0], W) * r[0]);
    for (std::size_t t = 1; t < steps; ++t)
      l = l + sum((t % 2 ? addmm(r[t], a[t], W) : matmul(a[t], W)) * r[t]);
    return l;
  };
  // d loss / dW = sum_t a_t^T r_t
  xt::xarray<double> want = xt::zeros<double>({k, n});
  for (std::size_t t = 0; t < steps; ++t) want += dot2(xt::transpose(to_xt(a[t])), to_xt(r[t]));
  backward(loss());
  BOOST_TEST(max_abs_diff(W.grad(), want) < 1e-12);
  const Tensor g = grad(loss(), {W})[0];
  BOOST_TEST(max_abs_diff(g, want) < 1e-12);
  W.zero_grad();
  {
    DetectAnomaly anomaly;
    backward(loss());
  }
  BOOST_TEST(max_abs_diff(W.grad(), want) < 1e-12);
}

BOOST_AUTO_TEST_CASE(addmm_equals_add_of_matmul) {
  Generator gen(9);
  for (std::size_t m : {1, 4}) {
    Tensor c = randn({m, 6}, gen, 1.0, DType::f64), a = randn({m, 5}, gen, 1.0, DType::f64),
           b = randn({5, 6}, gen, 1.0, DType::f64);
    BOOST_TEST(max_abs_diff(addmm(c, a, b), to_xt(c + matmul(a, b))) < 1e-14);
  }
}

// linear is x W + b in one node: the same values as the composed form, at every rank, one row or many.
BOOST_AUTO_TEST_CASE(linear_equals_matmul_plus_bias) {
  Generator gen(11);
  for (const Shape& xs : {Shape{1, 5}, Shape{4, 5}, Shape{2, 3, 5}, Shape{5}}) {
    BOOST_TEST_CONTEXT("x " << xs.str()) {
      Tensor x = randn(xs, gen, 1.0, DType::f64), W = randn({5, 6}, gen, 1.0, DType::f64),
             b = randn({6}, gen, 1.0, DType::f64);
      Shape flat{xs.numel() / 5, 5}, out(xs.begin(), xs.end() - 1);
      out.push_back(6);
      const Tensor want = reshape(matmul(reshape(x, flat), W), out) + b;
      BOOST_TEST(linear(x, W, b).shape() == out);
      BOOST_TEST(max_abs_diff(linear(x, W, b), to_xt(want)) < 1e-14);
    }
  }
}

BOOST_AUTO_TEST_SUITE_END()
