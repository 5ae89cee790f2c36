// HRED and VHRED (階層的エンコーダ・デコーダ) on generated dialogues.
//   HRED:  u_n = Encoder(utterance_n) (utterance vectors), c = ContextRNN(u_1..u_N) (context vector),
//          the decoder starts from tanh(c W + b) and writes the response (teacher forcing in training).
//   VHRED: a latent z per response: prior p(z | c), posterior q(z | c, r), decoder from [c, z];
//          -ELBO = recon + kl_weight KL(q || p), with KL annealing and word drop (Bowman et al. 2016) so
//          the decoder has to use z: no posterior collapse.
// Part 1 (HRED), the answer depends on an earlier turn, not the last one:
//   "i am alice and i live in paris ." / <a filler> / "where do i live ?"  ->  "you live in paris ."
//   "i am alice and i live in paris ." / <a filler> / "who am i ?"          ->  "you are alice ."
//   held-out dialogues use (name, city) pairs never seen in training; target: exact match >= 95%.
// Part 2 (VHRED), several valid answers: "hello ." / "i am hungry ." / "what shall we do ?" ->
// "let us eat pizza , i like pizza ." or sushi, curry, noodles (each equally likely); three such
// activities, four answers each. Targets: held-out
// KL(q || p) > 0.1 nat; answers decoded (greedy) from z drawn from the prior: >= 90% valid, and diverse
// (at least 3 distinct answers per activity on average).
#include <tapegrad/tapegrad.hpp>

#include <algorithm>
#include <cstdio>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "common/example.hpp"

using namespace tapegrad;

namespace {

struct Dialogue {
  std::vector<std::string> context;
  std::string response;
  int group = 0;  // VHRED: the activity
};

struct Batch {
  std::vector<nn::PaddedBatch> context;
  nn::PaddedBatch response;
};

Batch make_batch(const nn::Tokenizer& tok, const std::vector<Dialogue>& data, const std::vector<std::size_t>& order,
                 std::size_t from, std::size_t to) {
  Batch b;
  const std::size_t N = data[order[from]].context.size();
  for (std::size_t n = 0; n < N; ++n) {
    std::vector<std::vector<std::int64_t>> u;
    for (std::size_t i = from; i < to; ++i) u.push_back(tok.encode(data[order[i]].context[n]));
    b.context.push_back(nn::pad_batch(u));
  }
  std::vector<std::vector<std::int64_t>> r;
  for (std::size_t i = from; i < to; ++i) r.push_back(tok.encode(data[order[i]].response, true, true));
  b.response = nn::pad_batch(r);
  return b;
}

std::vector<std::size_t> iota_n(std::size_t n) {
  std::vector<std::size_t> v(n);
  for (std::size_t i = 0; i < n; ++i) v[i] = i;
  return v;
}

}  // namespace

int main(int argc, char** argv) {
  example::Args args(argc, argv,
                     "12_hred_vhred: HRED answers from an earlier turn; VHRED samples several valid answers\n"
                     "  --steps N (HRED)  --vsteps N (VHRED)  --hidden H  --batch B  --lr LR  --word-drop P  --warmup N\n"
                     "  --part hred|vhred|both  --hred-target ACC (0.95)");
  const bool quick = args.quick();
  const long steps = args.integer("steps", quick ? 1600 : 3000), vsteps = args.integer("vsteps", quick ? 1600 : 3000);
  const std::size_t hidden = args.integer("hidden", quick ? 48 : 64), batch = args.integer("batch", 32);
  const double lr = args.real("lr", 1e-2), word_drop = args.real("word-drop", 0.75);
  const long warmup = args.integer("warmup", vsteps / 2);
  const double hred_target = args.real("hred-target", 0.95);
  const std::string part = args.str("part", "both");
  const bool do_hred = part != "vhred", do_vhred = part != "hred";
  const std::string out = args.out_dir();
  const std::uint64_t seed = args.seed();
  args.check_unused();
  Generator gen(seed);

  // ---------------- part 1: HRED ----------------
  const std::vector<std::string> names = {"alice", "bob",   "carol", "dave", "erin", "frank", "grace", "heidi", "ivan",  "judy",
                                          "ken",   "laura", "mike",  "nina", "oscar", "peggy", "quinn", "rob",  "sybil", "trent"};
  const std::vector<std::string> cities = {"paris", "tokyo", "rome",  "cairo",  "lima",  "oslo",   "delhi", "seoul", "quito", "perth",
                                           "osaka", "kyoto", "milan", "dublin", "hanoi", "lisbon", "sofia", "tunis", "vienna", "zurich"};
  const std::vector<std::string> fillers = {"nice to meet you .", "how are you ?", "i am fine thanks .", "the weather is nice today .",
                                            "really ?", "tell me more ."};
  // Held out: the pairs (name i, city j) with (i + 2 j) % 5 == 0 (every name and every city still occurs in training).
  auto dialogue = [&](std::size_t i, std::size_t j) {
    Dialogue d;
    d.context = {"i am " + names[i] + " and i live in " + cities[j] + " .", fillers[gen.below(fillers.size())]};
    if (gen.below(2)) d.context.push_back("where do i live ?"), d.response = "you live in " + cities[j] + " .";
    else d.context.push_back("who am i ?"), d.response = "you are " + names[i] + " .";
    return d;
  };
  std::vector<Dialogue> htrain, htest;
  for (std::size_t i = 0; i < names.size(); ++i)
    for (std::size_t j = 0; j < cities.size(); ++j)
      if ((i + 2 * j) % 5 == 0)
        for (int k = 0; k < 4; ++k) htest.push_back(dialogue(i, j));
  for (int k = 0; k < 8000; ++k) {
    std::size_t i, j;
    do i = gen.below(names.size()), j = gen.below(cities.size());
    while ((i + 2 * j) % 5 == 0);
    htrain.push_back(dialogue(i, j));
  }
  std::vector<std::string> texts;
  for (auto* set : {&htrain, &htest})
    for (auto& d : *set) {
      texts.insert(texts.end(), d.context.begin(), d.context.end());
      texts.push_back(d.response);
    }
  // ---- VHRED data (part 2), built now so both share one vocabulary ----
  const std::vector<std::string> moods = {"i am hungry .", "i am bored .", "i want to go out ."};
  // Each answer names its choice twice ("let us eat sushi , i like sushi ."): with word drop the decoder
  // often cannot see the first mention, so keeping the two consistent needs z (without the repeat, an
  // autoregressive decoder models the choice as well without z, and the ELBO has no reason to use it).
  std::vector<std::vector<std::string>> answers;
  for (const auto& [verb, things] : std::vector<std::pair<std::string, std::vector<std::string>>>{
           {"eat", {"pizza", "sushi", "curry", "noodles"}}, {"play", {"chess", "cards", "tennis", "soccer"}},
           {"go to the", {"park", "beach", "zoo", "museum"}}}) {
    answers.emplace_back();
    for (const auto& t : things) answers.back().push_back("let us " + verb + " " + t + " , i like " + t + " .");
  }
  const std::vector<std::string> openers = {"hello .", "hi there .", "good morning .", "hey ."};
  auto vdialogue = [&](int g) {
    Dialogue d;
    d.context = {openers[gen.below(openers.size())], moods[g], "what shall we do ?"};
    d.response = answers[g][gen.below(4)];
    d.group = g;
    return d;
  };
  std::vector<Dialogue> vtrain, vtest;
  for (int k = 0; k < 3000; ++k) vtrain.push_back(vdialogue(int(gen.below(3))));
  for (int k = 0; k < 300; ++k) vtest.push_back(vdialogue(k % 3));
  for (auto& d : vtrain) {
    texts.insert(texts.end(), d.context.begin(), d.context.end());
    texts.push_back(d.response);
  }
  const nn::Tokenizer tok = nn::Tokenizer::build(texts, nn::TokenLevel::word);

  std::printf("HRED: dialogues whose answer depends on the first turn; %zu training, %zu held-out (unseen name-city pairs)\n",
              htrain.size(), htest.size());
  std::printf("  e.g. [%s] [%s] [%s] -> %s\n", htrain[0].context[0].c_str(), htrain[0].context[1].c_str(), htrain[0].context[2].c_str(),
              htrain[0].response.c_str());
  nn::HREDConfig hc;
  hc.vocab = tok.size(), hc.embed = 16, hc.utterance_hidden = hc.context_hidden = hc.decoder_hidden = hidden;
  hc.cell = nn::CellType::gru;
  hc.context_input = true;  // the conditioning vector also feeds every decoder step (peeky)
  auto csv = std::make_unique<example::Csv>(out + "/12_hred_vhred.csv", std::vector<std::string>{"model", "step", "loss", "recon", "kl", "kl_weight"});
  double hred_acc = 0;
  if (do_hred) {
    nn::HRED model(hc, gen);
    nn::Adam opt(model.parameters(), lr);
    auto order = iota_n(htrain.size());
    example::Progress progress("HRED step", steps);
    std::size_t pos = htrain.size();
    for (long s = 1; s <= steps; ++s) {
      if (pos + batch > htrain.size()) std::shuffle(order.begin(), order.end(), gen.engine()), pos = 0;
      Batch b = make_batch(tok, htrain, order, pos, pos + batch);
      pos += batch;
      Tensor loss = model.loss(b.context, b.response.ids);
      opt.zero_grad();
      backward(loss);
      nn::clip_grad_norm(model.parameters(), 5.0);
      opt.step();
      if (s % 10 == 0) csv->row("hred", s, loss.item(), "", "", "");
      progress.update(s, "loss " + example::fmt(loss.item()));
    }
    std::size_t correct = 0;
    nn::GenerateOptions greedy;
    greedy.max_length = 8;
    Batch b = make_batch(tok, htest, iota_n(htest.size()), 0, htest.size());
    auto g = model.generate(b.context, greedy).ids;
    for (std::size_t i = 0; i < htest.size(); ++i) {
      const std::string r = tok.decode(g[i]);
      correct += r == htest[i].response;
      if (i < 4) std::printf("  [%s] [%s] [%s] -> %s (%s)\n", htest[i].context[0].c_str(), htest[i].context[1].c_str(),
                             htest[i].context[2].c_str(), r.c_str(), r == htest[i].response ? "ok" : "wrong");
    }
    hred_acc = double(correct) / htest.size();
    std::printf("HRED held-out exact match: %.1f%%\n", 100 * hred_acc);
  }

  // ---------------- part 2: VHRED ----------------
  if (do_vhred) std::printf("VHRED: dialogues with four valid answers each; %zu training, %zu held-out contexts; word drop %.2f, "
              "KL annealed 0 -> 1 over %ld steps\n",
              vtrain.size(), vtest.size(), word_drop, warmup);
  nn::HREDConfig vc = hc;
  vc.latent = 4;
  double kl_test = 0, valid_frac = 0, mean_distinct = 0;
  std::map<int, std::map<std::string, int>> counts;
  if (do_vhred) {
    nn::VHRED model(vc, gen);
    nn::Adam opt(model.parameters(), lr);
    auto order = iota_n(vtrain.size());
    example::Progress progress("VHRED step", vsteps);
    std::size_t pos = vtrain.size();
    for (long s = 1; s <= vsteps; ++s) {
      if (pos + batch > vtrain.size()) std::shuffle(order.begin(), order.end(), gen.engine()), pos = 0;
      Batch b = make_batch(tok, vtrain, order, pos, pos + batch);
      pos += batch;
      nn::VHRED::ElboOptions o;
      o.kl_weight = nn::kl_anneal_linear(std::size_t(s), std::size_t(warmup));
      o.word_drop = word_drop;
      auto e = model.elbo(b.context, b.response, randn({batch, vc.latent}, gen), o, &gen);
      opt.zero_grad();
      backward(e.loss);
      nn::clip_grad_norm(model.parameters(), 5.0);
      opt.step();
      if (s % 10 == 0) csv->row("vhred", s, e.loss.item(), e.recon.item(), e.kl.item(), o.kl_weight);
      progress.update(s, "-ELBO " + example::fmt(e.loss.item()) + " recon " + example::fmt(e.recon.item()) + " KL " +
                             example::fmt(e.kl.item()) + " (weight " + example::fmt(o.kl_weight, 2) + ")");
    }
    {
      NoGrad no_grad;
      Batch b = make_batch(tok, vtest, iota_n(vtest.size()), 0, vtest.size());
      auto e = model.elbo(b.context, b.response, randn({vtest.size(), vc.latent}, gen));
      kl_test = e.kl.item();
      std::printf("VHRED held-out: recon %.3f, KL(q || p) %.3f nats per response\n", e.recon.item(), kl_test);
    }
    // Sampled answers: z from the prior, greedy decoding from [c, z]; 10 draws per held-out context.
    nn::GenerateOptions greedy;
    greedy.max_length = 16;
    Batch b = make_batch(tok, vtest, iota_n(vtest.size()), 0, vtest.size());
    std::size_t valid = 0, total = 0;
    for (int k = 0; k < 10; ++k) {
      auto g = model.generate(b.context, greedy, &gen).ids;
      for (std::size_t i = 0; i < vtest.size(); ++i) {
        const std::string r = tok.decode(g[i]);
        const auto& ok = answers[vtest[i].group];
        valid += std::find(ok.begin(), ok.end(), r) != ok.end();
        ++total;
        ++counts[vtest[i].group][r];
      }
    }
    valid_frac = double(valid) / total;
    for (int gi = 0; gi < 3; ++gi) {
      std::printf("  [%s] answers from 10 prior draws x %zu contexts:", moods[gi].c_str(), vtest.size() / 3);
      int distinct_valid = 0;
      for (auto& [r, n] : counts[gi]) {
        std::printf(" \"%s\" %d", r.c_str(), n);
        distinct_valid += std::find(answers[gi].begin(), answers[gi].end(), r) != answers[gi].end();
      }
      std::printf("\n");
      mean_distinct += distinct_valid / 3.0;
    }
    std::printf("VHRED sampled answers: %.1f%% valid, %.2f distinct valid answers per context type (of 4)\n", 100 * valid_frac,
                mean_distinct);
  }
  const std::string csv_path = csv->path();
  csv.reset();
  example::gnuplot(out + "/12_hred_vhred.gp",
                   "set terminal pngcairo size 1000,450\nset output '" + out + "/12_hred_vhred.png'\n" +
                       "set datafile separator ','\nset multiplot layout 1,2\nset xlabel 'step'\n" +
                       "set title 'HRED: training loss (mean token cross-entropy)'\nset logscale y\nunset key\n" +
                       "plot '" + csv_path + "' using 2:(strcol(1) eq 'hred' ? $3 : NaN) with lines lw 2\n" +
                       "unset logscale y\nset yrange [0:6]\nset key top right\nset title 'VHRED: reconstruction and KL (nats per response)'\n" +
                       "plot '" + csv_path + "' using 2:(strcol(1) eq 'vhred' ? $4 : NaN) with lines lw 2 title 'recon', " +
                       "'' using 2:(strcol(1) eq 'vhred' ? $5 : NaN) with lines lw 2 title 'KL(q||p)', " +
                       "'' using 2:(strcol(1) eq 'vhred' ? $6 : NaN) with lines dt 2 title 'KL weight'\nunset multiplot\n");
  std::printf("curves: %s; picture: %s/12_hred_vhred.png\n", csv_path.c_str(), out.c_str());

  const bool pass = (!do_hred || hred_acc >= hred_target) && (!do_vhred || (kl_test > 0.1 && valid_frac >= 0.9 && mean_distinct >= 3.0));
  return example::report("12_hred_vhred", "dialogues: earlier-turn answers / several valid answers",
                         "HRED exact / VHRED KL, valid, distinct",
                         ">= " + example::fmt(100 * hred_target, 3) + "% / > 0.1 / >= 90% / >= 3 of 4",
                         example::fmt(100 * hred_acc, 3) + "% / " + example::fmt(kl_test, 3) + " / " +
                             example::fmt(100 * valid_frac, 3) + "% / " + example::fmt(mean_distinct, 3),
                         pass);
}
