// Which BLAS kernels this process runs on, and whether they fit the CPU. OpenBLAS picks its kernel set
// ("core") from the CPU at load time; 0.3.21 does not know every CPU and then falls back to its SSE3
// "Prescott" kernels (this project's Xeon, family 6 model 207: GEMMs 4-5x slower than AVX2/AVX-512
// allow). OPENBLAS_CORETYPE=<core> in the environment overrides the detection.
#pragma once

#include <iosfwd>
#include <mutex>
#include <string>
#include <vector>

namespace tapegrad {

// The OpenBLAS core running now, as openblas_get_corename() names it (e.g. "Haswell", "SkylakeX").
std::string blas_core();
// One line for headers and reports: "OpenBLAS core Haswell, 1 thread".
std::string blas_summary();

// This CPU's feature flags (the "flags" line of /proc/cpuinfo; empty when unreadable).
std::vector<std::string> cpu_flags();

// The OPENBLAS_CORETYPE whose kernels match CPU flags: "SkylakeX" with avx512f, avx512bw, avx512dq and
// avx512vl; "Haswell" with avx2 and fma; "" otherwise (nothing better than the generic kernels).
std::string matching_blas_core(const std::vector<std::string>& flags);

// Whether a core name is one of OpenBLAS's kernel sets with AVX2 or AVX-512 GEMMs (Haswell, Zen,
// SkylakeX, Cooperlake, SapphireRapids); any other is generic for a CPU that has them.
bool blas_core_is_vectorised(const std::string& core);

// The warning for a core on a CPU with these flags: names the OPENBLAS_CORETYPE to set when the core is
// generic but the CPU has AVX2 or AVX-512; "" when there is nothing to say.
std::string blas_core_warning(const std::string& core, const std::vector<std::string>& flags);

// Writes blas_core_warning once per instance (the first call that has something to say); later calls
// write nothing. Returns whether this call wrote.
class BlasCoreWarning {
 public:
  bool warn(const std::string& core, const std::vector<std::string>& flags, std::ostream& os);

 private:
  std::once_flag once_;
};

// The process-wide check, on stderr, at most once per process: called by the BLAS-using ops on their
// first call and by the examples' header; cheap after the first call.
void warn_if_generic_blas();

}  // namespace tapegrad
