// BLAS core detection and the once-per-process warning (see the header). Includes cblas.h only.
#include "tapegrad/ops/blas_info.hpp"

#include <cblas.h>

#include <algorithm>
#include <fstream>
#include <iostream>
#include <sstream>

#include "tapegrad/ops/parallel.hpp"

namespace tapegrad {

namespace {
bool has(const std::vector<std::string>& flags, const char* f) {
  return std::find(flags.begin(), flags.end(), f) != flags.end();
}
}  // namespace

std::string blas_core() {
  const char* name = openblas_get_corename();
  return name ? name : "unknown";
}

std::string blas_summary() {
  const int threads = openblas_get_num_threads();
  return "OpenBLAS core " + blas_core() + ", " + std::to_string(threads) + (threads == 1 ? " thread" : " threads");
}

std::vector<std::string> cpu_flags() {
  std::vector<std::string> out;
  std::ifstream in("/proc/cpuinfo");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("flags", 0) != 0) continue;
    const auto colon = line.find(':');
    if (colon == std::string::npos) continue;
    std::istringstream words(line.substr(colon + 1));
    for (std::string w; words >> w;) out.push_back(w);
    break;  // the first processor's; the others have the same
  }
  return out;
}

std::string matching_blas_core(const std::vector<std::string>& flags) {
  if (has(flags, "avx512f") && has(flags, "avx512bw") && has(flags, "avx512dq") && has(flags, "avx512vl"))
    return "SkylakeX";
  if (has(flags, "avx2") && has(flags, "fma")) return "Haswell";
  return "";
}

bool blas_core_is_vectorised(const std::string& core) {
  for (const char* c : {"Haswell", "Zen", "SkylakeX", "Cooperlake", "SapphireRapids"})
    if (core == c) return true;
  return false;
}

std::string blas_core_warning(const std::string& core, const std::vector<std::string>& flags) {
  const std::string want = matching_blas_core(flags);
  if (want.empty() || blas_core_is_vectorised(core)) return "";
  return "tapegrad: warning: OpenBLAS runs its generic '" + core + "' kernels on a CPU with " +
         (want == "SkylakeX" ? "AVX-512" : "AVX2") + " (GEMMs several times slower than the hardware allows); set " +
         "OPENBLAS_CORETYPE=" + want + " in the environment before starting the program\n";
}

bool BlasCoreWarning::warn(const std::string& core, const std::vector<std::string>& flags, std::ostream& os) {
  const std::string msg = blas_core_warning(core, flags);
  if (msg.empty()) return false;
  bool wrote = false;
  std::call_once(once_, [&] {
    os << msg << std::flush;
    wrote = true;
  });
  return wrote;
}

void warn_if_generic_blas() {
  static const bool checked = [] {
    num_threads();  // the thread setting reaches OpenBLAS before its first product (ops/parallel.hpp)
    static BlasCoreWarning w;
    w.warn(blas_core(), cpu_flags(), std::cerr);
    return true;
  }();
  (void)checked;
}

}  // namespace tapegrad
