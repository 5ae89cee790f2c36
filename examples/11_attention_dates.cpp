// Attention (注意機構) learns date normalisation: "september 27, 1994", "9/27/94", "27 sep 1994", ... ->
// "1994-09-27", character by character.
//   encoder: LSTM over the source characters (padded batches with a mask), states hs_1..hs_S
//   decoder: LSTM; at each step a = softmax_s(score(hs_s, s_t)) (masked), context c_t = sum_s a_s hs_s,
//            logits_t = [c_t, s_t] W + b (Luong attention after the cell), teacher forcing in training
// Eight source formats, with two-digit years read as 1950..2049. Held-out dates never occur in training.
// Metric: exact match of the greedy output on held-out sources; target >= 99%. The attention map of a
// few held-out examples is drawn as a heat map: the year's digits should look at the year, the month's
// at the month name or number, the day's at the day.
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

const char* kMonths[] = {"january", "february", "march",     "april",   "may",      "june",
                         "july",    "august",   "september", "october", "november", "december"};
const char* kDays[] = {"monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday"};

int days_in_month(int y, int m) {
  static const int d[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
  const bool leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
  return m == 2 && leap ? 29 : d[m - 1];
}

// 0 = monday (Sakamoto's method gives 0 = sunday).
int weekday(int y, int m, int d) {
  static const int t[] = {0, 3, 2, 5, 0, 3, 5, 1, 4, 6, 2, 4};
  if (m < 3) y -= 1;
  const int sunday0 = (y + y / 4 - y / 100 + y / 400 + t[m - 1] + d) % 7;
  return (sunday0 + 6) % 7;
}

std::string two(int v) { return std::string(1, char('0' + v / 10 % 10)) + char('0' + v % 10); }

std::string format_date(int y, int m, int d, int fmt) {
  const std::string month = kMonths[m - 1], mon = month.substr(0, 3), year = std::to_string(y);
  switch (fmt) {
    case 0: return month + " " + std::to_string(d) + ", " + year;
    case 1: return mon + " " + std::to_string(d) + ", " + year;
    case 2: return std::to_string(m) + "/" + std::to_string(d) + "/" + two(y % 100);
    case 3: return two(m) + "/" + two(d) + "/" + year;
    case 4: return std::to_string(d) + " " + mon + " " + year;
    case 5: return std::to_string(d) + " " + month + " " + year;
    case 6: return std::string(kDays[weekday(y, m, d)]) + ", " + month + " " + std::to_string(d) + ", " + year;
    default: return two(d) + "." + two(m) + "." + year;
  }
}
constexpr int kFormats = 8;

struct Example {
  std::string src, tgt;
};

std::vector<std::int64_t> ids_of(const nn::Tokenizer& tok, const std::string& s, bool bos_eos) {
  std::vector<std::int64_t> ids;
  if (bos_eos) ids.push_back(nn::Tokenizer::bos_id);
  for (char c : s) ids.push_back(tok.id(std::string(1, c)));
  if (bos_eos) ids.push_back(nn::Tokenizer::eos_id);
  return ids;
}

std::string text_of(const nn::Tokenizer& tok, const std::vector<std::int64_t>& ids) {
  std::string s;
  for (auto id : ids) {
    if (id == nn::Tokenizer::eos_id) break;
    s += id >= 4 ? tok.token(id) : "?";
  }
  return s;
}

struct Batch {
  nn::PaddedBatch src, tgt;
};
Batch make_batch(const nn::Tokenizer& tok, const std::vector<Example>& data, const std::vector<std::size_t>& order,
                 std::size_t from, std::size_t to) {
  std::vector<std::vector<std::int64_t>> s, t;
  for (std::size_t i = from; i < to; ++i) {
    s.push_back(ids_of(tok, data[order[i]].src, false));
    t.push_back(ids_of(tok, data[order[i]].tgt, true));
  }
  return {nn::pad_batch(s), nn::pad_batch(t)};
}

double accuracy(const nn::Seq2Seq& model, const nn::Tokenizer& tok, const std::vector<Example>& data,
                std::vector<int>* wrong_by_format = nullptr, const std::vector<int>* formats = nullptr) {
  std::vector<std::size_t> order(data.size());
  for (std::size_t i = 0; i < order.size(); ++i) order[i] = i;
  nn::GenerateOptions greedy;
  greedy.max_length = 11;
  std::size_t correct = 0;
  for (std::size_t b = 0; b < data.size(); b += 500) {
    const std::size_t e = std::min(data.size(), b + 500);
    Batch bt = make_batch(tok, data, order, b, e);
    auto out = model.generate(bt.src.ids, greedy, bt.src.mask).ids;
    for (std::size_t i = b; i < e; ++i) {
      const bool ok = text_of(tok, out[i - b]) == data[i].tgt;
      correct += ok;
      if (!ok && wrong_by_format && formats) ++(*wrong_by_format)[(*formats)[i]];
    }
  }
  return double(correct) / data.size();
}

}  // namespace

int main(int argc, char** argv) {
  example::Args args(argc, argv,
                     "11_attention_dates: seq2seq with attention normalises dates to YYYY-MM-DD\n"
                     "  --train N  --test N  --epochs E  --hidden H  --embed E  --batch B  --lr LR  --decay F (lr factor per epoch)\n"
                     "  --attention dot|general|additive  --target ACC");
  const bool quick = args.quick();
  const std::size_t n_train = args.integer("train", quick ? 6000 : 20000), n_test = args.integer("test", quick ? 1000 : 2000);
  const long epochs = args.integer("epochs", quick ? 3 : 6);
  const std::size_t hidden = args.integer("hidden", quick ? 64 : 128), embed = args.integer("embed", 16);
  const std::size_t batch = args.integer("batch", 64);
  const double lr = args.real("lr", 1e-2), decay = args.real("decay", 0.7);
  const std::string kind = args.str("attention", "additive");
  const double target = args.real("target", 0.99);
  const std::string out = args.out_dir();
  const std::uint64_t seed = args.seed();
  args.check_unused();

  // Distinct dates, 1950..2049; held-out dates never appear in training (in any format).
  Generator gen(seed);
  std::set<int> seen;
  std::vector<Example> train, test;
  std::vector<int> test_formats;
  while (train.size() + test.size() < n_train + n_test) {
    const int y = 1950 + int(gen.below(100)), m = 1 + int(gen.below(12));
    const int d = 1 + int(gen.below(days_in_month(y, m)));
    if (!seen.insert(y * 10000 + m * 100 + d).second) continue;
    const int fmt = int(gen.below(kFormats));
    Example ex{format_date(y, m, d, fmt), std::to_string(y) + "-" + two(m) + "-" + two(d)};
    if (test.size() < n_test) test.push_back(ex), test_formats.push_back(fmt);
    else train.push_back(ex);
  }
  nn::Tokenizer tok(nn::TokenLevel::character, true);
  for (char c : std::string("0123456789-/., abcdefghijklmnopqrstuvwxyz")) tok.add(std::string(1, c));
  std::printf("attention, date normalisation: %zu training and %zu held-out dates, e.g.\n", train.size(), test.size());
  for (int f = 0; f < kFormats; ++f) std::printf("  %-30s -> %s\n", format_date(1994, 9, 27, f).c_str(), "1994-09-27");
  std::printf("  LSTM encoder/decoder with %s attention, embed %zu, hidden %zu, Adam lr %g (x %g per epoch), batch %zu, %ld epochs\n",
              kind.c_str(), embed, hidden, lr, decay, batch, epochs);

  nn::Seq2SeqConfig c;
  c.src_vocab = c.tgt_vocab = tok.size();
  c.embed = embed, c.hidden = hidden, c.cell = nn::CellType::lstm;
  c.attention = kind == "dot" ? nn::AttentionKind::dot : kind == "additive" ? nn::AttentionKind::additive : nn::AttentionKind::general;
  nn::Seq2Seq model(c, gen);
  nn::Adam opt(model.parameters(), lr);
  auto csv = std::make_unique<example::Csv>(out + "/11_attention_dates.csv", std::vector<std::string>{"step", "epoch", "loss", "test_accuracy"});
  std::vector<std::size_t> order(train.size());
  for (std::size_t i = 0; i < order.size(); ++i) order[i] = i;
  const std::size_t per_epoch = (train.size() + batch - 1) / batch;
  example::Progress progress("step", long(per_epoch * epochs));
  long step = 0;
  double acc = 0;
  for (long ep = 1; ep <= epochs; ++ep) {
    std::shuffle(order.begin(), order.end(), gen.engine());
    if (ep > 1) opt.set_lr(opt.lr() * decay);  // a decaying step size settles the last few errors
    double sum = 0;
    for (std::size_t b = 0; b < train.size(); b += batch) {
      Batch bt = make_batch(tok, train, order, b, std::min(train.size(), b + batch));
      Tensor loss = model.loss(bt.src.ids, bt.tgt.ids, bt.src.mask);
      sum += loss.item();
      opt.zero_grad();
      backward(loss);
      nn::clip_grad_norm(model.parameters(), 5.0);
      opt.step();
      ++step;
      progress.update(step, "epoch " + std::to_string(ep) + " loss " + example::fmt(loss.item()));
      if (step % 50 == 0) csv->row(step, ep, loss.item(), "");
    }
    acc = accuracy(model, tok, test);
    csv->row(step, ep, sum / per_epoch, acc);
    std::printf("  epoch %ld: mean loss %.4f, held-out exact match %.2f%%\n", ep, sum / per_epoch, 100 * acc);
  }
  csv.reset();
  std::vector<int> wrong(kFormats, 0);
  acc = accuracy(model, tok, test, &wrong, &test_formats);
  std::printf("held-out errors by format:");
  for (int f = 0; f < kFormats; ++f) std::printf(" %d", wrong[f]);
  std::printf("\n");

  // Attention maps of four held-out examples in different formats.
  std::vector<std::size_t> show;
  for (int want : {0, 2, 4, 6}) {
    for (std::size_t i = 0; i < test.size(); ++i)
      if (test_formats[i] == want) {
        show.push_back(i);
        break;
      }
  }
  Batch bt = make_batch(tok, test, show, 0, show.size());
  nn::GenerateOptions greedy;
  greedy.max_length = 11;
  nn::Generated g = model.generate(bt.src.ids, greedy, bt.src.mask);
  std::string plot = "set terminal pngcairo size 1200,900\nset output '" + out + "/11_attention_map.png'\n" +
                     "set multiplot layout 2,2 title 'attention weights: output character (rows) over source character (columns)'\n" +
                     "set palette grey negative\nset cbrange [0:1]\nset yrange [] reverse\nunset key\n";
  for (std::size_t k = 0; k < show.size(); ++k) {
    const std::string& src = test[show[k]].src;
    const std::string outs = text_of(tok, g.ids[k]);
    std::printf("  %-30s -> %s (%s)\n", src.c_str(), outs.c_str(), outs == test[show[k]].tgt ? "ok" : "wrong");
    Tensor map = nn::attention_map(g.attention, k);  // (T_out, S)
    const std::size_t T = std::min<std::size_t>(map.size(0), outs.size() + 1), S = src.size();
    const std::string dat = out + "/11_attention_map_" + std::to_string(k) + ".dat";
    std::FILE* f = std::fopen(dat.c_str(), "w");
    for (std::size_t t = 0; t < T; ++t)
      for (std::size_t s = 0; s < S; ++s) std::fprintf(f, "%zu %zu %.4f\n", s, t, map.at({t, s}));
    std::fclose(f);
    std::string xt, yt;
    for (std::size_t s = 0; s < S; ++s) {
      std::string ch(1, src[s]);
      if (ch == " ") ch = "␣";
      if (ch == "\"" || ch == "\\") ch = "\\" + ch;
      xt += std::string(s ? ", " : "") + "\"" + ch + "\" " + std::to_string(s);
    }
    for (std::size_t t = 0; t < T; ++t)
      yt += std::string(t ? ", " : "") + "\"" + (t < outs.size() ? std::string(1, outs[t]) : std::string("eos")) + "\" " + std::to_string(t);
    plot += "set title \"" + src + "\" noenhanced\nset xtics (" + xt + ") scale 0 font ',9'\nset ytics (" + yt +
            ") scale 0\nset xrange [-0.5:" + std::to_string(S - 0.5) + "]\nset yrange [" + std::to_string(T - 0.5) +
            ":-0.5]\nplot '" + dat + "' using 1:2:3 with image\n";
  }
  plot += "unset multiplot\n";
  example::gnuplot(out + "/11_attention_map.gp", plot);
  std::printf("curves: %s/11_attention_dates.csv; picture: %s/11_attention_map.png\n", out.c_str(), out.c_str());

  return example::report("11_attention_dates", "date normalisation, 8 formats", "held-out exact match (greedy)",
                         ">= " + example::fmt(100 * target, 3) + "%", example::fmt(100 * acc, 4) + "%", acc >= target);
}
