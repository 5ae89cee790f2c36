// Rows of the op table for ops/recurrent (the fused Elman step, LSTM halves and GRU step), their values against the same formulas
// composed from primitive ops, float32, and bad inputs.
#include <boost/test/unit_test.hpp>

#include "support/op_table.hpp"
#include "support/xt.hpp"

using namespace tapegrad;
using namespace tapegrad::test;

TAPEGRAD_OP_ROWS(recurrent) {
  std::vector<OpRow> rows;
  // (B, H): one row, several rows, H = 1.
  for (auto [B, H] : {std::pair<std::size_t, std::size_t>{2, 3}, {1, 5}, {3, 1}}) {
    const std::string n = "B " + std::to_string(B) + ", H " + std::to_string(H);
    const Shape a{B, 4 * H}, s{B, H}, p{H};
    rows.push_back(row("lstm_cell").sample(n).shapes({a, s})
        .fn([](const std::vector<Tensor>& x) { return lstm_cell(x[0], x[1]); }).second_order());
    rows.push_back(row("lstm_cell").sample(n + ", peepholes").shapes({a, s, p, p})
        .fn([](const std::vector<Tensor>& x) { return lstm_cell(x[0], x[1], x[2], x[3]); }).second_order());
    rows.push_back(row("lstm_hidden").sample(n).shapes({a, s})
        .fn([](const std::vector<Tensor>& x) { return lstm_hidden(x[0], x[1]); }).second_order());
    rows.push_back(row("lstm_hidden").sample(n + ", peephole").shapes({a, s, p})
        .fn([](const std::vector<Tensor>& x) { return lstm_hidden(x[0], x[1], x[2]); }).second_order());
    for (Activation f : {Activation::sigmoid, Activation::tanh, Activation::relu, Activation::identity})
      rows.push_back(row("rnn_cell").sample(n + ", " + activation_name(f)).shapes({s, s, {H, H}})
          .fn([f](const std::vector<Tensor>& x) { return rnn_cell(x[0], x[1], x[2], f); }).second_order());
    const Shape g3{B, 3 * H};
    rows.push_back(row("gru_cell").sample(n).shapes({g3, g3, s, p})
        .fn([](const std::vector<Tensor>& x) { return gru_cell(x[0], x[1], x[2], x[3]); }).second_order());
  }
  // One row with H*H > 1024: gemv, and W's gradient deferred to one GEMM after the sweep.
  rows.push_back(row("rnn_cell").sample("B 1, H 40, tanh (gemv, deferred dW)").shapes({{1, 40}, {1, 40}, {40, 40}})
      .fn([](const std::vector<Tensor>& x) { return rnn_cell(x[0], x[1], x[2], Activation::tanh); }).second_order());
  // All steps in one op: (T, B, H) and (T*B, H) inputs, T = 1, the loops (B 1, H 5) and gemv with GEMM
  // for dW (B 1, H 40), several rows (gemm).
  for (Activation f : {Activation::sigmoid, Activation::tanh, Activation::relu, Activation::identity})
    rows.push_back(row("rnn_sequence").sample(std::string("T 3, B 2, H 3, ") + activation_name(f))
        .shapes({{3, 2, 3}, {2, 3}, {3, 3}})
        .fn([f](const std::vector<Tensor>& x) { return rnn_sequence(x[0], x[1], x[2], f); }).second_order());
  rows.push_back(row("rnn_sequence").sample("T 4, B 1, H 5, xp (T*B, H)").shapes({{4, 5}, {1, 5}, {5, 5}})
      .fn([](const std::vector<Tensor>& x) { return rnn_sequence(x[0], x[1], x[2], Activation::tanh); }).second_order());
  rows.push_back(row("rnn_sequence").sample("T 1, B 2, H 2").shapes({{1, 2, 2}, {2, 2}, {2, 2}})
      .fn([](const std::vector<Tensor>& x) { return rnn_sequence(x[0], x[1], x[2], Activation::sigmoid); }).second_order());
  rows.push_back(row("rnn_sequence").sample("T 3, B 1, H 40, tanh (gemv)").shapes({{3, 1, 40}, {1, 40}, {40, 40}})
      .fn([](const std::vector<Tensor>& x) { return rnn_sequence(x[0], x[1], x[2], Activation::tanh); }).second_order());
  // xp and h0 the same tensor (T = 1): both gradient contributions land in one buffer.
  rows.push_back(row("rnn_sequence").sample("xp and h0 the same tensor").shapes({{2, 3}, {3, 3}})
      .fn([](const std::vector<Tensor>& x) { return rnn_sequence(x[0], x[0], x[1], Activation::tanh); }).second_order());
  // The same tensor as xp and h_prev: both gradient contributions land in one buffer.
  rows.push_back(row("rnn_cell").sample("xp and h_prev the same tensor").shapes({{2, 3}, {3, 3}})
      .fn([](const std::vector<Tensor>& x) { return rnn_cell(x[0], x[0], x[1], Activation::sigmoid); })
      .second_order());
  // The same tensor as xp and hp: both gradient contributions land in one buffer.
  rows.push_back(row("gru_cell").sample("xp and hp the same tensor").shapes({{2, 6}, {2, 2}, {2}})
      .fn([](const std::vector<Tensor>& x) { return gru_cell(x[0], x[0], x[1], x[2]); }).second_order());
  // One peephole tensor used for both p_i and p_f: the two gradient contributions add up.
  rows.push_back(row("lstm_cell").sample("p_i and p_f the same tensor").shapes({{2, 8}, {2, 2}, {2}})
      .fn([](const std::vector<Tensor>& x) { return lstm_cell(x[0], x[1], x[2], x[2]); }).second_order());
  // A whole peephole step on recorded inputs (a and c_prev come from other ops): the create_graph backward
  // of each fused op differentiates its composed form from its own inputs, and the gradients flow on.
  rows.push_back(row("lstm_hidden").sample("lstm_hidden(a, lstm_cell(a, c)) on recorded a, c")
      .shapes({{2, 12}, {2, 3}, {3}, {3}, {3}})
      .fn([](const std::vector<Tensor>& x) {
        const Tensor a = tanh(x[0]), c = lstm_cell(a, x[1] * x[1], x[2], x[3]);
        return lstm_hidden(a, c, x[4]) * c;
      }).second_order());
  return rows;
}

BOOST_AUTO_TEST_SUITE(recurrent)

BOOST_AUTO_TEST_CASE(fused_halves_equal_the_composed_formulas) {
  Generator g(5);
  for (DType d : {DType::f64, DType::f32}) {
    const double tol = d == DType::f64 ? 1e-14 : 1e-6;
    Tensor a = randn({3, 4 * 5}, g, 2.0, d), cp = randn({3, 5}, g, 1.0, d);
    Tensor pi = randn({5}, g, 1.0, d), pf = randn({5}, g, 1.0, d), po = randn({5}, g, 1.0, d);
    BOOST_TEST(max_abs_diff(lstm_cell(a, cp), to_xt(lstm_cell_composed(a, cp))) <= tol);
    BOOST_TEST(max_abs_diff(lstm_cell(a, cp, pi, pf), to_xt(lstm_cell_composed(a, cp, pi, pf))) <= tol);
    BOOST_TEST(max_abs_diff(lstm_hidden(a, cp), to_xt(lstm_hidden_composed(a, cp))) <= tol);
    BOOST_TEST(max_abs_diff(lstm_hidden(a, cp, po), to_xt(lstm_hidden_composed(a, cp, po))) <= tol);
    Tensor xp = randn({3, 15}, g, 2.0, d), hp = randn({3, 15}, g, 2.0, d);
    BOOST_TEST(max_abs_diff(gru_cell(xp, hp, cp, po), to_xt(gru_cell_composed(xp, hp, cp, po))) <= tol);
    // rnn_cell against its composed form f(addmm(...)), at batch 1 (the vector loops) and 3 (gemm).
    Tensor W = randn({20, 20}, g, 0.3, d);
    for (std::size_t B : {1, 3}) {
      Tensor x = randn({B, 20}, g, 1.0, d), h = randn({B, 20}, g, 1.0, d);
      for (Activation f : {Activation::sigmoid, Activation::tanh, Activation::relu, Activation::identity}) {
        const Tensor want = rnn_cell_composed(x, h, W, f);
        BOOST_TEST(max_abs_diff(rnn_cell(x, h, W, f), to_xt(want)) <= tol, activation_name(f) << ", B " << B);
      }
    }
    // rnn_sequence against its steps composed, at H 20 (the loops) and 40 (gemv at batch 1).
    for (std::size_t H : {20, 40}) {
      Tensor Wh = randn({H, H}, g, 0.3, d);
      for (std::size_t B : {1, 3}) {
        Tensor x = randn({5, B, H}, g, 1.0, d), h = randn({B, H}, g, 1.0, d);
        for (Activation f : {Activation::sigmoid, Activation::tanh, Activation::relu, Activation::identity})
          BOOST_TEST(max_abs_diff(rnn_sequence(x, h, Wh, f), to_xt(rnn_sequence_composed(x, h, Wh, f))) <= tol,
                     activation_name(f) << ", B " << B << ", H " << H);
      }
    }
  }
}

// Without recording (NoGrad), the ops compute the same values (their saved gates go to scratch memory).
BOOST_AUTO_TEST_CASE(no_grad_forward_matches) {
  Generator g(6);
  Tensor a = randn({2, 12}, g, 1.0, DType::f64), cp = randn({2, 3}, g, 1.0, DType::f64);
  const auto want = to_xt(lstm_hidden(a, lstm_cell(a, cp)));
  NoGrad no_grad;
  BOOST_TEST(max_abs_diff(lstm_hidden(a, lstm_cell(a, cp)), want) == 0.0);
}

BOOST_AUTO_TEST_CASE(bad_inputs_name_the_op_and_shapes) {
  const Tensor a = zeros({2, 12}, DType::f64), c = zeros({2, 3}, DType::f64), p = zeros({3}, DType::f64);
  expect_error([&] { lstm_cell(zeros({2, 10}, DType::f64), c); }, {"lstm_cell", "(B, 4H)", "(2, 10)"});
  expect_error([&] { lstm_cell(zeros({12}, DType::f64), c); }, {"lstm_cell", "(B, 4H)", "(12,)"});
  expect_error([&] { lstm_cell(a, zeros({2, 4}, DType::f64)); }, {"lstm_cell", "c_prev", "(2, 3)", "(2, 4)", "(2, 12)"});
  expect_error([&] { lstm_cell(a, zeros({3, 3}, DType::f64)); }, {"lstm_cell", "c_prev", "(3, 3)"});
  expect_error([&] { lstm_cell(a, c, zeros({4}, DType::f64), p); }, {"lstm_cell", "p_i", "(3,)", "(4,)"});
  expect_error([&] { lstm_cell(a, c, p, Tensor()); }, {"lstm_cell", "p_f", "(undefined)"});
  expect_error([&] { lstm_cell(a, zeros({2, 3}, DType::f32)); }, {"lstm_cell", "c_prev", "float32", "float64"});
  expect_error([&] { lstm_hidden(a, zeros({2, 2}, DType::f64)); }, {"lstm_hidden", "c", "(2, 2)", "(2, 12)"});
  expect_error([&] { lstm_hidden(a, c, zeros({3, 1}, DType::f64)); }, {"lstm_hidden", "p_o", "(3, 1)"});
  expect_error([&] { lstm_hidden(Tensor(), c); }, {"lstm_hidden", "(B, 4H)", "(undefined)"});
  expect_error([&] { rnn_cell(c, c, zeros({3, 4}, DType::f64), Activation::tanh); }, {"rnn_cell", "W", "(3, 4)"});
  expect_error([&] { rnn_sequence(zeros({4, 2, 3}, DType::f64), c, zeros({3, 4}, DType::f64), Activation::tanh); },
               {"rnn_sequence", "W", "(3, 4)"});
  expect_error([&] { rnn_sequence(zeros({4, 2, 3}, DType::f64), zeros({2, 4}, DType::f64), zeros({3, 3}, DType::f64),
                                  Activation::tanh); }, {"rnn_sequence", "h0", "(2, 4)"});
  expect_error([&] { rnn_sequence(zeros({4, 3, 3}, DType::f64), c, zeros({3, 3}, DType::f64), Activation::tanh); },
               {"rnn_sequence", "xp", "(4, 3, 3)", "B = 2"});
  expect_error([&] { rnn_sequence(zeros({5, 3}, DType::f64), c, zeros({3, 3}, DType::f64), Activation::tanh); },
               {"rnn_sequence", "xp", "(5, 3)"});
  expect_error([&] { rnn_sequence(zeros({0, 2, 3}, DType::f64), c, zeros({3, 3}, DType::f64), Activation::tanh); },
               {"rnn_sequence", "xp", "T > 0"});
  expect_error([&] { rnn_cell(c, zeros({2, 4}, DType::f64), zeros({3, 3}, DType::f64), Activation::tanh); },
               {"rnn_cell", "h_prev", "(2, 4)", "(3, 3)"});
  expect_error([&] { rnn_cell(zeros({3, 3}, DType::f64), c, zeros({3, 3}, DType::f64), Activation::tanh); },
               {"rnn_cell", "xp", "(2, 3)", "(3, 3)"});
  expect_error([&] { rnn_cell(Tensor(), c, zeros({3, 3}, DType::f64), Activation::tanh); }, {"rnn_cell", "xp", "(undefined)"});
  expect_error([&] { rnn_cell(c, c, zeros({3, 3}), Activation::tanh); }, {"rnn_cell", "float32", "float64"});
  const Tensor g9 = zeros({2, 9}, DType::f64);
  expect_error([&] { gru_cell(zeros({2, 8}, DType::f64), g9, c, p); }, {"gru_cell", "(B, 3H)", "(2, 8)"});
  expect_error([&] { gru_cell(g9, zeros({2, 6}, DType::f64), c, p); }, {"gru_cell", "hp", "(2, 9)", "(2, 6)"});
  expect_error([&] { gru_cell(g9, g9, zeros({3, 3}, DType::f64), p); }, {"gru_cell", "h", "(2, 3)", "(3, 3)"});
  expect_error([&] { gru_cell(g9, g9, c, zeros({4}, DType::f64)); }, {"gru_cell", "b_hn", "(3,)", "(4,)"});
  expect_error([&] { gru_cell(g9, g9, c, zeros({3})); }, {"gru_cell", "b_hn", "float32", "float64"});
}

BOOST_AUTO_TEST_SUITE_END()
