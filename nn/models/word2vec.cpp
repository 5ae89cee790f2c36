#include "tapegrad/nn/models/word2vec.hpp"

#include <algorithm>
#include <cmath>
#include <numeric>

#include "tapegrad/nn/models/init.hpp"
#include "tapegrad/ops/activation.hpp"
#include "tapegrad/ops/elementwise.hpp"
#include "tapegrad/ops/reduce.hpp"
#include "tapegrad/ops/shape.hpp"

namespace tapegrad::nn {

// ---- Word2VecVocabulary ----

Word2VecVocabulary Word2VecVocabulary::build(const std::vector<std::string>& tokens, std::int64_t min_count) {
  std::unordered_map<std::string, std::size_t> seen;  // word -> slot in first-appearance order
  std::vector<std::string> order;
  std::vector<std::int64_t> count;
  for (const auto& w : tokens) {
    auto [it, fresh] = seen.emplace(w, order.size());
    if (fresh) {
      order.push_back(w);
      count.push_back(0);
    }
    ++count[it->second];
  }
  std::vector<std::size_t> idx(order.size());
  std::iota(idx.begin(), idx.end(), std::size_t(0));
  std::stable_sort(idx.begin(), idx.end(), [&](std::size_t a, std::size_t b) { return count[a] > count[b]; });
  Word2VecVocabulary v;
  for (std::size_t i : idx) {
    if (count[i] < min_count) break;  // sorted by count: the rest are rarer
    v.index_.emplace(order[i], std::int64_t(v.words_.size()));
    v.words_.push_back(order[i]);
    v.counts_.push_back(count[i]);
    v.total_ += count[i];
  }
  return v;
}

std::int64_t Word2VecVocabulary::id(const std::string& w) const {
  auto it = index_.find(w);
  if (it == index_.end())
    throw Error("Word2VecVocabulary::id: \"" + w + "\" is not in the vocabulary (" + std::to_string(size()) + " words)");
  return it->second;
}

const std::string& Word2VecVocabulary::word(std::int64_t id) const {
  if (id < 0 || std::size_t(id) >= words_.size())
    throw Error("Word2VecVocabulary::word: id " + std::to_string(id) + " is outside [0, " + std::to_string(size()) + ")");
  return words_[std::size_t(id)];
}

std::vector<std::int64_t> Word2VecVocabulary::encode(const std::vector<std::string>& tokens) const {
  std::vector<std::int64_t> ids;
  ids.reserve(tokens.size());
  for (const auto& w : tokens)
    if (auto it = index_.find(w); it != index_.end()) ids.push_back(it->second);
  return ids;
}

// ---- NegativeSampler ----

NegativeSampler::NegativeSampler(const std::vector<std::int64_t>& counts, double power) {
  const std::size_t n = counts.size();
  if (n == 0) throw Error("NegativeSampler: no counts");
  p_.resize(n);
  double z = 0;
  for (std::size_t i = 0; i < n; ++i) {
    if (counts[i] < 0) throw Error("NegativeSampler: count " + std::to_string(counts[i]) + " of id " + std::to_string(i) + " is negative");
    p_[i] = counts[i] == 0 ? 0.0 : std::pow(double(counts[i]), power);
    z += p_[i];
  }
  if (!(z > 0)) throw Error("NegativeSampler: all " + std::to_string(n) + " counts are zero");
  for (double& p : p_) p /= z;
  // Vose: scaled probabilities n p_i; pair each under-full column with an over-full one.
  accept_.assign(n, 1.0);
  alias_.resize(n);
  std::iota(alias_.begin(), alias_.end(), std::int64_t(0));
  std::vector<double> q(n);
  std::vector<std::size_t> small, large;
  for (std::size_t i = 0; i < n; ++i) {
    q[i] = p_[i] * double(n);
    (q[i] < 1.0 ? small : large).push_back(i);
  }
  while (!small.empty() && !large.empty()) {
    const std::size_t s = small.back(), l = large.back();
    small.pop_back();
    accept_[s] = q[s];
    alias_[s] = std::int64_t(l);
    q[l] = (q[l] + q[s]) - 1.0;
    if (q[l] < 1.0) {
      large.pop_back();
      small.push_back(l);
    }
  }
  // Whatever remains is full up to rounding.
  for (std::size_t i : small) accept_[i] = 1.0;
  for (std::size_t i : large) accept_[i] = 1.0;
}

std::int64_t NegativeSampler::operator()(Generator& gen) const {
  const std::size_t i = std::size_t(gen.below(p_.size()));
  return gen.uniform() < accept_[i] ? std::int64_t(i) : alias_[i];
}

Index NegativeSampler::sample(std::size_t rows, std::size_t k, Generator& gen) const {
  std::vector<std::int64_t> v(rows * k);
  for (auto& x : v) x = (*this)(gen);
  return Index(std::move(v), Shape{rows, k});
}

Index NegativeSampler::sample_avoiding(const std::vector<std::int64_t>& positives, std::size_t k, Generator& gen) const {
  std::vector<std::int64_t> v(positives.size() * k);
  for (std::size_t r = 0; r < positives.size(); ++r) {
    const std::int64_t pos = positives[r];
    if (pos >= 0 && std::size_t(pos) < p_.size() && p_[std::size_t(pos)] >= 1.0)
      throw Error("NegativeSampler::sample_avoiding: id " + std::to_string(pos) +
                  " is the only word with non-zero probability; no negative can avoid it");
    for (std::size_t j = 0; j < k; ++j) {
      std::int64_t x;
      do x = (*this)(gen);
      while (x == pos);
      v[r * k + j] = x;
    }
  }
  return Index(std::move(v), Shape{positives.size(), k});
}

// ---- subsampling ----

double keep_probability(std::int64_t count, std::int64_t total, double t) {
  if (count <= 0 || total <= 0 || count > total || !(t > 0))
    throw Error("keep_probability: need 0 < count <= total and t > 0, got count " + std::to_string(count) + ", total " +
                std::to_string(total) + ", t " + std::to_string(t));
  const double f = double(count) / double(total);
  return std::min(1.0, std::sqrt(t / f));
}

std::vector<std::int64_t> subsample(const std::vector<std::int64_t>& ids, const std::vector<std::int64_t>& counts, double t,
                                    Generator& gen) {
  const std::int64_t total = std::accumulate(counts.begin(), counts.end(), std::int64_t(0));
  std::vector<double> keep(counts.size(), 0.0);
  for (std::size_t i = 0; i < counts.size(); ++i)
    if (counts[i] > 0) keep[i] = keep_probability(counts[i], total, t);
  std::vector<std::int64_t> out;
  out.reserve(ids.size());
  for (std::size_t k = 0; k < ids.size(); ++k) {
    const std::int64_t id = ids[k];
    if (id < 0 || std::size_t(id) >= counts.size())
      throw Error("subsample: id " + std::to_string(id) + " (position " + std::to_string(k) + ") is outside [0, " +
                  std::to_string(counts.size()) + ") counts");
    if (keep[std::size_t(id)] >= 1.0 || gen.uniform() < keep[std::size_t(id)]) out.push_back(id);
  }
  return out;
}

// ---- examples ----

SkipGramPairs skipgram_pairs(const std::vector<std::int64_t>& ids, std::size_t window) {
  if (window == 0) throw Error("skipgram_pairs: window must be at least 1");
  std::vector<std::int64_t> c, o;
  const std::size_t n = ids.size();
  for (std::size_t i = 0; i < n; ++i) {
    const std::size_t lo = i >= window ? i - window : 0, hi = std::min(n - 1, i + window);
    for (std::size_t j = lo; j <= hi; ++j)
      if (j != i) {
        c.push_back(ids[i]);
        o.push_back(ids[j]);
      }
  }
  return {Index(std::move(c)), Index(std::move(o))};
}

CBOWExamples cbow_examples(const std::vector<std::int64_t>& ids, std::size_t window) {
  if (window == 0) throw Error("cbow_examples: window must be at least 1");
  std::vector<std::int64_t> ctx, tgt;
  const std::size_t n = ids.size();
  for (std::size_t i = window; i + window < n; ++i) {
    for (std::size_t j = i - window; j <= i + window; ++j)
      if (j != i) ctx.push_back(ids[j]);
    tgt.push_back(ids[i]);
  }
  const std::size_t N = tgt.size();
  return {Index(std::move(ctx), Shape{N, 2 * window}), Index(std::move(tgt))};
}

// ---- losses ----

namespace {

void check_tables(const char* who, const Tensor& w_in, const Tensor& w_out) {
  auto str = [](const Tensor& t) { return t.defined() ? t.shape().str() : std::string("undefined"); };
  if (!w_in.defined() || !w_out.defined() || w_in.rank() != 2 || w_out.rank() != 2 || w_in.size(1) != w_out.size(1))
    throw Error(std::string(who) + ": w_in " + str(w_in) + " and w_out " + str(w_out) + " must be (V, D) tables with the same D");
}

void check_ids(const char* who, const char* what, const Index& ids, std::size_t rank, std::size_t rows, std::size_t V) {
  const bool shape_ok = ids.shape.rank() == rank && ids.shape.numel() == ids.values.size() &&
                        (rows == std::size_t(-1) || ids.shape[0] == rows) && (rank < 2 || ids.shape[1] > 0);
  if (!shape_ok)
    throw Error(std::string(who) + ": " + what + " " + ids.shape.str() + " must be " +
                (rank == 1 ? "(N)" : "(N, K) with K >= 1") +
                (rows == std::size_t(-1) ? std::string() : " (N = " + std::to_string(rows) + ")"));
  for (std::size_t i = 0; i < ids.values.size(); ++i)
    if (ids.values[i] < 0 || std::size_t(ids.values[i]) >= V)
      throw Error(std::string(who) + ": " + what + " id " + std::to_string(ids.values[i]) + " (position " + std::to_string(i) +
                  ") is outside [0, " + std::to_string(V) + ")");
}

// mean_n [ -log sigmoid(<h_n, u_(o_n)>) - sum_k log sigmoid(-<h_n, u_(neg_nk)>) ] for h (N, D).
Tensor negative_sampling(const Tensor& h, const Tensor& w_out, const Index& target, const Index& negatives) {
  const std::size_t N = h.size(0), D = h.size(1);
  Tensor pos = sum(h * embedding(w_out, target), {1});  // (N)
  Tensor nscore = sum(embedding(w_out, negatives) * reshape(h, {N, 1, D}), {2});  // (N, K)
  return mean(-log_sigmoid(pos) - sum(log_sigmoid(-nscore), {1}));
}

}  // namespace

Tensor skipgram_loss(const Tensor& w_in, const Tensor& w_out, const Index& center, const Index& context,
                     const Index& negatives) {
  const char* who = "skipgram_loss";
  check_tables(who, w_in, w_out);
  check_ids(who, "center", center, 1, std::size_t(-1), w_in.size(0));
  const std::size_t N = center.shape[0];
  if (N == 0) throw Error("skipgram_loss: no pairs (center " + center.shape.str() + ")");
  check_ids(who, "context", context, 1, N, w_out.size(0));
  check_ids(who, "negatives", negatives, 2, N, w_out.size(0));
  return negative_sampling(embedding(w_in, center), w_out, context, negatives);
}

Tensor cbow_loss(const Tensor& w_in, const Tensor& w_out, const Index& contexts, const Index& target, const Index& negatives) {
  const char* who = "cbow_loss";
  check_tables(who, w_in, w_out);
  check_ids(who, "contexts", contexts, 2, std::size_t(-1), w_in.size(0));
  const std::size_t N = contexts.shape[0];
  if (N == 0) throw Error("cbow_loss: no examples (contexts " + contexts.shape.str() + ")");
  check_ids(who, "target", target, 1, N, w_out.size(0));
  check_ids(who, "negatives", negatives, 2, N, w_out.size(0));
  Tensor h = mean(embedding(w_in, contexts), {1});  // (N, D): the window's average input vector
  return negative_sampling(h, w_out, target, negatives);
}

Word2Vec::Word2Vec(std::size_t vocab, std::size_t dim, Generator& gen, DType dtype) {
  if (vocab == 0 || dim == 0)
    throw Error("Word2Vec: vocab " + std::to_string(vocab) + " and dim " + std::to_string(dim) + " must be positive");
  const double r = 0.5 / double(dim);
  w_in = register_parameter("w_in", uniform({vocab, dim}, -r, r, gen, dtype));
  w_out = register_parameter("w_out", zeros({vocab, dim}, dtype));
}

Tensor Word2Vec::skipgram_loss(const Index& center, const Index& context, const Index& negatives) const {
  return nn::skipgram_loss(w_in, w_out, center, context, negatives);
}

Tensor Word2Vec::cbow_loss(const Index& contexts, const Index& target, const Index& negatives) const {
  return nn::cbow_loss(w_in, w_out, contexts, target, negatives);
}

// ---- similarity ----

namespace {

struct Rows {
  std::vector<double> v;
  std::size_t V = 0, D = 0;
  std::vector<double> norm;
};

Rows rows_of(const char* who, const Tensor& e) {
  if (!e.defined() || e.rank() != 2)
    throw Error(std::string(who) + ": embeddings must be (V, D), got " + (e.defined() ? e.shape().str() : "undefined"));
  Rows r{e.to_vector(), e.size(0), e.size(1), {}};
  r.norm.resize(r.V);
  for (std::size_t i = 0; i < r.V; ++i) {
    double s = 0;
    for (std::size_t j = 0; j < r.D; ++j) s += r.v[i * r.D + j] * r.v[i * r.D + j];
    r.norm[i] = std::sqrt(s);
  }
  return r;
}

void check_id(const char* who, std::int64_t id, const Rows& r) {
  if (id < 0 || std::size_t(id) >= r.V)
    throw Error(std::string(who) + ": id " + std::to_string(id) + " is outside [0, " + std::to_string(r.V) +
                ") for embeddings (" + std::to_string(r.V) + ", " + std::to_string(r.D) + ")");
}

std::vector<Neighbour> best(const Rows& r, const std::vector<double>& q, std::size_t k, const std::vector<std::int64_t>& exclude) {
  double qn = 0;
  for (double x : q) qn += x * x;
  qn = std::sqrt(qn);
  std::vector<Neighbour> all;
  all.reserve(r.V);
  for (std::size_t i = 0; i < r.V; ++i) {
    if (std::find(exclude.begin(), exclude.end(), std::int64_t(i)) != exclude.end()) continue;
    double dot = 0;
    for (std::size_t j = 0; j < r.D; ++j) dot += r.v[i * r.D + j] * q[j];
    all.push_back({std::int64_t(i), (r.norm[i] > 0 && qn > 0) ? dot / (r.norm[i] * qn) : 0.0});
  }
  k = std::min(k, all.size());
  std::partial_sort(all.begin(), all.begin() + std::ptrdiff_t(k), all.end(), [](const Neighbour& a, const Neighbour& b) {
    return a.similarity > b.similarity || (a.similarity == b.similarity && a.id < b.id);
  });
  all.resize(k);
  return all;
}

}  // namespace

double cosine_similarity(const Tensor& embeddings, std::int64_t i, std::int64_t j) {
  const Rows r = rows_of("cosine_similarity", embeddings);
  check_id("cosine_similarity", i, r);
  check_id("cosine_similarity", j, r);
  double dot = 0;
  for (std::size_t d = 0; d < r.D; ++d) dot += r.v[std::size_t(i) * r.D + d] * r.v[std::size_t(j) * r.D + d];
  const double n = r.norm[std::size_t(i)] * r.norm[std::size_t(j)];
  return n > 0 ? dot / n : 0.0;
}

std::vector<Neighbour> nearest(const Tensor& embeddings, const std::vector<double>& query, std::size_t k,
                               const std::vector<std::int64_t>& exclude) {
  const Rows r = rows_of("nearest", embeddings);
  if (query.size() != r.D)
    throw Error("nearest: query of " + std::to_string(query.size()) + " values for embeddings (" + std::to_string(r.V) + ", " +
                std::to_string(r.D) + ")");
  return best(r, query, k, exclude);
}

std::vector<Neighbour> nearest(const Tensor& embeddings, std::int64_t word, std::size_t k) {
  const Rows r = rows_of("nearest", embeddings);
  check_id("nearest", word, r);
  const auto w = std::size_t(word);
  return best(r, std::vector<double>(r.v.begin() + std::ptrdiff_t(w * r.D), r.v.begin() + std::ptrdiff_t((w + 1) * r.D)), k,
              {word});
}

double neighbour_agreement(const Tensor& embeddings, const std::vector<std::int64_t>& ids, const std::vector<int>& labels,
                           std::size_t k) {
  const Rows r = rows_of("neighbour_agreement", embeddings);
  const std::size_t n = ids.size();
  if (labels.size() != n)
    throw Error("neighbour_agreement: " + std::to_string(n) + " ids but " + std::to_string(labels.size()) + " labels");
  if (k == 0 || k >= n)
    throw Error("neighbour_agreement: k = " + std::to_string(k) + " needs 1 <= k < the number of ids (" + std::to_string(n) + ")");
  for (std::int64_t id : ids) check_id("neighbour_agreement", id, r);
  // Unit rows of the words, then all pairwise cosines row by row: O(n^2 D), a second for a few thousand words.
  std::vector<double> u(n * r.D, 0.0);
  for (std::size_t i = 0; i < n; ++i) {
    const std::size_t w = std::size_t(ids[i]);
    if (r.norm[w] > 0)
      for (std::size_t j = 0; j < r.D; ++j) u[i * r.D + j] = r.v[w * r.D + j] / r.norm[w];
  }
  double total = 0;
  std::vector<Neighbour> sims(n);
  for (std::size_t i = 0; i < n; ++i) {
    for (std::size_t j = 0; j < n; ++j) {
      double dot = 0;
      for (std::size_t d = 0; d < r.D; ++d) dot += u[i * r.D + d] * u[j * r.D + d];
      sims[j] = {std::int64_t(j), j == i ? -2.0 : dot};  // itself last: below any cosine
    }
    std::partial_sort(sims.begin(), sims.begin() + std::ptrdiff_t(k), sims.end(), [](const Neighbour& a, const Neighbour& b) {
      return a.similarity > b.similarity || (a.similarity == b.similarity && a.id < b.id);
    });
    std::size_t same = 0;
    for (std::size_t m = 0; m < k; ++m) same += labels[std::size_t(sims[m].id)] == labels[i];
    total += double(same) / double(k);
  }
  return total / double(n);
}

std::vector<Neighbour> analogy(const Tensor& embeddings, std::int64_t a, std::int64_t b, std::int64_t c, std::size_t k) {
  const Rows r = rows_of("analogy", embeddings);
  for (std::int64_t id : {a, b, c}) check_id("analogy", id, r);
  std::vector<double> q(r.D, 0.0);
  auto add = [&](std::int64_t id, double sign) {
    const double n = r.norm[std::size_t(id)];
    if (n == 0) return;
    for (std::size_t j = 0; j < r.D; ++j) q[j] += sign * r.v[std::size_t(id) * r.D + j] / n;
  };
  add(b, 1.0);
  add(a, -1.0);
  add(c, 1.0);
  return best(r, q, k, {a, b, c});
}

}  // namespace tapegrad::nn
