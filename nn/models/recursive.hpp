// Recursive neural network (再帰型ニューラルネットワーク, Socher et al.) over binary trees: one shared
// composition applied bottom-up,
//   parent = f(concat(left, right) W + b)       row-vector layout: W (2D, D), b (D)
// (the course writes it column-vector: p = f(W [l; r] + b) with W (D, 2D), i.e. W_course = W^T).
// Composed from the engine's ops: the tape differentiates through the whole tree.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "tapegrad/nn/models/module.hpp"

namespace tapegrad::nn {

// A binary tree as a flat list of nodes, children before their parents; the root is the last node.
// A node is a leaf (leaf >= 0: a row of the leaf matrix; left = right = -1) or an inner node with two
// children (leaf = -1; left and right are indices of earlier nodes).
struct Tree {
  struct Node {
    std::int64_t leaf = -1;
    std::int64_t left = -1, right = -1;
  };
  std::vector<Node> nodes;

  std::size_t add_leaf(std::int64_t row);                      // returns the new node's index
  std::size_t add_parent(std::size_t left, std::size_t right);  // returns the new node's index
  std::size_t root() const;                                     // the last node; Error when empty
  std::size_t size() const { return nodes.size(); }

  // From a bracketed string of leaf rows: "((0 1) (2 3))". Leaves are non-negative integers; every
  // bracket holds exactly two subtrees.
  static Tree parse(const std::string& s);
  std::string str() const;  // the same notation

  // Throws Error (naming `who`) for an empty tree, a node with one child or with both a leaf and
  // children, a child that is not an earlier node, or a leaf row outside [0, num_rows).
  void validate(const char* who, std::size_t num_rows) const;
};

// States of every node of the tree, in node order (each (D)); leaves (N, D) are the leaf rows, W (2D, D),
// b (D); f is the activation (tanh in the course). W and b may be any tensors (parameters or composed).
std::vector<Tensor> recursive_nodes(const Tensor& leaves, const Tree& tree, const Tensor& W, const Tensor& b,
                                    Tensor (*f)(const Tensor&));
// The root's state (D).
Tensor recursive_root(const Tensor& leaves, const Tree& tree, const Tensor& W, const Tensor& b,
                      Tensor (*f)(const Tensor&));

// The module: the composition's parameters W (2D, D) (glorot_uniform) and b (D) (zeros).
class RecursiveNN : public Module {
 public:
  RecursiveNN(std::size_t dim, Generator& gen, Tensor (*activation)(const Tensor&) = nullptr,
              DType dtype = default_dtype());  // nullptr: tanh
  Tensor operator()(const Tensor& leaves, const Tree& tree) const;  // root (D)
  std::vector<Tensor> nodes(const Tensor& leaves, const Tree& tree) const;
  std::size_t dim() const { return W.size(1); }
  Tensor W, b;

 private:
  Tensor (*f_)(const Tensor&);
};

// Binary Tree-LSTM (Tai, Socher & Manning 2015, the N-ary form with N = 2) over the same trees. A leaf
// reads its row x of `leaves` and has no children (their states are zero); an inner node reads its
// children's states only:
//   leaf:   [i f u o] = x W + b_leaf                      W (D, 4H), b_leaf (4H)
//           c = sigmoid(i) * tanh(u)  (+ sigmoid(f) * 0: the missing child's cell),  h = sigmoid(o) * tanh(c)
//   inner:  [i f_l u o f_r] = [h_l h_r] U + b             U (2H, 5H), b (5H); one forget gate per child
//           c = sigmoid(i) * tanh(u) + sigmoid(f_l) * c_l + sigmoid(f_r) * c_r,  h = sigmoid(o) * tanh(c)
// Composed from the engine's ops: the first four blocks are an LSTM step's gates (i, f, g, o), so a node
// is linear, the fused lstm_cell on the left child's cell, the right child's term, and lstm_hidden: few
// ops per node, and it batches under autobatch::map like any per-example code (each height of the tree
// a fork). Forget biases start at 1, the rest at 0.
class TreeLSTM : public Module {
 public:
  TreeLSTM(std::size_t input_size, std::size_t hidden_size, Generator& gen, DType dtype = default_dtype());
  Tensor operator()(const Tensor& leaves, const Tree& tree) const;  // the root's h (H)
  std::vector<Tensor> nodes(const Tensor& leaves, const Tree& tree) const;  // every node's h (H), in node order
  std::size_t hidden_size() const { return U.size(0) / 2; }
  Tensor W, b_leaf, U, b;

 private:
  std::vector<Tensor> states(const Tensor& leaves, const Tree& tree, bool all) const;
};

}  // namespace tapegrad::nn
