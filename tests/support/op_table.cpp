// The table-driven op test: every row gradient-checked (and second derivatives where the row asks);
// every registered op must have at least one row.
#define BOOST_TEST_MODULE ops
#include <boost/test/unit_test.hpp>

#include <algorithm>
#include <cmath>
#include <map>
#include <set>

#include "support/op_table.hpp"
#include "support/xt.hpp"

namespace tapegrad::test {

std::vector<OpRow>& op_table() {
  static std::vector<OpRow> rows;
  return rows;
}

RowAdder::RowAdder(std::vector<OpRow> rows) {
  for (auto& r : rows) op_table().push_back(std::move(r));
}

void push_plain_and_squared(std::vector<OpRow>& rows, const OpRow& plain) {
  OpRow squared = plain;
  squared.sample += ", squared";
  squared.fn = [f = plain.fn](const std::vector<Tensor>& x) {
    Tensor y = f(x);
    return y * y;
  };
  rows.push_back(plain);
  rows.push_back(std::move(squared));
}

std::vector<Tensor> sample_inputs(const OpRow& row, Generator& gen) {
  std::vector<Tensor> xs;
  if (row.make_inputs) {
    xs = row.make_inputs(gen);
  } else {
    for (const Shape& s : row.shapes) {
      Tensor t;
      switch (row.domain) {
        case Domain::any: t = randn(s, gen, 1.0, DType::f64); break;
        case Domain::positive: t = uniform(s, 0.5, 2.0, gen, DType::f64); break;
        case Domain::unit: t = uniform(s, 0.05, 0.95, gen, DType::f64); break;
        case Domain::away_from_kinks: {
          // Distinct values spaced 0.1 apart (no ties for max), none near 0, in random order.
          t = empty(s, DType::f64);
          double* p = t.data<double>();
          const std::size_t n = t.numel();
          std::vector<double> v(n);
          for (std::size_t i = 0; i < n; ++i) v[i] = (static_cast<double>(i) - static_cast<double>(n - 1) / 2.0) * 0.1 + (n % 2 ? 0.05 : 0.0);
          std::shuffle(v.begin(), v.end(), gen.engine());
          std::copy(v.begin(), v.end(), p);
          break;
        }
      }
      xs.push_back(t);
    }
  }
  if (row.constant.size() > xs.size())
    throw Error("op table row " + row.op + " / " + row.sample + ": constant_input(" +
                std::to_string(row.constant.size() - 1) + ") but the row has " + std::to_string(xs.size()) + " inputs");
  for (std::size_t k = 0; k < xs.size(); ++k) {
    const bool constant = k < row.constant.size() && row.constant[k];
    if (xs[k].is_leaf()) xs[k].requires_grad_(!constant);
  }
  return xs;
}

std::vector<std::string> ops_without_rows(const std::vector<OpRow>& table) {
  std::set<std::string> with_rows;
  for (const auto& row : table) with_rows.insert(row.op);
  std::vector<std::string> missing;
  for (const OpInfo* op : registered_ops())
    if (!with_rows.count(op->name)) missing.push_back(std::string(op->name) + " (family " + op->family + ")");
  return missing;
}

std::vector<std::string> rows_naming_no_registered_op(const std::vector<OpRow>& table) {
  std::set<std::string> registered;
  for (const OpInfo* op : registered_ops()) registered.insert(op->name);
  std::vector<std::string> stray;
  for (const auto& row : table)
    if (!row.composite && !registered.count(row.op)) stray.push_back(row.op + " / " + row.sample);
  return stray;
}

std::vector<std::string> incomplete_rows(const std::vector<OpRow>& table) {
  std::vector<std::string> bad;
  for (const auto& row : table) {
    const std::string name = row.op + " / " + row.sample;
    if (row.sample.empty()) bad.push_back(name + ": no sample()");
    if (!row.fn) bad.push_back(name + ": no fn()");
    if (row.shapes.empty() && !row.make_inputs) bad.push_back(name + ": neither shapes() nor inputs()");
    if (!row.shapes.empty() && row.make_inputs) bad.push_back(name + ": both shapes() and inputs()");
  }
  return bad;
}

}  // namespace tapegrad::test

using namespace tapegrad;
using namespace tapegrad::test;

namespace {

std::string listed(const std::vector<std::string>& items) {
  std::string s;
  for (const auto& i : items) s += "\n  " + i;
  return s;
}

}  // namespace

BOOST_AUTO_TEST_CASE(every_registered_op_has_a_row) {
  BOOST_TEST(!registered_ops().empty());
  const auto missing = ops_without_rows(op_table());
  BOOST_TEST(missing.empty(), "registered ops with no row in the op table:" << listed(missing));
}

BOOST_AUTO_TEST_CASE(every_row_names_a_registered_op) {
  const auto stray = rows_naming_no_registered_op(op_table());
  BOOST_TEST(stray.empty(), "rows naming no registered op (mark composites with .composite()):" << listed(stray));
}

BOOST_AUTO_TEST_CASE(every_row_is_complete) {
  const auto incomplete = incomplete_rows(op_table());
  BOOST_TEST(incomplete.empty(), "incomplete rows:" << listed(incomplete));
}

// The rules above must be able to fail: a table that lost an op's rows, and a row naming an op that does
// not exist, are caught; the same name marked composite() is accepted.
BOOST_AUTO_TEST_CASE(table_rules_catch_a_missing_op_and_a_stray_row) {
  auto x0 = [](const std::vector<Tensor>& x) { return x[0]; };
  std::vector<OpRow> table;
  for (const OpRow& r : op_table())
    if (r.op != "tanh") table.push_back(r);
  const auto missing = ops_without_rows(table);
  BOOST_TEST(missing.size() == 1u);
  BOOST_TEST((!missing.empty() && missing[0].find("tanh") == 0));

  table.push_back(row("no_such_op").sample("(2)").shapes({{2}}).fn(x0));
  const auto stray = rows_naming_no_registered_op(table);
  BOOST_TEST(stray.size() == 1u);
  BOOST_TEST((!stray.empty() && stray[0] == "no_such_op / (2)"));
  table.back() = row("no_such_op").sample("(2)").shapes({{2}}).fn(x0).composite();
  BOOST_TEST(rows_naming_no_registered_op(table).empty());

  BOOST_TEST(incomplete_rows(table).empty());
  table.push_back(row("tanh").sample("no inputs").fn(x0));
  table.push_back(row("tanh").shapes({{2}}).fn(x0));
  table.push_back(row("tanh").sample("no function").shapes({{2}}));
  BOOST_TEST(incomplete_rows(table).size() == 3u);

  // constant_input past the row's inputs is an error naming the row, not silently ignored.
  Generator gen(1);
  OpRow bad = row("tanh").sample("one input").shapes({{2}}).fn(x0).constant_input(1);
  expect_error([&] { sample_inputs(bad, gen); }, {"tanh / one input", "constant_input(1)", "1 inputs"});
}

BOOST_AUTO_TEST_CASE(gradient_check_every_row) {
  std::size_t checks = 0, rows = 0;
  std::map<std::string, std::size_t> per_op;
  for (const auto& row : op_table()) {
    BOOST_TEST_CONTEXT("op " << row.op << " / " << row.sample) {
      Generator gen(std::hash<std::string>{}(row.op + row.sample) & 0xffffffff);
      auto xs = sample_inputs(row, gen);
      GradcheckResult r = gradcheck(row.fn, xs, row.options);
      BOOST_TEST(r.ok, r.message);
      BOOST_TEST(r.checks > 0u, "no gradient was compared");
      checks += r.checks;
      if (row.second_order) {
        GradcheckResult r2 = gradgradcheck(row.fn, xs, row.options);
        BOOST_TEST(r2.ok, r2.message);
        checks += r2.checks;
      }
      ++rows;
      ++per_op[row.op];
    }
  }
  BOOST_TEST_MESSAGE("op table: " << rows << " rows over " << per_op.size() << " ops, " << checks
                                  << " gradient comparisons");
}

// The table must also notice a wrong gradient: a deliberately broken op has to fail gradcheck.
BOOST_AUTO_TEST_CASE(gradcheck_catches_a_wrong_gradient) {
  Generator gen(3);
  Tensor x = randn({3, 2}, gen, 1.0, DType::f64).requires_grad_();
  // tanh(x) with its value replaced by a scaled copy that keeps tanh's gradient: f = tanh(x) + detach(x)
  // has gradient 1 - tanh^2 analytically but the numeric one sees d/dx detach(x) = 1 as well.
  auto f = [](const std::vector<Tensor>& in) { return tanh(in[0]) + in[0].detach(); };
  GradcheckResult r = gradcheck(f, {x});
  BOOST_TEST(!r.ok);
  BOOST_TEST(r.message.find("input 0") != std::string::npos);
}
