// Rows of the op table for ops/conv, and forward values against direct loops written here.
#include <boost/test/unit_test.hpp>

#include <xtensor/xarray.hpp>

#include "support/op_table.hpp"
#include "support/xt.hpp"

using namespace tapegrad;
using namespace tapegrad::test;

TAPEGRAD_OP_ROWS(conv) {
  std::vector<OpRow> rows;
  auto conv = [](std::size_t s, std::size_t p) {
    return [s, p](const std::vector<Tensor>& x) { return conv2d(x[0], x[1], x.size() > 2 ? x[2] : Tensor(), s, p); };
  };
  // x, w[, b]; inputs over 256 elements are checked along random directions.
  rows.push_back(row("conv2d").sample("no bias s1 p0 C=1 F=2 (2,1,5,5)*(2,1,3,3)")
      .shapes({{2, 1, 5, 5}, {2, 1, 3, 3}}).fn(conv(1, 0)));
  rows.push_back(row("conv2d").sample("bias s1 p1 C=2 F=3 (2,2,4,4)*(3,2,3,3)")
      .shapes({{2, 2, 4, 4}, {3, 2, 3, 3}, {3}}).fn(conv(1, 1)));
  rows.push_back(row("conv2d").sample("course 5x5 k3 s2 p1 C=2 F=3 (1,2,5,5)*(3,2,3,3)")
      .shapes({{1, 2, 5, 5}, {3, 2, 3, 3}, {3}}).fn(conv(2, 1)));
  rows.push_back(row("conv2d").sample("no bias s2 p0 kernel 2x3 (2,3,6,7)*(2,3,2,3)")
      .shapes({{2, 3, 6, 7}, {2, 3, 2, 3}}).fn(conv(2, 0)));
  rows.push_back(row("conv2d").sample("bias s2 p1 even side (2,2,6,6)*(2,2,3,3)")
      .shapes({{2, 2, 6, 6}, {2, 2, 3, 3}, {2}}).fn(conv(2, 1)));
  rows.push_back(row("conv2d").sample("bias s3 p2 (1,2,7,5)*(2,2,4,3)")
      .shapes({{1, 2, 7, 5}, {2, 2, 4, 3}, {2}}).fn(conv(3, 2)));
  rows.push_back(row("conv2d").sample("1x1 output (2,2,3,3)*(4,2,3,3)")
      .shapes({{2, 2, 3, 3}, {4, 2, 3, 3}, {4}}).fn(conv(1, 0)));
  rows.push_back(row("conv2d").sample("1x1 kernel (2,3,4,4)*(2,3,1,1)")
      .shapes({{2, 3, 4, 4}, {2, 3, 1, 1}, {2}}).fn(conv(1, 0)));
  rows.push_back(row("conv2d").sample("random directions (2,3,8,8)*(4,3,3,3)")
      .shapes({{2, 3, 8, 8}, {4, 3, 3, 3}, {4}}).fn(conv(1, 1)));
  rows.push_back(row("conv2d").sample("constant weight (1,2,5,5)*(2,2,3,3)")
      .shapes({{1, 2, 5, 5}, {2, 2, 3, 3}, {2}}).constant_input(1).fn(conv(2, 1)));
  auto pool = [](std::size_t k, std::size_t s) {
    return [k, s](const std::vector<Tensor>& x) { return max_pool2d(x[0], k, s); };
  };
  rows.push_back(row("max_pool2d").sample("k2 s2 (2,3,4,4)")
      .shapes({{2, 3, 4, 4}}).domain(Domain::away_from_kinks).fn(pool(2, 2)));
  rows.push_back(row("max_pool2d").sample("overlapping k3 s1 (1,2,5,5)")
      .shapes({{1, 2, 5, 5}}).domain(Domain::away_from_kinks).fn(pool(3, 1)));
  rows.push_back(row("max_pool2d").sample("k2 s2 leftover rows/cols (1,1,5,7)")
      .shapes({{1, 1, 5, 7}}).domain(Domain::away_from_kinks).fn(pool(2, 2)));
  rows.push_back(row("max_pool2d").sample("k3 s2 (2,2,7,6)")
      .shapes({{2, 2, 7, 6}}).domain(Domain::away_from_kinks).fn(pool(3, 2)));
  return rows;
}

namespace {

// Direct convolution by definition: y[n,f,i,j] = b[f] + sum_{c,u,v} w[f,c,u,v] x_padded[n,c,i*s+u,j*s+v].
xt::xarray<double> naive_conv(const xt::xarray<double>& x, const xt::xarray<double>& w, const xt::xarray<double>* b,
                              std::size_t s, std::size_t p) {
  const std::size_t n = x.shape()[0], c = x.shape()[1], h = x.shape()[2], wd = x.shape()[3];
  const std::size_t f = w.shape()[0], kh = w.shape()[2], kw = w.shape()[3];
  const std::size_t oh = (h + 2 * p - kh) / s + 1, ow = (wd + 2 * p - kw) / s + 1;
  xt::xarray<double> y = xt::zeros<double>({n, f, oh, ow});
  for (std::size_t in = 0; in < n; ++in)
    for (std::size_t fi = 0; fi < f; ++fi)
      for (std::size_t i = 0; i < oh; ++i)
        for (std::size_t j = 0; j < ow; ++j) {
          double acc = b ? (*b)(fi) : 0.0;
          for (std::size_t ci = 0; ci < c; ++ci)
            for (std::size_t u = 0; u < kh; ++u)
              for (std::size_t v = 0; v < kw; ++v) {
                const long r = long(i * s + u) - long(p), q = long(j * s + v) - long(p);
                if (r < 0 || q < 0 || r >= long(h) || q >= long(wd)) continue;
                acc += w(fi, ci, u, v) * x(in, ci, std::size_t(r), std::size_t(q));
              }
          y(in, fi, i, j) = acc;
        }
  return y;
}

xt::xarray<double> naive_pool(const xt::xarray<double>& x, std::size_t k, std::size_t s) {
  const std::size_t n = x.shape()[0], c = x.shape()[1], h = x.shape()[2], w = x.shape()[3];
  const std::size_t oh = (h - k) / s + 1, ow = (w - k) / s + 1;
  xt::xarray<double> y = xt::zeros<double>({n, c, oh, ow});
  for (std::size_t a = 0; a < n; ++a)
    for (std::size_t b = 0; b < c; ++b)
      for (std::size_t i = 0; i < oh; ++i)
        for (std::size_t j = 0; j < ow; ++j) {
          double m = -INFINITY;
          for (std::size_t u = 0; u < k; ++u)
            for (std::size_t v = 0; v < k; ++v) m = std::max(m, x(a, b, i * s + u, j * s + v));
          y(a, b, i, j) = m;
        }
  return y;
}

struct ConvCase {
  Shape x, w;
  bool bias;
  std::size_t stride, pad;
};
const std::vector<ConvCase> conv_cases = {
    {{1, 1, 5, 5}, {1, 1, 3, 3}, false, 2, 1}, {{2, 2, 5, 5}, {3, 2, 3, 3}, true, 2, 1},
    {{2, 3, 6, 7}, {2, 3, 2, 3}, true, 1, 0},  {{1, 2, 7, 5}, {2, 2, 4, 3}, true, 3, 2},
    {{3, 4, 9, 9}, {5, 4, 3, 3}, true, 1, 1},  {{2, 2, 3, 3}, {4, 2, 3, 3}, false, 1, 0},
    {{1, 3, 4, 4}, {2, 3, 1, 1}, true, 2, 0},  {{1, 1, 2, 2}, {1, 1, 3, 3}, true, 1, 1}};

}  // namespace

BOOST_AUTO_TEST_SUITE(conv)

BOOST_AUTO_TEST_CASE(course_case_5x5_k3_s2_p1_gives_3x3) {
  Generator gen(31);
  Tensor x = randn({1, 1, 5, 5}, gen, 1.0, DType::f64), w = randn({1, 1, 3, 3}, gen, 1.0, DType::f64);
  Tensor y = conv2d(x, w, Tensor(), 2, 1);
  BOOST_TEST(y.shape() == Shape({1, 1, 3, 3}));
  const xt::xarray<double> xx = to_xt(x), xw = to_xt(w);
  BOOST_TEST(max_abs_diff(y, naive_conv(xx, xw, nullptr, 2, 1)) < 1e-13);
  // The centre output sees x[1..3, 1..3] through the whole filter; the corner output sees the padding.
  double centre = 0, corner = 0;
  for (std::size_t u = 0; u < 3; ++u)
    for (std::size_t v = 0; v < 3; ++v) {
      centre += xw(0, 0, u, v) * xx(0, 0, 1 + u, 1 + v);
      if (u >= 1 && v >= 1) corner += xw(0, 0, u, v) * xx(0, 0, u - 1, v - 1);
    }
  BOOST_TEST(y.at({0, 0, 1, 1}) == centre, boost::test_tools::tolerance(1e-12));
  BOOST_TEST(y.at({0, 0, 0, 0}) == corner, boost::test_tools::tolerance(1e-12));
}

BOOST_AUTO_TEST_CASE(conv2d_matches_direct_loops) {
  Generator gen(32);
  for (const auto& cc : conv_cases) {
    BOOST_TEST_CONTEXT("conv2d x " << cc.x.str() << " w " << cc.w.str() << " bias " << cc.bias << " s " << cc.stride
                                   << " p " << cc.pad) {
      Tensor x = randn(cc.x, gen, 1.0, DType::f64), w = randn(cc.w, gen, 1.0, DType::f64);
      Tensor b = cc.bias ? randn({cc.w[0]}, gen, 1.0, DType::f64) : Tensor();
      const xt::xarray<double> xb = cc.bias ? to_xt(b) : xt::xarray<double>();
      const xt::xarray<double> ref = naive_conv(to_xt(x), to_xt(w), cc.bias ? &xb : nullptr, cc.stride, cc.pad);
      BOOST_TEST(max_abs_diff(conv2d(x, w, b, cc.stride, cc.pad), ref) < 1e-12);
      {  // recorded
        Tape::Scope scope;
        Tensor px = parameter(x.clone());
        BOOST_TEST(max_abs_diff(conv2d(px, w, b, cc.stride, cc.pad), ref) < 1e-12);
      }
      Tensor y32 = conv2d(x.to(DType::f32), w.to(DType::f32), cc.bias ? b.to(DType::f32) : Tensor(), cc.stride, cc.pad);
      BOOST_TEST((y32.dtype() == DType::f32));
      BOOST_TEST(max_abs_diff(y32, ref) < 1e-5);
    }
  }
}

// float32 backward against the float64 one (which the op table gradient-checks), and accumulation.
BOOST_AUTO_TEST_CASE(conv2d_backward_float32_and_accumulates) {
  Generator gen(33);
  Tensor x = randn({2, 3, 6, 6}, gen, 1.0, DType::f64), w = randn({4, 3, 3, 3}, gen, 1.0, DType::f64),
         b = randn({4}, gen, 1.0, DType::f64);
  Tensor seed = randn({2, 4, 3, 3}, gen, 1.0, DType::f64);
  std::vector<Tensor> g64, g32;
  for (DType dt : {DType::f64, DType::f32}) {
    Tensor px = parameter(x.to(dt)), pw = parameter(w.to(dt)), pb = parameter(b.to(dt));
    backward(conv2d(px, pw, pb, 2, 1), seed.to(dt));
    backward(conv2d(px, pw, pb, 2, 1), seed.to(dt));  // accumulates
    auto& g = dt == DType::f64 ? g64 : g32;
    g = {px.grad(), pw.grad(), pb.grad()};
  }
  for (std::size_t k = 0; k < 3; ++k) BOOST_TEST(max_abs_diff(g32[k], to_xt(g64[k])) < 1e-5);
  // Twice the single-backward gradient.
  Tensor px = parameter(x.clone()), pw = parameter(w.clone()), pb = parameter(b.clone());
  auto once = grad(conv2d(px, pw, pb, 2, 1), {px, pw, pb}, {seed});
  for (std::size_t k = 0; k < 3; ++k) BOOST_TEST(max_abs_diff(g64[k], 2.0 * to_xt(once[k])) < 1e-12);
}

BOOST_AUTO_TEST_CASE(max_pool2d_matches_direct_loops) {
  Generator gen(34);
  const std::vector<std::tuple<Shape, std::size_t, std::size_t>> cases = {
      {{2, 3, 4, 4}, 2, 2}, {{1, 2, 5, 5}, 3, 1}, {{1, 1, 5, 7}, 2, 2}, {{2, 2, 7, 6}, 3, 2}, {{1, 1, 3, 3}, 3, 3}};
  for (const auto& [s, k, st] : cases) {
    BOOST_TEST_CONTEXT("max_pool2d " << s.str() << " k " << k << " s " << st) {
      Tensor x = randn(s, gen, 1.0, DType::f64);
      const xt::xarray<double> ref = naive_pool(to_xt(x), k, st);
      BOOST_TEST(max_abs_diff(max_pool2d(x, k, st), ref) == 0.0);
      BOOST_TEST(max_abs_diff(max_pool2d(x.to(DType::f32), k, st), ref) < 1e-6);
      Tensor px = parameter(x.clone());
      BOOST_TEST(max_abs_diff(max_pool2d(px, k, st), ref) == 0.0);
    }
  }
}

// Ties: the whole gradient goes to the first maximum of each window.
BOOST_AUTO_TEST_CASE(max_pool2d_gradient_goes_to_the_first_maximum) {
  Tensor x = parameter(from_values({1, 1, 0, 2, 1, 1, 2, 0}, {1, 1, 2, 4}, DType::f64));
  backward(max_pool2d(x, 2, 2), from_values({3, 5}, {1, 1, 1, 2}, DType::f64));
  BOOST_TEST(max_abs_diff(x.grad(), to_xt(from_values({3, 0, 0, 5, 0, 0, 0, 0}, {1, 1, 2, 4}, DType::f64))) == 0.0);
}

// A NaN in a window is that window's maximum (as in PyTorch), so anomaly mode can see it.
BOOST_AUTO_TEST_CASE(max_pool2d_propagates_nan) {
  Tensor x = from_values({1, NAN, 3, 2, 5, 4, 0, NAN}, {1, 1, 2, 4}, DType::f64);
  Tensor y = max_pool2d(x, 2, 2);
  BOOST_TEST(std::isnan(y.at({0, 0, 0, 0})));
  BOOST_TEST(std::isnan(y.at({0, 0, 0, 1})));
  BOOST_TEST(max_pool2d(from_values({1, 7, 3, 2}, {1, 1, 2, 2}, DType::f64), 2, 2).item() == 7.0);
}

BOOST_AUTO_TEST_CASE(bad_inputs_name_the_op_and_shapes) {
  auto z = [](Shape s, DType d = DType::f64) { return zeros(s, d); };
  expect_error([&] { conv2d(z({1, 2, 5, 5}), z({3, 4, 3, 3}), Tensor(), 1, 0); }, {"conv2d", "channels", "(1, 2, 5, 5)", "(3, 4, 3, 3)"});
  expect_error([&] { conv2d(z({1, 2, 2, 2}), z({3, 2, 3, 3}), Tensor(), 1, 0); }, {"conv2d", "larger", "(1, 2, 2, 2)", "(3, 2, 3, 3)"});
  expect_error([&] { conv2d(z({1, 2, 5, 5}), z({3, 2, 3, 3}), Tensor(), 0, 1); }, {"conv2d", "stride", "(1, 2, 5, 5)"});
  expect_error([&] { conv2d(z({2, 5, 5}), z({3, 2, 3, 3}), Tensor(), 1, 0); }, {"conv2d", "(2, 5, 5)", "(3, 2, 3, 3)"});
  expect_error([&] { conv2d(z({1, 2, 5, 5}), z({2, 3, 3}), Tensor(), 1, 0); }, {"conv2d", "(1, 2, 5, 5)", "(2, 3, 3)"});
  expect_error([&] { conv2d(z({1, 2, 5, 5}), z({3, 2, 3, 3}), z({2}), 1, 0); }, {"conv2d", "(2,)", "(3, 2, 3, 3)"});
  expect_error([&] { conv2d(z({1, 2, 5, 5}), z({3, 2, 3, 3}), z({3, 1}), 1, 0); }, {"conv2d", "(3, 1)"});
  expect_error([&] { conv2d(z({1, 2, 5, 5}), z({3, 2, 3, 3}, DType::f32), Tensor(), 1, 0); }, {"conv2d", "float64", "float32"});
  expect_error([&] { conv2d(Tensor(), z({3, 2, 3, 3}), Tensor(), 1, 0); }, {"conv2d", "undefined"});
  expect_error([&] { max_pool2d(z({1, 2, 5, 5}), 0, 1); }, {"max_pool2d", "kernel", "(1, 2, 5, 5)"});
  expect_error([&] { max_pool2d(z({1, 2, 5, 5}), 2, 0); }, {"max_pool2d", "stride", "(1, 2, 5, 5)"});
  expect_error([&] { max_pool2d(z({1, 2, 5, 3}), 4, 1); }, {"max_pool2d", "larger", "(1, 2, 5, 3)"});
  expect_error([&] { max_pool2d(z({2, 5, 5}), 2, 2); }, {"max_pool2d", "(2, 5, 5)"});
}

BOOST_AUTO_TEST_SUITE_END()
