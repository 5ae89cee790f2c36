// libFuzzer harness: the UTF-8 tokenizer over arbitrary bytes. Invalid UTF-8 must be a tapegrad::Error;
// valid text must split into code points that concatenate back to the input, and a character-level
// tokenizer built on the text (keeping whitespace) must round-trip it through encode and decode.
#include <cstdint>
#include <cstdlib>
#include <string>
#include <vector>

#include <tapegrad/nn/data/tokenizer.hpp>

using namespace tapegrad::nn;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  std::vector<std::string> chars;
  try {
    chars = utf8_chars(text);
  } catch (const tapegrad::Error&) {
    // Every entry point validates the same way.
    try {
      split_words(text);
      std::abort();
    } catch (const tapegrad::Error&) {
    }
    return 0;
  }
  std::string joined;
  for (const auto& c : chars) {
    if (c.empty() || c.size() > 4) std::abort();
    joined += c;
  }
  if (joined != text) std::abort();

  for (const auto& w : split_words(text))
    if (w.empty()) std::abort();
  // Character level, whitespace kept: decode(encode(s)) == s exactly (a special token's spelling is
  // several code points, so no character collides with one).
  const Tokenizer chars_tok = Tokenizer::build({text}, TokenLevel::character, 1, true);
  const auto ids = chars_tok.encode(text, true, true);
  if (ids.size() != chars.size() + 2) std::abort();
  if (chars_tok.decode(ids) != text) std::abort();
  // Word level: every word of the text is known (the word "<unk>" itself maps to the unknown id).
  const Tokenizer words = Tokenizer::build({text}, TokenLevel::word);
  const auto word_list = split_words(text);
  const auto word_ids = words.encode(text);
  if (word_ids.size() != word_list.size()) std::abort();
  for (std::size_t i = 0; i < word_ids.size(); ++i)
    if (word_ids[i] == Tokenizer::unk_id && word_list[i] != Tokenizer::unk) std::abort();
  return 0;
}
