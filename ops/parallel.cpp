// The thread setting (see parallel.hpp). Includes cblas.h (openblas_set_num_threads), no xtensor.
#include "tapegrad/ops/parallel.hpp"

#include <cblas.h>

#include <atomic>
#include <cstdlib>
#include <mutex>
#include <string>

#include "tapegrad/autograd/shape.hpp"
#include "tapegrad/ops/parallel_for.hpp"

namespace tapegrad {

namespace {

std::atomic<int> g_threads{0};  // 0: not yet read from the environment
std::atomic<int> g_blas{0};     // OpenBLAS's thread count as last set here
std::atomic<std::size_t> g_min_work{parallel::kMinWork};
std::mutex g_mutex;

int from_env(const char* var) {
  const char* v = std::getenv(var);
  if (!v || !*v) return 0;
  char* end = nullptr;
  const long n = std::strtol(v, &end, 10);  // OMP_NUM_THREADS may be a list ("4,2"): its first entry
  return (end != v && n >= 1 && n <= 4096) ? int(n) : 0;
}

void apply(int n) {  // under g_mutex
  openblas_set_num_threads(n);
  g_blas.store(n, std::memory_order_relaxed);
  g_threads.store(n, std::memory_order_release);
}

}  // namespace

void set_num_threads(int n) {
  if (n < 1) throw Error("set_num_threads: the thread count must be >= 1, got " + std::to_string(n));
  std::lock_guard<std::mutex> lock(g_mutex);
  apply(n);
}

int num_threads() {
  if (const int n = g_threads.load(std::memory_order_acquire)) return n;
  std::lock_guard<std::mutex> lock(g_mutex);
  if (const int n = g_threads.load(std::memory_order_relaxed)) return n;
  const int n = parallel::threads_from_environment();
  apply(n);
  return n;
}

namespace parallel {

int threads_from_environment() {
  int n = from_env("TAPEGRAD_NUM_THREADS");
  if (!n) n = from_env("OMP_NUM_THREADS");
  if (!n) n = from_env("OPENBLAS_NUM_THREADS");
  return n ? n : 1;  // opt-in: see parallel.hpp
}

void blas_threads_for(std::size_t macs) {
  const int t = num_threads();
  const int want = macs >= kMinBlasWork ? t : 1;
  // Process-wide, like OpenBLAS's own setting: two threads issuing products at once may see each other's
  // count (a matter of speed only: OpenBLAS splits each call by the count it read at the call's start).
  if (g_blas.load(std::memory_order_relaxed) != want) {
    openblas_set_num_threads(want);
    g_blas.store(want, std::memory_order_relaxed);
  }
}

std::size_t min_work() { return g_min_work.load(std::memory_order_relaxed); }
void set_min_work(std::size_t work) { g_min_work.store(work, std::memory_order_relaxed); }

int threads_for(std::size_t n, std::size_t work) {
  const std::size_t least = g_min_work.load(std::memory_order_relaxed);
  if (work < least || n < 2) return 1;
  const int t = num_threads();
  if (t <= 1) return 1;
#ifdef _OPENMP
  if (omp_in_parallel()) return 1;  // a kernel called from a user's own parallel region: no nesting
#endif
  // At least half the threshold's elements per thread.
  const std::size_t by_work = least < 2 ? work : std::max<std::size_t>(1, work / (least / 2));
  return int(std::min<std::size_t>({std::size_t(t), n, by_work}));
}

}  // namespace parallel

}  // namespace tapegrad
