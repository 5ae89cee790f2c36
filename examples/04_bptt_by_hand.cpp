// BPTT by hand and by the tape, side by side (通時的誤差逆伝播: 手計算と自動微分).
//
// The course's simple RNN on binary addition (8-bit numbers, bits least significant first, hidden 16,
// sigmoid output, E = 1/2 sum_t (d_t - y_t)^2, SGD at lr 0.1, one sequence per step) is trained twice
// from the same initial weights on the same sequences:
//   hand: reference::ElmanBPTT, the course's delta recursion written out (with its two corrections,
//         see docs/course-notes.md section 2):
//           delta_out_t = (y_t - d_t) y_t (1 - y_t)
//           delta_t     = (delta_out_t W_out^T + delta_(t+1) W^T) * f'(u_t)
//           dE/dW_in = sum_t x_t^T delta_t,  dE/dW = sum_t z_(t-1)^T delta_t,  dE/dW_out = sum_t z_t^T delta_out_t
//   tape: the same model written with the engine's ops; backward() is one reverse sweep of the tape.
// At every step the hand gradients are also computed at the tape model's weights and compared with the
// tape's (max over parameters of max|g_hand - g_tape| / max|g_tape|; float32, target <= 1e-5), and both
// gradient computations are timed in the same run (microseconds per sequence). After training, the
// comparison is repeated in float64 (target <= 1e-12).
//
// Then the vanishing gradient: ||dE_T/dz_t||, the gradient of the last step's error with respect to each
// hidden state (nn::gradient_norms_over_time: one functional grad(E_T, {z_1 .. z_T})), averaged over 256
// additions of 24-bit numbers, for the sigmoid RNN and for a tanh RNN (LeCun "Xavier" init, the course's
// best setting in 03), before and after training. sigmoid' <= 1/4 makes the sigmoid's gradient shrink faster with the distance T - t.
#include <tapegrad/tapegrad.hpp>
#include <tapegrad/bench/reference/reference_bptt.hpp>

#include <algorithm>
#include <ctime>
#include <cmath>
#include <cstdio>
#include <string>
#include <vector>

#include "common/example.hpp"

using namespace tapegrad;
namespace ref = tapegrad::reference;

namespace {

constexpr std::size_t kBits = 8, kIn = 2, kOut = 1;
// CPU time of this thread: the machine may be shared, and wall time would count the other processes.
double cpu_seconds() {
  timespec ts;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return ts.tv_sec + 1e-9 * ts.tv_nsec;
}

struct Model {  // the tape's model; also the source of the raw weights handed to the hand code
  Tensor W_in, W, b, W_out, c;
  nn::Activation f;
  std::vector<Tensor> params() const { return {W_in, W, b, W_out, c}; }
};

Model make_model(std::size_t hidden, nn::Activation f, bool lecun, Generator& gen) {
  auto draw = [&](const Shape& s) { return lecun ? nn::init::lecun_normal(s, gen) : randn(s, gen); };
  Model m;
  m.W_in = parameter(draw({kIn, hidden}));
  m.W = parameter(draw({hidden, hidden}));
  m.b = parameter(zeros({1, hidden}));
  m.W_out = parameter(draw({hidden, kOut}));
  m.c = parameter(zeros({1, kOut}));
  m.f = f;
  return m;
}

Model to_dtype(const Model& m, DType d) {
  return {parameter(m.W_in.to(d)), parameter(m.W.to(d)), parameter(m.b.to(d)), parameter(m.W_out.to(d)),
          parameter(m.c.to(d)), m.f};
}

// One addition as raw sequences: x (T, 1, 2), d (T, 1, 1), bits least significant first.
template <class T> void encode(long a, long b, std::size_t bits, std::vector<T>& x, std::vector<T>& d) {
  x.resize(bits * 2);
  d.resize(bits);
  for (std::size_t t = 0; t < bits; ++t) {
    x[2 * t] = T((a >> t) & 1);
    x[2 * t + 1] = T((b >> t) & 1);
    d[t] = T(((a + b) >> t) & 1);
  }
}

// The tape's forward over raw sequences x (T, B, 2), d (T, B, 1) (the hand code's layout): each step's
// x_t and d_t enter as constants; zs/ys collect z_t and y_t on request.
template <class T>
Tensor forward(const Model& m, const T* x, const T* d, std::size_t steps, std::size_t batch,
               std::vector<Tensor>* zs = nullptr, std::vector<Tensor>* ys = nullptr) {
  Tensor z = zeros({batch, m.W.size(0)}, m.W.dtype());
  Tensor loss;
  for (std::size_t t = 0; t < steps; ++t) {
    Tensor xt = from_data(x + t * batch * kIn, {batch, kIn});
    Tensor dt = from_data(d + t * batch * kOut, {batch, kOut});
    z = nn::activate(m.f, matmul(xt, m.W_in) + matmul(z, m.W) + m.b);
    Tensor y = sigmoid(matmul(z, m.W_out) + m.c);
    Tensor e = mse_loss(y, dt, Reduction::half_sum);
    loss = loss.defined() ? loss + e : e;
    if (zs) zs->push_back(z);
    if (ys) ys->push_back(y);
  }
  return loss;
}

template <class T> ref::ElmanParams<T> raw(const Model& m) {
  return {m.W_in.data<T>(), m.W.data<T>(), m.b.data<T>(), m.W_out.data<T>(), m.c.data<T>()};
}

// The relative difference of the whole gradient (all five parameters as one vector):
// ||g_hand - g_tape||_2 / ||g_tape||_2. (Per tensor it can be dominated by a tensor whose gradient is a
// small difference of large terms, e.g. dE/dc = sum_t delta_out_t of a trained net.)
template <class T> double rel_diff(const ref::ElmanGrads<T>& h, const Model& m) {
  const std::vector<const std::vector<T>*> hs = {&h.W_in, &h.W, &h.b, &h.W_out, &h.c};
  const std::vector<Tensor> ps = m.params();
  double diff = 0, norm = 0;
  for (std::size_t k = 0; k < ps.size(); ++k) {
    const Tensor g = ps[k].grad();
    const T* gv = g.data<T>();
    for (std::size_t i = 0; i < g.numel(); ++i) {
      const double e = double((*hs[k])[i]) - double(gv[i]);
      diff += e * e;
      norm += double(gv[i]) * double(gv[i]);
    }
  }
  return norm > 0 ? std::sqrt(diff / norm) : std::sqrt(diff);
}

// Exact sums over all 128 x 128 pairs, by the hand forward (no tape): weights given raw.
double accuracy(const ref::ElmanParams<float>& p, std::size_t hidden, nn::Activation f) {
  ref::ElmanBPTT<float> net(kIn, hidden, kOut, f);
  std::vector<float> x(kBits * 128 * 2);
  std::size_t exact = 0;
  for (long a = 0; a < 128; ++a) {
    for (long b = 0; b < 128; ++b)
      for (std::size_t t = 0; t < kBits; ++t) {
        x[(t * 128 + b) * 2] = float((a >> t) & 1);
        x[(t * 128 + b) * 2 + 1] = float((b >> t) & 1);
      }
    const std::vector<float>& y = net.forward(p, x.data(), nullptr, kBits, 128);
    for (long b = 0; b < 128; ++b) {
      long s = 0;
      for (std::size_t t = 0; t < kBits; ++t) s |= long(y[t * 128 + b] > 0.5f) << t;
      exact += s == a + b;
    }
  }
  return exact / double(128 * 128);
}

// Mean over a batch of long additions of ||dE_T/dz_t||, t = 1..T.
std::vector<double> grad_norms(const Model& m, std::size_t bits, std::size_t batch, std::uint64_t seed) {
  Generator gen(seed);
  std::vector<float> x(bits * batch * 2), d(bits * batch);
  const long top = 1L << (bits - 1);
  for (std::size_t k = 0; k < batch; ++k) {
    const long a = long(gen.below(top)), b = long(gen.below(top));
    for (std::size_t t = 0; t < bits; ++t) {
      x[(t * batch + k) * 2] = float((a >> t) & 1);
      x[(t * batch + k) * 2 + 1] = float((b >> t) & 1);
      d[t * batch + k] = float(((a + b) >> t) & 1);
    }
  }
  std::vector<Tensor> zs, ys;
  forward(m, x.data(), d.data(), bits, batch, &zs, &ys);
  Tensor e_last = mse_loss(ys.back(), from_data(d.data() + (bits - 1) * batch, {batch, kOut}), Reduction::half_sum);
  // The library's report (nn/training/gradient_flow.hpp): d E_T / d z_t for every t by one functional grad(),
  // each sequence's norm, averaged over the batch.
  std::vector<nn::State> states;
  for (const Tensor& z : zs) states.push_back({z, Tensor()});
  const std::vector<double> norms = nn::gradient_norms_over_time(e_last, states, nn::NormOver::sequence_mean).h;
  Tape::current().clear();
  return norms;
}

// Hand against tape in float64 at the given (float32) weights, on one sequence.
double check_f64(const Model& m32, const std::vector<float>& x, const std::vector<float>& d) {
  Model m = to_dtype(m32, DType::f64);
  const std::vector<double> x64(x.begin(), x.end()), d64(d.begin(), d.end());
  Tensor loss = forward(m, x64.data(), d64.data(), kBits, 1);
  backward(loss);
  ref::ElmanBPTT<double> hand(kIn, m.W.size(0), kOut, m.f);
  hand.forward(raw<double>(m), x64.data(), nullptr, kBits, 1);
  return rel_diff(hand.backward_half_sum(d64.data()), m);
}

struct Result {
  double worst_rel32 = 0, worst_rel64 = 0;
  double us_hand = 0, us_tape = 0;
  double acc_hand = 0, acc_tape = 0, max_weight_diff = 0;
  std::vector<double> norms_before, norms_after;
};

Result train_side_by_side(nn::Activation f, bool lecun, std::size_t hidden, long iters, double lr, std::uint64_t seed,
                          std::size_t probe_bits, example::Csv& curve) {
  Generator gen(seed);
  Model tape = make_model(hidden, f, lecun, gen);
  // The hand model's own weights: a copy of the same initial values.
  std::vector<std::vector<float>> hand_w;
  for (const Tensor& p : tape.params()) hand_w.emplace_back(p.data<float>(), p.data<float>() + p.numel());
  auto hand_params = [&] {
    return ref::ElmanParams<float>{hand_w[0].data(), hand_w[1].data(), hand_w[2].data(), hand_w[3].data(),
                                   hand_w[4].data()};
  };
  ref::ElmanBPTT<float> hand(kIn, hidden, kOut, f);
  ref::ElmanBPTT<float> check(kIn, hidden, kOut, f);
  nn::SGD opt(tape.params(), lr);

  Result r;
  r.norms_before = grad_norms(tape, probe_bits, 256, 777);
  std::vector<float> x, d;
  double t_hand = 0, t_tape = 0, running_hand = 0, running_tape = 0;
  const long report_every = std::max(1L, iters / 20);
  example::Progress progress(std::string(nn::activation_name(f)) + " step", iters, 2.0);
  for (long it = 1; it <= iters; ++it) {
    const long a = long(gen.below(128)), b = long(gen.below(128));
    encode(a, b, kBits, x, d);

    // hand: forward, BPTT, SGD on its own weights
    const double t0 = cpu_seconds();
    const ref::ElmanParams<float> hp = hand_params();
    hand.forward(hp, x.data(), nullptr, kBits, 1);
    running_hand += hand.half_sum_loss(d.data());
    const ref::ElmanGrads<float>& hg = hand.backward_half_sum(d.data());
    const double t1 = cpu_seconds();
    const std::vector<const std::vector<float>*> gs = {&hg.W_in, &hg.W, &hg.b, &hg.W_out, &hg.c};
    for (std::size_t k = 0; k < hand_w.size(); ++k)
      for (std::size_t i = 0; i < hand_w[k].size(); ++i) hand_w[k][i] -= float(lr) * (*gs[k])[i];

    // tape: forward, backward, SGD
    const double t2 = cpu_seconds();
    Tensor loss = forward(tape, x.data(), d.data(), kBits, 1);
    running_tape += loss.item();
    opt.zero_grad();
    backward(loss);
    const double t3 = cpu_seconds();
    t_hand += t1 - t0;
    t_tape += t3 - t2;

    // the check: hand gradients at the tape model's weights (before its update), against the tape's
    check.forward(raw<float>(tape), x.data(), nullptr, kBits, 1);
    r.worst_rel32 = std::max(r.worst_rel32, rel_diff(check.backward_half_sum(d.data()), tape));
    if (it == 1 || it % report_every == 0) r.worst_rel64 = std::max(r.worst_rel64, check_f64(tape, x, d));
    opt.step();

    if (it % report_every == 0) {
      curve.row(nn::activation_name(f), it, running_hand / report_every, running_tape / report_every, r.worst_rel32);
      progress.update(it, "mean E hand " + example::fmt(running_hand / report_every) + ", tape " +
                              example::fmt(running_tape / report_every) + ", max rel diff " +
                              example::fmt(r.worst_rel32, 3));
      running_hand = running_tape = 0;
    }
  }
  r.us_hand = 1e6 * t_hand / iters;
  r.us_tape = 1e6 * t_tape / iters;
  r.acc_hand = accuracy(hand_params(), hidden, f);
  r.acc_tape = accuracy(raw<float>(tape), hidden, f);
  for (std::size_t k = 0; k < hand_w.size(); ++k) {
    const float* w = tape.params()[k].data<float>();
    for (std::size_t i = 0; i < hand_w[k].size(); ++i)
      r.max_weight_diff = std::max(r.max_weight_diff, double(std::abs(hand_w[k][i] - w[i])));
  }
  r.norms_after = grad_norms(tape, probe_bits, 256, 777);

  // float64 again on the trained weights, 100 more additions.
  for (int k = 0; k < 100; ++k) {
    encode(long(gen.below(128)), long(gen.below(128)), kBits, x, d);
    r.worst_rel64 = std::max(r.worst_rel64, check_f64(tape, x, d));
  }
  return r;
}

}  // namespace

int main(int argc, char** argv) {
  example::Args args(argc, argv,
                     "04_bptt_by_hand: the simple RNN on binary addition, hand-derived BPTT and autodiff side by side\n"
                     "  --iters N (10000; quick 6000) sequences  --hidden H (16)  --lr LR (0.1)  --probe-bits T (24)");
  const bool quick = args.quick();
  const long iters = args.integer("iters", quick ? 6000 : 10000);
  const std::size_t hidden = args.integer("hidden", 16);
  const double lr = args.real("lr", 0.1);
  const std::size_t probe_bits = args.integer("probe-bits", 24);
  const std::uint64_t seed = args.seed();
  const std::string out = args.out_dir();
  args.check_unused();
  if (probe_bits < 2 || probe_bits > 62) {
    std::fprintf(stderr, "--probe-bits must be in [2, 62]\n");
    return 2;
  }

  std::printf("binary addition, simple RNN 2-%zu-1, SGD lr %g, %ld sequences; hand BPTT (reference::ElmanBPTT)\n"
              "and the tape trained side by side from the same initial weights on the same sequences\n\n",
              hidden, lr, iters);
  const struct {
    nn::Activation f;
    bool lecun;
    const char* init;
  } setups[] = {{nn::Activation::sigmoid, false, "N(0,1) (the course's)"},
                {nn::Activation::tanh, true, "LeCun N(0,1/n_in) (the course's \"Xavier\")"}};
  std::vector<Result> results;
  {
    example::Csv curve(out + "/04_bptt_training.csv", {"activation", "step", "mean_E_hand", "mean_E_tape", "max_rel_diff"});
    for (auto& s : setups) {
      std::printf("%s hidden layer, init %s:\n", nn::activation_name(s.f), s.init);
      results.push_back(train_side_by_side(s.f, s.lecun, hidden, iters, lr, seed, probe_bits, curve));
      const Result& r = results.back();
      std::printf("  gradient, hand vs tape, ||g_hand - g_tape|| / ||g_tape|| over all parameters:\n"
                  "    float32, at every training step:                                max %.3g\n"
                  "    float64 (same weights), 21 points in training + 100 at the end: max %.3g (target <= 1e-12)\n"
                  "  CPU time per sequence, forward + gradient: hand %.1f us, tape %.1f us (tape / hand = %.1fx)\n"
                  "  exact sums over all 128 x 128 pairs: hand-trained %.2f%%, tape-trained %.2f%%; largest weight "
                  "difference after training %.3g\n\n",
                  r.worst_rel32, r.worst_rel64, r.us_hand, r.us_tape, r.us_tape / r.us_hand, 100 * r.acc_hand,
                  100 * r.acc_tape, r.max_weight_diff);
    }
  }

  // The vanishing gradient, per time step. For a comparison at the same initialisation, also a sigmoid RNN
  // with the tanh net's LeCun init (untrained).
  Generator gen(seed);
  const std::vector<double> sigmoid_lecun = grad_norms(make_model(hidden, nn::Activation::sigmoid, true, gen), probe_bits, 256, 777);
  const std::string norms_path = out + "/04_bptt_grad_norms.csv";
  {
    example::Csv norms(norms_path, {"t", "distance_T_minus_t", "sigmoid_before", "sigmoid_after", "tanh_before",
                                    "tanh_after", "sigmoid_lecun_before"});
    for (std::size_t t = 0; t < probe_bits; ++t)
      norms.row(t + 1, probe_bits - 1 - t, results[0].norms_before[t], results[0].norms_after[t],
                results[1].norms_before[t], results[1].norms_after[t], sigmoid_lecun[t]);
  }
  std::printf("||dE_T/dz_t|| (mean over 256 additions of %zu-bit numbers; E_T the last step's error):\n", probe_bits);
  std::printf("  %5s %14s %14s %14s %14s %16s\n", "T-t", "sigmoid init", "sigmoid end", "tanh init", "tanh end",
              "sigmoid (LeCun)");
  for (std::size_t k = 0; k < probe_bits; ++k) {
    if (k % 4 && k + 1 != probe_bits) continue;
    const std::size_t t = probe_bits - 1 - k;  // index of z_t, distance k from T
    std::printf("  %5zu %14.3g %14.3g %14.3g %14.3g %16.3g\n", k, results[0].norms_before[t], results[0].norms_after[t],
                results[1].norms_before[t], results[1].norms_after[t], sigmoid_lecun[t]);
  }
  auto decay = [&](const std::vector<double>& n) {  // mean factor per step back in time (fit of log norm)
    return nn::decay_per_step(n);
  };
  std::printf("  mean factor per step back in time: sigmoid %.3g (init) %.3g (end), tanh %.3g (init) %.3g (end),\n"
              "  sigmoid with LeCun init %.3g: at the same initialisation the sigmoid's gradient vanishes %s than the\n"
              "  tanh's (sigmoid' <= 1/4, tanh' <= 1); N(0,1)'s larger weights partly make up for sigmoid' (%.3g).\n"
              "  Trained, both nets forget fast: a sum bit needs only the carry from one step back.\n",
              decay(results[0].norms_before), decay(results[0].norms_after), decay(results[1].norms_before),
              decay(results[1].norms_after), decay(sigmoid_lecun),
              decay(sigmoid_lecun) < decay(results[1].norms_before) ? "faster" : "NOT faster",
              decay(results[0].norms_before));

  const std::string png = out + "/04_bptt_grad_norms.png";
  if (example::gnuplot(out + "/04_bptt_grad_norms.gp",
                       "set terminal pngcairo noenhanced size 800,500 font ',10'\nset output '" + png +
                           "'\nset datafile separator ','\nset title 'vanishing gradient: ||dE_T/dz_t|| over " +
                           std::to_string(probe_bits) +
                           "-bit additions (simple RNN, hidden " + std::to_string(hidden) +
                           ")'\nset xlabel 'distance back in time, T - t'\nset ylabel '||dE_T/dz_t|| (mean)'\n"
                           "set logscale y\nset format y '1e%L'\nset grid\nset key bottom left\nplot '" + norms_path +
                           "' using 2:3 with linespoints lw 2 lc rgb '#d95f02' dt 2 title 'sigmoid, N(0,1), at init', "
                           "'' using 2:4 with linespoints lw 2 lc rgb '#d95f02' title 'sigmoid, N(0,1), trained', "
                           "'' using 2:5 with linespoints lw 2 lc rgb '#1b9e77' dt 2 title 'tanh, Xavier, at init', "
                           "'' using 2:6 with linespoints lw 2 lc rgb '#1b9e77' title 'tanh, Xavier, trained', "
                           "'' using 2:7 with linespoints lw 1 lc rgb '#7570b3' dt 3 title 'sigmoid, Xavier, at init'\n"))
    std::printf("wrote %s/04_bptt_training.csv, %s, %s\n", out.c_str(), norms_path.c_str(), png.c_str());

  double worst32 = 0, worst64 = 0;
  for (auto& r : results) worst32 = std::max(worst32, r.worst_rel32), worst64 = std::max(worst64, r.worst_rel64);
  std::printf("\nfloat32: the two gradients agree to %.2g (relative, whole gradient). float32 carries about 7 digits\n"
              "(eps 6e-8); the hand code and the tape sum in different orders (different BLAS calls and loops), and late in\n"
              "training the"
              " gradient is a small difference of larger terms, so their float32 results differ at that level.\n"
              "The exact check is float64 (same weights, same sequences): %.2g.\n",
              worst32, worst64);
  const bool pass = worst64 <= 1e-12;
  return example::report("04_bptt_by_hand", "hand BPTT vs tape, binary addition (sigmoid, tanh)",
                         "rel. gradient difference f64 (f32)", "f64 <= 1e-12",
                         example::fmt(worst64, 3) + " (f32 " + example::fmt(worst32, 3) + "); hand " +
                             example::fmt(results[0].us_hand, 3) + " us, tape " + example::fmt(results[0].us_tape, 3) +
                             " us CPU per sequence (sigmoid)",
                         pass);
}
