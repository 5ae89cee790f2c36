// The README's "writing your own cell" example, compiled and gradient-checked as written there.
#include <boost/test/unit_test.hpp>

#include "support/xt.hpp"

using namespace tapegrad;

namespace {
// A "minimal gated unit": f = sigmoid(x W_f + h U_f + b_f), h_new = (1 - f) * h + f * tanh(x W + (f * h) U + b)
struct MGUCell : nn::Module {
  Tensor W_f, U_f, b_f, W, U, b;
  MGUCell(std::size_t I, std::size_t H, Generator& gen) {
    W_f = register_parameter("W_f", nn::init::glorot_uniform({I, H}, gen));
    U_f = register_parameter("U_f", nn::init::orthogonal({H, H}, gen));
    b_f = register_parameter("b_f", zeros({H}));
    W = register_parameter("W", nn::init::glorot_uniform({I, H}, gen));
    U = register_parameter("U", nn::init::orthogonal({H, H}, gen));
    b = register_parameter("b", zeros({H}));
  }
  Tensor operator()(const Tensor& x, const Tensor& h) const {
    Tensor f = sigmoid(matmul(x, W_f) + matmul(h, U_f) + b_f);
    return (1.0 - f) * h + f * tanh(matmul(x, W) + matmul(f * h, U) + b);
  }
};

struct DefaultDType {
  explicit DefaultDType(DType d) : previous(default_dtype()) { set_default_dtype(d); }
  ~DefaultDType() { set_default_dtype(previous); }
  DType previous;
};
}  // namespace

BOOST_AUTO_TEST_SUITE(custom_cell)

BOOST_AUTO_TEST_CASE(readme_cell_gradient_checks) {
  DefaultDType f64(DType::f64);
  Generator gen(5);
  MGUCell cell(3, 4, gen);
  BOOST_TEST(cell.named_parameters().size() == 6u);
  BOOST_TEST(cell.num_parameters() == 3u * 4 + 16 + 4 + 12 + 16 + 4);
  Tensor x = randn({2, 3}, gen, 1.0).requires_grad_();
  Tensor h = randn({2, 4}, gen, 1.0).requires_grad_();
  std::vector<Tensor> inputs = {x, h};
  for (const Tensor& p : cell.parameters()) inputs.push_back(p);
  // Two steps, so the recurrent path is exercised; all parameters and both inputs are checked.
  auto f = [&cell](const std::vector<Tensor>& in) { return cell(in[0], cell(in[0], in[1])); };
  GradcheckResult r = gradcheck(f, inputs);
  BOOST_TEST(r.ok, r.message);
  BOOST_TEST(r.checks == 6u + 8u + 12u + 16u + 4u + 12u + 16u + 4u);
}

BOOST_AUTO_TEST_SUITE_END()
