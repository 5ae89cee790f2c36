// main() of every bench executable: BENCHMARK_MAIN, plus the BLAS the figures depend on, recorded in
// the benchmark context (console header and the JSON "context" that scripts/bench.sh reads).
#include <cblas.h>

#include <benchmark/benchmark.h>

#include <cstdlib>
#include <string>

#include "tapegrad/autograd/tensor.hpp"
#include "tapegrad/ops/parallel.hpp"

#ifndef TAPEGRAD_BENCH_BUILD_TYPE
#define TAPEGRAD_BENCH_BUILD_TYPE "unknown"
#endif

int main(int argc, char** argv) {
  tapegrad::tune_malloc();
  benchmark::AddCustomContext("openblas_corename", openblas_get_corename());
  benchmark::AddCustomContext("openblas_num_threads", std::to_string(openblas_get_num_threads()));
  benchmark::AddCustomContext("openblas_config", openblas_get_config());
  // The engine's thread count at start (ops/parallel.hpp; scripts/bench.sh's OMP_NUM_THREADS=1 makes it 1).
  // bench_threads sets its own per benchmark.
  benchmark::AddCustomContext("tapegrad_num_threads", std::to_string(tapegrad::num_threads()));
  const char* env = std::getenv("OPENBLAS_NUM_THREADS");
  benchmark::AddCustomContext("OPENBLAS_NUM_THREADS", env ? env : "(unset)");
  // OpenBLAS 0.3.21 does not know every CPU (this machine's Xeon, family 6 model 207, falls back to the
  // SSE3 "Prescott" kernels); OPENBLAS_CORETYPE=SkylakeX overrides the detection.
  const char* core = std::getenv("OPENBLAS_CORETYPE");
  benchmark::AddCustomContext("OPENBLAS_CORETYPE", core ? core : "(unset)");
  benchmark::AddCustomContext("tapegrad_build_type", TAPEGRAD_BENCH_BUILD_TYPE);
  // Threads of OpenMP (LibTorch's intra-op pool) and the malloc settings, the same for every
  // implementation in the process.
  for (const char* var : {"OMP_NUM_THREADS", "MALLOC_ARENA_MAX", "GLIBC_TUNABLES"}) {
    const char* v = std::getenv(var);
    benchmark::AddCustomContext(var, v ? v : "(unset)");
  }
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
