// Data utilities for question -> answer corpora (seq2seq): one example a line, question and answer joined
// by a separator ("16+75  _91  ", "september 27, 1994_1994-09-27", the classic addition and date corpora),
// UTF-8. Reading streams line by line with limits (a file larger than memory is never loaded whole), a
// reproducible shuffled train/test split, vocabularies from the training part only, a mini-batch iterator
// with per-epoch shuffling that is a pure function of (seed, epoch, batch) (so a resumed run sees the same
// batches), and greedy exact match. Everything here is off the tape.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "tapegrad/nn/models/seq2seq.hpp"
#include "tapegrad/nn/data/tokenizer.hpp"

namespace tapegrad::nn {

struct QAPair {
  std::string question, answer;
  std::size_t line = 0;  // 1-based line in the file (0 when not read from a file)
};

struct ReadOptions {
  std::string separator = "_";  // split at its first occurrence; the question cannot contain it
  bool trim = true;             // strip spaces/tabs around question and answer (the corpora's padding)
  // Empty (or whitespace-only) lines are skipped by default, since editors leave one at the end; with
  // false they are an Error naming the line.
  bool skip_empty_lines = true;
  // Limits, each an Error naming the file and the limit: bytes read in all, number of pairs, bytes of one
  // line (a line is held whole; a file without newlines stops here, not at the end of memory).
  std::uint64_t max_bytes = std::uint64_t(1) << 32;  // 4 GiB
  std::size_t max_pairs = 50'000'000;
  std::size_t max_line_bytes = std::size_t(1) << 20;  // 1 MiB
};

// Streams the pairs of a file to `on_pair` in file order, one line in memory at a time. Errors (each a
// tapegrad::Error naming the file and the 1-based line): a missing or unreadable file, a line without the
// separator, an empty question or answer, invalid UTF-8 (with the byte offset in the line and in the file),
// an empty line when not skipped, a limit exceeded. CRLF line ends and a UTF-8 byte-order mark are accepted.
void for_each_pair(const std::string& path, const ReadOptions& options, const std::function<void(QAPair&&)>& on_pair);
// All pairs of a file (for_each_pair collected); a file with no pair is an Error.
std::vector<QAPair> read_pairs(const std::string& path, const ReadOptions& options = {});

// A permutation of 0..n-1 from mt19937_64(seed) with a Fisher-Yates shuffle and unbiased bounded draws:
// the same on every platform and standard library (std::shuffle's is implementation-defined).
std::vector<std::size_t> shuffled_indices(std::size_t n, std::uint64_t seed);

// The order in which epoch `epoch` visits n samples: shuffled_indices(n, seed mixed with epoch), or
// 0..n-1 without shuffling. BatchIterator and DistributedSampler both take their order from here (one
// shuffle), so a one-process run and a multi-process one with the same seed see the same global batches.
std::vector<std::size_t> epoch_order(std::size_t n, std::uint64_t seed, std::size_t epoch, bool shuffle = true);

// Which samples of a data set of n the process `rank` of `size` uses in an epoch (data parallelism; no MPI
// needed: tapegrad::dist's sampler() fills in this process's rank and size), as PyTorch's
// DistributedSampler: epoch_order(n, seed, epoch, shuffle), made a multiple of size long, of which rank r
// takes positions r, r + size, r + 2 size, ... So the shards are disjoint, and the j-th local batches of
// B / size samples of the ranks, interleaved, are exactly batch j of a BatchIterator (batch B, same seed).
// Remainder (n not a multiple of size): by default the order is padded by repeating its first samples
// (every sample is seen, a few twice per epoch); with drop_last its tail is dropped.
class DistributedSampler {
 public:
  DistributedSampler(std::size_t n, std::uint64_t seed, bool shuffle, bool drop_last, int rank, int size);

  void set_epoch(std::uint64_t epoch) { epoch_ = epoch; }
  std::uint64_t epoch() const { return epoch_; }
  std::vector<std::size_t> indices() const;  // this rank's shard of the current epoch, in order
  std::size_t num_samples() const;           // per rank: ceil(n / size), or floor with drop_last
  std::size_t total_size() const { return num_samples() * std::size_t(size_); }
  std::size_t dataset_size() const { return n_; }
  int rank() const { return rank_; }
  int size() const { return size_; }

 private:
  std::size_t n_;
  std::uint64_t seed_, epoch_ = 0;
  bool shuffle_, drop_last_;
  int rank_, size_;
};

struct TrainTestSplit {
  std::vector<QAPair> train, test;
};
// Shuffles with shuffled_indices(seed) and holds out round(n * test_fraction) pairs (at least 1, at most
// n-1). test_fraction in (0, 1); n >= 2. The same (pairs, fraction, seed) always give the same split.
TrainTestSplit split_train_test(const std::vector<QAPair>& pairs, double test_fraction, std::uint64_t seed);

enum class PairSide { question, answer, both };
// A vocabulary of the tokens of the given side of `pairs` (pass the training part only, so held-out
// tokens stay <unk>), in order of first appearance. Character level keeps whitespace as a token by
// default (inner spaces matter in "september 27, 1994").
Tokenizer build_vocabulary(const std::vector<QAPair>& pairs, TokenLevel level, PairSide side = PairSide::both,
                           bool keep_whitespace = true);

// A mini-batch of pairs: the questions (S, B) with their mask and lengths, the answers as the decoder's
// teacher-forcing sequence <bos> y_1 .. y_n <eos> (T, B), padded with pad_id; `index` says which pairs
// of the iterator's data set they are.
struct PairBatch {
  PaddedBatch source, target;
  std::vector<std::size_t> index;
  std::size_t size() const { return index.size(); }
};

// Mini-batches over a fixed data set. The pairs are encoded once. Epoch e visits the pairs in the order
// epoch_order(n, seed, e, shuffle) (order(e)); batch(e, b) is random access, so a run stopped after any step
// and resumed continues with the same batches. The last batch of an epoch may be smaller. batch_of(index)
// batches any pairs: a rank's slice of its DistributedSampler shard.
class BatchIterator {
 public:
  BatchIterator(const std::vector<QAPair>& pairs, const Tokenizer& source_vocab, const Tokenizer& target_vocab,
                std::size_t batch_size, std::uint64_t seed = 0, bool shuffle = true, DType dtype = default_dtype());
  std::size_t size() const { return sources_.size(); }  // pairs
  std::size_t batch_size() const { return batch_size_; }
  std::size_t batches_per_epoch() const { return (size() + batch_size_ - 1) / batch_size_; }
  PairBatch batch(std::size_t epoch, std::size_t b) const;
  std::vector<std::size_t> order(std::size_t epoch) const { return epoch_order(size(), seed_, epoch, shuffle_); }
  PairBatch batch_of(const std::vector<std::size_t>& index) const;  // Error for an index >= size()
  // The answer's ids of pair i (no <bos>/<eos>), what greedy decoding must produce.
  const std::vector<std::int64_t>& answer_ids(std::size_t i) const { return answers_[i]; }
  std::size_t max_answer_length() const { return max_answer_; }

 private:
  std::vector<std::vector<std::int64_t>> sources_, targets_, answers_;
  std::size_t batch_size_, max_answer_ = 0;
  std::uint64_t seed_;
  bool shuffle_;
  DType dtype_;
};

// Greedy decoding of each question of the batch (with its mask) against the pair's answer: the number of
// exact matches (every token, and <eos> right after the last; max_length = the longest answer + 1).
std::size_t exact_matches(const Seq2Seq& model, const BatchIterator& data, const PairBatch& batch);
// The fraction of exact matches over every pair of `data` (its batches of epoch 0).
double exact_match(const Seq2Seq& model, const BatchIterator& data);

}  // namespace tapegrad::nn
