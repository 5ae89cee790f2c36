#include "support/conformance.hpp"

#include <boost/test/unit_test.hpp>

#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <xtensor/xarray.hpp>
#include <xtensor/xnpy.hpp>

namespace fs = std::filesystem;

namespace tapegrad::test {

std::string conformance_dir() {
  if (const char* env = std::getenv("TAPEGRAD_CONFORMANCE_DIR"); env && *env) return env;
  return TAPEGRAD_DEFAULT_CONFORMANCE_DIR;
}

namespace {
// The dtype descriptor of an .npy header ('<f8', '<i8', ...).
std::string npy_descr(const fs::path& p) {
  std::ifstream f(p, std::ios::binary);
  std::string head(256, '\0');
  f.read(head.data(), static_cast<std::streamsize>(head.size()));
  const auto k = head.find("descr");
  if (k == std::string::npos) throw Error("conformance: no descr in " + p.string());
  const auto q1 = head.find('\'', head.find(':', k));
  const auto q2 = head.find('\'', q1 + 1);
  return head.substr(q1 + 1, q2 - q1 - 1);
}
}  // namespace

ConformanceCase load_case(const std::string& name) {
  const fs::path dir = fs::path(conformance_dir()) / name;
  if (!fs::is_directory(dir))
    throw Error("conformance: case folder " + dir.string() + " not found (set TAPEGRAD_CONFORMANCE_DIR)");
  ConformanceCase c;
  c.name = name;
  for (const auto& entry : fs::directory_iterator(dir)) {
    const fs::path p = entry.path();
    if (p.extension() != ".npy") continue;
    const std::string stem = p.stem().string();
    const auto us = stem.find('_');
    const std::string prefix = stem.substr(0, us), key = stem.substr(us + 1);
    const std::string descr = npy_descr(p);
    if (descr.find('i') != std::string::npos || descr.find('u') != std::string::npos) {
      auto a = xt::load_npy<std::int64_t>(p.string());
      c.ints[key] = std::vector<std::int64_t>(a.begin(), a.end());
      c.int_shapes[key] = Shape(a.shape().begin(), a.shape().end());
      continue;
    }
    auto a = xt::load_npy<double>(p.string());
    Tensor t = from_values(std::vector<double>(a.begin(), a.end()), Shape(a.shape().begin(), a.shape().end()), DType::f64);
    if (prefix == "in") c.in[key] = t.requires_grad_(true);
    else if (prefix == "out") c.out[key] = t;
    else if (prefix == "dout") c.dout[key] = t;
    else if (prefix == "grad") c.grad[key] = t;
    else if (prefix == "const") c.consts[key] = t;
  }
  if (c.in.empty() && c.consts.empty()) throw Error("conformance: case " + name + " has no inputs in " + dir.string());
  return c;
}

bool close(const Tensor& actual, const Tensor& expected, const std::string& what, Agreement& agg, double rtol, double atol) {
  if (actual.shape() != expected.shape()) {
    BOOST_TEST(false, what << ": shape " << actual.shape().str() << " vs expected " << expected.shape().str());
    agg.worst_rel = INFINITY;
    return false;
  }
  const auto a = actual.to_vector(), b = expected.to_vector();
  bool ok = true;
  for (std::size_t i = 0; i < a.size(); ++i) {
    const double d = std::abs(a[i] - b[i]);
    const double rel = d / std::max(std::abs(b[i]), atol / rtol);
    if (rel > agg.worst_rel) {
      agg.worst_rel = rel;
      agg.where = what;
    }
    agg.worst_abs = std::max(agg.worst_abs, d);
    if (!(d <= atol + rtol * std::abs(b[i]))) {
      if (ok) BOOST_TEST(false, what << " element " << i << ": got " << a[i] << ", expected " << b[i]);
      ok = false;
    }
  }
  return ok;
}

Agreement check_case(const ConformanceCase& c, const std::map<std::string, Tensor>& outputs, double rtol, double atol) {
  Agreement agg;
  BOOST_TEST(outputs.size() == c.out.size(), c.name << ": " << outputs.size() << " outputs computed, " << c.out.size() << " in the case");
  Tensor loss;
  for (const auto& [key, expected] : c.out) {
    auto it = outputs.find(key);
    if (it == outputs.end()) {
      BOOST_TEST(false, c.name << ": output " << key << " not computed");
      continue;
    }
    close(it->second, expected, c.name + " out_" + key, agg, rtol, atol);
    // L = sum_k sum(out_k * dout_k)
    Tensor term = sum(it->second * c.dout.at(key));
    loss = loss.defined() ? loss + term : term;
  }
  std::vector<std::string> keys;
  std::vector<Tensor> xs;
  for (const auto& [key, expected] : c.grad) {
    keys.push_back(key);
    xs.push_back(c.in.at(key));
  }
  if (loss.defined() && !xs.empty()) {
    auto gs = grad(loss, xs);
    for (std::size_t k = 0; k < xs.size(); ++k) close(gs[k], c.grad.at(keys[k]), c.name + " grad_" + keys[k], agg, rtol, atol);
  }
  BOOST_TEST_MESSAGE("conformance " << c.name << ": worst relative error " << agg.worst_rel << " (" << agg.where
                                    << "), worst absolute " << agg.worst_abs);
  return agg;
}

}  // namespace tapegrad::test
