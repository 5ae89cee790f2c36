// Data-parallel training over MPI (optional: the tapegrad::dist library, built when CMake finds MPI).
//
// Each process (rank) holds a full copy of the model and computes gradients on its share of the global
// batch; allreduce_gradients() averages the gradients over the ranks, so every rank applies the same
// update and the copies stay identical (Horovod's and PyTorch DistributedDataParallel's scheme):
//
//   dist::init(&argc, &argv);
//   dist::broadcast_parameters(model);                       // rank 0's initial weights everywhere
//   nn::DistributedSampler sampler = dist::sampler(n_train, seed);  // this rank's shard of each epoch
//   for each epoch: sampler.set_epoch(e); for each local batch of B / dist::size() samples:
//     opt.zero_grad(); backward(mean loss over the local batch);
//     dist::allreduce_gradients(model);                      // average over ranks
//     opt.step();
//   dist::finalize();
//
// With equal local batches and a loss that is a mean over the batch, the averaged gradient is the
// gradient of the mean loss over the global (concatenated) batch: the same step as one process on that
// batch, up to rounding (the sums are taken in another order).
//
// Errors: a failed MPI call, or a misuse (not initialised, parameter lists that differ between ranks),
// raises tapegrad::Error("dist: ... (rank r of n)"). MPI_COMM_WORLD returns errors (MPI_ERRORS_RETURN)
// instead of aborting. A rank that fails while the others wait in a collective would hang the job: run
// the training body through dist::guarded() (or call dist::abort), which ends every rank (MPI_Abort)
// with the failing rank's message.
//
// Threads: call these from one thread (MPI is initialised with MPI_THREAD_FUNNELED).
// This header does not include <mpi.h>.
#pragma once

#include <cstdint>
#include <exception>
#include <string>
#include <vector>

#include "tapegrad/autograd/tensor.hpp"
#include "tapegrad/nn/data/data.hpp"

namespace tapegrad::nn {
class Module;
}

namespace tapegrad::dist {

// MPI_Init_thread (FUNNELED) unless MPI is already initialised (then it only sets up error handling).
// Run alone (no mpirun), the process is a world of one rank. argc/argv may be null.
void init(int* argc = nullptr, char*** argv = nullptr);
// MPI_Finalize, after a barrier; a no-op when init() did not initialise MPI or it is already finalised.
void finalize();
bool initialized();  // init() ran (or MPI was initialised by someone else) and finalize() has not

int rank();  // this process's rank in MPI_COMM_WORLD, 0..size()-1
int size();  // the number of processes
void barrier();

// Averages the gradients of `params` over all ranks, in place: g = (sum over ranks of g_r) / size().
// One MPI_Allreduce (SUM) per dtype present (float32, float64) over one contiguous buffer that holds
// every gradient of that dtype; the buffers are kept and reused from step to step.
// Before it, one small allreduce checks that every rank passes the same list (number of parameters,
// their shapes and dtypes): a mismatch raises the same Error on every rank, instead of a hang or a
// garbled sum. A parameter without a gradient (no backward reached it) counts as zeros: when some rank
// has a gradient for it, every rank gets the average (ranks without one get a gradient buffer); when no
// rank has one, it stays undefined everywhere, so optimizers skip it as they would in one process.
// Parameters must be owned leaves (module.parameters(), optimizer.parameters()).
void allreduce_gradients(const std::vector<Tensor>& params);
void allreduce_gradients(const nn::Module& module);

// Copies the values of `params` on rank `root` to every other rank (start of training: every rank must
// begin from the same weights). The same list check as allreduce_gradients.
void broadcast_parameters(const std::vector<Tensor>& params, int root = 0);
void broadcast_parameters(const nn::Module& module, int root = 0);

// Small collectives on plain numbers (metrics, checksums): element-wise sum over ranks, in place; and
// rank root's values copied to every rank (every rank passes the same length).
void allreduce_sum(std::vector<double>& values);
double allreduce_sum(double value);
void broadcast(std::vector<double>& values, int root = 0);

// This process's nn::DistributedSampler (nn/data/data.hpp): its shard of each epoch, rank() of size().
nn::DistributedSampler sampler(std::size_t n, std::uint64_t seed, bool shuffle = true, bool drop_last = false);

// Ends the whole job: prints "dist: rank r of n: <why>" to stderr and calls MPI_Abort(MPI_COMM_WORLD),
// so ranks blocked in a collective do not wait forever. Without MPI initialised: prints and std::exit.
[[noreturn]] void abort(const std::string& why, int exit_code = 1);

// Runs body(); an exception escaping it ends the job through abort() with the exception's message.
// Use it around a training loop: int main(...) { dist::init(&argc, &argv); return dist::guarded([&] {...}); }
template <class Body> auto guarded(Body&& body) -> decltype(body()) {
  try {
    return body();
  } catch (const std::exception& e) {
    abort(e.what());
  } catch (...) {
    abort("unknown exception");
  }
}

}  // namespace tapegrad::dist
