#include "tapegrad/nn/models/recursive.hpp"

#include <algorithm>
#include <cctype>
#include <cstdint>
#include <utility>

#include "tapegrad/autograd/autobatch.hpp"
#include "tapegrad/nn/models/init.hpp"
#include "tapegrad/ops/activation.hpp"
#include "tapegrad/ops/elementwise.hpp"
#include "tapegrad/ops/index.hpp"
#include "tapegrad/ops/linalg.hpp"
#include "tapegrad/ops/recurrent.hpp"
#include "tapegrad/ops/shape.hpp"

namespace tapegrad::nn {

// ---- Tree ----

std::size_t Tree::add_leaf(std::int64_t row) {
  if (row < 0) throw Error("Tree::add_leaf: leaf row " + std::to_string(row) + " is negative");
  nodes.push_back({row, -1, -1});
  return nodes.size() - 1;
}

std::size_t Tree::add_parent(std::size_t left, std::size_t right) {
  if (left >= nodes.size() || right >= nodes.size())
    throw Error("Tree::add_parent: children (" + std::to_string(left) + ", " + std::to_string(right) +
                ") must be existing nodes (the tree has " + std::to_string(nodes.size()) + ")");
  nodes.push_back({-1, std::int64_t(left), std::int64_t(right)});
  return nodes.size() - 1;
}

std::size_t Tree::root() const {
  if (nodes.empty()) throw Error("Tree::root: the tree is empty");
  return nodes.size() - 1;
}

Tree Tree::parse(const std::string& s) {
  Tree t;
  std::size_t pos = 0;
  auto fail = [&](const std::string& why) {
    // Quote at most 40 characters either side of the position: the string may be megabytes long.
    const std::size_t from = pos > 40 ? pos - 40 : 0;
    const std::string near = (from ? "..." : "") + s.substr(from, 80) + (from + 80 < s.size() ? "..." : "");
    throw Error("Tree::parse: " + why + " at position " + std::to_string(pos) + " in \"" + near + "\"");
  };
  auto skip = [&] {
    while (pos < s.size() && std::isspace(static_cast<unsigned char>(s[pos]))) ++pos;
  };
  // Iterative, with an explicit stack of open brackets: the depth is limited by memory only, not by the
  // call stack. An open bracket remembers its left child once that is complete.
  struct Open {
    std::size_t left = 0;
    bool has_left = false;
  };
  std::vector<Open> open;
  for (;;) {
    skip();
    if (pos >= s.size()) fail("unexpected end");
    if (s[pos] == '(') {
      ++pos;
      open.push_back({});
      continue;
    }
    if (!std::isdigit(static_cast<unsigned char>(s[pos]))) fail(std::string("unexpected '") + s[pos] + "'");
    std::int64_t v = 0;
    const std::size_t digits_at = pos;
    while (pos < s.size() && std::isdigit(static_cast<unsigned char>(s[pos]))) {
      const int d = s[pos] - '0';
      if (v > (INT64_MAX - d) / 10) {
        pos = digits_at;
        fail("leaf index overflows int64");
      }
      v = v * 10 + d;
      ++pos;
    }
    std::size_t done = t.add_leaf(v);
    // A complete subtree: it is the left child of the innermost open bracket, or its right child (which
    // closes the bracket, completing another subtree), or the whole tree.
    for (;;) {
      if (open.empty()) {
        skip();
        if (pos != s.size()) fail("trailing characters");
        return t;
      }
      skip();
      Open& o = open.back();
      if (!o.has_left) {
        if (pos < s.size() && s[pos] == ')') fail("a bracket with one child (missing right child)");
        o.left = done;
        o.has_left = true;
        break;
      }
      if (pos >= s.size() || s[pos] != ')') fail("expected ')' (a node has exactly two children)");
      ++pos;
      done = t.add_parent(o.left, done);
      open.pop_back();
    }
  }
}

std::string Tree::str() const {
  if (nodes.empty()) return "()";
  // Iterative (a deep tree must not overflow the stack) and linear in the size of the result.
  std::string out;
  std::vector<std::pair<std::size_t, int>> stack{{nodes.size() - 1, 0}};  // node, children written so far
  while (!stack.empty()) {
    auto& [i, state] = stack.back();
    const Node& n = nodes[i];
    if (n.leaf >= 0) {
      out += std::to_string(n.leaf);
      stack.pop_back();
    } else if (state == 0) {
      if (n.left < 0 || n.right < 0 || std::size_t(n.left) >= i || std::size_t(n.right) >= i)
        throw Error("Tree::str: node " + std::to_string(i) + " needs two earlier nodes as children");
      out += '(';
      state = 1;
      stack.push_back({std::size_t(n.left), 0});
    } else if (state == 1) {
      out += ' ';
      state = 2;
      stack.push_back({std::size_t(n.right), 0});
    } else {
      out += ')';
      stack.pop_back();
    }
  }
  return out;
}

void Tree::validate(const char* who, std::size_t num_rows) const {
  const std::string w(who);
  if (nodes.empty()) throw Error(w + ": the tree is empty");
  for (std::size_t i = 0; i < nodes.size(); ++i) {
    const Node& n = nodes[i];
    const std::string at = w + ": node " + std::to_string(i);
    if (n.leaf >= 0) {
      if (n.left >= 0 || n.right >= 0) throw Error(at + " is both a leaf (row " + std::to_string(n.leaf) + ") and a parent");
      if (std::size_t(n.leaf) >= num_rows)
        throw Error(at + ": leaf row " + std::to_string(n.leaf) + " is outside the " + std::to_string(num_rows) +
                    " leaf rows");
      continue;
    }
    if (n.leaf < -1) throw Error(at + ": leaf row " + std::to_string(n.leaf) + " is negative");
    if (n.left < 0 || n.right < 0)
      throw Error(at + " has a missing " + std::string(n.left < 0 ? "left" : "right") +
                  " child (an inner node needs two children)");
    if (std::size_t(n.left) >= i || std::size_t(n.right) >= i)
      throw Error(at + ": children (" + std::to_string(n.left) + ", " + std::to_string(n.right) +
                  ") must be earlier nodes");
  }
}

// ---- the composition ----

namespace {

// The leaves' rows of `leaves`, in leaf order (one lookup for the whole tree), and the node of each.
Tensor leaf_rows(const Tensor& leaves, const Tree& tree, std::vector<std::size_t>& leaf_nodes) {
  std::vector<std::int64_t> ids;
  for (std::size_t i = 0; i < tree.size(); ++i)
    if (tree.nodes[i].leaf >= 0) {
      ids.push_back(tree.nodes[i].leaf);
      leaf_nodes.push_back(i);
    }
  return embedding(leaves, Index(ids));  // (leaves, D)
}

// Calls node(i) for every inner node, children before parents. Eagerly in node order; inside an
// autobatch task, level by level (the nodes whose children are leaves, then their parents, ...) with each
// level's nodes as child tasks, so that the nodes of one height batch together across the tree and
// across the examples (DyNet's depth-based agenda, here written by the module).
template <class F> void for_each_inner_level(const Tree& tree, F&& node) {
  if (!autobatch::in_task()) {
    for (std::size_t i = 0; i < tree.size(); ++i)
      if (tree.nodes[i].leaf < 0) node(i);
    return;
  }
  std::vector<std::size_t> height(tree.size(), 0);
  std::vector<std::vector<std::size_t>> levels;
  for (std::size_t i = 0; i < tree.size(); ++i) {
    const Tree::Node& n = tree.nodes[i];
    if (n.leaf >= 0) continue;
    height[i] = 1 + std::max(height[std::size_t(n.left)], height[std::size_t(n.right)]);
    if (height[i] > levels.size()) levels.resize(height[i]);
    levels[height[i] - 1].push_back(i);
  }
  for (const auto& level : levels) autobatch::fork(level.size(), [&](std::size_t k) { node(level[k]); });
}

// Checks the shapes and the tree, then composes every node's state as a (1, D) row.
std::vector<Tensor> compose_rows(const Tensor& leaves, const Tree& tree, const Tensor& W, const Tensor& b,
                                 Tensor (*f)(const Tensor&)) {
  const std::string who = "RecursiveNN";
  if (!leaves.defined() || leaves.rank() != 2) throw Error(who + ": leaves must be (N, D), got " + shape_str(leaves));
  const std::size_t D = leaves.size(1);
  if (!W.defined() || W.shape() != Shape{2 * D, D})
    throw Error(who + ": W " + shape_str(W) + " must be (2D, D) = " + Shape{2 * D, D}.str() + " for leaves " +
                leaves.shape().str());
  if (!b.defined() || b.shape() != Shape{D})
    throw Error(who + ": b " + shape_str(b) + " must be " + Shape{D}.str() + " for leaves " + leaves.shape().str());
  tree.validate(who.c_str(), leaves.size(0));
  if (!f) f = tapegrad::tanh;
  std::vector<Tensor> rows(tree.size());
  std::vector<std::size_t> leaf_nodes;
  const Tensor L = leaf_rows(leaves, tree, leaf_nodes);
  for (std::size_t k = 0; k < leaf_nodes.size(); ++k) rows[leaf_nodes[k]] = slice(L, 0, k, k + 1);
  for_each_inner_level(tree, [&](std::size_t i) {  // parent = f(concat(left, right) W + b)
    const Tree::Node& n = tree.nodes[i];
    rows[i] = f(linear(concat({rows[std::size_t(n.left)], rows[std::size_t(n.right)]}, 1), W, b));
  });
  return rows;
}

}  // namespace

std::vector<Tensor> recursive_nodes(const Tensor& leaves, const Tree& tree, const Tensor& W, const Tensor& b,
                                    Tensor (*f)(const Tensor&)) {
  std::vector<Tensor> rows = compose_rows(leaves, tree, W, b, f);
  for (Tensor& r : rows) r = reshape(r, {r.size(1)});
  return rows;
}

Tensor recursive_root(const Tensor& leaves, const Tree& tree, const Tensor& W, const Tensor& b,
                      Tensor (*f)(const Tensor&)) {
  const Tensor r = compose_rows(leaves, tree, W, b, f).back();
  return reshape(r, {r.size(1)});
}

RecursiveNN::RecursiveNN(std::size_t dim, Generator& gen, Tensor (*activation)(const Tensor&), DType dtype)
    : f_(activation ? activation : static_cast<Tensor (*)(const Tensor&)>(tapegrad::tanh)) {
  if (dim == 0) throw Error("RecursiveNN: dim must be positive");
  W = register_parameter("W", init::glorot_uniform({2 * dim, dim}, gen, dtype));
  b = register_parameter("b", zeros({dim}, dtype));
}

Tensor RecursiveNN::operator()(const Tensor& leaves, const Tree& tree) const {
  return recursive_root(leaves, tree, W, b, f_);
}

std::vector<Tensor> RecursiveNN::nodes(const Tensor& leaves, const Tree& tree) const {
  return recursive_nodes(leaves, tree, W, b, f_);
}

// ---- Tree-LSTM ----

TreeLSTM::TreeLSTM(std::size_t input_size, std::size_t hidden_size, Generator& gen, DType dtype) {
  if (input_size == 0 || hidden_size == 0) throw Error("TreeLSTM: input and hidden sizes must be positive");
  const std::size_t H = hidden_size;
  W = register_parameter("W", init::glorot_uniform({input_size, 4 * H}, gen, dtype));
  b_leaf = register_parameter("b_leaf", zeros({4 * H}, dtype));
  U = register_parameter("U", init::glorot_uniform({2 * H, 5 * H}, gen, dtype));
  std::vector<double> bias(5 * H, 0.0);
  std::fill(bias.begin() + long(H), bias.begin() + long(2 * H), 1.0);  // f_l
  std::fill(bias.begin() + long(4 * H), bias.end(), 1.0);              // f_r
  b = register_parameter("b", from_values(bias, {5 * H}, dtype));
}

std::vector<Tensor> TreeLSTM::states(const Tensor& leaves, const Tree& tree, bool all) const {
  const std::size_t H = hidden_size();
  if (!leaves.defined() || leaves.rank() != 2 || leaves.size(1) != W.size(0))
    throw Error("TreeLSTM: leaves must be (N, " + std::to_string(W.size(0)) + "), got " + shape_str(leaves));
  tree.validate("TreeLSTM", leaves.size(0));
  std::vector<Tensor> h(tree.size()), c(tree.size());
  // Every leaf of the tree at once: (leaves, 4H) gates, then each leaf's row (views).
  std::vector<std::size_t> leaf_nodes;
  const Tensor a_leaf = linear(leaf_rows(leaves, tree, leaf_nodes), W, b_leaf);
  const Tensor c_leaf = lstm_cell(a_leaf, zeros({leaf_nodes.size(), H}, a_leaf.dtype()));
  const Tensor h_leaf = lstm_hidden(a_leaf, c_leaf);
  for (std::size_t k = 0; k < leaf_nodes.size(); ++k) {
    c[leaf_nodes[k]] = slice(c_leaf, 0, k, k + 1);
    h[leaf_nodes[k]] = slice(h_leaf, 0, k, k + 1);
  }
  for_each_inner_level(tree, [&](std::size_t i) {
    const Tree::Node& n = tree.nodes[i];
    const std::size_t l = std::size_t(n.left), r = std::size_t(n.right);
    const Tensor a = linear(concat({h[l], h[r]}, 1), U, b);  // (1, 5H): i, f_l, u, o | f_r
    const Tensor gates = slice(a, 1, 0, 4 * H);
    c[i] = lstm_cell(gates, c[l]) + sigmoid(slice(a, 1, 4 * H, 5 * H)) * c[r];
    h[i] = lstm_hidden(gates, c[i]);
  });
  if (!all) return {reshape(h.back(), {H})};
  for (Tensor& t : h) t = reshape(t, {H});
  return h;
}

Tensor TreeLSTM::operator()(const Tensor& leaves, const Tree& tree) const { return states(leaves, tree, false)[0]; }
std::vector<Tensor> TreeLSTM::nodes(const Tensor& leaves, const Tree& tree) const { return states(leaves, tree, true); }

}  // namespace tapegrad::nn
