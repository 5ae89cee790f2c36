// Op-level conformance cases that are compositions of ops: attention (dot and additive) and the VAE's
// reparameterisation and KL. Every shape comes from the case files.
#include <boost/test/unit_test.hpp>

#include "support/conformance.hpp"

using namespace tapegrad;
using namespace tapegrad::test;

namespace {
// context = sum_s a_s hs_s, for hs (B,S,H) and a (B,S).
Tensor attend(const Tensor& hs, const Tensor& a) {
  return sum(hs * reshape(a, {a.size(0), a.size(1), 1}), {1});
}
}  // namespace

BOOST_AUTO_TEST_SUITE(composed)

BOOST_AUTO_TEST_CASE(attention_dot) {
  auto c = load_case("attention_dot");
  const Tensor &hs = c.in.at("hs"), &hd = c.in.at("hd");
  // score_s = <hs_s, hd>
  Tensor score = sum(hs * reshape(hd, {hd.size(0), 1, hd.size(1)}), {2});
  Tensor a = softmax(score, -1);
  auto agg = check_case(c, {{"a", a}, {"context", attend(hs, a)}});
  BOOST_TEST(agg.ok());
}

BOOST_AUTO_TEST_CASE(attention_additive) {
  auto c = load_case("attention_additive");
  const Tensor &hs = c.in.at("hs"), &hd = c.in.at("hd"), &Wa = c.in.at("Wa"), &Ua = c.in.at("Ua"), &va = c.in.at("va");
  const std::size_t B = hs.size(0), S = hs.size(1), H = hs.size(2);
  // e_s = v^T tanh(hs_s Wa + hd Ua)
  Tensor pre = matmul(hs, Wa) + reshape(matmul(hd, Ua), {B, 1, Ua.size(1)});
  Tensor e = reshape(matmul(tanh(pre), reshape(va, {va.size(0), 1})), {B, S});
  Tensor a = softmax(e, -1);
  (void)H;
  auto agg = check_case(c, {{"a", a}, {"context", attend(hs, a)}});
  BOOST_TEST(agg.ok());
}

BOOST_AUTO_TEST_CASE(vae_reparam_kl) {
  auto c = load_case("vae_reparam_kl");
  const Tensor &mu = c.in.at("mu"), &logvar = c.in.at("logvar");
  const Tensor& eps = c.consts.at("eps");
  // z = mu + exp(logvar / 2) * eps;  kl = -1/2 sum(1 + logvar - mu^2 - exp(logvar)) / B
  Tensor z = mu + tapegrad::exp(logvar * 0.5) * eps;
  Tensor kl = sum(1.0 + logvar - mu * mu - tapegrad::exp(logvar)) * (-0.5 / static_cast<double>(mu.size(0)));
  auto agg = check_case(c, {{"z", z}, {"kl", kl}});
  BOOST_TEST(agg.ok());
}

BOOST_AUTO_TEST_CASE(missing_folder_is_a_clear_error) {
  BOOST_CHECK_THROW(load_case("no_such_case"), Error);
}

BOOST_AUTO_TEST_SUITE_END()
