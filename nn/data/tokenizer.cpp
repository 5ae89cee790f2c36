#include "tapegrad/nn/data/tokenizer.hpp"

#include <algorithm>
#include <cstdio>

namespace tapegrad::nn {

namespace {

std::string byte_hex(unsigned char c) {
  char buf[8];
  std::snprintf(buf, sizeof buf, "0x%02X", static_cast<unsigned>(c));
  return buf;
}

[[noreturn]] void bad_utf8(const char* fn, const std::string& why, std::size_t offset, unsigned char c) {
  throw Error(std::string(fn) + ": invalid UTF-8 at byte " + std::to_string(offset) + " (" + byte_hex(c) + "): " + why);
}

// Length in bytes of the code point starting at text[i]; validates it (RFC 3629).
std::size_t code_point_length(const char* fn, const std::string& text, std::size_t i, std::uint32_t* cp_out) {
  const auto b = [&](std::size_t k) { return static_cast<unsigned char>(text[k]); };
  const unsigned char c = b(i);
  std::size_t n;
  std::uint32_t cp;
  if (c < 0x80) {
    *cp_out = c;
    return 1;
  } else if ((c & 0xE0) == 0xC0) {
    n = 2, cp = c & 0x1F;
  } else if ((c & 0xF0) == 0xE0) {
    n = 3, cp = c & 0x0F;
  } else if ((c & 0xF8) == 0xF0) {
    n = 4, cp = c & 0x07;
  } else if ((c & 0xC0) == 0x80) {
    bad_utf8(fn, "continuation byte without a lead byte", i, c);
  } else {
    bad_utf8(fn, "byte never valid in UTF-8", i, c);
  }
  if (i + n > text.size()) bad_utf8(fn, "sequence truncated by the end of the text", i, c);
  for (std::size_t k = 1; k < n; ++k) {
    if ((b(i + k) & 0xC0) != 0x80) bad_utf8(fn, "expected a continuation byte", i + k, b(i + k));
    cp = (cp << 6) | (b(i + k) & 0x3F);
  }
  static constexpr std::uint32_t min_for_length[5] = {0, 0, 0x80, 0x800, 0x10000};
  if (cp < min_for_length[n]) bad_utf8(fn, "overlong encoding", i, c);
  if (cp >= 0xD800 && cp <= 0xDFFF) bad_utf8(fn, "UTF-16 surrogate code point", i, c);
  if (cp > 0x10FFFF) bad_utf8(fn, "code point above U+10FFFF", i, c);
  *cp_out = cp;
  return n;
}

bool is_space(std::uint32_t cp) {
  return cp == ' ' || cp == '\t' || cp == '\n' || cp == '\r' || cp == '\v' || cp == '\f' || cp == 0x3000;
}

}  // namespace

std::vector<std::string> utf8_chars(const std::string& text) {
  std::vector<std::string> out;
  for (std::size_t i = 0; i < text.size();) {
    std::uint32_t cp;
    const std::size_t n = code_point_length("utf8_chars", text, i, &cp);
    out.push_back(text.substr(i, n));
    i += n;
  }
  return out;
}

std::vector<std::string> split_words(const std::string& text) {
  std::vector<std::string> out;
  std::string word;
  for (std::size_t i = 0; i < text.size();) {
    std::uint32_t cp;
    const std::size_t n = code_point_length("split_words", text, i, &cp);
    if (is_space(cp)) {
      if (!word.empty()) out.push_back(std::move(word));
      word.clear();
    } else {
      word.append(text, i, n);
    }
    i += n;
  }
  if (!word.empty()) out.push_back(std::move(word));
  return out;
}

Tokenizer::Tokenizer(TokenLevel level, bool keep_whitespace) : level_(level), keep_whitespace_(keep_whitespace) {
  for (const char* s : {pad, unk, bos, eos}) add(s);
}

Tokenizer Tokenizer::build(const std::vector<std::string>& texts, TokenLevel level, std::size_t min_count,
                             bool keep_whitespace) {
  Tokenizer v(level, keep_whitespace);
  std::vector<std::string> order;
  std::unordered_map<std::string, std::size_t> counts;
  for (const auto& t : texts)
    for (auto& tok : v.tokenize(t))
      if (counts[tok]++ == 0) order.push_back(tok);
  for (const auto& tok : order)
    if (counts[tok] >= min_count) v.add(tok);
  return v;
}

std::vector<std::string> Tokenizer::tokenize(const std::string& text) const {
  if (level_ == TokenLevel::word) return split_words(text);
  std::vector<std::string> out;
  for (std::size_t i = 0; i < text.size();) {
    std::uint32_t cp;
    const std::size_t n = code_point_length("Tokenizer::tokenize", text, i, &cp);
    if (keep_whitespace_ || !is_space(cp)) out.push_back(text.substr(i, n));
    i += n;
  }
  return out;
}

std::int64_t Tokenizer::add(const std::string& token) {
  if (token.empty()) throw Error("Tokenizer::add: empty token");
  auto it = ids_.find(token);
  if (it != ids_.end()) return it->second;
  const auto id = static_cast<std::int64_t>(tokens_.size());
  tokens_.push_back(token);
  ids_.emplace(token, id);
  return id;
}

std::int64_t Tokenizer::id(const std::string& token) const {
  auto it = ids_.find(token);
  return it == ids_.end() ? unk_id : it->second;
}

const std::string& Tokenizer::token(std::int64_t id) const {
  if (id < 0 || id >= static_cast<std::int64_t>(tokens_.size()))
    throw Error("Tokenizer::token: id " + std::to_string(id) + " is outside [0, " + std::to_string(tokens_.size()) + ")");
  return tokens_[static_cast<std::size_t>(id)];
}

std::vector<std::int64_t> Tokenizer::encode(const std::string& text, bool add_bos, bool add_eos) const {
  std::vector<std::int64_t> ids;
  if (add_bos) ids.push_back(bos_id);
  for (const auto& tok : tokenize(text)) ids.push_back(id(tok));
  if (add_eos) ids.push_back(eos_id);
  return ids;
}

std::string Tokenizer::decode(const std::vector<std::int64_t>& ids) const {
  std::string out;
  bool first = true;
  for (std::size_t i = 0; i < ids.size(); ++i) {
    const std::int64_t id = ids[i];
    if (id < 0 || id >= static_cast<std::int64_t>(tokens_.size()))
      throw Error("Tokenizer::decode: id " + std::to_string(id) + " at position " + std::to_string(i) +
                  " is outside [0, " + std::to_string(tokens_.size()) + ")");
    if (id == eos_id) break;
    if (id == pad_id || id == bos_id) continue;
    if (level_ == TokenLevel::word && !first) out += ' ';
    out += tokens_[static_cast<std::size_t>(id)];
    first = false;
  }
  return out;
}

Index PaddedBatch::step(std::size_t t) const {
  const std::size_t T = steps(), B = batch();
  if (t >= T) throw Error("PaddedBatch::step: step " + std::to_string(t) + " outside ids " + ids.shape.str());
  return Index(std::vector<std::int64_t>(ids.values.begin() + static_cast<std::ptrdiff_t>(t * B),
                                         ids.values.begin() + static_cast<std::ptrdiff_t>((t + 1) * B)));
}

PaddedBatch pad_batch(const std::vector<std::vector<std::int64_t>>& seqs, DType dtype, std::int64_t pad_id) {
  if (seqs.empty()) throw Error("pad_batch: empty batch (no sequences)");
  const std::size_t B = seqs.size();
  std::size_t T = 0;
  for (std::size_t b = 0; b < B; ++b) {
    if (seqs[b].empty()) throw Error("pad_batch: sequence " + std::to_string(b) + " of " + std::to_string(B) + " is empty");
    for (std::size_t t = 0; t < seqs[b].size(); ++t)
      if (seqs[b][t] < 0)
        throw Error("pad_batch: negative id " + std::to_string(seqs[b][t]) + " in sequence " + std::to_string(b) +
                    " at position " + std::to_string(t));
    T = std::max(T, seqs[b].size());
  }
  PaddedBatch out;
  std::vector<std::int64_t> ids(T * B, pad_id);
  std::vector<double> mask(T * B, 0.0);
  for (std::size_t b = 0; b < B; ++b) {
    out.lengths.push_back(seqs[b].size());
    for (std::size_t t = 0; t < seqs[b].size(); ++t) {
      ids[t * B + b] = seqs[b][t];
      mask[t * B + b] = 1.0;
    }
  }
  out.ids = Index(std::move(ids), Shape{T, B});
  out.mask = from_values(mask, Shape{T, B}, dtype);
  return out;
}

}  // namespace tapegrad::nn
