#include "tapegrad/check/gradcheck.hpp"

#include <cmath>
#include <numeric>
#include <sstream>

#include "tapegrad/autograd/tape.hpp"

namespace tapegrad {

namespace {

std::string element_name(const Shape& s, std::size_t flat) {
  std::vector<std::size_t> idx(s.rank());
  for (std::size_t k = s.rank(); k-- > 0;) {
    idx[k] = flat % s[k];
    flat /= s[k];
  }
  std::ostringstream os;
  os << '[';
  for (std::size_t k = 0; k < idx.size(); ++k) os << (k ? ", " : "") << idx[k];
  os << ']';
  return os.str();
}

// One comparison of a with the expected n: within atol + rtol * |n|; the first failure's message is kept.
void compare(GradcheckResult& r, double a, double n, double atol, double rtol, const std::string& where,
             const char* a_name, const char* n_name) {
  ++r.checks;
  const double err = std::abs(a - n);
  if (err <= atol + rtol * std::abs(n) || !r.ok) return;
  std::ostringstream os;
  os.precision(12);
  os << where << ": " << a_name << " " << a << ", " << n_name << " " << n << " (|diff| " << err << ")";
  r.ok = false;
  r.message = os.str();
}

}  // namespace

GradcheckResult gradcheck(const Function& f, const std::vector<Tensor>& inputs, const GradcheckOptions& o) {
  GradcheckResult r;
  std::vector<Tensor> xs;
  for (std::size_t k = 0; k < inputs.size(); ++k) {
    const Tensor& x = inputs[k];
    if (!x.defined() || !x.is_leaf()) throw Error("gradcheck: input " + std::to_string(k) + " must be an owned tensor");
    if (x.dtype() != DType::f64)
      throw Error("gradcheck: input " + std::to_string(k) + " " + x.shape().str() + " is " + dtype_name(x.dtype()) +
                  "; gradient checks run in float64");
    xs.push_back(x);
  }
  Generator gen(o.seed);

  // Analytic gradients, on a tape of their own.
  std::vector<Tensor> analytic;
  std::vector<double> w;
  {
    Tape::Scope scope;
    Tensor y = f(xs);
    if (y.dtype() != DType::f64) throw Error("gradcheck: output " + y.shape().str() + " is not float64");
    w.resize(y.numel());
    for (auto& v : w) v = gen.uniform(-1.0, 1.0);
    if (y.requires_grad()) {
      Tensor seed = from_values(w, y.shape(), DType::f64);
      analytic = grad(y, xs, {seed, false, false});
    } else {  // output does not depend on any input that requires grad
      for (auto& x : xs) analytic.push_back(zeros(x.shape(), DType::f64));
    }
  }

  // Numeric gradients: each evaluation on a scratch tape, cleared afterwards.
  Tape::Scope scope;
  auto loss = [&]() {
    const Tensor y = f(xs);  // const: reading it must not count as a write (Tensor::version)
    if (y.numel() != w.size()) throw Error("gradcheck: f changed its output shape between evaluations");
    const double l = std::inner_product(w.begin(), w.end(), y.data<double>(), 0.0);
    scope.tape().clear();
    return l;
  };
  auto check = [&](double a, double n, std::size_t k, const std::string& where) {
    r.max_abs_error = std::max(r.max_abs_error, std::abs(a - n));
    compare(r, a, n, o.atol, o.rtol, "gradcheck: input " + std::to_string(k) + " " + xs[k].shape().str() + " " + where,
            "analytic", "numeric");
  };
  for (std::size_t k = 0; k < xs.size(); ++k) {
    if (!xs[k].requires_grad()) continue;
    double* p = xs[k].data<double>();
    const double* g = analytic[k].data<double>();
    const std::size_t n = xs[k].numel();
    if (n <= o.full_jacobian_max) {
      for (std::size_t j = 0; j < n; ++j) {
        const double x0 = p[j];
        p[j] = x0 + o.eps;
        const double lp = loss();
        p[j] = x0 - o.eps;
        const double lm = loss();
        p[j] = x0;
        check(g[j], (lp - lm) / (2 * o.eps), k, "element " + element_name(xs[k].shape(), j));
      }
    } else {
      std::vector<double> x0(p, p + n), d(n);
      for (std::size_t t = 0; t < o.directions; ++t) {
        double norm = 0, dot = 0;
        for (auto& v : d) { v = gen.normal(); norm += v * v; }
        norm = std::sqrt(norm);
        for (std::size_t j = 0; j < n; ++j) { d[j] /= norm; dot += g[j] * d[j]; }
        for (std::size_t j = 0; j < n; ++j) p[j] = x0[j] + o.eps * d[j];
        const double lp = loss();
        for (std::size_t j = 0; j < n; ++j) p[j] = x0[j] - o.eps * d[j];
        const double lm = loss();
        std::copy(x0.begin(), x0.end(), p);
        check(dot, (lp - lm) / (2 * o.eps), k, "random direction " + std::to_string(t));
      }
    }
  }
  return r;
}

GradcheckResult gradgradcheck(const Function& f, const std::vector<Tensor>& inputs, const GradcheckOptions& o) {
  // Fixed weights for the inner scalarisation, drawn from f's output shape once.
  Tensor w;
  {
    Tape::Scope scope;
    Tensor y = f(inputs);
    Generator gen(o.seed + 1);
    w = uniform(y.shape(), -1.0, 1.0, gen, y.dtype());
  }
  GradcheckResult total;
  // The differentiable backward must give the same first derivatives as the fast one; otherwise the
  // second-order check below would only prove that a wrong gradient is differentiated consistently.
  {
    Tape::Scope scope;
    Tensor y = f(inputs);
    if (y.requires_grad()) {
      auto fast = grad(y, inputs, {w, true, false});
      auto graph = grad(y, inputs, {w, true, true});
      for (std::size_t k = 0; k < inputs.size(); ++k) {
        if (!inputs[k].requires_grad()) continue;
        const auto a = fast[k].to_vector(), b = graph[k].to_vector();
        for (std::size_t j = 0; j < a.size(); ++j)
          compare(total, b[j], a[j], 1e-12, 1e-10,
                  "gradgradcheck: input " + std::to_string(k) + " " + inputs[k].shape().str() + " element " +
                      element_name(inputs[k].shape(), j),
                  "create_graph backward gives", "the backward gives");
      }
    }
  }
  for (std::size_t k = 0; k < inputs.size(); ++k) {
    if (!inputs[k].requires_grad()) continue;
    auto first = [&f, &w, k](const std::vector<Tensor>& xs) {
      Tensor y = f(xs);
      if (!y.requires_grad()) return zeros(xs[k].shape(), xs[k].dtype());
      return grad(y, xs, {w, true, true})[k];
    };
    GradcheckResult r = gradcheck(first, inputs, o);
    total.checks += r.checks;
    total.max_abs_error = std::max(total.max_abs_error, r.max_abs_error);
    if (!r.ok && total.ok) {
      total.ok = false;
      total.message = "gradgradcheck (d/dx of dL/dx_" + std::to_string(k) + "): " + r.message;
    }
  }
  return total;
}

}  // namespace tapegrad
