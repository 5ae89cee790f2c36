// Conformance: the fused softmax cross-entropy and log_softmax against float64 reference values.
#include <boost/test/unit_test.hpp>

#include "support/conformance.hpp"

using namespace tapegrad;
using namespace tapegrad::test;

BOOST_AUTO_TEST_SUITE(conformance_loss)

// L = mean_n(-log softmax(logits_n)[t_n]); outputs loss () and log_softmax (N, C); shapes from the files.
BOOST_AUTO_TEST_CASE(softmax_cross_entropy) {
  ConformanceCase c = load_case("softmax_cross_entropy");
  const Tensor& logits = c.in.at("logits");
  Tensor loss = tapegrad::softmax_cross_entropy(logits, c.index("targets"));
  Tensor ls = log_softmax(logits, -1);
  Agreement agg = check_case(c, {{"loss", loss}, {"log_softmax", ls}});
  BOOST_TEST(agg.ok(), "worst relative error " << agg.worst_rel << " at " << agg.where);
}

BOOST_AUTO_TEST_SUITE_END()
