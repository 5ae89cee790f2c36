// Autobatching (autograd/autobatch.hpp): per-example code over random trees and sequences of mixed
// lengths gives the eager values and gradients (float64, 1e-12); value reads and per-example stopping
// work and batching goes on around them; ops without a rule are counted; an exception in one example
// unwinds every task and leaves the engine usable; gradcheck and create_graph through batched graphs;
// modes stay per task. Every op's own check is a column of the op table (tests/support/op_table.cpp).
#include <boost/test/unit_test.hpp>

#include <cmath>
#include <functional>

#include "support/xt.hpp"

using namespace tapegrad;
using namespace tapegrad::test;

namespace {

Tensor param(const Shape& s, Generator& gen) { return parameter(randn(s, gen, 0.5, DType::f64)); }

double rel_diff(const Tensor& a, const Tensor& b) {
  BOOST_REQUIRE(a.shape() == b.shape());
  const auto va = a.to_vector(), vb = b.to_vector();
  double d = 0, m = 0;
  for (std::size_t i = 0; i < va.size(); ++i) {
    d = std::max(d, std::abs(va[i] - vb[i]));
    m = std::max({m, std::abs(va[i]), std::abs(vb[i])});
  }
  return d == 0 ? 0 : d / m;
}

// A random binary tree over `leaves` leaf rows, children before parents.
nn::Tree random_tree(std::size_t leaves, Generator& gen) {
  nn::Tree t;
  std::vector<std::size_t> open;
  for (std::size_t i = 0; i < leaves; ++i) open.push_back(t.add_leaf(std::int64_t(gen.below(10))));
  while (open.size() > 1) {
    const std::size_t k = gen.below(open.size() - 1);
    const std::size_t p = t.add_parent(open[k], open[k + 1]);
    open.erase(open.begin() + long(k), open.begin() + long(k) + 2);
    open.insert(open.begin() + long(k), p);
  }
  return t;
}

// The gradients of every parameter after backward(loss), detached; the parameters' grads reset.
std::vector<Tensor> grads_of(const Tensor& loss, const std::vector<Tensor>& params) {
  for (Tensor p : params) p.zero_grad();
  backward(loss);
  std::vector<Tensor> g;
  for (const Tensor& p : params) g.push_back(p.grad().detach());
  return g;
}

Tensor total(const std::vector<Tensor>& xs) {
  Tensor s = xs[0];
  for (std::size_t i = 1; i < xs.size(); ++i) s = s + xs[i];
  return s;
}

}  // namespace

BOOST_AUTO_TEST_SUITE(autobatch_)

// A recursive net and a Tree-LSTM over 12 random trees of 1-9 leaves: the per-example code run as a map
// equals it run one tree after another, and the trees' ops batch (far fewer batched calls than calls).
BOOST_AUTO_TEST_CASE(random_trees_equal_eager) {
  Generator gen(11);
  const std::size_t D = 5;
  Tensor E = param({10, D}, gen);
  nn::RecursiveNN rnn(D, gen, nullptr, DType::f64);
  nn::TreeLSTM tree_lstm(D, D, gen, DType::f64);
  nn::Linear out(D, 3, gen, true, DType::f64);
  std::vector<nn::Tree> trees;
  for (int i = 0; i < 12; ++i) trees.push_back(random_tree(1 + gen.below(9), gen));
  for (int model = 0; model < 2; ++model) {
    BOOST_TEST_CONTEXT((model ? "Tree-LSTM" : "recursive net")) {
      auto loss_of = [&](std::size_t i) {
        const Tensor root = model ? tree_lstm(E, trees[i]) : rnn(E, trees[i]);
        return softmax_cross_entropy(reshape(out(root), {1, 3}), Index({std::int64_t(i % 3)}));
      };
      std::vector<Tensor> params = {E, out.W, out.b};
      for (auto& p : (model ? tree_lstm.parameters() : rnn.parameters())) params.push_back(p);
      std::vector<Tensor> eager;
      for (std::size_t i = 0; i < trees.size(); ++i) eager.push_back(loss_of(i));
      std::vector<Tensor> eager_values;
      for (auto& l : eager) eager_values.push_back(l.detach());
      const auto eager_grads = grads_of(total(eager), params);

      autobatch::reset_stats();
      const auto batched = autobatch::map(trees.size(), loss_of);
      for (std::size_t i = 0; i < trees.size(); ++i) BOOST_TEST(rel_diff(eager_values[i], batched[i]) <= 1e-12);
      const auto batched_grads = grads_of(total(batched), params);
      for (std::size_t k = 0; k < params.size(); ++k) BOOST_TEST(rel_diff(eager_grads[k], batched_grads[k]) <= 1e-12);
      const auto& s = autobatch::stats();
      BOOST_TEST(s.batches() > 0u);
      BOOST_TEST(s.ops.at("linear").batched > 2 * s.ops.at("linear").batches, autobatch::stats().table());
    }
  }
}

// Sequences of lengths 1-9 through an LSTM step by step, each example stopping at its own length: the
// steps of the examples still running batch together.
BOOST_AUTO_TEST_CASE(sequences_of_mixed_lengths_equal_eager) {
  Generator gen(12);
  nn::LSTMCell cell(3, 4, gen, false, nn::Init::glorot, 0.01, DType::f64);
  std::vector<Tensor> xs;
  for (int i = 0; i < 10; ++i) xs.push_back(randn({1 + gen.below(9), 1, 3}, gen, 1.0, DType::f64));
  auto loss_of = [&](std::size_t i) {
    nn::State s = cell.initial_state(1);
    for (std::size_t t = 0; t < xs[i].size(0); ++t) s = cell.step(select(xs[i], 0, t), s);
    return sum(s.h * s.h);
  };
  std::vector<Tensor> eager;
  for (std::size_t i = 0; i < xs.size(); ++i) eager.push_back(loss_of(i));
  const auto params = cell.parameters();
  const auto eager_grads = grads_of(total(eager), params);
  autobatch::reset_stats();
  const auto batched = autobatch::map(xs.size(), loss_of);
  const auto batched_grads = grads_of(total(batched), params);
  for (std::size_t k = 0; k < params.size(); ++k) BOOST_TEST(rel_diff(eager_grads[k], batched_grads[k]) <= 1e-12);
  BOOST_TEST(autobatch::stats().ops.at("lstm_cell").largest == xs.size());
}

// Greedy decoding that stops per example on a value it reads (item()): works in every task, equals the
// eager run, and the steps still batch around the reads.
BOOST_AUTO_TEST_CASE(value_reads_and_per_example_stopping) {
  Generator gen(13);
  Tensor W = param({4, 4}, gen), b = param({4}, gen);
  std::vector<Tensor> starts;
  for (int i = 0; i < 8; ++i) starts.push_back(randn({1, 4}, gen, 1.0, DType::f64));
  auto decode = [&](std::size_t i) {
    Tensor h = starts[i];
    int steps = 0;
    // Stops when the first unit turns negative or after 12 steps: a branch on a value of this example.
    while (steps < 12 && h.at({0, 0}) >= 0.0 - 0.3 * double(i % 3)) {
      h = tanh(linear(h, W, b));
      ++steps;
    }
    return sum(h) + double(steps);
  };
  std::vector<double> eager;
  for (std::size_t i = 0; i < starts.size(); ++i) eager.push_back(decode(i).item());
  autobatch::reset_stats();
  const auto batched = autobatch::map(starts.size(), decode);
  for (std::size_t i = 0; i < starts.size(); ++i) BOOST_TEST(batched[i].item() == eager[i], boost::test_tools::tolerance(1e-12));
  BOOST_TEST(autobatch::stats().ops.at("linear").batches > 0u);
  BOOST_TEST(autobatch::stats().ops.at("linear").largest > 1u);
}

// Off the tape (NoGrad: decoding) batches are owned tensors and rows share their buffers: the values are
// still the eager ones, for sequences of mixed lengths through an LSTM, a linear layer and a softmax.
BOOST_AUTO_TEST_CASE(no_grad_maps_equal_eager) {
  Generator gen(22);
  nn::LSTMCell cell(3, 4, gen, false, nn::Init::glorot, 0.01, DType::f64);
  nn::Linear out(4, 5, gen, true, DType::f64);
  std::vector<Tensor> xs;
  for (int i = 0; i < 9; ++i) xs.push_back(randn({1 + gen.below(7), 1, 3}, gen, 1.0, DType::f64));
  auto run = [&](std::size_t i) {
    nn::State s = cell.initial_state(1);
    for (std::size_t t = 0; t < xs[i].size(0); ++t) s = cell.step(select(xs[i], 0, t), s);
    return softmax(out(s.h), -1);
  };
  NoGrad off;
  std::vector<Tensor> eager;
  for (std::size_t i = 0; i < xs.size(); ++i) eager.push_back(run(i));
  autobatch::reset_stats();
  const auto batched = autobatch::map(xs.size(), run);
  for (std::size_t i = 0; i < xs.size(); ++i) BOOST_TEST(rel_diff(eager[i], batched[i]) <= 1e-12);
  BOOST_TEST(autobatch::stats().ops.at("lstm_cell").largest == xs.size());
  BOOST_TEST(!batched[0].requires_grad());
}

// An op with no batching rule runs in its task and is counted under its name; so is a call that found
// no partner.
BOOST_AUTO_TEST_CASE(ops_without_a_rule_are_counted) {
  Generator gen(14);
  Tensor x = param({2, 3}, gen);
  auto f = [&](std::size_t i) {
    const Tensor y = x * double(i + 1);                          // the scalar is in the key: 4 groups of one
    return sum_to(index_add(y, 0, {1, 0}, 3), {1, 3});           // no rule for index_add, sum_to
  };
  std::vector<Tensor> eager;
  for (std::size_t i = 0; i < 4; ++i) eager.push_back(f(i).detach());
  autobatch::reset_stats();
  const auto ys = autobatch::map(4, f);
  for (std::size_t i = 0; i < 4; ++i) BOOST_TEST(rel_diff(ys[i], eager[i]) == 0.0);
  const auto& s = autobatch::stats();
  BOOST_TEST(s.ops.at("index_add").no_rule == 4u);
  BOOST_TEST(s.ops.at("sum_to").no_rule == 4u);
  BOOST_TEST(s.ops.at("mul_scalar").alone == 4u);
  BOOST_TEST(s.unbatched() == 12u);
  BOOST_TEST(s.table().find("index_add") != std::string::npos);
}

// An exception in one example: the map rethrows it (the op's own message, with that example's shapes),
// every other task is unwound, nothing is left waiting, and the next map and backward are right.
BOOST_AUTO_TEST_CASE(an_exception_in_one_example_leaves_no_state) {
  Generator gen(15);
  Tensor W = param({3, 3}, gen);
  std::vector<Tensor> xs;
  for (int i = 0; i < 5; ++i) xs.push_back(randn({1, i == 3 ? 4u : 3u}, gen, 1.0, DType::f64));
  int finished = 0;
  expect_error([&] {
    autobatch::map(5, [&](std::size_t i) {
      Tensor h = tanh(matmul(xs[i], W));  // example 3's x is (1, 4): matmul's error, in example 3
      h = tanh(matmul(h, W));
      ++finished;
      return sum(h);
    });
  }, {"matmul", "(1, 4)", "(3, 3)"});
  BOOST_TEST(finished == 0);  // the others were unwound at their second op, not run to the end
  BOOST_TEST(!autobatch::in_task());
  // A user exception (not from an op) ends the map the same way.
  expect_error([&] {
    autobatch::map(3, [&](std::size_t i) -> Tensor {
      const Tensor h = matmul(xs[0], W);
      if (i == 1) throw Error("example 1 gave up");
      return h;
    });
  }, {"example 1 gave up"});
  // The engine goes on: a new map, its backward, the eager answer.
  xs[3] = randn({1, 3}, gen, 1.0, DType::f64);
  auto loss_of = [&](std::size_t i) { return sum(tanh(matmul(xs[i], W))); };
  Tensor eager = loss_of(0);
  for (std::size_t i = 1; i < 5; ++i) eager = eager + loss_of(i);
  const auto g_eager = grads_of(eager, {W});
  const auto g_batched = grads_of(total(autobatch::map(5, loss_of)), {W});
  BOOST_TEST(rel_diff(g_eager[0], g_batched[0]) <= 1e-12);
}

// A bad id in one example of a batched lookup: the batch falls back to running each call alone, so the
// error is raised in that example with its own ids, and the others' values are right.
BOOST_AUTO_TEST_CASE(a_bad_input_in_a_batch_is_reported_for_its_example) {
  Generator gen(16);
  Tensor E = param({5, 2}, gen);
  expect_error([&] {
    autobatch::map(4, [&](std::size_t i) { return embedding(E, Index({std::int64_t(i == 2 ? 7 : i)})); });
  }, {"embedding", "id 7", "(5, 2)"});
}

// A view op that runs in place inside a task reports its bad input in that task, as eagerly.
BOOST_AUTO_TEST_CASE(a_bad_view_in_a_task_is_reported) {
  Generator gen(23);
  Tensor W = param({3, 3}, gen);
  expect_error([&] {
    autobatch::map(3, [&](std::size_t i) { return select(matmul(from_values({1, 2, 3}, {1, 3}, DType::f64), W), 0, i); });
  }, {"select", "index 1", "(1, 3)"});
}

// gradcheck through an autobatched function, and second derivatives through its graph.
BOOST_AUTO_TEST_CASE(gradcheck_and_create_graph_through_a_batched_graph) {
  Generator gen(17);
  Tensor W = param({3, 3}, gen), x = param({4, 1, 3}, gen);
  auto f = [](const std::vector<Tensor>& in) {
    const auto ys = autobatch::map(4, [&](std::size_t i) {
      Tensor h = select(in[1], 0, i);
      for (std::size_t t = 0; t <= i; ++t) h = tanh(matmul(h, in[0]));  // 1 to 4 steps
      return sum(h * h);
    });
    return total(ys);
  };
  GradcheckResult r = gradcheck(f, {W, x});
  BOOST_TEST(r.ok, r.message);
  GradcheckResult r2 = gradgradcheck(f, {W, x});
  BOOST_TEST(r2.ok, r2.message);
}

// NoGrad in one task does not leak into the others (or into the ops batched for them).
BOOST_AUTO_TEST_CASE(modes_stay_per_task) {
  Generator gen(18);
  Tensor W = param({2, 2}, gen);
  const auto ys = autobatch::map(3, [&](std::size_t i) {
    Tensor x = from_values({1.0, double(i)}, {1, 2}, DType::f64);
    if (i == 1) {
      NoGrad off;
      return matmul(x, W);
    }
    return matmul(x, W);
  });
  BOOST_TEST(ys[0].requires_grad());
  BOOST_TEST(!ys[1].requires_grad());
  BOOST_TEST(ys[2].requires_grad());
  BOOST_TEST(grad_enabled());
  backward(sum(ys[0] + ys[2]));
  const auto g = W.grad().to_vector();  // d/dW sum((x0 + x2) W) = (x0 + x2)^T 1, x0 + x2 = (1, 0) + (1, 2)
  BOOST_TEST(g == std::vector<double>({2, 2, 2, 2}), boost::test_tools::per_element());
}

// A value made before the map is shared by identity (one weight for the batch, not n copies).
BOOST_AUTO_TEST_CASE(values_made_before_the_map_are_shared) {
  Generator gen(19);
  Tensor W = param({3, 3}, gen);
  const Tensor W2 = W * 2.0;  // recorded before the map
  autobatch::reset_stats();
  const auto ys = autobatch::map(4, [&](std::size_t i) {
    return matmul(from_values({double(i), 1.0, 0.0}, {1, 3}, DType::f64), W2);
  });
  BOOST_TEST(autobatch::stats().ops.at("matmul").batches == 1u);
  for (std::size_t i = 0; i < 4; ++i)
    BOOST_TEST(rel_diff(ys[i], matmul(from_values({double(i), 1.0, 0.0}, {1, 3}, DType::f64), W2)) <= 1e-15);
}

// A map inside a task makes child tasks: the 3 x 2 children's products are one batch.
BOOST_AUTO_TEST_CASE(a_nested_map_makes_child_tasks) {
  Generator gen(20);
  Tensor W = param({2, 2}, gen);
  autobatch::reset_stats();
  const auto ys = autobatch::map(3, [&](std::size_t i) {
    const auto inner = autobatch::map(2, [&](std::size_t j) {
      return sum(matmul(from_values({double(i), double(j)}, {1, 2}, DType::f64), W));
    });
    return inner[0] + inner[1];
  });
  for (std::size_t i = 0; i < 3; ++i) {
    const double want = sum(matmul(from_values({double(i), 0.0}, {1, 2}, DType::f64), W)).item() +
                        sum(matmul(from_values({double(i), 1.0}, {1, 2}, DType::f64), W)).item();
    BOOST_TEST(ys[i].item() == want, boost::test_tools::tolerance(1e-14));
  }
  BOOST_TEST(autobatch::stats().ops.at("matmul").largest == 6u);
  BOOST_TEST(autobatch::stats().tasks == 9u);
}

// An exception in a child task ends the whole map: its siblings, its parent and the other tasks unwound.
BOOST_AUTO_TEST_CASE(an_exception_in_a_child_task_ends_the_map) {
  Generator gen(21);
  Tensor W = param({2, 2}, gen);
  const Tensor x = from_values({1.0, 2.0}, {1, 2}, DType::f64);
  expect_error([&] {
    autobatch::map(3, [&](std::size_t i) {
      const auto inner = autobatch::map(2, [&](std::size_t j) {
        const Tensor y = matmul(x, W);
        if (i == 1 && j == 1) throw Error("child 1.1 gave up");
        return sum(matmul(y, W));
      });
      return inner[0] + inner[1];
    });
  }, {"child 1.1 gave up"});
  BOOST_TEST(!autobatch::in_task());
  const auto ys = autobatch::map(2, [&](std::size_t) { return sum(matmul(x, W)); });
  BOOST_TEST(ys[1].item() == sum(matmul(x, W)).item(), boost::test_tools::tolerance(1e-15));
}

BOOST_AUTO_TEST_SUITE_END()
