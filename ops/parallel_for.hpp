// Internal: the engine kernels' one parallel loop (not installed). Splits [0, n) into one contiguous block
// per thread (static: the same split every run at a given thread count), and only when the work is large
// enough that an OpenMP fork pays for itself; below that, and at one thread, the loop runs on the calling
// thread with no OpenMP call at all. Inside a parallel region a kernel touches raw buffers only (the tape
// is the calling thread's).
#pragma once

#include <algorithm>
#include <cstddef>
#include <vector>

#ifdef _OPENMP
#include <omp.h>
#endif

#include "tapegrad/ops/parallel.hpp"

namespace tapegrad::parallel {

// Elements (read + written, roughly) below which a kernel stays on one thread: the default of min_work().
// Measured on the quiet 2-core machine with OMP_WAIT_POLICY=passive (bench_nn's BM_threads_grain, tanh
// forward + backward, 6 elements of work per value): waking the second thread costs about 80 us, so a
// split pays from about 500k values (1.37x) and loses below 130k (0.77x). Hence 2^21 elements of work.
inline constexpr std::size_t kMinWork = std::size_t(1) << 21;
// The threshold in force, and a way to change it (for benches that measure it; 0 splits every loop of two
// or more items at the thread count).
std::size_t min_work();
void set_min_work(std::size_t work);

// The count num_threads() starts from: TAPEGRAD_NUM_THREADS, else OMP_NUM_THREADS, else
// OPENBLAS_NUM_THREADS (the first positive integer of each), else the cores this process may run on.
int threads_from_environment();

// Multiply-adds of a BLAS call (m n k) below which OpenBLAS runs it on one thread. OpenBLAS 0.3.21's own
// cut-offs are lower (gemm 262k, gemv 9k): a threaded 64 x 256 gemv (an LSTM step at batch 1, H = 64) takes
// longer than the whole product on one core.
inline constexpr std::size_t kMinBlasWork = std::size_t(1) << 20;

// Sets OpenBLAS's thread count for the next call of `macs` multiply-adds: num_threads() above kMinBlasWork,
// else 1 (ops/blas.hpp calls it before every product; a no-op when the count is already right).
void blas_threads_for(std::size_t macs);

// Threads for a kernel of `work` elements split into n items: 1 below kMinWork, never more than n.
int threads_for(std::size_t n, std::size_t work);

// f(begin, end) over [0, n) in per-thread blocks; `work` is the kernel's total size in elements. Blocks start
// at multiples of `align` items (so vector lanes see the same splits as on one thread).
template <class F> void for_range(std::size_t n, std::size_t work, F&& f, std::size_t align = 1) {
  const int t = threads_for(n, work);
  if (t <= 1) {
    if (n) f(std::size_t(0), n);
    return;
  }
#ifdef _OPENMP
#pragma omp parallel num_threads(t)
  {
    const std::size_t nt = std::size_t(omp_get_num_threads()), id = std::size_t(omp_get_thread_num());
    const std::size_t units = (n + align - 1) / align;
    const std::size_t b = std::min(n, units * id / nt * align), e = std::min(n, units * (id + 1) / nt * align);
    if (b < e) f(b, e);
  }
#else
  f(std::size_t(0), n);
#endif
}

// The sum of reduce(b, e) over fixed blocks [b, e) of kReduceBlock items, the blocks' results added in
// block order: the blocks are the same at every thread count, so is the value (bit for bit). Up to one
// block, simply reduce(0, n).
inline constexpr std::size_t kReduceBlock = 16384;
template <class T, class R> T reduce_blocks(std::size_t n, R reduce) {
  if (n <= kReduceBlock) return reduce(std::size_t(0), n);
  const std::size_t blocks = (n + kReduceBlock - 1) / kReduceBlock;
  std::vector<T> part(blocks);
  for_range(blocks, n, [&](std::size_t b, std::size_t e) {
    for (std::size_t k = b; k < e; ++k) part[k] = reduce(k * kReduceBlock, std::min(n, (k + 1) * kReduceBlock));
  });
  T s = part[0];
  for (std::size_t k = 1; k < blocks; ++k) s += part[k];
  return s;
}

}  // namespace tapegrad::parallel
