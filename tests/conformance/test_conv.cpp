// Conformance of ops/conv against ../shared/conformance (PyTorch 1.13, float64). Shapes come from the
// files; stride, padding and kernel are the cases' parameters from MANIFEST.md.
#include <boost/test/unit_test.hpp>

#include "support/conformance.hpp"

using namespace tapegrad;
using namespace tapegrad::test;

BOOST_AUTO_TEST_SUITE(conformance_conv)

// conv2d NCHW, stride 2, zero padding 1, with bias.
BOOST_AUTO_TEST_CASE(conv2d_s2_p1) {
  auto c = load_case("conv2d_s2_p1");
  Tensor y = conv2d(c.in["x"], c.in["w"], c.in["b"], 2, 1);
  auto agg = check_case(c, {{"y", y}});
  BOOST_TEST(agg.ok(), "worst relative error " << agg.worst_rel << " at " << agg.where);
}

// max_pool2d kernel 2, stride 2 (random inputs: no ties).
BOOST_AUTO_TEST_CASE(maxpool2d_k2_s2) {
  auto c = load_case("maxpool2d_k2_s2");
  Tensor y = max_pool2d(c.in["x"], 2, 2);
  auto agg = check_case(c, {{"y", y}});
  BOOST_TEST(agg.ok(), "worst relative error " << agg.worst_rel << " at " << agg.where);
}

BOOST_AUTO_TEST_SUITE_END()
