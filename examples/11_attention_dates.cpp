// Attention (注意機構) learns date normalisation: "september 27, 1994", "9/27/94", "27 sep 1994", ... ->
// "1994-09-27", character by character.
//   encoder: LSTM over the source characters (padded batches with a mask), states hs_1..hs_S
//   decoder: LSTM; at each step a = softmax_s(score(hs_s, s_t)) (masked), context c_t = sum_s a_s hs_s,
//            logits_t = [c_t, s_t] W + b (Luong attention after the cell), teacher forcing in training
// Eight source formats, with two-digit years read as 1950..2049. Held-out dates never occur in training.
// Metric: exact match of the greedy output on held-out sources; target >= 99%. The attention map of a
// few held-out examples is drawn as a heat map: the year's digits should look at the year, the month's
// at the month name or number, the day's at the day.
//
// Your own data: --data FILE trains on a file of one example a line, source and target joined by '_' (the
// classic date corpus: "september 27, 1994           _1994-09-27"; any separator with --separator), with a
// reproducible held-out split and the vocabulary from the training part only (nn/data/data.hpp). Training runs
// in nn::Trainer (progress with ETA, CSV log, --checkpoint DIR, --resume, --max-steps; see --help).
#include <tapegrad/tapegrad.hpp>

#include <algorithm>
#include <cmath>
#include <map>
#include <cstdio>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "common/dates.hpp"
#include "common/example.hpp"
#include "common/training.hpp"

using namespace tapegrad;

using namespace example::dates;

int main(int argc, char** argv) {
  example::Args args(argc, argv,
                     std::string("11_attention_dates: seq2seq with attention normalises dates to YYYY-MM-DD\n"
                                 "  --train N  --test N  --epochs E  --hidden H  --embed E  --batch B  --lr LR  --decay F (lr factor per epoch)\n"
                                 "  --attention dot|general|additive  --target ACC\n") +
                         example::training_usage());
  const bool quick = args.quick();
  const std::size_t n_train = args.integer("train", quick ? 6000 : 20000), n_test = args.integer("test", quick ? 1000 : 2000);
  const long epochs = args.integer("epochs", quick ? 3 : 6);
  const std::size_t hidden = args.integer("hidden", quick ? 64 : 128), embed = args.integer("embed", 16);
  const std::size_t batch = args.integer("batch", 64);
  const double lr = args.real("lr", 1e-2), decay = args.real("decay", 0.7);
  const std::string kind = args.str("attention", "additive");
  const double target = args.real("target", 0.99);
  const example::TrainingOptions training(args);
  const std::string out = args.out_dir();
  const std::uint64_t seed = args.seed();
  args.check_unused();

  // Data: a user's file, or distinct dates 1950..2049 generated here (held-out dates never appear in
  // training, in any format); the format of each generated source is kept for the error breakdown.
  Generator gen(seed);
  nn::TrainTestSplit split;
  std::map<std::string, int> format_of;
  std::string task = "date normalisation, 8 formats";
  if (!training.data.empty()) {
    split = training.read_file(seed);
    task = "normalisation learned from " + training.data;
  } else {
    const std::vector<nn::QAPair> pairs = example::dates::generate(n_train + n_test, gen, format_of);
    split = nn::split_train_test(pairs, double(n_test) / double(pairs.size()), seed);
  }
  const std::vector<nn::QAPair>& train = split.train;
  const std::vector<nn::QAPair>& test = split.test;
  const nn::Tokenizer vocab = nn::build_vocabulary(train, nn::TokenLevel::character);
  const nn::BatchIterator train_data(train, vocab, vocab, batch, seed);
  const nn::BatchIterator test_data(test, vocab, vocab, 500, 0, false);
  std::printf("attention, date normalisation: %zu training and %zu held-out pairs, %zu tokens, e.g.\n", train.size(), test.size(),
              vocab.size());
  if (training.data.empty())
    for (int f = 0; f < kFormats; ++f) std::printf("  %-30s -> %s\n", format_date(1994, 9, 27, f).c_str(), "1994-09-27");
  else
    for (std::size_t i = 0; i < std::min<std::size_t>(4, train.size()); ++i)
      std::printf("  %-30s -> %s\n", train[i].question.c_str(), train[i].answer.c_str());
  std::printf("  LSTM encoder/decoder with %s attention, embed %zu, hidden %zu, Adam lr %g (x %g per epoch), batch %zu, %ld epochs\n",
              kind.c_str(), embed, hidden, lr, decay, batch, epochs);

  nn::Seq2SeqConfig c;
  c.src_vocab = c.tgt_vocab = vocab.size();
  c.embed = embed, c.hidden = hidden, c.cell = nn::CellType::lstm;
  c.attention = kind == "dot" ? nn::AttentionKind::dot : kind == "additive" ? nn::AttentionKind::additive : nn::AttentionKind::general;
  nn::Seq2Seq model(c, gen);
  nn::Adam opt(model.parameters(), lr);
  nn::Trainer trainer(model, opt, training.config("attention", out + "/11_attention_dates.csv", epochs, 5.0));
  example::FirstReach reach(0.99);  // steps and time to 99%, beside example 16's Transformer
  const nn::TrainResult r = trainer.run(
      train_data.batches_per_epoch(),
      [&](const nn::TrainStep& s) {
        reach.at_step(s.step);
        // A decaying step size settles the last few errors: lr decay^epoch, a function of the epoch, so a
        // resumed run has the same schedule.
        opt.set_lr(lr * std::pow(decay, double(s.epoch)));
        const nn::PairBatch b = train_data.batch(s.epoch, s.batch);
        return model.loss(b.source.ids, b.target.ids, b.source.mask);
      },
      [&] { return reach(nn::exact_match(model, test_data)); });
  example::note_stopped(r, "attention", training);
  std::printf("attention: held-out exact match %s (evaluated at each epoch's end)\n", reach.str().c_str());
  const double acc = r.last_eval;

  // Errors by source format (generated data), and the attention maps of four held-out examples.
  NoGrad no_grad;
  nn::GenerateOptions greedy;
  greedy.max_length = test_data.max_answer_length() + 1;
  std::vector<std::size_t> show;
  if (!format_of.empty()) {
    std::vector<int> wrong(kFormats, 0);
    for (std::size_t b = 0; b < test_data.batches_per_epoch(); ++b) {
      const nn::PairBatch bt = test_data.batch(0, b);
      const auto outs = model.generate(bt.source.ids, greedy, bt.source.mask).ids;
      for (std::size_t k = 0; k < bt.size(); ++k)
        if (outs[k] != test_data.answer_ids(bt.index[k])) ++wrong[format_of.at(test[bt.index[k]].question)];
    }
    std::printf("held-out errors by format:");
    for (int f = 0; f < kFormats; ++f) std::printf(" %d", wrong[f]);
    std::printf("\n");
    for (int want : {0, 2, 4, 6})
      for (std::size_t i = 0; i < test.size(); ++i)
        if (format_of.at(test[i].question) == want) {
          show.push_back(i);
          break;
        }
  } else {
    for (std::size_t i = 0; i < std::min<std::size_t>(4, test.size()); ++i) show.push_back(i);
  }
  std::vector<nn::QAPair> shown;
  for (std::size_t i : show) shown.push_back(test[i]);
  const nn::BatchIterator shown_data(shown, vocab, vocab, shown.size(), 0, false);
  const nn::PairBatch bt = shown_data.batch(0, 0);
  nn::Generated g = model.generate(bt.source.ids, greedy, bt.source.mask);
  std::string plot = "set terminal pngcairo size 1200,900\nset output '" + out + "/11_attention_map.png'\n" +
                     "set multiplot layout 2,2 title 'attention weights: output character (rows) over source character (columns)'\n" +
                     "set palette grey negative\nset cbrange [0:1]\nset yrange [] reverse\nunset key\n";
  for (std::size_t k = 0; k < shown.size(); ++k) {
    const std::vector<std::string> src = nn::utf8_chars(shown[k].question);
    const std::vector<std::string> outs = nn::utf8_chars(vocab.decode(g.ids[k]));
    const std::string out_text = vocab.decode(g.ids[k]);
    std::printf("  %-30s -> %s (%s)\n", shown[k].question.c_str(), out_text.c_str(), out_text == shown[k].answer ? "ok" : "wrong");
    Tensor map = nn::attention_map(g.attention, k);  // (T_out, S)
    const std::size_t T = std::min<std::size_t>(map.size(0), outs.size() + 1), S = std::min(src.size(), map.size(1));
    const std::string dat = out + "/11_attention_map_" + std::to_string(k) + ".dat";
    std::FILE* f = std::fopen(dat.c_str(), "w");
    for (std::size_t t = 0; t < T; ++t)
      for (std::size_t s = 0; s < S; ++s) std::fprintf(f, "%zu %zu %.4f\n", s, t, map.at({t, s}));
    std::fclose(f);
    std::string xt, yt;
    const auto label = [](std::string ch) {
      if (ch == " ") ch = "␣";
      if (ch == "\"" || ch == "\\") ch = "\\" + ch;
      return ch;
    };
    for (std::size_t s = 0; s < S; ++s) xt += std::string(s ? ", " : "") + "\"" + label(src[s]) + "\" " + std::to_string(s);
    for (std::size_t t = 0; t < T; ++t)
      yt += std::string(t ? ", " : "") + "\"" + (t < outs.size() ? label(outs[t]) : std::string("eos")) + "\" " + std::to_string(t);
    std::string title = shown[k].question;
    for (char& ch : title)
      if (ch == '"' || ch == '\\') ch = ' ';
    plot += "set title \"" + title + "\" noenhanced\nset xtics (" + xt + ") scale 0 font ',9'\nset ytics (" + yt +
            ") scale 0\nset xrange [-0.5:" + std::to_string(S - 0.5) + "]\nset yrange [" + std::to_string(T - 0.5) +
            ":-0.5]\nplot '" + dat + "' using 1:2:3 with image\n";
  }
  plot += "unset multiplot\n";
  example::gnuplot(out + "/11_attention_map.gp", plot);
  std::printf("curves: %s/11_attention_dates.csv; picture: %s/11_attention_map.png\n", out.c_str(), out.c_str());

  return example::report("11_attention_dates", task, "held-out exact match (greedy)", ">= " + example::fmt(100 * target, 3) + "%",
                         example::fmt(100 * acc, 4) + "%" + (r.finished ? "" : " (stopped by --max-steps)") + "; " + reach.str(),
                         r.finished && acc >= target);
}
