// word2vec: losses against the conformance case and plain loops, gradient checks, the negative sampler's
// distribution, subsampling, vocabulary, training examples, similarity queries and bad input.
#include <boost/test/unit_test.hpp>

#include <cmath>
#include <map>

#include <tapegrad/nn/models/word2vec.hpp>

#include "support/conformance.hpp"
#include "support/xt.hpp"

using namespace tapegrad;
using namespace tapegrad::test;
namespace nn = tapegrad::nn;

namespace {
double log_sig(double x) { return -std::log1p(std::exp(-x)); }
double dot_rows(const xt::xarray<double>& a, std::size_t i, const xt::xarray<double>& b, std::size_t j) {
  double s = 0;
  for (std::size_t d = 0; d < a.shape(1); ++d) s += a(i, d) * b(j, d);
  return s;
}
}  // namespace

BOOST_AUTO_TEST_SUITE(word2vec)

BOOST_AUTO_TEST_CASE(conformance_word2vec_sgns) {
  auto c = load_case("word2vec_sgns");
  Tensor loss = nn::skipgram_loss(c.in.at("w_in"), c.in.at("w_out"), c.index("center"), c.index("context"),
                                  c.index("negatives"));
  auto agg = check_case(c, {{"loss", loss}});
  BOOST_TEST(agg.ok());
}

BOOST_AUTO_TEST_CASE(cbow_loss_matches_plain_loops) {
  Generator gen(5);
  Tensor w_in = randn({6, 3}, gen, 1.0, DType::f64), w_out = randn({6, 3}, gen, 1.0, DType::f64);
  Index ctx({0, 1, 2, 3, 5, 5, 4, 0}, {2, 4}), tgt({4, 1}), negs({2, 3, 3, 0, 5, 2}, {2, 3});
  const double got = nn::cbow_loss(w_in, w_out, ctx, tgt, negs).item();
  auto vi = to_xt(w_in), vo = to_xt(w_out);
  double expect = 0;
  for (std::size_t n = 0; n < 2; ++n) {
    xt::xarray<double> h = xt::xarray<double>::from_shape({1, 3});
    for (std::size_t d = 0; d < 3; ++d) {
      double s = 0;
      for (std::size_t k = 0; k < 4; ++k) s += vi(std::size_t(ctx.values[n * 4 + k]), d);
      h(0, d) = s / 4;
    }
    expect -= log_sig(dot_rows(h, 0, vo, std::size_t(tgt.values[n])));
    for (std::size_t k = 0; k < 3; ++k) expect -= log_sig(-dot_rows(h, 0, vo, std::size_t(negs.values[n * 3 + k])));
  }
  expect /= 2;
  BOOST_TEST(std::abs(got - expect) <= 1e-14 * std::abs(expect));
  // A one-word window makes CBOW the skip-gram loss with that word as the center.
  Index one({2, 5}, {2, 1});
  const double a = nn::cbow_loss(w_in, w_out, one, tgt, negs).item();
  const double b = nn::skipgram_loss(w_in, w_out, Index({2, 5}), tgt, negs).item();
  BOOST_TEST(std::abs(a - b) <= 1e-15 * std::abs(b));
}

BOOST_AUTO_TEST_CASE(gradcheck_both_losses) {
  Generator gen(17);
  std::vector<Tensor> inputs = {parameter(randn({7, 3}, gen, 0.7, DType::f64)), parameter(randn({7, 3}, gen, 0.7, DType::f64))};
  // Repeated ids everywhere, so scatter-adds accumulate.
  Index center({0, 3, 3, 6}), context({1, 2, 0, 3}), negs({2, 2, 5, 0, 1, 6, 4, 4, 4, 3, 0, 5}, {4, 3});
  auto sg = gradcheck([&](const std::vector<Tensor>& x) { return nn::skipgram_loss(x[0], x[1], center, context, negs); },
                      inputs);
  BOOST_TEST(sg.ok, sg.message);
  BOOST_TEST(sg.checks >= 42u);
  Index ctx({0, 1, 3, 4, 1, 1, 2, 6, 5, 0, 0, 3, 2, 4, 6, 1}, {4, 4});
  auto cb = gradcheck([&](const std::vector<Tensor>& x) { return nn::cbow_loss(x[0], x[1], ctx, context, negs); }, inputs);
  BOOST_TEST(cb.ok, cb.message);
  BOOST_TEST(cb.checks >= 42u);
}

BOOST_AUTO_TEST_CASE(sampler_follows_unigram_to_the_three_quarters) {
  const std::vector<std::int64_t> counts = {1000, 300, 100, 30, 10, 1, 0, 55};
  nn::NegativeSampler s(counts);
  double z = 0;
  for (auto c : counts) z += std::pow(double(c), 0.75);
  for (std::size_t i = 0; i < counts.size(); ++i)
    BOOST_TEST(std::abs(s.probabilities()[i] - std::pow(double(counts[i]), 0.75) / z) <= 1e-15);
  Generator gen(2024);
  const std::size_t n = 400000;
  std::vector<double> hits(counts.size(), 0);
  for (std::size_t k = 0; k < n; ++k) hits[std::size_t(s(gen))] += 1;
  double chi2 = 0;
  for (std::size_t i = 0; i < counts.size(); ++i) {
    const double p = s.probabilities()[i], f = hits[i] / double(n);
    const double sigma = std::sqrt(p * (1 - p) / double(n));
    // Within 5 standard errors of p; a zero count is never drawn.
    BOOST_TEST(std::abs(f - p) <= 5 * sigma + 1e-12, "id " << i << ": frequency " << f << ", expected " << p);
    if (p > 0) chi2 += (hits[i] - n * p) * (hits[i] - n * p) / (n * p);
    // The test can tell the power: the raw unigram (power 1) is far outside the band for the top word.
    if (i == 0) BOOST_TEST(std::abs(f - double(counts[0]) / 1496.0) > 20 * sigma);
  }
  BOOST_TEST(chi2 < 24.3);  // chi-square, 6 degrees of freedom, p = 0.0005
  BOOST_TEST(hits[6] == 0.0);

  // Rows avoiding their positive word.
  Index negs = s.sample_avoiding({0, 1, 0}, 50, gen);
  BOOST_TEST(negs.shape == (Shape{3, 50}));
  for (std::size_t r = 0; r < 3; ++r)
    for (std::size_t k = 0; k < 50; ++k) BOOST_TEST(negs.values[r * 50 + k] != (r == 1 ? 1 : 0));
  BOOST_TEST(s.sample(4, 5, gen).shape == (Shape{4, 5}));
  // Power 0 is uniform over the words with a non-zero count.
  nn::NegativeSampler u({5, 0, 1}, 0.0);
  BOOST_TEST(u.probabilities()[0] == 0.5);
  BOOST_TEST(u.probabilities()[1] == 0.0);
}

BOOST_AUTO_TEST_CASE(subsampling_keeps_sqrt_t_over_f) {
  // keep = min(1, sqrt(t / f)) (Mikolov et al. 2013, eq. 5).
  BOOST_TEST(std::abs(nn::keep_probability(900, 1000, 1e-2) - std::sqrt(1e-2 / 0.9)) <= 1e-16);
  BOOST_TEST(nn::keep_probability(5, 1000, 1e-2) == 1.0);  // f = 0.005 < t: always kept
  // A corpus where word 0 is 90% of the tokens, word 1 9%, word 2 1%.
  std::vector<std::int64_t> ids;
  for (int r = 0; r < 2000; ++r) {
    for (int k = 0; k < 90; ++k) ids.push_back(0);
    for (int k = 0; k < 9; ++k) ids.push_back(1);
    ids.push_back(2);
  }
  const std::vector<std::int64_t> counts = {180000, 18000, 2000};
  Generator gen(99);
  const double t = 1e-2;
  auto kept = nn::subsample(ids, counts, t, gen);
  std::vector<double> k(3, 0);
  for (auto id : kept) k[std::size_t(id)] += 1;
  for (std::size_t i = 0; i < 3; ++i) {
    const double p = std::min(1.0, std::sqrt(t / (double(counts[i]) / 200000.0)));
    const double n = double(counts[i]), sigma = std::sqrt(p * (1 - p) / n);
    BOOST_TEST(std::abs(k[i] / n - p) <= 5 * sigma + 1e-12, "id " << i << ": kept " << k[i] / n << ", expected " << p);
  }
  BOOST_TEST(k[2] == 2000.0);  // f = t: kept with probability 1
  BOOST_TEST(k[0] / 180000.0 < 0.12);  // the frequent word is thinned to about 10.5%
}

BOOST_AUTO_TEST_CASE(vocabulary_from_tokens) {
  const std::vector<std::string> toks = {"the", "cat", "sat", "on", "the", "mat", "the", "cat", "ran"};
  auto v = nn::Word2VecVocabulary::build(toks);
  BOOST_TEST(v.size() == 6u);
  BOOST_TEST(v.word(0) == "the");
  BOOST_TEST(v.word(1) == "cat");
  BOOST_TEST(v.word(2) == "sat");  // ties in first-appearance order
  BOOST_TEST(v.word(5) == "ran");
  BOOST_TEST(v.counts()[0] == 3);
  BOOST_TEST(v.total() == 9);
  BOOST_TEST(v.id("mat") == 4);
  BOOST_TEST((v.encode({"the", "dog", "ran"}) == std::vector<std::int64_t>{0, 5}));
  auto v2 = nn::Word2VecVocabulary::build(toks, 2);
  BOOST_TEST(v2.size() == 2u);
  BOOST_TEST(v2.total() == 5);
  BOOST_TEST(!v2.contains("sat"));
  expect_error([&] { v2.id("sat"); }, {"Word2VecVocabulary::id", "\"sat\"", "2 words"});
  expect_error([&] { v2.word(2); }, {"Word2VecVocabulary::word", "id 2", "[0, 2)"});
}

BOOST_AUTO_TEST_CASE(training_examples) {
  auto sg = nn::skipgram_pairs({10, 11, 12, 13}, 1);
  BOOST_TEST((sg.center.values == std::vector<std::int64_t>{10, 11, 11, 12, 12, 13}));
  BOOST_TEST((sg.context.values == std::vector<std::int64_t>{11, 10, 12, 11, 13, 12}));
  BOOST_TEST(nn::skipgram_pairs({1, 2, 3, 4, 5}, 2).center.values.size() == 14u);
  auto cb = nn::cbow_examples({10, 11, 12, 13, 14}, 2);
  BOOST_TEST(cb.contexts.shape == (Shape{1, 4}));
  BOOST_TEST((cb.contexts.values == std::vector<std::int64_t>{10, 11, 13, 14}));
  BOOST_TEST((cb.target.values == std::vector<std::int64_t>{12}));
  BOOST_TEST(nn::cbow_examples({1, 2, 3}, 2).target.values.empty());
  expect_error([] { nn::skipgram_pairs({1, 2}, 0); }, {"skipgram_pairs", "window"});
}

BOOST_AUTO_TEST_CASE(nearest_and_analogy_by_cosine) {
  // man, woman, king, queen, apple: king - man + woman = queen exactly.
  Tensor E = from_values({1, 0, 0, 1, 1, 0, 1, 0, 1, 1, 1, 1, 0, 0, -1}, {5, 3}, DType::f64);
  const std::int64_t man = 0, woman = 1, king = 2, queen = 3, apple = 4;
  BOOST_TEST(std::abs(nn::cosine_similarity(E, man, king) - 1 / std::sqrt(2.0)) <= 1e-15);
  auto nb = nn::nearest(E, king, 2);
  BOOST_TEST(nb.size() == 2u);
  BOOST_TEST(nb[0].id == queen);  // cos = 2/sqrt(6) = 0.816 > man's 0.707
  BOOST_TEST(nb[1].id == man);
  BOOST_TEST(nb[0].similarity >= nb[1].similarity);
  auto an = nn::analogy(E, man, king, woman, 1);
  BOOST_TEST(an.size() == 1u);
  BOOST_TEST(an[0].id == queen);
  BOOST_TEST(nn::analogy(E, man, woman, king, 1)[0].id == queen);
  auto q = nn::nearest(E, std::vector<double>{0, 0, -2}, 1);
  BOOST_TEST(q[0].id == apple);
  BOOST_TEST(std::abs(q[0].similarity - 1.0) <= 1e-15);
  BOOST_TEST(nn::nearest(E, man, 10).size() == 4u);  // all but the word itself
  expect_error([&] { nn::nearest(E, 5, 1); }, {"nearest", "id 5", "(5, 3)"});
  expect_error([&] { nn::nearest(E, std::vector<double>{1, 2}, 1); }, {"nearest", "2 values", "(5, 3)"});
  expect_error([&] { nn::analogy(E, 0, -1, 2, 1); }, {"analogy", "id -1"});
}

BOOST_AUTO_TEST_CASE(neighbour_agreement_counts_neighbours_with_the_same_label) {
  // Rows 0, 1 point along x, rows 2, 3 along y, row 4 along x too; row 5 is zero (cosine 0 with all).
  Tensor E = from_values({1, 0, 0.9, 0.1, 0, 1, 0.1, 0.9, 2, 0.05, 0, 0}, {6, 2}, DType::f64);
  const std::vector<std::int64_t> four = {0, 1, 2, 3};
  BOOST_TEST(nn::neighbour_agreement(E, four, {7, 7, 9, 9}, 1) == 1.0);
  BOOST_TEST(nn::neighbour_agreement(E, four, {7, 9, 7, 9}, 1) == 0.0);
  // k = 2: the nearest has the same label, the second (the other axis's closer row) not.
  BOOST_TEST(nn::neighbour_agreement(E, four, {7, 7, 9, 9}, 2) == 0.5);
  // Only the listed rows are neighbours: among {0, 2, 4}, 0 and 4 find each other; 2 finds 4 (cos 0.025 > 0).
  BOOST_TEST(std::abs(nn::neighbour_agreement(E, {0, 2, 4}, {1, 2, 1}, 1) - 2.0 / 3.0) <= 1e-15);
  BOOST_TEST(nn::neighbour_agreement(E, {0, 2, 4}, {1, 2, 2}, 1) == 1.0 / 3.0);
  BOOST_TEST(nn::neighbour_agreement(E, {0, 5, 4}, {1, 1, 1}, 2) == 1.0);  // a zero row is a neighbour like any
  expect_error([&] { nn::neighbour_agreement(E, four, {1, 2, 3}, 1); }, {"neighbour_agreement", "4 ids but 3 labels"});
  expect_error([&] { nn::neighbour_agreement(E, four, {1, 1, 1, 1}, 4); }, {"neighbour_agreement", "k = 4", "(4)"});
  expect_error([&] { nn::neighbour_agreement(E, four, {1, 1, 1, 1}, 0); }, {"neighbour_agreement", "k = 0"});
  expect_error([&] { nn::neighbour_agreement(E, {0, 6}, {1, 1}, 1); }, {"neighbour_agreement", "id 6", "(6, 2)"});
}

BOOST_AUTO_TEST_CASE(training_lowers_the_loss) {
  // Two interleaved "topics": words 0-3 co-occur, words 4-7 co-occur.
  std::vector<std::int64_t> ids;
  Generator data(3);
  for (int s = 0; s < 60; ++s) {
    const std::int64_t base = (s % 2) * 4;
    for (int k = 0; k < 6; ++k) ids.push_back(base + std::int64_t(data.below(4)));
  }
  std::vector<std::int64_t> counts(8, 0);
  for (auto id : ids) ++counts[std::size_t(id)];
  Generator gen(4);
  nn::Word2Vec model(8, 6, gen, DType::f64);
  BOOST_TEST(model.parameters().size() == 2u);
  nn::NegativeSampler sampler(counts);
  auto pairs = nn::skipgram_pairs(ids, 2);
  double first = 0, last = 0;
  for (int step = 0; step < 60; ++step) {
    Index negs = sampler.sample_avoiding(pairs.context.values, 3, gen);
    Tensor loss = model.skipgram_loss(pairs.center, pairs.context, negs);
    if (step == 0) first = loss.item();
    last = loss.item();
    model.zero_grad();
    backward(loss);
    for (Tensor p : model.parameters()) {
      double* v = p.data<double>();
      const double* g = p.grad().data<double>();
      for (std::size_t i = 0; i < p.numel(); ++i) v[i] -= 1.0 * g[i];
    }
  }
  BOOST_TEST(last < 0.8 * first, "loss " << first << " -> " << last);
  // Words of the same topic end up closer than words of the other topic.
  BOOST_TEST(nn::cosine_similarity(model.w_in, 0, 1) > nn::cosine_similarity(model.w_in, 0, 5));
}

BOOST_AUTO_TEST_CASE(bad_input_is_an_error) {
  Tensor a = zeros({5, 3}, DType::f64), b = zeros({5, 4}, DType::f64);
  Index c({0, 1}), o({2, 3}), negs({1, 2, 3, 4}, {2, 2});
  expect_error([&] { nn::skipgram_loss(a, b, c, o, negs); }, {"skipgram_loss", "w_in (5, 3)", "w_out (5, 4)"});
  expect_error([&] { nn::skipgram_loss(a, a, c, Index({1, 2, 3}), negs); }, {"skipgram_loss", "context (3,)", "(N = 2)"});
  expect_error([&] { nn::skipgram_loss(a, a, c, o, Index({1, 2})); }, {"skipgram_loss", "negatives (2,)", "(N, K)"});
  expect_error([&] { nn::skipgram_loss(a, a, Index({0, 5}), o, negs); }, {"skipgram_loss", "center id 5", "[0, 5)"});
  expect_error([&] { nn::skipgram_loss(a, a, c, o, Index({1, 2, 3, -1}, {2, 2})); }, {"skipgram_loss", "negatives id -1"});
  expect_error([&] { nn::cbow_loss(a, a, Index({0, 1, 2}, {3}), o, negs); }, {"cbow_loss", "contexts (3,)"});
  expect_error([&] { nn::cbow_loss(a, a, Index({0, 1, 2, 3}, {2, 2}), Index({1}), negs); }, {"cbow_loss", "target (1,)"});
  expect_error([] { nn::NegativeSampler({0, 0}); }, {"NegativeSampler", "zero"});
  expect_error([] { nn::NegativeSampler({3, -1}); }, {"NegativeSampler", "negative"});
  expect_error([] { nn::NegativeSampler(std::vector<std::int64_t>{}); }, {"NegativeSampler", "no counts"});
  Generator gen(1);
  expect_error([&] { nn::NegativeSampler({4, 0}).sample_avoiding({0}, 2, gen); }, {"sample_avoiding", "id 0", "only word"});
  expect_error([&] { nn::subsample({0, 3}, {5, 5, 5}, 1e-3, gen); }, {"subsample", "id 3", "[0, 3)"});
  expect_error([] { nn::keep_probability(0, 10, 1e-3); }, {"keep_probability", "count 0"});
  expect_error([&] { nn::Word2Vec(0, 3, gen); }, {"Word2Vec", "vocab 0"});
}

BOOST_AUTO_TEST_SUITE_END()
