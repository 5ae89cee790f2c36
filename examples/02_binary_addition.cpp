// The course's binary addition with a simple (Elman) RNN, written in the engine's DSL and trained by
// autodiff (no hand-written BPTT):
//   u_t = x_t W_in + z_(t-1) W + b,  z_t = sigmoid(u_t),  y_t = sigmoid(z_t W_out + c)
//   E = 1/2 sum_t (d_t - y_t)^2
// Setup as in the course: 8-bit numbers (a, b < 128, so a + b fits), bits fed least significant first,
// hidden 16, sigmoid, weights N(0, 1), SGD with learning rate 0.1, one sequence per step.
// Target: exact sums for at least 99% of all 128 x 128 pairs.
#include <tapegrad/tapegrad.hpp>

#include <cstdio>
#include <string>
#include <vector>

#include "common/example.hpp"

using namespace tapegrad;

namespace {

constexpr int kBits = 8;

struct Model {
  Tensor W_in, W, b, W_out, c;
  explicit Model(Generator& gen, std::size_t hidden) {
    W_in = parameter(randn({2, hidden}, gen));
    W = parameter(randn({hidden, hidden}, gen));
    b = parameter(zeros({1, hidden}));
    W_out = parameter(randn({hidden, 1}, gen));
    c = parameter(zeros({1, 1}));
  }
  std::vector<Tensor*> params() { return {&W_in, &W, &b, &W_out, &c}; }
};

// Runs the sequence for a + b; returns the loss (and, through bits_out, the rounded output bits).
Tensor run(Model& m, int a, int b, std::vector<int>* bits_out = nullptr) {
  const int d = a + b;
  Tensor z = zeros({1, m.W.size(0)});
  Tensor loss;
  for (int t = 0; t < kBits; ++t) {
    Tensor x = from_values({double((a >> t) & 1), double((b >> t) & 1)}, {1, 2});
    Tensor target = from_values({double((d >> t) & 1)}, {1, 1});
    z = sigmoid(matmul(x, m.W_in) + matmul(z, m.W) + m.b);
    Tensor y = sigmoid(matmul(z, m.W_out) + m.c);
    Tensor e = mse_loss(y, target, Reduction::half_sum);
    loss = loss.defined() ? loss + e : e;
    if (bits_out) bits_out->push_back(y.item() > 0.5 ? 1 : 0);
  }
  return loss;
}

double accuracy(Model& m) {
  NoGrad no_grad;
  int exact = 0;
  for (int a = 0; a < 128; ++a)
    for (int b = 0; b < 128; ++b) {
      std::vector<int> bits;
      run(m, a, b, &bits);
      int s = 0;
      for (int t = 0; t < kBits; ++t) s |= bits[t] << t;
      exact += s == a + b;
    }
  return exact / double(128 * 128);
}

}  // namespace

int main(int argc, char** argv) {
  example::Args args(argc, argv,
                     "usage: 02_binary_addition [--iters N] [--hidden H] [--lr LR] [--seed S] [--quick] [--out DIR]");
  const bool quick = args.quick();
  const int iters = static_cast<int>(args.integer("iters", quick ? 6000 : 10000));
  const std::size_t hidden = static_cast<std::size_t>(args.integer("hidden", 16));
  const double lr = args.real("lr", 0.1);
  const std::uint64_t seed = args.seed();
  const double target = args.real("target", 0.99);
  const std::string out = args.out_dir();
  args.check_unused();

  std::printf("binary addition: simple RNN 2-%zu-1, sigmoid, N(0,1) init, SGD lr %.3g, %d sequences\n", hidden, lr, iters);
  Generator gen(seed);
  Model m(gen, hidden);
  example::Csv csv(out + "/02_binary_addition_loss.csv", {"step", "mean_loss"});
  example::Progress progress("step", iters);
  const int every = iters / 20 > 0 ? iters / 20 : 1;
  double running = 0;
  for (int it = 1; it <= iters; ++it) {
    const int a = static_cast<int>(gen.below(128)), b = static_cast<int>(gen.below(128));
    Tensor loss = run(m, a, b);
    running += loss.item();
    backward(loss);
    for (Tensor* p : m.params()) {  // SGD
      float* w = p->data<float>();
      const float* g = p->grad().data<float>();
      for (std::size_t i = 0; i < p->numel(); ++i) w[i] -= static_cast<float>(lr) * g[i];
      p->zero_grad();
    }
    if (it % every == 0) {
      csv.row(it, running / every);
      progress.update(it, "mean loss " + example::fmt(running / every));
      running = 0;
    }
  }
  const double secs = progress.elapsed();
  const double acc = accuracy(m);
  std::printf("trained %d sequences in %.2f s (%.1f us per sequence)\n", iters, secs, 1e6 * secs / iters);
  example::gnuplot(out + "/02_binary_addition_loss.gp",
                   "set terminal pngcairo size 800,500\nset output '" + out + "/02_binary_addition_loss.png'\n"
                   "set datafile separator ','\nset xlabel 'sequences'\nset ylabel 'mean loss (1/2 sum (d-y)^2)'\n"
                   "set title 'Binary addition, simple RNN 2-16-1 (autodiff BPTT)'\n"
                   "plot '" + csv.path() + "' using 1:2 skip 1 with lines lw 2 title 'training loss'\n");
  return example::report("02_binary_addition", "8-bit binary addition, simple RNN", "exact sums of all 128x128 pairs",
                         ">= " + example::fmt(100 * target, 3) + "%", example::fmt(100 * acc, 4) + "%", acc >= target);
}
