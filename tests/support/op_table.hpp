// The op table: one row per (op, sample). Rows come from tests/ops/test_<family>.cpp through
// TAPEGRAD_OP_ROWS; tests/support/op_table.cpp gradient-checks every row and fails for any registered
// op that has no row.
#pragma once

#include <functional>
#include <string>
#include <vector>

#include <tapegrad/tapegrad.hpp>

namespace tapegrad::test {

// How sample inputs are drawn (float64, requires_grad on the differentiable ones).
enum class Domain {
  any,        // N(0, 1)
  positive,   // uniform(0.5, 2): log, sqrt, pow bases
  away_from_kinks,  // N(0, 1) with |x| >= 0.05 and values pairwise apart: relu, abs, clamp, max
  unit,       // uniform(0.05, 0.95): probabilities
};

struct OpRow {
  std::string op;                 // the registered op name this row checks (or a composite's name)
  std::string sample;             // what this sample exercises ("broadcast (3,1)x(4)", "rank 0", ...)
  std::vector<Shape> shapes;      // input shapes
  std::function<Tensor(const std::vector<Tensor>&)> fn;
  Domain domain = Domain::any;
  std::vector<bool> constant = {};  // per input: true = not differentiated (masks, targets)
  bool second_order = false;        // also check second derivatives (create_graph)
  bool composite = false;           // a composition of registered ops, not itself registered
  GradcheckOptions options = {};
  // Custom inputs, when a domain is not enough (e.g. one-hot targets); overrides shapes/domain.
  std::function<std::vector<Tensor>(Generator&)> make_inputs = nullptr;
};

std::vector<OpRow>& op_table();
struct RowAdder {
  explicit RowAdder(std::vector<OpRow> rows);
};

// Draws the inputs of a row (used by the table test; handy in forward tests too).
std::vector<Tensor> sample_inputs(const OpRow& row, Generator& gen);

}  // namespace tapegrad::test

#define TAPEGRAD_OP_ROWS_CAT2(a, b) a##b
#define TAPEGRAD_OP_ROWS_CAT(a, b) TAPEGRAD_OP_ROWS_CAT2(a, b)
// Usage: TAPEGRAD_OP_ROWS(elementwise) { return { OpRow{...}, ... }; }
#define TAPEGRAD_OP_ROWS(family)                                                             \
  static std::vector<::tapegrad::test::OpRow> TAPEGRAD_OP_ROWS_CAT(family, _rows)();         \
  static const ::tapegrad::test::RowAdder TAPEGRAD_OP_ROWS_CAT(family, _row_adder){          \
      TAPEGRAD_OP_ROWS_CAT(family, _rows)()};                                                \
  static std::vector<::tapegrad::test::OpRow> TAPEGRAD_OP_ROWS_CAT(family, _rows)()
