// RecursiveNN: trees, the composition against the conformance case, gradients, and bad input.
#include <boost/test/unit_test.hpp>

#include <cmath>
#include <xtensor/xbuilder.hpp>
#include <xtensor/xview.hpp>

#include <tapegrad/nn/models/recursive.hpp>

#include "support/conformance.hpp"
#include "support/xt.hpp"

using namespace tapegrad;
using namespace tapegrad::test;
using tapegrad::nn::RecursiveNN;
using tapegrad::nn::Tree;

BOOST_AUTO_TEST_SUITE(recursive)

BOOST_AUTO_TEST_CASE(tree_building_and_parsing) {
  Tree t = Tree::parse(" ( (0 1)(2  3) ) ");
  BOOST_TEST(t.size() == 7u);
  BOOST_TEST(t.root() == 6u);
  BOOST_TEST(t.str() == "((0 1) (2 3))");
  Tree u;
  const auto a = u.add_leaf(0), b = u.add_leaf(1), c = u.add_leaf(2), d = u.add_leaf(3);
  const auto ab = u.add_parent(a, b), cd = u.add_parent(c, d);
  u.add_parent(ab, cd);
  BOOST_TEST(u.str() == t.str());
  BOOST_TEST(Tree::parse("7").str() == "7");
}

BOOST_AUTO_TEST_CASE(conformance_recursive_tree) {
  // The case is column-vector (W is (D, 2D), parent = tanh(W [l; r] + b)); the engine's layout is
  // row-vector, W_row = W^T. The transpose is an op, so grad_W is compared directly.
  auto c = load_case("recursive_tree");
  Tensor root = nn::recursive_root(c.in.at("leaves"), Tree::parse("((0 1) (2 3))"), transpose(c.in.at("W")), c.in.at("b"),
                                   tapegrad::tanh);
  auto agg = check_case(c, {{"root", root}});
  BOOST_TEST(agg.ok());
}

BOOST_AUTO_TEST_CASE(composition_by_hand_on_one_parent) {
  // parent = tanh(concat(l, r) W + b), checked against xtensor on the smallest tree.
  Generator gen(3);
  Tensor leaves = randn({2, 3}, gen, 1.0, DType::f64), W = randn({6, 3}, gen, 0.5, DType::f64), b = randn({3}, gen, 0.5, DType::f64);
  Tensor p = nn::recursive_root(leaves, Tree::parse("(1 0)"), W, b, tapegrad::tanh);
  auto L = to_xt(leaves), w = to_xt(W), bb = to_xt(b);
  xt::xarray<double> expect = xt::zeros<double>({3});
  for (std::size_t j = 0; j < 3; ++j) {
    double s = bb(j);
    for (std::size_t k = 0; k < 3; ++k) s += L(1, k) * w(k, j) + L(0, k) * w(3 + k, j);
    expect(j) = std::tanh(s);
  }
  BOOST_TEST(max_abs_diff(p, expect) < 1e-15);
}

BOOST_AUTO_TEST_CASE(gradcheck_three_level_tree) {
  Generator gen(7);
  const Tree tree = Tree::parse("(((0 1) 2) (3 (4 0)))");  // three levels of parents; leaf 0 used twice
  std::vector<Tensor> inputs = {parameter(randn({5, 4}, gen, 1.0, DType::f64)), parameter(randn({8, 4}, gen, 0.5, DType::f64)),
                                parameter(randn({4}, gen, 0.5, DType::f64))};
  for (auto f : {static_cast<Tensor (*)(const Tensor&)>(tapegrad::tanh), static_cast<Tensor (*)(const Tensor&)>(sigmoid)}) {
    auto r = gradcheck([&](const std::vector<Tensor>& x) { return nn::recursive_root(x[0], tree, x[1], x[2], f); }, inputs);
    BOOST_TEST(r.ok, r.message);
    BOOST_TEST(r.checks > 0u);
  }
  // Every node's state, too (leaves included).
  auto r = gradcheck(
      [&](const std::vector<Tensor>& x) { return stack(nn::recursive_nodes(x[0], tree, x[1], x[2], tapegrad::tanh), 0); },
      inputs);
  BOOST_TEST(r.ok, r.message);
}

BOOST_AUTO_TEST_CASE(module_parameters_and_nodes) {
  Generator gen(9);
  RecursiveNN rnn(4, gen, nullptr, DType::f64);
  BOOST_TEST(rnn.parameters().size() == 2u);
  BOOST_TEST(rnn.num_parameters() == 8u * 4 + 4);
  BOOST_TEST(rnn.W.shape() == (Shape{8, 4}));
  Tensor leaves = randn({3, 4}, gen, 1.0, DType::f64);
  const Tree tree = Tree::parse("((0 1) 2)");
  auto states = rnn.nodes(leaves, tree);
  BOOST_TEST(states.size() == 5u);
  // Nodes in order: leaf 0, leaf 1, (0 1), leaf 2, root.
  BOOST_TEST(max_abs_diff(states[1], xt::view(to_xt(leaves), 1, xt::all())) == 0.0);
  BOOST_TEST(max_abs_diff(states[3], xt::view(to_xt(leaves), 2, xt::all())) == 0.0);
  Tensor root = rnn(leaves, tree);
  BOOST_TEST(root.shape() == (Shape{4}));
  BOOST_TEST(max_abs_diff(root, to_xt(states.back())) == 0.0);
  backward(sum(root));
  BOOST_TEST(rnn.W.grad().defined());
  BOOST_TEST(rnn.b.grad().defined());
}

BOOST_AUTO_TEST_CASE(bad_trees_and_shapes_are_errors) {
  Generator gen(1);
  Tensor leaves = randn({4, 3}, gen, 1.0, DType::f64), W = randn({6, 3}, gen, 1.0, DType::f64), b = zeros({3}, DType::f64);
  auto run = [&](const Tree& t) { nn::recursive_root(leaves, t, W, b, tapegrad::tanh); };
  Tree missing;
  missing.add_leaf(0);
  missing.nodes.push_back({-1, 0, -1});
  expect_error([&] { run(missing); }, {"RecursiveNN", "node 1", "missing right child"});
  Tree missing_left;
  missing_left.add_leaf(0);
  missing_left.nodes.push_back({-1, -1, 0});
  expect_error([&] { run(missing_left); }, {"RecursiveNN", "missing left child"});
  expect_error([&] { run(Tree::parse("((0 1) (2 4))")); }, {"RecursiveNN", "leaf row 4", "4 leaf rows"});
  Tree cyclic;
  cyclic.add_leaf(0);
  cyclic.nodes.push_back({-1, 0, 1});
  expect_error([&] { run(cyclic); }, {"RecursiveNN", "earlier nodes"});
  expect_error([&] { run(Tree()); }, {"RecursiveNN", "empty"});
  expect_error([&] { Tree().root(); }, {"Tree::root", "empty"});
  expect_error([&] { Tree::parse("(0)"); }, {"Tree::parse", "missing right child"});
  expect_error([&] { Tree::parse("(0 1 2)"); }, {"Tree::parse", "two children"});
  expect_error([&] { Tree::parse("(0 x)"); }, {"Tree::parse", "'x'"});
  expect_error([&] { Tree().add_parent(0, 1); }, {"Tree::add_parent", "existing nodes"});
  expect_error([&] { Tree().add_leaf(-2); }, {"Tree::add_leaf", "negative"});
  const Tree ok = Tree::parse("(0 1)");
  expect_error([&] { nn::recursive_root(leaves, ok, transpose(W), b, tapegrad::tanh); },
               {"RecursiveNN", "W (3, 6)", "(6, 3)", "leaves (4, 3)"});
  expect_error([&] { nn::recursive_root(leaves, ok, W, zeros({4}, DType::f64), tapegrad::tanh); }, {"RecursiveNN", "b (4,)", "(3,)"});
  expect_error([&] { nn::recursive_root(zeros({3}, DType::f64), ok, W, b, tapegrad::tanh); }, {"RecursiveNN", "(N, D)", "(3,)"});
  RecursiveNN m(3, gen, nullptr, DType::f64);
  expect_error([&] { m(zeros({2, 5}, DType::f64), ok); }, {"RecursiveNN", "W (6, 3)", "leaves (2, 5)"});
}

// Tree-LSTM against the paper's formulas in plain double arithmetic (no engine op) on ((0 1) 2).
BOOST_AUTO_TEST_CASE(tree_lstm_by_hand) {
  Generator gen(31);
  const std::size_t D = 3, H = 2;
  nn::TreeLSTM m(D, H, gen, DType::f64);
  // Non-trivial biases, so that every block's bias matters.
  m.b_leaf = parameter(randn({4 * H}, gen, 0.5, DType::f64));
  m.b = parameter(randn({5 * H}, gen, 0.5, DType::f64));
  const Tensor leaves = randn({3, D}, gen, 1.0, DType::f64);
  const Tree t = Tree::parse("((0 1) 2)");
  auto v = [](const Tensor& x) { return x.to_vector(); };
  const auto W = v(m.W), bl = v(m.b_leaf), U = v(m.U), b = v(m.b), X = v(leaves);
  auto sig = [](double z) { return 1 / (1 + std::exp(-z)); };
  struct St {
    std::vector<double> h, c;
  };
  auto leaf = [&](std::size_t r) {  // gates [i f u o] = x W + b_leaf; c = s(i) tanh(u); h = s(o) tanh(c)
    St st{std::vector<double>(H), std::vector<double>(H)};
    for (std::size_t k = 0; k < H; ++k) {
      double g[4];
      for (std::size_t q = 0; q < 4; ++q) {
        g[q] = bl[q * H + k];
        for (std::size_t d = 0; d < D; ++d) g[q] += X[r * D + d] * W[d * 4 * H + q * H + k];
      }
      st.c[k] = sig(g[0]) * std::tanh(g[2]);
      st.h[k] = sig(g[3]) * std::tanh(st.c[k]);
    }
    return st;
  };
  auto inner = [&](const St& l, const St& r) {  // [i f_l u o f_r] = [h_l h_r] U + b
    St st{std::vector<double>(H), std::vector<double>(H)};
    for (std::size_t k = 0; k < H; ++k) {
      double g[5];
      for (std::size_t q = 0; q < 5; ++q) {
        g[q] = b[q * H + k];
        for (std::size_t d = 0; d < 2 * H; ++d) g[q] += (d < H ? l.h[d] : r.h[d - H]) * U[d * 5 * H + q * H + k];
      }
      st.c[k] = sig(g[0]) * std::tanh(g[2]) + sig(g[1]) * l.c[k] + sig(g[4]) * r.c[k];
      st.h[k] = sig(g[3]) * std::tanh(st.c[k]);
    }
    return st;
  };
  const St root = inner(inner(leaf(0), leaf(1)), leaf(2));
  const auto got = m(leaves, t).to_vector();
  for (std::size_t k = 0; k < H; ++k) BOOST_TEST(got[k] == root.h[k], boost::test_tools::tolerance(1e-13));
}

BOOST_AUTO_TEST_CASE(tree_lstm_gradcheck_and_bad_input) {
  Generator gen(32);
  nn::TreeLSTM m(3, 2, gen, DType::f64);
  const Tree t = Tree::parse("((0 (1 2)) (3 0))");
  Tensor leaves = parameter(randn({4, 3}, gen, 1.0, DType::f64));
  auto f = [&](const std::vector<Tensor>& in) {
    m.W = in[1], m.U = in[2], m.b = in[3], m.b_leaf = in[4];  // the members are what the forward reads
    const auto nodes = m.nodes(in[0], t);
    Tensor s = sum(nodes.back() * nodes.back());
    for (const Tensor& n : nodes) s = s + sum(n);
    return s;
  };
  GradcheckResult r = gradcheck(f, {leaves, m.W, m.U, m.b, m.b_leaf});
  BOOST_TEST(r.ok, r.message);
  expect_error([&] { m(randn({4, 5}, gen, 1.0, DType::f64), t); }, {"TreeLSTM", "(4, 5)"});
  expect_error([&] { m(leaves, Tree::parse("(0 9)")); }, {"TreeLSTM"});
}

BOOST_AUTO_TEST_SUITE_END()
