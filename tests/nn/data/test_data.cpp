// nn/data/data: reading question_answer files (good and bad files, limits), the reproducible split, the
// vocabulary from the training part, the mini-batch iterator, exact match.
#include <boost/test/unit_test.hpp>

#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <set>

#include <tapegrad/nn/data/data.hpp>

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

// nn::DistributedSampler (data parallelism's shards; tests/dist runs it under mpirun) and the one shuffle it
// shares with BatchIterator.
BOOST_AUTO_TEST_SUITE(data_sampler)

// The shards of every rank (built here for any world size, without MPI) are disjoint and cover the data
// set; with padding, the extra samples are the permutation's first ones.
BOOST_AUTO_TEST_CASE(shards_are_disjoint_and_cover) {
  for (int size : {1, 2, 3, 4}) {
    for (std::size_t n : {std::size_t(1), std::size_t(10), std::size_t(12), std::size_t(101)}) {
      for (bool shuffle : {false, true}) {
        std::vector<std::size_t> count(n, 0);
        std::size_t total = 0;
        for (int r = 0; r < size; ++r) {
          nn::DistributedSampler s(n, 42, shuffle, false, r, size);
          s.set_epoch(3);
          const auto idx = s.indices();
          BOOST_TEST(idx.size() == (n + size - 1) / size);
          for (std::size_t i : idx) {
            BOOST_REQUIRE(i < n);
            ++count[i];
          }
          total += idx.size();
        }
        BOOST_TEST(total == ((n + size - 1) / size) * size);
        // Every sample at least once; only the padding (total - n of them) twice or more.
        std::size_t extra = 0;
        for (std::size_t c : count) {
          BOOST_TEST(c >= 1u);
          extra += c - 1;
        }
        BOOST_TEST(extra == total - n);
        if (n >= std::size_t(size)) {  // drop_last: disjoint, n - n % size samples
          std::set<std::size_t> seen;
          for (int r = 0; r < size; ++r) {
            const auto idx = nn::DistributedSampler(n, 42, shuffle, true, r, size).indices();
            BOOST_TEST(idx.size() == n / size);
            seen.insert(idx.begin(), idx.end());
          }
          BOOST_TEST(seen.size() == (n / size) * size);
        }
      }
    }
  }
}

// The j-th local batch of every rank together make the j-th global batch of one process.
BOOST_AUTO_TEST_CASE(local_batches_make_the_global_batch) {
  const std::size_t n = 64, B = 8;
  for (int size : {2, 4}) {
    nn::DistributedSampler one(n, 7, true, false, 0, 1);
    one.set_epoch(2);
    const auto all = one.indices();
    std::vector<std::vector<std::size_t>> local;
    for (int r = 0; r < size; ++r) {
      nn::DistributedSampler s(n, 7, true, false, r, size);
      s.set_epoch(2);
      local.push_back(s.indices());
    }
    const std::size_t b = B / size;
    for (std::size_t j = 0; j < n / B; ++j) {
      std::multiset<std::size_t> global(all.begin() + j * B, all.begin() + (j + 1) * B), joined;
      for (int r = 0; r < size; ++r) joined.insert(local[r].begin() + j * b, local[r].begin() + (j + 1) * b);
      BOOST_TEST((global == joined));
    }
  }
}

BOOST_AUTO_TEST_CASE(permutation_depends_on_seed_and_epoch) {
  auto perm = [](std::uint64_t seed, std::uint64_t epoch, bool shuffle) {
    nn::DistributedSampler s(50, seed, shuffle, false, 0, 1);
    s.set_epoch(epoch);
    return s.indices();
  };
  BOOST_TEST((perm(1, 0, true) == perm(1, 0, true)));
  BOOST_TEST((perm(1, 0, true) != perm(1, 1, true)));
  BOOST_TEST((perm(1, 0, true) != perm(2, 0, true)));
  std::vector<std::size_t> identity(50);
  for (std::size_t i = 0; i < 50; ++i) identity[i] = i;
  BOOST_TEST((perm(1, 5, false) == identity));
  auto sorted = perm(3, 4, true);
  std::sort(sorted.begin(), sorted.end());
  BOOST_TEST((sorted == identity));
}

BOOST_AUTO_TEST_CASE(bad_sampler_arguments) {
  test::expect_error([] { nn::DistributedSampler(10, 1, true, false, 2, 2); }, {"DistributedSampler", "rank 2 of 2"});
  test::expect_error([] { nn::DistributedSampler(10, 1, true, false, 0, 0); }, {"DistributedSampler"});
  test::expect_error([] { nn::DistributedSampler(0, 1, true, false, 0, 1); }, {"DistributedSampler", "n = 0"});
  test::expect_error([] { nn::DistributedSampler(3, 1, true, true, 0, 4); }, {"drop_last", "n = 3"});
}


namespace {
std::vector<nn::QAPair> numbered_pairs(std::size_t n) {
  std::vector<nn::QAPair> pairs;
  for (std::size_t i = 0; i < n; ++i) pairs.push_back({std::to_string(i), std::to_string(i % 10), 0});
  return pairs;
}
}  // namespace

// One shuffle: BatchIterator's epoch order is epoch_order's, and the local batches of 2 or 3 ranks'
// samplers (same seed), interleaved in rank order, are exactly its global batches, epoch after epoch.
BOOST_AUTO_TEST_CASE(one_process_and_ranks_see_the_same_global_batches) {
  const auto pairs = numbered_pairs(60);
  const nn::Tokenizer vocab = nn::build_vocabulary(pairs, nn::TokenLevel::character);
  for (std::size_t size : {2u, 3u}) {
    const std::size_t local = 4, B = local * size;
    const nn::BatchIterator one(pairs, vocab, vocab, B, 11);
    for (std::size_t epoch = 0; epoch < 3; ++epoch) {
      BOOST_TEST((one.order(epoch) == nn::epoch_order(pairs.size(), 11, epoch)));
      std::vector<std::vector<std::size_t>> shard;
      for (std::size_t r = 0; r < size; ++r) {
        nn::DistributedSampler s(pairs.size(), 11, true, false, int(r), int(size));
        s.set_epoch(epoch);
        shard.push_back(s.indices());
      }
      for (std::size_t j = 0; j < pairs.size() / B; ++j) {
        std::vector<std::size_t> joined;
        for (std::size_t k = 0; k < local; ++k)
          for (std::size_t r = 0; r < size; ++r) joined.push_back(shard[r][j * local + k]);
        BOOST_TEST((joined == one.batch(epoch, j).index), "size " << size << " epoch " << epoch << " batch " << j);
      }
    }
  }
  // Without shuffling both are the identity order.
  const nn::BatchIterator plain(pairs, vocab, vocab, 8, 11, false);
  BOOST_TEST((plain.order(4) == nn::epoch_order(pairs.size(), 11, 4, false)));
  BOOST_TEST(plain.batch(3, 1).index.front() == 8u);  // any epoch: batch 1 starts at pair 8
}

BOOST_AUTO_TEST_CASE(batch_of_batches_any_pairs) {
  const auto pairs = numbered_pairs(12);
  const nn::Tokenizer vocab = nn::build_vocabulary(pairs, nn::TokenLevel::character);
  const nn::BatchIterator data(pairs, vocab, vocab, 5, 3);
  const nn::PairBatch b = data.batch(1, 2), same = data.batch_of(b.index);
  BOOST_TEST((same.index == b.index));
  BOOST_TEST((same.source.ids.values == b.source.ids.values));
  BOOST_TEST((same.target.ids.values == b.target.ids.values));
  test::expect_error([&] { data.batch_of({3, 12}); }, {"BatchIterator::batch_of", "pair 12 of 12"});
  test::expect_error([&] { data.batch_of({}); }, {"BatchIterator::batch_of", "no index"});
}

BOOST_AUTO_TEST_SUITE_END()
