// The op table: one row per (op, sample). Rows come from tests/ops/test_<family>.cpp through
// TAPEGRAD_OP_ROWS; tests/support/op_table.cpp gradient-checks every row and fails for any registered
// op that has no row.
//
// How to write a row: row("<registered op name>"), then by name what the sample exercises, its inputs
// and the function of them; everything else is optional and named too.
//
//   TAPEGRAD_OP_ROWS(activation) {
//     std::vector<OpRow> rows;
//     rows.push_back(row("softmax").sample("(3,4) axis -1").shapes({{3, 4}})        // one shape per input
//         .fn([](const std::vector<Tensor>& x) { return softmax(x[0], -1); }).second_order());
//     return rows;
//   }
//
//   .sample("...")        required: what this row exercises ("broadcast (3,1)x(4)", "rank 0"); with the op
//                         name it names the row in failures and seeds its inputs
//   .shapes({...})        the input shapes, drawn from .domain(...) (default Domain::any, N(0, 1))
//   .inputs(g -> {...})   instead of shapes: custom inputs (one-hot targets, masks, wide logits)
//   .fn(x -> Tensor)      required: the function of the inputs that is gradient-checked
//   .constant_input(k)    input k is not differentiated (a mask, a target); repeat for several
//   .second_order()       also check second derivatives (gradgradcheck, through create_graph)
//   .composite()          the name is a composition of registered ops, not a registered op itself
//   .options({...})       GradcheckOptions: step, tolerances, random directions
//
// The table test fails for a registered op with no row, a row naming no registered op (unless composite()),
// and a row without sample, fn or inputs. OpRow{...} by position does not compile: rows are built by name.
// push_plain_and_squared(rows, row(...)...) adds a row twice, as written and with its output squared.
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

using RowFn = std::function<Tensor(const std::vector<Tensor>&)>;
using RowInputs = std::function<std::vector<Tensor>(Generator&)>;

// One row as the checks read it; made by RowBuilder (row(...)) only.
struct OpRow {
  std::string op;                 // the registered op name this row checks (or a composite's name)
  std::string sample;             // what this sample exercises ("broadcast (3,1)x(4)", "rank 0", ...)
  std::vector<Shape> shapes;      // input shapes
  RowFn fn;
  Domain domain = Domain::any;
  std::vector<bool> constant;     // per input: true = not differentiated (masks, targets)
  bool second_order = false;      // also check second derivatives (create_graph)
  bool composite = false;         // a composition of registered ops, not itself registered
  GradcheckOptions options = {};
  RowInputs make_inputs = nullptr;  // custom inputs, when a domain is not enough; overrides shapes/domain

 private:
  // Not an aggregate: rows are built by name (RowBuilder), never by position.
  explicit OpRow(std::string name) : op(std::move(name)) {}
  friend class RowBuilder;
};

class RowBuilder {
 public:
  explicit RowBuilder(std::string op) : row_(std::move(op)) {}

  RowBuilder& sample(std::string what) { row_.sample = std::move(what); return *this; }
  RowBuilder& shapes(std::vector<Shape> input_shapes) { row_.shapes = std::move(input_shapes); return *this; }
  RowBuilder& fn(RowFn f) { row_.fn = std::move(f); return *this; }
  RowBuilder& domain(Domain d) { row_.domain = d; return *this; }
  RowBuilder& constant_input(std::size_t k) {
    if (row_.constant.size() <= k) row_.constant.resize(k + 1, false);
    row_.constant[k] = true;
    return *this;
  }
  RowBuilder& inputs(RowInputs make) { row_.make_inputs = std::move(make); return *this; }
  RowBuilder& second_order() { row_.second_order = true; return *this; }
  RowBuilder& composite() { row_.composite = true; return *this; }
  RowBuilder& options(const GradcheckOptions& o) { row_.options = o; return *this; }

  operator OpRow() const { return row_; }  // NOLINT(google-explicit-constructor): rows.push_back(row(...)...)

 private:
  OpRow row_;
};

// The start of every row: row("op name").sample(...).shapes(...).fn(...)...
inline RowBuilder row(std::string op) { return RowBuilder(std::move(op)); }

// Two rows from one: the row as written, and the same with its output squared (sample "..., squared").
// Squaring makes the first derivative depend on the input, so the second-order check of a linear op
// (sum, reshape, ...) differentiates the ops its differentiable backward records instead of a zero.
void push_plain_and_squared(std::vector<OpRow>& rows, const OpRow& plain);

std::vector<OpRow>& op_table();
struct RowAdder {
  explicit RowAdder(std::vector<OpRow> rows);
};

// Draws the inputs of a row (used by the table test; handy in forward tests too).
std::vector<Tensor> sample_inputs(const OpRow& row, Generator& gen);

// The table's own rules, as functions so that a test can show they catch a bad table: registered ops with
// no row, and rows whose name is neither a registered op nor marked composite.
std::vector<std::string> ops_without_rows(const std::vector<OpRow>& table);
std::vector<std::string> rows_naming_no_registered_op(const std::vector<OpRow>& table);
// Rows missing their sample name, their function or their inputs ("op / sample: what is missing").
std::vector<std::string> incomplete_rows(const std::vector<OpRow>& table);

}  // namespace tapegrad::test

#define TAPEGRAD_OP_ROWS_CAT2(a, b) a##b
#define TAPEGRAD_OP_ROWS_CAT(a, b) TAPEGRAD_OP_ROWS_CAT2(a, b)
// Usage: TAPEGRAD_OP_ROWS(elementwise) { std::vector<OpRow> rows; rows.push_back(row(...)...); return rows; }
#define TAPEGRAD_OP_ROWS(family)                                                             \
  static std::vector<::tapegrad::test::OpRow> TAPEGRAD_OP_ROWS_CAT(family, _rows)();         \
  static const ::tapegrad::test::RowAdder TAPEGRAD_OP_ROWS_CAT(family, _row_adder){          \
      TAPEGRAD_OP_ROWS_CAT(family, _rows)()};                                                \
  static std::vector<::tapegrad::test::OpRow> TAPEGRAD_OP_ROWS_CAT(family, _rows)()
