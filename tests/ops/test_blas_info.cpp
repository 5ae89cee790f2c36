// ops/blas_info: which OPENBLAS_CORETYPE matches a CPU, when the core is generic, and the warning that
// says so (once). The mapping is fed flag sets and core names, so it is tested on any machine.
#include <boost/test/unit_test.hpp>

#include <algorithm>
#include <sstream>
#include <string>
#include <vector>

#include "tapegrad/ops/blas_info.hpp"

using namespace tapegrad;

namespace {
const std::vector<std::string> kSse{"fpu", "sse", "sse2", "sse3", "ssse3", "sse4_1", "sse4_2"};
const std::vector<std::string> kAvx{"fpu", "sse2", "sse4_2", "avx"};
const std::vector<std::string> kAvx2{"fpu", "sse2", "avx", "avx2", "fma"};
const std::vector<std::string> kAvx512{"fpu", "sse2", "avx", "avx2", "fma", "avx512f", "avx512dq", "avx512bw", "avx512vl"};
}  // namespace

BOOST_AUTO_TEST_SUITE(blas_info)

BOOST_AUTO_TEST_CASE(matching_core_from_flags) {
  BOOST_TEST(matching_blas_core(kAvx512) == "SkylakeX");
  BOOST_TEST(matching_blas_core(kAvx2) == "Haswell");
  // avx512f alone (Knights Landing: no bw/dq/vl) is not enough for the SkylakeX kernels.
  BOOST_TEST(matching_blas_core({"avx2", "fma", "avx512f"}) == "Haswell");
  BOOST_TEST(matching_blas_core({"avx2"}) == "");  // no FMA
  BOOST_TEST(matching_blas_core(kAvx) == "");
  BOOST_TEST(matching_blas_core(kSse) == "");
  BOOST_TEST(matching_blas_core({}) == "");
}

BOOST_AUTO_TEST_CASE(vectorised_cores) {
  for (const char* c : {"Haswell", "Zen", "SkylakeX", "Cooperlake", "SapphireRapids"}) BOOST_TEST(blas_core_is_vectorised(c));
  for (const char* c : {"Prescott", "Core2", "Nehalem", "Sandybridge", "Atom", "unknown", ""})
    BOOST_TEST(!blas_core_is_vectorised(c));
}

BOOST_AUTO_TEST_CASE(warning_names_the_core_to_set) {
  const std::string w512 = blas_core_warning("Prescott", kAvx512);
  BOOST_TEST(w512.find("OPENBLAS_CORETYPE=SkylakeX") != std::string::npos, w512);
  BOOST_TEST(w512.find("'Prescott'") != std::string::npos, w512);
  BOOST_TEST(w512.find("AVX-512") != std::string::npos, w512);
  const std::string w2 = blas_core_warning("Prescott", kAvx2);
  BOOST_TEST(w2.find("OPENBLAS_CORETYPE=Haswell") != std::string::npos, w2);
  BOOST_TEST(blas_core_warning("Sandybridge", kAvx2).find("OPENBLAS_CORETYPE=Haswell") != std::string::npos);
}

BOOST_AUTO_TEST_CASE(no_warning_when_nothing_to_gain) {
  BOOST_TEST(blas_core_warning("Haswell", kAvx512) == "");  // AVX2 kernels chosen on purpose: fine
  BOOST_TEST(blas_core_warning("SkylakeX", kAvx512) == "");
  BOOST_TEST(blas_core_warning("Haswell", kAvx2) == "");
  BOOST_TEST(blas_core_warning("Zen", kAvx2) == "");
  BOOST_TEST(blas_core_warning("Prescott", kSse) == "");  // the CPU has nothing better
  BOOST_TEST(blas_core_warning("Sandybridge", kAvx) == "");
}

BOOST_AUTO_TEST_CASE(warns_once) {
  BlasCoreWarning w;
  std::ostringstream os;
  BOOST_TEST(!w.warn("Haswell", kAvx2, os));  // nothing to say does not use up the one warning
  BOOST_TEST(os.str() == "");
  BOOST_TEST(w.warn("Prescott", kAvx512, os));
  const std::string first = os.str();
  BOOST_TEST(first == blas_core_warning("Prescott", kAvx512));
  BOOST_TEST(!w.warn("Prescott", kAvx512, os));
  BOOST_TEST(!w.warn("Prescott", kAvx2, os));
  BOOST_TEST(os.str() == first);
  BlasCoreWarning other;  // a fresh instance (a fresh process) warns again
  std::ostringstream os2;
  BOOST_TEST(other.warn("Core2", kAvx2, os2));
  BOOST_TEST(os2.str().find("OPENBLAS_CORETYPE=Haswell") != std::string::npos);
}

BOOST_AUTO_TEST_CASE(this_process) {
  const std::string core = blas_core();
  BOOST_TEST(!core.empty());
  BOOST_TEST(blas_summary().find(core) != std::string::npos);
  // /proc/cpuinfo on Linux x86-64 lists at least the SSE2 every x86-64 CPU has.
#if defined(__x86_64__)
  const auto flags = cpu_flags();
  BOOST_TEST((std::find(flags.begin(), flags.end(), "sse2") != flags.end()));
#endif
  warn_if_generic_blas();  // callable any number of times
  warn_if_generic_blas();
}

BOOST_AUTO_TEST_SUITE_END()
