// The hand-derived BPTT references against the engine: the same model composed inline from ops,
// differentiated by the tape, must give the hand-derived gradients to a relative difference of 1e-12
// (float64). The references themselves are also checked against central differences and against the
// conformance cases (PyTorch, float64).
#include <boost/test/unit_test.hpp>

#include <algorithm>
#include <cmath>
#include <functional>
#include <string>
#include <vector>

#include <tapegrad/bench/reference/reference_bptt.hpp>
#include <tapegrad/nn/models/rnn.hpp>

#include "support/conformance.hpp"
#include "support/xt.hpp"

using namespace tapegrad;
using namespace tapegrad::test;
namespace ref = tapegrad::reference;

namespace {

// max |a - b| / max |b| over one gradient (normwise: elementwise relative differences are meaningless
// for entries that are zero up to rounding).
double rel_diff(const Tensor& engine, const std::vector<double>& hand) {
  const auto a = engine.to_vector();
  if (a.size() != hand.size()) return INFINITY;
  double num = 0, den = 0;
  for (std::size_t i = 0; i < a.size(); ++i) {
    num = std::max(num, std::abs(a[i] - hand[i]));
    den = std::max(den, std::abs(hand[i]));
  }
  return den == 0 ? num : num / den;
}

const double* ptr(const Tensor& t) { return t.data<double>(); }

Tensor apply(ref::Activation a, const Tensor& x) { return nn::activate(a, x); }  // the cells' dispatch

Tensor step(const Tensor& x, std::size_t t) {  // x_t of x (T, B, I) as (B, I)
  return reshape(slice(x, 0, t, t + 1), {x.size(1), x.size(2)});
}

double worst_elman = 0, worst_lstm = 0;

struct ElmanCase {
  std::size_t T, B, I, H, O;
  Tensor x, z0, W_in, W, b, W_out, c, d, dy;
  ElmanCase(std::size_t T_, std::size_t B_, std::size_t I_, std::size_t H_, std::size_t O_, Generator& gen)
      : T(T_), B(B_), I(I_), H(H_), O(O_) {
    auto p = [&](const Shape& s, double sd) { return parameter(randn(s, gen, sd, DType::f64)); };
    x = p({T, B, I}, 1.0);
    z0 = p({B, H}, 0.5);
    W_in = p({I, H}, 0.8);
    W = p({H, H}, 0.6);
    b = p({H}, 0.3);
    W_out = p({H, O}, 0.8);
    c = p({O}, 0.3);
    d = uniform({T, B, O}, 0.0, 1.0, gen, DType::f64);
    dy = randn({T, B, O}, gen, 1.0, DType::f64);
  }
  ref::ElmanParams<double> params() const { return {ptr(W_in), ptr(W), ptr(b), ptr(W_out), ptr(c)}; }
  std::vector<Tensor> leaves() const { return {W_in, W, b, W_out, c, x, z0}; }
  // The same model, composed from the engine's ops; returns y stacked over time (T, B, O).
  Tensor compose(ref::Activation f, ref::Activation g) const {
    Tensor z = z0;
    std::vector<Tensor> ys;
    for (std::size_t t = 0; t < T; ++t) {
      z = apply(f, matmul(step(x, t), W_in) + matmul(z, W) + b);
      ys.push_back(apply(g, matmul(z, W_out) + c));
    }
    return stack(ys, 0);
  }
};

std::vector<std::vector<double>> elman_grads(const ref::ElmanGrads<double>& g) {
  return {g.W_in, g.W, g.b, g.W_out, g.c, g.x, g.z0};
}

const char* elman_names[] = {"W_in", "W", "b", "W_out", "c", "x", "z0"};

constexpr ref::WeightGrads kVariants[] = {ref::WeightGrads::per_step, ref::WeightGrads::fused};

}  // namespace

BOOST_AUTO_TEST_SUITE(reference_bptt)

BOOST_AUTO_TEST_CASE(elman_matches_autodiff) {
  Generator gen(101);
  for (auto w : kVariants)
    for (auto f : {ref::Activation::sigmoid, ref::Activation::tanh, ref::Activation::relu})
      for (std::size_t T : {1, 3, 7})
        for (std::size_t B : {1, 4})
          for (std::size_t H : {1, 5}) {
            ElmanCase m(T, B, 3, H, 2, gen);
            // The course's loss: E = 1/2 sum (d - y)^2 with g = sigmoid.
            {
              ref::ElmanBPTT<double> hand(3, H, 2, f, ref::Activation::sigmoid, w);
              const auto& y = hand.forward(m.params(), ptr(m.x), ptr(m.z0), T, B);
              Tensor Y = m.compose(f, ref::Activation::sigmoid);
              BOOST_TEST(rel_diff(Y, std::vector<double>(y.begin(), y.begin() + T * B * 2)) <= 1e-13);
              Tensor E = mse_loss(Y, m.d, Reduction::half_sum);
              BOOST_TEST(std::abs(E.item() - hand.half_sum_loss(ptr(m.d))) <= 1e-13 * std::abs(E.item()));
              auto ge = grad(E, m.leaves());
              auto gh = elman_grads(hand.backward_half_sum(ptr(m.d)));
              for (std::size_t k = 0; k < ge.size(); ++k) {
                const double r = rel_diff(ge[k], gh[k]);
                worst_elman = std::max(worst_elman, r);
                BOOST_TEST(r <= 1e-12, weight_grads_name(w) << " " << activation_name(f) << " T=" << T << " B=" << B << " H=" << H << " half_sum d"
                                                          << elman_names[k] << ": relative difference " << r);
              }
            }
            // A general seed dE/dy with a linear output g = identity: E = sum(y * dy).
            {
              ref::ElmanBPTT<double> hand(3, H, 2, f, ref::Activation::identity, w);
              hand.forward(m.params(), ptr(m.x), ptr(m.z0), T, B);
              Tensor E = sum(m.compose(f, ref::Activation::identity) * m.dy);
              auto ge = grad(E, m.leaves());
              auto gh = elman_grads(hand.backward(ptr(m.dy)));
              for (std::size_t k = 0; k < ge.size(); ++k) {
                const double r = rel_diff(ge[k], gh[k]);
                worst_elman = std::max(worst_elman, r);
                BOOST_TEST(r <= 1e-12, weight_grads_name(w) << " " << activation_name(f) << " T=" << T << " B=" << B << " H=" << H << " seed d"
                                                          << elman_names[k] << ": relative difference " << r);
              }
            }
          }
  BOOST_TEST_MESSAGE("Elman: worst relative difference autodiff vs hand BPTT " << worst_elman);
}

BOOST_AUTO_TEST_CASE(lstm_matches_autodiff) {
  Generator gen(202);
  const std::size_t I = 3;
  for (auto w : kVariants)
    for (std::size_t T : {1, 3, 7})
      for (std::size_t B : {1, 4})
        for (std::size_t H : {1, 5}) {
          auto p = [&](const Shape& s, double sd) { return parameter(randn(s, gen, sd, DType::f64)); };
          Tensor x = p({T, B, I}, 1.0), h0 = p({B, H}, 0.5), c0 = p({B, H}, 0.5);
          Tensor W_x = p({I, 4 * H}, 0.6), W_h = p({H, 4 * H}, 0.6), b = p({4 * H}, 0.3);
          Tensor dh = randn({T, B, H}, gen, 1.0, DType::f64), dc = randn({B, H}, gen, 1.0, DType::f64);
          // Composed: fused gates sliced with chunk, in the order i, f, g, o.
          Tensor h = h0, c = c0;
          std::vector<Tensor> hs;
          for (std::size_t t = 0; t < T; ++t) {
            auto a = chunk(matmul(step(x, t), W_x) + matmul(h, W_h) + b, 4, 1);
            Tensor i = sigmoid(a[0]), f = sigmoid(a[1]), g = tapegrad::tanh(a[2]), o = sigmoid(a[3]);
            c = f * c + i * g;
            h = o * tapegrad::tanh(c);
            hs.push_back(h);
          }
          Tensor Hs = stack(hs, 0);
          Tensor E = sum(Hs * dh) + sum(c * dc);
          auto ge = grad(E, {W_x, W_h, b, x, h0, c0});

          ref::LSTMBPTT<double> hand(I, H, w);
          const double* hh = hand.forward({ptr(W_x), ptr(W_h), ptr(b)}, ptr(x), ptr(h0), ptr(c0), T, B);
          BOOST_TEST(rel_diff(Hs, std::vector<double>(hh, hh + T * B * H)) <= 1e-13);
          BOOST_TEST(rel_diff(c, std::vector<double>(hand.c(T), hand.c(T) + B * H)) <= 1e-13);
          const auto& gr = hand.backward(ptr(dh), ptr(dc));
          const std::vector<std::vector<double>> gh = {gr.W_x, gr.W_h, gr.b, gr.x, gr.h0, gr.c0};
          const char* names[] = {"W_x", "W_h", "b", "x", "h0", "c0"};
          for (std::size_t k = 0; k < ge.size(); ++k) {
            const double r = rel_diff(ge[k], gh[k]);
            worst_lstm = std::max(worst_lstm, r);
            BOOST_TEST(r <= 1e-12, "LSTM " << weight_grads_name(w) << " T=" << T << " B=" << B << " H=" << H << " d" << names[k] << ": relative difference " << r);
          }
        }
  BOOST_TEST_MESSAGE("LSTM: worst relative difference autodiff vs hand BPTT " << worst_lstm);
}

BOOST_AUTO_TEST_CASE(gru_matches_autodiff) {
  // PyTorch's reset_after GRU, composed inline from ops (not through nn::GRUCell or the gru_cell op).
  Generator gen(212);
  const std::size_t I = 3;
  double worst = 0;
  for (auto w : kVariants)
    for (std::size_t T : {1, 3, 7})
      for (std::size_t B : {1, 4})
        for (std::size_t H : {1, 5}) {
          auto p = [&](const Shape& s, double sd) { return parameter(randn(s, gen, sd, DType::f64)); };
          Tensor x = p({T, B, I}, 1.0), h0 = p({B, H}, 0.5);
          Tensor W_x = p({I, 3 * H}, 0.6), W_h = p({H, 3 * H}, 0.6), b = p({3 * H}, 0.3), b_hn = p({H}, 0.3);
          Tensor dh = randn({T, B, H}, gen, 1.0, DType::f64);
          Tensor h = h0;
          std::vector<Tensor> hs;
          for (std::size_t t = 0; t < T; ++t) {
            auto xp = chunk(matmul(step(x, t), W_x) + b, 3, 1), hp = chunk(matmul(h, W_h), 3, 1);
            Tensor r = sigmoid(xp[0] + hp[0]), z = sigmoid(xp[1] + hp[1]);
            Tensor n = tapegrad::tanh(xp[2] + r * (hp[2] + b_hn));
            h = (1.0 - z) * n + z * h;
            hs.push_back(h);
          }
          Tensor Hs = stack(hs, 0);
          auto ge = grad(sum(Hs * dh), {W_x, W_h, b, b_hn, x, h0});
          ref::GRUBPTT<double> hand(I, H, w);
          const double* hh = hand.forward({ptr(W_x), ptr(W_h), ptr(b), ptr(b_hn)}, ptr(x), ptr(h0), T, B);
          BOOST_TEST(rel_diff(Hs, std::vector<double>(hh, hh + T * B * H)) <= 1e-13);
          const auto& gr = hand.backward(ptr(dh));
          const std::vector<std::vector<double>> gh = {gr.W_x, gr.W_h, gr.b, gr.b_hn, gr.x, gr.h0};
          const char* names[] = {"W_x", "W_h", "b", "b_hn", "x", "h0"};
          for (std::size_t k = 0; k < ge.size(); ++k) {
            const double r = rel_diff(ge[k], gh[k]);
            worst = std::max(worst, r);
            BOOST_TEST(r <= 1e-12, "GRU " << weight_grads_name(w) << " T=" << T << " B=" << B << " H=" << H << " d"
                                          << names[k] << ": relative difference " << r);
          }
        }
  BOOST_TEST_MESSAGE("GRU: worst relative difference autodiff vs hand BPTT " << worst);
}

// The two weight-gradient variants (per step, one GEMM over all steps) at the benchmarks' sizes in float32,
// where the products take the gemv/ger (batch 1) and GEMM paths: the same gradients to float32 rounding.
BOOST_AUTO_TEST_CASE(per_step_and_fused_variants_agree) {
  Generator gen(606);
  auto data = [&](std::size_t n, double sd) {
    std::vector<float> v(n);
    for (auto& e : v) e = float(gen.normal(0.0, sd));
    return v;
  };
  auto agree = [](const std::vector<float>& a, const std::vector<float>& b, const std::string& what) {
    BOOST_TEST_REQUIRE(a.size() == b.size());
    double num = 0, den = 0;
    for (std::size_t i = 0; i < a.size(); ++i) {
      num = std::max(num, std::abs(double(a[i]) - double(b[i])));
      den = std::max(den, std::abs(double(b[i])));
    }
    BOOST_TEST(den > 0, what << ": all zero");
    BOOST_TEST(num <= 1e-5 * den, what << ": per_step vs fused, relative difference " << num / den);
  };
  for (std::size_t B : {1, 32}) {
    const std::size_t T = 20, I = 32, H = 64;
    const std::string at = " B=" + std::to_string(B);
    const auto x = data(T * B * I, 1.0), h0 = data(B * H, 0.1), c0 = data(B * H, 0.1), d = data(T * B * H, 1.0);
    {  // Elman I-H-1, tanh, sigmoid output, half-sum loss
      const auto W_in = data(I * H, 0.18), W = data(H * H, 0.12), b = data(H, 0.1), W_out = data(H, 0.12),
                 c = data(1, 0.1);
      std::vector<float> target(T * B);
      for (auto& e : target) e = float(gen.uniform(0.05, 0.95));
      ref::ElmanBPTT<float> ps(I, H, 1, ref::Activation::tanh, ref::Activation::sigmoid, ref::WeightGrads::per_step),
          fu(I, H, 1, ref::Activation::tanh, ref::Activation::sigmoid, ref::WeightGrads::fused);
      const ref::ElmanParams<float> p{W_in.data(), W.data(), b.data(), W_out.data(), c.data()};
      ps.forward(p, x.data(), h0.data(), T, B);
      fu.forward(p, x.data(), h0.data(), T, B);
      const auto& gp = ps.backward_half_sum(target.data());
      const auto& gf = fu.backward_half_sum(target.data());
      agree(gp.W_in, gf.W_in, "Elman dW_in" + at);
      agree(gp.W, gf.W, "Elman dW" + at);
      agree(gp.b, gf.b, "Elman db" + at);
      agree(gp.x, gf.x, "Elman dx" + at);
    }
    {  // LSTM, E = sum(h * d)
      const auto W_x = data(I * 4 * H, 0.18), W_h = data(H * 4 * H, 0.12), b = data(4 * H, 0.1);
      ref::LSTMBPTT<float> ps(I, H, ref::WeightGrads::per_step), fu(I, H, ref::WeightGrads::fused);
      ps.forward({W_x.data(), W_h.data(), b.data()}, x.data(), h0.data(), c0.data(), T, B);
      fu.forward({W_x.data(), W_h.data(), b.data()}, x.data(), h0.data(), c0.data(), T, B);
      const auto& gp = ps.backward(d.data());
      const auto& gf = fu.backward(d.data());
      agree(gp.W_x, gf.W_x, "LSTM dW_x" + at);
      agree(gp.W_h, gf.W_h, "LSTM dW_h" + at);
      agree(gp.b, gf.b, "LSTM db" + at);
      agree(gp.h0, gf.h0, "LSTM dh0" + at);
    }
    {  // GRU, E = sum(h * d)
      const auto W_x = data(I * 3 * H, 0.18), W_h = data(H * 3 * H, 0.12), b = data(3 * H, 0.1), b_hn = data(H, 0.1);
      ref::GRUBPTT<float> ps(I, H, ref::WeightGrads::per_step), fu(I, H, ref::WeightGrads::fused);
      ps.forward({W_x.data(), W_h.data(), b.data(), b_hn.data()}, x.data(), h0.data(), T, B);
      fu.forward({W_x.data(), W_h.data(), b.data(), b_hn.data()}, x.data(), h0.data(), T, B);
      const auto& gp = ps.backward(d.data());
      const auto& gf = fu.backward(d.data());
      agree(gp.W_x, gf.W_x, "GRU dW_x" + at);
      agree(gp.W_h, gf.W_h, "GRU dW_h" + at);
      agree(gp.b, gf.b, "GRU db" + at);
      agree(gp.b_hn, gf.b_hn, "GRU db_hn" + at);
      agree(gp.h0, gf.h0, "GRU dh0" + at);
    }
  }
}

// The hand references are derivations: check them against central differences of their own forward.
BOOST_AUTO_TEST_CASE(hand_references_match_central_differences) {
  Generator gen(303);
  const double eps = 1e-6;
  // max over elements of |analytic - numeric| / (1e-7 + 1e-5 |numeric|) must stay <= 1 (gradcheck's rule).
  auto check = [&](const char* what, std::vector<double*> buffers, std::vector<std::size_t> sizes,
                   std::vector<const std::vector<double>*> analytic, const std::function<double()>& loss) {
    for (std::size_t k = 0; k < buffers.size(); ++k)
      for (std::size_t e = 0; e < sizes[k]; ++e) {
        double& v = buffers[k][e];
        const double keep = v;
        v = keep + eps;
        const double lp = loss();
        v = keep - eps;
        const double lm = loss();
        v = keep;
        const double num = (lp - lm) / (2 * eps), ana = (*analytic[k])[e];
        BOOST_TEST(std::abs(ana - num) <= 1e-7 + 1e-5 * std::abs(num),
                   what << " input " << k << " element " << e << ": hand " << ana << ", numeric " << num);
      }
  };
  for (auto f : {ref::Activation::sigmoid, ref::Activation::tanh}) {  // Elman, T=3, B=2, I=2, H=3, O=2, half-sum E
    ElmanCase m(3, 2, 2, 3, 2, gen);
    ref::ElmanBPTT<double> hand(2, 3, 2, f);
    hand.forward(m.params(), ptr(m.x), ptr(m.z0), 3, 2);
    const ref::ElmanGrads<double> g = hand.backward_half_sum(ptr(m.d));  // a copy: loss() reruns forward
    ref::ElmanBPTT<double> probe(2, 3, 2, f);
    auto loss = [&] {
      probe.forward(m.params(), ptr(m.x), ptr(m.z0), 3, 2);
      return probe.half_sum_loss(ptr(m.d));
    };
    std::vector<double*> bufs;
    std::vector<std::size_t> sizes;
    for (Tensor t : m.leaves()) {
      bufs.push_back(t.data<double>());
      sizes.push_back(t.numel());
    }
    check(ref::activation_name(f), bufs, sizes, {&g.W_in, &g.W, &g.b, &g.W_out, &g.c, &g.x, &g.z0}, loss);
  }
  {  // LSTM, T=3, B=2, I=2, H=2, E = sum(h * dh) + sum(c_T * dc).
    const std::size_t T = 3, B = 2, I = 2, H = 2;
    Tensor x = randn({T, B, I}, gen, 1.0, DType::f64), h0 = randn({B, H}, gen, 0.5, DType::f64),
           c0 = randn({B, H}, gen, 0.5, DType::f64), W_x = randn({I, 4 * H}, gen, 0.6, DType::f64),
           W_h = randn({H, 4 * H}, gen, 0.6, DType::f64), b = randn({4 * H}, gen, 0.3, DType::f64);
    Tensor dh = randn({T, B, H}, gen, 1.0, DType::f64), dc = randn({B, H}, gen, 1.0, DType::f64);
    ref::LSTMBPTT<double> hand(I, H);
    hand.forward({ptr(W_x), ptr(W_h), ptr(b)}, ptr(x), ptr(h0), ptr(c0), T, B);
    const ref::LSTMGrads<double> g = hand.backward(ptr(dh), ptr(dc));
    ref::LSTMBPTT<double> probe(I, H);
    auto loss = [&] {
      const double* hs = probe.forward({ptr(W_x), ptr(W_h), ptr(b)}, ptr(x), ptr(h0), ptr(c0), T, B);
      double e = 0;
      for (std::size_t k = 0; k < T * B * H; ++k) e += hs[k] * ptr(dh)[k];
      for (std::size_t k = 0; k < B * H; ++k) e += probe.c(T)[k] * ptr(dc)[k];
      return e;
    };
    check("LSTM", {W_x.data<double>(), W_h.data<double>(), b.data<double>(), x.data<double>(), h0.data<double>(), c0.data<double>()},
          {W_x.numel(), W_h.numel(), b.numel(), x.numel(), h0.numel(), c0.numel()}, {&g.W_x, &g.W_h, &g.b, &g.x, &g.h0, &g.c0},
          loss);
  }
}

// The hand references against the independent float64 values of ../shared/conformance.
BOOST_AUTO_TEST_CASE(hand_elman_matches_conformance) {
  const std::pair<const char*, ref::Activation> cases[] = {{"elman_sigmoid_seq", ref::Activation::sigmoid},
                                                           {"elman_tanh_seq", ref::Activation::tanh},
                                                           {"elman_relu_seq", ref::Activation::relu}};
  for (const auto& [name, f] : cases) {
    auto c = load_case(name);
    const Tensor& x = c.in.at("x");
    const std::size_t T = x.size(0), B = x.size(1), I = x.size(2), H = c.in.at("W").size(0), O = c.in.at("W_out").size(1);
    ref::ElmanBPTT<double> hand(I, H, O, f);
    const auto& y = hand.forward({ptr(c.in.at("W_in")), ptr(c.in.at("W")), ptr(c.in.at("b")), ptr(c.in.at("W_out")),
                                  ptr(c.in.at("c"))},
                                 ptr(x), ptr(c.in.at("z0")), T, B);
    Agreement agg;
    close(from_values(std::vector<double>(y.begin(), y.begin() + T * B * O), {T, B, O}, DType::f64), c.out.at("y"),
          std::string(name) + " y", agg);
    close(from_values(std::vector<double>(hand.z(1), hand.z(1) + T * B * H), {T, B, H}, DType::f64), c.out.at("z"),
          std::string(name) + " z", agg);
    const auto& g = hand.backward(ptr(c.dout.at("y")), ptr(c.dout.at("z")));
    const std::pair<const char*, const std::vector<double>*> grads[] = {
        {"W_in", &g.W_in}, {"W", &g.W}, {"b", &g.b}, {"W_out", &g.W_out}, {"c", &g.c}, {"x", &g.x}, {"z0", &g.z0}};
    for (const auto& [key, v] : grads) {
      const Tensor& expected = c.grad.at(key);
      close(from_values(*v, expected.shape(), DType::f64), expected, std::string(name) + " grad_" + key, agg);
    }
    BOOST_TEST_MESSAGE("conformance " << name << " (hand BPTT): worst relative error " << agg.worst_rel << " ("
                                      << agg.where << ")");
    BOOST_TEST(agg.ok());
  }
}

BOOST_AUTO_TEST_CASE(hand_lstm_matches_conformance) {
  // lstm_cell is one step in PyTorch's layout: W_ih (4H, I), W_hh (4H, H), two biases. Transposed and
  // summed into the row-vector layout here.
  auto c = load_case("lstm_cell");
  const Tensor& x = c.in.at("x");
  const std::size_t B = x.size(0), I = x.size(1), H = c.in.at("h0").size(1);
  Tensor W_x = transpose(c.in.at("W_ih")).detach(), W_h = transpose(c.in.at("W_hh")).detach();
  Tensor b = (c.in.at("b_ih") + c.in.at("b_hh")).detach();
  ref::LSTMBPTT<double> hand(I, H);
  const double* h1 = hand.forward({ptr(W_x), ptr(W_h), ptr(b)}, ptr(x), ptr(c.in.at("h0")), ptr(c.in.at("c0")), 1, B);
  Agreement agg;
  close(from_values(std::vector<double>(h1, h1 + B * H), {B, H}, DType::f64), c.out.at("h1"), "lstm_cell h1", agg);
  close(from_values(std::vector<double>(hand.c(1), hand.c(1) + B * H), {B, H}, DType::f64), c.out.at("c1"), "lstm_cell c1",
        agg);
  const auto& g = hand.backward(ptr(c.dout.at("h1")), ptr(c.dout.at("c1")));
  close(transpose(from_values(g.W_x, {I, 4 * H}, DType::f64)), c.grad.at("W_ih"), "lstm_cell grad_W_ih", agg);
  close(transpose(from_values(g.W_h, {H, 4 * H}, DType::f64)), c.grad.at("W_hh"), "lstm_cell grad_W_hh", agg);
  close(from_values(g.b, {4 * H}, DType::f64), c.grad.at("b_ih"), "lstm_cell grad_b_ih", agg);
  close(from_values(g.b, {4 * H}, DType::f64), c.grad.at("b_hh"), "lstm_cell grad_b_hh", agg);
  close(from_values(g.x, {B, I}, DType::f64), c.grad.at("x"), "lstm_cell grad_x", agg);
  close(from_values(g.h0, {B, H}, DType::f64), c.grad.at("h0"), "lstm_cell grad_h0", agg);
  close(from_values(g.c0, {B, H}, DType::f64), c.grad.at("c0"), "lstm_cell grad_c0", agg);
  BOOST_TEST_MESSAGE("conformance lstm_cell (hand BPTT): worst relative error " << agg.worst_rel << " (" << agg.where << ")");
  BOOST_TEST(agg.ok());
}

BOOST_AUTO_TEST_CASE(float32_instantiation_agrees_with_float64) {
  Generator gen(404);
  ElmanCase m(4, 3, 2, 4, 2, gen);
  ref::ElmanBPTT<double> hd(2, 4, 2, ref::Activation::tanh);
  hd.forward(m.params(), ptr(m.x), ptr(m.z0), 4, 3);
  const auto gd = hd.backward_half_sum(ptr(m.d));
  std::vector<Tensor> f32;
  for (const Tensor& t : {m.W_in, m.W, m.b, m.W_out, m.c, m.x, m.z0, m.d}) f32.push_back(t.to(DType::f32));
  auto fp = [&](std::size_t k) { return f32[k].data<float>(); };
  ref::ElmanBPTT<float> hf(2, 4, 2, ref::Activation::tanh);
  hf.forward({fp(0), fp(1), fp(2), fp(3), fp(4)}, fp(5), fp(6), 4, 3);
  const auto& gf = hf.backward_half_sum(fp(7));
  double worst = 0, scale = 0;
  for (std::size_t i = 0; i < gd.W.size(); ++i) {
    worst = std::max(worst, std::abs(double(gf.W[i]) - gd.W[i]));
    scale = std::max(scale, std::abs(gd.W[i]));
  }
  BOOST_TEST(worst <= 1e-5 * scale);

  Tensor x32 = randn({2, 2, 3}, gen, 1.0, DType::f32), W_x = randn({3, 8}, gen, 0.5, DType::f32),
         W_h = randn({2, 8}, gen, 0.5, DType::f32), b = zeros({8}, DType::f32), dh = ones({2, 2, 2}, DType::f32);
  ref::LSTMBPTT<float> lf(3, 2);
  lf.forward({W_x.data<float>(), W_h.data<float>(), b.data<float>()}, x32.data<float>(), nullptr, nullptr, 2, 2);
  const auto& gl = lf.backward(dh.data<float>());
  BOOST_TEST(gl.W_x.size() == 24u);
  BOOST_TEST(std::all_of(gl.W_x.begin(), gl.W_x.end(), [](float v) { return std::isfinite(v); }));
}

BOOST_AUTO_TEST_CASE(workspace_is_reused_across_calls) {
  // A second, smaller forward/backward in the same workspace gives the same result as a fresh one.
  Generator gen(505);
  ElmanCase big(7, 4, 3, 5, 2, gen), small(2, 1, 3, 5, 2, gen);
  ref::ElmanBPTT<double> ws(3, 5, 2, ref::Activation::sigmoid), fresh(3, 5, 2, ref::Activation::sigmoid);
  ws.forward(big.params(), ptr(big.x), ptr(big.z0), 7, 4);
  ws.backward_half_sum(ptr(big.d));
  ws.forward(small.params(), ptr(small.x), nullptr, 2, 1);
  fresh.forward(small.params(), ptr(small.x), nullptr, 2, 1);
  const auto a = ws.backward_half_sum(ptr(small.d));
  const auto& b = fresh.backward_half_sum(ptr(small.d));
  // Equal to rounding, not bit for bit: xtensor runs the unaligned head of a buffer through scalar exp/tanh
  // and the rest through xsimd, so the last bit follows the buffers' addresses. Stale values left by the
  // bigger call would differ in the leading digits.
  auto same = [](const std::vector<double>& u, const std::vector<double>& v) {
    if (u.size() != v.size()) return false;
    double num = 0, den = 0;
    for (std::size_t i = 0; i < u.size(); ++i) {
      num = std::max(num, std::abs(u[i] - v[i]));
      den = std::max(den, std::abs(v[i]));
    }
    return num <= 1e-14 * den;
  };
  BOOST_TEST(same(a.W, b.W));
  BOOST_TEST(same(a.W_in, b.W_in));
  BOOST_TEST(same(a.x, b.x));
  BOOST_TEST(a.x.size() == 2u * 1 * 3);
  BOOST_TEST(std::abs(ws.half_sum_loss(ptr(small.d)) - fresh.half_sum_loss(ptr(small.d))) <=
             1e-14 * fresh.half_sum_loss(ptr(small.d)));
}

BOOST_AUTO_TEST_CASE(bad_use_is_an_error) {
  expect_error([] { ref::ElmanBPTT<double>(0, 3, 1, ref::Activation::tanh); }, {"ElmanBPTT", "input 0"});
  expect_error([] { ref::LSTMBPTT<float>(2, 0); }, {"LSTMBPTT", "hidden 0"});
  ref::ElmanBPTT<double> e(2, 3, 1, ref::Activation::tanh);
  std::vector<double> dy(3, 1.0);
  expect_error([&] { e.backward(dy.data()); }, {"ElmanBPTT::backward", "forward first"});
  expect_error([&] { e.z(0); }, {"ElmanBPTT::z", "no forward"});
  std::vector<double> buf(100, 0.1);
  ref::ElmanParams<double> p{buf.data(), buf.data(), buf.data(), buf.data(), buf.data()};
  expect_error([&] { e.forward(p, buf.data(), nullptr, 0, 2); }, {"ElmanBPTT::forward", "steps 0"});
  expect_error([&] { e.forward({}, buf.data(), nullptr, 1, 1); }, {"ElmanBPTT::forward", "W_in"});
  e.forward(p, buf.data(), nullptr, 2, 3);
  expect_error([&] { e.z(3); }, {"ElmanBPTT::z", "step 3", "[0, 2]"});
  ref::LSTMBPTT<double> l(2, 3);
  expect_error([&] { l.backward(buf.data()); }, {"LSTMBPTT::backward", "forward first"});
  expect_error([&] { l.forward({buf.data(), buf.data(), buf.data()}, buf.data(), nullptr, nullptr, 3, 0); },
               {"LSTMBPTT::forward", "batch 0"});
  expect_error([] { ref::GRUBPTT<double>(0, 2); }, {"GRUBPTT", "input 0"});
  ref::GRUBPTT<double> g(2, 3);
  expect_error([&] { g.backward(buf.data()); }, {"GRUBPTT::backward", "forward first"});
  expect_error([&] { g.h(0); }, {"GRUBPTT::h", "no forward"});
  expect_error([&] { g.forward({buf.data(), buf.data(), buf.data(), nullptr}, buf.data(), nullptr, 1, 1); },
               {"GRUBPTT::forward", "b_hn"});
  expect_error([&] { g.forward({buf.data(), buf.data(), buf.data(), buf.data()}, buf.data(), nullptr, 0, 1); },
               {"GRUBPTT::forward", "steps 0"});
}

BOOST_AUTO_TEST_SUITE_END()
