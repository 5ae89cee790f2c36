// nn/models/attention: the conformance cases through the modules, gradient checks, masks, bad shapes.
#include <boost/test/unit_test.hpp>

#include <tapegrad/nn/models/attention.hpp>

#include "support/conformance.hpp"
#include "support/xt.hpp"

using namespace tapegrad;
using namespace tapegrad::nn;
using namespace tapegrad::test;

namespace {
GradcheckOptions opts() {
  GradcheckOptions o;
  o.full_jacobian_max = 40;
  return o;
}
}  // namespace

BOOST_AUTO_TEST_SUITE(attention)

BOOST_AUTO_TEST_CASE(conformance_dot) {
  auto c = load_case("attention_dot");
  DotAttention att;
  auto out = att(c.in.at("hs"), c.in.at("hd"));
  auto agg = check_case(c, {{"a", out.weights}, {"context", out.context}});
  BOOST_TEST(agg.ok());
}

BOOST_AUTO_TEST_CASE(conformance_additive) {
  auto c = load_case("attention_additive");
  AdditiveAttention att(c.in.at("Wa"), c.in.at("Ua"), c.in.at("va"));  // shares the case's buffers
  BOOST_TEST(att.parameters().size() == 3u);
  auto out = att(c.in.at("hs"), c.in.at("hd"));
  auto agg = check_case(c, {{"a", out.weights}, {"context", out.context}});
  BOOST_TEST(agg.ok());
}

BOOST_AUTO_TEST_CASE(general_with_identity_is_dot) {
  Generator gen(3);
  Tensor hs = randn({2, 4, 3}, gen, 1.0, DType::f64), hd = randn({2, 3}, gen, 1.0, DType::f64);
  std::vector<double> eye(9, 0.0);
  eye[0] = eye[4] = eye[8] = 1.0;
  GeneralAttention g(from_values(eye, {3, 3}, DType::f64));
  DotAttention d;
  auto a = g(hs, hd), b = d(hs, hd);
  BOOST_TEST(max_abs_diff(a.weights, to_xt(b.weights)) < 1e-14);
  BOOST_TEST(max_abs_diff(a.context, to_xt(b.context)) < 1e-14);
  // Weights are a distribution over s.
  auto w = a.weights.to_vector();
  BOOST_TEST(std::abs(w[0] + w[1] + w[2] + w[3] - 1.0) < 1e-14);
}

BOOST_AUTO_TEST_CASE(general_matches_its_formula) {
  Generator gen(4);
  GeneralAttention g(3, 2, gen, DType::f64);
  Tensor hs = randn({2, 4, 3}, gen, 1.0, DType::f64), hd = randn({2, 2}, gen, 1.0, DType::f64);
  auto out = g(hs, hd);
  // score_bs = sum_ij hs[b,s,i] W[i,j] hd[b,j]
  auto H = to_xt(hs), D = to_xt(hd), W = to_xt(g.W), A = to_xt(out.weights);
  for (std::size_t b = 0; b < 2; ++b) {
    std::vector<double> e(4, 0.0);
    double z = 0;
    for (std::size_t s = 0; s < 4; ++s) {
      for (std::size_t i = 0; i < 3; ++i)
        for (std::size_t j = 0; j < 2; ++j) e[s] += H(b, s, i) * W(i, j) * D(b, j);
    }
    for (auto& v : e) z += std::exp(v);
    for (std::size_t s = 0; s < 4; ++s) BOOST_TEST(std::abs(A(b, s) - std::exp(e[s]) / z) < 1e-14);
  }
}

BOOST_AUTO_TEST_CASE(gradcheck_all_kinds_with_mask) {
  Generator gen(5);
  Tensor hs = parameter(randn({2, 4, 3}, gen, 1.0, DType::f64));
  Tensor hd = parameter(randn({2, 3}, gen, 1.0, DType::f64));
  Tensor mask = from_values({1, 1, 1, 0, 1, 1, 0, 0}, {2, 4}, DType::f64);
  DotAttention dot;
  GeneralAttention general(3, 3, gen, DType::f64);
  AdditiveAttention additive(3, 3, 5, gen, DType::f64);
  for (const Attention* att : std::vector<const Attention*>{&dot, &general, &additive}) {
    std::vector<Tensor> inputs{hs, hd};
    for (auto& p : att->parameters()) inputs.push_back(p);
    for (const Tensor& m : {Tensor(), mask}) {
      // Both outputs at once: context and weights, flattened and concatenated.
      auto f = [&](const std::vector<Tensor>&) {
        auto o = (*att)(hs, hd, m);
        return concat({reshape(o.context, {6}), reshape(o.weights, {8})}, 0);
      };
      auto r = gradcheck(f, inputs, opts());
      BOOST_TEST(r.ok, att->name() << (m.defined() ? " masked: " : ": ") << r.message);
    }
  }
}

BOOST_AUTO_TEST_CASE(masked_positions_get_zero_weight) {
  Generator gen(6);
  AdditiveAttention att(3, 2, 4, gen, DType::f64);
  Tensor hs = randn({2, 5, 3}, gen, 1.0, DType::f64), hd = randn({2, 2}, gen, 1.0, DType::f64);
  Tensor mask = from_values({1, 1, 1, 0, 0, 1, 0, 1, 1, 1}, {2, 5}, DType::f64);
  auto out = att(hs, hd, mask);
  auto a = to_xt(out.weights);
  BOOST_TEST(a(0, 3) == 0.0);
  BOOST_TEST(a(0, 4) == 0.0);
  BOOST_TEST(a(1, 1) == 0.0);
  // Row 0 equals attention over its first three states only.
  auto short_out = att(slice(hs, 1, 0, 3), hd);
  auto sa = to_xt(short_out.weights), sc = to_xt(short_out.context), ctx = to_xt(out.context);
  for (std::size_t s = 0; s < 3; ++s) BOOST_TEST(std::abs(a(0, s) - sa(0, s)) < 1e-14);
  for (std::size_t h = 0; h < 3; ++h) BOOST_TEST(std::abs(ctx(0, h) - sc(0, h)) < 1e-14);
  // A float32 mask works with float64 states (converted), and gradients stay finite.
  Tensor hsp = parameter(hs.clone());
  auto o2 = att(hsp, hd, mask.to(DType::f32));
  backward(sum(o2.context));
  for (double g : hsp.grad().to_vector()) BOOST_TEST(std::isfinite(g));
  // A masked state gets no gradient: its weight is 0 and its score was replaced by a constant.
  auto g = to_xt(hsp.grad());
  for (std::size_t h = 0; h < 3; ++h) BOOST_TEST(g(0, 3, h) == 0.0);
}

// over_steps (every decoder step at once, AttentionDecoder::forward) against T calls of the one-step form,
// with and without a mask, for every kind; and its gradients.
BOOST_AUTO_TEST_CASE(over_steps_equals_one_step_at_a_time) {
  Generator gen(8);
  const std::size_t B = 2, S = 4, T = 3, H = 3;
  Tensor hs = parameter(randn({B, S, H}, gen, 1.0, DType::f64));
  Tensor hd = parameter(randn({B, T, H}, gen, 1.0, DType::f64));
  Tensor mask = from_values({1, 1, 1, 0, 1, 1, 0, 0}, {B, S}, DType::f64);
  DotAttention dot;
  GeneralAttention general(H, H, gen, DType::f64);
  AdditiveAttention additive(H, H, 5, gen, DType::f64);
  for (const Attention* att : std::vector<const Attention*>{&dot, &general, &additive}) {
    for (const Tensor& m : {Tensor(), mask}) {
      const std::string what = std::string(att->name()) + (m.defined() ? " masked" : "");
      NoGrad values_only;  // no graph left on the tape: gradcheck below writes into hs and hd
      AttentionOutput all = att->over_steps(hs, hd, m);
      BOOST_TEST((all.weights.shape() == Shape{B, T, S}), what);
      BOOST_TEST((all.context.shape() == Shape{B, T, H}), what);
      auto w = to_xt(all.weights), c = to_xt(all.context);
      for (std::size_t t = 0; t < T; ++t) {
        AttentionOutput one = (*att)(hs, reshape(slice(hd, 1, t, t + 1), {B, H}), m);
        auto w1 = to_xt(one.weights), c1 = to_xt(one.context);
        for (std::size_t b = 0; b < B; ++b) {
          for (std::size_t s = 0; s < S; ++s) BOOST_TEST(std::abs(w(b, t, s) - w1(b, s)) < 1e-13, what << " t=" << t);
          for (std::size_t h = 0; h < H; ++h) BOOST_TEST(std::abs(c(b, t, h) - c1(b, h)) < 1e-13, what << " t=" << t);
        }
      }
    }
    for (const Tensor& m : {Tensor(), mask}) {
      std::vector<Tensor> inputs{hs, hd};
      for (auto& p : att->parameters()) inputs.push_back(p);
      auto f = [&](const std::vector<Tensor>&) {
        auto o = att->over_steps(hs, hd, m);
        return concat({reshape(o.context, {B * T * H}), reshape(o.weights, {B * T * S})}, 0);
      };
      auto r = gradcheck(f, inputs, opts());
      BOOST_TEST(r.ok, att->name() << (m.defined() ? " masked: " : ": ") << r.message);
    }
  }
  NoGrad no_graph;
  expect_error([&] { dot.over_steps(hs, reshape(slice(hd, 1, 0, 1), {B, H})); }, {"DotAttention::over_steps", "(B, T, H_dec)"});
  expect_error([&] { additive.over_steps(hs, randn({B, T, 4}, gen, 1.0, DType::f64)); }, {"AdditiveAttention", "hd size 4"});
}

BOOST_AUTO_TEST_CASE(bad_inputs_are_errors) {
  Generator gen(7);
  DotAttention dot;
  AdditiveAttention add(3, 2, 4, gen, DType::f64);
  Tensor hs = randn({2, 4, 3}, gen, 1.0, DType::f64), hd = randn({2, 3}, gen, 1.0, DType::f64);
  expect_error([&] { dot(reshape(hs, {8, 3}), hd); }, {"DotAttention", "(8, 3)", "(B, S, H_enc)"});
  expect_error([&] { dot(hs, randn({3, 3}, gen, 1.0, DType::f64)); }, {"DotAttention", "(2, 4, 3)", "(3, 3)"});
  expect_error([&] { dot(hs, randn({2, 5}, gen, 1.0, DType::f64)); }, {"DotAttention", "3", "5"});
  expect_error([&] { add(hs, hd); }, {"AdditiveAttention", "hd size 3", "(2, 4)"});
  expect_error([&] { dot(hs, hd, ones({4, 2}, DType::f64)); }, {"DotAttention", "mask (4, 2)", "(2, 4, 3)"});
  expect_error([&] { dot(hs, hd, from_values({1, 0, 0, 0, 0, 0, 0, 0}, {2, 4}, DType::f64)); },
               {"DotAttention", "row 1", "masks every position"});
  expect_error([&] { dot(zeros({2, 0, 3}, DType::f64), hd); }, {"DotAttention", "empty", "(2, 0, 3)"});
  expect_error([&] { AdditiveAttention(zeros({3, 4}), zeros({2, 4}), zeros({5})); }, {"AdditiveAttention", "(5,)"});
}

BOOST_AUTO_TEST_SUITE_END()
