// Recursive neural network (再帰型ニューラルネットワーク, Socher et al.) on generated sentiment trees with
// negation: one shared composition applied bottom-up over a binary parse tree,
//   p = tanh(concat(left, right) W + b)          (nn::RecursiveNN; leaves are rows of a word-vector table)
// and a softmax classifier on the root: negative / neutral / positive (--all-nodes also supervises every
// inner phrase, as the Stanford Sentiment Treebank does; the root alone is enough here).
//
// The language: phrases of 2..8 words with exactly one polar word ("good", "awful", ...) among neutral
// ones ("the", "movie", ...), bracketed at random; "not" wraps random subtrees: (not X). A node's
// sentiment is that of its polar word, flipped once per "not" that wraps it *on the path to the polar
// word*; a "not" around a neutral subtree changes nothing. So the sentiment is a function of the tree,
// not of the bag of words: counting all the nots (a bag-of-words rule) is wrong whenever a "not" wraps a
// neutral part. The program prints both bag-of-words rules as baselines, and also tests on longer phrases
// (9..14 words, more nots) than any seen in training, where only a structural rule carries over.
//
// Target: >= 95% accuracy on the roots of unseen test trees (3-way argmax; every root is pos or neg).
//
// --autobatch trains the same model a second time with the per-tree code run as autobatch::map (each tree
// a task, the nodes of one height batched across the minibatch: autograd/autobatch.hpp), from the same
// seeds, and reports the speed-up and that the result is the same (equal to float rounding).
#include <tapegrad/tapegrad.hpp>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "common/example.hpp"

using namespace tapegrad;

namespace {

// Vocabulary: neutral words, positive words, negative words, "not".
const std::vector<std::string> kNeutral = {"the", "movie", "film", "plot", "actors", "was", "is", "really",
                                           "very", "quite", "a", "story"};
const std::vector<std::string> kPositive = {"good", "great", "fun", "brilliant", "moving"};
const std::vector<std::string> kNegative = {"bad", "boring", "awful", "dull", "clumsy"};
const std::int64_t kNot = std::int64_t(kNeutral.size() + kPositive.size() + kNegative.size());
const std::size_t kVocab = std::size_t(kNot) + 1;

std::string word(std::int64_t id) {
  std::size_t i = std::size_t(id);
  if (i < kNeutral.size()) return kNeutral[i];
  i -= kNeutral.size();
  if (i < kPositive.size()) return kPositive[i];
  i -= kPositive.size();
  if (i < kNegative.size()) return kNegative[i];
  return "not";
}

struct Sample {
  nn::Tree tree;
  std::vector<int> label;  // per node: 0 negative, 1 neutral, 2 positive
  int nots_on_path = 0;    // nots wrapping the polar word (the flips that count)
  int nots_total = 0;      // all nots (what a bag of words sees)
  int polar = 0;           // +1 / -1: the polar word's own sentiment
};

// A random phrase of `min_len`..`max_len` words, random bracketing, each subtree wrapped in (not X) with
// probability p_not (at most max_nots nots).
Sample make_sample(Generator& gen, int min_len, int max_len, double p_not, int max_nots) {
  Sample s;
  const int len = min_len + int(gen.below(std::uint64_t(max_len - min_len + 1)));
  const int polar_at = int(gen.below(std::uint64_t(len)));
  s.polar = gen.below(2) ? 1 : -1;
  std::vector<int> sent;  // per node, -1/0/+1
  std::vector<bool> has_polar;
  auto leaf = [&](std::int64_t w, int sentiment, bool polar) {
    std::size_t n = s.tree.add_leaf(w);
    sent.push_back(sentiment);
    has_polar.push_back(polar);
    return n;
  };
  auto maybe_not = [&](std::size_t n) {
    if (s.nots_total >= max_nots || gen.uniform() >= p_not) return n;
    ++s.nots_total;
    if (has_polar[n]) ++s.nots_on_path;
    std::size_t nt = leaf(kNot, 0, false);
    std::size_t p = s.tree.add_parent(nt, n);
    sent.push_back(-sent[n]);
    has_polar.push_back(has_polar[n]);
    return p;
  };
  std::function<std::size_t(int, int)> build = [&](int lo, int hi) -> std::size_t {
    std::size_t n;
    if (hi - lo == 1) {
      if (lo == polar_at) {
        const auto& words = s.polar > 0 ? kPositive : kNegative;
        const std::int64_t base = std::int64_t(kNeutral.size() + (s.polar > 0 ? 0 : kPositive.size()));
        n = leaf(base + std::int64_t(gen.below(words.size())), s.polar, true);
      } else {
        n = leaf(std::int64_t(gen.below(kNeutral.size())), 0, false);
      }
    } else {
      const int k = lo + 1 + int(gen.below(std::uint64_t(hi - lo - 1)));
      const std::size_t l = build(lo, k), r = build(k, hi);
      n = s.tree.add_parent(l, r);
      sent.push_back(sent[l] + sent[r]);  // one polar word: at most one side is non-neutral
      has_polar.push_back(has_polar[l] || has_polar[r]);
    }
    return maybe_not(n);
  };
  build(0, len);
  for (int v : sent) s.label.push_back(v + 1);
  return s;
}

std::string show(const Sample& s) {
  std::vector<std::string> out(s.tree.size());
  for (std::size_t i = 0; i < s.tree.size(); ++i) {
    const auto& n = s.tree.nodes[i];
    out[i] = n.leaf >= 0 ? word(n.leaf) : "(" + out[std::size_t(n.left)] + " " + out[std::size_t(n.right)] + ")";
  }
  return out.back();
}

struct Model {
  Tensor E;  // word vectors (V, D): the leaf rows
  nn::RecursiveNN compose;
  nn::Linear classify;
  Model(std::size_t dim, Generator& gen)
      : E(parameter(nn::init::normal({kVocab, dim}, 0.5, gen))), compose(dim, gen), classify(dim, 3, gen) {}
  std::vector<Tensor> parameters() const {
    std::vector<Tensor> p = compose.parameters();
    for (auto& t : classify.parameters()) p.push_back(t);
    p.push_back(E);
    return p;
  }
  bool autobatch = false;  // the trees of a minibatch as autobatch::map (per-tree code, batched ops)
  // Logits of every node of every tree, (sum of nodes, 3), and the matching labels.
  Tensor logits(const std::vector<const Sample*>& batch, std::vector<std::int64_t>* labels, bool roots_only) const {
    // One tree's states: the root, or every node. The same code eagerly and as a map.
    auto tree_states = [&](std::size_t i) {
      return roots_only ? std::vector<Tensor>{compose(E, batch[i]->tree)} : compose.nodes(E, batch[i]->tree);
    };
    std::vector<std::vector<Tensor>> per_tree;
    if (autobatch) {
      per_tree = autobatch::map(batch.size(), tree_states);
    } else {
      for (std::size_t i = 0; i < batch.size(); ++i) per_tree.push_back(tree_states(i));
    }
    std::vector<Tensor> states;
    for (std::size_t i = 0; i < batch.size(); ++i) {
      states.insert(states.end(), per_tree[i].begin(), per_tree[i].end());
      if (!labels) continue;
      if (roots_only) labels->push_back(batch[i]->label.back());
      else labels->insert(labels->end(), batch[i]->label.begin(), batch[i]->label.end());
    }
    return classify(stack(states, 0));
  }
};

int argmax_row(const std::vector<double>& v, std::size_t row, std::size_t cols) {
  std::size_t best = 0;
  for (std::size_t c = 1; c < cols; ++c)
    if (v[row * cols + c] > v[row * cols + best]) best = c;
  return int(best);
}

struct Eval {
  double root_acc = 0, node_acc = 0;
  std::vector<int> right_by_nots, count_by_nots;  // root accuracy by the number of nots on the path
};

Eval evaluate(const Model& m, const std::vector<Sample>& data) {
  NoGrad no_grad;
  Eval e;
  e.right_by_nots.assign(8, 0);
  e.count_by_nots.assign(8, 0);
  std::size_t nodes = 0, nodes_right = 0, roots_right = 0;
  for (std::size_t i = 0; i < data.size(); i += 64) {
    std::vector<const Sample*> batch;
    for (std::size_t j = i; j < std::min(data.size(), i + 64); ++j) batch.push_back(&data[j]);
    std::vector<std::int64_t> labels;
    const std::vector<double> v = m.logits(batch, &labels, false).to_vector();
    std::size_t row = 0;
    for (const Sample* s : batch) {
      for (std::size_t k = 0; k < s->tree.size(); ++k, ++row) {
        const bool ok = argmax_row(v, row, 3) == labels[row];
        nodes_right += ok;
        ++nodes;
        if (k + 1 == s->tree.size()) {
          roots_right += ok;
          e.right_by_nots[std::size_t(s->nots_on_path)] += ok;
          e.count_by_nots[std::size_t(s->nots_on_path)] += 1;
        }
      }
    }
  }
  e.root_acc = double(roots_right) / double(data.size());
  e.node_acc = double(nodes_right) / double(nodes);
  return e;
}

}  // namespace

int main(int argc, char** argv) {
  example::Args args(argc, argv,
                     "06_recursive_nn: a recursive NN learns sentiment with negation on generated parse trees\n"
                     "  --steps N (default 3000, quick 600)  --batch B (32)  --dim D (24)  --lr LR (0.01)\n"
                     "  --train N (4000 trees)  --test N (2000)  --max-len L (8)  --all-nodes (supervise every node)\n"
                     "  --autobatch (train a second time with the trees as autobatch::map; report the speed-up)");
  const bool quick = args.quick();
  const long steps = args.integer("steps", quick ? 600 : 3000);
  const std::size_t batch = std::size_t(args.integer("batch", 32));
  const std::size_t dim = std::size_t(args.integer("dim", 24));
  const double lr = args.real("lr", 0.01);
  const std::size_t n_train = std::size_t(args.integer("train", 4000));
  const std::size_t n_test = std::size_t(args.integer("test", 2000));
  const int max_len = int(args.integer("max-len", 8));
  const bool roots_only = !args.flag("all-nodes");
  const bool autobatch_too = args.flag("autobatch");
  const double target = args.real("target", 0.95);
  const std::string out = args.out_dir();
  const std::uint64_t seed = args.seed();
  args.check_unused();

  constexpr double kPNot = 0.3;
  constexpr int kMaxNots = 4;
  Generator data_gen(seed * 7919 + 17);
  std::vector<Sample> train_set, test;
  for (std::size_t i = 0; i < n_train; ++i) train_set.push_back(make_sample(data_gen, 2, max_len, kPNot, kMaxNots));
  for (std::size_t i = 0; i < n_test; ++i) test.push_back(make_sample(data_gen, 2, max_len, kPNot, kMaxNots));
  std::vector<Sample> test_long;  // longer phrases than any in training, and more nots
  for (std::size_t i = 0; i < n_test; ++i)
    test_long.push_back(make_sample(data_gen, max_len + 1, max_len + 6, 0.3, kMaxNots + 2));

  std::printf("recursive NN: sentiment with negation on random binary parse trees\n");
  std::printf("  vocabulary %zu words (neutral, positive, negative, \"not\"), phrases of 2..%d words, "
              "each subtree wrapped in (not X) with p = %.2f (at most %d)\n",
              kVocab, max_len, kPNot, kMaxNots);
  for (int i = 0; i < 4; ++i)
    std::printf("  e.g. %-60s -> %s\n", show(test[std::size_t(i)]).c_str(), test[std::size_t(i)].label.back() == 2 ? "positive" : "negative");
  // Bag-of-words baselines on the test roots.
  std::size_t polar_only = 0, count_nots = 0;
  for (const Sample& s : test) {
    const int truth = s.label.back() == 2 ? 1 : -1;
    polar_only += s.polar == truth;
    count_nots += (s.nots_total % 2 ? -s.polar : s.polar) == truth;
  }
  std::printf("  baselines on the test roots: polar word alone %.1f%%, polar word flipped by every \"not\" %.1f%%\n",
              100.0 * polar_only / test.size(), 100.0 * count_nots / test.size());
  std::printf("model: word vectors (%zu, %zu), p = tanh([l r] W + b), W (%zu, %zu), softmax on %s; Adam lr %.3g, "
              "batch %zu trees, %ld steps\n",
              kVocab, dim, 2 * dim, dim, roots_only ? "the roots" : "every node", lr, batch, steps);

  // Trains a fresh model from the same seed; batched: the minibatch's trees as autobatch::map. The first
  // run writes the curve and shows progress.
  struct Run {
    std::unique_ptr<Model> model;
    Eval last;
    double seconds = 0, last_loss = 0;
  };
  std::unique_ptr<example::Csv> curve;
  auto train = [&](bool batched) {
    Run run;
    Generator gen(seed);
    run.model = std::make_unique<Model>(dim, gen);
    Model& m = *run.model;
    m.autobatch = batched;
    nn::Adam opt(m.parameters(), lr);
    if (!batched)  // (a unique_ptr: the file must be closed, i.e. flushed, before gnuplot reads it)
      curve = std::make_unique<example::Csv>(out + "/06_recursive_nn_curve.csv",
                                             std::vector<std::string>{"step", "train_loss", "test_root_acc", "test_node_acc"});
    example::Progress progress(batched ? "step (autobatched)" : "step", steps);
    double running = 0;
    long running_n = 0;
    const long eval_every = std::max(1L, steps / 20);
    double train_seconds = 0;
    for (long step = 1; step <= steps; ++step) {
      const auto t0 = std::chrono::steady_clock::now();
      std::vector<const Sample*> b;
      for (std::size_t i = 0; i < batch; ++i) b.push_back(&train_set[gen.below(train_set.size())]);
      std::vector<std::int64_t> labels;
      Tensor logits = m.logits(b, &labels, roots_only);
      Tensor loss = softmax_cross_entropy(logits, Index(labels));
      running += loss.item();
      ++running_n;
      run.last_loss = loss.item();
      opt.zero_grad();
      backward(loss);
      opt.step();
      train_seconds += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      if (step % eval_every == 0 || step == steps) {
        run.last = evaluate(m, test);
        if (!batched) curve->row(step, running / running_n, run.last.root_acc, run.last.node_acc);
        progress.update(step, "loss " + example::fmt(running / running_n) + "  test roots " +
                                  example::fmt(100 * run.last.root_acc, 4) + "%");
        running = 0;
        running_n = 0;
      }
    }
    run.seconds = train_seconds;
    return run;
  };
  const Run eager = train(false);
  const Eval& last = eager.last;
  const Model& m = *eager.model;

  std::printf("test accuracy by the number of nots on the path to the polar word:\n");
  example::Csv by_nots(out + "/06_recursive_nn_by_nots.csv", {"nots_on_path", "trees", "root_acc"});
  for (int k = 0; k <= kMaxNots; ++k) {
    const int n = last.count_by_nots[std::size_t(k)];
    if (!n) continue;
    const double acc = double(last.right_by_nots[std::size_t(k)]) / n;
    std::printf("  %d nots: %5d trees  %.2f%%\n", k, n, 100 * acc);
    by_nots.row(k, n, acc);
  }
  if (!roots_only) std::printf("all test nodes (3 classes): %.2f%%\n", 100 * last.node_acc);
  const Eval longer = evaluate(m, test_long);
  std::printf("longer test phrases (%d..%d words, up to %d nots; never seen in training): roots %.2f%%\n", max_len + 1,
              max_len + 6, kMaxNots + 2, 100 * longer.root_acc);
  const std::string curve_path = curve->path();
  curve.reset();
  example::gnuplot(out + "/06_recursive_nn.gp",
                   "set terminal pngcairo size 900,450\nset output '" + out + "/06_recursive_nn.png'\n"
                   "set datafile separator ','\nset key autotitle columnhead\nset multiplot layout 1,2\n"
                   "set title 'training loss (softmax cross-entropy)'\nset xlabel 'step'\nset logscale y\n"
                   "plot '" + curve_path + "' using 1:2 with lines lw 2 title 'train loss'\n"
                   "unset logscale y\nset title 'test accuracy'\nset yrange [0.4:1.01]\nset key bottom right\n"
                   "plot '" + curve_path + "' using 1:3 with lines lw 2 title 'test roots', " +
                   (roots_only ? std::string() : "'' using 1:4 with lines lw 2 title 'all test nodes', ") +
                   example::fmt(target) + " with lines dt 2 lc rgb 'gray' title 'target'\n"
                   "unset multiplot\n");
  const int rc = example::report("06_recursive_nn", "sentiment with negation on parse trees", "test root accuracy",
                         ">= " + example::fmt(100 * target, 3) + "%",
                         example::fmt(100 * last.root_acc, 4) + "% (longer phrases " +
                             example::fmt(100 * longer.root_acc, 4) + "%)",
                         last.root_acc >= target);
  if (autobatch_too) {
    // The same training with the trees as autobatch::map: same seeds, same minibatches, same result up to
    // float rounding (a batched product sums in another order), in less time.
    autobatch::reset_stats();
    const Run batched = train(true);
    const double speedup = eager.seconds / batched.seconds;
    const bool same = std::abs(batched.last.root_acc - eager.last.root_acc) <= 0.005 &&
                      std::abs(batched.last_loss - eager.last_loss) <= 1e-3 * std::max(1.0, std::abs(eager.last_loss));
    std::printf("autobatched: training %.2f s against %.2f s eagerly (speed-up %.2fx); test roots %.2f%% against %.2f%%, "
                "last minibatch loss %.6g against %.6g\n",
                batched.seconds, eager.seconds, speedup, 100 * batched.last.root_acc, 100 * eager.last.root_acc,
                batched.last_loss, eager.last_loss);
    std::printf("%s", autobatch::stats().table().c_str());
    return rc | example::report("06_recursive_nn (autobatched)", "the same training, trees as autobatch::map",
                    "speed-up at the same accuracy", "same accuracy (+-0.5 pt), loss to 1e-3",
                    example::fmt(speedup, 3) + "x (" + example::fmt(batched.seconds, 3) + " s vs " +
                        example::fmt(eager.seconds, 3) + " s), roots " + example::fmt(100 * batched.last.root_acc, 4) +
                        "% vs " + example::fmt(100 * eager.last.root_acc, 4) + "%",
                    same);
  }
  return rc;
}
