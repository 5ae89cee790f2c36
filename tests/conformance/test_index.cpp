// Conformance of ops/index against ../shared/conformance (PyTorch 1.13, float64). The ids and their shape
// come from const_ids.npy.
#include <boost/test/unit_test.hpp>

#include "support/conformance.hpp"

using namespace tapegrad;
using namespace tapegrad::test;

BOOST_AUTO_TEST_SUITE(conformance_index)

// Embedding lookup with repeated ids: backward must scatter-add.
BOOST_AUTO_TEST_CASE(embedding) {
  auto c = load_case("embedding");
  Tensor out = tapegrad::embedding(c.in["emb"], c.index("ids"));
  auto agg = check_case(c, {{"out", out}});
  BOOST_TEST(agg.ok(), "worst relative error " << agg.worst_rel << " at " << agg.where);
}

BOOST_AUTO_TEST_SUITE_END()
