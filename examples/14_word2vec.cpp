// word2vec (単語の分散表現): skip-gram with negative sampling (負例サンプリング), trained by the tape.
//   L = -log sigmoid(<v_c, u_o>) - sum_k log sigmoid(-<v_c, u_(n_k)>),   n_k ~ count^0.75
// Part 1, the target: a generated corpus with planted clusters. T topics of W words each, plus a few
// function words shared by all topics (30% of the tokens); every sentence draws its content words from
// one topic, except 10% of the tokens, noise words from any topic. Words of a
// topic share their contexts, so their vectors should end up close: purity@5 = the fraction of each
// topic word's 5 nearest neighbours (cosine, among all words) that belong to its topic, averaged;
// target >= 0.9 (chance is about 9/53 = 0.17). A PCA projection of the topic words is drawn as a PNG.
// Part 2, real English: the glosses (definitions) of WordNet's nouns (/usr/share/wordnet/data.noun, Debian's
// wordnet-base, which scripts/install-deps.sh installs), a seeded sample of them. The target comes from
// WordNet itself: WordNet files every noun sense under one of 26 lexicographer files (noun.animal,
// noun.food, noun.person, ...); a word's file is its most frequent sense's (the first in index.noun).
// agreement@10 = the fraction of a word's 10 nearest neighbours (cosine, among the evaluated words) filed
// where it is, averaged over the gloss vocabulary's nouns (count >= 5, 3 letters or more, the 50 most
// frequent words left out: mostly function words, some of which WordNet also lists as nouns, like "a" and
// "in"). The same measure on the untrained vectors is the baseline (about the chance level, sum_f p_f^2);
// target: trained >= 2x untrained.
#include <tapegrad/tapegrad.hpp>

#include <algorithm>
#include <array>
#include <cctype>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <map>
#include <numeric>
#include <sstream>
#include <string>
#include <unordered_map>
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

// WordNet's noun database (wndb(5WN)): each synset's lexicographer file and gloss from data.noun, each
// single-word lemma's most frequent sense from index.noun.
struct WordNetNouns {
  std::vector<int> gloss_lexfile;                // per synset, in file order
  std::vector<std::vector<std::string>> glosses;  // per synset: the definition's words, lower case
  std::unordered_map<std::string, int> lexfile;  // lemma -> its first sense's lexicographer file
};

const char* lexfile_name(int f) {
  static const char* names[] = {"Tops", "act", "animal", "artifact", "attribute", "body", "cognition", "communication",
                                "event", "feeling", "food", "group", "location", "motive", "object", "person",
                                "phenomenon", "plant", "possession", "process", "quantity", "relation", "shape",
                                "state", "substance", "time"};
  return f >= 3 && f <= 28 ? names[f - 3] : "?";
}

// Empty glosses when data.noun cannot be opened; throws on a line that is not WordNet's format.
WordNetNouns read_wordnet(const std::string& dir) {
  WordNetNouns wn;
  std::ifstream data(dir + "/data.noun"), index(dir + "/index.noun");
  if (!data || !index) return wn;
  std::unordered_map<std::string, int> lexfile_of_offset;
  std::string line;
  while (std::getline(data, line)) {
    if (line.empty() || line[0] == ' ') continue;  // the licence header lines start with spaces
    std::istringstream in(line);
    std::string offset;
    int lexfile = -1;
    in >> offset >> lexfile;
    const auto bar = line.find(" | ");
    if (!in || lexfile < 3 || lexfile > 28 || bar == std::string::npos)
      throw Error("14_word2vec: " + dir + "/data.noun: not a WordNet noun synset line: " + line.substr(0, 60));
    lexfile_of_offset[offset] = lexfile;
    std::string g = line.substr(bar + 3);
    const auto quote = g.find('"');  // drop the example sentences: keep the definition
    if (quote != std::string::npos) g = g.substr(0, quote);
    for (char& c : g) c = std::isalpha(static_cast<unsigned char>(c)) ? char(std::tolower(static_cast<unsigned char>(c))) : ' ';
    wn.glosses.push_back(nn::split_words(g));
    wn.gloss_lexfile.push_back(lexfile);
  }
  // lemma pos synset_cnt p_cnt [ptr_symbol x p_cnt] sense_cnt tagsense_cnt synset_offset x synset_cnt
  while (std::getline(index, line)) {
    if (line.empty() || line[0] == ' ') continue;
    std::istringstream in(line);
    std::string lemma, pos, tok;
    long synsets = 0, pointers = 0;
    in >> lemma >> pos >> synsets >> pointers;
    for (long i = 0; i < pointers + 2; ++i) in >> tok;
    std::string first;
    in >> first;
    if (!in || synsets < 1)
      throw Error("14_word2vec: " + dir + "/index.noun: not a WordNet index line: " + line.substr(0, 60));
    if (lemma.find('_') != std::string::npos) continue;  // collocations never appear as one gloss token
    const auto it = lexfile_of_offset.find(first);
    if (it != lexfile_of_offset.end()) wn.lexfile[lemma] = it->second;
  }
  return wn;
}

}  // namespace

int main(int argc, char** argv) {
  example::Args args(argc, argv,
                     "14_word2vec: skip-gram with negative sampling on planted word clusters, and a WordNet demo\n"
                     "  --topics T --words W (per topic) --sentences N --epochs E --dim D --window C --negatives K\n"
                     "  --batch B --lr LR  --wordnet DIR (/usr/share/wordnet) --glosses N (of 82115) --wn-epochs E --wn-lr LR\n"
                     "  --wn-dim D --wn-target X (trained agreement@10 / untrained)  --no-wordnet");
  const bool quick = args.quick();
  const std::size_t topics = args.integer("topics", 5), per_topic = args.integer("words", 10);
  const std::size_t n_sent = args.integer("sentences", quick ? 1500 : 4000);
  const long epochs = args.integer("epochs", quick ? 3 : 5);
  const std::size_t dim = args.integer("dim", 20), window = args.integer("window", 3), negs = args.integer("negatives", 5);
  const std::size_t batch = args.integer("batch", 256);
  const double lr = args.real("lr", 0.01);
  const std::string wordnet = args.str("wordnet", "/usr/share/wordnet");
  const std::size_t n_gloss = args.integer("glosses", quick ? 15000 : 82115);
  const long wn_epochs = args.integer("wn-epochs", quick ? 2 : 5);
  const std::size_t wn_dim = args.integer("wn-dim", 50);
  const double wn_lr = args.real("wn-lr", 0.02);
  const double wn_target = args.real("wn-target", 2.0);
  const bool no_wordnet = args.flag("no-wordnet");
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

  std::printf("curves: %s; picture: %s/14_word2vec_pca.png\n", csv.path().c_str(), out.c_str());
  const int planted_code = example::report("14_word2vec (planted clusters)", "skip-gram, planted clusters", "purity@5",
                                           ">= 0.9", example::fmt(purity, 3), purity >= 0.9);

  // ---- part 2: WordNet noun glosses, against WordNet's own lexicographer files ----
  if (no_wordnet) {
    std::printf("WordNet part: skipped (--no-wordnet)\n");
    return planted_code;
  }
  const WordNetNouns wn = read_wordnet(wordnet);
  const std::string wn_task = "skip-gram, WordNet noun glosses";
  const std::string wn_metric = "agreement@10 with WordNet's lexicographer files (untrained vectors; chance)";
  const std::string wn_goal = ">= " + example::fmt(wn_target, 3) + "x untrained";
  if (wn.glosses.empty()) {
    std::printf("WordNet part: %s/data.noun or index.noun not found (install it with: apt-get install wordnet-base)\n",
                wordnet.c_str());
    example::report("14_word2vec", wn_task, wn_metric, wn_goal, "no WordNet: apt-get install wordnet-base", false);
    return 1;
  }
  // A seeded sample of the glosses: data.noun is sorted by lexicographer file, so its first lines are one topic.
  Generator wgen(seed + 7);
  std::vector<std::size_t> pick(wn.glosses.size());
  std::iota(pick.begin(), pick.end(), 0);
  std::shuffle(pick.begin(), pick.end(), wgen.engine());
  pick.resize(std::min(pick.size(), n_gloss));
  std::vector<std::string> toks;
  for (auto g : pick) toks.insert(toks.end(), wn.glosses[g].begin(), wn.glosses[g].end());
  auto wv = nn::Word2VecVocabulary::build(toks, 5);
  std::vector<std::vector<std::int64_t>> ws;
  for (auto g : pick) ws.push_back(wv.encode(wn.glosses[g]));
  // The evaluated words: the vocabulary's WordNet nouns of 3 letters or more, the 50 most frequent words left out.
  std::vector<std::int64_t> eval_ids;
  std::vector<int> eval_files;
  std::map<int, std::size_t> per_file;
  for (std::size_t i = 50; i < wv.size(); ++i) {
    const std::string& w = wv.word(std::int64_t(i));
    const auto it = wn.lexfile.find(w);
    if (w.size() < 3 || it == wn.lexfile.end()) continue;
    eval_ids.push_back(std::int64_t(i));
    eval_files.push_back(it->second);
    ++per_file[it->second];
  }
  if (eval_ids.size() < 20) {
    example::report("14_word2vec", wn_task, wn_metric, wn_goal, "too few nouns (" + std::to_string(eval_ids.size()) + ")", false);
    return 1;
  }
  double chance = 0;
  for (const auto& [f, n] : per_file) chance += double(n) * double(n) / (double(eval_ids.size()) * double(eval_ids.size()));
  std::printf("WordNet: %zu of %zu noun glosses, %zu tokens, %zu words with count >= 5, %zu of them evaluated nouns in "
              "%zu lexicographer files; D = %zu, window 4, K = %zu, Adam lr %g, %ld epochs\n",
              pick.size(), wn.glosses.size(), toks.size(), wv.size(), eval_ids.size(), per_file.size(), wn_dim, negs, wn_lr,
              wn_epochs);
  nn::Word2Vec wmodel(wv.size(), wn_dim, wgen);
  const double untrained = nn::neighbour_agreement(wmodel.w_in, eval_ids, eval_files, 10);
  example::Csv wcsv(out + "/14_word2vec_wordnet_loss.csv", {"epoch", "step", "mean_loss"});
  auto wtr = train(wmodel, ws, wv.counts(), 4, negs, 1024, wn_epochs, wn_lr, 1e-3, wgen, &wcsv, "wordnet");
  const double trained = nn::neighbour_agreement(wmodel.w_in, eval_ids, eval_files, 10);
  std::printf("  loss %.4f -> %.4f\n", wtr.first_loss, wtr.last_loss);
  for (const char* w : {"dog", "water", "music", "king", "disease", "tree", "money", "red"})
    if (wv.contains(w)) {
      const auto it = wn.lexfile.find(w);
      std::printf("  nearest to %-8s (noun.%s):%s\n", w, it == wn.lexfile.end() ? "-" : lexfile_name(it->second),
                  neighbours_line(wmodel.w_in, wv, wv.id(w), 6).c_str());
    }
  std::printf("agreement@10 with the lexicographer files: trained %.3f, untrained %.3f, chance %.3f (curve: %s)\n", trained,
              untrained, chance, wcsv.path().c_str());
  const bool wn_pass = trained >= wn_target * untrained;
  const int wn_code = example::report("14_word2vec", wn_task + " (" + std::to_string(pick.size()) + ")", wn_metric, wn_goal,
                                      example::fmt(trained, 3) + " (" + example::fmt(untrained, 3) + "; " +
                                          example::fmt(chance, 3) + ")",
                                      wn_pass);
  return planted_code != 0 ? planted_code : wn_code;
}
