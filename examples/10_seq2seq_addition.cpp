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
#include <tapegrad/tapegrad.hpp>

#include <algorithm>
#include <cstdio>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "common/example.hpp"

using namespace tapegrad;

namespace {

struct Problem {
  std::string question, answer;
};

std::vector<std::int64_t> encode_chars(const nn::Tokenizer& tok, const std::string& s, bool bos_eos) {
  std::vector<std::int64_t> ids;
  if (bos_eos) ids.push_back(nn::Tokenizer::bos_id);
  for (char c : s) ids.push_back(tok.id(std::string(1, c)));
  if (bos_eos) ids.push_back(nn::Tokenizer::eos_id);
  return ids;
}

std::string decode_chars(const nn::Tokenizer& tok, const std::vector<std::int64_t>& ids) {
  std::string s;
  for (auto id : ids) {
    if (id == nn::Tokenizer::eos_id) break;
    if (id >= 4) s += tok.token(id);
    else s += "?";
  }
  return s;
}

struct Batch {
  nn::PaddedBatch src, tgt;
};

Batch make_batch(const nn::Tokenizer& tok, const std::vector<Problem>& data, const std::vector<std::size_t>& order,
                 std::size_t from, std::size_t to) {
  std::vector<std::vector<std::int64_t>> src, tgt;
  for (std::size_t i = from; i < to; ++i) {
    src.push_back(encode_chars(tok, data[order[i]].question, false));
    tgt.push_back(encode_chars(tok, data[order[i]].answer, true));
  }
  return {nn::pad_batch(src), nn::pad_batch(tgt)};
}

double accuracy(const nn::Seq2Seq& model, const nn::Tokenizer& tok, const std::vector<Problem>& data, std::size_t max_len) {
  std::vector<std::size_t> order(data.size());
  for (std::size_t i = 0; i < order.size(); ++i) order[i] = i;
  std::size_t correct = 0;
  nn::GenerateOptions greedy;
  greedy.max_length = max_len + 1;
  for (std::size_t b = 0; b < data.size(); b += 500) {
    const std::size_t e = std::min(data.size(), b + 500);
    Batch batch = make_batch(tok, data, order, b, e);
    auto out = model.generate(batch.src.ids, greedy).ids;
    for (std::size_t i = b; i < e; ++i) correct += decode_chars(tok, out[i - b]) == data[i].answer;
  }
  return double(correct) / data.size();
}

}  // namespace

int main(int argc, char** argv) {
  example::Args args(argc, argv,
                     "10_seq2seq_addition: seq2seq learns addition from strings (baseline, reversed, reversed + peeky)\n"
                     "  --digits D (numbers of up to D digits)  --train N  --test N  --epochs E  --hidden H  --embed E\n"
                     "  --batch B  --lr LR  --target ACC  --models LIST (default baseline,reversed,reversed+peeky)");
  const bool quick = args.quick();
  const int digits = static_cast<int>(args.integer("digits", quick ? 2 : 3));
  const std::size_t n_train_req = args.integer("train", quick ? 9000 : 45000), n_test_req = args.integer("test", quick ? 1000 : 5000);
  const long epochs = args.integer("epochs", quick ? 5 : 12);
  const std::size_t hidden = args.integer("hidden", quick ? 64 : 128), embed = args.integer("embed", 16);
  const std::size_t batch = args.integer("batch", quick ? 64 : 128);
  const double lr = args.real("lr", quick ? 1e-2 : 5e-3);
  const double target = args.real("target", 0.9);
  const std::string only = args.str("models", "baseline,reversed,reversed+peeky");
  const std::string out = args.out_dir();
  const std::uint64_t seed = args.seed();
  args.check_unused();

  // Data: distinct pairs (a, b), split into train and held-out.
  Generator gen(seed);
  long limit = 1;
  for (int i = 0; i < digits; ++i) limit *= 10;
  const std::size_t width = 2 * digits + 1, answer_len = digits + 1;
  const std::size_t all_pairs = std::size_t(limit) * limit;
  const std::size_t n_total = std::min(all_pairs, n_train_req + n_test_req);
  std::set<std::pair<long, long>> seen;
  std::vector<Problem> data;
  while (data.size() < n_total) {
    const long a = long(gen.below(limit)), b = long(gen.below(limit));
    if (!seen.insert({a, b}).second) continue;
    std::string q = std::to_string(a) + "+" + std::to_string(b);
    q.resize(width, ' ');
    data.push_back({q, std::to_string(a + b)});
  }
  const std::size_t n_test = std::min(n_test_req, n_total / 5 > 0 ? n_total - n_total * 4 / 5 : std::size_t(1));
  std::vector<Problem> test(data.begin(), data.begin() + n_test), train(data.begin() + n_test, data.end());
  nn::Tokenizer tok(nn::TokenLevel::character, true);
  for (char c : std::string("0123456789+ ")) tok.add(std::string(1, c));
  std::printf("seq2seq addition: numbers of up to %d digits, %zu training and %zu held-out questions (e.g. \"%s\" -> \"%s\"),\n"
              "  LSTM encoder/decoder, embed %zu, hidden %zu, Adam lr %g, batch %zu, %ld epochs\n",
              digits, train.size(), test.size(), train[0].question.c_str(), train[0].answer.c_str(), embed, hidden, lr, batch, epochs);

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
  auto csv = std::make_unique<example::Csv>(out + "/10_seq2seq_addition.csv", std::vector<std::string>{"model", "epoch", "train_loss", "test_accuracy"});
  for (std::size_t v = 0; v < variants.size(); ++v) {
    nn::Seq2SeqConfig c;
    c.src_vocab = c.tgt_vocab = tok.size();
    c.embed = embed, c.hidden = hidden, c.cell = nn::CellType::lstm;
    c.reverse_input = variants[v].reverse, c.peeky = variants[v].peeky;
    Generator mgen(seed + 10);  // the same initial draw for the three models where shapes agree
    models.push_back(std::make_unique<nn::Seq2Seq>(c, mgen));
    nn::Seq2Seq& model = *models.back();
    nn::Adam opt(model.parameters(), lr);
    std::printf("%s:\n", variants[v].name);
    std::vector<std::size_t> order(train.size());
    for (std::size_t i = 0; i < order.size(); ++i) order[i] = i;
    const std::size_t per_epoch = (train.size() + batch - 1) / batch;
    example::Progress progress(std::string(variants[v].name) + " step", long(per_epoch * epochs));
    long step = 0;
    for (long ep = 1; ep <= epochs; ++ep) {
      std::shuffle(order.begin(), order.end(), gen.engine());
      double sum = 0;
      for (std::size_t b = 0; b < train.size(); b += batch) {
        Batch bt = make_batch(tok, train, order, b, std::min(train.size(), b + batch));
        Tensor loss = model.loss(bt.src.ids, bt.tgt.ids);
        sum += loss.item();
        opt.zero_grad();
        backward(loss);
        nn::clip_grad_norm(model.parameters(), 5.0);
        opt.step();
        progress.update(++step, "epoch " + std::to_string(ep) + " loss " + example::fmt(loss.item()));
      }
      const double a = accuracy(model, tok, test, answer_len);
      csv->row(variants[v].name, ep, sum / per_epoch, a);
      std::printf("  epoch %ld: mean loss %.4f, held-out exact match %.1f%%\n", ep, sum / per_epoch, 100 * a);
      acc[v] = a;
    }
  }
  csv.reset();

  // A few held-out questions, greedy and sampled (temperature 1) answers of the best model.
  const std::size_t best = std::max_element(acc.begin(), acc.end()) - acc.begin();
  {
    std::printf("held-out examples (%s): greedy | three samples at temperature 1\n", variants[best].name);
    std::vector<std::size_t> order(test.size());
    for (std::size_t i = 0; i < order.size(); ++i) order[i] = i;
    Batch bt = make_batch(tok, test, order, 0, std::min<std::size_t>(6, test.size()));
    nn::GenerateOptions greedy, sampled;
    greedy.max_length = sampled.max_length = answer_len + 1;
    sampled.sample = true;
    auto g = models[best]->generate(bt.src.ids, greedy).ids;
    Generator sgen(seed + 99);
    std::vector<std::vector<std::vector<std::int64_t>>> s;
    for (int k = 0; k < 3; ++k) s.push_back(models[best]->generate(bt.src.ids, sampled, Tensor(), &sgen).ids);
    for (std::size_t i = 0; i < g.size(); ++i) {
      const std::string gr = decode_chars(tok, g[i]);
      std::printf("  %s = %-5s greedy %-5s %s | %-5s %-5s %-5s\n", test[i].question.c_str(), test[i].answer.c_str(), gr.c_str(),
                  gr == test[i].answer ? "ok" : "NO", decode_chars(tok, s[0][i]).c_str(), decode_chars(tok, s[1][i]).c_str(),
                  decode_chars(tok, s[2][i]).c_str());
    }
  }
  example::gnuplot(out + "/10_seq2seq_addition.gp",
                   "set terminal pngcairo size 800,500\nset output '" + out + "/10_seq2seq_addition.png'\n" +
                       "set datafile separator ','\nset key bottom right\nset xlabel 'epoch'\nset ylabel 'held-out exact match'\n" +
                       "set yrange [0:1]\nset title 'seq2seq addition (" + std::to_string(digits) + "-digit numbers)'\n" +
                       "plot for [m in 'baseline reversed reversed+peeky'] '" + out + "/10_seq2seq_addition.csv' " +
                       "using 2:(strcol(1) eq m ? $4 : NaN) with linespoints lw 2 title m\n");

  std::string achieved;
  for (std::size_t v = 0; v < variants.size(); ++v)
    achieved += std::string(v ? ", " : "") + variants[v].name + " " + example::fmt(100 * acc[v], 3) + "%";
  return example::report("10_seq2seq_addition", std::to_string(digits) + "-digit addition strings",
                         "held-out exact match (greedy)", "best >= " + example::fmt(100 * target, 3) + "%", achieved,
                         acc[best] >= target);
}
