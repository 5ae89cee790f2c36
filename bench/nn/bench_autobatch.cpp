// Autobatching (autograd/autobatch.hpp): the same per-example code run eagerly (a loop over the examples
// of a minibatch, one graph) and as autobatch::map, on the workloads of issue 17. One iteration = one
// minibatch: forward, backward and zero_grad. float32, one thread.
//
//   BM_ab_treenn_{eager,batched}/D     recursive net p = tanh([l r] W + b) over 64 random binary trees of
//                                      5-40 leaves (rows of a (1000, D) word matrix), a linear layer to 5
//                                      classes at the root, softmax cross-entropy
//   BM_ab_treelstm_{eager,batched}/D   binary Tree-LSTM (nn::TreeLSTM, hidden D) on the same trees
//   BM_ab_tagger_{eager,batched}/D     BiLSTM tagger: 64 sentences of 5-40 tokens, embedding 64, LSTM
//                                      hidden D each way, a linear layer to 16 tags per token
//   BM_ab_lstm_equal_{batched,engine_batch}/T/B/I/H  B equal-length LSTM sequences written per example
//                                      (batched), against the engine's own hand-batched code: nn::run over
//                                      x (T, B, I); loss = sum of the last h squared
//   BM_ab_greedy_{eager,batched}/D     greedy decoding of 64 sources (5-40 tokens) by an LSTM encoder-
//                                      decoder under NoGrad, each example stopping at its end token or at
//                                      twice its source length: a value read (argmax) every step
//   BM_ab_single_{eager,batched}/D     one tree alone (the recursive net): map over one example
//   BM_ab_gemm_rate                    sgemm 512^3 on preallocated buffers: this core's GEMM rate, for the
//                                      workloads' floors (FLOPs / rate; the report computes them)
//
// Counters: gflop (the workload's GEMM FLOPs per minibatch, forward + backward), batches and calls
// (autobatch's batched calls and the calls that ran in them), unbatched (calls run alone or without a
// rule). Before timing, the batched run's loss is checked against the eager one (relative 1e-4).
#include <benchmark/benchmark.h>
#include <cblas.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <vector>

#include "tapegrad/tapegrad.hpp"

namespace {

using namespace tapegrad;

constexpr std::size_t kBatch = 64, kVocab = 1000, kClasses = 5, kTags = 16, kEmbed = 64;

nn::Tree random_tree(std::size_t leaves, Generator& gen) {
  nn::Tree t;
  std::vector<std::size_t> open;
  for (std::size_t i = 0; i < leaves; ++i) open.push_back(t.add_leaf(std::int64_t(gen.below(kVocab))));
  while (open.size() > 1) {  // join two neighbours at random: trees of every shape
    const std::size_t k = gen.below(open.size() - 1);
    const std::size_t p = t.add_parent(open[k], open[k + 1]);
    open.erase(open.begin() + long(k), open.begin() + long(k) + 2);
    open.insert(open.begin() + long(k), p);
  }
  return t;
}

std::vector<nn::Tree> trees_for(std::uint64_t seed, std::size_t n) {
  Generator gen(seed);
  std::vector<nn::Tree> trees;
  for (std::size_t i = 0; i < n; ++i) trees.push_back(random_tree(5 + gen.below(36), gen));
  return trees;
}

std::vector<std::vector<std::int64_t>> sentences_for(std::uint64_t seed, std::size_t n, std::size_t vocab) {
  Generator gen(seed);
  std::vector<std::vector<std::int64_t>> s(n);
  for (auto& x : s) {
    x.resize(5 + gen.below(36));
    for (auto& w : x) w = std::int64_t(gen.below(vocab));
  }
  return s;
}

// Runs f over the minibatch eagerly or batched, sums the losses; returns the summed loss.
template <class F> Tensor minibatch_loss(std::size_t n, bool batched, F&& f) {
  std::vector<Tensor> losses;
  if (batched) {
    losses = autobatch::map(n, f);
  } else {
    for (std::size_t i = 0; i < n; ++i) losses.push_back(f(i));
  }
  return sum(stack(losses, 0));
}

struct Counters {
  std::size_t batches = 0, calls = 0, unbatched = 0;
};

// One timed loop: step() once to check and count, then the iterations.
template <class Step> void timed(benchmark::State& state, double gflop, Step step) {
  autobatch::reset_stats();
  step();
  const auto& s = autobatch::stats();
  const Counters c{s.batches(), s.batched(), s.unbatched()};
  if (std::getenv("TAPEGRAD_AB_STATS") && c.batches) std::fprintf(stderr, "%s", s.table().c_str());
  for (auto _ : state) step();
  state.counters["gflop"] = gflop;
  state.counters["batches"] = double(c.batches);
  state.counters["calls"] = double(c.calls);
  state.counters["unbatched"] = double(c.unbatched);
}

// Checks that the batched loss equals the eager one before any timing.
template <class F> bool same_loss(benchmark::State& state, F&& loss_of) {
  const double a = loss_of(false).item(), b = loss_of(true).item();
  Tape::current().clear();
  if (std::abs(a - b) > 1e-4 * std::max(1.0, std::abs(a))) {
    char msg[160];
    std::snprintf(msg, sizeof msg, "batched loss %.9g differs from eager %.9g", b, a);
    state.SkipWithError(msg);
    return false;
  }
  return true;
}

// ---- the tree models ------------------------------------------------------------------------------

struct TreeModel {
  Generator gen{3};
  Tensor E;
  nn::RecursiveNN rnn;
  nn::TreeLSTM tree_lstm;
  nn::Linear out;
  std::vector<nn::Tree> trees = trees_for(17, kBatch);
  std::vector<Tensor> params;
  explicit TreeModel(std::size_t D)
      : E(parameter(randn({kVocab, D}, gen, 0.1))), rnn(D, gen), tree_lstm(D, D, gen), out(D, kClasses, gen) {}
  Tensor loss(bool lstm, bool batched) {
    return minibatch_loss(trees.size(), batched, [&](std::size_t i) {
      const Tensor root = lstm ? tree_lstm(E, trees[i]) : rnn(E, trees[i]);
      return softmax_cross_entropy(reshape(out(root), {1, kClasses}), Index({std::int64_t(i % kClasses)}));
    });
  }
  void step(bool lstm, bool batched) {
    backward(loss(lstm, batched));
    E.zero_grad();
    for (Tensor p : (lstm ? tree_lstm.parameters() : rnn.parameters())) p.zero_grad();
    for (Tensor p : out.parameters()) p.zero_grad();
  }
  double gflop(bool lstm) const {  // forward + backward GEMM FLOPs: 3x the forward products
    const double D = double(E.size(1));
    double f = 0;
    for (const auto& t : trees)
      for (const auto& n : t.nodes) f += n.leaf >= 0 ? (lstm ? 2 * D * 4 * D : 0) : (lstm ? 2 * 2 * D * 5 * D : 2 * 2 * D * D);
    return 3 * f * 1e-9;
  }
};

void tree_bench(benchmark::State& state, bool lstm, bool batched) {
  TreeModel m(std::size_t(state.range(0)));
  if (!same_loss(state, [&](bool b) { return m.loss(lstm, b); })) return;
  timed(state, m.gflop(lstm), [&] { m.step(lstm, batched); });
}
void BM_ab_treenn_eager(benchmark::State& s) { tree_bench(s, false, false); }
void BM_ab_treenn_batched(benchmark::State& s) { tree_bench(s, false, true); }
void BM_ab_treelstm_eager(benchmark::State& s) { tree_bench(s, true, false); }
void BM_ab_treelstm_batched(benchmark::State& s) { tree_bench(s, true, true); }

// One tree alone: the per-example machinery with nothing to batch.
void single_bench(benchmark::State& state, bool batched) {
  TreeModel m(std::size_t(state.range(0)));
  m.trees.resize(1);
  if (!same_loss(state, [&](bool b) { return m.loss(false, b); })) return;
  timed(state, m.gflop(false), [&] { m.step(false, batched); });
}
void BM_ab_single_eager(benchmark::State& s) { single_bench(s, false); }
void BM_ab_single_batched(benchmark::State& s) { single_bench(s, true); }

// ---- the BiLSTM tagger ----------------------------------------------------------------------------

struct Tagger {
  Generator gen{5};
  Tensor E;
  nn::Bidirectional bi;
  nn::Linear out;
  std::vector<std::vector<std::int64_t>> sentences = sentences_for(19, kBatch, kVocab);
  std::vector<Tensor> params;
  explicit Tagger(std::size_t H)
      : E(parameter(randn({kVocab, kEmbed}, gen, 0.1))),
        bi(std::make_unique<nn::LSTMCell>(kEmbed, H, gen), std::make_unique<nn::LSTMCell>(kEmbed, H, gen)),
        out(2 * H, kTags, gen) {
    params = bi.parameters();
    for (auto& p : out.parameters()) params.push_back(p);
    params.push_back(E);
  }
  Tensor loss(bool batched) {
    return minibatch_loss(sentences.size(), batched, [&](std::size_t i) {
      const auto& s = sentences[i];
      const std::size_t T = s.size();
      const Tensor x = reshape(embedding(E, Index(s)), {T, 1, kEmbed});
      const Tensor h = reshape(bi(x).outputs, {T, bi.forward_cell().hidden_size() * 2});
      std::vector<std::int64_t> tags(T);
      for (std::size_t t = 0; t < T; ++t) tags[t] = s[t] % std::int64_t(kTags);  // a word's tag: a function of it
      return softmax_cross_entropy(out(h), Index(tags));
    });
  }
  void step(bool batched) {
    backward(loss(batched));
    for (Tensor p : params) p.zero_grad();
  }
  double gflop() const {
    const double H = double(bi.forward_cell().hidden_size()), I = kEmbed;
    double tokens = 0;
    for (const auto& s : sentences) tokens += double(s.size());
    return 3 * tokens * (2 * (2 * I * 4 * H + 2 * H * 4 * H) + 2 * 2 * H * kTags) * 1e-9;
  }
};

void tagger_bench(benchmark::State& state, bool batched) {
  Tagger m(std::size_t(state.range(0)));
  if (!same_loss(state, [&](bool b) { return m.loss(b); })) return;
  timed(state, m.gflop(), [&] { m.step(batched); });
}
void BM_ab_tagger_eager(benchmark::State& s) { tagger_bench(s, false); }
void BM_ab_tagger_batched(benchmark::State& s) { tagger_bench(s, true); }

// ---- equal-length LSTM sequences: per example against the engine's own batch ----------------------

struct EqualLSTM {
  Generator gen{7};
  std::size_t T, B, I, H;
  nn::LSTMCell cell;
  Tensor x;  // (T, B, I)
  std::vector<Tensor> xs;  // per example (T, 1, I)
  EqualLSTM(std::size_t T_, std::size_t B_, std::size_t I_, std::size_t H_)
      : T(T_), B(B_), I(I_), H(H_), cell(I_, H_, gen), x(randn({T_, B_, I_}, gen)) {
    for (std::size_t b = 0; b < B; ++b) xs.push_back(slice(x, 1, b, b + 1).detach());
  }
  Tensor loss(bool per_example) {
    if (!per_example) {
      const Tensor h = nn::run(cell, x).last.h;
      return sum(h * h);
    }
    return minibatch_loss(B, true, [&](std::size_t b) {
      const Tensor h = nn::run(cell, xs[b]).last.h;
      return sum(h * h);
    });
  }
  void step(bool per_example) {
    backward(loss(per_example));
    for (Tensor p : cell.parameters()) p.zero_grad();
  }
};

void equal_bench(benchmark::State& state, bool per_example) {
  EqualLSTM m(std::size_t(state.range(0)), std::size_t(state.range(1)), std::size_t(state.range(2)),
              std::size_t(state.range(3)));
  if (!same_loss(state, [&](bool b) { return m.loss(b); })) return;
  const double gf = 3.0 * double(m.T * m.B) * 2 * double(m.I + m.H) * 4 * double(m.H) * 1e-9;
  timed(state, gf, [&] { m.step(per_example); });
}
void BM_ab_lstm_equal_batched(benchmark::State& s) { equal_bench(s, true); }
void BM_ab_lstm_equal_engine_batch(benchmark::State& s) { equal_bench(s, false); }

// ---- greedy decoding with per-example stopping ----------------------------------------------------

struct Greedy {
  Generator gen{9};
  std::size_t H;
  Tensor E;
  nn::LSTMCell enc, dec;
  nn::Linear out;
  std::vector<std::vector<std::int64_t>> sources = sentences_for(23, kBatch, 100);
  explicit Greedy(std::size_t H_)
      : H(H_), E(parameter(randn({100, kEmbed}, gen, 0.5))), enc(kEmbed, H_, gen), dec(kEmbed, H_, gen),
        out(H_, 100, gen) {}
  // Tokens decoded for example i: from the thought vector, feeding back the argmax, until token 0 or
  // twice the source length.
  std::size_t decode(std::size_t i) {
    const auto& s = sources[i];
    const Tensor x = reshape(embedding(E, Index(s)), {s.size(), 1, kEmbed});
    nn::State st = nn::run(enc, x).last;  // the thought vector
    std::int64_t token = 1;
    std::size_t n = 0;
    while (n < 2 * s.size()) {
      st = dec.step(embedding(E, Index({token})), st);
      const std::vector<double> logits = out(st.h).to_vector();  // the value read: per-example control flow
      token = std::int64_t(std::max_element(logits.begin(), logits.end()) - logits.begin());
      ++n;
      if (token == 0) break;
    }
    return n;
  }
  std::size_t run(bool batched) {
    NoGrad no_grad;
    std::size_t total = 0;
    if (batched) {
      for (std::size_t n : autobatch::map(sources.size(), [&](std::size_t i) { return decode(i); })) total += n;
    } else {
      for (std::size_t i = 0; i < sources.size(); ++i) total += decode(i);
    }
    return total;
  }
};

void greedy_bench(benchmark::State& state, bool batched) {
  Greedy m(std::size_t(state.range(0)));
  const std::size_t a = m.run(false), b = m.run(true);
  if (a != b) {
    state.SkipWithError("batched decoding emitted a different number of tokens than eager");
    return;
  }
  timed(state, 0.0, [&] { benchmark::DoNotOptimize(m.run(batched)); });
  state.counters["tokens"] = double(a);
}
void BM_ab_greedy_eager(benchmark::State& s) { greedy_bench(s, false); }
void BM_ab_greedy_batched(benchmark::State& s) { greedy_bench(s, true); }

// ---- the GEMM rate --------------------------------------------------------------------------------

void BM_ab_gemm_rate(benchmark::State& state) {
  const int n = 512;
  std::vector<float> a(n * n, 0.5f), b(n * n, 0.25f), c(n * n);
  for (auto _ : state) {
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, n, n, 1.0f, a.data(), n, b.data(), n, 0.0f, c.data(), n);
    benchmark::DoNotOptimize(c.data());
  }
  state.counters["gflops"] =
      benchmark::Counter(2.0 * n * n * n * 1e-9, benchmark::Counter::kIsIterationInvariantRate);
}

}  // namespace

#define AB_PAIR(name)                                                                        \
  BENCHMARK(BM_ab_##name##_eager)->Arg(32)->Arg(64)->Arg(128)->Unit(benchmark::kMillisecond); \
  BENCHMARK(BM_ab_##name##_batched)->Arg(32)->Arg(64)->Arg(128)->Unit(benchmark::kMillisecond)
AB_PAIR(treenn);
AB_PAIR(treelstm);
AB_PAIR(tagger);
AB_PAIR(greedy);
BENCHMARK(BM_ab_single_eager)->Arg(128)->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_ab_single_batched)->Arg(128)->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_ab_lstm_equal_batched)->Args({20, 32, 32, 64})->Args({20, 32, 128, 256})->Unit(benchmark::kMillisecond);
BENCHMARK(BM_ab_lstm_equal_engine_batch)->Args({20, 32, 32, 64})->Args({20, 32, 128, 256})->Unit(benchmark::kMillisecond);
BENCHMARK(BM_ab_gemm_rate)->Unit(benchmark::kMillisecond);
