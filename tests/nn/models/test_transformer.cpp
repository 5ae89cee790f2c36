// nn/models/transformer: the six conformance cases (PyTorch 1.13, float64) loaded by state-dict name, gradient
// checks of every module at other shapes, masks, the cached decoder step against the whole sequence,
// greedy decoding with and without the cache, interchange round trips, bad inputs.
#include <boost/test/unit_test.hpp>

#include <cmath>
#include <cstring>
#include <functional>

#include <tapegrad/nn/models/transformer.hpp>

#include "support/conformance.hpp"
#include "support/xt.hpp"

using namespace tapegrad;
using namespace tapegrad::nn;
using namespace tapegrad::test;

namespace {

Tensor rnd(const Shape& s, Generator& g, double std = 0.8) { return parameter(randn(s, g, std, DType::f64)); }

// A case's int64 mask as a float64 constant (nonzero = masked out).
Tensor mask_of(const ConformanceCase& c, const std::string& key) {
  const auto& v = c.ints.at(key);
  return from_values(std::vector<double>(v.begin(), v.end()), c.int_shapes.at(key), DType::f64);
}

std::string key_of(std::string name) {
  for (char& ch : name)
    if (ch == '.') ch = '_';
  return name;
}

// Loads the case's parameters into `m` by state-dict name, runs `forward` on the case, and checks the
// outputs, then the gradients of L = sum_k sum(out_k * dout_k) with respect to the module's parameters
// (grad_<name>) and the case's other inputs, at the suite's tolerances.
void check_module_case(const std::string& name, Module& m,
                       const std::function<std::map<std::string, Tensor>(const ConformanceCase&)>& forward) {
  auto c = load_case(name);
  load_state_dict(m, c.in);
  const auto outs = forward(c);
  Agreement agg;
  BOOST_TEST(outs.size() == c.out.size(), name << ": outputs computed " << outs.size());
  Tensor loss;
  for (const auto& [key, expected] : c.out) {
    close(outs.at(key), expected, name + " out_" + key, agg);
    Tensor term = sum(outs.at(key) * c.dout.at(key));
    loss = loss.defined() ? loss + term : term;
  }
  std::map<std::string, Tensor> params;
  for (const auto& [n, p] : m.named_parameters()) params[key_of(n)] = p;
  std::vector<std::string> keys;
  std::vector<Tensor> xs;
  for (const auto& [key, g] : c.grad) {
    keys.push_back(key);
    xs.push_back(params.count(key) ? params.at(key) : c.in.at(key));
  }
  BOOST_TEST(keys.size() == c.in.size(), name << ": the case has no gradient for some input");
  for (const auto& [key, p] : params) BOOST_TEST(c.grad.count(key) == 1u, name << ": parameter " << key << " not in the case");
  const auto gs = grad(loss, xs);
  for (std::size_t k = 0; k < xs.size(); ++k) close(gs[k], c.grad.at(keys[k]), name + " grad_" + keys[k], agg);
  BOOST_TEST_MESSAGE("conformance " << name << ": worst relative error " << agg.worst_rel << " (" << agg.where << ")");
  BOOST_TEST(agg.ok(), name);
}

void expect_gradcheck(const Function& f, const std::vector<Tensor>& in, const std::string& what, std::size_t full_max = 64) {
  GradcheckOptions o;
  o.full_jacobian_max = full_max;  // larger inputs: random directions
  GradcheckResult r = gradcheck(f, in, o);
  BOOST_TEST(r.ok, what << ": " << r.message);
  BOOST_TEST(r.checks > 0u, what << ": no comparisons made");
}

// The module's parameters followed by `extra`, all as gradcheck inputs (perturbed in place).
std::vector<Tensor> with_params(const Module& m, std::vector<Tensor> extra) {
  std::vector<Tensor> v = m.parameters();
  v.insert(v.end(), extra.begin(), extra.end());
  return v;
}

// Random biases and layer-norm weights (they start at 0 and 1): the checks then see every term.
void randomize(Module& m, Generator& g) {
  NoGrad no_grad;
  for (auto& [n, p] : m.named_parameters()) {
    Tensor r = randn(p.shape(), g, 0.5, DType::f64);
    if (n.find("norm") != std::string::npos && n.find("weight") != std::string::npos) r = r + 1.0;
    std::memcpy(p.raw_data(), r.raw_data(), p.numel() * 8);
  }
}

TransformerLayerConfig small_layer(bool norm_first) {
  TransformerLayerConfig c;
  c.d_model = 6, c.nhead = 3, c.dim_feedforward = 7, c.dropout = 0.0, c.norm_first = norm_first;
  return c;
}

}  // namespace

BOOST_AUTO_TEST_SUITE(transformer)

// ---- conformance ----------------------------------------------------------------------------------

BOOST_AUTO_TEST_CASE(conformance_layer_norm_module) {
  LayerNorm norm(8, 1e-5, DType::f64);
  auto c = load_case("layer_norm");
  // The case names its parameters gamma and beta (the functional form): bind them by hand.
  load_state_dict(norm, {{"weight", c.in.at("gamma")}, {"bias", c.in.at("beta")}});
  BOOST_TEST(check_case(c, {{"y", layer_norm(c.in.at("x"), c.in.at("gamma"), c.in.at("beta"))}}).ok());
  NoGrad no_grad;
  BOOST_TEST(max_abs_diff(norm(c.in.at("x")), to_xt(c.out.at("y"))) < 1e-12);
}

BOOST_AUTO_TEST_CASE(conformance_positional_encoding) {
  auto c = load_case("positional_encoding");
  const Tensor& x = c.in.at("x");
  BOOST_TEST(max_abs_diff(sinusoidal_positions(x.size(1), x.size(2), DType::f64), to_xt(c.consts.at("pe"))) < 1e-12);
  BOOST_TEST(check_case(c, {{"y", add_positions(x)}}).ok());
}

BOOST_AUTO_TEST_CASE(conformance_mha_self_causal) {
  Generator g(1);
  MultiheadAttention mha(8, 2, g, 0.0, DType::f64);
  // Given as the case's mask, and as the causal flag: the same values.
  check_module_case("mha_self_causal", mha, [&](const ConformanceCase& c) {
    AttentionMasks m;
    m.attn_mask = mask_of(c, "causal");
    const Tensor& x = c.in.at("x");
    return std::map<std::string, Tensor>{{"out", mha(x, x, x, m).out}};
  });
  check_module_case("mha_self_causal", mha, [&](const ConformanceCase& c) {
    AttentionMasks m;
    m.causal = true;
    const Tensor& x = c.in.at("x");
    return std::map<std::string, Tensor>{{"out", mha(x, x, x, m).out}};
  });
}

BOOST_AUTO_TEST_CASE(conformance_mha_cross_padded) {
  Generator g(2);
  MultiheadAttention mha(8, 2, g, 0.0, DType::f64);
  check_module_case("mha_cross_padded", mha, [&](const ConformanceCase& c) {
    AttentionMasks m;
    m.key_padding_mask = mask_of(c, "key_padding_mask");
    const Tensor& mem = c.in.at("memory");
    AttentionResult r = mha(c.in.at("q"), mem, mem, m, AttentionWeights::averaged);
    return std::map<std::string, Tensor>{{"out", r.out}, {"weights", r.weights}};
  });
  // The padding mask agrees with the lengths, and padded keys get weight exactly 0.
  auto c = load_case("mha_cross_padded");
  const auto& pm = c.ints.at("key_padding_mask");
  const auto& len = c.ints.at("lengths");
  const std::size_t Tk = c.int_shapes.at("key_padding_mask")[1];
  for (std::size_t b = 0; b < len.size(); ++b)
    for (std::size_t s = 0; s < Tk; ++s) BOOST_TEST(pm[b * Tk + s] == (std::int64_t(s) >= len[b] ? 1 : 0));
}

BOOST_AUTO_TEST_CASE(conformance_transformer_encoder_layer) {
  Generator g(3);
  TransformerLayerConfig cfg;
  cfg.d_model = 8, cfg.nhead = 2, cfg.dim_feedforward = 16, cfg.dropout = 0.0;
  TransformerEncoderLayer layer(cfg, g, DType::f64);
  check_module_case("transformer_encoder_layer", layer, [&](const ConformanceCase& c) {
    return std::map<std::string, Tensor>{{"y", layer(c.in.at("x"))}};
  });
}

BOOST_AUTO_TEST_CASE(conformance_transformer_decoder_layer) {
  Generator g(4);
  TransformerLayerConfig cfg;
  cfg.d_model = 8, cfg.nhead = 2, cfg.dim_feedforward = 16, cfg.dropout = 0.0;
  TransformerDecoderLayer layer(cfg, g, DType::f64);
  check_module_case("transformer_decoder_layer", layer, [&](const ConformanceCase& c) {
    // The case's self-attention mask is the causal one.
    const auto& cm = c.ints.at("causal");
    const std::size_t T = c.int_shapes.at("causal")[0];
    for (std::size_t t = 0; t < T; ++t)
      for (std::size_t s = 0; s < T; ++s) BOOST_TEST(cm[t * T + s] == (s > t ? 1 : 0));
    return std::map<std::string, Tensor>{
        {"y", layer(c.in.at("x"), c.in.at("memory"), true, mask_of(c, "key_padding_mask"))}};
  });
}

// ---- gradient checks at other shapes ----------------------------------------------------------------

BOOST_AUTO_TEST_CASE(mha_gradcheck_masks_and_weights) {
  Generator g(10);
  MultiheadAttention mha(6, 3, g, 0.0, DType::f64);
  randomize(mha, g);
  const Tensor q = rnd({2, 3, 6}, g), mem = rnd({2, 4, 6}, g);
  AttentionMasks self;
  self.causal = true;
  expect_gradcheck([&](const std::vector<Tensor>& v) { return mha(v[4], v[4], v[4], self).out; },
                   with_params(mha, {q}), "self-attention, causal");
  AttentionMasks cross;
  cross.key_padding_mask = from_values({0, 0, 1, 1, 0, 0, 0, 0}, {2, 4}, DType::f64);
  cross.attn_mask = from_values({0, 0, 0, 1, 0, 1, 0, 0, 0, 0, 0, 0}, {3, 4}, DType::f64);
  expect_gradcheck([&](const std::vector<Tensor>& v) { return mha(v[4], v[5], v[5], cross).out; },
                   with_params(mha, {q, mem}), "cross-attention, padding and attn_mask");
  expect_gradcheck([&](const std::vector<Tensor>& v) { return mha(v[4], v[5], v[5], cross, AttentionWeights::averaged).weights; },
                   with_params(mha, {q, mem}), "averaged weights");
  expect_gradcheck([&](const std::vector<Tensor>& v) { return mha(v[4], v[5], v[6], {}, AttentionWeights::per_head).weights; },
                   with_params(mha, {q, mem, rnd({2, 4, 6}, g)}), "per-head weights, key != value");
  // One head, and a single query position.
  MultiheadAttention one(4, 1, g, 0.0, DType::f64);
  randomize(one, g);
  expect_gradcheck([&](const std::vector<Tensor>& v) { return one(v[4], v[5], v[5]).out; },
                   with_params(one, {rnd({3, 1, 4}, g), rnd({3, 2, 4}, g)}), "one head, one query");
}

BOOST_AUTO_TEST_CASE(mha_masked_keys_get_no_weight) {
  Generator g(11);
  MultiheadAttention mha(4, 2, g, 0.0, DType::f64);
  randomize(mha, g);
  const Tensor x = randn({2, 3, 4}, g, 1.0, DType::f64), mem = randn({2, 5, 4}, g, 1.0, DType::f64);
  AttentionMasks m;
  m.key_padding_mask = from_values({0, 0, 0, 1, 1, 0, 1, 0, 0, 0}, {2, 5}, DType::f64);
  const Tensor w = mha(x, mem, mem, m, AttentionWeights::per_head).weights;  // (2, 2, 3, 5)
  BOOST_TEST(w.shape() == (Shape{2, 2, 3, 5}));
  for (std::size_t h = 0; h < 2; ++h)
    for (std::size_t t = 0; t < 3; ++t) {
      BOOST_TEST(w.at({0, h, t, 3}) == 0.0);
      BOOST_TEST(w.at({0, h, t, 4}) == 0.0);
      BOOST_TEST(w.at({1, h, t, 1}) == 0.0);
      double s = 0;
      for (std::size_t k = 0; k < 5; ++k) s += w.at({1, h, t, k});
      BOOST_TEST(s == 1.0, boost::test_tools::tolerance(1e-14));
    }
  // Changing a padded key's values changes nothing.
  Tensor mem2 = mem.detach().to(DType::f64);
  mem2.data<double>()[(0 * 5 + 4) * 4 + 1] += 10.0;
  BOOST_TEST(max_abs_diff(mha(x, mem2, mem2, m).out, to_xt(mha(x, mem, mem, m).out)) < 1e-15);
  // Causal: position 0's output does not depend on later positions.
  AttentionMasks c;
  c.causal = true;
  Tensor x2 = x.detach().to(DType::f64);
  x2.data<double>()[(0 * 3 + 2) * 4 + 0] += 5.0;
  const auto a = to_xt(mha(x, x, x, c).out), b = to_xt(mha(x2, x2, x2, c).out);
  for (std::size_t t = 0; t < 2; ++t)
    for (std::size_t e = 0; e < 4; ++e) BOOST_TEST(std::abs(a(0, t, e) - b(0, t, e)) < 1e-15);
}

BOOST_AUTO_TEST_CASE(layers_gradcheck_post_and_pre_norm) {
  for (bool pre : {false, true}) {
    Generator g(pre ? 21 : 20);
    const std::string form = pre ? "pre-norm" : "post-norm";
    TransformerEncoderLayer enc(small_layer(pre), g, DType::f64);
    randomize(enc, g);
    const Tensor pad = from_values({0, 0, 0, 0, 0, 1}, {2, 3}, DType::f64);
    const std::size_t ne = enc.parameters().size();
    expect_gradcheck([&](const std::vector<Tensor>& v) { return enc(v[ne], pad); }, with_params(enc, {rnd({2, 3, 6}, g)}),
                     "encoder layer " + form);
    TransformerDecoderLayer dec(small_layer(pre), g, DType::f64);
    randomize(dec, g);
    const std::size_t nd = dec.parameters().size();
    expect_gradcheck([&](const std::vector<Tensor>& v) { return dec(v[nd], v[nd + 1], true, pad); },
                     with_params(dec, {rnd({2, 4, 6}, g), rnd({2, 3, 6}, g)}), "decoder layer " + form);
  }
}

BOOST_AUTO_TEST_CASE(stacks_and_seq2seq_gradcheck) {
  Generator g(30);
  TransformerEncoder enc(small_layer(false), 2, true, g, DType::f64);
  randomize(enc, g);
  const std::size_t ne = enc.parameters().size();
  expect_gradcheck([&](const std::vector<Tensor>& v) { return enc(v[ne]); }, with_params(enc, {rnd({1, 4, 6}, g)}),
                   "encoder stack", 16);
  TransformerDecoder dec(small_layer(true), 2, true, g, DType::f64);
  randomize(dec, g);
  const std::size_t nd = dec.parameters().size();
  expect_gradcheck([&](const std::vector<Tensor>& v) { return dec(v[nd], v[nd + 1]); },
                   with_params(dec, {rnd({2, 3, 6}, g), rnd({2, 2, 6}, g)}), "decoder stack", 16);

  TransformerConfig c;
  c.src_vocab = 7, c.tgt_vocab = 6, c.d_model = 4, c.nhead = 2, c.num_encoder_layers = 1, c.num_decoder_layers = 2;
  c.dim_feedforward = 5, c.dropout = 0.0;
  Transformer model(c, g, DType::f64);
  randomize(model, g);
  const Index src({4, 5, 6, 4, 0, 6}, {3, 2});  // (S, B); the second example is padded at its end
  const Tensor src_mask = from_values({1, 1, 1, 1, 1, 0}, {3, 2}, DType::f64);
  const Index tgt({2, 2, 4, 5, 3, 3, 0, 0}, {4, 2});  // <bos> y.. <eos> <pad>
  expect_gradcheck([&](const std::vector<Tensor>&) { return model.loss(src, tgt, src_mask); }, model.parameters(),
                   "Transformer loss", 16);
}

// ---- decoding with cached keys and values -----------------------------------------------------------

BOOST_AUTO_TEST_CASE(cached_steps_equal_the_whole_sequence) {
  for (bool pre : {false, true}) {
    Generator g(40);
    TransformerDecoder dec(small_layer(pre), 2, true, g, DType::f64);
    randomize(dec, g);
    dec.eval();
    const Tensor x = randn({2, 5, 6}, g, 1.0, DType::f64), mem = randn({2, 4, 6}, g, 1.0, DType::f64);
    const Tensor pad = from_values({0, 0, 0, 1, 0, 0, 0, 0}, {2, 4}, DType::f64);
    NoGrad no_grad;
    Tensor full_w;
    const Tensor full = dec(x, mem, pad, nullptr, &full_w);  // (2, 5, 6); weights (2, 3, 5, 4)
    std::vector<DecoderLayerCache> caches;
    for (std::size_t t = 0; t < 5; ++t) {
      Tensor w;
      const Tensor y = dec.step(slice(x, 1, t, t + 1), mem, caches, pad, &w);
      BOOST_TEST(max_abs_diff(y, to_xt(slice(full, 1, t, t + 1))) < 1e-13, (pre ? "pre" : "post") << " step " << t);
      BOOST_TEST(max_abs_diff(w, to_xt(slice(full_w, 2, t, t + 1))) < 1e-13);
    }
    BOOST_TEST(caches[0].self_k.shape() == (Shape{2, 5, 6}));
  }
}

BOOST_AUTO_TEST_CASE(greedy_with_cache_equals_recomputing) {
  Generator g(41);
  TransformerConfig c;
  c.src_vocab = 9, c.tgt_vocab = 9, c.d_model = 8, c.nhead = 2, c.dim_feedforward = 12, c.dropout = 0.1;
  Transformer model(c, g, DType::f64);
  randomize(model, g);
  model.eval();
  const Index src({4, 5, 6, 7, 8, 4, 5, 0}, {4, 2});
  const Tensor mask = from_values({1, 1, 1, 1, 1, 1, 1, 0}, {4, 2}, DType::f64);
  const TransformerGenerated a = model.generate(src, 7, mask, true), b = model.generate(src, 7, mask, false);
  BOOST_TEST(a.ids == b.ids);
  BOOST_TEST(a.cross_attention.shape() == b.cross_attention.shape());
  BOOST_TEST(max_abs_diff(a.cross_attention, to_xt(b.cross_attention)) < 1e-12);
  // The memory is the source and its <eos> (S + 1 positions); the second source's padding gets no attention.
  BOOST_TEST(a.cross_attention.size(3) == 5u);
  const std::size_t T = a.cross_attention.size(2);
  for (std::size_t t = 0; t < T; ++t) BOOST_TEST(a.cross_attention.at({1, 0, t, 4}) == 0.0);
}

// Dropout: a training step needs a Generator; eval() turns it off; a seeded Generator repeats the loss.
BOOST_AUTO_TEST_CASE(dropout_needs_a_generator_and_is_seeded) {
  Generator g(42);
  TransformerConfig c;
  c.src_vocab = 8, c.tgt_vocab = 8, c.d_model = 8, c.nhead = 2, c.dim_feedforward = 8, c.dropout = 0.3;
  Transformer model(c, g, DType::f64);
  const Index src({4, 5, 6, 7}, {2, 2}), tgt({2, 2, 4, 5, 3, 3}, {3, 2});
  expect_error([&] { model.loss(src, tgt); }, {"dropout", "Generator"});
  Generator d1(7), d2(7);
  const double l1 = model.loss(src, tgt, {}, &d1).item(), l2 = model.loss(src, tgt, {}, &d2).item();
  BOOST_TEST(l1 == l2);
  model.eval();
  const double e1 = model.loss(src, tgt).item();
  BOOST_TEST(e1 != l1);
  expect_error([&] { model.train(); model.generate(src, 3); }, {"Transformer::generate", "eval()"});
}

// Under NoGrad the transposed weights are kept between calls; a changed weight (an optimiser step, a load)
// is seen at the next call, and a recorded call still sends gradients to the weights.
BOOST_AUTO_TEST_CASE(transposed_weights_follow_updates) {
  Generator g(43);
  MultiheadAttention mha(4, 2, g, 0.0, DType::f64);
  randomize(mha, g);
  const Tensor x = randn({2, 3, 4}, g, 1.0, DType::f64);
  Tensor before;
  {
    NoGrad no_grad;
    before = mha(x, x, x).out;
    BOOST_TEST(max_abs_diff(mha(x, x, x).out, to_xt(before)) == 0.0);  // from the kept copies
  }
  nn::SGD opt(mha.parameters(), 0.5);
  backward(sum(mha(x, x, x).out * mha(x, x, x).out));
  BOOST_TEST(mha.in_proj_weight.grad().defined());
  opt.step();
  xt::xarray<double> recorded;
  {
    Tape::Scope scope;  // a graph of its own, dropped here (it is never swept)
    recorded = to_xt(mha(x, x, x).out);  // the updated weights, transposed afresh on the tape
  }
  NoGrad no_grad;
  const Tensor after = mha(x, x, x).out;
  BOOST_TEST(max_abs_diff(after, recorded) < 1e-15);
  BOOST_TEST(max_abs_diff(after, to_xt(before)) > 1e-3);
  load_state_dict(mha, state_dict(mha));  // a load bumps the versions too: still the same values
  BOOST_TEST(max_abs_diff(mha(x, x, x).out, recorded) < 1e-15);
}

// ---- interchange ------------------------------------------------------------------------------------

BOOST_AUTO_TEST_CASE(state_dict_round_trip_and_names) {
  Generator g(50);
  TransformerConfig c;
  c.src_vocab = 5, c.tgt_vocab = 6, c.d_model = 4, c.nhead = 2, c.dim_feedforward = 8;
  Transformer a(c, g, DType::f64), b(c, g, DType::f64);
  const NamedTensors sd = state_dict(a);
  BOOST_TEST(sd.count("encoder_layers_0_self_attn_in_proj_weight") == 1u);
  BOOST_TEST(sd.count("decoder_layers_1_multihead_attn_out_proj_bias") == 1u);
  BOOST_TEST(sd.count("decoder_norm_weight") == 1u);
  BOOST_TEST(sd.at("encoder_layers_0_self_attn_in_proj_weight").shape() == (Shape{12, 4}));
  load_state_dict(b, sd);
  for (const auto& [n, p] : b.named_parameters()) BOOST_TEST(max_abs_diff(p, to_xt(sd.at(key_of(n)))) == 0.0, n);
  // A layer of a stack reads a flat layer dict through a prefix.
  TransformerLayerConfig lc;
  lc.d_model = 4, lc.nhead = 2, lc.dim_feedforward = 8;
  TransformerEncoderLayer layer(lc, g, DType::f64);
  load_state_dict(layer, sd, "encoder_layers_0_");
  BOOST_TEST(max_abs_diff(layer.linear1.weight, to_xt(sd.at("encoder_layers_0_linear1_weight"))) == 0.0);
  // A bad dict changes nothing and names the key and shapes.
  NamedTensors bad = state_dict(layer);
  const Tensor before = layer.norm1.weight.to(DType::f64);
  bad["norm1_weight"] = zeros({4}, DType::f64);
  bad["linear2_weight"] = zeros({3, 3}, DType::f64);
  expect_error([&] { load_state_dict(layer, bad); }, {"load_state_dict", "linear2_weight", "(3, 3)", "(4, 8)"});
  BOOST_TEST(max_abs_diff(layer.norm1.weight, to_xt(before)) == 0.0);
  bad.erase("linear2_weight");
  expect_error([&] { load_state_dict(layer, bad); }, {"load_state_dict", "no entry linear2_weight"});
}

// ---- bad inputs -------------------------------------------------------------------------------------

BOOST_AUTO_TEST_CASE(bad_inputs_name_the_module_and_shapes) {
  Generator g(60);
  expect_error([&] { MultiheadAttention(6, 4, g); }, {"MultiheadAttention", "embed_dim 6", "num_heads 4"});
  MultiheadAttention mha(4, 2, g, 0.0, DType::f64);
  const Tensor x = zeros({2, 3, 4}, DType::f64);
  expect_error([&] { mha(zeros({2, 3, 5}, DType::f64), x, x); }, {"MultiheadAttention", "query", "(2, 3, 5)", "E = 4"});
  expect_error([&] { mha(zeros({3, 4}, DType::f64), x, x); }, {"MultiheadAttention", "query", "(3, 4)"});
  expect_error([&] { mha(x, x, zeros({2, 2, 4}, DType::f64)); }, {"MultiheadAttention", "value", "(2, 2, 4)", "(2, 3, 4)"});
  expect_error([&] { mha(x, zeros({1, 3, 4}, DType::f64), zeros({1, 3, 4}, DType::f64)); }, {"MultiheadAttention", "batch"});
  AttentionMasks m;
  m.key_padding_mask = zeros({2, 4}, DType::f64);
  expect_error([&] { mha(x, x, x, m); }, {"MultiheadAttention", "key_padding_mask", "(2, 4)", "(2, 3)"});
  m.key_padding_mask = ones({2, 3}, DType::f64);
  expect_error([&] { mha(x, x, x, m); }, {"MultiheadAttention", "no key to attend to"});
  AttentionMasks a;
  a.attn_mask = zeros({3, 4}, DType::f64);
  expect_error([&] { mha(x, x, x, a); }, {"MultiheadAttention", "attn_mask", "(3, 4)", "(3, 3)"});
  AttentionMasks c;
  c.causal = true;
  expect_error([&] { mha(x, zeros({2, 2, 4}, DType::f64), zeros({2, 2, 4}, DType::f64), c); },
               {"MultiheadAttention", "causal", "3 queries", "2 keys"});
  TransformerLayerConfig bad;
  bad.d_model = 6, bad.nhead = 4;
  expect_error([&] { TransformerEncoderLayer(bad, g); }, {"TransformerEncoderLayer", "d_model 6", "nhead 4"});
  TransformerEncoderLayer enc(small_layer(false), g, DType::f64);
  expect_error([&] { enc(zeros({2, 3, 4}, DType::f64)); }, {"TransformerEncoderLayer", "x", "(2, 3, 4)", "E = 6"});
  TransformerDecoderLayer dec(small_layer(false), g, DType::f64);
  expect_error([&] { dec(zeros({2, 3, 6}, DType::f64), zeros({2, 3, 5}, DType::f64)); },
               {"TransformerDecoderLayer", "memory", "(2, 3, 5)"});
  DecoderLayerCache cache;
  dec.eval();
  expect_error([&] { dec.step(zeros({2, 2, 6}, DType::f64), zeros({2, 3, 6}, DType::f64), cache); },
               {"TransformerDecoderLayer::step", "(2, 2, 6)", "(B, 1, E)"});
  TransformerConfig tc;
  tc.src_vocab = 3, tc.tgt_vocab = 5, tc.d_model = 4, tc.nhead = 2;
  expect_error([&] { Transformer(tc, g, DType::f64); }, {"Transformer", "special tokens", "src 3"});
  tc.src_vocab = 5;
  Transformer model(tc, g, DType::f64);
  expect_error([&] { model.loss(Index({1, 9}, {2, 1}), Index({2, 3}, {2, 1})); }, {"Transformer::encode", "id 9", "[0, 5)"});
  expect_error([&] { model.loss(Index({1, 2}, {2, 1}), Index({2}, {1, 1})); }, {"Transformer::loss", "(1, 1)", "T >= 2"});
  expect_error([&] { model.encode(Index({1, 2}, {2, 1}), zeros({1, 2}, DType::f64)); }, {"Transformer", "source mask", "(1, 2)", "(2, 1)"});
  expect_error([&] { add_positions(zeros({3, 4}, DType::f64)); }, {"add_positions", "(3, 4)"});
}

BOOST_AUTO_TEST_SUITE_END()
