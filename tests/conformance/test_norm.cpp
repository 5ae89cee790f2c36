// The layer_norm case (PyTorch's functional layer_norm, float64) through the fused op and its composed form.
#include <boost/test/unit_test.hpp>

#include "support/conformance.hpp"

using namespace tapegrad;
using namespace tapegrad::test;

BOOST_AUTO_TEST_SUITE(norm)

BOOST_AUTO_TEST_CASE(layer_norm_case) {
  for (bool fused : {true, false}) {
    auto c = load_case("layer_norm");
    const Tensor &x = c.in.at("x"), &gamma = c.in.at("gamma"), &beta = c.in.at("beta");
    const Tensor y = fused ? layer_norm(x, gamma, beta, 1e-5) : layer_norm_composed(x, gamma, beta, 1e-5);
    BOOST_TEST(check_case(c, {{"y", y}}).ok(), (fused ? "fused" : "composed"));
  }
}

BOOST_AUTO_TEST_SUITE_END()
