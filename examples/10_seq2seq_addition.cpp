// seq2seq (系列変換モデル) learns addition from strings: "57+643" -> "700", character by character.
//   encoder: LSTM over the question's characters; its last state is the thought vector (思考ベクトル)
//   decoder: LSTM from the thought vector, teacher forcing (教師強制) in training, greedy (貪欲法) or sampled
//            decoding at test time; loss = mean cross-entropy of the answer's characters and <eos>
// Three models side by side, as in the course: the baseline, the reversed input (Sutskever et al.: the
// first digits the decoder writes are then near the end of what the encoder read) and reversed + peeky
// (the thought vector fed to every decoder step). Questions are padded with spaces to a fixed width, as in
// the course's data ("57+643 "); held-out pairs (a, b) never appear in training.
// Metric: exact match of the greedy answer on the held-out questions.
// Full settings: numbers of up to 3 digits, 45000 training and 5000 held-out questions (the course's
// sizes), hidden 128, batch 128, Adam 5e-3 with clipping at 5, 12 epochs; target: the best model >= 90%.
// --quick: numbers of up to 2 digits (9000 of the 10000 pairs for training, 1000 held out), hidden 64,
// batch 64, Adam 1e-2, 5 epochs; target: the best model >= 90% too. The task is the same with shorter
// carry chains (answers of at most 3 digits, questions of 5 characters), which is what fits the tour's
// budget of a few seconds per model; the baseline still trails the reversed + peeky model.
// Questions are read (or generated) without their padding: the encoder gets a mask, so padded steps leave
// its state unchanged, which is what the course's space padding stood for.
//
// Your own data: --data FILE trains on a file in the course corpora's format (one example a line, question
// and answer joined by '_', space padded, e.g. "16+75  _91  "; any separator with --separator), with a
// reproducible held-out split (--test-fraction, --seed) and the vocabulary from the training part only
// (nn/data/data.hpp). Training runs in nn::Trainer: a progress line with loss and ETA, a CSV log per model,
// --checkpoint DIR saves model + optimizer + loop position, --resume continues a stopped run exactly.
#include <tapegrad/tapegrad.hpp>

#include <algorithm>
#include <cstdio>
#include <memory>
#include <set>
#include <chrono>
#include <string>
#include <vector>

#include "common/example.hpp"
#include "common/training.hpp"

using namespace tapegrad;

int main(int argc, char** argv) {
  example::Args args(argc, argv,
                     std::string("10_seq2seq_addition: seq2seq learns addition from strings (baseline, reversed, reversed + peeky)\n"
                                 "  --digits D (numbers of up to D digits)  --train N  --test N  --epochs E  --hidden H  --embed E\n"
                                 "  --batch B  --lr LR  --target ACC  --models LIST (default baseline,reversed,reversed+peeky)\n"
                                 "  --autobatch (also decode the held-out questions one per example, unpadded, eagerly and as\n"
                                 "               autobatch::map: each stops at its own <eos>; report the speed-up)\n") +
                         example::training_usage());
  const bool quick = args.quick();
  const int digits = static_cast<int>(args.integer("digits", quick ? 2 : 3));
  const std::size_t n_train_req = args.integer("train", quick ? 9000 : 45000), n_test_req = args.integer("test", quick ? 1000 : 5000);
  const long epochs = args.integer("epochs", quick ? 5 : 12);
  const std::size_t hidden = args.integer("hidden", quick ? 64 : 128), embed = args.integer("embed", 16);
  const std::size_t batch = args.integer("batch", quick ? 64 : 128);
  const double lr = args.real("lr", quick ? 1e-2 : 5e-3);
  const double target = args.real("target", 0.9);
  const std::string only = args.str("models", "baseline,reversed,reversed+peeky");
  const bool autobatch_too = args.flag("autobatch");
  const example::TrainingOptions training(args);
  const std::string out = args.out_dir();
  const std::uint64_t seed = args.seed();
  args.check_unused();

  // Data: a user's file, or distinct pairs (a, b) generated here; split into train and held-out.
  Generator gen(seed);
  nn::TrainTestSplit split;
  std::string task;
  if (!training.data.empty()) {
    split = training.read_file(seed);
    task = "addition strings from " + training.data;
  } else {
    long limit = 1;
    for (int i = 0; i < digits; ++i) limit *= 10;
    const std::size_t all_pairs = std::size_t(limit) * limit;
    const std::size_t n_total = std::min(all_pairs, n_train_req + n_test_req);
    std::set<std::pair<long, long>> seen;
    std::vector<nn::QAPair> pairs;
    while (pairs.size() < n_total) {
      const long a = long(gen.below(limit)), b = long(gen.below(limit));
      if (!seen.insert({a, b}).second) continue;
      pairs.push_back({std::to_string(a) + "+" + std::to_string(b), std::to_string(a + b), 0});
    }
    const std::size_t n_test = std::min(n_test_req, n_total / 5 > 0 ? n_total - n_total * 4 / 5 : std::size_t(1));
    split = nn::split_train_test(pairs, double(n_test) / double(n_total), seed);
    task = std::to_string(digits) + "-digit addition strings";
  }
  const std::vector<nn::QAPair>& train = split.train;
  const std::vector<nn::QAPair>& test = split.test;
  const nn::Tokenizer vocab = nn::build_vocabulary(train, nn::TokenLevel::character);
  const nn::BatchIterator train_data(train, vocab, vocab, batch, seed);
  const nn::BatchIterator test_data(test, vocab, vocab, 500, 0, false);
  std::printf("seq2seq addition: %zu training and %zu held-out questions (e.g. \"%s\" -> \"%s\"), %zu tokens,\n"
              "  LSTM encoder/decoder, embed %zu, hidden %zu, Adam lr %g, batch %zu, %ld epochs\n",
              train.size(), test.size(), train[0].question.c_str(), train[0].answer.c_str(), vocab.size(), embed, hidden, lr,
              batch, epochs);

  struct Variant {
    const char* name;
    bool reverse, peeky;
  };
  std::vector<Variant> variants;
  for (const Variant& v : {Variant{"baseline", false, false}, Variant{"reversed", true, false}, Variant{"reversed+peeky", true, true}})
    if (("," + only + ",").find("," + std::string(v.name) + ",") != std::string::npos) variants.push_back(v);
  if (variants.empty()) {
    std::fprintf(stderr, "--models: a comma-separated subset of baseline,reversed,reversed+peeky\n");
    return 2;
  }
  std::vector<double> acc(variants.size(), 0.0);
  std::vector<std::unique_ptr<nn::Seq2Seq>> models;
  bool all_finished = true;
  for (std::size_t v = 0; v < variants.size(); ++v) {
    nn::Seq2SeqConfig c;
    c.src_vocab = c.tgt_vocab = vocab.size();
    c.embed = embed, c.hidden = hidden, c.cell = nn::CellType::lstm;
    c.reverse_input = variants[v].reverse, c.peeky = variants[v].peeky;
    Generator mgen(seed + 10);  // the same initial draw for the three models where shapes agree
    models.push_back(std::make_unique<nn::Seq2Seq>(c, mgen));
    nn::Seq2Seq& model = *models.back();
    nn::Adam opt(model.parameters(), lr);
    std::printf("%s:\n", variants[v].name);
    nn::Trainer trainer(model, opt,
                        training.config(variants[v].name, out + "/10_seq2seq_addition_" + variants[v].name + ".csv", epochs, 5.0));
    const nn::TrainResult r = trainer.run(
        train_data.batches_per_epoch(),
        [&](const nn::TrainStep& s) {
          const nn::PairBatch b = train_data.batch(s.epoch, s.batch);
          return model.loss(b.source.ids, b.target.ids, b.source.mask);
        },
        [&] { return nn::exact_match(model, test_data); });
    example::note_stopped(r, variants[v].name, training);
    all_finished = all_finished && r.finished;
    acc[v] = r.last_eval;
  }

  // A few held-out questions, greedy and sampled (temperature 1) answers of the best model.
  const std::size_t best = std::max_element(acc.begin(), acc.end()) - acc.begin();
  {
    std::printf("held-out examples (%s): greedy | three samples at temperature 1\n", variants[best].name);
    const std::vector<nn::QAPair> few(test.begin(), test.begin() + std::min<std::size_t>(6, test.size()));
    const nn::BatchIterator few_data(few, vocab, vocab, few.size(), 0, false);
    const nn::PairBatch bt = few_data.batch(0, 0);
    nn::GenerateOptions greedy, sampled;
    greedy.max_length = sampled.max_length = test_data.max_answer_length() + 1;
    sampled.sample = true;
    NoGrad no_grad;
    auto g = models[best]->generate(bt.source.ids, greedy, bt.source.mask).ids;
    Generator sgen(seed + 99);
    std::vector<std::vector<std::vector<std::int64_t>>> smp;
    for (int k = 0; k < 3; ++k) smp.push_back(models[best]->generate(bt.source.ids, sampled, bt.source.mask, &sgen).ids);
    for (std::size_t i = 0; i < g.size(); ++i) {
      const std::string gr = vocab.decode(g[i]);
      std::printf("  %-8s = %-5s greedy %-5s %s | %-5s %-5s %-5s\n", few[i].question.c_str(), few[i].answer.c_str(), gr.c_str(),
                  gr == few[i].answer ? "ok" : "NO", vocab.decode(smp[0][i]).c_str(), vocab.decode(smp[1][i]).c_str(),
                  vocab.decode(smp[2][i]).c_str());
    }
  }
  std::string plot = "set terminal pngcairo size 800,500\nset output '" + out + "/10_seq2seq_addition.png'\n" +
                     "set datafile separator ','\nset key bottom right\nset xlabel 'step'\nset ylabel 'held-out exact match'\n" +
                     "set yrange [0:1]\nset title 'seq2seq addition (" + task + ")' noenhanced\nplot ";
  for (std::size_t v = 0; v < variants.size(); ++v)
    plot += std::string(v ? ", " : "") + "'" + out + "/10_seq2seq_addition_" + variants[v].name +
            ".csv' using 1:($4) with linespoints lw 2 title '" + variants[v].name + "'";
  example::gnuplot(out + "/10_seq2seq_addition.gp", plot + "\n");

  int rc_autobatch = 0;
  if (autobatch_too) {
    // Per-example greedy decoding of the held-out questions, without padding: each question is its own
    // (T, 1) source and stops at its own <eos>, a value read at every step. Eagerly one after another, then
    // as autobatch::map, where the steps of the questions still decoding batch together.
    const nn::Seq2Seq& model = *models[best];
    nn::GenerateOptions greedy;
    greedy.max_length = test_data.max_answer_length() + 1;
    auto decode = [&](std::size_t i) {
      const std::vector<std::int64_t> ids = vocab.encode(test[i].question);
      return vocab.decode(model.generate(Index(ids, {ids.size(), 1}), greedy).ids[0]);
    };
    NoGrad no_grad;
    std::vector<std::string> eager(test.size());
    const auto t0 = std::chrono::steady_clock::now();
    for (std::size_t i = 0; i < test.size(); ++i) eager[i] = decode(i);
    const auto t1 = std::chrono::steady_clock::now();
    autobatch::reset_stats();
    const std::vector<std::string> batched = autobatch::map(test.size(), decode);
    const auto t2 = std::chrono::steady_clock::now();
    const double te = std::chrono::duration<double>(t1 - t0).count(), tb = std::chrono::duration<double>(t2 - t1).count();
    std::size_t same = 0, right = 0;
    for (std::size_t i = 0; i < test.size(); ++i) {
      same += eager[i] == batched[i];
      right += batched[i] == test[i].answer;
    }
    std::printf("greedy decoding of %zu held-out questions one per example (%s): eager %.3f s, autobatched %.3f s "
                "(speed-up %.2fx); %zu of %zu answers the same; exact match %.2f%%\n",
                test.size(), variants[best].name, te, tb, te / tb, same, test.size(), 100.0 * right / test.size());
    std::printf("%s", autobatch::stats().table().c_str());
    rc_autobatch = example::report("10_seq2seq_addition (autobatched decoding)", "greedy decoding, one question per task",
                                   "speed-up, same answers", "every answer the same",
                                   example::fmt(te / tb, 3) + "x (" + example::fmt(tb, 3) + " s vs " + example::fmt(te, 3) +
                                       " s), " + std::to_string(same) + " of " + std::to_string(test.size()) + " the same",
                                   same == test.size());
  }

  std::string achieved;
  for (std::size_t v = 0; v < variants.size(); ++v)
    achieved += std::string(v ? ", " : "") + variants[v].name + " " + example::fmt(100 * acc[v], 3) + "%";
  if (!all_finished) achieved += " (stopped by --max-steps)";
  return rc_autobatch | example::report("10_seq2seq_addition", task, "held-out exact match (greedy)",
                                        "best >= " + example::fmt(100 * target, 3) + "%", achieved,
                                        all_finished && acc[best] >= target);
}
