// Tokenizers and vocabularies for the sequence models: character level (a character is a Unicode code
// point, so 昨日 is two tokens) or word level (tokens separated by whitespace, as in the course's
// pre-segmented pairs "昨日 食べた 刺身 大丈夫 でしたか 。" -> "お腹 が 痛い です 。"). Special tokens
// come first: <pad> = 0, <unk> = 1, <bos> = 2, <eos> = 3. Everything here is off the tape.
// (A Tokenizer is the sequence models' vocabulary; nn/models/word2vec has its own count-sorted Vocabulary.)
#pragma once

#include <cstdint>
#include <string>
#include <unordered_map>
#include <vector>

#include "tapegrad/autograd/tensor.hpp"
#include "tapegrad/ops/index.hpp"

namespace tapegrad::nn {

// The code points of a UTF-8 string, each as its own UTF-8 substring. Invalid UTF-8 (stray continuation
// bytes, truncated sequences, overlong forms, surrogates, values above U+10FFFF) raises Error naming the
// byte offset.
std::vector<std::string> utf8_chars(const std::string& text);
// Words separated by whitespace: ASCII space, tab, CR, LF, VT, FF and the ideographic space U+3000.
// Validates the UTF-8 like utf8_chars.
std::vector<std::string> split_words(const std::string& text);

enum class TokenLevel { character, word };

// Token <-> id, with the special tokens, for one tokenisation level.
class Tokenizer {
 public:
  static constexpr std::int64_t pad_id = 0, unk_id = 1, bos_id = 2, eos_id = 3;
  static constexpr const char* pad = "<pad>";
  static constexpr const char* unk = "<unk>";
  static constexpr const char* bos = "<bos>";
  static constexpr const char* eos = "<eos>";

  // Character level drops whitespace by default (the course's corpora are space-segmented for the word
  // level; the characters are what a character model sees); keep_whitespace makes spaces tokens too, so
  // decode(encode(s)) == s for any s made of known characters.
  explicit Tokenizer(TokenLevel level = TokenLevel::word, bool keep_whitespace = false);
  // A vocabulary of the tokens of `texts` seen at least min_count times, in order of first appearance.
  static Tokenizer build(const std::vector<std::string>& texts, TokenLevel level, std::size_t min_count = 1,
                          bool keep_whitespace = false);

  TokenLevel level() const { return level_; }
  std::size_t size() const { return tokens_.size(); }
  std::vector<std::string> tokenize(const std::string& text) const;
  std::int64_t add(const std::string& token);   // the token's id (existing or new)
  bool contains(const std::string& token) const { return ids_.count(token) != 0; }
  std::int64_t id(const std::string& token) const;  // unk_id for an unknown token
  const std::string& token(std::int64_t id) const;  // Error when id is outside [0, size)

  // Text -> ids; unknown tokens become <unk>; optional <bos> in front and <eos> at the end.
  std::vector<std::int64_t> encode(const std::string& text, bool add_bos = false, bool add_eos = false) const;
  // Ids -> text: stops at the first <eos>, drops <pad> and <bos> (and keeps <unk> visible as "<unk>");
  // character level joins with no separator, word level with single spaces. Out-of-range ids: Error.
  std::string decode(const std::vector<std::int64_t>& ids) const;

 private:
  TokenLevel level_;
  bool keep_whitespace_;
  std::vector<std::string> tokens_;
  std::unordered_map<std::string, std::int64_t> ids_;
};

// A batch of sequences padded to (T, B), time-major (the layout of nn::run): ids (T, B) with pad_id
// after the end of each sequence, mask (T, B) with 1 for real tokens and 0 for padding, and the lengths.
// An empty batch, an empty sequence or a negative id: Error.
struct PaddedBatch {
  Index ids;
  Tensor mask;
  std::vector<std::size_t> lengths;
  std::size_t steps() const { return ids.shape[0]; }
  std::size_t batch() const { return ids.shape[1]; }
  // The ids of time step t, shape (B).
  Index step(std::size_t t) const;
};
PaddedBatch pad_batch(const std::vector<std::vector<std::int64_t>>& seqs, DType dtype = default_dtype(),
                      std::int64_t pad_id = Tokenizer::pad_id);

}  // namespace tapegrad::nn
