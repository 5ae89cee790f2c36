// nn/data: reading question_answer files (good and bad files, limits), the reproducible split, the
// vocabulary from the training part, the mini-batch iterator, exact match.
#include <boost/test/unit_test.hpp>

#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <set>

#include <tapegrad/nn/data.hpp>

#include "support/files.hpp"
#include "support/xt.hpp"

using namespace tapegrad;
namespace fs = std::filesystem;

namespace {

std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

bool contains(const std::string& s, const std::string& part) { return s.find(part) != std::string::npos; }

}  // namespace

BOOST_AUTO_TEST_SUITE(data)

// The classic corpora's format: space padded, '_' between question and answer.
BOOST_AUTO_TEST_CASE(reads_the_classic_padded_format) {
  test::TempDir dir("data");
  const std::string f = dir.write("addition.txt", "16+75  _91  \n52+607 _659 \r\n\n75+22  _97  \nseptember 27, 1994_1994-09-27");
  const auto pairs = nn::read_pairs(f);
  BOOST_TEST_REQUIRE(pairs.size() == 4u);
  BOOST_TEST(pairs[0].question == "16+75");
  BOOST_TEST(pairs[0].answer == "91");
  BOOST_TEST(pairs[1].answer == "659");  // CRLF
  BOOST_TEST(pairs[2].line == 4u);       // the empty line 3 was skipped
  BOOST_TEST(pairs[3].question == "september 27, 1994");  // inner spaces kept; no final newline
  nn::ReadOptions raw;
  raw.trim = false;
  BOOST_TEST(nn::read_pairs(f, raw)[0].question == "16+75  ");
  nn::ReadOptions tab;
  tab.separator = "\t";
  BOOST_TEST(nn::read_pairs(dir.write("tab.txt", "\xEF\xBB\xBF昨日\t今日\n"), tab)[0].question == "昨日");  // BOM, UTF-8
}

BOOST_AUTO_TEST_CASE(bad_files_are_errors_with_the_line) {
  test::TempDir dir("data");
  std::string e = error_of([&] { nn::read_pairs(dir.write("a.txt", "1+1_2\n2+2 4\n")); });
  BOOST_TEST(contains(e, "line 2 has no separator '_'"), e);
  BOOST_TEST(contains(e, "a.txt"), e);
  nn::ReadOptions strict;
  strict.skip_empty_lines = false;
  e = error_of([&] { nn::read_pairs(dir.write("b.txt", "1+1_2\n   \n2+2_4\n"), strict); });
  BOOST_TEST(contains(e, "line 2 is empty"), e);
  e = error_of([&] { nn::read_pairs(dir.write("c.txt", "1+1_2\n2+2_4\n3+\xff" "3_6\n")); });
  BOOST_TEST(contains(e, "line 3 (which starts at byte 12 of the file): invalid UTF-8 at byte 2 (0xFF)"), e);
  e = error_of([&] { nn::read_pairs(dir.write("d.txt", "1+1_\n")); });
  BOOST_TEST(contains(e, "line 1 has an empty answer"), e);
  e = error_of([&] { nn::read_pairs(dir.write("e.txt", "\n\n")); });
  BOOST_TEST(contains(e, "holds no question_answer pair"), e);
  e = error_of([&] { nn::read_pairs((dir.path / "missing.txt").string()); });
  BOOST_TEST(contains(e, "missing.txt': cannot open"), e);
}

// A file larger than the limits stops with an Error instead of filling memory: a sparse 64 GiB file (no
// disk, no newline) stops at the line limit after reading one megabyte; a generated file stops at the
// byte and pair limits.
BOOST_AUTO_TEST_CASE(limits_stop_big_files_without_loading_them) {
  test::TempDir dir("data");
  const std::string sparse = (dir.path / "sparse.txt").string();
  {
    std::ofstream(sparse).close();
    fs::resize_file(sparse, std::uintmax_t(64) << 30);  // sparse: takes no disk space
  }
  std::string e = error_of([&] { nn::read_pairs(sparse); });
  BOOST_TEST(contains(e, "line 1 is longer than 1048576 bytes"), e);
  std::string big;
  for (int i = 0; i < 5000; ++i) big += std::to_string(i) + "+1_" + std::to_string(i + 1) + "\n";
  const std::string f = dir.write("big.txt", big);
  nn::ReadOptions limited;
  limited.max_bytes = 10000;
  e = error_of([&] { nn::read_pairs(f, limited); });
  BOOST_TEST(contains(e, "larger than 10000 bytes"), e);
  limited = {};
  limited.max_pairs = 100;
  e = error_of([&] { nn::read_pairs(f, limited); });
  BOOST_TEST(contains(e, "more than 100 pairs"), e);
  // Streaming: the callback sees pair by pair.
  std::size_t count = 0;
  nn::for_each_pair(f, {}, [&](nn::QAPair&& p) { count += p.answer == std::to_string(count + 1); });
  BOOST_TEST(count == 5000u);
}

BOOST_AUTO_TEST_CASE(split_is_reproducible_and_disjoint) {
  std::vector<nn::QAPair> pairs;
  for (int i = 0; i < 100; ++i) pairs.push_back({"q" + std::to_string(i), "a", std::size_t(i + 1)});
  const auto a = nn::split_train_test(pairs, 0.2, 7), b = nn::split_train_test(pairs, 0.2, 7), c = nn::split_train_test(pairs, 0.2, 8);
  BOOST_TEST(a.test.size() == 20u);
  BOOST_TEST(a.train.size() == 80u);
  std::set<std::string> seen;
  for (const auto& p : a.train) seen.insert(p.question);
  for (const auto& p : a.test) BOOST_TEST(seen.insert(p.question).second);  // disjoint, and all 100 present
  BOOST_TEST(seen.size() == 100u);
  bool same = true, differs = false;
  for (std::size_t i = 0; i < a.test.size(); ++i) {
    same = same && a.test[i].question == b.test[i].question;
    differs = differs || a.test[i].question != c.test[i].question;
  }
  BOOST_TEST(same);
  BOOST_TEST(differs);
  // The permutation itself is fixed (mt19937_64 is specified by the standard): a regression anchor.
  const auto order = nn::shuffled_indices(5, 1);
  BOOST_TEST(std::set<std::size_t>(order.begin(), order.end()).size() == 5u);
  BOOST_CHECK_THROW(nn::split_train_test(pairs, 0.0, 1), Error);
  BOOST_CHECK_THROW(nn::split_train_test({pairs[0]}, 0.5, 1), Error);
}

BOOST_AUTO_TEST_CASE(vocabulary_from_the_training_part_only) {
  std::vector<nn::QAPair> train = {{"ab", "c", 1}}, test = {{"xy", "z", 2}};
  const nn::Tokenizer vocab = nn::build_vocabulary(train, nn::TokenLevel::character);
  BOOST_TEST(vocab.size() == 4u + 3u);
  BOOST_TEST(vocab.contains("a"));
  BOOST_TEST(!vocab.contains("x"));
  BOOST_TEST(vocab.encode(test[0].question) == std::vector<std::int64_t>({nn::Tokenizer::unk_id, nn::Tokenizer::unk_id}),
             boost::test_tools::per_element());
  const nn::Tokenizer questions = nn::build_vocabulary(train, nn::TokenLevel::character, nn::PairSide::question);
  BOOST_TEST(!questions.contains("c"));
}

BOOST_AUTO_TEST_CASE(batches_pad_mask_and_shuffle_per_epoch_reproducibly) {
  std::vector<nn::QAPair> pairs;
  for (int i = 0; i < 10; ++i) pairs.push_back({std::string(std::size_t(1 + i % 3), 'a'), std::string(std::size_t(1 + i % 2), 'b'), 0});
  const nn::Tokenizer vocab = nn::build_vocabulary(pairs, nn::TokenLevel::character);
  nn::BatchIterator it(pairs, vocab, vocab, 4, 11);
  BOOST_TEST(it.batches_per_epoch() == 3u);
  // Every pair once per epoch; the last batch holds the remaining 2.
  std::multiset<std::size_t> seen;
  for (std::size_t b = 0; b < 3; ++b)
    for (std::size_t i : it.batch(0, b).index) seen.insert(i);
  BOOST_TEST(seen.size() == 10u);
  BOOST_TEST(std::set<std::size_t>(seen.begin(), seen.end()).size() == 10u);
  BOOST_TEST(it.batch(0, 2).size() == 2u);
  // Same (epoch, batch): same batch; another epoch: another order.
  BOOST_TEST(it.batch(1, 0).index == it.batch(1, 0).index, boost::test_tools::per_element());
  BOOST_TEST((it.batch(0, 0).index != it.batch(1, 0).index || it.batch(0, 1).index != it.batch(1, 1).index));
  // Padding, mask, lengths, <bos>/<eos> around the answer.
  const nn::PairBatch b = it.batch(0, 0);
  for (std::size_t k = 0; k < b.size(); ++k) {
    const nn::QAPair& p = pairs[b.index[k]];
    BOOST_TEST(b.source.lengths[k] == p.question.size());
    BOOST_TEST(b.target.lengths[k] == p.answer.size() + 2);
    for (std::size_t t = 0; t < b.source.steps(); ++t) {
      const bool real = t < p.question.size();
      BOOST_TEST(b.source.mask.at({t, k}) == (real ? 1.0 : 0.0));
      BOOST_TEST((b.source.ids.values[t * b.size() + k] == nn::Tokenizer::pad_id) == !real);
    }
    BOOST_TEST(b.target.ids.values[k] == nn::Tokenizer::bos_id);
    BOOST_TEST(b.target.ids.values[(p.answer.size() + 1) * b.size() + k] == nn::Tokenizer::eos_id);
  }
  nn::BatchIterator ordered(pairs, vocab, vocab, 4, 11, false);
  BOOST_TEST(ordered.batch(5, 1).index == std::vector<std::size_t>({4, 5, 6, 7}), boost::test_tools::per_element());
  BOOST_CHECK_THROW(it.batch(0, 3), Error);
  BOOST_CHECK_THROW(nn::BatchIterator(pairs, vocab, vocab, 0), Error);
}

// exact_match: a model trained to copy one-character questions gets them all; an untrained one does not
// (the count is compared against the decoded text computed here).
BOOST_AUTO_TEST_CASE(exact_match_counts_greedy_answers_equal_to_the_pair) {
  std::vector<nn::QAPair> pairs;
  for (char c : std::string("abcdef")) pairs.push_back({std::string(1, c), std::string(1, c), 0});
  const nn::Tokenizer vocab = nn::build_vocabulary(pairs, nn::TokenLevel::character);
  Generator gen(1);
  nn::Seq2SeqConfig config;
  config.src_vocab = config.tgt_vocab = vocab.size();
  config.embed = 8, config.hidden = 16;
  nn::Seq2Seq model(config, gen);
  nn::BatchIterator data(pairs, vocab, vocab, 6, 0, false);
  // Independent count: decode each greedy answer and compare the text.
  const auto by_text = [&] {
    nn::PairBatch b = data.batch(0, 0);
    nn::GenerateOptions greedy;
    greedy.max_length = 2;
    NoGrad no_grad;
    auto out = model.generate(b.source.ids, greedy, b.source.mask).ids;
    std::size_t n = 0;
    for (std::size_t k = 0; k < out.size(); ++k) n += vocab.decode(out[k]) == pairs[b.index[k]].answer;
    return n;
  };
  BOOST_TEST(nn::exact_matches(model, data, data.batch(0, 0)) == by_text());
  nn::Adam opt(model.parameters(), 0.05);
  for (int s = 0; s < 150; ++s) {
    nn::PairBatch b = data.batch(0, 0);
    Tensor loss = model.loss(b.source.ids, b.target.ids, b.source.mask);
    opt.zero_grad();
    backward(loss);
    opt.step();
  }
  BOOST_TEST(nn::exact_match(model, data) == 1.0);
  BOOST_TEST(nn::exact_matches(model, data, data.batch(0, 0)) == by_text());
}

BOOST_AUTO_TEST_SUITE_END()
