// VAE (変分オートエンコーダ) on the 8x8 handwritten digits (1797 images, 64 pixels 0..16, scaled to [0, 1]).
//   encoder  h = tanh(x W_h + b_h);  mu, logvar = h W_mu + b_mu, h W_lv + b_lv        q(z|x)
//   z = mu + exp(logvar / 2) * eps,  eps ~ N(0, I)                                      (reparameterisation)
//   decoder  p(x|z) = Bernoulli(sigmoid(tanh(z W_d + b_d) W_o + b_o))
//   -ELBO = recon + KL,  recon = sum_pixels BCE(logits, x),  KL = KL(q(z|x) || N(0, I))   (nats per image)
// The pixels are grey levels, so the Bernoulli "likelihood" of a pixel of value x in (0, 1) is the cross
// entropy -x log p - (1 - x) log(1 - p): the two baselines below are measured with the same yardstick.
// Baselines (computed here, held out with the training set's means, and in-sample over all images):
//   the mean image, p = mean image                  (a model that ignores the input: 27.1 in-sample)
//   each class's mean image, p = its class's mean   (a model that knows only the label: 22.0 in-sample)
// Targets, each against the stricter of the two figures: held-out -ELBO below the mean-image cost,
// reconstruction term below the class-mean cost (the latent code carries more than the label), and KL
// above 1 nat (the code is used: no posterior collapse).
// Data: data/digits.csv.gz (scripts/fetch-digits.sh extracts it from Debian's python3-sklearn package).
#include <tapegrad/tapegrad.hpp>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <memory>
#include <numeric>
#include <string>
#include <vector>

#include "common/data.hpp"
#include "common/example.hpp"

using namespace tapegrad;

namespace {

using example::Digits;  // examples/common/data.hpp
using example::load_digits;

Tensor batch_of(const Digits& d, const std::vector<std::size_t>& ids, std::size_t from, std::size_t to) {
  std::vector<float> x;
  x.reserve((to - from) * 64);
  for (std::size_t i = from; i < to; ++i) x.insert(x.end(), d.pixels.begin() + ids[i] * 64, d.pixels.begin() + ids[i] * 64 + 64);
  return from_data(x.data(), Shape{to - from, 64});
}

// Sum over pixels of -x log p - (1 - x) log(1 - p), with p clamped away from 0 and 1.
double bce(const float* x, const std::vector<double>& p) {
  double s = 0;
  for (int j = 0; j < 64; ++j) {
    const double q = std::clamp(p[j], 1e-6, 1 - 1e-6);
    s -= x[j] * std::log(q) + (1 - x[j]) * std::log(1 - q);
  }
  return s;
}

struct Eval {
  double neg_elbo = 0, recon = 0, kl = 0;
};

// Held-out -ELBO, averaged over `samples` draws of eps per image (a Monte Carlo estimate of the expectation).
Eval evaluate(const nn::VAE& vae, const Tensor& x, int samples, Generator& gen) {
  NoGrad no_grad;
  Eval e;
  for (int s = 0; s < samples; ++s) {
    auto l = vae.loss(x, gen);
    e.recon += l.recon.item() / samples;
    e.kl += l.kl.item() / samples;
  }
  e.neg_elbo = e.recon + e.kl;
  return e;
}

// Writes digits (each 64 values in [0, 1]) as one matrix, `cols` digits a row, 1-pixel gaps, for
// gnuplot's "matrix with image".
void write_grid(const std::string& path, const std::vector<std::vector<float>>& digits, std::size_t cols) {
  const std::size_t rows = (digits.size() + cols - 1) / cols, W = cols * 9 + 1, H = rows * 9 + 1;
  std::vector<float> m(W * H, 0.25f);
  for (std::size_t k = 0; k < digits.size(); ++k) {
    const std::size_t r0 = (k / cols) * 9 + 1, c0 = (k % cols) * 9 + 1;
    for (int i = 0; i < 8; ++i)
      for (int j = 0; j < 8; ++j) m[(r0 + i) * W + c0 + j] = digits[k][i * 8 + j];
  }
  std::FILE* f = std::fopen(path.c_str(), "w");
  for (std::size_t r = 0; r < H; ++r) {
    for (std::size_t c = 0; c < W; ++c) std::fprintf(f, "%s%.3f", c ? " " : "", m[r * W + c]);
    std::fprintf(f, "\n");
  }
  std::fclose(f);
}

void draw_grid(const std::string& out, const std::string& name, const std::string& title, std::size_t cols, std::size_t rows) {
  const std::string dat = out + "/" + name + ".dat";
  char size[64];
  std::snprintf(size, sizeof size, "%zu,%zu", 60 * cols + 40, 60 * rows + 60);
  example::gnuplot(out + "/" + name + ".gp",
                   "set terminal pngcairo size " + std::string(size) + "\nset output '" + out + "/" + name + ".png'\n" +
                       "set title \"" + title + "\"\nunset xtics\nunset ytics\nunset colorbox\nunset key\n" +
                       "set palette gray negative\nset cbrange [0:1]\nset yrange [] reverse\nset size ratio -1\n" +
                       "set lmargin 1\nset rmargin 1\nplot '" + dat + "' matrix with image\n");
}

}  // namespace

int main(int argc, char** argv) {
  example::Args args(argc, argv,
                     "13_vae_digits: a Bernoulli VAE on the 8x8 digits\n"
                     "  --data FILE (data/digits.csv.gz)  --epochs N  --hidden H  --latent Z  --batch B  --lr LR\n"
                     "  --test N (held-out images)  --train N (0: all the rest)");
  const bool quick = args.quick();
  const std::string data = args.str("data", "data/digits.csv.gz");
  const long epochs = args.integer("epochs", quick ? 150 : 300);
  const std::size_t hidden = args.integer("hidden", 128), latent = args.integer("latent", 8);
  const std::size_t batch = args.integer("batch", 64);
  const double lr = args.real("lr", 2e-3);
  const std::size_t n_test = args.integer("test", 297), n_train_max = args.integer("train", 0);
  const std::string out = args.out_dir();
  const std::uint64_t seed = args.seed();
  args.check_unused();

  Digits d;
  if (!load_digits(data, d)) {
    std::fprintf(stderr,
                 "13_vae_digits: cannot read %s (8x8 digits, 1797 rows of 64 pixels + label).\n"
                 "  Get it with: bash scripts/fetch-digits.sh  (extracts digits.csv.gz from Debian's python3-sklearn)\n"
                 "  or pass --data /path/to/digits.csv.gz\n",
                 data.c_str());
    return 77;  // ctest: skipped
  }
  if (d.size() <= n_test + batch) {
    std::fprintf(stderr, "13_vae_digits: only %zu images in %s\n", d.size(), data.c_str());
    return 2;
  }
  Generator gen(seed);
  std::vector<std::size_t> order(d.size());
  std::iota(order.begin(), order.end(), 0);
  std::shuffle(order.begin(), order.end(), gen.engine());
  std::vector<std::size_t> test(order.begin(), order.begin() + n_test), train(order.begin() + n_test, order.end());
  if (n_train_max && n_train_max < train.size()) train.resize(n_train_max);
  std::printf("VAE on the 8x8 digits: %zu images (%zu train, %zu held out), 64-%zu-%zu tanh MLPs, Bernoulli decoder\n",
              d.size(), train.size(), test.size(), hidden, latent);

  // Baselines on the held-out images, with the training set's mean images.
  std::vector<double> mean(64, 0.0);
  std::vector<std::vector<double>> cls(10, std::vector<double>(64, 0.0));
  std::vector<double> cls_n(10, 0.0);
  for (std::size_t i : train) {
    const float* x = &d.pixels[i * 64];
    for (int j = 0; j < 64; ++j) mean[j] += x[j] / double(train.size()), cls[d.labels[i]][j] += x[j];
    cls_n[d.labels[i]] += 1;
  }
  for (int c = 0; c < 10; ++c)
    for (int j = 0; j < 64; ++j) cls[c][j] /= std::max(1.0, cls_n[c]);
  double base_mean = 0, base_class = 0, floor = 0;
  for (std::size_t i : test) {
    base_mean += bce(&d.pixels[i * 64], mean) / test.size();
    base_class += bce(&d.pixels[i * 64], cls[d.labels[i]]) / test.size();
  }
  // The same baselines in-sample, over all images with all images' means (the numbers usually quoted:
  // 27.1 and 22.0), and the floor: even a perfect p = x costs the pixels' own entropy (they are grey).
  std::vector<double> all_mean(64, 0.0);
  std::vector<std::vector<double>> all_cls(10, std::vector<double>(64, 0.0));
  std::vector<double> all_n(10, 0.0);
  for (std::size_t i = 0; i < d.size(); ++i) {
    for (int j = 0; j < 64; ++j) all_mean[j] += d.pixels[i * 64 + j] / double(d.size()), all_cls[d.labels[i]][j] += d.pixels[i * 64 + j];
    all_n[d.labels[i]] += 1;
  }
  for (int c = 0; c < 10; ++c)
    for (int j = 0; j < 64; ++j) all_cls[c][j] /= std::max(1.0, all_n[c]);
  double in_mean = 0, in_class = 0;
  for (std::size_t i = 0; i < d.size(); ++i) {
    const float* x = &d.pixels[i * 64];
    in_mean += bce(x, all_mean) / d.size();
    in_class += bce(x, all_cls[d.labels[i]]) / d.size();
    std::vector<double> self(x, x + 64);
    floor += bce(x, self) / d.size();
  }
  std::printf("baselines (nats per image): mean image %.2f held out (%.2f in-sample), class-mean image %.2f held out "
              "(%.2f in-sample); a perfect reconstruction costs %.2f (the pixels' entropy)\n",
              base_mean, in_mean, base_class, in_class, floor);
  // Targets: the stricter of the held-out and in-sample figures.
  const double target_elbo = std::min(base_mean, in_mean), target_recon = std::min(base_class, in_class);

  nn::VAE vae(64, hidden, latent, gen);
  nn::Adam opt(vae.parameters(), lr);
  const Tensor x_test = batch_of(d, test, 0, test.size());
  auto csv = std::make_unique<example::Csv>(out + "/13_vae_curve.csv", std::vector<std::string>{"epoch", "train_neg_elbo", "train_recon", "train_kl", "test_neg_elbo",
                                               "test_recon", "test_kl"});
  example::Progress progress("epoch", epochs);
  Generator eval_gen(seed + 1000);
  for (long ep = 1; ep <= epochs; ++ep) {
    std::shuffle(train.begin(), train.end(), gen.engine());
    double tr_loss = 0, tr_recon = 0, tr_kl = 0;
    std::size_t nb = 0;
    for (std::size_t b = 0; b + batch <= train.size(); b += batch, ++nb) {
      Tensor x = batch_of(d, train, b, b + batch);
      auto l = vae.loss(x, gen);
      tr_loss += l.loss.item(), tr_recon += l.recon.item(), tr_kl += l.kl.item();
      opt.zero_grad();
      backward(l.loss);
      opt.step();
    }
    tr_loss /= nb, tr_recon /= nb, tr_kl /= nb;
    if (ep % 5 == 0 || ep == epochs || ep == 1) {
      const Eval e = evaluate(vae, x_test, 4, eval_gen);
      csv->row(ep, tr_loss, tr_recon, tr_kl, e.neg_elbo, e.recon, e.kl);
      progress.update(ep, "train -ELBO " + example::fmt(tr_loss) + "  held-out -ELBO " + example::fmt(e.neg_elbo) +
                              " (recon " + example::fmt(e.recon) + ", KL " + example::fmt(e.kl) + ")");
    }
  }
  const std::string csv_path = csv->path();
  csv.reset();  // closes (flushes) the file before gnuplot reads it
  const Eval e = evaluate(vae, x_test, 20, eval_gen);
  std::printf("held-out (20 samples of z per image): -ELBO %.2f = recon %.2f + KL %.2f nats per image\n", e.neg_elbo,
              e.recon, e.kl);

  // Pictures: held-out digits over their reconstructions (the decoder's means at z = mu), and samples
  // from the prior z ~ N(0, I).
  {
    NoGrad no_grad;
    const std::size_t show = std::min<std::size_t>(10, test.size());
    Tensor xs = batch_of(d, test, 0, show);
    Tensor rec = sigmoid(vae.decode(vae.encode(xs).mu));
    std::vector<std::vector<float>> grid;
    const float* px = xs.data<float>();
    const float* pr = rec.data<float>();
    for (std::size_t k = 0; k < show; ++k) grid.emplace_back(px + k * 64, px + k * 64 + 64);
    for (std::size_t k = 0; k < show; ++k) grid.emplace_back(pr + k * 64, pr + k * 64 + 64);
    write_grid(out + "/13_vae_reconstructions.dat", grid, show);
    draw_grid(out, "13_vae_reconstructions", "held-out digits (top) and their reconstructions (bottom)", show, 2);

    Tensor z = randn({50, latent}, eval_gen);
    Tensor smp = sigmoid(vae.decode(z));
    const float* ps = smp.data<float>();
    grid.clear();
    for (std::size_t k = 0; k < 50; ++k) grid.emplace_back(ps + k * 64, ps + k * 64 + 64);
    write_grid(out + "/13_vae_samples.dat", grid, 10);
    draw_grid(out, "13_vae_samples", "samples from the prior N(0, I) (decoder means)", 10, 5);
  }
  example::gnuplot(out + "/13_vae_curve.gp",
                   "set terminal pngcairo size 800,500\nset output '" + out + "/13_vae_curve.png'\n" +
                       "set datafile separator ','\nset key center right\nset xlabel 'epoch'\nset ylabel 'nats per image'\n" +
                       "set title 'VAE on 8x8 digits: held-out -ELBO and its terms'\n" +
                       "plot '" + csv_path + "' using 1:5 with lines lw 2 title 'held-out -ELBO', " +
                       "'' using 1:6 with lines lw 2 title 'held-out reconstruction', " +
                       "'' using 1:7 with lines lw 2 title 'held-out KL', " + example::fmt(target_elbo) +
                       " with lines dt 2 lw 2 lc 'black' title 'mean-image baseline (-ELBO target)', " + example::fmt(target_recon) +
                       " with lines dt 2 lw 2 lc 'red' title 'class-mean baseline (reconstruction target)'\n");
  std::printf("curves: %s; pictures: %s/13_vae_{reconstructions,samples,curve}.png\n", csv_path.c_str(), out.c_str());

  const bool pass = e.neg_elbo < target_elbo && e.recon < target_recon && e.kl > 1.0;
  return example::report("13_vae_digits", "VAE, 8x8 digits", "held-out -ELBO / recon / KL (nats)",
                         "< " + example::fmt(target_elbo, 3) + " / < " + example::fmt(target_recon, 3) + " / > 1",
                         example::fmt(e.neg_elbo, 3) + " / " + example::fmt(e.recon, 3) + " / " + example::fmt(e.kl, 3),
                         pass);
}
