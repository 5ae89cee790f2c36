// Version counters through nn/: an optimizer step or nn::load between a retained forward and its
// backward is an Error naming the op and the parameter; the usual loop (forward, backward, step, next
// forward) is not affected.
#include <boost/test/unit_test.hpp>

#include <cstdio>
#include <string>
#include <unistd.h>

#include <tapegrad/autograd/tape.hpp>
#include <tapegrad/nn/models/linear.hpp>
#include <tapegrad/nn/training/optim.hpp>
#include <tapegrad/nn/training/serialize.hpp>
#include <tapegrad/ops/loss.hpp>

#include "support/xt.hpp"

using namespace tapegrad;
using namespace tapegrad::test;

BOOST_AUTO_TEST_SUITE(version_nn)

namespace {
struct Fixture {
  Generator gen{3};
  nn::Linear lin{3, 2, gen, true, DType::f64};
  Tensor x = randn({4, 3}, gen, 1.0, DType::f64), y = randn({4, 2}, gen, 1.0, DType::f64);
  Tensor loss() { return mse_loss(lin(x), y); }
};
}  // namespace

BOOST_AUTO_TEST_CASE(optimizer_step_between_forward_and_backward) {
  Fixture f;
  nn::SGD opt(f.lin.parameters(), 0.1);
  Tensor loss = f.loss();
  backward(loss, Tensor(), true);
  opt.step();  // writes W and b in place
  expect_error([&] { backward(loss); }, {"backward", "'W'", "(3, 2)", "'linear'", "modified in place"});
}

BOOST_AUTO_TEST_CASE(load_between_forward_and_backward) {
  Fixture f;
  const std::string path = "/tmp/tapegrad_version_nn_" + std::to_string(getpid()) + ".npz";
  nn::save(f.lin, path);
  Tensor loss = f.loss();
  nn::load(f.lin, path);  // same values, but an in-place write all the same
  std::remove(path.c_str());
  expect_error([&] { backward(loss); }, {"backward", "modified in place"});
}

BOOST_AUTO_TEST_CASE(usual_training_loop_unaffected) {
  Fixture f;
  nn::Adam opt(f.lin.parameters(), 1e-2);
  double first = 0, last = 0;
  for (int step = 0; step < 20; ++step) {
    opt.zero_grad();
    Tensor loss = f.loss();
    backward(loss);
    opt.step();
    (step == 0 ? first : last) = loss.item();
  }
  BOOST_TEST(last < first);
}

BOOST_AUTO_TEST_SUITE_END()
