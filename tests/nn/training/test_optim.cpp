// Optimizers and gradient clipping: closed forms on tiny cases, errors, and the conformance case
// clip_and_optim (PyTorch 1.13, float64).
#include <boost/test/unit_test.hpp>

#include <cmath>
#include <functional>
#include <limits>
#include <memory>

#include <tapegrad/nn/models/linear.hpp>
#include <tapegrad/nn/training/optim.hpp>
#include <tapegrad/nn/training/serialize.hpp>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <unistd.h>

#include "support/conformance.hpp"
#include "support/files.hpp"
#include "support/xt.hpp"

using namespace tapegrad;
using namespace tapegrad::test;

namespace {

// Gives each parameter the gradient g_k (same shape) through the engine: backward of sum(p_k * g_k), one
// backward per parameter (they may differ in dtype). Gradients accumulate as usual.
void set_grads(const std::vector<Tensor>& params, const std::vector<Tensor>& grads) {
  for (std::size_t k = 0; k < params.size(); ++k) backward(sum(params[k] * grads[k]));
}

double max_rel_diff(const std::vector<double>& a, const std::vector<double>& b) {
  if (a.size() != b.size()) return INFINITY;
  double m = 0;
  for (std::size_t i = 0; i < a.size(); ++i) m = std::max(m, std::abs(a[i] - b[i]) / std::max(std::abs(b[i]), 1e-300));
  return m;
}

const std::vector<double> w0 = {0.5, -1.25, 2.0, 0.75, -0.3, 1.1};
const std::vector<double> g0 = {0.2, -0.4, 1.5, -3.0, 0.01, 0.7};

// Two steps with the same gradient g0 from w0; returns w after each step.
template <class Opt, class... Args>
std::pair<std::vector<double>, std::vector<double>> two_steps(DType dtype, Args... args) {
  Tensor w = parameter(from_values(w0, {2, 3}, dtype));
  Tensor g = from_values(g0, {2, 3}, dtype);
  Opt opt({w}, args...);
  set_grads({w}, {g});
  opt.step();
  auto first = w.to_vector();
  opt.zero_grad();
  set_grads({w}, {g});
  opt.step();
  BOOST_TEST((w.dtype() == dtype));
  return {first, w.to_vector()};
}

template <class F> std::vector<double> map_w(F f) {
  std::vector<double> out(w0.size());
  for (std::size_t i = 0; i < w0.size(); ++i) out[i] = f(w0[i], g0[i]);
  return out;
}

}  // namespace

BOOST_AUTO_TEST_SUITE(optim)

BOOST_AUTO_TEST_CASE(sgd_steps_against_w_minus_lr_g) {
  for (DType d : {DType::f64, DType::f32}) {
    const double tol = d == DType::f64 ? 1e-15 : 1e-6;
    auto [s1, s2] = two_steps<nn::SGD>(d, 0.1);
    BOOST_TEST(max_rel_diff(s1, map_w([](double w, double g) { return w - 0.1 * g; })) < tol);
    BOOST_TEST(max_rel_diff(s2, map_w([](double w, double g) { return w - 0.2 * g; })) < tol);
  }
}

BOOST_AUTO_TEST_CASE(momentum_steps_against_closed_form) {
  // v1 = -lr g, w1 = w0 - lr g;  v2 = mu v1 - lr g = -(1 + mu) lr g, w2 = w1 + v2.
  for (DType d : {DType::f64, DType::f32}) {
    const double tol = d == DType::f64 ? 1e-15 : 1e-6;
    auto [s1, s2] = two_steps<nn::Momentum>(d, 0.1, 0.9);
    BOOST_TEST(max_rel_diff(s1, map_w([](double w, double g) { return w - 0.1 * g; })) < tol);
    BOOST_TEST(max_rel_diff(s2, map_w([](double w, double g) { return w - 0.1 * g - 1.9 * 0.1 * g; })) < tol);
  }
}

BOOST_AUTO_TEST_CASE(adagrad_steps_against_closed_form) {
  // h1 = g^2: w1 = w0 - lr g / (|g| + eps);  h2 = 2 g^2: w2 = w1 - lr g / (sqrt(2) |g| + eps).
  for (DType d : {DType::f64, DType::f32}) {
    const double tol = d == DType::f64 ? 1e-15 : 1e-6, lr = 0.05, eps = 1e-3;  // a visible eps
    auto [s1, s2] = two_steps<nn::AdaGrad>(d, lr, eps);
    auto w1 = [&](double w, double g) { return w - lr * g / (std::abs(g) + eps); };
    BOOST_TEST(max_rel_diff(s1, map_w(w1)) < tol);
    BOOST_TEST(max_rel_diff(s2, map_w([&](double w, double g) { return w1(w, g) - lr * g / (std::sqrt(2.0) * std::abs(g) + eps); })) < tol);
  }
}

BOOST_AUTO_TEST_CASE(rmsprop_steps_against_closed_form) {
  // h1 = (1-a) g^2;  h2 = (a (1-a) + (1-a)) g^2;  w -= lr g / (sqrt(h) + eps).
  for (DType d : {DType::f64, DType::f32}) {
    const double tol = d == DType::f64 ? 1e-14 : 1e-6, lr = 0.01, a = 0.9, eps = 1e-3;
    auto [s1, s2] = two_steps<nn::RMSProp>(d, lr, a, eps);
    auto w1 = [&](double w, double g) { return w - lr * g / (std::sqrt(1 - a) * std::abs(g) + eps); };
    BOOST_TEST(max_rel_diff(s1, map_w(w1)) < tol);
    BOOST_TEST(max_rel_diff(s2, map_w([&](double w, double g) {
                 return w1(w, g) - lr * g / (std::sqrt((1 - a) * (1 + a)) * std::abs(g) + eps);
               })) < tol);
  }
}

BOOST_AUTO_TEST_CASE(adam_steps_against_closed_form) {
  // With a constant gradient, bias correction makes m_hat = g and v_hat = g^2 at every step:
  // w_t = w_(t-1) - lr g / (|g| + eps)  (eps enters as sqrt(v)/sqrt(1-b2^t) + eps).
  for (DType d : {DType::f64, DType::f32}) {
    const double tol = d == DType::f64 ? 1e-14 : 1e-6, lr = 0.01, eps = 1e-2;
    auto [s1, s2] = two_steps<nn::Adam>(d, lr, 0.8, 0.95, eps);
    auto w1 = [&](double w, double g) { return w - lr * g / (std::abs(g) + eps); };
    BOOST_TEST(max_rel_diff(s1, map_w(w1)) < tol);
    BOOST_TEST(max_rel_diff(s2, map_w([&](double w, double g) { return w1(w, g) - lr * g / (std::abs(g) + eps); })) < tol);
  }
}

BOOST_AUTO_TEST_CASE(state_is_per_parameter_and_params_without_grad_are_skipped) {
  Tensor a = parameter(from_values({1.0, 2.0}, {2}, DType::f64));
  Tensor b = parameter(from_values({3.0}, {1}, DType::f64));  // never reached by a backward at first
  nn::Adam opt({a, b}, 0.1);
  for (int t = 0; t < 3; ++t) {
    opt.zero_grad();
    set_grads({a}, {from_values({1.0, -1.0}, {2}, DType::f64)});
    opt.step();
  }
  BOOST_TEST(b.to_vector() == std::vector<double>{3.0});
  BOOST_TEST(!b.grad().defined());
  // b's first gradient gives b's first Adam step (its own step count starts at 1): lr g / (|g| + eps).
  opt.zero_grad();  // a's gradient is now zero: a moves by its momentum only
  set_grads({b}, {from_values({2.0}, {1}, DType::f64)});
  const auto a_before = a.to_vector();
  opt.step();
  BOOST_TEST(std::abs(b.item() - (3.0 - 0.1 * 2.0 / (2.0 + 1e-8))) < 1e-15);
  BOOST_TEST(a.to_vector() != a_before);
}

BOOST_AUTO_TEST_CASE(updates_in_place_seen_by_every_handle) {
  Tensor w = parameter(from_values({1.0, 2.0}, {2}, DType::f32));
  Tensor alias = w;
  nn::SGD opt({w}, 0.5);
  set_grads({w}, {from_values({2.0, 2.0}, {2}, DType::f32)});
  opt.step();
  BOOST_TEST(alias.to_vector() == (std::vector<double>{0.0, 1.0}));
  opt.zero_grad();
  BOOST_TEST(w.grad().to_vector() == (std::vector<double>{0.0, 0.0}));
}

BOOST_AUTO_TEST_CASE(bad_hyperparameters_and_parameters_are_errors) {
  Tensor w = parameter(zeros({2, 3}, DType::f64));
  expect_error([&] { nn::SGD({w}, 0.0); }, {"SGD", "learning rate", "0"});
  expect_error([&] { nn::SGD({w}, -0.1); }, {"SGD", "learning rate", "-0.1"});
  expect_error([&] { nn::Adam({w}, std::numeric_limits<double>::quiet_NaN()); }, {"Adam", "learning rate", "nan"});
  expect_error([&] { nn::Momentum({w}, 0.1, 1.0); }, {"Momentum", "momentum", "[0, 1)", "1"});
  expect_error([&] { nn::Momentum({w}, 0.1, -0.5); }, {"Momentum", "momentum", "-0.5"});
  expect_error([&] { nn::Adam({w}, 0.1, 1.0, 0.999); }, {"Adam", "beta1", "1"});
  expect_error([&] { nn::Adam({w}, 0.1, 0.9, 1.5); }, {"Adam", "beta2", "1.5"});
  expect_error([&] { nn::Adam({w}, 0.1, 0.9, 0.999, -1e-8); }, {"Adam", "eps", "-1e-08"});
  expect_error([&] { nn::RMSProp({w}, 0.1, 1.0); }, {"RMSProp", "alpha", "1"});
  expect_error([&] { nn::AdaGrad({w}, 0.1, -1.0); }, {"AdaGrad", "eps", "-1"});
  expect_error([&] { nn::SGD({}, 0.1); }, {"SGD", "empty parameter list"});
  expect_error([&] { nn::SGD({w, w}, 0.1); }, {"SGD", "parameter 1", "(2, 3)", "same tensor as parameter 0"});
  expect_error([&] { nn::SGD({Tensor()}, 0.1); }, {"SGD", "parameter 0", "undefined"});
  Tensor recorded = w * 2.0;
  expect_error([&] { nn::SGD({recorded}, 0.1); }, {"SGD", "parameter 0", "(2, 3)", "not an owned leaf"});
  Tape::current().clear();
  nn::SGD opt({w}, 0.1);
  expect_error([&] { opt.set_lr(0); }, {"SGD", "learning rate"});
  BOOST_TEST(opt.lr() == 0.1);
  opt.set_lr(0.01);
  BOOST_TEST(opt.lr() == 0.01);
}

// ---- clipping ---------------------------------------------------------------------------------------

BOOST_AUTO_TEST_CASE(clip_grad_norm_scales_all_gradients_by_the_global_norm) {
  Tensor a = parameter(zeros({2}, DType::f64)), b = parameter(zeros({1, 1}, DType::f32));
  Tensor unused = parameter(zeros({3}, DType::f64));
  set_grads({a, b}, {from_values({3.0, 0.0}, {2}, DType::f64), from_values({4.0}, {1, 1}, DType::f32)});
  const double norm = nn::clip_grad_norm({a, b, unused}, 1.0);  // norm 5 -> rate 0.2
  BOOST_TEST(norm == 5.0);
  BOOST_TEST(std::abs(a.grad().at({0}) - 0.6) < 1e-15);
  BOOST_TEST(a.grad().at({1}) == 0.0);
  BOOST_TEST(std::abs(b.grad().at({0, 0}) - 0.8) < 1e-7);
  BOOST_TEST(!unused.grad().defined());
  // Under the threshold: untouched.
  BOOST_TEST(std::abs(nn::clip_grad_norm({a, b}, 10.0) - 1.0) < 1e-7);
  BOOST_TEST(std::abs(a.grad().at({0}) - 0.6) < 1e-15);
}

BOOST_AUTO_TEST_CASE(clip_at_zero_norm_is_safe) {
  Tensor a = parameter(zeros({2, 2}, DType::f64)), b = parameter(zeros({3}, DType::f32));
  set_grads({a, b}, {zeros({2, 2}, DType::f64), zeros({3}, DType::f32)});
  BOOST_TEST(nn::clip_grad_norm({a, b}, 1.0) == 0.0);
  const auto norms = nn::clip_grad_norm_per_tensor({a, b}, 1.0);
  BOOST_TEST(norms == (std::vector<double>{0.0, 0.0}));
  for (double v : a.grad().to_vector()) BOOST_TEST(v == 0.0);
  for (double v : b.grad().to_vector()) BOOST_TEST(v == 0.0);
  // No gradients at all: norm 0, nothing to do.
  Tensor c = parameter(zeros({2}, DType::f64));
  BOOST_TEST(nn::clip_grad_norm({c}, 1.0) == 0.0);
}

BOOST_AUTO_TEST_CASE(clip_per_tensor_uses_each_tensors_own_norm) {
  Tensor a = parameter(zeros({2}, DType::f64)), b = parameter(zeros({2}, DType::f64)), c = parameter(zeros({1}, DType::f64));
  set_grads({a, b}, {from_values({3.0, 4.0}, {2}, DType::f64), from_values({0.3, 0.4}, {2}, DType::f64)});
  const auto norms = nn::clip_grad_norm_per_tensor({a, c, b}, 1.0);
  BOOST_TEST(norms == (std::vector<double>{5.0, 0.0, std::sqrt(0.25)}));
  BOOST_TEST(max_rel_diff(a.grad().to_vector(), {0.6, 0.8}) < 1e-15);
  BOOST_TEST(b.grad().to_vector() == (std::vector<double>{0.3, 0.4}));  // norm 0.5 < 1: untouched
}

BOOST_AUTO_TEST_CASE(clip_norm_does_not_overflow_for_huge_finite_gradients) {
  Tensor a = parameter(zeros({2}, DType::f64));
  set_grads({a}, {from_values({3e200, 4e200}, {2}, DType::f64)});
  const double norm = nn::clip_grad_norm({a}, 1.0);
  BOOST_TEST(std::abs(norm / 5e200 - 1) < 1e-15);
  BOOST_TEST(max_rel_diff(a.grad().to_vector(), {0.6, 0.8}) < 1e-15);
}

BOOST_AUTO_TEST_CASE(clip_errors_leave_gradients_untouched) {
  Tensor a = parameter(zeros({2}, DType::f64)), b = parameter(zeros({2, 1}, DType::f64));
  set_grads({a, b}, {from_values({30.0, 40.0}, {2}, DType::f64),
                     from_values({std::numeric_limits<double>::infinity(), 1.0}, {2, 1}, DType::f64)});
  expect_error([&] { nn::clip_grad_norm({a, b}, 1.0); }, {"clip_grad_norm", "parameter 1", "(2, 1)", "not finite"});
  expect_error([&] { nn::clip_grad_norm_per_tensor({a, b}, 1.0); }, {"clip_grad_norm_per_tensor", "parameter 1", "not finite"});
  BOOST_TEST(a.grad().to_vector() == (std::vector<double>{30.0, 40.0}));
  expect_error([&] { nn::clip_grad_norm({a}, 0.0); }, {"clip_grad_norm", "max_norm", "0"});
  expect_error([&] { nn::clip_grad_norm_per_tensor({a}, -1.0); }, {"clip_grad_norm_per_tensor", "max_norm", "-1"});
  BOOST_TEST(a.grad().to_vector() == (std::vector<double>{30.0, 40.0}));
}

// ---- conformance: clip_and_optim ----------------------------------------------------------------------

BOOST_AUTO_TEST_CASE(conformance_clip_threshold1) {
  auto c = load_case("clip_and_optim");
  const Tensor& g = c.consts.at("grad");
  const Tensor& expected = c.out.at("clipped_threshold1");
  // The gradient as two parameters (a split of the vector), so the norm is global across tensors.
  const std::size_t n = g.numel(), cut = n / 2;
  BOOST_REQUIRE(cut > 0);
  Tensor p1 = parameter(zeros({cut}, DType::f64)), p2 = parameter(zeros({n - cut}, DType::f64));
  set_grads({p1, p2}, {slice(g, 0, 0, cut).detach(), slice(g, 0, cut, n).detach()});
  const double norm = nn::clip_grad_norm({p1, p2}, 1.0);
  double sq = 0;
  for (double v : g.to_vector()) sq += v * v;
  BOOST_TEST(std::abs(norm - std::sqrt(sq)) <= 1e-15 * norm);
  std::vector<double> clipped = p1.grad().to_vector(), rest = p2.grad().to_vector();
  clipped.insert(clipped.end(), rest.begin(), rest.end());
  Agreement agg;
  BOOST_TEST(close(from_values(clipped, expected.shape(), DType::f64), expected, "clip_and_optim out_clipped_threshold1", agg));
  BOOST_TEST_MESSAGE("conformance clip_and_optim clipped_threshold1: worst relative error " << agg.worst_rel);
}

BOOST_AUTO_TEST_CASE(conformance_optimizers_5_steps) {
  auto c = load_case("clip_and_optim");
  const Tensor &A = c.consts.at("A"), &b = c.consts.at("b"), &x0 = c.consts.at("x0");
  const std::size_t n = x0.numel();
  // The hyperparameters are in the file names; the rest are PyTorch's defaults (MANIFEST.md).
  using Factory = std::function<std::unique_ptr<nn::Optimizer>(std::vector<Tensor>)>;
  const std::vector<std::pair<std::string, Factory>> runs = {
      {"sgd_lr0.1_5steps", [](auto p) { return std::make_unique<nn::SGD>(p, 0.1); }},
      {"momentum_lr0.1_m0.9_5steps", [](auto p) { return std::make_unique<nn::Momentum>(p, 0.1, 0.9); }},
      {"adagrad_lr0.1_5steps", [](auto p) { return std::make_unique<nn::AdaGrad>(p, 0.1); }},
      {"rmsprop_lr0.01_a0.99_5steps", [](auto p) { return std::make_unique<nn::RMSProp>(p, 0.01, 0.99); }},
      {"adam_lr0.1_5steps", [](auto p) { return std::make_unique<nn::Adam>(p, 0.1); }},
  };
  BOOST_TEST(c.out.size() == runs.size() + 1, "clip_and_optim has " << c.out.size() << " outputs; this test covers " << runs.size() + 1);
  Agreement all;
  for (const auto& [key, make] : runs) {
    BOOST_TEST_CONTEXT(key) {
      BOOST_REQUIRE(c.out.count(key));
      const Tensor& expected = c.out.at(key);
      const std::size_t steps = expected.size(0);
      BOOST_REQUIRE(expected.shape() == Shape({steps, n}));
      Tensor x = parameter(x0.detach());
      auto opt = make({x});
      std::vector<double> trajectory;
      for (std::size_t t = 0; t < steps; ++t) {
        opt->zero_grad();
        // f(x) = 1/2 x^T A x - b^T x, differentiated by the engine: grad = (A + A^T)/2 x - b.
        Tensor xr = reshape(x, {1, n});
        Tensor f = sum(matmul(xr, A) * xr) * 0.5 - sum(b * x);
        backward(f);
        opt->step();
        const auto xv = x.to_vector();
        trajectory.insert(trajectory.end(), xv.begin(), xv.end());
      }
      Agreement agg;
      BOOST_TEST(close(from_values(trajectory, expected.shape(), DType::f64), expected, "clip_and_optim out_" + key, agg));
      BOOST_TEST_MESSAGE("conformance clip_and_optim " << key << ": worst relative error " << agg.worst_rel);
      all.worst_rel = std::max(all.worst_rel, agg.worst_rel);
    }
  }
  BOOST_TEST_MESSAGE("conformance clip_and_optim optimizers: worst relative error " << all.worst_rel);
}

BOOST_AUTO_TEST_SUITE_END()

// ---- optimizer checkpoints (nn::save / nn::load of an Optimizer) ------------------------------------

namespace {

// A two-layer net y = tanh(x W1 + b1) W2 + b2 on fixed data, float32 (the training dtype).
struct TinyNet : nn::Module {
  nn::Linear l1, l2;
  explicit TinyNet(std::uint64_t seed) : TinyNet(std::make_shared<Generator>(seed)) {}
  Tensor operator()(const Tensor& x) const { return l2(tanh(l1(x))); }

 private:
  explicit TinyNet(std::shared_ptr<Generator> gen) : l1(3, 5, *gen), l2(5, 2, *gen) {
    register_module("l1", l1);
    register_module("l2", l2);
  }
};

struct TinyData {
  Tensor x, d;
  TinyData() {
    Generator gen(42);
    x = randn({8, 3}, gen);
    d = randn({8, 2}, gen);
  }
};

// Steps [from, to) of a run whose gradient at step s depends on s (a different half of the batch), so a
// step skipped or repeated on resume would show.
void train_steps(const TinyNet& net, nn::Optimizer& opt, const TinyData& data, int from, int to) {
  for (int s = from; s < to; ++s) {
    const std::size_t half = static_cast<std::size_t>(s % 2) * 4;
    Tensor loss = mse_loss(net(slice(data.x, 0, half, half + 4)), slice(data.d, 0, half, half + 4));
    opt.zero_grad();
    backward(loss);
    opt.step();
  }
}

// The parameters' bytes, for bit-for-bit comparison.
std::unique_ptr<nn::Optimizer> make_optimizer(const std::string& kind, const std::vector<Tensor>& params) {
  if (kind == "SGD") return std::make_unique<nn::SGD>(params, 0.1);
  if (kind == "Momentum") return std::make_unique<nn::Momentum>(params, 0.05, 0.9);
  if (kind == "AdaGrad") return std::make_unique<nn::AdaGrad>(params, 0.1);
  if (kind == "RMSProp") return std::make_unique<nn::RMSProp>(params, 0.01, 0.9);
  return std::make_unique<nn::Adam>(params, 0.01);
}

}  // namespace

BOOST_AUTO_TEST_SUITE(optim_checkpoint)

// Train N steps, save model + optimizer, train M more; against: fresh objects (another init), load, train
// M: the parameters agree bit for bit, for every optimizer. Without loading the optimizer's state they do
// not (for the rules that keep state), so the comparison can fail.
BOOST_AUTO_TEST_CASE(resume_from_a_checkpoint_is_bit_for_bit_for_every_optimizer) {
  test::TempDir dir("optim");
  const TinyData data;
  const int N = 3, M = 4;
  for (const std::string kind : {"SGD", "Momentum", "AdaGrad", "RMSProp", "Adam"}) {
    BOOST_TEST_CONTEXT(kind) {
      TinyNet net(1);
      auto opt = make_optimizer(kind, net.parameters());
      train_steps(net, *opt, data, 0, N);
      if (kind == "SGD") opt->set_lr(0.05);  // a schedule's lr is state too
      nn::save(net, dir.file("model.npz"));
      nn::save(*opt, dir.file("optim.npz"));
      train_steps(net, *opt, data, N, N + M);

      TinyNet resumed(7);
      auto opt2 = make_optimizer(kind, resumed.parameters());
      nn::load(resumed, dir.file("model.npz"));
      nn::load(*opt2, dir.file("optim.npz"));
      BOOST_TEST(opt2->lr() == (kind == "SGD" ? 0.05 : opt->lr()));
      train_steps(resumed, *opt2, data, N, N + M);
      BOOST_TEST((test::parameter_bytes(resumed) == test::parameter_bytes(net)));

      if (kind != "SGD") {  // a fresh optimizer (zero state) continues differently
        TinyNet fresh(7);
        auto opt3 = make_optimizer(kind, fresh.parameters());
        nn::load(fresh, dir.file("model.npz"));
        train_steps(fresh, *opt3, data, N, N + M);
        BOOST_TEST((test::parameter_bytes(fresh) != test::parameter_bytes(net)));
      }
    }
  }
}

BOOST_AUTO_TEST_CASE(the_file_holds_the_state_by_name_readable_as_arrays) {
  test::TempDir dir("optim");
  const TinyData data;
  TinyNet net(1);
  nn::Adam opt(net.parameters(), 0.01, 0.8, 0.95);
  train_steps(net, opt, data, 0, 2);
  nn::save(opt, dir.file("adam.npz"));
  const auto arrays = nn::load_arrays(dir.file("adam.npz"));
  std::map<std::string, Tensor> by_name(arrays.begin(), arrays.end());
  BOOST_TEST(by_name.at("Adam.lr").item() == 0.01);
  BOOST_TEST(by_name.at("Adam.beta1").item() == 0.8);
  BOOST_TEST(by_name.at("Adam.beta2").item() == 0.95);
  BOOST_TEST(by_name.at("Adam.num_parameters").item() == 4.0);
  BOOST_TEST(by_name.at("Adam.step").to_vector() == std::vector<double>(4, 2.0), boost::test_tools::per_element());
  BOOST_TEST(by_name.at("Adam.m.0").shape() == net.l1.W.shape());
  BOOST_TEST(by_name.at("Adam.v.3").shape() == net.l2.b.shape());
  // m after two steps of Adam is not zero; the v buffer of parameter 0 equals the optimizer's own.
  const auto dict = opt.state_dict();
  for (const auto& [name, t] : dict) BOOST_TEST((by_name.at(name).to_vector() == t.to_vector()), name);
  BOOST_TEST(arrays.size() == dict.size());
}

BOOST_AUTO_TEST_CASE(bad_files_and_mismatches_are_errors_that_change_nothing) {
  test::TempDir dir("optim");
  const TinyData data;
  TinyNet net(1);
  nn::Adam adam(net.parameters(), 0.01);
  train_steps(net, adam, data, 0, 2);
  nn::save(adam, dir.file("adam.npz"));

  TinyNet other(2);
  nn::Adam target(other.parameters(), 0.01);
  train_steps(other, target, data, 0, 1);
  const auto before = target.state_dict();
  const auto unchanged = [&] {
    const auto now = target.state_dict();
    if (now.size() != before.size()) return false;
    for (std::size_t i = 0; i < now.size(); ++i)
      if (now[i].first != before[i].first || now[i].second.to_vector() != before[i].second.to_vector()) return false;
    return true;
  };
  const auto error_of = [&](nn::Optimizer& opt, const std::string& path) -> std::string {
    try {
      nn::load(opt, path);
    } catch (const Error& e) {
      return e.what();
    }
    return "";
  };
  const auto contains = [](const std::string& s, const std::string& part) { return s.find(part) != std::string::npos; };

  // Truncated file.
  {
    std::ifstream in(dir.file("adam.npz"), std::ios::binary);
    std::string all((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    std::ofstream(dir.file("cut.npz"), std::ios::binary) << all.substr(0, all.size() / 2);
  }
  std::string e = error_of(target, dir.file("cut.npz"));
  BOOST_TEST(contains(e, "cut.npz"), e);
  BOOST_TEST(unchanged());
  // Missing file.
  e = error_of(target, dir.file("none.npz"));
  BOOST_TEST(contains(e, "none.npz"), e);
  BOOST_TEST(unchanged());
  // Another kind of optimizer.
  nn::RMSProp rms(other.parameters(), 0.01);
  e = error_of(rms, dir.file("adam.npz"));
  BOOST_TEST(contains(e, "Adam optimizer, not RMSProp"), e);
  // Other hyper-parameters.
  nn::Adam other_beta(other.parameters(), 0.01, 0.5);
  e = error_of(other_beta, dir.file("adam.npz"));
  BOOST_TEST(contains(e, "beta1 is 0.9 in the file but 0.5"), e);
  // Other parameters (shapes, count).
  nn::Linear small(3, 4, *std::make_unique<Generator>(3));
  nn::Adam on_small(small.parameters(), 0.01);
  e = error_of(on_small, dir.file("adam.npz"));
  BOOST_TEST(contains(e, "4 parameters, this optimizer has 2"), e);
  std::vector<Tensor> swapped = {other.l1.W, other.l1.b, other.l2.b, other.l2.W};
  nn::Adam on_swapped(swapped, 0.01);
  e = error_of(on_swapped, dir.file("adam.npz"));
  BOOST_TEST(contains(e, "'Adam.m.2' is float32 (5, 2) but parameter 2 is float32 (2,)"), e);
  // A module checkpoint is not an optimizer checkpoint.
  nn::save(net, dir.file("model.npz"));
  e = error_of(target, dir.file("model.npz"));
  BOOST_TEST(contains(e, "'Adam.lr' is missing"), e);
  BOOST_TEST(unchanged());
  // A float32 step count, an extra entry.
  auto arrays = adam.state_dict();
  arrays.emplace_back("Adam.extra", scalar(1.0, DType::f64));
  nn::save_arrays(arrays, dir.file("extra.npz"));
  e = error_of(target, dir.file("extra.npz"));
  BOOST_TEST(contains(e, "unexpected entry 'Adam.extra'"), e);
  arrays.pop_back();
  for (auto& [name, t] : arrays)
    if (name == "Adam.step") t = from_values({1.5, 2, 2, 2}, {4}, DType::f64);
  nn::save_arrays(arrays, dir.file("halfstep.npz"));
  e = error_of(target, dir.file("halfstep.npz"));
  BOOST_TEST(contains(e, "step count 1.5 of parameter 0 is not a count"), e);
  BOOST_TEST(unchanged());
}

BOOST_AUTO_TEST_SUITE_END()
