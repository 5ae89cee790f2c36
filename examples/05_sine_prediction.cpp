// The course's sine-wave prediction (sin 波の予測) with a simple RNN: from the 5 previous values of
// sin(2 pi t / P), predict the value at t.
//
//   window x_(t-5) .. x_(t-1) -> RNNCell (1 -> H, tanh, LeCun init) over the 5 steps -> last state z
//   -> Linear(H, 1) -> prediction of x_t;   loss: mean squared error;
//   gradient descent on all training windows at once (one update per epoch, lr 0.1).
// Full-batch descent makes an epoch one update and the curves smooth and deterministic. With minibatches
// (--batch 10 --lr 0.05: 20 updates per epoch) the one-step error falls much faster, but the free-running
// error jumps between 1e-3 and 1e-1 from one epoch to the next (SGD noise), so the final value is luck.
//
// The series has period P = 50 steps (the course's sine sampled at regular steps); t in [0, 200) (four
// periods) trains, t in [200, 300) is held out. Noise is optional (--noise A adds U(-A, A) to the training
// inputs and targets, as the course's noisy variant does); the held-out targets are always the clean sine.
// The error is measured one step ahead on the held-out part (true windows in, one value out), and the
// picture also shows free-running generation: from t = 200 on, each prediction is fed back as input.
//
// Snapshots (error and pictures) at 100, 500 and 3000 epochs; the course says about 3000 epochs are
// needed, and the program reports whether that holds here (the first epoch that meets the target).
//
// Target: held-out one-step MSE < 1e-3 after the last epoch. Justification: repeating the last value
// (x_t = x_(t-1)) scores 2 sin^2(pi/P) ~ 7.9e-3 for P = 50, so 1e-3 asks for a prediction that uses the
// window's shape (8 times better than that baseline). Met within 300 epochs for every seed tried (1-6).
// Also reported, not a target: the free-running MSE over the 100 held-out steps (a flat line scores 0.5,
// the sine's variance; 1e-2, an RMS error of 0.1, means the generated wave stays on the true one for two
// periods). It compounds every error and depends on the seed: after 3000 epochs seeds 1, 3, 5, 6 end below
// 1e-2 (1e-3, 3e-4, 9e-3, 4e-4) and seeds 2 and 4 do not (0.25, 0.49: the generated wave drifts).
#include <tapegrad/tapegrad.hpp>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <numeric>
#include <string>
#include <vector>

#include "common/example.hpp"

using namespace tapegrad;

namespace {

struct Net {
  nn::RNNCell cell;
  nn::Linear out;
  Net(std::size_t hidden, Generator& gen)
      : cell(1, hidden, gen, nn::Activation::tanh, nn::Init::lecun), out(hidden, 1, gen) {}
  // windows (W, B, 1) -> predictions (B, 1)
  Tensor operator()(const Tensor& windows) const { return out(nn::run(cell, windows).last.h); }
  std::vector<Tensor> parameters() const {
    std::vector<Tensor> p = cell.parameters();
    for (auto& t : out.parameters()) p.push_back(t);
    return p;
  }
};

// Windows ending before each target index in `targets`: x (W, B, 1) from `series`, d (B, 1) from `goal`.
std::pair<Tensor, Tensor> windows(const std::vector<double>& series, const std::vector<double>& goal,
                                  const std::vector<std::size_t>& targets, std::size_t W) {
  const std::size_t B = targets.size();
  std::vector<double> x(W * B), d(B);
  for (std::size_t k = 0; k < B; ++k) {
    for (std::size_t s = 0; s < W; ++s) x[s * B + k] = series[targets[k] - W + s];
    d[k] = goal[targets[k]];
  }
  return {from_values(x, {W, B, 1}), from_values(d, {B, 1})};
}

double mse(const Net& net, const std::vector<double>& series, const std::vector<double>& goal,
           const std::vector<std::size_t>& targets, std::size_t W, std::vector<double>* pred = nullptr) {
  NoGrad no_grad;
  auto [x, d] = windows(series, goal, targets, W);
  Tensor y = net(x);
  if (pred) *pred = y.to_vector();
  return mse_loss(y, d).item();
}

// Free-running: starts from the true values before `from`, then feeds its own predictions back.
std::vector<double> generate(const Net& net, const std::vector<double>& clean, std::size_t from, std::size_t to,
                             std::size_t W) {
  NoGrad no_grad;
  std::vector<double> s(clean.begin(), clean.begin() + from);
  for (std::size_t t = from; t < to; ++t) {
    std::vector<double> w(s.end() - W, s.end());
    s.push_back(net(from_values(w, {W, 1, 1})).item());
  }
  return std::vector<double>(s.begin() + from, s.end());
}

}  // namespace

int main(int argc, char** argv) {
  example::Args args(argc, argv,
                     "05_sine_prediction: predict sin at t from the 5 previous values with a simple RNN\n"
                     "  --epochs N (3000; quick 3000)  --hidden H (20)  --lr LR (0.1)  --batch B (0: all windows)  --window W (5)\n"
                     "  --period P (50)  --noise A (0: none)  --target MSE (1e-3)  --free-level MSE (1e-2, reported only)");
  const bool quick = args.quick();
  const long epochs = args.integer("epochs", 3000);
  const std::size_t hidden = args.integer("hidden", 20);
  const double lr = args.real("lr", 0.1);
  std::size_t batch = args.integer("batch", 0);
  const std::size_t W = args.integer("window", 5);
  const double period = args.real("period", 50);
  const double noise = args.real("noise", 0.0);
  const double target = args.real("target", 1e-3);
  const double free_target = args.real("free-level", 1e-2);
  const std::uint64_t seed = args.seed();
  const std::string out = args.out_dir();
  args.check_unused();
  (void)quick;  // the full run is short: --quick keeps every setting (a smaller --epochs works too)

  const std::size_t n_train = 200, n_all = 300;
  const double pi = std::acos(-1.0);
  Generator gen(seed);
  std::vector<double> clean(n_all), noisy(n_all);
  for (std::size_t t = 0; t < n_all; ++t) {
    clean[t] = std::sin(2 * pi * t / period);
    noisy[t] = clean[t] + (noise > 0 && t < n_train ? gen.uniform(-noise, noise) : 0.0);
  }
  std::vector<std::size_t> train_t, test_t;
  for (std::size_t t = W; t < n_train; ++t) train_t.push_back(t);
  for (std::size_t t = n_train; t < n_all; ++t) test_t.push_back(t);
  if (batch == 0 || batch > train_t.size()) batch = train_t.size();
  double baseline = 0;  // repeat the last value
  for (std::size_t t : test_t) baseline += (clean[t] - clean[t - 1]) * (clean[t] - clean[t - 1]) / test_t.size();

  std::printf("sine prediction: x_t = sin(2 pi t / %g)%s; window %zu -> next value; RNN 1-%zu (tanh) + Linear(%zu, 1)\n"
              "gradient descent lr %g, batch %zu, %ld epochs; %zu training windows (t < %zu), %zu held out (t in [%zu, %zu))\n"
              "baseline 'repeat the last value': held-out MSE %.3g; target: held-out one-step MSE < %g (free-running MSE\n"
              "over the 100 held-out steps is reported against %g, not a target: it depends on the seed)\n\n",
              period, noise > 0 ? (" + U(-" + example::fmt(noise, 3) + ", " + example::fmt(noise, 3) + ") noise on the training part").c_str() : "",
              W, hidden, hidden, lr, batch, epochs, train_t.size(), n_train, test_t.size(), n_train, n_all, baseline, target, free_target);

  Net net(hidden, gen);
  nn::SGD opt(net.parameters(), lr);
  std::vector<long> snaps;
  for (long e : {100L, 500L, 3000L})
    if (e < epochs) snaps.push_back(e);
  snaps.push_back(epochs);
  const std::string curve_path = out + "/05_sine_training.csv", pred_path = out + "/05_sine_predictions.csv";
  std::vector<std::vector<double>> one_step(snaps.size()), free_run(snaps.size());
  std::vector<double> snap_mse(snaps.size());
  long first_at_target = -1, first_free = -1, first_both = -1;
  double test_mse = 0, free_mse = NAN;
  auto free_running_mse = [&](const std::vector<double>& g) {
    double m = 0;
    for (std::size_t i = 0; i < test_t.size(); ++i) m += (g[i] - clean[test_t[i]]) * (g[i] - clean[test_t[i]]) / test_t.size();
    return m;
  };
  example::Progress progress("epoch", epochs, 2.0);
  {
    example::Csv curve(curve_path, {"epoch", "train_mse", "test_mse", "free_running_mse"});
    std::vector<std::size_t> order = train_t;
    for (long e = 1; e <= epochs; ++e) {
      std::shuffle(order.begin(), order.end(), gen.engine());
      for (std::size_t from = 0; from < order.size(); from += batch) {
        std::vector<std::size_t> ts(order.begin() + from, order.begin() + std::min(order.size(), from + batch));
        auto [x, d] = windows(noisy, noisy, ts, W);
        Tensor loss = mse_loss(net(x), d);
        opt.zero_grad();
        backward(loss);
        opt.step();
      }
      test_mse = mse(net, clean, clean, test_t, W);
      if (first_at_target < 0 && test_mse < target) first_at_target = e;
      if (e % 10 == 0 || e == epochs || e == 1) {  // free running: 100 sequential steps, so every 10 epochs
        free_mse = free_running_mse(generate(net, clean, n_train, n_all, W));
        if (first_free < 0 && free_mse < free_target) first_free = e;
        if (first_both < 0 && free_mse < free_target && test_mse < target) first_both = e;
      }
      const double train_mse = mse(net, noisy, noisy, train_t, W);
      curve.row(e, train_mse, test_mse, free_mse);
      for (std::size_t k = 0; k < snaps.size(); ++k)
        if (snaps[k] == e) {
          snap_mse[k] = test_mse;
          std::vector<std::size_t> all_t;
          for (std::size_t t = W; t < n_all; ++t) all_t.push_back(t);
          mse(net, clean, clean, all_t, W, &one_step[k]);
          free_run[k] = generate(net, clean, n_train, n_all, W);
        }
      progress.update(e, "train MSE " + example::fmt(train_mse, 3) + ", held-out MSE " + example::fmt(test_mse, 3) +
                             ", free running " + example::fmt(free_mse, 3));
    }
  }
  {
    std::vector<std::string> cols = {"t", "truth", "input"};
    for (long e : snaps) cols.push_back("one_step_" + std::to_string(e));
    for (long e : snaps) cols.push_back("free_run_" + std::to_string(e));
    std::ofstream f(pred_path);
    for (std::size_t i = 0; i < cols.size(); ++i) f << (i ? "," : "") << cols[i];
    f << '\n';
    for (std::size_t t = 0; t < n_all; ++t) {
      f << t << ',' << clean[t] << ',' << noisy[t];
      for (std::size_t k = 0; k < snaps.size(); ++k) f << ',' << (t >= W ? std::to_string(one_step[k][t - W]) : "");
      for (std::size_t k = 0; k < snaps.size(); ++k)
        f << ',' << (t >= n_train ? std::to_string(free_run[k][t - n_train]) : "");
      f << '\n';
    }
  }

  std::printf("\nheld-out MSE, one step ahead (baseline %.3g, target < %g) and free running (level %g):\n", baseline,
              target, free_target);
  for (std::size_t k = 0; k < snaps.size(); ++k) {
    const double fr = free_running_mse(free_run[k]);
    std::printf("  after %5ld epochs: one step %-9.3g free running %-9.3g %s\n", snaps[k], snap_mse[k], fr,
                snap_mse[k] < target && fr < free_target ? "meets the target; free running below the level"
                : snap_mse[k] < target                   ? "meets the target; free running above the level"
                                                         : "");
  }
  auto when = [](long e) { return e > 0 ? "epoch " + std::to_string(e) : std::string("never"); };
  std::printf("first below: one step target %s, free-running level %s (checked every 10 epochs), both %s.\n",
              when(first_at_target).c_str(), when(first_free).c_str(), when(first_both).c_str());
  std::string verdict;
  if (first_at_target < 0)
    verdict = "the one-step target was not met in this run";
  else if (first_at_target > 1500)
    verdict = "holds here: the one-step target is first met at " + when(first_at_target);
  else
    verdict = "not for the one-step target (met at " + when(first_at_target) + ", batch " + std::to_string(batch) +
              ", " + std::to_string((train_t.size() + batch - 1) / batch) + " update(s) per epoch); the generated wave " +
              (first_both > 0 ? "is first good (free running < " + example::fmt(free_target, 3) + ") at " + when(first_both)
                              : "never gets below the free-running level in this run") +
              (snaps.size() > 1 &&
                       free_running_mse(free_run.back()) < 0.5 * free_running_mse(free_run[snaps.size() - 2])
                   ? ", and still improves a lot up to the last epoch: longer training does pay"
                   : "");
  std::printf("The course's \"about 3000 epochs are needed\": %s\n", verdict.c_str());

  // Picture: one panel per snapshot, truth vs one-step and free-running predictions.
  std::string gp = "set terminal pngcairo noenhanced size 1000," + std::to_string(260 * snaps.size() + 60) +
                   " font ',9'\nset output '" + out + "/05_sine_prediction.png'\nset datafile separator ','\n"
                   "set multiplot layout " + std::to_string(snaps.size()) +
                   ",1 title 'sine prediction with a simple RNN (window " + std::to_string(W) +
                   "): training t < " + std::to_string(n_train) + ", held out after the line'\nset grid\n"
                   "set yrange [-1.6:1.6]\nset key outside right\nset arrow 1 from " + std::to_string(n_train) +
                   ",-1.6 to " + std::to_string(n_train) + ",1.6 nohead dt 2 lc rgb 'gray'\n";
  for (std::size_t k = 0; k < snaps.size(); ++k) {
    const std::size_t c1 = 4 + k, c2 = 4 + snaps.size() + k;
    gp += "set title 'after " + std::to_string(snaps[k]) + " epochs: held-out MSE one step ahead " +
          example::fmt(snap_mse[k], 3) + ", free running " + example::fmt(free_running_mse(free_run[k]), 3) + "'\n";
    gp += std::string(k + 1 == snaps.size() ? "set xlabel 't'\n" : "") + "plot '" + pred_path +
          "' using 1:2 with lines lw 3 lc rgb '#bbbbbb' title 'truth'" +
          (noise > 0 ? ", '' using 1:3 with points pt 7 ps 0.3 lc rgb '#888888' title 'noisy input'" : "") +
          ", '' using 1:" + std::to_string(c1) + " with lines lw 1.5 lc rgb '#1b9e77' title 'one step ahead', '' using 1:" +
          std::to_string(c2) + " with lines lw 1.5 lc rgb '#d95f02' title 'free running'\n";
  }
  gp += "unset multiplot\n";
  gp += "reset\nset terminal pngcairo noenhanced size 800,450 font ',10'\nset output '" + out +
        "/05_sine_training.png'\nset datafile separator ','\nset logscale y\nset format y '1e%L'\nset grid\nset xlabel 'epoch'\n"
        "set ylabel 'MSE'\nset title 'sine prediction: one-step MSE (train, held out) and free-running MSE'\nplot '" +
        curve_path + "' using 1:2 with lines title 'train, one step', '' using 1:3 with lines title 'held out, one step', "
        "'' using 1:4 with lines title 'held out, free running', " + example::fmt(baseline, 4) +
        " with lines dt 2 lc rgb 'gray' title 'repeat last value (one step)', " + example::fmt(target, 4) +
        " with lines dt 3 lc rgb 'black' title 'one-step target', " + example::fmt(free_target, 4) +
        " with lines dt 4 lc rgb 'black' title 'free-running level'\n";
  if (example::gnuplot(out + "/05_sine_prediction.gp", gp))
    std::printf("wrote %s, %s, %s/05_sine_prediction.png, %s/05_sine_training.png\n", curve_path.c_str(),
                pred_path.c_str(), out.c_str(), out.c_str());

  const bool pass = test_mse < target;
  return example::report("05_sine_prediction", "sine, window " + std::to_string(W) + " -> next value (simple RNN)",
                         "held-out one-step MSE after " + std::to_string(epochs) + " epochs", "< " + example::fmt(target, 3),
                         example::fmt(test_mse, 3) + " (first met at " + when(first_at_target) + "; free running " +
                             example::fmt(free_mse, 3) + ")",
                         pass);
}
