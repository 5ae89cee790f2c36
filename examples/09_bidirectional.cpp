// Bidirectional RNN (双方向RNN) on a tagging task that needs the future: the tag at step t is the token at
// step t + 1 (the last step's tag is a special <end> tag). Tokens are drawn uniformly and independently,
// so a unidirectional (causal) RNN, which has read only x_0..x_t at step t, can do no better than chance
// on every step but the last (where it can count to T and say <end>):
//   best causal accuracy = ((T - 1) / V + 1) / T.
// nn::Bidirectional runs one GRU forward and one backward and concatenates their states on t: the backward
// state at t has just read x_(t+1), so the tag is one linear readout away.
// Target: the bidirectional model reaches >= 99% per-token test accuracy; the unidirectional one, trained
// identically (same cell, same hidden size per direction, same budget), is reported beside it.
#include <tapegrad/tapegrad.hpp>

#include <algorithm>
#include <cstdio>
#include <memory>
#include <string>
#include <vector>

#include "common/example.hpp"

using namespace tapegrad;

namespace {

struct Batch {
  Index ids;     // (T, B) token ids
  Index labels;  // (T * B): the tag of every step, t-major
};

Batch make_batch(std::size_t T, std::size_t B, std::size_t V, Generator& gen) {
  std::vector<std::int64_t> ids(T * B), labels(T * B);
  for (auto& v : ids) v = std::int64_t(gen.below(V));
  for (std::size_t t = 0; t < T; ++t)
    for (std::size_t b = 0; b < B; ++b) labels[t * B + b] = t + 1 < T ? ids[(t + 1) * B + b] : std::int64_t(V);
  return {Index(ids, {T, B}), Index(labels)};
}

struct Tagger {
  std::unique_ptr<nn::Embedding> embed;
  std::unique_ptr<nn::GRUCell> uni;
  std::unique_ptr<nn::Bidirectional> bi;
  std::unique_ptr<nn::Linear> out;
  // Logits (T*B, V+1).
  Tensor operator()(const Index& ids) const {
    Tensor e = (*embed)(ids);  // (T, B, E)
    Tensor h = bi ? (*bi)(e).outputs : nn::run(*uni, e).outputs;
    return (*out)(reshape(h, {h.size(0) * h.size(1), h.size(2)}));
  }
  std::vector<Tensor> parameters() const {
    std::vector<Tensor> p = embed->parameters();
    for (auto& t : (bi ? bi->parameters() : uni->parameters())) p.push_back(t);
    for (auto& t : out->parameters()) p.push_back(t);
    return p;
  }
};

struct Run {
  std::string name;
  std::vector<double> loss, acc;  // per logging interval: training loss, test accuracy
  std::vector<double> acc_by_t;   // final test accuracy per position
  double test_acc = 0, seconds = 0;
};

double accuracy(const Tagger& m, const Batch& test, std::size_t T, std::size_t V, std::vector<double>* by_t) {
  NoGrad no_grad;
  const std::vector<double> v = m(test.ids).to_vector();
  const std::size_t C = V + 1, N = test.labels.values.size(), B = N / T;
  std::size_t right = 0;
  if (by_t) by_t->assign(T, 0.0);
  for (std::size_t i = 0; i < N; ++i) {
    std::size_t best = 0;
    for (std::size_t c = 1; c < C; ++c)
      if (v[i * C + c] > v[i * C + best]) best = c;
    const bool ok = std::int64_t(best) == test.labels.values[i];
    right += ok;
    if (by_t) (*by_t)[i / B] += ok ? 1.0 / double(B) : 0.0;
  }
  return double(right) / double(N);
}

}  // namespace

int main(int argc, char** argv) {
  example::Args args(argc, argv,
                     "09_bidirectional: tag x_t with x_(t+1): bidirectional GRU vs unidirectional GRU\n"
                     "  --T N (16)  --vocab V (10)  --embed E (16)  --hidden H (32 per direction)  --batch B (32)\n"
                     "  --steps N (default 1000, quick 200)  --lr LR (0.01)");
  const bool quick = args.quick();
  const std::size_t T = std::size_t(args.integer("T", 16));
  const std::size_t V = std::size_t(args.integer("vocab", 10));
  const std::size_t E = std::size_t(args.integer("embed", 16));
  const std::size_t H = std::size_t(args.integer("hidden", 32));
  const std::size_t B = std::size_t(args.integer("batch", 32));
  const long steps = args.integer("steps", quick ? 200 : 1000);
  const double lr = args.real("lr", 0.01);
  const double target = args.real("target", 0.99);
  const std::string out = args.out_dir();
  const std::uint64_t seed = args.seed();
  args.check_unused();
  const long log_every = std::max(1L, steps / 30);
  const double causal_best = ((double(T) - 1) / double(V) + 1) / double(T);

  std::printf("tagging: tag(t) = token(t+1), <end> at the last step; T = %zu, %zu tokens drawn uniformly\n", T, V);
  std::printf("  best a causal model can do: ((T-1)/V + 1)/T = %.1f%%; target (bidirectional) >= %.0f%%\n",
              100 * causal_best, 100 * target);
  std::printf("  embedding %zu, GRU hidden %zu per direction, batch %zu, Adam lr %g, %ld steps\n", E, H, B, lr, steps);
  Generator test_gen(seed + 1000);
  const Batch test = make_batch(T, 1000, V, test_gen);

  std::vector<Run> runs;
  for (int bidir = 0; bidir < 2; ++bidir) {
    Generator gen(seed);
    Tagger m;
    m.embed = std::make_unique<nn::Embedding>(V, E, gen);
    if (bidir)
      m.bi = std::make_unique<nn::Bidirectional>(std::make_unique<nn::GRUCell>(E, H, gen),
                                                 std::make_unique<nn::GRUCell>(E, H, gen));
    else
      m.uni = std::make_unique<nn::GRUCell>(E, H, gen);
    m.out = std::make_unique<nn::Linear>(bidir ? 2 * H : H, V + 1, gen);
    Run r;
    r.name = bidir ? "bidirectional GRU" : "unidirectional GRU";
    nn::Adam opt(m.parameters(), lr);
    example::Progress progress(r.name, steps);
    double running = 0;
    for (long step = 1; step <= steps; ++step) {
      Batch b = make_batch(T, B, V, gen);
      Tensor loss = softmax_cross_entropy(m(b.ids), b.labels);
      running += loss.item();
      opt.zero_grad();
      backward(loss);
      opt.step();
      if (step % log_every == 0) {
        r.loss.push_back(running / log_every);
        r.acc.push_back(accuracy(m, test, T, V, nullptr));
        progress.update(step, "loss " + example::fmt(running / log_every) + "  test acc " +
                                  example::fmt(100 * r.acc.back()) + "%");
        running = 0;
      }
    }
    r.seconds = progress.elapsed();
    r.test_acc = accuracy(m, test, T, V, &r.acc_by_t);
    runs.push_back(r);
  }

  const std::string curve_path = out + "/09_bidirectional_curves.csv";
  const std::string by_t_path = out + "/09_bidirectional_by_position.csv";
  {  // closed (flushed) before gnuplot reads them
    example::Csv curve(curve_path,
                       {"step", "unidirectional loss", "bidirectional loss", "unidirectional acc", "bidirectional acc"});
    for (std::size_t k = 0; k < runs[0].loss.size(); ++k)
      curve.row((k + 1) * log_every, runs[0].loss[k], runs[1].loss[k], runs[0].acc[k], runs[1].acc[k]);
    example::Csv by_t(by_t_path, {"t", "unidirectional acc", "bidirectional acc"});
    for (std::size_t t = 0; t < T; ++t) by_t.row(t, runs[0].acc_by_t[t], runs[1].acc_by_t[t]);
  }
  example::gnuplot(out + "/09_bidirectional.gp",
                   "set terminal pngcairo size 1200,450\nset output '" + out + "/09_bidirectional.png'\n"
                   "set datafile separator ','\nset multiplot layout 1,2\nset yrange [0:1.05]\nset key center right\n"
                   "set title 'test accuracy during training'\nset xlabel 'step'\n"
                   "plot '" + curve_path + "' using 1:4 with lines lw 2 title 'unidirectional', '' using 1:5 with "
                   "lines lw 2 title 'bidirectional', " + example::fmt(1.0 / V) + " with lines dt 2 lc rgb 'gray' "
                   "title 'chance 1/V'\n"
                   "set title 'test accuracy by position t (tag = token t+1; <end> at t = T-1)'\nset xlabel 't'\n"
                   "set xrange [-0.5:" + std::to_string(T - 1) + ".5]\nset style fill solid 0.6\nset boxwidth 0.4\n"
                   "set key below horizontal\n"
                   "plot '" + by_t_path + "' using ($1-0.2):2 with boxes title 'unidirectional', '' using ($1+0.2):3 "
                   "with boxes title 'bidirectional', " + example::fmt(1.0 / V) + " with lines dt 2 lc rgb 'gray' "
                   "title 'chance 1/V'\nunset multiplot\n");

  std::printf("\n%-22s %14s %10s\n", "model", "test accuracy", "time");
  for (auto& r : runs) std::printf("%-22s %13.2f%% %9.1fs\n", r.name.c_str(), 100 * r.test_acc, r.seconds);
  std::printf("(best causal accuracy %.1f%%, chance per step 1/V = %.0f%%)\n", 100 * causal_best, 100.0 / V);
  return example::report("09_bidirectional", "tag(t) = token(t+1)", "per-token test accuracy",
                         ">= " + example::fmt(100 * target, 3) + "% (bidirectional)",
                         "bi " + example::fmt(100 * runs[1].test_acc) + "%, uni " + example::fmt(100 * runs[0].test_acc) +
                             "% (causal best " + example::fmt(100 * causal_best, 3) + "%)",
                         runs[1].test_acc >= target);
}
