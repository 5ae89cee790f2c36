// Misuse a new user might try on nn/: deep or overflowing trees, empty layers. Each gives a clear Error
// or a correct result, never a crash or a silently wrong number.
#include <boost/test/unit_test.hpp>

#include <string>

#include <tapegrad/nn/models/linear.hpp>
#include <tapegrad/nn/models/recursive.hpp>
#include <tapegrad/ops/reduce.hpp>

#include "support/xt.hpp"

using namespace tapegrad;
using namespace tapegrad::test;
using tapegrad::nn::Tree;

BOOST_AUTO_TEST_SUITE(bad_inputs)

// A left-leaning chain "((((0 1) 1) 1) ... 1)" of the given bracket depth.
static std::string deep_chain(std::size_t depth) {
  std::string s(depth, '(');
  s += "0";
  for (std::size_t i = 0; i < depth; ++i) s += " 1)";
  return s;
}

BOOST_AUTO_TEST_CASE(tree_parse_is_iterative) {
  // 200,000 brackets deep: the recursive parser overflowed the stack here.
  const std::size_t depth = 200000;
  const std::string s = deep_chain(depth);
  const Tree t = Tree::parse(s);
  BOOST_TEST(t.size() == 2 * depth + 1);
  BOOST_TEST(t.nodes[t.root()].left == std::int64_t(t.root() - 2));
  BOOST_TEST(t.str() == s);  // str() is iterative too, and linear in the output
  t.validate("test", 2);
  // A right-leaning chain "(1 (1 (1 ... 0)))": the open brackets hold their left children meanwhile.
  std::string r;
  for (std::size_t i = 0; i < depth; ++i) r += "(1 ";
  r += "0" + std::string(depth, ')');
  BOOST_TEST(Tree::parse(r).str() == r);
  // Unbalanced deep strings still fail cleanly.
  expect_error([&] { Tree::parse(std::string(depth, '(')); }, {"Tree::parse", "unexpected end"});
  expect_error([&] { Tree::parse(s + ")"); }, {"Tree::parse", "trailing"});
}

BOOST_AUTO_TEST_CASE(tree_leaf_index_overflow) {
  // 25 digits: v * 10 + d overflowed int64 silently (signed overflow, undefined behaviour).
  expect_error([] { Tree::parse("(1234567890123456789012345 0)"); }, {"Tree::parse", "overflows int64"});
  expect_error([] { Tree::parse("9223372036854775808"); }, {"overflows int64"});
  BOOST_TEST(Tree::parse("9223372036854775807").nodes[0].leaf == INT64_MAX);
}

BOOST_AUTO_TEST_CASE(tree_parse_errors) {
  expect_error([] { Tree::parse(""); }, {"Tree::parse", "unexpected end"});
  expect_error([] { Tree::parse("(0)"); }, {"one child"});
  expect_error([] { Tree::parse("(0 1 2)"); }, {"expected ')'"});
  expect_error([] { Tree::parse("(0 x)"); }, {"unexpected 'x'"});
  expect_error([] { Tree::parse("-1"); }, {"unexpected '-'"});
  // The message quotes the neighbourhood of the error, not a megabyte string.
  try {
    Tree::parse(std::string(1 << 20, '(') + "x");
    BOOST_TEST(false);
  } catch (const Error& e) {
    BOOST_TEST(std::string(e.what()).size() < 300u);
  }
  Tree bad;
  bad.nodes.push_back({-1, 0, 0});  // a parent that is its own child
  expect_error([&] { (void)bad.str(); }, {"Tree::str", "node 0"});
}

BOOST_AUTO_TEST_CASE(linear_with_zero_features) {
  // As PyTorch: Linear(0, 3) maps (..., 0) to (..., 3) equal to the bias; its init has nothing to draw.
  Generator gen(1);
  nn::Linear lin(0, 3, gen, true, DType::f64);
  lin.b = from_values({1, 2, 3}, {3}, DType::f64);
  for (const Shape& s : {Shape{0}, Shape{2, 0}, Shape{2, 4, 5, 0}}) {
    Tensor y = lin(zeros(s, DType::f64));
    Shape want(s.begin(), s.end() - 1);
    want.push_back(3);
    BOOST_TEST(y.shape() == want);
    const auto v = y.to_vector();
    for (std::size_t i = 0; i < v.size(); ++i) BOOST_TEST(v[i] == double(i % 3 + 1));
  }
  // Zero outputs and an empty batch.
  nn::Linear none(4, 0, gen, true, DType::f64);
  BOOST_TEST(none(zeros({2, 4}, DType::f64)).shape() == (Shape{2, 0}));
  nn::Linear lin4(4, 3, gen, true, DType::f64);
  BOOST_TEST(lin4(zeros({0, 4}, DType::f64)).shape() == (Shape{0, 3}));
  BOOST_TEST(lin4(zeros({5, 0, 4}, DType::f64)).shape() == (Shape{5, 0, 3}));
  expect_error([&] { lin4(zeros({2, 5}, DType::f64)); }, {"Linear", "(2, 5)"});
}

BOOST_AUTO_TEST_SUITE_END()
