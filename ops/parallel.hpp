// Intra-op threads: how many cores one op may use. One setting drives both the engine's own kernels
// (elementwise, activations, reductions, the fused recurrent cells: split across OpenMP threads above a
// size threshold) and OpenBLAS's threads for the products.
//
// The count is read once, at first use, from the environment: TAPEGRAD_NUM_THREADS, else OMP_NUM_THREADS,
// else OPENBLAS_NUM_THREADS, else the number of cores the process may run on. set_num_threads overrides it
// for the whole process. Results are bitwise identical run to run at a fixed count (static partitions,
// reductions combined in a fixed order); between counts they agree to rounding.
#pragma once

namespace tapegrad {

// Sets the thread count (n >= 1; n < 1 is an Error) for the engine's kernels and OpenBLAS's.
void set_num_threads(int n);
// The thread count in force (reads the environment on the first call).
int num_threads();

}  // namespace tapegrad
