// Sizes that overflow: every element count goes through Shape::numel / checked_numel, so a shape whose
// product wraps or exceeds what memory can address is an Error naming the function, never a short
// buffer or a crash.
#include <boost/test/unit_test.hpp>

#include <cmath>
#include <cstdint>
#include <limits>

#include <tapegrad/autograd/tensor.hpp>
#include <tapegrad/ops/shape.hpp>

#include "support/xt.hpp"

using namespace tapegrad;
using namespace tapegrad::test;

BOOST_AUTO_TEST_SUITE(bad_sizes)

constexpr std::size_t two32 = std::size_t(1) << 32;
constexpr std::size_t two62 = std::size_t(1) << 62;

BOOST_AUTO_TEST_CASE(numel_overflow_is_an_error) {
  // 2^64 wraps to 0: before the check this shape reported numel 0 and zeros() handed out a 1-byte buffer.
  expect_error([] { (void)Shape{two32, two32}.numel(); }, {"(4294967296, 4294967296)", "more elements"});
  expect_error([] { (void)Shape{two62 + 1, 4}.numel(); }, {"(4611686018427387905, 4)"});
  // Does not wrap, but its bytes would not fit a ptrdiff_t.
  expect_error([] { (void)Shape{two62}.numel(); }, {"more elements"});
  BOOST_TEST((Shape{std::size_t(1) << 30, 4}.numel() == std::size_t(1) << 32));  // large but addressable
  BOOST_TEST((Shape{0, two62}.numel() == 0u));                                      // empty is fine
}

BOOST_AUTO_TEST_CASE(creation_names_the_function) {
  expect_error([] { zeros({two32, two32}); }, {"zeros", "(4294967296, 4294967296)"});
  expect_error([] { ones({two32, two32}); }, {"ones"});
  expect_error([] { empty({two32, two32}, DType::f64); }, {"empty"});
  expect_error([] { full({two62 + 1, 4}, 1.0); }, {"full"});
  Generator gen(1);
  expect_error([&] { randn({two32, two32}, gen); }, {"randn"});
  expect_error([&] { uniform({two32, two32}, 0, 1, gen); }, {"uniform"});
  expect_error([] { from_values({1.0}, {two32, two32}); }, {"from_values"});
}

BOOST_AUTO_TEST_CASE(reshape_to_an_overflowing_shape) {
  // (2^62 + 1) * 4 wraps to 4: the reshape of a 4-element tensor was accepted.
  Tensor x = zeros({4});
  expect_error([&] { reshape(x, {two62 + 1, 4}); }, {"reshape", "(4611686018427387905, 4)"});
  expect_error([&] { reshape(x, {two32, two32, 4}); }, {"reshape"});
  BOOST_TEST(reshape(x, {2, 2}).shape() == (Shape{2, 2}));
}

BOOST_AUTO_TEST_CASE(arange_with_an_absurd_count) {
  // ceil(1e30) converted to size_t was undefined behaviour (it gave an empty tensor).
  expect_error([] { arange(0, 1e30); }, {"arange", "more than fit"});
  expect_error([] { arange(-1e308, 1e308, 1e-300); }, {"arange"});
  expect_error([] { arange(0, 1, std::nan("")); }, {"arange", "finite"});
  expect_error([] { arange(0, INFINITY); }, {"arange", "finite"});
  expect_error([] { arange(0, 1, 0); }, {"arange"});
  BOOST_TEST(arange(0, 5).numel() == 5u);
  BOOST_TEST(arange(5, 0).numel() == 0u);  // an empty range, as NumPy
  BOOST_TEST(arange(0, 1, 0.25).numel() == 4u);
}

BOOST_AUTO_TEST_CASE(random_creation_rejects_bad_parameters) {
  Generator gen(1);
  expect_error([&] { randn({2}, gen, -1.0); }, {"randn", "std"});
  expect_error([&] { randn({2}, gen, std::nan("")); }, {"randn", "std"});
  expect_error([&] { uniform({2}, 1.0, 0.0, gen); }, {"uniform"});
  expect_error([&] { uniform({2}, 0.0, INFINITY, gen); }, {"uniform"});
}

BOOST_AUTO_TEST_SUITE_END()
