// word2vec (単語の分散表現): skip-gram with negative sampling (負例サンプリング), trained by the tape.
//   L = -log sigmoid(<v_c, u_o>) - sum_k log sigmoid(-<v_c, u_(n_k)>),   n_k ~ count^0.75
// Part 1, the target: a generated corpus with planted clusters. T topics of W words each, plus a few
// function words shared by all topics (30% of the tokens); every sentence draws its content words from
// one topic, except 10% of the tokens, noise words from any topic. Words of a
// topic share their contexts, so their vectors should end up close: purity@5 = the fraction of each
// topic word's 5 nearest neighbours (cosine, among all words) that belong to its topic, averaged;
// target >= 0.9 (chance is about 9/53 = 0.17). A PCA projection of the topic words is drawn as a PNG.
// Part 2, a demo on real English: the glosses of WordNet's nouns (/usr/share/wordnet/data.noun, Debian's
// wordnet-base); nearest neighbours of a few words are printed. Optional: skipped when the file is absent.
#include <tapegrad/tapegrad.hpp>

#include <algorithm>
#include <array>
#include <cctype>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <numeric>
#include <string>
#include <vector>

#include "common/example.hpp"

using namespace tapegrad;

namespace {

struct Trained {
  double first_loss = 0, last_loss = 0;
};

// Skip-gram with negative sampling over `ids` (sentences already concatenated; `sentence_of` keeps pairs
// inside one sentence), Adam on minibatches of pairs.
Trained train(nn::Word2Vec& model, const std::vector<std::vector<std::int64_t>>& sentences, const std::vector<std::int64_t>& counts,
              std::size_t window, std::size_t negatives, std::size_t batch, long epochs, double lr, double subsample_t,
              Generator& gen, example::Csv* csv, const std::string& label) {
  nn::NegativeSampler sampler(counts);
  nn::Adam opt(model.parameters(), lr);
  Trained t;
  example::Progress progress(label + " epoch", epochs);
  long step = 0;
  for (long ep = 1; ep <= epochs; ++ep) {
    // Fresh subsampling and pairs each epoch, within sentences.
    std::vector<std::int64_t> center, context;
    for (const auto& s : sentences) {
      const auto kept = subsample_t > 0 ? nn::subsample(s, counts, subsample_t, gen) : s;
      if (kept.size() < 2) continue;
      auto p = nn::skipgram_pairs(kept, window);
      center.insert(center.end(), p.center.values.begin(), p.center.values.end());
      context.insert(context.end(), p.context.values.begin(), p.context.values.end());
    }
    std::vector<std::size_t> order(center.size());
    std::iota(order.begin(), order.end(), 0);
    std::shuffle(order.begin(), order.end(), gen.engine());
    double sum = 0;
    std::size_t nb = 0;
    for (std::size_t b = 0; b < order.size(); b += batch, ++nb) {
      const std::size_t e = std::min(order.size(), b + batch);
      std::vector<std::int64_t> c, o;
      for (std::size_t i = b; i < e; ++i) c.push_back(center[order[i]]), o.push_back(context[order[i]]);
      Index negs = sampler.sample_avoiding(o, negatives, gen);
      Tensor loss = model.skipgram_loss(Index(c), Index(o), negs);
      sum += loss.item();
      opt.zero_grad();
      backward(loss);
      opt.step();
      ++step;
    }
    const double mean = sum / std::max<std::size_t>(1, nb);
    if (ep == 1) t.first_loss = mean;
    t.last_loss = mean;
    if (csv) csv->row(ep, step, mean);
    progress.update(ep, "loss " + example::fmt(mean) + " (" + std::to_string(center.size()) + " pairs)");
  }
  return t;
}

// The first two principal components of the rows `rows` of E (power iteration with deflation).
std::vector<std::array<double, 2>> pca2(const Tensor& E, const std::vector<std::int64_t>& rows) {
  const std::size_t D = E.size(1), N = rows.size();
  const float* e = E.data<float>();
  std::vector<double> X(N * D), mu(D, 0.0);
  for (std::size_t i = 0; i < N; ++i)
    for (std::size_t j = 0; j < D; ++j) mu[j] += e[rows[i] * D + j] / N;
  for (std::size_t i = 0; i < N; ++i)
    for (std::size_t j = 0; j < D; ++j) X[i * D + j] = e[rows[i] * D + j] - mu[j];
  std::vector<double> C(D * D, 0.0);
  for (std::size_t i = 0; i < N; ++i)
    for (std::size_t a = 0; a < D; ++a)
      for (std::size_t b = 0; b < D; ++b) C[a * D + b] += X[i * D + a] * X[i * D + b];
  std::vector<std::vector<double>> comps;
  for (int k = 0; k < 2; ++k) {
    std::vector<double> v(D);
    for (std::size_t j = 0; j < D; ++j) v[j] = 1.0 + 0.1 * j;
    for (int it = 0; it < 500; ++it) {
      std::vector<double> w(D, 0.0);
      for (std::size_t a = 0; a < D; ++a)
        for (std::size_t b = 0; b < D; ++b) w[a] += C[a * D + b] * v[b];
      for (const auto& c : comps) {  // deflation: stay orthogonal to the components found
        double dot = 0;
        for (std::size_t j = 0; j < D; ++j) dot += w[j] * c[j];
        for (std::size_t j = 0; j < D; ++j) w[j] -= dot * c[j];
      }
      double n = 0;
      for (double x : w) n += x * x;
      n = std::sqrt(n);
      if (n == 0) break;
      for (std::size_t j = 0; j < D; ++j) v[j] = w[j] / n;
    }
    comps.push_back(v);
  }
  std::vector<std::array<double, 2>> out(N);
  for (std::size_t i = 0; i < N; ++i)
    for (int k = 0; k < 2; ++k) {
      double s = 0;
      for (std::size_t j = 0; j < D; ++j) s += X[i * D + j] * comps[k][j];
      out[i][k] = s;
    }
  return out;
}

std::string neighbours_line(const Tensor& E, const nn::Word2VecVocabulary& vocab, std::int64_t id, std::size_t k) {
  std::string s;
  for (const auto& nb : nn::nearest(E, id, k)) s += " " + vocab.word(nb.id) + "(" + example::fmt(nb.similarity, 2) + ")";
  return s;
}

}  // namespace

int main(int argc, char** argv) {
  example::Args args(argc, argv,
                     "14_word2vec: skip-gram with negative sampling on planted word clusters, and a WordNet demo\n"
                     "  --topics T --words W (per topic) --sentences N --epochs E --dim D --window C --negatives K\n"
                     "  --batch B --lr LR  --wordnet FILE (/usr/share/wordnet/data.noun) --glosses N --wn-epochs E --wn-lr LR\n"
                     "  --no-demo");
  const bool quick = args.quick();
  const std::size_t topics = args.integer("topics", 5), per_topic = args.integer("words", 10);
  const std::size_t n_sent = args.integer("sentences", quick ? 1500 : 4000);
  const long epochs = args.integer("epochs", quick ? 3 : 5);
  const std::size_t dim = args.integer("dim", 20), window = args.integer("window", 3), negs = args.integer("negatives", 5);
  const std::size_t batch = args.integer("batch", 256);
  const double lr = args.real("lr", 0.01);
  const std::string wordnet = args.str("wordnet", "/usr/share/wordnet/data.noun");
  const std::size_t n_gloss = args.integer("glosses", quick ? 15000 : 82115);
  const long wn_epochs = args.integer("wn-epochs", quick ? 2 : 5);
  const double wn_lr = args.real("wn-lr", 0.02);
  const bool no_demo = args.flag("no-demo");
  const std::string out = args.out_dir();
  const std::uint64_t seed = args.seed();
  args.check_unused();

  // ---- part 1: planted clusters ----
  const char* topic_names[] = {"food", "sport", "music", "weather", "computer", "sea", "tool", "body"};
  const std::vector<std::string> function_words = {"the", "a", "of", "and", "to", "is", "in", "it"};
  std::vector<std::string> all_tokens;
  std::vector<std::vector<std::string>> sentences_w;
  Generator gen(seed);
  for (std::size_t s = 0; s < n_sent; ++s) {
    const std::size_t topic = gen.below(topics);
    const std::size_t len = 6 + gen.below(7);
    std::vector<std::string> sent;
    for (std::size_t i = 0; i < len; ++i) {
      const double u = gen.uniform();
      // 30% function words, 10% noise words from any topic, the rest from the sentence's topic.
      const std::size_t t = u < 0.4 ? gen.below(topics) : topic;
      if (u < 0.3) sent.push_back(function_words[gen.below(function_words.size())]);
      else sent.push_back(std::string(topic_names[t % 8]) + (t >= 8 ? std::to_string(t) : "") + "_" + std::to_string(gen.below(per_topic)));
    }
    all_tokens.insert(all_tokens.end(), sent.begin(), sent.end());
    sentences_w.push_back(std::move(sent));
  }
  auto vocab = nn::Word2VecVocabulary::build(all_tokens);
  std::vector<std::vector<std::int64_t>> sentences;
  for (auto& s : sentences_w) sentences.push_back(vocab.encode(s));
  std::printf("word2vec, skip-gram + negative sampling: planted corpus of %zu sentences, %zu tokens, %zu words "
              "(%zu topics x %zu words + %zu function words); D = %zu, window %zu, K = %zu, Adam lr %g, batch %zu\n",
              n_sent, all_tokens.size(), vocab.size(), topics, per_topic, function_words.size(), dim, window, negs, lr, batch);

  nn::Word2Vec model(vocab.size(), dim, gen);
  example::Csv csv(out + "/14_word2vec_loss.csv", {"epoch", "step", "mean_loss"});
  auto tr = train(model, sentences, vocab.counts(), window, negs, batch, epochs, lr, 1e-2, gen, &csv, "planted");
  std::printf("loss %.4f -> %.4f\n", tr.first_loss, tr.last_loss);

  // purity@5 over the topic words
  auto topic_of = [&](std::int64_t id) -> int {
    const std::string& w = vocab.word(id);
    const auto us = w.find('_');
    if (us == std::string::npos) return -1;
    const std::string name = w.substr(0, us);
    for (std::size_t t = 0; t < topics; ++t)
      if (name == std::string(topic_names[t % 8]) + (t >= 8 ? std::to_string(t) : "")) return int(t);
    return -1;
  };
  std::vector<std::int64_t> topic_ids;
  for (std::size_t i = 0; i < vocab.size(); ++i)
    if (topic_of(std::int64_t(i)) >= 0) topic_ids.push_back(std::int64_t(i));
  double purity = 0;
  for (auto id : topic_ids) {
    int same = 0;
    for (const auto& nb : nn::nearest(model.w_in, id, 5)) same += topic_of(nb.id) == topic_of(id);
    purity += same / 5.0;
  }
  purity /= std::max<std::size_t>(1, topic_ids.size());
  for (std::size_t t = 0; t < std::min<std::size_t>(topics, 3); ++t) {
    const std::string w = std::string(topic_names[t % 8]) + (t >= 8 ? std::to_string(t) : "") + "_0";
    if (vocab.contains(w)) std::printf("  nearest to %-10s:%s\n", w.c_str(), neighbours_line(model.w_in, vocab, vocab.id(w), 5).c_str());
  }
  if (vocab.contains("the")) std::printf("  nearest to %-10s:%s\n", "the", neighbours_line(model.w_in, vocab, vocab.id("the"), 5).c_str());
  std::printf("purity@5 over %zu topic words: %.3f\n", topic_ids.size(), purity);

  // PCA picture of the topic words
  {
    auto xy = pca2(model.w_in, topic_ids);
    const std::string dat = out + "/14_word2vec_pca.dat";
    std::FILE* f = std::fopen(dat.c_str(), "w");
    for (std::size_t t = 0; t < topics; ++t) {
      for (std::size_t i = 0; i < topic_ids.size(); ++i)
        if (topic_of(topic_ids[i]) == int(t)) std::fprintf(f, "%g %g %zu %s\n", xy[i][0], xy[i][1], t, vocab.word(topic_ids[i]).c_str());
      std::fprintf(f, "\n\n");
    }
    std::fclose(f);
    std::string plot = "set terminal pngcairo size 900,700\nset output '" + out + "/14_word2vec_pca.png'\n" +
                       "set title 'word2vec on planted clusters: topic words on the first two principal components'\n" +
                       "set xlabel 'PC 1'\nset ylabel 'PC 2'\nset key outside right\nplot ";
    for (std::size_t t = 0; t < topics; ++t)
      plot += std::string(t ? ", " : "") + "'" + dat + "' index " + std::to_string(t) + " using 1:2 with points pt 7 ps 1.5 title '" +
              std::string(topic_names[t % 8]) + (t >= 8 ? std::to_string(t) : "") + "'";
    plot += ", '" + dat + "' using 1:2:(sprintf('%s', strcol(4)[strstrt(strcol(4),'_')+1:])) with labels offset 0.8,0.5 font ',8' notitle\n";
    example::gnuplot(out + "/14_word2vec_pca.gp", plot);
  }

  // ---- part 2: WordNet glosses (optional demo) ----
  std::ifstream wn(wordnet);
  if (no_demo) {
    std::printf("WordNet demo: skipped (--no-demo)\n");
  } else if (!wn) {
    std::printf("WordNet demo: skipped, %s not found (install it with: apt-get install wordnet-base)\n", wordnet.c_str());
  } else {
    std::vector<std::vector<std::string>> gl;
    std::vector<std::string> toks;
    std::string line;
    while (gl.size() < n_gloss && std::getline(wn, line)) {
      if (line.empty() || line[0] == ' ') continue;  // the licence header lines start with spaces
      const auto bar = line.find(" | ");
      if (bar == std::string::npos) continue;
      std::string g = line.substr(bar + 3);
      const auto quote = g.find('"');  // drop the example sentences: keep the definition
      if (quote != std::string::npos) g = g.substr(0, quote);
      for (char& c : g) c = std::isalpha(static_cast<unsigned char>(c)) ? char(std::tolower(static_cast<unsigned char>(c))) : ' ';
      auto words = nn::split_words(g);
      toks.insert(toks.end(), words.begin(), words.end());
      gl.push_back(std::move(words));
    }
    auto wv = nn::Word2VecVocabulary::build(toks, 5);
    std::vector<std::vector<std::int64_t>> ws;
    for (auto& g : gl) ws.push_back(wv.encode(g));
    std::printf("WordNet demo: %zu noun glosses, %zu tokens, %zu words with count >= 5; D = 50, window 4\n", gl.size(),
                toks.size(), wv.size());
    Generator wgen(seed + 7);
    nn::Word2Vec wmodel(wv.size(), 50, wgen);
    auto wtr = train(wmodel, ws, wv.counts(), 4, negs, 1024, wn_epochs, wn_lr, 1e-3, wgen, nullptr, "wordnet");
    std::printf("  loss %.4f -> %.4f\n", wtr.first_loss, wtr.last_loss);
    for (const char* w : {"animal", "water", "music", "king", "disease", "tree", "money", "red"})
      if (wv.contains(w)) std::printf("  nearest to %-8s:%s\n", w, neighbours_line(wmodel.w_in, wv, wv.id(w), 6).c_str());
  }

  std::printf("curves: %s; picture: %s/14_word2vec_pca.png\n", csv.path().c_str(), out.c_str());
  return example::report("14_word2vec", "skip-gram, planted clusters", "purity@5", ">= 0.9", example::fmt(purity, 3),
                         purity >= 0.9);
}
