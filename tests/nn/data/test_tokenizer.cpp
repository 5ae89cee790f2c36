// nn/data/tokenizer: UTF-8 code points, word splitting, vocabularies with special tokens, padding.
#include <boost/test/unit_test.hpp>

#include <tapegrad/nn/data/tokenizer.hpp>

#include "support/xt.hpp"

using namespace tapegrad;
using namespace tapegrad::nn;
using namespace tapegrad::test;

namespace {
const std::string question = "昨日 食べた 刺身 大丈夫 でしたか 。";
const std::string answer = "お腹 が 痛い です 。";
}  // namespace

BOOST_AUTO_TEST_SUITE(tokenizer)

BOOST_AUTO_TEST_CASE(utf8_code_points) {
  const auto cs = utf8_chars("a昨é😀");
  BOOST_TEST(cs.size() == 4u);
  BOOST_TEST(cs[0] == "a");
  BOOST_TEST(cs[1] == "昨");
  BOOST_TEST(cs[2] == "é");
  BOOST_TEST(cs[3] == "😀");
  BOOST_TEST(utf8_chars("").empty());
}

BOOST_AUTO_TEST_CASE(invalid_utf8_is_an_error) {
  expect_error([] { utf8_chars("ab\x80"); }, {"utf8_chars", "byte 2", "0x80", "continuation"});
  expect_error([] { utf8_chars("\xE6\x98"); }, {"utf8_chars", "truncated"});       // first 2 bytes of 昨
  expect_error([] { utf8_chars("\xE6" "a" "\x98"); }, {"utf8_chars", "byte 1", "continuation"});
  expect_error([] { utf8_chars("\xC0\xAF"); }, {"utf8_chars", "overlong"});        // '/' in 2 bytes
  expect_error([] { utf8_chars("\xED\xA0\x80"); }, {"utf8_chars", "surrogate"});   // U+D800
  expect_error([] { utf8_chars("\xF4\x90\x80\x80"); }, {"utf8_chars", "U+10FFFF"});  // U+110000
  expect_error([] { utf8_chars("\xFF"); }, {"utf8_chars", "0xFF"});
  expect_error([] { split_words("ok \xFE"); }, {"split_words", "byte 3"});
  Tokenizer v(TokenLevel::character);
  expect_error([&] { v.encode("\xE6\x98"); }, {"Tokenizer::tokenize", "truncated"});
}

BOOST_AUTO_TEST_CASE(course_pair_word_level) {
  const auto words = split_words(question);
  BOOST_TEST(words.size() == 6u);
  BOOST_TEST(words[0] == "昨日");
  BOOST_TEST(words[4] == "でしたか");
  BOOST_TEST(words[5] == "。");
  BOOST_TEST(split_words("  お腹\u3000が\t痛い\n").size() == 3u);  // ideographic space U+3000 separates too

  Tokenizer v = Tokenizer::build({question, answer}, TokenLevel::word);
  BOOST_TEST(v.size() == 4u + 6u + 4u);  // specials, question's words, answer's new words ("。" shared)
  BOOST_TEST(v.token(Tokenizer::pad_id) == "<pad>");
  BOOST_TEST(v.token(Tokenizer::unk_id) == "<unk>");
  BOOST_TEST(v.token(Tokenizer::bos_id) == "<bos>");
  BOOST_TEST(v.token(Tokenizer::eos_id) == "<eos>");
  const auto ids = v.encode(answer, true, true);
  BOOST_TEST(ids.size() == 7u);
  BOOST_TEST(ids.front() == Tokenizer::bos_id);
  BOOST_TEST(ids.back() == Tokenizer::eos_id);
  BOOST_TEST(v.token(ids[1]) == "お腹");
  BOOST_TEST(v.decode(ids) == answer);
  BOOST_TEST(v.decode(v.encode(question)) == question);
  // Unknown words map to <unk>, which decodes visibly.
  const auto u = v.encode("お腹 が 空いた 。");
  BOOST_TEST(u[2] == Tokenizer::unk_id);
  BOOST_TEST(v.decode(u) == "お腹 が <unk> 。");
}

BOOST_AUTO_TEST_CASE(course_pair_character_level) {
  Tokenizer v = Tokenizer::build({question, answer}, TokenLevel::character);
  const auto toks = v.tokenize(question);
  // 昨日食べた刺身大丈夫でしたか。: 15 characters, the spaces dropped.
  BOOST_TEST(toks.size() == 15u);
  BOOST_TEST(toks[0] == "昨");
  BOOST_TEST(toks[1] == "日");
  BOOST_TEST(toks[14] == "。");
  BOOST_TEST(v.decode(v.encode(question)) == "昨日食べた刺身大丈夫でしたか。");
  BOOST_TEST(v.decode(v.encode(answer, true, true)) == "お腹が痛いです。");
  BOOST_TEST(v.encode("猫")[0] == Tokenizer::unk_id);
  // keep_whitespace: lossless round trip.
  Tokenizer w = Tokenizer::build({question}, TokenLevel::character, 1, true);
  BOOST_TEST(w.tokenize(question).size() == 20u);
  BOOST_TEST(w.decode(w.encode(question)) == question);
}

BOOST_AUTO_TEST_CASE(decode_stops_at_eos_and_skips_padding) {
  Tokenizer v = Tokenizer::build({"a b c"}, TokenLevel::word);
  const auto a = v.id("a"), b = v.id("b"), c = v.id("c");
  BOOST_TEST(v.decode({Tokenizer::bos_id, a, b, Tokenizer::eos_id, c}) == "a b");
  BOOST_TEST(v.decode({a, Tokenizer::pad_id, c, Tokenizer::pad_id}) == "a c");
  expect_error([&] { v.decode({a, 99}); }, {"Tokenizer::decode", "id 99", "position 1", "[0, 7)"});
  expect_error([&] { v.decode({-1}); }, {"Tokenizer::decode", "id -1"});
  expect_error([&] { v.token(7); }, {"Tokenizer::token", "id 7"});
}

BOOST_AUTO_TEST_CASE(min_count_and_first_seen_order) {
  Tokenizer v = Tokenizer::build({"x y x", "z x y"}, TokenLevel::word, 2);
  BOOST_TEST(v.size() == 6u);
  BOOST_TEST(v.id("x") == 4);
  BOOST_TEST(v.id("y") == 5);
  BOOST_TEST(v.id("z") == Tokenizer::unk_id);
  BOOST_TEST(v.add("x") == 4);
  BOOST_TEST(v.add("z") == 6);
}

BOOST_AUTO_TEST_CASE(padding_a_batch) {
  auto p = pad_batch({{5, 6, 7}, {8}, {9, 10}}, DType::f64);
  BOOST_TEST(p.ids.shape == (Shape{3, 3}));
  BOOST_TEST(p.steps() == 3u);
  BOOST_TEST(p.batch() == 3u);
  const std::vector<std::int64_t> ids = {5, 8, 9, 6, 0, 10, 7, 0, 0};  // time-major
  BOOST_TEST(p.ids.values == ids, boost::test_tools::per_element());
  const std::vector<double> mask = {1, 1, 1, 1, 0, 1, 1, 0, 0};
  BOOST_TEST(p.mask.to_vector() == mask, boost::test_tools::per_element());
  BOOST_TEST(p.mask.shape() == (Shape{3, 3}));
  BOOST_TEST(p.lengths == (std::vector<std::size_t>{3, 1, 2}), boost::test_tools::per_element());
  BOOST_TEST(p.step(1).values == (std::vector<std::int64_t>{6, 0, 10}), boost::test_tools::per_element());
  expect_error([&] { p.step(3); }, {"PaddedBatch::step", "(3, 3)"});
  expect_error([] { pad_batch({}); }, {"pad_batch", "empty batch"});
  expect_error([] { pad_batch({{1, 2}, {}}); }, {"pad_batch", "sequence 1", "empty"});
  expect_error([] { pad_batch({{1, -2}}); }, {"pad_batch", "negative id -2"});
}

BOOST_AUTO_TEST_SUITE_END()
