// The table-driven op test: every row gradient-checked (and second derivatives where the row asks);
// every registered op must have at least one row.
#define BOOST_TEST_MODULE ops
#include <boost/test/unit_test.hpp>

#include <algorithm>
#include <cmath>
#include <map>
#include <set>

#include "support/op_table.hpp"

namespace tapegrad::test {

std::vector<OpRow>& op_table() {
  static std::vector<OpRow> rows;
  return rows;
}

RowAdder::RowAdder(std::vector<OpRow> rows) {
  for (auto& r : rows) op_table().push_back(std::move(r));
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
  for (std::size_t k = 0; k < xs.size(); ++k) {
    const bool constant = k < row.constant.size() && row.constant[k];
    if (xs[k].is_leaf()) xs[k].requires_grad_(!constant);
  }
  return xs;
}

}  // namespace tapegrad::test

using namespace tapegrad;
using namespace tapegrad::test;

BOOST_AUTO_TEST_CASE(every_registered_op_has_a_row) {
  std::set<std::string> with_rows;
  for (const auto& row : op_table()) with_rows.insert(row.op);
  BOOST_TEST(!registered_ops().empty());
  for (const OpInfo* op : registered_ops()) {
    BOOST_TEST_CONTEXT("op '" << op->name << "' (family " << op->family << ")") {
      BOOST_TEST(with_rows.count(op->name) == 1u, "registered op has no row in the op table");
    }
  }
}

BOOST_AUTO_TEST_CASE(every_row_names_a_registered_op) {
  std::set<std::string> registered;
  for (const OpInfo* op : registered_ops()) registered.insert(op->name);
  for (const auto& row : op_table()) {
    BOOST_TEST_CONTEXT("row " << row.op << " / " << row.sample) {
      BOOST_TEST((row.composite || registered.count(row.op) == 1u), "row names no registered op (mark composites)");
    }
  }
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
