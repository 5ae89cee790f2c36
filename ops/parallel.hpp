// Intra-op threads: how many cores one op may use. One setting drives both the engine's own kernels
// (elementwise, activations, reductions, the fused recurrent cells: split across OpenMP threads above a
// size threshold) and OpenBLAS's threads for the products.
//
// The count is read once, at first use, from the environment: TAPEGRAD_NUM_THREADS, else OMP_NUM_THREADS,
// else OPENBLAS_NUM_THREADS, else 1. set_num_threads overrides it for the whole process. One thread unless
// asked, because two thread pools (OpenBLAS's and OpenMP's) busy-wait between calls: with libgomp's default
// wait policy, 2 threads on this 2-core machine made an LSTM step 0.86x (B = 128, H = 512) and 0.39x
// (B = 32, H = 64) the speed of 1; with OMP_WAIT_POLICY=passive (read by libgomp when it loads, so it must
// be in the environment) 1.77x and 1.0x. Ask for threads with OMP_WAIT_POLICY=passive on a machine as
// small or as shared as that. Results are bitwise identical run to run at a fixed count (static partitions,
// reductions combined in a fixed order); between counts they agree to rounding.
#pragma once

namespace tapegrad {

// Sets the thread count (n >= 1; n < 1 is an Error) for the engine's kernels and OpenBLAS's.
void set_num_threads(int n);
// The thread count in force (reads the environment on the first call).
int num_threads();

}  // namespace tapegrad
