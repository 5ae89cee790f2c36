// Engine behaviour: accumulation, no_grad, detach, retain, release, second derivatives, long chains,
// threads, diagnostics, and the errors of misuse.
#include <boost/test/unit_test.hpp>

#include <cmath>
#include <thread>

#include "support/xt.hpp"

using namespace tapegrad;
using namespace tapegrad::test;

namespace {
Tensor param(std::vector<double> v, Shape s) { return parameter(from_values(v, s, DType::f64)); }
}  // namespace

BOOST_AUTO_TEST_SUITE(tape)

BOOST_AUTO_TEST_CASE(fan_out_accumulates) {
  // One weight used at every time step: dL/dw sums over the uses.
  Tensor w = param({0.5}, {});
  Tensor h = from_values({1.0}, {}, DType::f64);
  for (int t = 0; t < 3; ++t) h = h * w;  // h = w^3
  backward(h);
  BOOST_TEST(w.grad().item() == 3 * 0.25, boost::test_tools::tolerance(1e-15));
  // Gradients accumulate across backward calls until zero_grad.
  Tensor y = w * w;
  backward(y);
  BOOST_TEST(w.grad().item() == 0.75 + 1.0, boost::test_tools::tolerance(1e-15));
  w.zero_grad();
  BOOST_TEST(w.grad().item() == 0.0);
}

BOOST_AUTO_TEST_CASE(broadcast_gradients_are_summed_by_the_engine) {
  Tensor a = param({1, 2, 3}, {3, 1});
  Tensor b = param({1, 1, 1, 1}, {4});
  backward(sum(a * b));
  BOOST_TEST(a.grad().to_vector() == std::vector<double>({4, 4, 4}), boost::test_tools::per_element());
  BOOST_TEST(b.grad().to_vector() == std::vector<double>({6, 6, 6, 6}), boost::test_tools::per_element());
}

BOOST_AUTO_TEST_CASE(no_grad_records_nothing) {
  Tensor w = param({2.0}, {});
  Tape::current().clear();
  Tensor y;
  {
    NoGrad guard;
    y = w * w;
  }
  BOOST_TEST(!y.requires_grad());
  BOOST_TEST(y.is_leaf());
  BOOST_TEST(Tape::current().num_nodes() == 0u);
  BOOST_TEST(grad_enabled());
  expect_error([&] { backward(y); }, {"backward", "does not require grad"});
}

BOOST_AUTO_TEST_CASE(detach_cuts_the_graph) {
  Tensor w = param({3.0}, {});
  Tensor h = w * w;
  Tensor y = h.detach() * w;  // d/dw = h = 9 (not 3 w^2 = 27)
  backward(y);
  BOOST_TEST(w.grad().item() == 9.0);
  BOOST_TEST(!h.detach().requires_grad());
}

BOOST_AUTO_TEST_CASE(retain_graph_and_release) {
  Tensor w = param({1.5}, {});
  Tensor y = w * w * w;
  backward(y, Tensor(), /*retain_graph=*/true);
  backward(y);  // again over the kept graph: accumulates
  BOOST_TEST(w.grad().item() == 2 * 3 * 1.5 * 1.5, boost::test_tools::tolerance(1e-14));
  expect_error([&] { backward(y); }, {"backward", "released"});
  // Values stay readable until a new graph starts.
  BOOST_TEST(y.item() == 1.5 * 1.5 * 1.5, boost::test_tools::tolerance(1e-14));
  Tensor z = w * 2.0;  // a new graph: the old one's values are gone
  expect_error([&] { y.item(); }, {"released"});
  expect_error([&] { (void)(y * w); }, {"released"});
  (void)z;
}

BOOST_AUTO_TEST_CASE(carrying_state_without_detach_is_a_clear_error) {
  Tensor w = param({0.5, 0.25}, {2});
  Tensor h = w * 1.0;
  backward(sum(h));
  // h belongs to the released graph: it must be detached to enter the next one (truncated BPTT).
  expect_error([&] { (void)(h * w); }, {"mul", "(2,)", "detach"});
  Tensor ok = h.detach() * w;
  BOOST_TEST(ok.requires_grad());
}

BOOST_AUTO_TEST_CASE(seed_for_non_scalar_roots) {
  Tensor x = param({1, 2, 3}, {3});
  Tensor y = x * x;
  expect_error([&] { backward(y, Tensor(), true); }, {"backward", "(3,)", "seed"});
  expect_error([&] { backward(y, ones({2}, DType::f64), true); }, {"seed", "(2,)", "(3,)"});
  expect_error([&] { backward(y, ones({3}, DType::f32), true); }, {"seed", "float32"});
  backward(y, from_values({1, 10, 100}, {3}, DType::f64));
  BOOST_TEST(x.grad().to_vector() == std::vector<double>({2, 40, 600}), boost::test_tools::per_element());
}

BOOST_AUTO_TEST_CASE(functional_grad_leaves_grad_untouched) {
  Tensor x = param({2.0}, {});
  Tensor h = x * x;
  Tensor y = h * x;
  auto gs = grad(y, {x, h});
  BOOST_TEST(gs[0].item() == 12.0);  // d x^3 / dx
  BOOST_TEST(gs[1].item() == 2.0);   // d (h x) / dh = x
  BOOST_TEST(x.grad().to_vector() == std::vector<double>({0.0}), boost::test_tools::per_element());  // untouched
  expect_error([&] { h.grad(); }, {"grad", "leaves"});
}

// A leading-axis slice or reshape of a recorded value is a view: its gradient is written into the
// value's. Asked for by grad(), a view still answers with its own gradient only, and a retained graph swept
// twice gives the same gradients.
BOOST_AUTO_TEST_CASE(views_share_the_viewed_gradient_but_answer_their_own) {
  Tensor x = param({1, 2, 3, 4, 5, 6}, {3, 2});
  Tensor p = x * 2.0;                                // recorded: slices and reshapes of it are views
  Tensor top = slice(p, 0, 0, 2), flat = reshape(p, {6});
  Tensor loss = sum(top * 3.0) + sum(p * p) + sum(flat);
  // d loss / d top = 3; d loss / d flat = 1; d loss / d p = 2 p + 3 (rows 0, 1) + 1.
  GradOptions keep;
  keep.retain_graph = true;
  auto gs = grad(loss, {top, flat, p}, keep);
  BOOST_TEST(gs[0].to_vector() == std::vector<double>(4, 3.0), boost::test_tools::per_element());
  BOOST_TEST(gs[1].to_vector() == std::vector<double>(6, 1.0), boost::test_tools::per_element());
  const std::vector<double> dp{2 * 2 + 4, 2 * 4 + 4, 2 * 6 + 4, 2 * 8 + 4, 2 * 10 + 1, 2 * 12 + 1};
  BOOST_TEST(gs[2].to_vector() == dp, boost::test_tools::per_element());
  for (int sweep = 0; sweep < 2; ++sweep) {  // twice over the retained graph: no gradient counted twice
    x.zero_grad();
    backward(loss, Tensor(), sweep == 0);
    std::vector<double> dx(dp);
    for (double& v : dx) v *= 2.0;
    BOOST_TEST(x.grad().to_vector() == dx, boost::test_tools::per_element());
  }
}

BOOST_AUTO_TEST_CASE(second_derivatives_match_closed_forms) {
  // f = x^3: f' = 3x^2, f'' = 6x, f''' = 6.
  Tensor x = param({0.7}, {});
  Tensor f = x * x * x;
  Tensor d1 = grad(f, {x}, {Tensor(), true, true})[0];
  BOOST_TEST(d1.item() == 3 * 0.49, boost::test_tools::tolerance(1e-14));
  Tensor d2 = grad(d1, {x}, {Tensor(), true, true})[0];
  BOOST_TEST(d2.item() == 6 * 0.7, boost::test_tools::tolerance(1e-14));
  Tensor d3 = grad(d2, {x}, {Tensor(), true, true})[0];
  BOOST_TEST(d3.item() == 6.0, boost::test_tools::tolerance(1e-14));
  // tanh'' = -2 tanh (1 - tanh^2), through backward() into .grad
  Tensor u = param({0.3}, {});
  Tensor gu = grad(tanh(u), {u}, {Tensor(), true, true})[0];
  backward(gu);
  const double t = std::tanh(0.3);
  BOOST_TEST(u.grad().item() == -2 * t * (1 - t * t), boost::test_tools::tolerance(1e-14));
  // Hessian-vector product of f(a, b) = exp(a b) at (a, b), mixed partials included.
  Tensor a = param({0.4}, {}), b = param({-0.9}, {});
  Tensor e = tapegrad::exp(a * b);
  auto g = grad(e, {a, b}, {Tensor(), true, true});
  auto haa_hab = grad(g[0], {a, b}, {Tensor(), true, true});
  const double ev = std::exp(0.4 * -0.9);
  BOOST_TEST(haa_hab[0].item() == 0.81 * ev, boost::test_tools::tolerance(1e-14));                  // b^2 e
  BOOST_TEST(haa_hab[1].item() == (1 + 0.4 * -0.9) * ev, boost::test_tools::tolerance(1e-14));     // (1 + ab) e
}

BOOST_AUTO_TEST_CASE(ten_thousand_step_chain) {
  // An unrolled recurrence of 10,000 steps: backward is a loop, so nothing overflows the stack.
  Tape::current().clear();
  Tensor w = param({0.9, 1.1, 0.95, 1.05}, {1, 4});
  Tensor x = from_values({0.01, -0.02, 0.03, 0.0}, {1, 4}, DType::f64);
  Tensor h = zeros({1, 4}, DType::f64);
  for (int t = 0; t < 10000; ++t) h = tanh(h * w + x);
  BOOST_TEST(Tape::current().num_nodes() == 30000u);
  backward(sum(h));
  for (double g : w.grad().to_vector()) BOOST_TEST(std::isfinite(g));
  BOOST_TEST(w.grad().to_vector() != std::vector<double>(4, 0.0));
}

BOOST_AUTO_TEST_CASE(two_threads_train_on_their_own_tapes) {
  // Each thread fits y = 3x with its own weight; results equal the same run on one thread.
  auto train = [](double* out) {
    Tensor w = param({0.0}, {});
    Tensor x = from_values({1, 2, 3, 4}, {4}, DType::f64), y = from_values({3, 6, 9, 12}, {4}, DType::f64);
    for (int it = 0; it < 200; ++it) {
      Tensor d = w * x - y;
      backward(sum(d * d) * 0.01);
      w.data<double>()[0] -= 0.5 * w.grad().item();
      w.zero_grad();
    }
    *out = w.item();
  };
  double r1 = 0, r2 = 0, ref = 0;
  std::thread t1(train, &r1), t2(train, &r2);
  t1.join();
  t2.join();
  train(&ref);
  BOOST_TEST(r1 == ref);
  BOOST_TEST(r2 == ref);
  BOOST_TEST(ref == 3.0, boost::test_tools::tolerance(1e-6));
}

BOOST_AUTO_TEST_CASE(tensors_do_not_cross_threads) {
  Tensor w = param({1.0}, {});
  Tensor h = w * 2.0;
  std::string msg;
  std::thread t([&] {
    try {
      (void)(h * 3.0);
    } catch (const Error& e) {
      msg = e.what();
    }
  });
  t.join();
  BOOST_TEST(msg.find("another thread") != std::string::npos);
}

BOOST_AUTO_TEST_CASE(scope_gives_a_separate_graph) {
  Tensor w = param({2.0}, {});
  Tensor outer = w * w;
  {
    Tape::Scope scope;
    Tensor inner = w * 3.0;
    backward(inner);
    expect_error([&] { (void)(outer * 1.0); }, {"another thread's tape"});
  }
  BOOST_TEST(w.grad().item() == 3.0);
  backward(outer);  // the outer graph was untouched
  BOOST_TEST(w.grad().item() == 3.0 + 4.0);
}

BOOST_AUTO_TEST_CASE(leaf_root) {
  Tensor w = param({1, 2}, {2});
  backward(w, ones({2}, DType::f64));
  BOOST_TEST(w.grad().to_vector() == std::vector<double>({1, 1}), boost::test_tools::per_element());
}

BOOST_AUTO_TEST_CASE(memory_is_reused_between_steps) {
  Tensor w = param({0.5, 0.5, 0.5, 0.5}, {4});
  auto step = [&] {
    Tensor h = from_values({1, 2, 3, 4}, {4}, DType::f64);
    for (int t = 0; t < 50; ++t) h = tanh(h * w);
    backward(sum(h));
  };
  step();
  step();
  const std::size_t peak = Tape::current().peak_bytes();
  for (int i = 0; i < 100; ++i) step();
  BOOST_TEST(Tape::current().peak_bytes() == peak);  // no growth over iterations
}

// Ops that overwrite a fresh gradient buffer (instead of zero-filling it and adding) must never read it:
// the arena hands the next graph the same memory, here full of NaN from a first graph built the same way.
BOOST_AUTO_TEST_CASE(fresh_gradient_buffers_never_read_stale_memory) {
  Generator gen(3);
  const Tensor x0 = randn({1, 4}, gen, 1.0, DType::f64), w0 = randn({4, 4}, gen, 1.0, DType::f64),
               aw0 = randn({4, 8}, gen, 1.0, DType::f64);
  // gemv (1 row), gemm (2 rows), tanh, concat, slice, add, the fused LSTM halves, sums.
  auto loss = [](const Tensor& x, const Tensor& w, const Tensor& aw) {
    const Tensor h = tanh(matmul(x, w));
    const Tensor m = matmul(concat({h, h * 2.0}, 0), w);
    const Tensor a = matmul(m, aw);
    const Tensor c = lstm_cell(a, slice(m, 1, 0, 2));
    const Tensor hh = lstm_hidden(a, c);
    return sum(hh * hh) + sum(m + h);
  };
  auto grads = [&](const Tensor& x) {
    Tensor xs = parameter(x.detach()), w = parameter(w0.detach()), aw = parameter(aw0.detach());
    backward(loss(xs, w, aw));
    return std::vector<std::vector<double>>{xs.grad().to_vector(), w.grad().to_vector(), aw.grad().to_vector()};
  };
  std::vector<std::vector<double>> want;
  {
    Tape::Scope clean;  // a separate tape: its arena never held NaN
    want = grads(x0);
  }
  Tape::current().clear();
  const auto poisoned = grads(x0 * std::nan(""));  // every value and gradient of this graph is NaN
  BOOST_TEST(std::isnan(poisoned[1][0]));
  const auto got = grads(x0);  // the same graph again, on the same (now NaN-filled) arena memory
  for (std::size_t k = 0; k < want.size(); ++k)
    for (std::size_t i = 0; i < want[k].size(); ++i)
      BOOST_TEST(got[k][i] == want[k][i], "gradient " << k << " element " << i);
}

BOOST_AUTO_TEST_CASE(graphviz_export) {
  Tape::current().clear();
  Tensor W = param({1, 2, 3, 4}, {2, 2});
  W.set_name("W");
  Tensor x = from_values({1, 1}, {1, 2}, DType::f64);
  Tensor y = tanh(matmul(x, W));
  const std::string dot = Tape::current().to_dot();
  BOOST_TEST(dot.find("digraph") != std::string::npos);
  BOOST_TEST(dot.find("matmul") != std::string::npos);
  BOOST_TEST(dot.find("tanh") != std::string::npos);
  BOOST_TEST(dot.find("W\\n(2, 2)") != std::string::npos);
  BOOST_TEST(dot.find("(1, 2)") != std::string::npos);
  (void)y;
  Tape::current().clear();
}

BOOST_AUTO_TEST_CASE(anomaly_mode_names_the_op) {
  Tensor x = param({1.0, -1.0}, {2});
  {
    DetectAnomaly on;
    expect_error([&] { (void)tapegrad::log(x); }, {"anomaly", "log", "(2,)"});
    Tensor z = param({0.0, 4.0}, {2});
    Tensor s = tapegrad::sqrt(z);  // finite forward, infinite gradient at 0
    expect_error([&] { backward(sum(s)); }, {"anomaly", "sqrt", "(2,)"});
  }
  Tape::current().clear();
  Tensor quiet = tapegrad::log(x);  // off: no check
  BOOST_TEST(std::isnan(quiet.at({1})));
  Tape::current().clear();
}

BOOST_AUTO_TEST_CASE(misuse_errors) {
  Tensor a = param({1, 2}, {2});
  Tensor f = zeros({2}, DType::f32).requires_grad_();
  expect_error([&] { (void)(a + f); }, {"add", "mixed dtypes", "float64", "float32"});
  expect_error([&] { backward(Tensor()); }, {"backward", "undefined"});
  expect_error([&] { (void)(a + Tensor()); }, {"add", "undefined"});
  Tensor h = a * 2.0;
  expect_error([&] { h.requires_grad_(false); }, {"requires_grad_"});
  Tape::current().clear();
}

BOOST_AUTO_TEST_SUITE_END()
