// A sweep of misuse across the ops (tests/ops/test_conv_bad_inputs.cpp has conv's): each case either
// gives a clear Error naming the op and the shapes, or a correct result. The cases that crashed or
// named the wrong function before the fix come first.
#include <boost/test/unit_test.hpp>

#include <cmath>
#include <limits>

#include <tapegrad/ops/index.hpp>
#include <tapegrad/ops/reduce.hpp>
#include <tapegrad/ops/shape.hpp>
#include <tapegrad/ops/activation.hpp>
#include <tapegrad/ops/elementwise.hpp>
#include <tapegrad/ops/linalg.hpp>

#include "support/xt.hpp"

using namespace tapegrad;
using namespace tapegrad::test;

BOOST_AUTO_TEST_SUITE(misuse)

constexpr std::size_t max_size = std::numeric_limits<std::size_t>::max();

BOOST_AUTO_TEST_CASE(pad_whose_size_wraps) {
  // before + n + after wrapped to a small size: the copy overran the output (heap corruption).
  Tensor x = zeros({2, 3});
  expect_error([&] { pad(x, 0, max_size, 1); }, {"pad", "(2, 3)", "overflows"});
  expect_error([&] { pad(x, 1, max_size / 2, max_size / 2); }, {"pad", "overflows"});
  expect_error([&] { pad(x, 1, std::size_t(1) << 62, 0); }, {"pad", "more elements"});
  BOOST_TEST(pad(x, 1, 1, 2).shape() == (Shape{2, 6}));
}

BOOST_AUTO_TEST_CASE(huge_shapes_name_the_op) {
  Tensor x = zeros({2, 3});
  expect_error([&] { index_add(x, 0, {0, 1}, std::size_t(1) << 62); }, {"index_add", "more elements"});
  expect_error([&] { broadcast_to(x, {max_size, 2, 3}); }, {"broadcast_to", "more elements"});
  expect_error([&] { embedding(x, Index({0}, Shape{std::size_t(1) << 62, 4})); }, {"embedding", "more elements"});
}

BOOST_AUTO_TEST_CASE(bad_indices_and_axes) {
  Tensor x = from_values({1, 2, 3, 4, 5, 6}, {2, 3});
  expect_error([&] { index_select(x, 0, {-1}); }, {"index_select", "-1", "(2, 3)"});
  expect_error([&] { index_select(x, 0, {std::numeric_limits<std::int64_t>::min()}); }, {"index_select"});
  expect_error([&] { index_add(x, 0, {0, 5}, 3); }, {"index_add", "5"});
  expect_error([&] { embedding(x, Index({2})); }, {"embedding", "id 2"});
  expect_error([&] { embedding(x, Index({0, 1}, Shape{3})); }, {"embedding", "shape (3,)"});
  expect_error([&] { slice(x, 0, 2, 1); }, {"slice", "[2, 1)"});
  expect_error([&] { slice(x, 0, 0, max_size); }, {"slice"});
  expect_error([&] { select(x, 0, 2); }, {"select", "index 2", "size 2", "(2, 3)"});
  expect_error([&] { select(x, 2, 0); }, {"select", "(2, 3)"});
  expect_error([&] { select(scalar(1.0), 0, 0); }, {"select", "rank-0"});
  expect_error([&] { select(Tensor(), 0, 0); }, {"select", "undefined"});
  expect_error([&] { sum(x, {0, 0}); }, {"sum", "twice"});
  expect_error([&] { sum(x, {3}); }, {"sum", "out of range"});
  expect_error([&] { permute(x, {0, 0}); }, {"permute"});
  expect_error([&] { split(x, {max_size, 4}, 1); }, {"(2, 3)"});
  expect_error([&] { chunk(x, 0, 0); }, {"chunk", "0 chunks"});
}

BOOST_AUTO_TEST_CASE(empty_tensors) {
  Tensor e = zeros({2, 0});
  BOOST_TEST(softmax(e, -1).shape() == (Shape{2, 0}));
  BOOST_TEST(log_softmax(e, 0).shape() == (Shape{2, 0}));
  BOOST_TEST(matmul(zeros({2, 0}), zeros({0, 3})).to_vector() == std::vector<double>(6, 0.0));  // k = 0
  expect_error([&] { max(zeros({0})); }, {"max", "size 0"});
  expect_error([&] { max(e, 1); }, {"max", "size 0"});
  // As NumPy and PyTorch: the mean of nothing is NaN (0 / 0), not an error.
  BOOST_TEST(std::isnan(mean(zeros({0})).item()));
}

BOOST_AUTO_TEST_CASE(mixed_dtypes_and_nan_parameters) {
  Tensor x = zeros({2, 3});
  expect_error([&] { add(x, x.to(DType::f64)); }, {"add", "mixed dtypes"});
  expect_error([&] { concat({x, x.to(DType::f64)}, 0); }, {"concat", "mixed dtypes"});
  expect_error([&] { clamp(x, std::nan(""), 1); }, {"clamp"});
  expect_error([&] { dropout(x, ones({2, 3}), std::nan("")); }, {"dropout", "keep_prob"});
  Generator gen(1);
  expect_error([&] { bernoulli_mask({2}, std::nan(""), gen); }, {"bernoulli_mask", "keep_prob"});
}

BOOST_AUTO_TEST_SUITE_END()
