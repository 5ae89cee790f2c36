// Data-parallel LSTM training steps over MPI (tapegrad::dist): steps per second at the global batch B,
// each of the `size` ranks stepping on B / size samples, and where a step's time goes.
//
//   OPENBLAS_NUM_THREADS=1 ./build/bench/bench_dist                 one process
//   OPENBLAS_NUM_THREADS=1 mpirun -np 2 ./build/bench/bench_dist    two (docs/distributed.md has the flags)
//
// A plain timing program, not Google Benchmark: every rank must run the same number of steps in lock
// step (each step has a collective), which Google Benchmark's adaptive iteration counts do not guarantee
// across processes. The step is bench/nn/rnn_problem.hpp's LSTM step (forward over T steps, loss
// sum(h * R), backward, SGD) with dist::allreduce_gradients on the weights (W_x, W_h, b) before the update.
//
// Two measurements per repetition, medians over repetitions:
//  - steps/s: `steps` plain data-parallel steps, timed as a whole (what a user gets);
//  - the breakdown: the same steps with a barrier before the allreduce, so that the allreduce's own time
//    (moving and summing the gradient buffer) is told apart from waiting for the slower rank (imbalance,
//    or a rank descheduled on a loaded machine): medians per step on rank 0, and the allreduce's share of
//    the step (of the sum of the medians);
//  - the allreduce alone: repeated with nothing between the calls (the transfer's own cost).
#include <cblas.h>

#include <tapegrad/nn/distributed/dist.hpp>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "nn/rnn_problem.hpp"

using namespace tapegrad;
using bench::Cell;

namespace {

double now() { return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count(); }

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  const std::size_t n = v.size();
  return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

long option(int argc, char** argv, const std::string& name, long def) {
  for (int i = 1; i + 1 < argc; ++i)
    if (argv[i] == "--" + name) return std::strtol(argv[i + 1], nullptr, 10);
  return def;
}

// Per-step times of each part of the instrumented step, over all repetitions.
struct Breakdown {
  std::vector<double> compute, wait, allreduce, update;
};

int run(int argc, char** argv) {
  const int rank = dist::rank(), size = dist::size();
  const std::size_t T = std::size_t(option(argc, argv, "T", 20));
  const std::size_t I = std::size_t(option(argc, argv, "I", 128));
  const std::size_t H = std::size_t(option(argc, argv, "H", 256));
  const long steps = option(argc, argv, "steps", 20), reps = option(argc, argv, "reps", 7);
  const long warmup = option(argc, argv, "warmup", 3);
  std::vector<std::size_t> batches;
  const long only_b = option(argc, argv, "B", 0);
  if (only_b > 0) batches = {std::size_t(only_b)};
  else batches = {32, 128};

  if (rank == 0) {
    const char* threads = std::getenv("OPENBLAS_NUM_THREADS");
    std::printf("bench_dist: %d process(es); LSTM I=%zu H=%zu T=%zu; %ld steps x %ld repetitions (+%ld warm-up); "
                "OpenBLAS core %s, OPENBLAS_NUM_THREADS=%s\n",
                size, I, H, T, steps, reps, warmup, openblas_get_corename(), threads ? threads : "(unset)");
    std::printf("%-4s %-6s %-8s %10s %13s %10s %12s %10s %10s %10s %10s %10s %10s\n", "np", "B", "B/rank", "steps/s",
                "(min-max)", "samples/s", "compute ms", "update ms", "reduce ms", "wait ms", "reduce %", "alone ms", "MB/reduce");
  }
  for (const std::size_t B : batches) {
    if (B % std::size_t(size) != 0) {
      if (rank == 0) std::printf("B = %zu does not split over %d ranks: skipped\n", B, size);
      continue;
    }
    const bench::Problem problem(Cell::lstm, {T, B / std::size_t(size), I, H});
    bench::EngineModel model(problem);
    const std::vector<Tensor> weights = model.opt->parameters();
    dist::broadcast_parameters(weights);
    std::size_t bytes = 0;
    for (const Tensor& w : weights) bytes += w.numel() * dtype_size(w.dtype());

    auto plain_step = [&] {
      model.forward_backward();
      dist::allreduce_gradients(weights);
      model.opt->step();
      model.opt->zero_grad();
      model.x.zero_grad();
      model.h0.zero_grad();
      model.c0.zero_grad();
    };
    for (long i = 0; i < warmup; ++i) plain_step();

    std::vector<double> rate;
    Breakdown b;
    for (long r = 0; r < reps; ++r) {
      dist::barrier();
      const double t0 = now();
      for (long i = 0; i < steps; ++i) plain_step();
      // The slowest rank sets the pace: take the longest time of any rank.
      double elapsed = now() - t0;
      std::vector<double> all(std::size_t(size), 0.0);
      all[std::size_t(rank)] = elapsed;
      dist::allreduce_sum(all);
      elapsed = *std::max_element(all.begin(), all.end());
      rate.push_back(double(steps) / elapsed);

      for (long i = 0; i < steps; ++i) {
        double t = now();
        model.forward_backward();
        double u = now();
        b.compute.push_back(u - t);
        dist::barrier();
        t = now();
        b.wait.push_back(t - u);
        dist::allreduce_gradients(weights);
        u = now();
        b.allreduce.push_back(u - t);
        model.opt->step();
        model.opt->zero_grad();
        model.x.zero_grad();
        model.h0.zero_grad();
        model.c0.zero_grad();
        b.update.push_back(now() - u);
      }
    }
    // The allreduce alone, both ranks ready and running (no compute between calls): the cost of moving
    // and summing the buffer, without the scheduling delay a rank pays after a long compute phase on a
    // machine with more runnable processes than cores.
    std::vector<double> alone;
    for (long i = 0; i < steps * reps; ++i) {
      dist::barrier();
      const double t = now();
      dist::allreduce_gradients(weights);
      alone.push_back(now() - t);
    }
    // Medians per step (robust to the load spikes of a shared machine), in ms; the allreduce's share is
    // of the sum of the medians.
    const double compute = 1e3 * median(b.compute), wait = 1e3 * median(b.wait);
    const double allreduce = 1e3 * median(b.allreduce), update = 1e3 * median(b.update);
    const double share = 100.0 * allreduce / (compute + wait + allreduce + update);
    if (rank == 0) {
      const double med = median(rate);
      std::printf("%-4d %-6zu %-8zu %10.2f %6.2f-%-6.2f %10.0f %12.2f %10.2f %10.2f %10.2f %9.1f%% %10.3f %10.2f\n", size, B,
                  B / std::size_t(size), med, *std::min_element(rate.begin(), rate.end()),
                  *std::max_element(rate.begin(), rate.end()), med * double(B), compute, update, allreduce, wait,
                  share, 1e3 * median(alone), double(bytes) / 1e6);
      std::fflush(stdout);
    }
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  dist::init(&argc, &argv);
  const int rc = dist::guarded([&] { return run(argc, argv); });
  dist::finalize();
  return rc;
}
