// The course's simple-RNN experiments (単純RNN の実験), as one table: weight initialisation (重みの初期値) x
// hidden activation (活性化関数) x learning rate (学習率), on the binary-addition task of example 02.
//
//   u_t = x_t W_in + z_(t-1) W + b,  z_t = f(u_t),  y_t = sigmoid(z_t W_out + c),  E = 1/2 sum_t (d_t - y_t)^2
//   8-bit numbers (a, b < 128), bits least significant first, hidden 16, SGD, one sequence per step.
//
//   initialisation: normal N(0, 1) (the course's default), LeCun N(0, 1/n_in) (the course calls it
//                   "Xavier"; see nn/models/init.hpp), He N(0, 2/n_in); for W_in, W and W_out alike, b = c = 0
//   activation f:   sigmoid, tanh, ReLU (the output y stays a sigmoid)
//   learning rate:  0.01, 0.1, 0.5
//
// For every configuration the program records the accuracy over training (exact sums over all 128 x 128
// pairs) and the per-time-step gradient norms ||dE_T/dz_t|| of the last step's error with respect to
// every hidden state, before and after training (tapegrad::grad(E_T, {z_1, ..., z_T})): their ratio
// ||dE_T/dz_1|| / ||dE_T/dz_T|| shows vanishing (<< 1) or exploding (>> 1) gradients through time.
// Then a hidden-size sweep (2 .. 32) in the course's setting, and a check of the course's claims:
// hidden 16 suits binary addition; ReLU with He initialisation explodes; tanh with "Xavier" and lr 0.1
// converges best.
//
// Target: the table is complete and at least one configuration reaches 99% exact sums.
#include <tapegrad/tapegrad.hpp>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <map>
#include <string>
#include <vector>

#include "common/example.hpp"

using namespace tapegrad;

namespace {

constexpr int kBits = 8;
constexpr int kPairs = 128 * 128;

enum class InitKind { normal, lecun, he };
const char* init_name(InitKind i) { return i == InitKind::normal ? "normal" : i == InitKind::lecun ? "xavier" : "he"; }
const char* init_label(InitKind i) {
  return i == InitKind::normal ? "N(0,1)" : i == InitKind::lecun ? "Xavier (LeCun, 1/n_in)" : "He (2/n_in)";
}
Tensor draw(InitKind i, const Shape& s, Generator& gen) {
  switch (i) {
    case InitKind::normal: return nn::init::normal(s, 1.0, gen);
    case InitKind::lecun: return nn::init::lecun_normal(s, gen);
    default: return nn::init::he_normal(s, gen);
  }
}

struct Model {
  Tensor W_in, W, b, W_out, c;
  nn::Activation f;
  Model(Generator& gen, std::size_t hidden, InitKind init, nn::Activation f_) : f(f_) {
    W_in = parameter(draw(init, {2, hidden}, gen));
    W = parameter(draw(init, {hidden, hidden}, gen));
    b = parameter(zeros({1, hidden}));
    W_out = parameter(draw(init, {hidden, 1}, gen));
    c = parameter(zeros({1, 1}));
  }
  std::vector<Tensor> params() const { return {W_in, W, b, W_out, c}; }
};

// Inputs x_t (N, 2) and targets d_t (N, 1) for a list of pairs.
struct Batch {
  std::vector<Tensor> x, d;
  std::vector<int> sums;
};
Batch make_batch(const std::vector<std::pair<int, int>>& pairs) {
  Batch bt;
  const std::size_t n = pairs.size();
  for (int t = 0; t < kBits; ++t) {
    std::vector<double> x(2 * n), d(n);
    for (std::size_t k = 0; k < n; ++k) {
      const auto [a, b] = pairs[k];
      x[2 * k] = (a >> t) & 1;
      x[2 * k + 1] = (b >> t) & 1;
      d[k] = ((a + b) >> t) & 1;
    }
    bt.x.push_back(from_values(x, {n, 2}));
    bt.d.push_back(from_values(d, {n, 1}));
  }
  for (auto [a, b] : pairs) bt.sums.push_back(a + b);
  return bt;
}

// Runs the RNN over a batch; returns E (summed over steps and sequences); z and y per step on request.
Tensor forward(const Model& m, const Batch& bt, std::vector<Tensor>* zs = nullptr, std::vector<Tensor>* ys = nullptr) {
  Tensor z = zeros({bt.x[0].size(0), m.W.size(0)});
  Tensor loss;
  for (int t = 0; t < kBits; ++t) {
    z = nn::activate(m.f, matmul(bt.x[t], m.W_in) + matmul(z, m.W) + m.b);
    Tensor y = sigmoid(matmul(z, m.W_out) + m.c);
    Tensor e = mse_loss(y, bt.d[t], Reduction::half_sum);
    loss = loss.defined() ? loss + e : e;
    if (zs) zs->push_back(z);
    if (ys) ys->push_back(y);
  }
  return loss;
}

// Fraction of the batch's sums that come out exactly (every bit right).
double accuracy(const Model& m, const Batch& all) {
  NoGrad no_grad;
  std::vector<Tensor> ys;
  forward(m, all, nullptr, &ys);
  std::vector<int> got(all.sums.size(), 0);
  for (int t = 0; t < kBits; ++t) {
    const float* y = ys[t].data<float>();
    for (std::size_t k = 0; k < got.size(); ++k) got[k] |= (y[k] > 0.5f ? 1 : 0) << t;
  }
  std::size_t exact = 0;
  for (std::size_t k = 0; k < got.size(); ++k) exact += got[k] == all.sums[k];
  return double(exact) / got.size();
}

// Mean over the batch's sequences of ||dE_T/dz_t|| for t = 1..T, E_T the last step's error.
std::vector<double> grad_norms(const Model& m, const Batch& probe) {
  std::vector<Tensor> zs, ys;
  forward(m, probe, &zs, &ys);
  Tensor e_last = mse_loss(ys.back(), probe.d.back(), Reduction::half_sum);
  std::vector<Tensor> g = grad(e_last, zs);
  std::vector<double> norms;
  for (const Tensor& gt : g) {
    const std::vector<double> v = gt.to_vector();
    const std::size_t n = gt.size(0), h = gt.size(1);
    double mean = 0;
    for (std::size_t k = 0; k < n; ++k) {
      double s = 0;
      for (std::size_t j = 0; j < h; ++j) s += v[k * h + j] * v[k * h + j];
      mean += std::sqrt(s) / n;
    }
    norms.push_back(mean);
  }
  Tape::current().clear();
  return norms;
}

struct RunResult {
  std::vector<double> curve;  // accuracy at every evaluation point
  double final_acc = 0;
  long iters_to_99 = -1;       // first evaluation point at >= 99%, or -1
  bool diverged = false;       // a non-finite loss, gradient or weight stopped the run
  double max_grad = 0;         // the largest global gradient norm ||dE/dtheta|| seen in training
  std::vector<double> norms0, norms1;  // ||dE_T/dz_t|| before and after training
};

bool finite(const Model& m) {
  for (const Tensor& p : m.params())
    for (double v : p.to_vector())
      if (!std::isfinite(v)) return false;
  return true;
}

// Trains one configuration; the curve is measured on `sample` (a fixed subset of the pairs, cheap enough to
// evaluate often), the final accuracy on all pairs.
RunResult train(std::size_t hidden, InitKind init, nn::Activation f, double lr, long iters, long eval_every,
                std::uint64_t seed, const Batch& all, const Batch& sample, const Batch& probe) {
  Generator gen(seed);
  Model m(gen, hidden, init, f);
  nn::SGD opt(m.params(), lr);
  RunResult r;
  r.norms0 = grad_norms(m, probe);
  r.curve.push_back(accuracy(m, sample));
  for (long it = 1; it <= iters; ++it) {
    const int a = static_cast<int>(gen.below(128)), b = static_cast<int>(gen.below(128));
    Tensor loss = forward(m, make_batch({{a, b}}));
    if (!std::isfinite(loss.item())) {
      r.diverged = true;
      Tape::current().clear();
      break;
    }
    opt.zero_grad();
    backward(loss);
    double norm = 0;
    try {
      norm = nn::clip_grad_norm(opt.parameters(), 1e300);  // measures only (never clips at this bound)
    } catch (const Error&) {  // a non-finite gradient
      r.diverged = true;
      break;
    }
    r.max_grad = std::max(r.max_grad, norm);
    opt.step();
    if (it % eval_every == 0) {
      r.curve.push_back(accuracy(m, sample));
      if (r.iters_to_99 < 0 && r.curve.back() >= 0.99) r.iters_to_99 = it;
    }
  }
  r.diverged = r.diverged || !finite(m);
  while (static_cast<long>(r.curve.size()) <= iters / eval_every) r.curve.push_back(r.diverged ? 0.0 : r.curve.back());
  r.final_acc = r.diverged ? 0.0 : accuracy(m, all);
  r.norms1 = r.diverged ? std::vector<double>(kBits, NAN) : grad_norms(m, probe);
  return r;
}

struct Row {
  InitKind init;
  nn::Activation f;
  double lr;
  std::vector<RunResult> runs;
  double mean_final() const {
    double s = 0;
    for (auto& r : runs) s += r.final_acc;
    return s / runs.size();
  }
  int reached() const {
    int n = 0;
    for (auto& r : runs) n += r.iters_to_99 >= 0;
    return n;
  }
  int diverged() const {
    int n = 0;
    for (auto& r : runs) n += r.diverged;
    return n;
  }
  double mean_iters_to_99() const {  // over the runs that reached 99%
    double s = 0;
    int n = 0;
    for (auto& r : runs)
      if (r.iters_to_99 >= 0) s += r.iters_to_99, ++n;
    return n ? s / n : NAN;
  }
  double max_drop() const {  // the largest fall of the sample accuracy below its best so far, over runs
    double m = 0;
    for (auto& r : runs) {
      double best = 0;
      for (double a : r.curve) best = std::max(best, a), m = std::max(m, best - a);
    }
    return m;
  }
  double max_grad() const {
    double m = 0;
    for (auto& r : runs) m = std::max(m, r.max_grad);
    return m;
  }
  // True when, in every run, no gradient reached z_T from E_T (0/0: the output sigmoid saturated to exactly
  // 0 or 1 in float32, or the hidden units died).
  bool saturated(bool after) const {
    for (auto& r : runs) {
      const auto& v = after ? r.norms1 : r.norms0;
      if (!(v.back() == 0)) return false;
    }
    return true;
  }
  // Geometric mean over runs of ||dE_T/dz_1|| / ||dE_T/dz_T||.
  double ratio(bool after) const {
    double s = 0;
    int n = 0;
    for (auto& r : runs) {
      const auto& v = after ? r.norms1 : r.norms0;
      const double q = v.front() / v.back();
      if (q == 0) return 0.0;  // nothing reached z_1 (dead ReLUs on the way)
      if (std::isfinite(q) && q > 0) s += std::log(q), ++n;
    }
    return n ? std::exp(s / n) : NAN;
  }
  std::string name() const {
    return std::string(init_name(init)) + "_" + nn::activation_name(f) + "_" + example::fmt(lr, 3);
  }
};

// Orders configurations by: more runs reaching 99%, then fewer iterations to get there, then final accuracy.
bool better(const Row& a, const Row& b) {
  if (a.reached() != b.reached()) return a.reached() > b.reached();
  if (a.reached() > 0 && a.mean_iters_to_99() != b.mean_iters_to_99()) return a.mean_iters_to_99() < b.mean_iters_to_99();
  return a.mean_final() > b.mean_final();
}

std::string pct(double v) { return std::isfinite(v) ? example::fmt(100 * v, 4) + "%" : "-"; }

}  // namespace

int main(int argc, char** argv) {
  example::Args args(argc, argv,
                     "03_rnn_experiments: initialisation x activation x learning rate on binary addition (simple RNN)\n"
                     "  --iters N (20000; quick 6000) sequences per run  --seeds S (3; quick 1) runs per configuration\n"
                     "  --hidden H (16)  --lrs a,b,c (0.01,0.1,0.5)  --no-sweep (skip the hidden-size sweep)");
  const bool quick = args.quick();
  const long iters = args.integer("iters", quick ? 6000 : 20000);
  const long seeds = args.integer("seeds", quick ? 1 : 3);
  const std::size_t hidden = args.integer("hidden", 16);
  const std::string lr_list = args.str("lrs", "0.01,0.1,0.5");
  const bool sweep = !args.flag("no-sweep");
  const std::uint64_t seed = args.seed();
  const std::string out = args.out_dir();
  args.check_unused();

  std::vector<double> lrs;
  for (std::size_t p = 0; p < lr_list.size();) {
    std::size_t q = lr_list.find(',', p);
    if (q == std::string::npos) q = lr_list.size();
    lrs.push_back(std::stod(lr_list.substr(p, q - p)));
    p = q + 1;
  }
  const long eval_every = std::max(1L, iters / 60);
  const std::vector<InitKind> inits = {InitKind::normal, InitKind::lecun, InitKind::he};
  const std::vector<nn::Activation> acts = {nn::Activation::sigmoid, nn::Activation::tanh, nn::Activation::relu};

  std::vector<std::pair<int, int>> pairs;
  for (int a = 0; a < 128; ++a)
    for (int b = 0; b < 128; ++b) pairs.push_back({a, b});
  const Batch all = make_batch(pairs);
  Generator probe_gen(12345);
  std::vector<std::pair<int, int>> probe_pairs;
  for (int k = 0; k < 256; ++k) probe_pairs.push_back(pairs[probe_gen.below(kPairs)]);
  const Batch probe = make_batch(probe_pairs);
  std::vector<std::pair<int, int>> sample_pairs;
  for (int k = 0; k < 1024; ++k) sample_pairs.push_back(pairs[probe_gen.below(kPairs)]);
  const Batch sample = make_batch(sample_pairs);

  std::printf("simple RNN on 8-bit binary addition: hidden %zu, SGD, one sequence per step, %ld sequences per run,\n"
              "%ld seed(s) per configuration; accuracy = exact sums (all bits right): final over all %d pairs, during\n"
              "training (curves, sequences to 99%%) over a fixed sample of 1024 pairs\n\n",
              hidden, iters, seeds, kPairs);

  std::vector<Row> rows;
  example::Progress progress("run", long(inits.size() * acts.size() * lrs.size()) * seeds, 2.0);
  long done = 0;
  for (InitKind init : inits)
    for (nn::Activation f : acts)
      for (double lr : lrs) {
        Row row{init, f, lr, {}};
        for (long s = 0; s < seeds; ++s) {
          row.runs.push_back(train(hidden, init, f, lr, iters, eval_every, seed + 1000 * s, all, sample, probe));
          progress.update(++done, row.name() + ": " + pct(row.runs.back().final_acc));
        }
        rows.push_back(std::move(row));
      }

  // ---- the table ----
  std::printf("\n%-24s %-8s %5s | %10s %7s %9s %4s %9s | %12s %12s\n", "initialisation", "f", "lr", "final acc", ">=99%",
              "seq@99", "div", "max|g|", "|g1|/|gT| 0", "|g1|/|gT| end");
  auto ratio_str = [](const Row& r, bool after) {
    if (r.saturated(after)) return std::string("sat");
    const double q = r.ratio(after);
    return std::isfinite(q) ? example::fmt(q, 3) : std::string("-");
  };
  {
    example::Csv table(out + "/03_rnn_experiments.csv",
                       {"init", "activation", "lr", "seeds", "mean_final_acc", "runs_reaching_99", "mean_iters_to_99",
                        "runs_diverged", "max_grad_norm", "grad_ratio_init", "grad_ratio_end",
                        "saturated_init", "saturated_end"});
    for (const Row& r : rows) {
      std::printf("%-24s %-8s %5g | %10s %4d/%-2ld %9s %4d %9.3g | %12s %12s\n", init_label(r.init),
                  nn::activation_name(r.f), r.lr, pct(r.mean_final()).c_str(), r.reached(), seeds,
                  std::isfinite(r.mean_iters_to_99()) ? example::fmt(r.mean_iters_to_99(), 6).c_str() : "-",
                  r.diverged(), r.max_grad(), ratio_str(r, false).c_str(), ratio_str(r, true).c_str());
      table.row(init_name(r.init), nn::activation_name(r.f), r.lr, seeds, r.mean_final(), r.reached(),
                r.mean_iters_to_99(), r.diverged(), r.max_grad(), r.ratio(false), r.ratio(true), int(r.saturated(false)),
                int(r.saturated(true)));
    }
  }
  std::printf("seq@99: sequences until the sample first reached 99%% (mean over runs that did); div: runs stopped by a\n"
              "non-finite loss/gradient/weight; max|g|: largest global gradient norm in training; |g1|/|gT|: geometric\n"
              "mean of ||dE_T/dz_1|| / ||dE_T/dz_T|| before (0) and after (end) training; sat: dE_T/dz_T = 0 exactly\n"
              "(output sigmoid saturated at 0 or 1 in float32, or dead ReLUs): no gradient flows at all\n");
  // Accuracy curves (mean over seeds), one column per configuration; gradient norms per time step.
  const std::string curves_path = out + "/03_rnn_accuracy_curves.csv";
  {
    std::ofstream f(curves_path);
    f << "iteration";
    for (const Row& r : rows) f << ',' << r.name();
    f << '\n';
    for (long k = 0; k <= iters / eval_every; ++k) {
      f << k * eval_every;
      for (const Row& r : rows) {
        double m = 0;
        for (auto& run : r.runs) m += run.curve[k];
        f << ',' << m / r.runs.size();
      }
      f << '\n';
    }
  }
  {
    example::Csv norms(out + "/03_rnn_grad_norms.csv", {"init", "activation", "lr", "phase", "t", "mean_norm_dET_dzt"});
    for (const Row& r : rows)
      for (int phase = 0; phase < 2; ++phase)
        for (int t = 0; t < kBits; ++t) {
          double m = 0;
          for (auto& run : r.runs) m += (phase ? run.norms1 : run.norms0)[t] / r.runs.size();
          norms.row(init_name(r.init), nn::activation_name(r.f), r.lr, phase ? "after" : "before", t + 1, m);
        }
  }

  // ---- hidden-size sweep in the course's setting (N(0,1), sigmoid, lr 0.1) ----
  std::vector<std::pair<std::size_t, Row>> sweep_rows;
  if (sweep) {
    std::printf("\nhidden-size sweep, the course's setting (N(0,1), sigmoid, lr 0.1), %ld sequences, %ld seed(s):\n", iters,
                seeds);
    for (std::size_t h : {2, 4, 8, 16, 32}) {
      Row row{InitKind::normal, nn::Activation::sigmoid, 0.1, {}};
      for (long s = 0; s < seeds; ++s)
        row.runs.push_back(train(h, row.init, row.f, row.lr, iters, eval_every, seed + 1000 * s, all, sample, probe));
      std::printf("  hidden %2zu: final acc %8s, reached 99%% in %d/%ld runs%s\n", h, pct(row.mean_final()).c_str(),
                  row.reached(), seeds,
                  row.reached() ? (" (mean " + example::fmt(row.mean_iters_to_99(), 6) + " sequences)").c_str() : "");
      sweep_rows.push_back({h, std::move(row)});
    }
  }

  // ---- what happened, and the course's claims ----
  std::vector<const Row*> ranked;
  for (const Row& r : rows) ranked.push_back(&r);
  std::stable_sort(ranked.begin(), ranked.end(), [](const Row* a, const Row* b) { return better(*a, *b); });
  auto find = [&](InitKind i, nn::Activation f, double lr) -> const Row* {
    for (const Row& r : rows)
      if (r.init == i && r.f == f && std::abs(r.lr - lr) < 1e-12) return &r;
    return nullptr;
  };
  auto rank_of = [&](const Row* r) {
    for (std::size_t k = 0; k < ranked.size(); ++k)
      if (ranked[k] == r) return long(k + 1);
    return -1L;
  };
  std::printf("\nbest configurations (most runs at >= 99%%, then fewest sequences to get there):\n");
  for (std::size_t k = 0; k < std::min<std::size_t>(5, ranked.size()); ++k)
    std::printf("  %zu. %-22s %-7s lr %-4g final %s, >= 99%% in %d/%ld runs, mean %s sequences\n", k + 1,
                init_label(ranked[k]->init), nn::activation_name(ranked[k]->f), ranked[k]->lr,
                pct(ranked[k]->mean_final()).c_str(), ranked[k]->reached(), seeds,
                std::isfinite(ranked[k]->mean_iters_to_99()) ? example::fmt(ranked[k]->mean_iters_to_99(), 6).c_str() : "-");

  std::printf("\nthe course's claims:\n");
  if (const Row* r = find(InitKind::lecun, nn::Activation::tanh, 0.1))
    std::printf("  * \"tanh with Xavier and lr 0.1 converges best\": rank %ld of %zu (final %s, >= 99%% in %d/%ld runs, %s "
                "sequences)%s\n",
                rank_of(r), rows.size(), pct(r->mean_final()).c_str(), r->reached(), seeds,
                std::isfinite(r->mean_iters_to_99()) ? example::fmt(r->mean_iters_to_99(), 6).c_str() : "-",
                rank_of(r) == 1 ? (ranked.size() > 1 && !better(*r, *ranked[1]) ? ": holds (tied for first)" : ": holds")
                                : ": does not hold here (see the best configurations above)");
  {
    std::printf("  * \"ReLU with He initialisation explodes\":");
    for (double lr : lrs)
      if (const Row* r = find(InitKind::he, nn::Activation::relu, lr))
        std::printf("\n      lr %g: final %s, >= 99%% in %d/%ld, diverged %d/%ld, max|g| %.3g, worst accuracy collapse "
                    "%s, |g1|/|gT| %s -> %s",
                    lr, pct(r->mean_final()).c_str(), r->reached(), seeds, r->diverged(), seeds, r->max_grad(),
                    pct(r->max_drop()).c_str(), ratio_str(*r, false).c_str(), ratio_str(*r, true).c_str());
    std::string learns, fails;
    int diverged = 0;
    for (double lr : lrs)
      if (const Row* r = find(InitKind::he, nn::Activation::relu, lr)) {
        std::string& list = r->reached() == seeds ? learns : fails;
        list += (list.empty() ? "" : ", ") + example::fmt(lr, 3);
        diverged += r->diverged();
      }
    std::printf("\n      verdict: ReLU + He learns (every run >= 99%%) at lr %s, not at lr %s; %d run(s) hit inf/nan. Look at\n"
                "      the collapses and max|g| for instability, and at N(0,1) + ReLU, whose activations blow up forward\n",
                learns.empty() ? "none" : learns.c_str(), fails.empty() ? "none" : fails.c_str(), diverged);
    const Row* rn = find(InitKind::normal, nn::Activation::relu, 0.1);
    if (rn)
      std::printf("      (for comparison N(0,1) ReLU lr 0.1: final %s, diverged %d/%ld, max|g| %.3g, |g1|/|gT| %s -> %s)\n",
                  pct(rn->mean_final()).c_str(), rn->diverged(), seeds, rn->max_grad(), ratio_str(*rn, false).c_str(),
                  ratio_str(*rn, true).c_str());
  }
  if (!sweep_rows.empty()) {
    std::size_t best_h = 0;
    const Row* best = nullptr;
    for (auto& [h, r] : sweep_rows)
      if (!best || better(r, *best)) best = &r, best_h = h;
    const Row* h16 = nullptr;
    std::size_t smallest = 0;
    for (auto& [h, r] : sweep_rows) {
      if (h == 16) h16 = &r;
      if (!smallest && r.reached() > 0) smallest = h;
    }
    std::printf("  * \"hidden 16 suits binary addition\": hidden 16 reaches 99%% in %d/%ld runs (%s sequences); fastest: "
                "hidden %zu; smallest that reaches 99%%: %s: %s\n",
                h16->reached(), seeds,
                std::isfinite(h16->mean_iters_to_99()) ? example::fmt(h16->mean_iters_to_99(), 6).c_str() : "-", best_h,
                smallest ? std::to_string(smallest).c_str() : "none",
                h16->reached() == seeds ? (best_h == 16 ? "holds" : "16 works, but it is not the only or the best size")
                                        : "does not hold here");
  }
  {
    double lo = 1e300, hi = 0;
    for (const Row& r : rows) {
      const double q = r.ratio(false);
      if (std::isfinite(q)) lo = std::min(lo, q), hi = std::max(hi, q);
    }
    std::printf("  * gradient through time at initialisation, ||dE_T/dz_1|| / ||dE_T/dz_T|| over 7 steps: from %.3g "
                "to %.3g across the configurations (< 1: vanishing, > 1: exploding)\n",
                lo, hi);
  }

  // ---- picture: accuracy curves, rows = initialisation, columns = activation, one line per lr ----
  std::string gp = "set terminal pngcairo noenhanced size 1200,900 font ',9'\nset output '" + out +
                   "/03_rnn_experiments.png'\nset datafile separator ','\nset key autotitle columnhead\n"
                   "set multiplot layout 3,3 title 'binary addition, simple RNN (hidden " + std::to_string(hidden) +
                   ", SGD): exact sums vs sequences seen, mean of " + std::to_string(seeds) + " seed(s)'\n"
                   "set yrange [0:100]\nset grid\nset key bottom right\n";
  for (std::size_t i = 0; i < inits.size(); ++i)
    for (std::size_t a = 0; a < acts.size(); ++a) {
      gp += std::string("set title '") + init_label(inits[i]) + ", " + nn::activation_name(acts[a]) + "'\n";
      gp += "set xlabel 'sequences'\nset ylabel 'exact sums (%)'\nplot ";
      for (std::size_t l = 0; l < lrs.size(); ++l) {
        const std::size_t col = 2 + (i * acts.size() + a) * lrs.size() + l;
        gp += (l ? ", " : "") + std::string("'") + curves_path + "' using 1:($" + std::to_string(col) +
              "*100) with lines lw 2 title 'lr " + example::fmt(lrs[l], 3) + "'";
      }
      gp += ", 99 with lines dt 2 lc rgb 'gray' notitle\n";
    }
  gp += "unset multiplot\n";
  if (example::gnuplot(out + "/03_rnn_experiments.gp", gp))
    std::printf("\nwrote %s/03_rnn_experiments.csv, 03_rnn_accuracy_curves.csv, 03_rnn_grad_norms.csv, 03_rnn_experiments.png\n",
                out.c_str());

  const bool complete = rows.size() == inits.size() * acts.size() * lrs.size();
  const Row* top = ranked.front();
  const bool pass = complete && top->reached() > 0;
  return example::report("03_rnn_experiments", "init x activation x lr on binary addition (simple RNN)",
                         "configs reaching 99% exact sums", ">= 1 of " + std::to_string(rows.size()),
                         std::to_string(std::count_if(rows.begin(), rows.end(), [](const Row& r) { return r.reached() > 0; })) +
                             " (best: " + init_name(top->init) + "/" + nn::activation_name(top->f) + "/lr " +
                             example::fmt(top->lr, 3) + ")",
                         pass);
}
