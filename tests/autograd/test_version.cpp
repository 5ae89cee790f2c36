// Version counters: an owned tensor written in place between the forward that recorded it and the
// backward is an Error naming the op and the tensor, not a gradient computed from changed values.
#include <boost/test/unit_test.hpp>

#include <tapegrad/autograd/xtensor.hpp>
#include <tapegrad/ops/elementwise.hpp>
#include <tapegrad/ops/linalg.hpp>
#include <tapegrad/ops/reduce.hpp>

#include "support/xt.hpp"

using namespace tapegrad;
using namespace tapegrad::test;

BOOST_AUTO_TEST_SUITE(version)

BOOST_AUTO_TEST_CASE(writes_bump_reads_do_not) {
  Tensor w = parameter(from_values({1, 2, 3}, {3}, DType::f64));
  const std::uint64_t v0 = w.version();
  const Tensor& cw = w;
  (void)cw.data<double>();  // a read through the const overload
  (void)w.to_vector();
  (void)w.at({1});
  (void)as_xtensor<double>(cw);
  BOOST_TEST(w.version() == v0);
  w.data<double>()[0] = 5;  // the non-const overload hands the buffer out for writing
  BOOST_TEST(w.version() == v0 + 1);
  as_xtensor<double>(w)(1) = 7;  // so does a mutable xtensor view
  BOOST_TEST(w.version() == v0 + 2);
  w.bump_version();
  BOOST_TEST(w.version() == v0 + 3);
  // zero_grad writes the gradient, not the values.
  backward(sum(mul(w, w)));
  const std::uint64_t g0 = w.grad().version();
  w.zero_grad();
  BOOST_TEST(w.grad().version() == g0 + 1);
  BOOST_TEST(w.version() == v0 + 3);
}

BOOST_AUTO_TEST_CASE(write_between_retained_forward_and_backward_throws) {
  Tensor w = parameter(from_values({1, 2, 3}, {3}, DType::f64)).set_name("w");
  Tensor loss = sum(mul(w, w));
  backward(loss, Tensor(), /*retain_graph=*/true);
  BOOST_TEST(w.grad().to_vector() == (std::vector<double>{2, 4, 6}));
  w.data<double>()[0] = 10;  // d loss / d w would now read 20 from a forward that saw 1
  expect_error([&] { backward(loss, Tensor(), true); }, {"backward", "'w'", "(3,)", "'mul'", "modified in place",
                                                         "version"});
  // The graph is released by the error: the next forward starts a fresh one, which sees the new value.
  expect_error([&] { backward(loss); }, {"released"});
  w.zero_grad();
  backward(sum(mul(w, w)));
  BOOST_TEST(w.grad().to_vector() == (std::vector<double>{20, 4, 6}));
  // Functional grad() checks too.
  Tensor loss2 = sum(mul(w, w));
  w.data<double>()[1] = 0;
  expect_error([&] { grad(loss2, {w}); }, {"grad", "'w'", "'mul'"});
}

BOOST_AUTO_TEST_CASE(write_before_the_first_backward_throws) {
  // Without retain_graph too: the write comes between the forward and its (only) backward.
  Tensor w = parameter(from_values({1, 2}, {2}, DType::f64));
  Tensor x = from_values({3, 4}, {2}, DType::f64);
  Tensor loss = sum(mul(w, x));
  x.data<double>()[1] = 0;  // a constant input: its value is what d loss / d w reads
  expect_error([&] { backward(loss); }, {"backward", "(unnamed)", "(2,)", "'mul'"});
}

BOOST_AUTO_TEST_CASE(write_between_two_ops_of_one_graph_throws) {
  Tensor w = parameter(from_values({1, 2}, {2}, DType::f64)).set_name("w");
  Tensor a = exp(w);  // saves w's value (and its output)
  w.data<double>()[0] = 3;
  Tensor b = mul(w, w);
  expect_error([&] { backward(sum(add(a, b))); }, {"'w'", "'exp'"});  // names the first op that used it
}

BOOST_AUTO_TEST_CASE(const_reads_and_the_normal_loop_are_unaffected) {
  Tensor w = parameter(from_values({1, 2, 3}, {3}, DType::f64));
  for (int step = 0; step < 3; ++step) {
    Tensor loss = sum(mul(w, w));
    const Tensor& cw = w;
    double s = 0;
    for (std::size_t i = 0; i < 3; ++i) s += cw.data<double>()[i];  // reads between forward and backward
    BOOST_TEST(s > 0);
    w.zero_grad();
    backward(loss);
    // The step: a write after the backward, before the next forward (which records the new version).
    double* p = w.data<double>();
    const double* g = w.grad().data<double>();
    for (std::size_t i = 0; i < 3; ++i) p[i] -= 0.1 * g[i];
  }
  BOOST_TEST(w.to_vector()[0] == 1 * 0.8 * 0.8 * 0.8, boost::test_tools::tolerance(1e-12));
  // A retained graph, backward twice with no write in between: still fine.
  Tensor loss = sum(mul(w, w));
  backward(loss, Tensor(), true);
  backward(loss);
}

BOOST_AUTO_TEST_SUITE_END()
