// nn/models/hred: HRED and VHRED gradient checks, the ELBO's pieces, KL identities, annealing, word drop, errors.
#include <boost/test/unit_test.hpp>

#include <cmath>

#include <tapegrad/nn/models/hred.hpp>
#include <tapegrad/nn/models/vae.hpp>

#include "support/xt.hpp"

using namespace tapegrad;
using namespace tapegrad::nn;
using namespace tapegrad::test;

namespace {
constexpr std::int64_t BOS = Tokenizer::bos_id, EOS = Tokenizer::eos_id, UNK = Tokenizer::unk_id;

HREDConfig tiny(CellType cell, bool context_input) {
  HREDConfig c;
  c.vocab = 9, c.embed = 3, c.utterance_hidden = 4, c.context_hidden = 3, c.decoder_hidden = 4, c.latent = 2;
  c.cell = cell, c.context_input = context_input;
  return c;
}

// Two dialogues of two context utterances each, padded, and their responses.
struct Dialogue {
  std::vector<PaddedBatch> context;
  PaddedBatch response;
};
Dialogue dialogue() {
  return {{pad_batch({{4, 5, 6}, {7}}, DType::f64), pad_batch({{8, 4}, {5, 6, 7, 8}}, DType::f64)},
          pad_batch({{BOS, 6, 7, EOS}, {BOS, 8, EOS}}, DType::f64)};
}

GradcheckOptions random_directions() {
  GradcheckOptions o;
  o.full_jacobian_max = 0;
  o.directions = 3;
  return o;
}
}  // namespace

BOOST_AUTO_TEST_SUITE(hred)

BOOST_AUTO_TEST_CASE(gradcheck_hred_loss) {
  const Dialogue d = dialogue();
  for (auto [cell, peek] : {std::pair{CellType::gru, false}, std::pair{CellType::lstm, true}}) {
    Generator gen(21);
    HRED model(tiny(cell, peek), gen, DType::f64);
    auto r = gradcheck([&](const std::vector<Tensor>&) { return model.loss(d.context, d.response.ids); },
                       model.parameters(), random_directions());
    BOOST_TEST(r.ok, "context_input " << peek << ": " << r.message);
    BOOST_TEST(r.checks == 3 * model.parameters().size());
  }
}

BOOST_AUTO_TEST_CASE(gradcheck_elbo_pieces) {
  const Dialogue d = dialogue();
  Generator gen(22);
  VHRED model(tiny(CellType::gru, true), gen, DType::f64);
  const Tensor eps = randn({2, 2}, gen, 1.0, DType::f64);
  VHRED::ElboOptions o;
  o.kl_weight = 0.3;
  auto piece = [&](int k) {
    return [&, k](const std::vector<Tensor>&) {
      auto e = model.elbo(d.context, d.response, eps, o);
      return k == 0 ? e.loss : k == 1 ? e.recon : e.kl;
    };
  };
  for (int k = 0; k < 3; ++k) {
    auto r = gradcheck(piece(k), model.parameters(), random_directions());
    BOOST_TEST(r.ok, "piece " << k << ": " << r.message);
  }
  // The loss is recon + kl_weight * kl; recon is the summed NLL per dialogue.
  auto e = model.elbo(d.context, d.response, eps, o);
  BOOST_TEST(std::abs(e.loss.item() - (e.recon.item() + 0.3 * e.kl.item())) < 1e-12);
  BOOST_TEST(e.tokens == 5u);
  BOOST_TEST(e.z.shape() == (Shape{2, 2}));
  // KL against the closed form from the returned Gaussians.
  const auto mq = e.q.mu.to_vector(), lq = e.q.logvar.to_vector(), mp = e.p.mu.to_vector(), lp = e.p.logvar.to_vector();
  double ref = 0;
  for (std::size_t i = 0; i < mq.size(); ++i) {
    const double vq = std::exp(lq[i]), vp = std::exp(lp[i]);
    ref += 0.5 * (std::log(vp / vq) + (vq + (mq[i] - mp[i]) * (mq[i] - mp[i])) / vp - 1.0);
  }
  ref /= 2.0;
  BOOST_TEST(std::abs(e.kl.item() - ref) <= 1e-13 * std::abs(ref));
  // KL(q || q) = 0.
  BOOST_TEST(std::abs(kl_diag_gaussians(e.q.mu, e.q.logvar, e.q.mu, e.q.logvar).item()) < 1e-15);
  // The posterior sees the response: another response changes q, not p.
  auto e2 = model.elbo(d.context, pad_batch({{BOS, 4, EOS}, {BOS, 5, 5, EOS}}, DType::f64), eps, o);
  BOOST_TEST(max_abs_diff(e2.p.mu, to_xt(e.p.mu)) == 0.0);
  BOOST_TEST(max_abs_diff(e2.q.mu, to_xt(e.q.mu)) > 1e-6);
}

BOOST_AUTO_TEST_CASE(context_ignores_padding) {
  Generator gen(23);
  HRED model(tiny(CellType::lstm, false), gen, DType::f64);
  const Dialogue d = dialogue();
  const Tensor both = model.context(d.context);
  const Tensor second = model.context({pad_batch({{7}}, DType::f64), pad_batch({{5, 6, 7, 8}}, DType::f64)});
  BOOST_TEST(both.shape() == (Shape{2, 3}));
  for (std::size_t k = 0; k < 3; ++k) BOOST_TEST(std::abs(both.at({1, k}) - second.at({0, k})) < 1e-14);
  // Generation runs off the tape from the context; VHRED decodes from the prior.
  GenerateOptions g;
  g.max_length = 4;
  BOOST_TEST(model.generate(d.context, g).ids.size() == 2u);
  VHRED v(tiny(CellType::gru, false), gen, DType::f64);
  Generator s1(3), s2(3);
  BOOST_TEST(v.generate(d.context, g, &s1).ids == v.generate(d.context, g, &s2).ids);
}

BOOST_AUTO_TEST_CASE(kl_annealing_schedule) {
  BOOST_TEST(kl_anneal_linear(0, 100) == 0.0);
  BOOST_TEST(kl_anneal_linear(25, 100) == 0.25);
  BOOST_TEST(kl_anneal_linear(100, 100) == 1.0);
  BOOST_TEST(kl_anneal_linear(1000, 100) == 1.0);
  BOOST_TEST(kl_anneal_linear(50, 100, 0.2, 0.6) == 0.4);
  BOOST_TEST(kl_anneal_linear(7, 0) == 1.0);
}

BOOST_AUTO_TEST_CASE(word_drop_replaces_only_words) {
  Generator gen(24);
  const Index ids({BOS, 4, 5, 6, EOS, 0, BOS, 7, 8, EOS, 0, 0}, {6, 2});
  BOOST_TEST(word_drop(ids, 0.0, gen).values == ids.values, boost::test_tools::per_element());
  const Index all = word_drop(ids, 1.0, gen);
  const std::vector<std::int64_t> want{BOS, UNK, UNK, UNK, EOS, 0, BOS, UNK, UNK, EOS, 0, 0};
  BOOST_TEST(all.values == want, boost::test_tools::per_element());
  BOOST_TEST(all.shape == ids.shape);
  // About p of the words, and seeded.
  std::vector<std::int64_t> many(4000, 5);
  Generator g1(7), g2(7);
  const Index a = word_drop(Index(many), 0.25, g1), b = word_drop(Index(many), 0.25, g2);
  BOOST_TEST(a.values == b.values);
  const auto dropped = std::count(a.values.begin(), a.values.end(), UNK);
  BOOST_TEST(std::abs(double(dropped) / 4000.0 - 0.25) < 0.03);
  // In the ELBO: word drop changes the decoder inputs (so the reconstruction), not the targets.
  Generator m(25);
  VHRED model(tiny(CellType::gru, false), m, DType::f64);
  const Dialogue d = dialogue();
  const Tensor eps = zeros({2, 2}, DType::f64);
  VHRED::ElboOptions o;
  const double plain = model.elbo(d.context, d.response, eps, o).recon.item();
  o.word_drop = 1.0;
  Generator wd(1);
  auto dropped_elbo = model.elbo(d.context, d.response, eps, o, &wd);
  BOOST_TEST(dropped_elbo.tokens == 5u);
  BOOST_TEST(std::abs(dropped_elbo.recon.item() - plain) > 1e-9);
  BOOST_TEST(std::abs(dropped_elbo.kl.item() - model.elbo(d.context, d.response, eps).kl.item()) < 1e-15);
}

BOOST_AUTO_TEST_CASE(bad_inputs_are_errors) {
  Generator gen(26);
  VHRED model(tiny(CellType::gru, false), gen, DType::f64);
  const Dialogue d = dialogue();
  const Tensor eps = zeros({2, 2}, DType::f64);
  expect_error([&] { model.context({}); }, {"HRED::context", "no context utterances"});
  expect_error([&] { model.context({d.context[0], pad_batch({{4}}, DType::f64)}); },
               {"HRED::context", "utterance 1", "(1, 1)", "(3, 2)"});
  expect_error([&] { model.context({pad_batch({{4, 9}, {5}}, DType::f64)}); }, {"Encoder", "token id 9", "[0, 9)"});
  expect_error([&] { model.elbo(d.context, d.response, zeros({2, 3}, DType::f64)); }, {"VHRED::elbo", "eps (2, 3)", "(2, 2)"});
  expect_error([&] { model.elbo(d.context, pad_batch({{BOS, 4, EOS}}, DType::f64), eps); }, {"VHRED::elbo", "(3, 1)", "B = 2"});
  VHRED::ElboOptions o;
  o.word_drop = 0.1;
  expect_error([&] { model.elbo(d.context, d.response, eps, o); }, {"VHRED::elbo", "word drop", "Generator"});
  expect_error([&] { word_drop(Index({4}), 1.5, gen); }, {"word_drop", "outside [0, 1]"});
  expect_error([&] { model.loss(d.context, d.response.ids); }, {"HRED::condition", "latent z", "(2, 3)"});
  HRED h(tiny(CellType::gru, false), gen, DType::f64);
  expect_error([&] { h.loss(d.context, Index({BOS, EOS}, {2, 1})); }, {"HRED::loss", "(2, 1)", "batch 2"});
}

BOOST_AUTO_TEST_SUITE_END()
