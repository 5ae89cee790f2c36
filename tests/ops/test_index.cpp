// Rows of the op table for ops/index, and embedding against row copies.
#include <boost/test/unit_test.hpp>

#include <xtensor/xarray.hpp>
#include <xtensor/xview.hpp>

#include "support/op_table.hpp"
#include "support/xt.hpp"

using namespace tapegrad;
using namespace tapegrad::test;

TAPEGRAD_OP_ROWS(index) {
  // The weight is the only input; the ids are captured.
  auto emb = [](Index ids) { return [ids](const std::vector<Tensor>& x) { return embedding(x[0], ids); }; };
  std::vector<OpRow> rows;
  rows.push_back(row("embedding").sample("repeated ids (2,3) into (7,4)").shapes({{7, 4}})
      .fn(emb(Index({0, 3, 3, 6, 0, 3}, {2, 3}))).second_order());
  rows.push_back(row("embedding").sample("1-D ids, unused rows (5) into (9,3)").shapes({{9, 3}})
      .fn(emb(Index({8, 1, 1, 4, 8}))).second_order());
  rows.push_back(row("embedding").sample("rank-0 id into (4,5)").shapes({{4, 5}})
      .fn(emb(Index({2}, Shape{}))).second_order());
  rows.push_back(row("embedding").sample("D=1 (2,2,2) into (3,1)").shapes({{3, 1}})
      .fn(emb(Index({0, 2, 2, 2, 1, 0, 0, 2}, {2, 2, 2}))).second_order());
  return rows;
}

BOOST_AUTO_TEST_SUITE(index_family)

BOOST_AUTO_TEST_CASE(embedding_copies_rows) {
  Generator gen(41);
  for (DType dt : {DType::f64, DType::f32}) {
    Tensor w = randn({6, 5}, gen, 1.0, dt);
    const Index ids({5, 0, 2, 2, 5, 1}, {3, 2});
    Tensor y = embedding(w, ids);
    BOOST_TEST(y.shape() == Shape({3, 2, 5}));
    BOOST_TEST((y.dtype() == dt));
    const xt::xarray<double> xw = to_xt(w);
    xt::xarray<double> ref = xt::zeros<double>({3, 2, 5});
    for (std::size_t i = 0; i < 6; ++i) xt::view(ref, i / 2, i % 2) = xt::view(xw, ids.values[i]);
    BOOST_TEST(max_abs_diff(y, ref) == 0.0);
    Tensor pw = parameter(w.clone());
    BOOST_TEST(max_abs_diff(embedding(pw, ids), ref) == 0.0);
  }
}

// Repeated ids accumulate: row r of the gradient is the sum of the output rows that read row r.
BOOST_AUTO_TEST_CASE(embedding_backward_scatter_adds) {
  Generator gen(42);
  for (DType dt : {DType::f64, DType::f32}) {
    Tensor w = parameter(randn({5, 3}, gen, 1.0, dt));
    const Index ids({4, 1, 4, 4, 0}, {5});
    Tensor seed = randn({5, 3}, gen, 1.0, dt);
    backward(embedding(w, ids), seed);
    const xt::xarray<double> g = to_xt(seed);
    xt::xarray<double> ref = xt::zeros<double>({5, 3});
    for (std::size_t i = 0; i < 5; ++i) xt::view(ref, ids.values[i]) += xt::view(g, i);
    BOOST_TEST(max_abs_diff(w.grad(), ref) < 1e-6);
    backward(embedding(w, ids), seed);  // accumulates into the leaf's gradient
    BOOST_TEST(max_abs_diff(w.grad(), 2.0 * ref) < 1e-6);
  }
}

// The node keeps its own copy of the ids: the caller's Index may go away before backward.
BOOST_AUTO_TEST_CASE(embedding_keeps_its_ids) {
  Tensor w = parameter(zeros({3, 2}, DType::f64));
  Tensor y;
  {
    Index ids({2, 2, 0}, {3});
    y = embedding(w, ids);
    ids.values.assign({1, 1, 1});
  }
  backward(y, ones({3, 2}, DType::f64));
  BOOST_TEST(max_abs_diff(w.grad(), to_xt(from_values({1, 1, 0, 0, 2, 2}, {3, 2}, DType::f64))) == 0.0);
}

BOOST_AUTO_TEST_CASE(bad_inputs_name_the_op_and_shapes) {
  Tensor w = zeros({7, 4}, DType::f64);
  expect_error([&] { embedding(w, Index({0, 7, 1})); }, {"embedding", "id 7", "V = 7", "(7, 4)"});
  expect_error([&] { embedding(w, Index({-1})); }, {"embedding", "id -1", "V = 7"});
  expect_error([&] { embedding(zeros({7}, DType::f64), Index({0})); }, {"embedding", "(7,)"});
  expect_error([&] { embedding(zeros({2, 7, 4}, DType::f64), Index({0})); }, {"embedding", "(2, 7, 4)"});
  expect_error([&] { embedding(w, Index({0, 1, 2}, {2, 2})); }, {"embedding", "(2, 2)", "3 values"});
  expect_error([&] { embedding(Tensor(), Index({0})); }, {"embedding", "undefined"});
}

BOOST_AUTO_TEST_SUITE_END()
