// The course's binary addition with a simple (Elman) RNN, written in the engine's DSL and trained by
// autodiff (no hand-written BPTT):
//   u_t = x_t W_in + z_(t-1) W + b,  z_t = sigmoid(u_t),  y_t = sigmoid(z_t W_out + c)
//   E = 1/2 sum_t (d_t - y_t)^2
// Setup as in the course: 8-bit numbers (a, b < 128, so a + b fits), bits fed least significant first,
// hidden 16, sigmoid, weights N(0, 1), SGD with learning rate 0.1, one sequence per step.
// Target: exact sums for at least 99% of all 128 x 128 pairs.
#include <tapegrad/tapegrad.hpp>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

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
  int iters = 10000;
  std::size_t hidden = 16;
  double lr = 0.1;
  std::uint64_t seed = 1;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    auto next = [&]() -> const char* {
      if (i + 1 >= argc) {
        std::fprintf(stderr, "%s needs a value\n", a.c_str());
        std::exit(2);
      }
      return argv[++i];
    };
    if (a == "--iters") iters = std::atoi(next());
    else if (a == "--hidden") hidden = std::strtoul(next(), nullptr, 10);
    else if (a == "--lr") lr = std::atof(next());
    else if (a == "--seed") seed = std::strtoull(next(), nullptr, 10);
    else {
      std::printf("usage: %s [--iters N] [--hidden H] [--lr LR] [--seed S]\n", argv[0]);
      return a == "--help" ? 0 : 2;
    }
  }
  std::printf("binary addition: simple RNN 2-%zu-1, sigmoid, N(0,1) init, SGD lr %.3g, %d sequences\n", hidden, lr, iters);
  Generator gen(seed);
  Model m(gen, hidden);
  const auto t0 = std::chrono::steady_clock::now();
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
    if (it % (iters / 10 > 0 ? iters / 10 : 1) == 0) {
      std::printf("  step %6d  mean loss %.4f\n", it, running / (iters / 10 > 0 ? iters / 10 : 1));
      running = 0;
    }
  }
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  const double acc = accuracy(m);
  const double target = 0.99;
  std::printf("trained %d sequences in %.2f s (%.1f us per sequence)\n", iters, secs, 1e6 * secs / iters);
  std::printf("result: exact sums for %.2f%% of all 128 x 128 pairs (target %.0f%%): %s\n", 100 * acc, 100 * target,
              acc >= target ? "PASS" : "FAIL");
  return acc >= target ? 0 : 1;
}
