// nn/models/vae: conformance of the reparameterisation and KL, KL identities, ELBO gradients, a tiny fit with nn::Adam.
#include <boost/test/unit_test.hpp>

#include <cmath>

#include <tapegrad/nn/training/optim.hpp>
#include <tapegrad/nn/models/vae.hpp>

#include "support/conformance.hpp"
#include "support/xt.hpp"

using namespace tapegrad;
using namespace tapegrad::nn;
using namespace tapegrad::test;

BOOST_AUTO_TEST_SUITE(vae)

BOOST_AUTO_TEST_CASE(conformance_reparam_kl) {
  auto c = load_case("vae_reparam_kl");
  const Tensor &mu = c.in.at("mu"), &logvar = c.in.at("logvar");
  Tensor z = reparameterize(mu, logvar, c.consts.at("eps"));
  Tensor kl = kl_standard_normal(mu, logvar);
  auto agg = check_case(c, {{"z", z}, {"kl", kl}});
  BOOST_TEST(agg.ok());
  // The general KL with p = N(0, I) is the same number, and goes through the same case.
  auto c2 = load_case("vae_reparam_kl");
  Tensor kl2 = kl_diag_gaussians(c2.in.at("mu"), c2.in.at("logvar"), zeros(c2.in.at("mu").shape(), DType::f64),
                                 zeros(c2.in.at("mu").shape(), DType::f64));
  auto agg2 = check_case(c2, {{"z", reparameterize(c2.in.at("mu"), c2.in.at("logvar"), c2.consts.at("eps"))}, {"kl", kl2}});
  BOOST_TEST(agg2.ok());
}

BOOST_AUTO_TEST_CASE(kl_identities_and_closed_form) {
  Generator gen(1);
  Tensor mu = randn({3, 4}, gen, 1.0, DType::f64), lv = randn({3, 4}, gen, 0.5, DType::f64);
  BOOST_TEST(std::abs(kl_diag_gaussians(mu, lv, mu, lv).item()) < 1e-15);  // KL(q || q) = 0
  // Closed form per dimension: log(s_p/s_q) + (s_q^2 + (m_q - m_p)^2) / (2 s_p^2) - 1/2.
  Tensor mp = randn({3, 4}, gen, 1.0, DType::f64), lp = randn({3, 4}, gen, 0.5, DType::f64);
  const auto a = mu.to_vector(), b = lv.to_vector(), c = mp.to_vector(), d = lp.to_vector();
  double ref = 0;
  for (std::size_t i = 0; i < a.size(); ++i) {
    const double sq = std::exp(0.5 * b[i]), sp = std::exp(0.5 * d[i]);
    ref += std::log(sp / sq) + (sq * sq + (a[i] - c[i]) * (a[i] - c[i])) / (2 * sp * sp) - 0.5;
  }
  ref /= 3.0;
  BOOST_TEST(std::abs(kl_diag_gaussians(mu, lv, mp, lp).item() - ref) < 1e-13 * std::abs(ref));
  BOOST_TEST(kl_diag_gaussians(mu, lv, mp, lp).item() > 0.0);
  // The reparameterisation draws its noise from the generator: same seed, same z.
  Generator g1(9), g2(9);
  BOOST_TEST(max_abs_diff(reparameterize(mu, lv, g1), to_xt(reparameterize(mu, lv, g2))) == 0.0);
}

BOOST_AUTO_TEST_CASE(gradcheck_elbo) {
  Generator gen(2);
  VAE model(5, 4, 2, gen, DType::f64);
  Tensor x = from_values({1, 0, 1, 1, 0, 0, 1, 0, 0, 1, 1, 1, 0, 1, 0}, {3, 5}, DType::f64);
  Tensor eps = randn({3, 2}, gen, 1.0, DType::f64);
  GradcheckOptions o;
  o.full_jacobian_max = 8;  // bigger weights: random directions
  auto r = gradcheck([&](const std::vector<Tensor>&) { return model.loss(x, eps, 0.7).loss; }, model.parameters(), o);
  BOOST_TEST(r.ok, r.message);
  // recon and KL pieces on their own, and the loss as their weighted sum.
  auto l = model.loss(x, eps, 0.7);
  BOOST_TEST(std::abs(l.loss.item() - (l.recon.item() + 0.7 * l.kl.item())) < 1e-12);
  // recon = sum over pixels of BCE, averaged over images.
  const auto lg = l.logits.to_vector(), xv = x.to_vector();
  double bce = 0;
  for (std::size_t i = 0; i < lg.size(); ++i) bce += std::log1p(std::exp(lg[i])) - xv[i] * lg[i];
  BOOST_TEST(std::abs(l.recon.item() - bce / 3.0) < 1e-12);
}

BOOST_AUTO_TEST_CASE(tiny_fit_lowers_the_loss) {
  // Four 8-pixel binary prototypes; a 2-d latent code can tell them apart.
  const std::vector<std::vector<double>> protos = {
      {1, 1, 1, 1, 0, 0, 0, 0}, {0, 0, 0, 0, 1, 1, 1, 1}, {1, 0, 1, 0, 1, 0, 1, 0}, {0, 1, 0, 1, 0, 1, 0, 1}};
  std::vector<double> data;
  for (int r = 0; r < 4; ++r)
    for (const auto& p : protos) data.insert(data.end(), p.begin(), p.end());
  Tensor x = from_values(data, {16, 8}, DType::f64);
  Generator gen(3);
  VAE model(8, 16, 2, gen, DType::f64);
  Adam opt(model.parameters(), 0.02);
  auto eval = [&]() {
    Generator g(100);  // fixed noise for comparable evaluations
    NoGrad ng;
    return model.loss(x, g).loss.item();
  };
  const double before = eval();
  for (int step = 0; step < 300; ++step) {
    auto l = model.loss(x, gen);
    backward(l.loss);
    opt.step();
    opt.zero_grad();
  }
  const double after = eval();
  BOOST_TEST_MESSAGE("VAE toy fit: -ELBO " << before << " -> " << after);
  BOOST_TEST(after < 0.5 * before);
  BOOST_TEST(after < 4.0);  // 8 pixels; 4 prototypes need ~log 4 nats of code
}

BOOST_AUTO_TEST_CASE(bad_inputs_are_errors) {
  Generator gen(4);
  VAE model(5, 4, 2, gen, DType::f64);
  expect_error([&] { model.encode(zeros({3, 4}, DType::f64)); }, {"VAE::encode", "(B, 5)", "(3, 4)"});
  expect_error([&] { model.decode(zeros({3, 3}, DType::f64)); }, {"VAE::decode", "(B, 2)", "(3, 3)"});
  expect_error([&] { model.loss(zeros({3, 5}, DType::f64), zeros({2, 2}, DType::f64)); }, {"VAE::loss", "eps (2, 2)", "(3, 2)"});
  expect_error([&] { reparameterize(zeros({2, 3}), zeros({2, 3}), zeros({3, 2})); }, {"reparameterize", "eps (3, 2)"});
  expect_error([&] { kl_standard_normal(zeros({2, 3}), zeros({2})); }, {"kl_standard_normal", "logvar (2,)"});
  expect_error([&] { kl_diag_gaussians(zeros({2, 3}), zeros({2, 3}), zeros({2, 3}), zeros({3, 3})); },
               {"kl_diag_gaussians", "logvar_p (3, 3)"});
}

BOOST_AUTO_TEST_SUITE_END()
