// Reading ../shared/conformance: each case is a folder of .npy files (in_*, out_*, dout_*, grad_*,
// const_*). The folder comes from TAPEGRAD_CONFORMANCE_DIR (default: ../shared/conformance beside the
// source tree); every shape comes from the files.
#pragma once

#include <map>
#include <string>
#include <vector>

#include <tapegrad/tapegrad.hpp>

namespace tapegrad::test {

std::string conformance_dir();

struct ConformanceCase {
  std::string name;
  std::map<std::string, Tensor> in, out, dout, grad;         // float64, keyed without the prefix
  std::map<std::string, std::vector<std::int64_t>> ints;    // const_* integer arrays
  std::map<std::string, Shape> int_shapes;
  std::map<std::string, Tensor> consts;                     // const_* float arrays
  Index index(const std::string& key) const { return Index(ints.at(key), int_shapes.at(key)); }
};

// Loads a case; inputs come back as parameters (requires_grad) in float64.
ConformanceCase load_case(const std::string& name);

// Worst relative error |a - b| / max(|b|, atol/rtol scale), and a report line for the log.
struct Agreement {
  double worst_rel = 0, worst_abs = 0;
  std::string where;
  bool ok(double rtol = 1e-9, double atol = 1e-10) const { return worst_abs <= atol || worst_rel <= rtol; }
};
// Compares elementwise: passes when |a-b| <= atol + rtol*|b| everywhere; records the worst.
bool close(const Tensor& actual, const Tensor& expected, const std::string& what, Agreement& agg,
           double rtol = 1e-9, double atol = 1e-10);

// Checks outputs against out_*, then backward with L = sum_k sum(out_k * dout_k) against grad_*.
// outputs: name -> computed tensor (recorded). Returns the agreement; logs one line per case.
Agreement check_case(const ConformanceCase& c, const std::map<std::string, Tensor>& outputs,
                     double rtol = 1e-9, double atol = 1e-10);

}  // namespace tapegrad::test
