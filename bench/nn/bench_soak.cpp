// Soak bench (not in CI): many LSTM training steps in one process, the resident set size (RSS, from
// /proc/self/statm) sampled as it goes. After warm-up (the tape's arena, the optimizer's state and the
// allocator's pools reach their steady size) RSS must stay flat: growth means a leak.
//
//   bench_soak [--steps N] [--samples K]     defaults: 1,000,000 steps, 100 samples
// Prints the samples and a last line "SOAK | steps ... | rss after warm-up ... | growth ...". Exits 1
// when RSS grew by more than 1 MiB between the end of warm-up (10% of the steps) and the end.
#include <cblas.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <string>
#include <vector>

#include <tapegrad/autograd/tape.hpp>
#include <tapegrad/nn/models/linear.hpp>
#include <tapegrad/nn/training/optim.hpp>
#include <tapegrad/nn/models/rnn.hpp>
#include <tapegrad/ops/loss.hpp>

using namespace tapegrad;

namespace {

double rss_mib() {
  std::ifstream statm("/proc/self/statm");
  long pages_total = 0, pages_resident = 0;
  statm >> pages_total >> pages_resident;
  return double(pages_resident) * double(sysconf(_SC_PAGESIZE)) / (1024.0 * 1024.0);
}

struct Model : nn::Module {
  Generator gen;
  nn::LSTMCell cell;
  nn::Linear head;
  Model() : gen(7), cell(4, 16, gen), head(16, 1, gen) {
    register_module("cell", cell);
    register_module("head", head);
  }
};

}  // namespace

int main(int argc, char** argv) {
  long steps = 1000000, samples = 100;
  for (int i = 1; i + 1 < argc; i += 2) {
    if (!std::strcmp(argv[i], "--steps")) steps = std::atol(argv[i + 1]);
    else if (!std::strcmp(argv[i], "--samples")) samples = std::atol(argv[i + 1]);
  }
  if (steps < 10 || samples < 2) {
    std::fprintf(stderr, "usage: bench_soak [--steps N >= 10] [--samples K >= 2]\n");
    return 2;
  }
  std::printf("openblas: %s, OPENBLAS_NUM_THREADS=%s\n", openblas_get_corename(),
              std::getenv("OPENBLAS_NUM_THREADS") ? std::getenv("OPENBLAS_NUM_THREADS") : "(unset)");
  // An LSTM (I = 4, H = 16) over T = 8 steps, batch 4, a linear head on the last state, Adam; a new
  // random batch every step (drawn outside the graph, as a data loader would).
  Model m;
  nn::Adam opt(m.parameters(), 1e-3);
  Generator data(11);
  const long every = steps / samples, warmup = steps / 10;
  double rss_warm = 0, rss_max = 0, loss_sum = 0;
  const auto t0 = std::chrono::steady_clock::now();
  std::printf("%10s %10s %12s %10s\n", "step", "rss_MiB", "loss(avg)", "seconds");
  for (long s = 1; s <= steps; ++s) {
    const Tensor x = randn({8, 4, 4}, data), y = randn({4, 1}, data);
    opt.zero_grad();
    const Tensor loss = mse_loss(m.head(nn::run(m.cell, x).last.h), y);
    loss_sum += loss.item();
    backward(loss);
    opt.step();
    if (s % every == 0) {
      const double rss = rss_mib();
      const double sec = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      std::printf("%10ld %10.2f %12.5f %10.1f\n", s, rss, loss_sum / double(every), sec);
      std::fflush(stdout);
      loss_sum = 0;
      if (s >= warmup && rss_warm == 0) rss_warm = rss;
      if (s >= warmup && rss > rss_max) rss_max = rss;
    }
  }
  const double rss_end = rss_mib();
  const double sec = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  const double growth = rss_max - rss_warm;
  std::printf("SOAK | steps %ld in %.1f s (%.1f us/step) | rss after warm-up (step %ld) %.2f MiB | end %.2f MiB | "
              "max %.2f MiB | growth %.2f MiB | %s\n",
              steps, sec, 1e6 * sec / double(steps), warmup, rss_warm, rss_end, rss_max, growth,
              growth <= 1.0 ? "PASS (no growth beyond 1 MiB)" : "FAIL (RSS grew)");
  return growth <= 1.0 ? 0 : 1;
}
