// Rows of the op table for ops/shape, forward values against xtensor, and bad inputs.
#include <boost/test/unit_test.hpp>

#include <set>
#include <xtensor/xarray.hpp>
#include <xtensor/xbuilder.hpp>
#include <xtensor/xindex_view.hpp>
#include <xtensor/xmanipulation.hpp>
#include <xtensor/xpad.hpp>
#include <xtensor/xview.hpp>

#include "support/op_table.hpp"
#include "support/xt.hpp"

using namespace tapegrad;
using namespace tapegrad::test;

// Every row twice: as is, and squared (see push_plain_and_squared).
TAPEGRAD_OP_ROWS(shape) {
  std::vector<OpRow> rows;
  for (auto [from, to] : std::vector<std::pair<Shape, Shape>>{
           {{2, 3}, {3, 2}}, {{2, 3}, {6}}, {{}, {1, 1}}, {{1, 4, 1}, {4}}, {{2, 3, 4}, {4, 1, 6}}, {{1}, {}}}) {
    push_plain_and_squared(rows, row("reshape").sample(from.str() + " -> " + to.str()).shapes({from})
        .fn([to = to](const std::vector<Tensor>& x) { return reshape(x[0], to); }).second_order());
  }
  for (const Shape& s : {Shape{2, 3}, Shape{1, 3}, Shape{2, 3, 4}, Shape{4, 1, 2, 3}})
    push_plain_and_squared(rows, row("transpose").sample(s.str()).shapes({s})
        .fn([](const std::vector<Tensor>& x) { return transpose(x[0]); }).second_order());
  for (auto [s, p] : std::vector<std::pair<Shape, std::vector<std::size_t>>>{
           {{2, 3, 4}, {2, 0, 1}}, {{2, 3}, {1, 0}}, {{}, {}}, {{1, 3, 1, 2}, {3, 1, 0, 2}}, {{2, 3, 2}, {0, 1, 2}}}) {
    std::string name = s.str() + " by (";
    for (auto a : p) name += std::to_string(a) + " ";
    push_plain_and_squared(rows, row("permute").sample(name + ")").shapes({s})
        .fn([p = p](const std::vector<Tensor>& x) { return permute(x[0], p); }).second_order());
  }
  struct Range {
    Shape s;
    long axis;
    std::size_t a, b;
  };
  for (const Range& r : std::vector<Range>{{{5, 3}, 0, 1, 4}, {{2, 5}, -1, 0, 5}, {{2, 3, 4}, 1, 1, 2}, {{4}, 0, 2, 2}, {{1, 3}, -2, 0, 1}}) {
    const std::string tag = r.s.str() + " axis " + std::to_string(r.axis) + " [" + std::to_string(r.a) + ", " + std::to_string(r.b) + ")";
    push_plain_and_squared(rows, row("slice").sample(tag).shapes({r.s})
        .fn([r](const std::vector<Tensor>& x) { return slice(x[0], r.axis, r.a, r.b); }).second_order());
  }
  // select = x[..., i, ...] without the axis: a view on a leading axis, a copy elsewhere; a view of a
  // recorded value used beside the value itself (autobatch's per-example rows).
  for (const Range& r : std::vector<Range>{{{4, 3}, 0, 2, 0}, {{2, 3, 4}, 1, 1, 0}, {{2, 5}, -1, 4, 0}, {{3}, 0, 0, 0}, {{1, 4}, -2, 0, 0}}) {
    const std::string tag = r.s.str() + " axis " + std::to_string(r.axis) + " index " + std::to_string(r.a);
    push_plain_and_squared(rows, row("select").sample(tag).shapes({r.s})
        .fn([r](const std::vector<Tensor>& x) { return select(x[0], r.axis, r.a); }).second_order());
  }
  rows.push_back(row("select").sample("rows of a recorded value, each twice, and the value itself")
      .shapes({{3, 2, 2}}).fn([](const std::vector<Tensor>& x) {
        const Tensor y = x[0] * 3.0;
        return select(y, 0, 0) * select(y, 0, 2) + select(y, 0, 0) + sum(y * y, {0});
      }).second_order());
  // Of a recorded value, reshape and leading-axis slices are views (no copy; their gradient is written into
  // the viewed value's): overlapping views, a view of a view, a view used twice, and the value used beside them.
  rows.push_back(row("slice").sample("views of a recorded value: overlapping rows, and the value itself")
      .shapes({{5, 3}}).fn([](const std::vector<Tensor>& x) {
        const Tensor y = x[0] * 2.0;
        return slice(y, 0, 0, 3) * slice(y, 0, 2, 5) + slice(y, 0, 1, 4) + slice(y * y, 0, 0, 3);
      }).second_order());
  rows.push_back(row("reshape").sample("view of a view (reshape of a slice of a recorded value), used twice")
      .shapes({{4, 2, 3}}).fn([](const std::vector<Tensor>& x) {
        const Tensor v = reshape(slice(x[0] + 1.0, 0, 1, 3), {3, 4});
        return v * v + reshape(slice(reshape(x[0], {8, 3}), 0, 2, 6), {3, 4});
      }).second_order());
  for (const Range& r : std::vector<Range>{{{3, 2}, 0, 1, 2}, {{2, 3}, -1, 0, 3}, {{2, 1, 2}, 1, 2, 0}, {{4}, 0, 0, 0}, {{2, 2, 3}, -3, 1, 1}}) {
    const std::string tag = r.s.str() + " axis " + std::to_string(r.axis) + " pad " + std::to_string(r.a) + "," + std::to_string(r.b);
    push_plain_and_squared(rows, row("pad").sample(tag).shapes({r.s})
        .fn([r](const std::vector<Tensor>& x) { return pad(x[0], r.axis, r.a, r.b); }).second_order());
  }
  struct Idx {
    Shape s;
    long axis;
    std::vector<std::int64_t> idx;
    std::size_t size;  // index_add only
  };
  for (const Idx& r : std::vector<Idx>{{{5, 3}, 0, {4, 0, 0, 2}, 0}, {{2, 4}, -1, {3, 1}, 0}, {{3}, 0, {2, 2, 2}, 0},
                                       {{2, 3, 2}, 1, {}, 0}, {{2, 3, 2}, -2, {1, 2, 0, 1}, 0}}) {
    const std::string tag = r.s.str() + " axis " + std::to_string(r.axis) + " n " + std::to_string(r.idx.size());
    push_plain_and_squared(rows, row("index_select").sample(tag).shapes({r.s})
        .fn([r](const std::vector<Tensor>& x) { return index_select(x[0], r.axis, r.idx); }).second_order());
  }
  for (const Idx& r : std::vector<Idx>{{{4, 3}, 0, {4, 0, 0, 2}, 5}, {{2, 2}, -1, {3, 1}, 4}, {{3}, 0, {1, 1, 1}, 2},
                                       {{2, 1, 2}, 1, {2}, 3}, {{2, 4, 1}, -2, {1, 2, 0, 1}, 3}}) {
    const std::string tag = r.s.str() + " axis " + std::to_string(r.axis) + " into " + std::to_string(r.size);
    push_plain_and_squared(rows, row("index_add").sample(tag).shapes({r.s})
        .fn([r](const std::vector<Tensor>& x) { return index_add(x[0], r.axis, r.idx, r.size); }).second_order());
  }
  struct Cat {
    std::vector<Shape> s;
    long axis;
  };
  for (const Cat& r : std::vector<Cat>{{{{2, 3}, {1, 3}, {4, 3}}, 0},
                                       {{{2, 1}, {2, 3}}, -1},
                                       {{{3}}, 0},
                                       {{{2, 1, 3}, {2, 2, 3}, {2, 0, 3}, {2, 1, 3}}, 1},  // 4 inputs: the arena input list
                                       {{{1, 2}, {1, 2}}, 0}}) {
    std::string tag = "axis " + std::to_string(r.axis) + ":";
    for (auto& s : r.s) tag += " " + s.str();
    push_plain_and_squared(rows, row("concat").sample(tag).shapes(r.s)
        .fn([axis = r.axis](const std::vector<Tensor>& x) { return concat(x, axis); }).second_order());
  }
  // split/chunk: the pieces put back together in reverse order (each piece lands somewhere else). They and
  // stack are compositions (of slice and concat, of reshape and concat), not registered ops.
  auto reversed_concat = [](std::vector<Tensor> parts, long axis) {
    std::reverse(parts.begin(), parts.end());
    return concat(parts, axis);
  };
  push_plain_and_squared(rows, row("split").sample("(5, 3) axis 0 sizes 2,0,3").shapes({{5, 3}})
      .fn([=](const std::vector<Tensor>& x) { return reversed_concat(split(x[0], {2, 0, 3}, 0), 0); })
      .second_order().composite());
  push_plain_and_squared(rows, row("split").sample("(2, 4) axis -1 sizes 1,3").shapes({{2, 4}})
      .fn([=](const std::vector<Tensor>& x) { return reversed_concat(split(x[0], {1, 3}, -1), -1); })
      .second_order().composite());
  push_plain_and_squared(rows, row("chunk").sample("(7, 2) into 3 on axis 0").shapes({{7, 2}})
      .fn([=](const std::vector<Tensor>& x) { return reversed_concat(chunk(x[0], 3, 0), 0); })
      .second_order().composite());
  push_plain_and_squared(rows, row("chunk").sample("(2, 6) into 2 on axis -1").shapes({{2, 6}})
      .fn([=](const std::vector<Tensor>& x) { return reversed_concat(chunk(x[0], 2, -1), -1); })
      .second_order().composite());
  push_plain_and_squared(rows, row("chunk").sample("(2,) into 3 (one empty)").shapes({{2}})
      .fn([=](const std::vector<Tensor>& x) { return reversed_concat(chunk(x[0], 3, 0), 0); })
      .second_order().composite());
  for (long axis : {0L, 1L, 2L, -1L, -3L})
    push_plain_and_squared(rows, row("stack").sample("3 x (2, 3) axis " + std::to_string(axis))
        .shapes({{2, 3}, {2, 3}, {2, 3}})
        .fn([axis](const std::vector<Tensor>& x) { return stack(x, axis); }).second_order().composite());
  push_plain_and_squared(rows, row("stack").sample("2 x () axis 0").shapes({{}, {}})
      .fn([](const std::vector<Tensor>& x) { return stack(x, 0); }).second_order().composite());
  for (auto [s, axis] : std::vector<std::pair<Shape, long>>{{{4}, 0}, {{2, 3}, 0}, {{2, 3, 4}, -2}, {{1, 3}, 0}, {{3, 1}, -1}})
    push_plain_and_squared(rows, row("flip").sample(s.str() + " axis " + std::to_string(axis)).shapes({s})
        .fn([axis = axis](const std::vector<Tensor>& x) { return flip(x[0], axis); }).second_order());
  for (auto [from, to] : std::vector<std::pair<Shape, Shape>>{
           {{3}, {2, 3}}, {{2, 1}, {2, 4}}, {{}, {3, 2}}, {{1, 3, 1}, {2, 3, 4}}, {{2, 3}, {2, 3}}}) {
    push_plain_and_squared(rows, row("broadcast_to").sample(from.str() + " -> " + to.str()).shapes({from})
        .fn([to = to](const std::vector<Tensor>& x) { return broadcast_to(x[0], to); }).second_order());
  }
  return rows;
}

BOOST_AUTO_TEST_SUITE(shape_ops)

// The differentiable backward must give the same gradient as the fast one (gradgradcheck alone only
// proves the recorded backward is differentiated consistently, not that it is the gradient).
BOOST_AUTO_TEST_CASE(graph_backward_equals_fast_backward) {
  const std::set<std::string> ours = {"reshape", "transpose", "permute", "slice",  "pad",   "index_select", "index_add",
                                      "concat",  "split",     "chunk",   "stack", "flip", "broadcast_to"};
  std::size_t compared = 0;
  for (const OpRow& row : op_table()) {
    if (!ours.count(row.op)) continue;
    BOOST_TEST_CONTEXT("op " << row.op << " / " << row.sample) {
      Generator gen(7);
      auto xs = sample_inputs(row, gen);
      Tape::Scope scope;
      Tensor y = row.fn(xs);
      Tensor w = randn(y.shape(), gen, 1.0, DType::f64);
      auto fast = grad(y, xs, {w, true, false});
      auto slow = grad(y, xs, {w, true, true});
      for (std::size_t k = 0; k < xs.size(); ++k) {
        BOOST_TEST((fast[k].shape() == slow[k].shape()));
        BOOST_TEST(max_abs_diff(slow[k], to_xt(fast[k])) <= 1e-12);
        ++compared;
      }
    }
  }
  BOOST_TEST(compared > 50u);
}

BOOST_AUTO_TEST_CASE(forward_matches_xtensor) {
  Generator gen(21);
  Tensor a = randn({2, 3, 4}, gen, 1.0, DType::f64);
  xt::xarray<double> xa = to_xt(a);
  BOOST_TEST(max_abs_diff(reshape(a, {4, 6}), xt::reshape_view(xa, {4, 6})) == 0.0);
  BOOST_TEST(max_abs_diff(transpose(a), xt::transpose(xa, {0, 2, 1})) == 0.0);
  BOOST_TEST(max_abs_diff(permute(a, {2, 0, 1}), xt::transpose(xa, {2, 0, 1})) == 0.0);
  BOOST_TEST(max_abs_diff(permute(a, {1, 2, 0}), xt::transpose(xa, {1, 2, 0})) == 0.0);
  BOOST_TEST(max_abs_diff(slice(a, 1, 1, 3), xt::view(xa, xt::all(), xt::range(1, 3), xt::all())) == 0.0);
  BOOST_TEST(max_abs_diff(slice(a, -1, 0, 1), xt::view(xa, xt::all(), xt::all(), xt::range(0, 1))) == 0.0);
  BOOST_TEST(max_abs_diff(slice(a, 0, 2, 2), xt::xarray<double>(xt::zeros<double>({0, 3, 4}))) == 0.0);
  BOOST_TEST(max_abs_diff(pad(a, 1, 2, 1), xt::pad(xa, {{0, 0}, {2, 1}, {0, 0}})) == 0.0);
  BOOST_TEST(max_abs_diff(pad(a, -1, 0, 3), xt::pad(xa, {{0, 0}, {0, 0}, {0, 3}})) == 0.0);
  const std::vector<std::int64_t> idx = {3, 0, 0, 2, 3};
  const std::vector<std::size_t> uidx(idx.begin(), idx.end());
  BOOST_TEST(max_abs_diff(index_select(a, 2, idx), xt::view(xa, xt::all(), xt::all(), xt::keep(uidx))) == 0.0);
  BOOST_TEST(max_abs_diff(index_select(a, -3, {1, 1, 0}), xt::view(xa, xt::keep(std::vector<std::size_t>{1, 1, 0}))) == 0.0);
  Tensor b = randn({2, 1, 4}, gen, 1.0, DType::f64), c = randn({2, 2, 4}, gen, 1.0, DType::f64);
  xt::xarray<double> xb = to_xt(b), xc = to_xt(c);
  BOOST_TEST(max_abs_diff(concat({a, b, c}, 1), xt::concatenate(xt::xtuple(xa, xb, xc), 1)) == 0.0);
  BOOST_TEST(max_abs_diff(concat({a, a}, -1), xt::concatenate(xt::xtuple(xa, xa), 2)) == 0.0);
  BOOST_TEST(max_abs_diff(stack({a, a * 2.0}, 0), xt::stack(xt::xtuple(xa, xa * 2.0), 0)) == 0.0);
  BOOST_TEST(max_abs_diff(stack({a, a * 2.0}, 3), xt::stack(xt::xtuple(xa, xa * 2.0), 3)) == 0.0);
  BOOST_TEST(max_abs_diff(stack({a, a * 2.0}, -2), xt::stack(xt::xtuple(xa, xa * 2.0), 2)) == 0.0);
  BOOST_TEST(max_abs_diff(flip(a, 0), xt::flip(xa, 0)) == 0.0);
  BOOST_TEST(max_abs_diff(flip(a, 1), xt::flip(xa, 1)) == 0.0);
  BOOST_TEST(max_abs_diff(flip(a, -1), xt::flip(xa, 2)) == 0.0);
  BOOST_TEST(max_abs_diff(broadcast_to(b, {3, 2, 5, 4}), xt::broadcast(xb, {3, 2, 5, 4})) == 0.0);
  // index_add: scatter-add with repeats, against a loop over xtensor views.
  Tensor s = randn({2, 3, 5}, gen, 1.0, DType::f64);
  xt::xarray<double> xs = to_xt(s), ref = xt::zeros<double>({2, 3, 4});
  for (std::size_t j = 0; j < idx.size(); ++j)
    xt::view(ref, xt::all(), xt::all(), idx[j]) += xt::view(xs, xt::all(), xt::all(), j);
  BOOST_TEST(max_abs_diff(index_add(s, -1, idx, 4), ref) < 1e-15);
  BOOST_TEST(max_abs_diff(index_add(zeros({2, 0}, DType::f64), 1, {}, 3), xt::xarray<double>(xt::zeros<double>({2, 3}))) == 0.0);
  // split / chunk pieces.
  auto parts = split(a, {1, 0, 3}, 2);
  BOOST_TEST(parts.size() == 3u);
  BOOST_TEST(max_abs_diff(parts[0], xt::view(xa, xt::all(), xt::all(), xt::range(0, 1))) == 0.0);
  BOOST_TEST(parts[1].numel() == 0u);
  BOOST_TEST(max_abs_diff(parts[2], xt::view(xa, xt::all(), xt::all(), xt::range(1, 4))) == 0.0);
  auto ch = chunk(arange(0, 7, 1, DType::f64), 3, 0);
  BOOST_TEST(ch.size() == 3u);
  BOOST_TEST(ch[0].to_vector() == (std::vector<double>{0, 1, 2}));
  BOOST_TEST(ch[1].to_vector() == (std::vector<double>{3, 4}));
  BOOST_TEST(ch[2].to_vector() == (std::vector<double>{5, 6}));
  auto ch4 = chunk(a, 2, -1);
  BOOST_TEST(max_abs_diff(ch4[1], xt::view(xa, xt::all(), xt::all(), xt::range(2, 4))) == 0.0);
}

BOOST_AUTO_TEST_CASE(float32_and_recording) {
  Generator gen(22);
  Tensor a = randn({3, 4}, gen);  // float32
  Tensor t = transpose(a);
  BOOST_TEST((t.dtype() == DType::f32));
  for (std::size_t i = 0; i < 3; ++i)
    for (std::size_t j = 0; j < 4; ++j) BOOST_TEST(t.at({j, i}) == a.at({i, j}));
  Tensor f = flip(concat({a, pad(a, 0, 1, 0)}, 0), 0);
  BOOST_TEST((f.shape() == Shape{7, 4}));
  BOOST_TEST(f.at({6, 2}) == a.at({0, 2}));
  BOOST_TEST(f.at({3, 1}) == 0.0);
  // One node per op, whatever the number of inputs; nothing is recorded without grad.
  Tape::Scope scope;
  Tensor p = randn({3, 4}, gen).requires_grad_();
  concat({p, a.to(DType::f32), p, p, p}, 0);
  BOOST_TEST(scope.tape().num_nodes() == 1u);
  concat({a, a}, 0);
  BOOST_TEST(scope.tape().num_nodes() == 1u);
  // Gradients through a float32 chain.
  Tensor x = randn({2, 3}, gen).requires_grad_();
  Tensor y = sum(index_select(slice(transpose(x), 0, 1, 3), 1, {1, 1}) * 2.0);
  backward(y);
  const std::vector<double> g = x.grad().to_vector();  // x[1, 1] and x[1, 2], picked twice, times 2
  BOOST_TEST(g == (std::vector<double>{0, 0, 0, 0, 4, 4}));
}

BOOST_AUTO_TEST_CASE(bad_inputs_name_the_op_and_shapes) {
  Tensor a = zeros({2, 3}, DType::f64), v = zeros({4}, DType::f64), s = scalar(1.0, DType::f64);
  expect_error([&] { reshape(a, {4}); }, {"reshape", "(2, 3)", "6 elements", "(4,)"});
  expect_error([&] { transpose(v); }, {"transpose", "(4,)"});
  expect_error([&] { permute(a, {0, 0}); }, {"permute", "(0, 0)", "(2, 3)"});
  expect_error([&] { permute(a, {1, 0, 2}); }, {"permute", "(2, 3)"});
  expect_error([&] { permute(a, {2, 0}); }, {"permute", "(2, 3)"});
  expect_error([&] { slice(a, 1, 2, 4); }, {"slice", "[2, 4)", "(2, 3)"});
  expect_error([&] { slice(a, 0, 2, 1); }, {"slice", "(2, 3)"});
  expect_error([&] { slice(a, 2, 0, 1); }, {"slice", "axis 2", "(2, 3)"});
  expect_error([&] { slice(s, 0, 0, 1); }, {"slice", "()"});
  expect_error([&] { pad(a, -3, 1, 1); }, {"pad", "axis -3", "(2, 3)"});
  expect_error([&] { index_select(a, 1, {0, 3}); }, {"index_select", "index 3", "(2, 3)"});
  expect_error([&] { index_select(a, 0, {-1}); }, {"index_select", "index -1", "(2, 3)"});
  expect_error([&] { index_add(a, 1, {0, 1}, 4); }, {"index_add", "(2, 3)", "3 entries", "2 indices"});
  expect_error([&] { index_add(a, 1, {0, 1, 4}, 4); }, {"index_add", "index 4", "(2, 4)"});
  expect_error([&] { concat({a, zeros({2, 4}, DType::f64)}, 0); }, {"concat", "(2, 4)", "(2, 3)"});
  expect_error([&] { concat({a, v}, 0); }, {"concat", "(4,)", "(2, 3)"});
  expect_error([&] { concat({}, 0); }, {"concat"});
  expect_error([&] { concat({s, s}, 0); }, {"concat", "()"});
  expect_error([&] { concat({a, zeros({1, 3}, DType::f32)}, 0); }, {"concat", "float64", "float32"});
  expect_error([&] { split(a, {1, 1}, 1); }, {"split", "(1, 1)", "(2, 3)"});
  expect_error([&] { chunk(a, 0, 1); }, {"chunk", "(2, 3)"});
  expect_error([&] { stack({a, v}); }, {"stack", "(4,)", "(2, 3)"});
  expect_error([&] { stack({a, a}, 3); }, {"stack", "axis 3", "(2, 3)"});
  expect_error([&] { stack({}); }, {"stack"});
  expect_error([&] { flip(a, 2); }, {"flip", "axis 2", "(2, 3)"});
  expect_error([&] { flip(s, 0); }, {"flip", "()"});
  expect_error([&] { broadcast_to(a, {3, 3}); }, {"broadcast_to", "(2, 3)", "(3, 3)"});
}

BOOST_AUTO_TEST_SUITE_END()
