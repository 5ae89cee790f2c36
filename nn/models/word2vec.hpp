// word2vec (Mikolov et al. 2013): skip-gram and CBOW with negative sampling (負例サンプリング), the
// unigram^0.75 noise distribution, frequent-word subsampling, a vocabulary, and nearest neighbours and
// analogies by cosine similarity. The losses are composed from the engine's ops (embedding lookups,
// row-wise dot products as mul + sum, log_sigmoid); nothing is differentiated by hand.
//
// Two embedding tables, row-vector layout (V, D): w_in (input vectors v_w, the embeddings one keeps)
// and w_out (output vectors u_w). For a center c, a true context o and negatives n_1..n_K:
//   L = -log sigmoid(<v_c, u_o>) - sum_k log sigmoid(-<v_c, u_(n_k)>)
// and the loss is the mean over the pairs. CBOW uses h = mean of the window's v_w in place of v_c.
#pragma once

#include <cstdint>
#include <string>
#include <unordered_map>
#include <vector>

#include "tapegrad/nn/models/module.hpp"
#include "tapegrad/ops/index.hpp"

namespace tapegrad::nn {

// ---- vocabulary ----

// word2vec's vocabulary: words with their counts (the sampler and subsampling need them), ids by
// descending count (ties: first appearance in the tokens), words below min_count dropped, no special
// tokens. (nn/data/tokenizer.hpp's Vocabulary is the sequence models' one, with <pad>/<unk>/<bos>/<eos>.)
class Word2VecVocabulary {
 public:
  Word2VecVocabulary() = default;
  static Word2VecVocabulary build(const std::vector<std::string>& tokens, std::int64_t min_count = 1);

  std::size_t size() const { return words_.size(); }
  bool contains(const std::string& w) const { return index_.count(w) != 0; }
  std::int64_t id(const std::string& w) const;         // Error for an unknown word
  const std::string& word(std::int64_t id) const;      // Error for an id outside [0, size)
  const std::vector<std::string>& words() const { return words_; }
  const std::vector<std::int64_t>& counts() const { return counts_; }
  std::int64_t total() const { return total_; }        // sum of the kept counts
  // Ids of the tokens; tokens not in the vocabulary are skipped (as word2vec does).
  std::vector<std::int64_t> encode(const std::vector<std::string>& tokens) const;

 private:
  std::vector<std::string> words_;
  std::vector<std::int64_t> counts_;
  std::unordered_map<std::string, std::int64_t> index_;
  std::int64_t total_ = 0;
};

// ---- negative sampling: P(w) = count(w)^power / sum_v count(v)^power ----

// Walker's alias method (Vose's construction): O(V) to build, O(1) per draw, exact probabilities (no
// table quantisation as in word2vec's 1e8-entry unigram table).
class NegativeSampler {
 public:
  explicit NegativeSampler(const std::vector<std::int64_t>& counts, double power = 0.75);
  std::int64_t operator()(Generator& gen) const;
  // (rows, k) ids.
  Index sample(std::size_t rows, std::size_t k, Generator& gen) const;
  // (positives.size(), k) ids where row r never contains positives[r] (redrawn, as word2vec skips them).
  // Error when positives[r] is the only word with non-zero probability.
  Index sample_avoiding(const std::vector<std::int64_t>& positives, std::size_t k, Generator& gen) const;
  const std::vector<double>& probabilities() const { return p_; }
  std::size_t size() const { return p_.size(); }

 private:
  std::vector<double> p_, accept_;
  std::vector<std::int64_t> alias_;
};

// ---- frequent-word subsampling ----

// Mikolov et al. 2013 (eq. 5): a word of relative frequency f = count / total is discarded with
// probability 1 - sqrt(t / f), i.e. kept with min(1, sqrt(t / f)). (word2vec.c uses the variant
// sqrt(t/f) + t/f.) t is the threshold (1e-5 in the paper for large corpora).
double keep_probability(std::int64_t count, std::int64_t total, double t);
// The tokens that survive one draw each; counts are per id (Word2VecVocabulary::counts()), total their sum.
std::vector<std::int64_t> subsample(const std::vector<std::int64_t>& ids, const std::vector<std::int64_t>& counts, double t,
                                    Generator& gen);

// ---- training examples from a sequence of ids ----

struct SkipGramPairs {
  Index center, context;  // (N) each
};
// Every (center, context) with 1 <= |offset| <= window, in sequence order.
SkipGramPairs skipgram_pairs(const std::vector<std::int64_t>& ids, std::size_t window);

struct CBOWExamples {
  Index contexts;  // (N, 2 window): the window's words, left then right
  Index target;    // (N)
};
// Every position with a full window on both sides.
CBOWExamples cbow_examples(const std::vector<std::int64_t>& ids, std::size_t window);

// ---- losses (scalars, mean over the N examples) ----

// center (N), context (N), negatives (N, K).
Tensor skipgram_loss(const Tensor& w_in, const Tensor& w_out, const Index& center, const Index& context,
                     const Index& negatives);
// contexts (N, C) averaged into h (N, D); target (N); negatives (N, K).
Tensor cbow_loss(const Tensor& w_in, const Tensor& w_out, const Index& contexts, const Index& target, const Index& negatives);

// The two tables as a module. Init as word2vec.c: w_in ~ U(-0.5/D, 0.5/D), w_out = 0.
class Word2Vec : public Module {
 public:
  Word2Vec(std::size_t vocab, std::size_t dim, Generator& gen, DType dtype = default_dtype());
  Tensor skipgram_loss(const Index& center, const Index& context, const Index& negatives) const;
  Tensor cbow_loss(const Index& contexts, const Index& target, const Index& negatives) const;
  Tensor w_in, w_out;
};

// ---- similarity (off the tape; on the current values) ----

struct Neighbour {
  std::int64_t id;
  double similarity;  // cosine
};
// cos(e_i, e_j) for rows of embeddings (V, D); 0 when either row is zero.
double cosine_similarity(const Tensor& embeddings, std::int64_t i, std::int64_t j);
// The k rows most cosine-similar to query (D), best first, skipping the ids in exclude.
std::vector<Neighbour> nearest(const Tensor& embeddings, const std::vector<double>& query, std::size_t k,
                               const std::vector<std::int64_t>& exclude = {});
// The k nearest neighbours of a word, itself excluded.
std::vector<Neighbour> nearest(const Tensor& embeddings, std::int64_t word, std::size_t k);
// How often a word's nearest neighbours carry its label: for each ids[i], the k rows among ids (itself
// excluded) most cosine-similar to it, and the fraction of them with labels[i]; the mean over ids. Purity of
// planted clusters, or agreement with WordNet's lexicographer files; random vectors score about
// sum_l p_l^2 (the chance that two words share a label). Ties go to the earlier entry of ids.
double neighbour_agreement(const Tensor& embeddings, const std::vector<std::int64_t>& ids, const std::vector<int>& labels,
                           std::size_t k);
// a : b = c : ?  (3CosAdd on unit vectors: query = e_b/|e_b| - e_a/|e_a| + e_c/|e_c|; a, b, c excluded).
// "man : king = woman : ?" is analogy(E, man, king, woman, k).
std::vector<Neighbour> analogy(const Tensor& embeddings, std::int64_t a, std::int64_t b, std::int64_t c, std::size_t k);

}  // namespace tapegrad::nn
