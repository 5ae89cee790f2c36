// nn::gradient_norms_over_time: against a hand computation (simple RNN, 1 unit), against central
// differences for an LSTM's h_t and c_t (float64), off the training path (parameters' gradients
// untouched, backward still possible), and decay_per_step on exact geometric sequences.
#include <boost/test/unit_test.hpp>

#include <cmath>
#include <functional>

#include <tapegrad/nn/training/gradient_flow.hpp>

#include "support/xt.hpp"

using namespace tapegrad;

namespace {

double norm_of(const std::vector<double>& v) {
  double s = 0;
  for (double x : v) s += x * x;
  return std::sqrt(s);
}

}  // namespace

BOOST_AUTO_TEST_SUITE(gradient_flow)

// h_t = tanh(x_t w_in + h_(t-1) w + b), L = 1/2 h_(T-1)^2. By hand: dL/dh_(T-1) = h_(T-1);
// dL/dh_t = dL/dh_(t+1) (1 - h_(t+1)^2) w.
BOOST_AUTO_TEST_CASE(simple_rnn_matches_the_hand_recursion) {
  nn::RNNWeights w{parameter(from_values({0.7}, {1, 1}, DType::f64)), parameter(from_values({1.3}, {1, 1}, DType::f64)),
                   parameter(from_values({0.1}, {1}, DType::f64))};
  nn::RNNCell cell(w, nn::Activation::tanh);
  const std::vector<double> xs = {0.5, -1.0, 0.25, 0.8, -0.3};
  const std::size_t T = xs.size();
  Tensor x = from_values(xs, {T, 1, 1}, DType::f64);
  nn::Sequence seq = nn::run(cell, x);
  Tensor hT = seq.steps.back();
  Tensor loss = sum(hT * hT) * 0.5;
  const nn::GradientFlow flow = nn::gradient_norms_over_time(loss, seq);
  BOOST_TEST_REQUIRE(flow.h.size() == T);
  BOOST_TEST(flow.c.empty());
  std::vector<double> h(T);
  for (std::size_t t = 0; t < T; ++t) h[t] = seq.steps[t].item();
  double g = h[T - 1];
  for (std::size_t k = T; k-- > 0;) {
    BOOST_TEST(flow.h[k] == std::abs(g), boost::test_tools::tolerance(1e-13));
    if (k > 0) g = g * (1 - h[k] * h[k]) * 1.3;
  }
}

// LSTM, B = 2, H = 3, float64: ||dL/dc_k|| and ||dL/dh_k|| against central differences of L with a
// perturbation added to c_k (or h_k) as the run goes. dL/dc_k is the total derivative, through h_k =
// o_k tanh(c_k) too, so the perturbed c_k must also feed h_k: the step is written out here (no peepholes).
BOOST_AUTO_TEST_CASE(lstm_h_and_c_norms_match_central_differences) {
  Generator gen(3);
  nn::LSTMCell cell(2, 3, gen, false, nn::Init::glorot, 0.01, DType::f64);
  const std::size_t T = 6, B = 2, H = 3;
  Tensor x = randn({T, B, 2}, gen, 1.0, DType::f64);
  Tensor readout = randn({B, H}, gen, 1.0, DType::f64);
  // L(delta) with delta added to h_k (which = 0) or c_k (which = 1) right where it is computed.
  const auto loss_with = [&](std::size_t k, int which, const Tensor& delta, std::vector<nn::State>* states) {
    Tensor h = zeros({B, H}, DType::f64), c = zeros({B, H}, DType::f64);
    for (std::size_t t = 0; t < T; ++t) {
      Tensor a = matmul(reshape(slice(x, 0, t, t + 1), {B, 2}), cell.W_x) + matmul(h, cell.W_h) + cell.b;
      Tensor i = sigmoid(slice(a, 1, 0, H)), f = sigmoid(slice(a, 1, H, 2 * H));
      Tensor g = tanh(slice(a, 1, 2 * H, 3 * H)), o = sigmoid(slice(a, 1, 3 * H, 4 * H));
      c = f * c + i * g;
      if (t == k && which == 1) c = c + delta;
      h = o * tanh(c);
      if (t == k && which == 0) h = h + delta;
      if (states) states->push_back({h, c});
    }
    return sum(tanh(h) * readout) + sum(c * c) * 0.1;
  };
  std::vector<nn::State> states;
  Tensor loss = loss_with(0, 0, zeros({B, H}, DType::f64), &states);
  const nn::GradientFlow flow = nn::gradient_norms_over_time(loss, states);
  const nn::GradientFlow per_sequence = nn::gradient_norms_over_time(loss, states, nn::NormOver::sequence_mean);
  BOOST_TEST_REQUIRE(flow.c.size() == T);
  const double eps = 1e-6;
  for (std::size_t k = 0; k < T; ++k)
    for (int which = 0; which < 2; ++which) {
      std::vector<double> fd(B * H);
      for (std::size_t e = 0; e < B * H; ++e) {
        std::vector<double> d(B * H, 0.0);
        d[e] = eps;
        const double up = loss_with(k, which, from_values(d, {B, H}, DType::f64), nullptr).item();
        d[e] = -eps;
        const double down = loss_with(k, which, from_values(d, {B, H}, DType::f64), nullptr).item();
        fd[e] = (up - down) / (2 * eps);
      }
      const double measured = which == 0 ? flow.h[k] : flow.c[k];
      BOOST_TEST(measured == norm_of(fd), boost::test_tools::tolerance(1e-7));
      const double mean_of_rows = (norm_of({fd.begin(), fd.begin() + H}) + norm_of({fd.begin() + H, fd.end()})) / 2;
      BOOST_TEST((which == 0 ? per_sequence.h[k] : per_sequence.c[k]) == mean_of_rows, boost::test_tools::tolerance(1e-7));
    }
  // The last h only reaches L directly; earlier ones through the recurrence: none is zero here.
  for (double v : flow.h) BOOST_TEST(v > 0);
}

BOOST_AUTO_TEST_CASE(off_the_training_path_parameters_grads_untouched_backward_still_works) {
  Generator gen(5);
  nn::GRUCell cell(2, 4, gen, nn::GRUConvention::course, nn::Init::glorot, 0.01, DType::f64);
  Tensor x = randn({5, 3, 2}, gen, 1.0, DType::f64);
  const auto run_loss = [&] {
    nn::Sequence seq = nn::run(cell, x);
    return std::make_pair(seq, sum(seq.outputs * seq.outputs));
  };
  // Reference gradients: a plain backward.
  cell.zero_grad();
  backward(run_loss().second);
  std::vector<std::vector<double>> reference;
  for (const Tensor& p : cell.parameters()) reference.push_back(p.grad().to_vector());
  // Gradients before: something nonzero in place (a previous backward); the report must not add to them.
  auto [seq, loss] = run_loss();
  const nn::GradientFlow flow = nn::gradient_norms_over_time(loss, seq);
  BOOST_TEST(flow.h.size() == 5u);
  std::size_t i = 0;
  for (const Tensor& p : cell.parameters()) BOOST_TEST(p.grad().to_vector() == reference[i++], boost::test_tools::per_element());
  // The graph was retained: the training step's backward follows and accumulates the same gradients.
  backward(loss);
  i = 0;
  for (const Tensor& p : cell.parameters()) {
    std::vector<double> twice = reference[i++];
    for (double& v : twice) v *= 2;
    const std::vector<double> got = p.grad().to_vector();
    BOOST_TEST_REQUIRE(got.size() == twice.size());
    for (std::size_t k = 0; k < got.size(); ++k)  // the same sweep added again (summation order may differ)
      BOOST_TEST(got[k] == twice[k], boost::test_tools::tolerance(1e-12));
  }
}

BOOST_AUTO_TEST_CASE(decay_per_step_of_geometric_sequences) {
  std::vector<double> vanishing, exploding, flat;
  const std::size_t T = 20;
  for (std::size_t t = 0; t < T; ++t) {
    vanishing.push_back(3 * std::pow(0.5, double(T - 1 - t)));  // halves per step back in time
    exploding.push_back(std::pow(1.25, double(T - 1 - t)));
    flat.push_back(0.7);
  }
  BOOST_TEST(nn::decay_per_step(vanishing) == 0.5, boost::test_tools::tolerance(1e-12));
  BOOST_TEST(nn::decay_per_step(exploding) == 1.25, boost::test_tools::tolerance(1e-12));
  BOOST_TEST(nn::decay_per_step(flat) == 1.0, boost::test_tools::tolerance(1e-12));
  vanishing[3] = 0;  // a zero (underflowed) norm is left out of the fit
  BOOST_TEST(nn::decay_per_step(vanishing) == 0.5, boost::test_tools::tolerance(1e-12));
  BOOST_CHECK_THROW(nn::decay_per_step({1.0}), Error);
  BOOST_CHECK_THROW(nn::decay_per_step({0.0, 0.0, 1.0}), Error);
}

BOOST_AUTO_TEST_CASE(bad_inputs_are_errors) {
  Generator gen(1);
  nn::RNNCell cell(2, 3, gen);
  Tensor x = randn({4, 2, 2}, gen);
  nn::Sequence seq = nn::run(cell, x);
  BOOST_CHECK_THROW(nn::gradient_norms_over_time(seq.outputs, seq), Error);  // not a scalar
  BOOST_CHECK_THROW(nn::gradient_norms_over_time(sum(seq.outputs), std::vector<nn::State>{}), Error);
  Tape::current().clear();
  BOOST_CHECK_THROW(nn::run_traced(cell, randn({4, 2, 5}, gen)), Error);  // wrong input size
}

// run_traced computes what nn::run computes.
BOOST_AUTO_TEST_CASE(run_traced_equals_run) {
  Generator gen(2);
  nn::LSTMCell cell(2, 3, gen);
  Tensor x = randn({5, 2, 2}, gen);
  NoGrad no_grad;
  nn::TracedSequence traced = nn::run_traced(cell, x);
  nn::Sequence seq = nn::run(cell, x);
  BOOST_TEST(traced.outputs.to_vector() == seq.outputs.to_vector(), boost::test_tools::per_element());
  BOOST_TEST(traced.states.size() == 5u);
  BOOST_TEST(traced.last.c.to_vector() == seq.last.c.to_vector(), boost::test_tools::per_element());
}

BOOST_AUTO_TEST_SUITE_END()
