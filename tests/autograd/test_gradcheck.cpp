// gradcheck and gradgradcheck must be able to fail: ops with deliberately wrong backward passes.
#include <boost/test/unit_test.hpp>

#include "support/xt.hpp"

using namespace tapegrad;
using namespace tapegrad::test;

namespace {
TAPEGRAD_OP(op_double_right_graph_wrong, "test_double_graph_wrong", "test");
TAPEGRAD_OP(op_square_wrong, "test_square_wrong", "test");

// y = 2x; the fast backward is right (2 gy), the differentiable one is wrong (gy).
Tensor double_graph_wrong(const Tensor& x) {
  OpCall call(op_double_right_graph_wrong, {&x});
  Tensor y = call.output(x.shape());
  for (std::size_t i = 0; i < x.numel(); ++i) y.data<double>()[i] = 2 * x.data<double>()[i];
  call.record(
      [](BackwardCtx& c) {
        for (std::size_t i = 0; i < c.out_shape().numel(); ++i) c.grad<double>(0)[i] += 2 * c.gout<double>()[i];
      },
      [](GraphCtx& g) { g.accumulate(0, g.gout()); });
  return y;
}

// y = x^2 with the backward 3x gy (wrong).
Tensor square_wrong(const Tensor& x) {
  OpCall call(op_square_wrong, {&x});
  Tensor y = call.output(x.shape());
  for (std::size_t i = 0; i < x.numel(); ++i) y.data<double>()[i] = x.data<double>()[i] * x.data<double>()[i];
  call.record([](BackwardCtx& c) {
    for (std::size_t i = 0; i < c.out_shape().numel(); ++i) c.grad<double>(0)[i] += 3 * c.in<double>(0)[i] * c.gout<double>()[i];
  });
  return y;
}
}  // namespace

BOOST_AUTO_TEST_SUITE(gradcheck_api)

BOOST_AUTO_TEST_CASE(passes_a_right_gradient) {
  Generator gen(1);
  Tensor x = randn({3, 4}, gen, 1.0, DType::f64).requires_grad_();
  auto r = gradcheck([](const std::vector<Tensor>& v) { return tanh(v[0]) * v[0]; }, {x});
  BOOST_TEST(r.ok, r.message);
  BOOST_TEST(r.checks == 12u);  // full Jacobian: every element
  auto r2 = gradgradcheck([](const std::vector<Tensor>& v) { return tanh(v[0]) * v[0]; }, {x});
  BOOST_TEST(r2.ok, r2.message);
}

BOOST_AUTO_TEST_CASE(names_input_element_and_values_on_failure) {
  Tensor x = from_values({0.5, -1.0, 2.0}, {3}, DType::f64).requires_grad_();
  auto r = gradcheck([](const std::vector<Tensor>& v) { return square_wrong(v[0]); }, {x});
  BOOST_TEST(!r.ok);
  BOOST_TEST(r.message.find("input 0 (3,) element [0]") != std::string::npos, r.message);
  BOOST_TEST(r.message.find("analytic") != std::string::npos);
  BOOST_TEST(r.message.find("numeric") != std::string::npos);
}

BOOST_AUTO_TEST_CASE(random_directions_for_large_inputs) {
  Generator gen(2);
  Tensor x = randn({40, 40}, gen, 1.0, DType::f64).requires_grad_();
  GradcheckOptions o;
  o.directions = 5;
  auto good = gradcheck([](const std::vector<Tensor>& v) { return tanh(v[0]); }, {x}, o);
  BOOST_TEST(good.ok, good.message);
  BOOST_TEST(good.checks == 5u);
  auto bad = gradcheck([](const std::vector<Tensor>& v) { return square_wrong(v[0]); }, {x}, o);
  BOOST_TEST(!bad.ok);
  BOOST_TEST(bad.message.find("random direction") != std::string::npos, bad.message);
}

BOOST_AUTO_TEST_CASE(gradgradcheck_catches_a_wrong_differentiable_backward) {
  Tensor x = from_values({0.5, -1.0}, {2}, DType::f64).requires_grad_();
  auto f = [](const std::vector<Tensor>& v) { return double_graph_wrong(v[0]) * v[0]; };
  BOOST_TEST(gradcheck(f, {x}).ok);  // first order is right
  auto r = gradgradcheck(f, {x});
  BOOST_TEST(!r.ok);
  BOOST_TEST(r.message.find("create_graph") != std::string::npos, r.message);
}

BOOST_AUTO_TEST_CASE(rejects_float32) {
  Tensor x = zeros({2}).requires_grad_();
  expect_error([&] { gradcheck([](const std::vector<Tensor>& v) { return v[0] * 2.0; }, {x}); }, {"gradcheck", "float32", "float64"});
}

BOOST_AUTO_TEST_SUITE_END()
