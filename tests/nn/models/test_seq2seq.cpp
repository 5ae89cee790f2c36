// nn/models/seq2seq: gradient checks of the teacher-forcing loss, masking, peeky/reversed/attention variants,
// generation, a tiny copy task, bad inputs.
#include <boost/test/unit_test.hpp>

#include <cmath>

#include <tapegrad/nn/training/optim.hpp>
#include <tapegrad/nn/models/seq2seq.hpp>

#include "support/xt.hpp"

using namespace tapegrad;
using namespace tapegrad::nn;
using namespace tapegrad::test;

namespace {
constexpr std::int64_t BOS = Tokenizer::bos_id, EOS = Tokenizer::eos_id;

// A source (S, B) batch with padding, its mask, and a <bos> .. <eos> target batch.
struct Batch {
  PaddedBatch src, tgt;
};
Batch tiny_batch(DType dtype = DType::f64) {
  return {pad_batch({{4, 5, 6}, {7, 4}}, dtype), pad_batch({{BOS, 5, 4, EOS}, {BOS, 6, EOS}}, dtype)};
}

GradcheckOptions random_directions() {
  GradcheckOptions o;
  o.full_jacobian_max = 0;  // every parameter by random directions
  o.directions = 3;
  return o;
}
}  // namespace

BOOST_AUTO_TEST_SUITE(seq2seq)

BOOST_AUTO_TEST_CASE(gradcheck_loss_all_parameters) {
  struct Variant {
    const char* name;
    Seq2SeqConfig config;
    bool masked;
  };
  auto cfg = [](CellType cell, bool peeky, bool reverse, AttentionKind att) {
    Seq2SeqConfig c;
    c.src_vocab = 8, c.tgt_vocab = 7, c.embed = 3, c.hidden = 4;
    c.cell = cell, c.peeky = peeky, c.reverse_input = reverse, c.attention = att;
    return c;
  };
  const std::vector<Variant> variants = {
      {"lstm plain", cfg(CellType::lstm, false, false, AttentionKind::none), false},
      {"lstm peeky reversed masked", cfg(CellType::lstm, true, true, AttentionKind::none), true},
      {"gru dot attention masked", cfg(CellType::gru, false, false, AttentionKind::dot), true},
      {"rnn additive attention peeky reversed masked", cfg(CellType::rnn, true, true, AttentionKind::additive), true},
      {"lstm general attention", cfg(CellType::lstm, false, false, AttentionKind::general), false},
  };
  const Batch b = tiny_batch();
  for (const auto& v : variants) {
    Generator gen(11);
    Seq2Seq model(v.config, gen, DType::f64);
    const Tensor mask = v.masked ? b.src.mask : Tensor();
    auto r = gradcheck([&](const std::vector<Tensor>&) { return model.loss(b.src.ids, b.tgt.ids, mask); },
                       model.parameters(), random_directions());
    BOOST_TEST(r.ok, v.name << ": " << r.message);
    BOOST_TEST(r.checks == 3 * model.parameters().size(), v.name);
  }
}

BOOST_AUTO_TEST_CASE(padding_changes_nothing) {
  Generator gen(12);
  for (bool reverse : {false, true}) {
    Encoder enc(8, 3, 4, gen, CellType::lstm, reverse, DType::f64);
    Decoder dec(7, 3, 4, gen, CellType::lstm, false, DType::f64);
    const Batch b = tiny_batch();
    const EncoderOutput both = enc(b.src.ids, b.src.mask);
    // Sequence 1 alone, unpadded: the same thought vector.
    const EncoderOutput one = enc(Index({7, 4}, {2, 1}));
    const auto h2 = to_xt(both.thought.h), c2 = to_xt(both.thought.c), h1 = to_xt(one.thought.h), c1 = to_xt(one.thought.c);
    for (std::size_t k = 0; k < 4; ++k) {
      BOOST_TEST(std::abs(h2(1, k) - h1(0, k)) < 1e-14, "reverse " << reverse);
      BOOST_TEST(std::abs(c2(1, k) - c1(0, k)) < 1e-14, "reverse " << reverse);
    }
    // The loss over a padded target batch is the token-weighted mean of the per-sequence losses.
    std::size_t n_both = 0, n0 = 0, n1 = 0;
    const double l_both = dec.loss(b.tgt.ids, both, &n_both).item();
    EncoderOutput e0{Tensor(), {slice(both.thought.h, 0, 0, 1), slice(both.thought.c, 0, 0, 1)}, Tensor()};
    EncoderOutput e1{Tensor(), {slice(both.thought.h, 0, 1, 2), slice(both.thought.c, 0, 1, 2)}, Tensor()};
    const double l0 = dec.loss(Index({BOS, 5, 4, EOS}, {4, 1}), e0, &n0).item();
    const double l1 = dec.loss(Index({BOS, 6, EOS}, {3, 1}), e1, &n1).item();
    BOOST_TEST(n_both == 5u);
    BOOST_TEST(n0 == 3u);
    BOOST_TEST(n1 == 2u);
    BOOST_TEST(std::abs(l_both - (3 * l0 + 2 * l1) / 5) < 1e-13);
  }
}

BOOST_AUTO_TEST_CASE(peeky_and_reverse_shapes) {
  Generator gen(13);
  Seq2SeqConfig c;
  c.src_vocab = 8, c.tgt_vocab = 7, c.embed = 3, c.hidden = 4, c.peeky = true, c.reverse_input = true;
  Seq2Seq model(c, gen, DType::f64);
  BOOST_TEST(model.decoder->cell->input_size() == 3u + 4u);  // embedding + thought vector
  BOOST_TEST(model.decoder->out.W.size(0) == 4u + 4u);      // decoder state + thought vector
  // Reversed input: the encoder reads the source backwards, so reversing the ids gives the plain encoder's
  // thought vector from a reverse-reading one with the same weights.
  Encoder fwd(8, 3, 4, gen, CellType::gru, false, DType::f64);
  Encoder rev(8, 3, 4, gen, CellType::gru, true, DType::f64);
  const auto pf = fwd.parameters();
  auto pr = rev.parameters();
  for (std::size_t k = 0; k < pf.size(); ++k) std::copy_n(pf[k].data<double>(), pf[k].numel(), pr[k].data<double>());
  const auto a = fwd(Index({4, 5, 6}, {3, 1})), r = rev(Index({6, 5, 4}, {3, 1}));
  BOOST_TEST(max_abs_diff(a.thought.h, to_xt(r.thought.h)) < 1e-15);
  BOOST_TEST(a.states.shape() == (Shape{1, 3, 4}));  // (B, S, H)
  const auto names = model.named_parameters();
  BOOST_TEST(names.front().first == "encoder.embed.weight");
}

BOOST_AUTO_TEST_CASE(attention_weights_for_plotting) {
  Generator gen(14);
  Seq2SeqConfig c;
  c.src_vocab = 8, c.tgt_vocab = 7, c.embed = 3, c.hidden = 4, c.attention = AttentionKind::additive;
  Seq2Seq model(c, gen, DType::f64);
  const Batch b = tiny_batch();
  auto* dec = dynamic_cast<AttentionDecoder*>(model.decoder.get());
  BOOST_REQUIRE(dec != nullptr);
  // Teacher forcing exposes (T, B, S) weights; masked source positions get 0.
  const auto enc = model.encode(b.src.ids, b.src.mask);
  auto res = dec->forward(Index({BOS, 5, 4, BOS, 6, EOS}, {3, 2}), enc);
  BOOST_TEST(res.attention.shape() == (Shape{3, 2, 3}));
  const auto w = to_xt(res.attention);
  for (std::size_t t = 0; t < 3; ++t) {
    BOOST_TEST(w(t, 1, 2) == 0.0);  // sequence 1 has two source tokens
    BOOST_TEST(std::abs(w(t, 0, 0) + w(t, 0, 1) + w(t, 0, 2) - 1.0) < 1e-14);
  }
  GenerateOptions o;
  o.max_length = 5;
  Generated g = model.generate(b.src.ids, o, b.src.mask);
  BOOST_TEST(g.attention.defined());
  BOOST_TEST(g.attention.size(1) == 2u);
  BOOST_TEST(g.attention.size(2) == 3u);
  Tensor m = attention_map(g.attention, 1);
  BOOST_TEST(m.shape() == (Shape{g.attention.size(0), 3}));
  for (std::size_t t = 0; t < m.size(0); ++t) BOOST_TEST(m.at({t, 2}) == 0.0);
  BOOST_TEST(!g.attention.requires_grad());  // generation is off the tape
}

BOOST_AUTO_TEST_CASE(sampling_is_seeded_and_cold_sampling_is_greedy) {
  Generator gen(15);
  Seq2SeqConfig c;
  c.src_vocab = 8, c.tgt_vocab = 7, c.embed = 3, c.hidden = 4;
  Seq2Seq model(c, gen, DType::f64);
  const Batch b = tiny_batch();
  GenerateOptions greedy;
  greedy.max_length = 6;
  GenerateOptions sampled = greedy;
  sampled.sample = true;
  Generator g1(5), g2(5);
  const auto s1 = model.generate(b.src.ids, sampled, b.src.mask, &g1).ids;
  const auto s2 = model.generate(b.src.ids, sampled, b.src.mask, &g2).ids;
  BOOST_TEST(s1 == s2);
  sampled.temperature = 1e-6;
  const auto cold = model.generate(b.src.ids, sampled, b.src.mask, &g1).ids;
  const auto gr = model.generate(b.src.ids, greedy, b.src.mask).ids;
  BOOST_TEST(cold == gr);
  for (const auto& row : gr) BOOST_TEST(row.size() <= 6u);
  // A hot sampler varies: 20 draws of a 6-token output are not all equal.
  sampled.temperature = 5.0;
  bool varied = false;
  for (int k = 0; k < 20 && !varied; ++k) varied = model.generate(b.src.ids, sampled, b.src.mask, &g1).ids != s1;
  BOOST_TEST(varied);
}

BOOST_AUTO_TEST_CASE(copy_task_trains_and_greedy_decodes) {
  // Copy sequences of 3 symbols (ids 4..9): a reversed-input LSTM encoder-decoder, float32, Adam.
  Generator gen(16);
  std::vector<std::vector<std::int64_t>> srcs, tgts;
  for (int n = 0; n < 24; ++n) {
    std::vector<std::int64_t> s;
    for (int k = 0; k < 3; ++k) s.push_back(4 + static_cast<std::int64_t>(gen.below(6)));
    srcs.push_back(s);
    std::vector<std::int64_t> t{BOS};
    t.insert(t.end(), s.begin(), s.end());
    t.push_back(EOS);
    tgts.push_back(t);
  }
  const PaddedBatch src = pad_batch(srcs), tgt = pad_batch(tgts);
  Seq2SeqConfig c;
  c.src_vocab = c.tgt_vocab = 10, c.embed = 8, c.hidden = 24, c.reverse_input = true;
  Seq2Seq model(c, gen);
  Adam opt(model.parameters(), 0.02);
  double first = 0, last = 0;
  for (int step = 0; step < 250; ++step) {
    Tensor l = model.loss(src.ids, tgt.ids);
    if (step == 0) first = l.item();
    last = l.item();
    backward(l);
    opt.step();
    opt.zero_grad();
  }
  BOOST_TEST_MESSAGE("copy task: loss " << first << " -> " << last);
  BOOST_TEST(last < 0.05);
  const auto out = model.generate(src.ids).ids;
  std::size_t correct = 0;
  for (std::size_t n = 0; n < srcs.size(); ++n) correct += out[n] == srcs[n];
  BOOST_TEST(correct == srcs.size());
}

BOOST_AUTO_TEST_CASE(bad_inputs_are_errors) {
  Generator gen(17);
  Seq2SeqConfig c;
  c.src_vocab = 8, c.tgt_vocab = 7, c.embed = 3, c.hidden = 4;
  Seq2Seq model(c, gen, DType::f64);
  const Batch b = tiny_batch();
  expect_error([&] { model.loss(Index({4, 5, 8, 6}, {2, 2}), b.tgt.ids); },
               {"Encoder", "token id 8", "(t=1, b=0)", "(2, 2)", "[0, 8)"});
  expect_error([&] { model.loss(b.src.ids, Index({BOS, BOS, 5, 4, 7, EOS}, {3, 2})); },
               {"Decoder::loss", "token id 7", "(t=2, b=0)", "(3, 2)", "[0, 7)"});
  expect_error([&] { model.decoder->loss(Index({BOS, -1}, {1, 2}), Index({4, 5}, {1, 2}), model.encode(b.src.ids), nullptr, 0); },
               {"Decoder", "token id -1", "(t=0, b=1)"});
  expect_error([&] { model.loss(Index({}, {0, 2}), b.tgt.ids); }, {"Encoder", "empty sequence", "(0, 2)"});
  expect_error([&] { model.loss(Index({4, 5, 6}), b.tgt.ids); }, {"Encoder", "(3,)", "(T, B)"});
  expect_error([&] { model.loss(b.src.ids, b.tgt.ids, ones({2, 3}, DType::f64)); }, {"Encoder", "mask (2, 3)", "(3, 2)"});
  expect_error([&] { model.loss(b.src.ids, b.tgt.ids, from_values({1, 0, 1, 0, 1, 0}, {3, 2}, DType::f64)); },
               {"Encoder", "sequence 1 is empty"});
  expect_error([&] { model.loss(b.src.ids, Index({BOS, BOS}, {1, 2})); }, {"Decoder::loss", "(1, 2)", "T >= 2"});
  expect_error([&] { model.loss(b.src.ids, Index({BOS, BOS, 0, 0}, {2, 2})); }, {"Decoder::loss", "every target", "<pad>"});
  expect_error([&] { model.loss(b.src.ids, Index({BOS, 4, EOS}, {3, 1})); }, {"Seq2Seq::loss", "(3, 2)", "(3, 1)"});
  GenerateOptions o;
  o.sample = true;
  expect_error([&] { model.generate(b.src.ids, o); }, {"Decoder::generate", "Generator"});
  o.temperature = 0;
  Generator g(1);
  expect_error([&] { model.generate(b.src.ids, o, Tensor(), &g); }, {"Decoder::generate", "temperature"});
  expect_error([&] { AttentionDecoder(7, 3, 4, 5, gen, AttentionKind::dot); }, {"AttentionDecoder", "dot", "5", "4"});
  // A thought vector of the wrong size for the decoder.
  EncoderOutput bad{Tensor(), {zeros({2, 5}, DType::f64), zeros({2, 5}, DType::f64)}, Tensor()};
  expect_error([&] { model.decoder->loss(b.tgt.ids, bad); }, {"Decoder", "thought vector", "(2, 5)"});
  expect_error([&] { attention_map(zeros({2, 3}), 0); }, {"attention_map", "(2, 3)"});
}

BOOST_AUTO_TEST_SUITE_END()
