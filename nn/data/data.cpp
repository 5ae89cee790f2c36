#include "tapegrad/nn/data/data.hpp"

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <limits>
#include <cstring>
#include <fstream>
#include <random>

#include "tapegrad/autograd/tape.hpp"

namespace tapegrad::nn {

namespace {

std::string quoted(const std::string& s) { return "'" + s + "'"; }

// A short, printable excerpt of a line for error messages.
std::string excerpt(const std::string& line) {
  std::string s = line.size() > 60 ? line.substr(0, 60) + "..." : line;
  for (char& c : s)
    if (static_cast<unsigned char>(c) < 0x20) c = ' ';
  return "\"" + s + "\"";
}

std::string trimmed(const std::string& s) {
  const auto first = s.find_first_not_of(" \t");
  if (first == std::string::npos) return "";
  return s.substr(first, s.find_last_not_of(" \t") - first + 1);
}

// An unbiased draw in [0, n) from the engine's raw 64-bit output (Lemire's method would do too; rejection
// keeps it obvious).
std::uint64_t below(std::mt19937_64& engine, std::uint64_t n) {
  const std::uint64_t limit = std::numeric_limits<std::uint64_t>::max() - std::numeric_limits<std::uint64_t>::max() % n;
  std::uint64_t r;
  do r = engine();
  while (r >= limit);
  return r % n;
}

// SplitMix64 finaliser: mixes (seed, epoch) into an independent-looking seed.
std::uint64_t mix(std::uint64_t seed, std::uint64_t k) {
  std::uint64_t z = seed + 0x9e3779b97f4a7c15ULL * (k + 1);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

}  // namespace

void for_each_pair(const std::string& path, const ReadOptions& options, const std::function<void(QAPair&&)>& on_pair) {
  const std::string who = "read_pairs: " + quoted(path);
  if (options.separator.empty()) throw Error(who + ": the separator is empty");
  std::ifstream in(path, std::ios::binary);
  if (!in) throw Error(who + ": cannot open: " + std::strerror(errno));
  std::vector<char> block(std::size_t(1) << 16);
  std::string line;
  std::uint64_t total = 0, line_start = 0;
  std::size_t line_no = 0, pairs = 0;

  const auto handle = [&](std::string& text) {
    ++line_no;
    const std::string where = who + ": line " + std::to_string(line_no);
    if (line_no == 1 && text.compare(0, 3, "\xEF\xBB\xBF") == 0) text.erase(0, 3);  // byte-order mark
    if (!text.empty() && text.back() == '\r') text.pop_back();
    try {
      (void)utf8_chars(text);
    } catch (const Error& e) {
      std::string inner = e.what();
      const auto colon = inner.find(": ");
      if (colon != std::string::npos) inner = inner.substr(colon + 2);  // drop utf8_chars' own prefix
      throw Error(where + " (which starts at byte " + std::to_string(line_start) + " of the file): " + inner +
                  " (byte offsets are within the line)");
    }
    if (text.find_first_not_of(" \t") == std::string::npos) {
      if (options.skip_empty_lines) return;
      throw Error(where + " is empty (ReadOptions::skip_empty_lines skips such lines)");
    }
    const auto sep = text.find(options.separator);
    if (sep == std::string::npos)
      throw Error(where + " has no separator " + quoted(options.separator) + ": " + excerpt(text) +
                  " (expected question" + options.separator + "answer)");
    QAPair p;
    p.question = text.substr(0, sep);
    p.answer = text.substr(sep + options.separator.size());
    if (options.trim) {
      p.question = trimmed(p.question);
      p.answer = trimmed(p.answer);
    }
    if (p.question.empty() || p.answer.empty())
      throw Error(where + " has an empty " + (p.question.empty() ? "question" : "answer") + ": " + excerpt(text));
    if (++pairs > options.max_pairs)
      throw Error(who + ": more than " + std::to_string(options.max_pairs) + " pairs (ReadOptions::max_pairs)");
    p.line = line_no;
    on_pair(std::move(p));
  };

  while (in) {
    in.read(block.data(), static_cast<std::streamsize>(block.size()));
    const std::size_t n = static_cast<std::size_t>(in.gcount());
    if (n == 0) break;
    total += n;
    if (total > options.max_bytes)
      throw Error(who + ": the file is larger than " + std::to_string(options.max_bytes) +
                  " bytes (ReadOptions::max_bytes); it is read as a stream, raise the limit to read more");
    std::size_t from = 0;
    while (from < n) {
      const char* nl = static_cast<const char*>(std::memchr(block.data() + from, '\n', n - from));
      const std::size_t to = nl ? static_cast<std::size_t>(nl - block.data()) : n;
      if (line.size() + (to - from) > options.max_line_bytes)
        throw Error(who + ": line " + std::to_string(line_no + 1) + " is longer than " +
                    std::to_string(options.max_line_bytes) + " bytes (ReadOptions::max_line_bytes)");
      line.append(block.data() + from, to - from);
      if (!nl) break;
      handle(line);
      line_start = total - n + to + 1;
      line.clear();
      from = to + 1;
    }
  }
  if (in.bad()) throw Error(who + ": read failed after " + std::to_string(total) + " bytes");
  if (!line.empty()) handle(line);  // the last line without a newline
}

std::vector<QAPair> read_pairs(const std::string& path, const ReadOptions& options) {
  std::vector<QAPair> pairs;
  for_each_pair(path, options, [&](QAPair&& p) { pairs.push_back(std::move(p)); });
  if (pairs.empty()) throw Error("read_pairs: " + quoted(path) + ": the file holds no question" + options.separator + "answer pair");
  return pairs;
}

std::vector<std::size_t> shuffled_indices(std::size_t n, std::uint64_t seed) {
  std::vector<std::size_t> order(n);
  for (std::size_t i = 0; i < n; ++i) order[i] = i;
  std::mt19937_64 engine(seed);
  for (std::size_t i = n; i > 1; --i) std::swap(order[i - 1], order[below(engine, i)]);
  return order;
}

std::vector<std::size_t> epoch_order(std::size_t n, std::uint64_t seed, std::size_t epoch, bool shuffle) {
  if (shuffle) return shuffled_indices(n, mix(seed, epoch));
  std::vector<std::size_t> order(n);
  for (std::size_t i = 0; i < n; ++i) order[i] = i;
  return order;
}

DistributedSampler::DistributedSampler(std::size_t n, std::uint64_t seed, bool shuffle, bool drop_last, int rank, int size)
    : n_(n), seed_(seed), shuffle_(shuffle), drop_last_(drop_last), rank_(rank), size_(size) {
  if (size < 1 || rank < 0 || rank >= size)
    throw Error("DistributedSampler: rank " + std::to_string(rank) + " of " + std::to_string(size) +
                " is not a rank (need 0 <= rank < size, size >= 1)");
  if (n == 0) throw Error("DistributedSampler: the data set is empty (n = 0)");
  if (drop_last && n < std::size_t(size))
    throw Error("DistributedSampler: drop_last with n = " + std::to_string(n) + " < size = " + std::to_string(size) +
                " leaves every rank without a sample");
}

std::size_t DistributedSampler::num_samples() const {
  const std::size_t s = std::size_t(size_);
  return drop_last_ ? n_ / s : (n_ + s - 1) / s;
}

std::vector<std::size_t> DistributedSampler::indices() const {
  std::vector<std::size_t> perm = epoch_order(n_, seed_, std::size_t(epoch_), shuffle_);
  const std::size_t total = total_size();
  for (std::size_t i = n_; i < total; ++i) perm.push_back(perm[(i - n_) % n_]);  // pad (n may be < size)
  std::vector<std::size_t> mine;
  mine.reserve(num_samples());
  for (std::size_t i = std::size_t(rank_); i < total; i += std::size_t(size_)) mine.push_back(perm[i]);
  return mine;
}

TrainTestSplit split_train_test(const std::vector<QAPair>& pairs, double test_fraction, std::uint64_t seed) {
  if (!(test_fraction > 0 && test_fraction < 1))
    throw Error("split_train_test: test_fraction must be in (0, 1), got " + std::to_string(test_fraction));
  const std::size_t n = pairs.size();
  if (n < 2) throw Error("split_train_test: needs at least 2 pairs, got " + std::to_string(n));
  const std::size_t n_test = std::clamp<std::size_t>(static_cast<std::size_t>(std::llround(n * test_fraction)), 1, n - 1);
  const auto order = shuffled_indices(n, seed);
  TrainTestSplit split;
  for (std::size_t k = 0; k < n; ++k) (k < n_test ? split.test : split.train).push_back(pairs[order[k]]);
  return split;
}

Tokenizer build_vocabulary(const std::vector<QAPair>& pairs, TokenLevel level, PairSide side, bool keep_whitespace) {
  std::vector<std::string> texts;
  for (const QAPair& p : pairs) {
    if (side != PairSide::answer) texts.push_back(p.question);
    if (side != PairSide::question) texts.push_back(p.answer);
  }
  return Tokenizer::build(texts, level, 1, keep_whitespace);
}

BatchIterator::BatchIterator(const std::vector<QAPair>& pairs, const Tokenizer& source_vocab, const Tokenizer& target_vocab,
                             std::size_t batch_size, std::uint64_t seed, bool shuffle, DType dtype)
    : batch_size_(batch_size), seed_(seed), shuffle_(shuffle), dtype_(dtype) {
  if (pairs.empty()) throw Error("BatchIterator: no pairs");
  if (batch_size == 0) throw Error("BatchIterator: batch_size must be positive");
  for (std::size_t i = 0; i < pairs.size(); ++i) {
    auto src = source_vocab.encode(pairs[i].question);
    auto ans = target_vocab.encode(pairs[i].answer);
    if (src.empty() || ans.empty())
      throw Error("BatchIterator: pair " + std::to_string(i) + " (line " + std::to_string(pairs[i].line) + ") has no " +
                  (src.empty() ? "question" : "answer") + " tokens");
    std::vector<std::int64_t> tgt;
    tgt.reserve(ans.size() + 2);
    tgt.push_back(Tokenizer::bos_id);
    tgt.insert(tgt.end(), ans.begin(), ans.end());
    tgt.push_back(Tokenizer::eos_id);
    max_answer_ = std::max(max_answer_, ans.size());
    sources_.push_back(std::move(src));
    targets_.push_back(std::move(tgt));
    answers_.push_back(std::move(ans));
  }
}

PairBatch BatchIterator::batch(std::size_t epoch, std::size_t b) const {
  if (b >= batches_per_epoch())
    throw Error("BatchIterator::batch: batch " + std::to_string(b) + " of an epoch of " + std::to_string(batches_per_epoch()));
  const std::size_t from = b * batch_size_, to = std::min(size(), from + batch_size_);
  // Only the epoch's order is needed; it is recomputed per call (O(n)), small next to a training step.
  const auto all = order(epoch);
  return batch_of(std::vector<std::size_t>(all.begin() + std::ptrdiff_t(from), all.begin() + std::ptrdiff_t(to)));
}

PairBatch BatchIterator::batch_of(const std::vector<std::size_t>& index) const {
  if (index.empty()) throw Error("BatchIterator::batch_of: no index");
  for (std::size_t i : index)
    if (i >= size()) throw Error("BatchIterator::batch_of: pair " + std::to_string(i) + " of " + std::to_string(size()));
  PairBatch out;
  out.index = index;
  std::vector<std::vector<std::int64_t>> src, tgt;
  for (std::size_t i : out.index) {
    src.push_back(sources_[i]);
    tgt.push_back(targets_[i]);
  }
  out.source = pad_batch(src, dtype_);
  out.target = pad_batch(tgt, dtype_);
  return out;
}

std::size_t exact_matches(const Seq2Seq& model, const BatchIterator& data, const PairBatch& batch) {
  GenerateOptions greedy;
  greedy.max_length = data.max_answer_length() + 1;
  NoGrad no_grad;
  const auto generated = model.generate(batch.source.ids, greedy, batch.source.mask).ids;
  std::size_t correct = 0;
  for (std::size_t k = 0; k < batch.size(); ++k) correct += generated[k] == data.answer_ids(batch.index[k]);
  return correct;
}

double exact_match(const Seq2Seq& model, const BatchIterator& data) {
  std::size_t correct = 0;
  for (std::size_t b = 0; b < data.batches_per_epoch(); ++b) correct += exact_matches(model, data, data.batch(0, b));
  return static_cast<double>(correct) / static_cast<double>(data.size());
}

}  // namespace tapegrad::nn
