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

// ----- autobatching (autograd/autobatch.hpp): every row, three examples, batched against eager -----

namespace {

double max_abs(const Tensor& t) {
  double m = 0;
  for (double v : t.to_vector()) m = std::max(m, std::abs(v));
  return m;
}

// Largest |a - b| over the larger of the two tensors' largest magnitudes (0 when both are zero).
double relative_difference(const Tensor& a, const Tensor& b) {
  if (a.shape() != b.shape()) return INFINITY;
  const auto va = a.to_vector(), vb = b.to_vector();
  double d = 0;
  for (std::size_t i = 0; i < va.size(); ++i) d = std::max(d, std::abs(va[i] - vb[i]));
  const double scale = std::max(max_abs(a), max_abs(b));
  return d == 0 ? 0 : d / scale;
}

}  // namespace

// Values and gradients of three examples run as autobatch::map equal the same examples run one after
// another (float64, relative difference <= 1e-12): with every input per-example; input 0 per-example and
// the others shared (the same parameter in every example, as a weight is); the last input shared; every
// input shared (what differs per call is then only what the op takes besides tensors: ids). Rows with
// second derivatives also take the first derivative with create_graph through the batched graph. Every
// op with a batching rule must form a batch in some row: a new rule cannot go unchecked, and a new op
// gets this check with its first row.
BOOST_AUTO_TEST_CASE(autobatched_rows_equal_eager_rows) {
  constexpr std::size_t E = 3;
  std::set<std::string> batched;
  std::size_t compared = 0;
  for (const auto& row : op_table()) {
    BOOST_TEST_CONTEXT("op " << row.op << " / " << row.sample) {
      Generator gen(std::hash<std::string>{}(row.op + row.sample + "autobatch") & 0xffffffff);
      std::vector<std::vector<Tensor>> ex(E);
      for (auto& xs : ex) xs = sample_inputs(row, gen);
      const std::size_t n_in = ex[0].size();
      for (int mode = 0; mode < 4; ++mode) {
        if ((mode == 1 || mode == 2) && n_in < 2) continue;  // the same as mode 0 or 3
        if (mode == 2 && n_in == 2) continue;                // the same as mode 1
        const char* config = mode == 0 ? " (per-example)" : mode == 1 ? " (input 0 per-example)" : mode == 2 ? " (last shared)" : " (all shared)";
        auto is_shared = [&](std::size_t k) { return mode == 3 || (mode == 1 && k > 0) || (mode == 2 && k + 1 == n_in); };
        std::vector<Tensor> leaves;  // every distinct leaf that wants a gradient
        for (std::size_t e = 0; e < E; ++e)
          for (std::size_t k = 0; k < n_in; ++k)
            if ((!is_shared(k) || e == 0) && ex[e][k].requires_grad()) leaves.push_back(ex[e][k]);
        // Example e's inputs: input k of example 0 when shared; per-example inputs enter as values of the
        // graph (x * 1, exact), so that they are not taken for parameters.
        auto example = [&](std::size_t e) {
          std::vector<Tensor> xs(ex[e].size());
          for (std::size_t k = 0; k < xs.size(); ++k)
            xs[k] = is_shared(k) ? ex[0][k] : ex[e][k] * 1.0;
          return row.fn(xs);
        };
        auto loss_and_grads = [&](const std::vector<Tensor>& ys, bool create_graph) {
          Generator wg(7);
          Tensor loss;
          for (const Tensor& y : ys) {
            const Tensor term = sum(y * randn(y.shape(), wg, 1.0, DType::f64));
            loss = loss.defined() ? loss + term : term;
          }
          std::vector<Tensor> gs;
          if (!leaves.empty() && loss.requires_grad()) gs = grad(loss, leaves, {Tensor(), false, create_graph});
          for (Tensor& g : gs) g = g.detach();
          return gs;
        };
        std::vector<Tensor> eager(E);
        for (std::size_t e = 0; e < E; ++e) eager[e] = example(e);
        std::vector<Tensor> eager_values(E);
        for (std::size_t e = 0; e < E; ++e) eager_values[e] = eager[e].detach();
        const auto eager_grads = loss_and_grads(eager, false);
        autobatch::reset_stats();
        const auto batched_ys = autobatch::map(E, example);
        for (const auto& [name, s] : autobatch::stats().ops)
          if (s.batches) batched.insert(name);
        for (std::size_t e = 0; e < E; ++e) {
          const double d = relative_difference(eager_values[e], batched_ys[e]);
          BOOST_TEST(d <= 1e-12, "example " << e << " value differs by " << d << config);
        }
        const auto batched_grads = loss_and_grads(batched_ys, false);
        BOOST_TEST(batched_grads.size() == eager_grads.size());
        for (std::size_t k = 0; k < std::min(batched_grads.size(), eager_grads.size()); ++k) {
          const double d = relative_difference(eager_grads[k], batched_grads[k]);
          BOOST_TEST(d <= 1e-12, "gradient of leaf " << k << " differs by " << d << config);
          ++compared;
        }
        if (row.second_order) {  // the create_graph backward (ops recorded), batched against unbatched
          std::vector<Tensor> eager_again(E);
          for (std::size_t e = 0; e < E; ++e) eager_again[e] = example(e);
          const auto eager_graph_grads = loss_and_grads(eager_again, true);
          const auto graph_grads = loss_and_grads(autobatch::map(E, example), true);
          BOOST_TEST(graph_grads.size() == eager_graph_grads.size());
          for (std::size_t k = 0; k < std::min(graph_grads.size(), eager_graph_grads.size()); ++k) {
            const double d = relative_difference(eager_graph_grads[k], graph_grads[k]);
            BOOST_TEST(d <= 1e-12, "create_graph gradient of leaf " << k << " differs by " << d << config);
          }
        }
        Tape::current().clear();
      }
    }
  }
  for (const autobatch::Rule* rule : autobatch::rules())
    BOOST_TEST(batched.count(rule->op->name) == 1u, "op " << rule->op->name << " has a batching rule but no row formed a batch");
  BOOST_TEST_MESSAGE("autobatch: " << compared << " gradients compared; " << batched.size() << " ops formed batches");
}
