// conv2d and max_pool2d with sizes whose arithmetic would wrap: a clear Error, never a wrapped size.
#include <boost/test/unit_test.hpp>

#include <cstdint>
#include <limits>

#include <tapegrad/ops/conv.hpp>

#include "support/xt.hpp"

using namespace tapegrad;
using namespace tapegrad::test;

BOOST_AUTO_TEST_SUITE(conv_bad_inputs)

BOOST_AUTO_TEST_CASE(huge_padding) {
  Tensor x = zeros({1, 1, 3, 3}), w = zeros({1, 1, 2, 2}), b = zeros({1});
  const std::size_t max = std::numeric_limits<std::size_t>::max();
  // 2 * padding wraps to a small number: H + 2p looked like a valid padded size.
  expect_error([&] { conv2d(x, w, b, 1, max / 2 + 1); }, {"conv2d", "padding"});
  expect_error([&] { conv2d(x, w, b, 1, max); }, {"conv2d", "padding"});
  // Does not wrap, but the output would have more elements than memory can address.
  expect_error([&] { conv2d(x, w, b, 1, std::size_t(1) << 40); }, {"conv2d"});
  BOOST_TEST(conv2d(x, w, b, 1, 1).shape() == (Shape{1, 1, 4, 4}));
}

BOOST_AUTO_TEST_CASE(bad_stride_and_kernel) {
  Tensor x = zeros({1, 1, 3, 3}), w = zeros({1, 1, 4, 4}), b = zeros({1});
  expect_error([&] { conv2d(x, w, b, 0, 0); }, {"conv2d", "stride"});
  expect_error([&] { conv2d(x, w, b, 1, 0); }, {"conv2d", "larger than the padded input"});
  expect_error([&] { conv2d(x, zeros({1, 1, 0, 2}), b, 1, 0); }, {"conv2d", "empty"});
  expect_error([&] { max_pool2d(x, 0, 1); }, {"max_pool2d", "kernel"});
  expect_error([&] { max_pool2d(x, 2, 0); }, {"max_pool2d", "stride"});
  expect_error([&] { max_pool2d(x, 4, 1); }, {"max_pool2d", "larger"});
}

BOOST_AUTO_TEST_SUITE_END()
