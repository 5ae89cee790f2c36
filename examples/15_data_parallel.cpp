// Data-parallel training over MPI (tapegrad::dist): the LSTM of example 07 on the adding problem, trained
// by several processes that each hold a copy of the model. Each epoch, a DistributedSampler deals every
// rank its shard of one shuffled permutation of the training set; at each step every rank computes the
// gradient of its B / size samples, dist::allreduce_gradients averages the gradients (one MPI_Allreduce
// over one buffer), and every rank applies the same Adam step, so the copies stay identical.
//
// The sampler interleaves the permutation (rank r takes positions r, r + size, ...), so the local
// batches of step j together are exactly the global batch of step j of a one-process run with the same
// seed: 1 and 2 processes take the same steps, up to float32 rounding of the sums.
//
//   ./build/examples/15_data_parallel                         one process (global batch 64)
//   mpirun -np 2 ./build/examples/15_data_parallel            two processes, 32 samples each per step
//   (as root: --allow-run-as-root; fewer cores than ranks: --oversubscribe; see docs/distributed.md)
//
// The adding problem (examples/common/data.hpp): T steps of (value, marker); the target is the sum of the
// two marked values. Predicting the mean gives MSE = 1/6 = 0.167. Target: test MSE < 0.01, whatever the
// number of processes. The loop is nn::Trainer's: its after_backward hook averages the gradients over
// the ranks, then it clips and steps; its on_step callback logs the global batch's loss; the test MSE is its
// evaluation at each epoch's end (under NoGrad, summed over ranks). Only rank 0 prints and writes files.
#include <tapegrad/nn/distributed/dist.hpp>
#include <tapegrad/tapegrad.hpp>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <string>
#include <vector>

#include "common/data.hpp"
#include "common/example.hpp"

using namespace tapegrad;

namespace {

double now() { return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count(); }

// The model of example 07: an LSTM read out by a linear layer from its last state.
struct Net : nn::Module {
  nn::LSTMCell cell;
  nn::Linear out;
  Net(std::size_t hidden, Generator& gen) : cell(2, hidden, gen), out(hidden, 1, gen) {
    register_module("cell", cell);
    register_module("out", out);
  }
  Tensor operator()(const Tensor& x) const { return out(nn::run(cell, x).last.h); }
};

// A data set of n adding-problem sequences kept as plain values, so any subset can be batched.
struct Data {
  std::size_t T = 0, n = 0;
  std::vector<double> x, d;  // x (T, n, 2), d (n)
  Data(std::size_t T_, std::size_t n_, Generator& gen) : T(T_), n(n_) {
    example::AddingBatch a = example::adding_batch(T, n, gen);
    x = a.x.to_vector();
    d = a.d.to_vector();
  }
  // The samples `idx` (in order) as x (T, |idx|, 2) and d (|idx|, 1).
  std::pair<Tensor, Tensor> batch(const std::size_t* idx, std::size_t count) const {
    std::vector<double> bx(T * count * 2), bd(count);
    for (std::size_t t = 0; t < T; ++t)
      for (std::size_t b = 0; b < count; ++b)
        for (std::size_t c = 0; c < 2; ++c) bx[(t * count + b) * 2 + c] = x[(t * n + idx[b]) * 2 + c];
    for (std::size_t b = 0; b < count; ++b) bd[b] = d[idx[b]];
    return {from_values(bx, {T, count, 2}), from_values(bd, {count, 1})};
  }
};

int run(const example::Args& args) {
  const bool quick = args.quick();
  const std::size_t T = std::size_t(args.integer("T", 50));
  const std::size_t H = std::size_t(args.integer("hidden", 32));
  const std::size_t B = std::size_t(args.integer("batch", 64));
  const std::size_t N = std::size_t(args.integer("train", quick ? 6400 : 12800));
  const long epochs = args.integer("epochs", quick ? 6 : 15);
  const double lr = args.real("lr", 0.01);
  const double clip = args.real("clip", 1.0);
  const double target = args.real("target", 0.01);
  const std::uint64_t seed = args.seed();
  const int rank = dist::rank(), size = dist::size();
  const std::string out = rank == 0 ? args.out_dir() : args.str("out", "out");  // only rank 0 writes
  args.check_unused();
  auto say = [rank](const std::string& s) {
    if (rank == 0) {
      std::printf("%s\n", s.c_str());
      std::fflush(stdout);
    }
  };
  if (B == 0 || B % std::size_t(size) != 0)
    throw Error("15_data_parallel: the global batch " + std::to_string(B) + " does not split evenly over " +
                std::to_string(size) + " processes (use --batch a multiple of " + std::to_string(size) + ")");
  const std::size_t local = B / std::size_t(size);

  // Every rank draws the same data (same seeds); each uses only its shard of it.
  Generator data_gen(seed + 500), test_gen(seed + 1000);
  const Data train(T, N, data_gen);
  const Data test(T, 1000, test_gen);

  // Each rank draws its own initial weights; the broadcast makes rank 0's everyone's.
  Generator init_gen(seed + 7919 * std::uint64_t(rank));
  Net net(H, init_gen);
  dist::broadcast_parameters(net);
  const std::vector<Tensor> params = net.parameters();
  nn::Adam opt(params, lr);

  nn::DistributedSampler sampler = dist::sampler(N, seed);  // the one shuffle of nn::BatchIterator too
  const std::size_t steps_per_epoch = sampler.num_samples() / local;  // a last partial batch is dropped
  if (steps_per_epoch == 0 || epochs < 1)
    throw Error("15_data_parallel: " + std::to_string(N) + " training sequences over " + std::to_string(size) +
                " processes leave " + std::to_string(sampler.num_samples()) + " per rank, fewer than the local batch " +
                std::to_string(local) + " (or --epochs " + std::to_string(epochs) + " < 1)");
  const long steps = epochs * long(steps_per_epoch);
  say("adding problem: T = " + std::to_string(T) + ", " + std::to_string(N) + " training sequences, target: test MSE < " +
      example::fmt(target) + " (predicting the mean: 0.167)");
  say("data parallel: " + std::to_string(size) + " process(es), global batch " + std::to_string(B) + " = " +
      std::to_string(size) + " x " + std::to_string(local) + "; each rank " + std::to_string(sampler.num_samples()) +
      " sequences per epoch; LSTM hidden " + std::to_string(H) + ", Adam lr " + example::fmt(lr) + ", clip " +
      example::fmt(clip) + ", " + std::to_string(epochs) + " epochs = " + std::to_string(steps) + " steps, float32");

  // Test MSE: each rank scores a contiguous share of the test set; the squared errors are summed over ranks.
  auto test_mse = [&] {
    const std::size_t first = test.n * std::size_t(rank) / std::size_t(size);
    const std::size_t last = test.n * std::size_t(rank + 1) / std::size_t(size);
    std::vector<std::size_t> idx(last - first);
    for (std::size_t i = 0; i < idx.size(); ++i) idx[i] = first + i;
    double se = 0;
    if (!idx.empty()) {
      auto [x, d] = test.batch(idx.data(), idx.size());
      se = mse_loss(net(x), d, Reduction::sum).item();
    }
    return dist::allreduce_sum(se) / double(test.n);
  };

  std::unique_ptr<example::Csv> curve;
  if (rank == 0)
    curve = std::make_unique<example::Csv>(out + "/15_data_parallel_np" + std::to_string(size) + ".csv",
                                           std::vector<std::string>{"step", "train MSE (global batch)"});
  nn::TrainConfig config;
  config.epochs = std::size_t(epochs);
  config.clip_norm = clip;  // after the hook: the same averaged gradients, the same clipping on every rank
  config.name = "data parallel";
  config.metric = "test MSE";
  config.rank = rank;
  const long log_every = std::max(1L, steps / 60);
  double running = 0, t_allreduce = 0;
  std::vector<std::size_t> mine;  // this rank's shard of the current epoch
  std::size_t mine_epoch = std::size_t(-1);
  nn::TrainHooks hooks;
  hooks.after_backward = [&](const nn::TrainStep&) {
    const double t0 = now();
    dist::allreduce_gradients(params);  // now the gradient of the mean over the global batch
    t_allreduce += now() - t0;
  };
  hooks.on_step = [&](const nn::StepInfo& i) {
    running += i.loss;
    if (long(i.step) % log_every == 0) {
      // The global batch's loss: the mean of the ranks' means (equal local batches); every rank takes part.
      const double global = dist::allreduce_sum(running / double(log_every)) / size;
      running = 0;
      if (curve) curve->row(i.step, global);
    }
  };
  nn::Trainer trainer(net, opt, config, hooks);
  const nn::TrainResult result = trainer.run(
      steps_per_epoch,
      [&](const nn::TrainStep& s) {
        if (s.epoch != mine_epoch) {
          sampler.set_epoch(s.epoch);
          mine = sampler.indices();
          mine_epoch = s.epoch;
        }
        auto [x, d] = train.batch(mine.data() + s.batch * local, local);
        return mse_loss(net(x), d);  // the mean over this rank's samples
      },
      test_mse);
  const double seconds = result.seconds, mse = result.last_eval;

  // The copies must still be identical: compare a checksum of the weights with rank 0's.
  double checksum = 0;
  for (const Tensor& p : params)
    for (double v : p.to_vector()) checksum += v;
  std::vector<double> c0{checksum};
  dist::broadcast(c0, 0);
  const double differing = dist::allreduce_sum(c0[0] == checksum ? 0.0 : 1.0);
  if (differing > 0) throw Error("15_data_parallel: the model copies diverged on " + example::fmt(differing) + " rank(s)");

  const bool pass = mse < target;
  if (rank == 0) {
    curve->close();
    std::printf("\n%d process(es): test MSE %.5f (%s), %.1f s, %.1f steps/s; in allreduce_gradients (with waiting for "
                "the other ranks) %.1f%% of the time (rank 0)\n",
                size, mse, pass ? "< target" : "ABOVE TARGET", seconds, double(steps) / seconds,
                100.0 * t_allreduce / seconds);
    std::printf("weights identical on every rank (checksum %.17g)\n", checksum);
    const std::string csv = out + "/15_data_parallel_np" + std::to_string(size) + ".csv";
    example::gnuplot(out + "/15_data_parallel.gp",
                     "set terminal pngcairo size 800,480\nset output '" + out + "/15_data_parallel_np" +
                         std::to_string(size) + ".png'\nset datafile separator ','\nset logscale y\nset xlabel 'step'\n"
                         "set title 'adding problem T = " + std::to_string(T) + ", " + std::to_string(size) +
                         " process(es), global batch " + std::to_string(B) + "'\nplot '" + csv +
                         "' using 1:2 with lines lw 2 title 'train MSE', 0.1667 with lines dt 2 lc rgb 'gray' title "
                         "'baseline 1/6', " + example::fmt(target) + " with lines dt 3 lc rgb 'black' title 'target'\n");
  }
  const int rc = rank == 0 ? example::report("15_data_parallel",
                                             "adding problem T=" + std::to_string(T) + ", " + std::to_string(size) +
                                                 " process(es), global batch " + std::to_string(B),
                                             "test MSE", "< " + example::fmt(target), example::fmt(mse, 3), pass)
                           : (pass ? 0 : 1);
  return rc;
}

}  // namespace

int main(int argc, char** argv) {
  example::Args args(argc, argv,
                     "15_data_parallel: the adding-problem LSTM trained data-parallel over MPI\n"
                     "  run alone, or: mpirun -np 2 ./build/examples/15_data_parallel (docs/distributed.md)\n"
                     "  --T N (50)  --hidden H (32)  --batch B (global, 64; a multiple of the process count)\n"
                     "  --train N (sequences; 12800, quick 6400)  --epochs E (15, quick 6)  --lr LR (0.01)\n"
                     "  --clip C (1.0)  --target MSE (0.01)");
  dist::init(&argc, &argv);
  const int rc = dist::guarded([&] { return run(args); });
  dist::finalize();
  return rc;
}
