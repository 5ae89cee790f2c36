// GRU (ゲート付き回帰型ユニット) on the adding problem, in both conventions of nn::GRUCell:
//   course:      h_bar = tanh(x W_n + (r * h_(t-1)) U_h + b_n)            reset before the hidden matmul
//                h_t = (1 - z) * h_(t-1) + z * h_bar
//   reset_after: h_bar = tanh(x W_n + b_n + r * (h_(t-1) W_hn + b_hn))    (PyTorch, cuDNN)
//                h_t = (1 - z) * h_bar + z * h_(t-1)
// The adding problem (as in 07_lstm_adding): T steps of (value in [0, 1), marker); the markers pick one
// value in each half; the target, read from the last state, is their sum. Predicting the mean gives
// MSE = 1/6 = 0.167. Target: test MSE < 0.01 for both conventions.
#include <tapegrad/tapegrad.hpp>

#include <algorithm>
#include <cstdio>
#include <string>
#include <vector>

#include "common/data.hpp"
#include "common/example.hpp"

using namespace tapegrad;

namespace {

using Batch = example::AddingBatch;  // x (T, B, 2), d (B, 1): examples/common/data.hpp
using example::adding_batch;

struct Run {
  std::string name;
  std::vector<double> curve;
  double test_mse = 0, seconds = 0;
};

}  // namespace

int main(int argc, char** argv) {
  example::Args args(argc, argv,
                     "08_gru_adding: GRU (course convention and reset_after) on the adding problem\n"
                     "  --T N (50)  --hidden H (32)  --batch B (64)  --steps N (default 3000, quick 400)\n"
                     "  --lr LR (0.01)  --clip C (1.0)");
  const bool quick = args.quick();
  const std::size_t T = std::size_t(args.integer("T", 50));
  const std::size_t H = std::size_t(args.integer("hidden", 32));
  const std::size_t B = std::size_t(args.integer("batch", 64));
  const long steps = args.integer("steps", quick ? 400 : 3000);
  const double lr = args.real("lr", 0.01);
  const double clip = args.real("clip", 1.0);
  const double target = args.real("target", 0.01);
  const std::string out = args.out_dir();
  const std::uint64_t seed = args.seed();
  args.check_unused();
  const long log_every = std::max(1L, steps / 60);

  std::printf("adding problem: T = %zu; baseline (predict the mean) MSE = 1/6 = 0.167; target: test MSE < %g\n", T,
              target);
  std::printf("  GRU hidden %zu, batch %zu, Adam lr %g, clip %g, %ld steps per convention, float32\n", H, B, lr, clip,
              steps);
  Generator test_gen(seed + 1000);
  const Batch test = adding_batch(T, 1000, test_gen);

  std::vector<Run> runs;
  for (nn::GRUConvention conv : {nn::GRUConvention::course, nn::GRUConvention::reset_after}) {
    const std::string name = conv == nn::GRUConvention::course ? "GRU, course (reset before U_h)" : "GRU, reset_after";
    Generator gen(seed);
    nn::GRUCell cell(2, H, gen, conv);
    nn::Linear out_layer(H, 1, gen);
    std::vector<Tensor> params = cell.parameters();
    for (auto& p : out_layer.parameters()) params.push_back(p);
    nn::Adam opt(params, lr);
    Run r{name, {}, 0, 0};
    example::Progress progress(name, steps);
    double running = 0;
    for (long step = 1; step <= steps; ++step) {
      Batch b = adding_batch(T, B, gen);
      Tensor loss = mse_loss(out_layer(nn::run(cell, b.x).last.h), b.d);
      running += loss.item();
      opt.zero_grad();
      backward(loss);
      nn::clip_grad_norm(params, clip);
      opt.step();
      if (step % log_every == 0) {
        r.curve.push_back(running / log_every);
        progress.update(step, "train MSE " + example::fmt(running / log_every));
        running = 0;
      }
    }
    r.seconds = progress.elapsed();
    NoGrad no_grad;
    r.test_mse = mse_loss(out_layer(nn::run(cell, test.x).last.h), test.d).item();
    runs.push_back(r);
  }

  const std::string curve_path = out + "/08_gru_adding_curves.csv";
  {  // closed (flushed) before gnuplot reads it
    example::Csv curve(curve_path, {"step", "GRU course train MSE", "GRU reset_after train MSE"});
    for (std::size_t k = 0; k < runs[0].curve.size(); ++k) curve.row((k + 1) * log_every, runs[0].curve[k], runs[1].curve[k]);
  }
  example::gnuplot(out + "/08_gru_adding.gp",
                   "set terminal pngcairo size 800,480\nset output '" + out + "/08_gru_adding.png'\n"
                   "set datafile separator ','\nset logscale y\nset xlabel 'step'\nset ylabel 'training MSE'\n"
                   "set title 'GRU on the adding problem, T = " + std::to_string(T) + "'\nset key bottom left\n"
                   "plot '" + curve_path + "' using 1:2 with lines lw 2 title '" + runs[0].name + "', '' using 1:3 "
                   "with lines lw 2 title '" + runs[1].name + "', 0.1667 with lines dt 2 lc rgb 'gray' title "
                   "'baseline 1/6', " + example::fmt(target) + " with lines dt 3 lc rgb 'black' title 'target'\n");

  bool pass = true;
  std::printf("\n%-36s %12s %10s\n", ("adding problem, T = " + std::to_string(T)).c_str(), "test MSE", "time");
  for (auto& r : runs) {
    pass = pass && r.test_mse < target;
    std::printf("%-36s %12.5f %9.1fs  %s\n", r.name.c_str(), r.test_mse, r.seconds,
                r.test_mse < target ? "< target" : "ABOVE TARGET");
  }
  return example::report("08_gru_adding", "adding problem T=" + std::to_string(T), "test MSE",
                         "< " + example::fmt(target) + " (both)",
                         "course " + example::fmt(runs[0].test_mse, 3) + ", reset_after " + example::fmt(runs[1].test_mse, 3),
                         pass);
}
