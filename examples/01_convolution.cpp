// CNN (畳み込みニューラルネットワーク): convolution, stride, padding and max pooling, then a small CNN that
// learns the 8x8 handwritten digits.
//
// Part 1, the course's output-size example: a 5x5 input, a 3x3 filter, stride 2, zero padding 1 gives a
// 3x3 feature map, O = (H + 2P - F) / S + 1 = (5 + 2 - 3) / 2 + 1 = 3 (the padding is doubled, not the
// stride: see docs/course-notes.md, section 1). The program prints the map and checks it, shape and
// values, against a direct four-loop convolution.
//
// Part 2, a small CNN on the 8x8 digits:
//   x (N, 1, 8, 8) -> conv2d 3x3, 8 filters, stride 1, pad 1 -> relu -> max_pool2d 2x2 -> (N, 8, 4, 4)
//   -> reshape (N, 128) -> Linear(128, 10) -> softmax_cross_entropy,  Adam (lr 0.01), minibatches of 32.
// 80% of the images train, 20% are held out (a fixed, seeded shuffle). Target: >= 95% held-out accuracy.
//
// Data: the UCI "Optical Recognition of Handwritten Digits" set (E. Alpaydin and C. Kaynak, 1998, UCI
// Machine Learning Repository), in the 8x8 form scikit-learn ships: 1797 images, 64 pixel values 0..16 and
// the label per row. `bash scripts/fetch-digits.sh` extracts data/digits.csv.gz from Debian's
// python3-sklearn package (no Python needed).
#include <tapegrad/tapegrad.hpp>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <numeric>
#include <string>
#include <vector>

#include "common/data.hpp"
#include "common/example.hpp"

using namespace tapegrad;

namespace {

// ---- part 1: the course's 5x5 / 3x3 / stride 2 / pad 1 example ------------------------------------

bool course_convolution_example() {
  std::printf("1. the course's example: 5x5 input, 3x3 filter, stride 2, zero padding 1\n");
  const std::size_t H = 5, F = 3, S = 2, P = 1;
  std::vector<double> xv(H * H), wv = {1, 0, -1, 2, 0, -2, 1, 0, -1};  // input 1..25; a Sobel-like filter
  std::iota(xv.begin(), xv.end(), 1.0);
  Tensor x = from_values(xv, {1, 1, H, H});
  Tensor w = from_values(wv, {1, 1, F, F});
  Tensor y = conv2d(x, w, Tensor(), S, P);
  const std::size_t O = (H + 2 * P - F) / S + 1;
  std::printf("   output size O = (H + 2P - F) / S + 1 = (%zu + %zu - %zu) / %zu + 1 = %zu  (engine: %zux%zu)\n", H, 2 * P,
              F, S, O, y.size(2), y.size(3));
  // A direct convolution (cross-correlation, as every deep-learning library computes it) for comparison.
  bool ok = y.size(2) == 3 && y.size(3) == 3 && O == 3;
  std::printf("   input                filter       output\n");
  for (std::size_t i = 0; i < H; ++i) {
    std::printf("   ");
    for (std::size_t j = 0; j < H; ++j) std::printf("%3.0f", xv[i * H + j]);
    std::printf("     ");
    if (i < F)
      for (std::size_t j = 0; j < F; ++j) std::printf("%3.0f", wv[i * F + j]);
    else
      std::printf("         ");
    if (i < O) {
      std::printf("    ");
      for (std::size_t j = 0; j < O; ++j) {
        double ref = 0;
        for (std::size_t a = 0; a < F; ++a)
          for (std::size_t b = 0; b < F; ++b) {
            const long r = long(i * S + a) - long(P), c = long(j * S + b) - long(P);
            if (r >= 0 && c >= 0 && r < long(H) && c < long(H)) ref += xv[r * H + c] * wv[a * F + b];
          }
        const double got = y.at({0, 0, i, j});
        ok = ok && std::abs(got - ref) < 1e-4;
        std::printf("%5.0f", got);
      }
    }
    std::printf("\n");
  }
  std::printf("   3x3 output, equal to a direct four-loop convolution: %s\n\n", ok ? "yes" : "NO");
  return ok;
}

// ---- part 2: the digits ----------------------------------------------------------------------------

using example::Digits;  // examples/common/data.hpp
using example::load_digits;

struct CNN {
  Tensor K, kb;  // conv filters (F, 1, 3, 3), bias (F)
  nn::Linear fc;
  CNN(std::size_t filters, Generator& gen)
      : K(parameter(randn({filters, 1, 3, 3}, gen, std::sqrt(2.0 / 9.0)))),  // He: fan-in 1 * 3 * 3
        kb(parameter(zeros({filters}))),
        fc(filters * 16, 10, gen) {}
  Tensor operator()(const Tensor& x) const {  // x (N, 1, 8, 8) -> logits (N, 10)
    Tensor h = max_pool2d(relu(conv2d(x, K, kb, 1, 1)), 2, 2);  // (N, F, 4, 4)
    return fc(reshape(h, {h.size(0), h.size(1) * 16}));
  }
  std::vector<Tensor> parameters() const {
    std::vector<Tensor> p = {K, kb};
    for (auto& t : fc.parameters()) p.push_back(t);
    return p;
  }
};

Tensor batch_images(const Digits& d, const std::vector<std::size_t>& idx, std::size_t from, std::size_t to) {
  std::vector<float> v;
  v.reserve((to - from) * 64);
  for (std::size_t k = from; k < to; ++k) v.insert(v.end(), &d.pixels[idx[k] * 64], &d.pixels[idx[k] * 64] + 64);
  return from_data(v.data(), {to - from, 1, 8, 8});
}
Index batch_labels(const Digits& d, const std::vector<std::size_t>& idx, std::size_t from, std::size_t to) {
  std::vector<std::int64_t> v;
  for (std::size_t k = from; k < to; ++k) v.push_back(d.labels[idx[k]]);
  return Index(v);
}

// Loss and accuracy over a whole index set, without recording.
std::pair<double, double> evaluate(const CNN& net, const Digits& d, const std::vector<std::size_t>& idx) {
  NoGrad no_grad;
  Tensor logits = net(batch_images(d, idx, 0, idx.size()));
  Index labels = batch_labels(d, idx, 0, idx.size());
  const double loss = softmax_cross_entropy(logits, labels).item();
  std::vector<double> l = logits.to_vector();
  std::size_t right = 0;
  for (std::size_t n = 0; n < idx.size(); ++n) {
    const auto row = l.begin() + n * 10;
    right += std::max_element(row, row + 10) - row == labels.values[n];
  }
  return {loss, double(right) / idx.size()};
}

}  // namespace

int main(int argc, char** argv) {
  example::Args args(argc, argv,
                     "01_convolution: the course's conv output-size example, then a small CNN on the 8x8 digits\n"
                     "  --data FILE (data/digits.csv.gz)  --epochs N (30; quick 10)  --filters F (8)  --batch B (32)\n"
                     "  --lr LR (0.01)  --holdout FRACTION (0.2)  --target ACC (0.95)");
  const bool quick = args.quick();
  const std::string data = args.str("data", "data/digits.csv.gz");
  const long epochs = args.integer("epochs", quick ? 10 : 30);
  const std::size_t filters = args.integer("filters", 8);
  const std::size_t batch = args.integer("batch", 32);
  const double lr = args.real("lr", 0.01);
  const double holdout = args.real("holdout", 0.2);
  const double target = args.real("target", 0.95);
  const std::uint64_t seed = args.seed();
  const std::string out = args.out_dir();
  args.check_unused();

  const bool conv_ok = course_convolution_example();

  Digits d;
  if (!load_digits(data, d)) {
    std::fprintf(stderr,
                 "01_convolution: cannot read %s (the 8x8 digits, 1797 rows of 64 pixels + label).\n"
                 "  Get it with: bash scripts/fetch-digits.sh  (extracts digits.csv.gz from Debian's python3-sklearn)\n"
                 "  or pass --data /path/to/digits.csv.gz\n",
                 data.c_str());
    return 2;
  }
  Generator gen(seed);
  std::vector<std::size_t> order(d.size());
  std::iota(order.begin(), order.end(), 0);
  std::shuffle(order.begin(), order.end(), gen.engine());
  const std::size_t n_test = static_cast<std::size_t>(std::lround(holdout * d.size()));
  std::vector<std::size_t> test(order.begin(), order.begin() + n_test), train(order.begin() + n_test, order.end());

  std::printf("2. a small CNN on the 8x8 handwritten digits (UCI Optical Recognition of Handwritten Digits,\n"
              "   Alpaydin & Kaynak 1998): %zu images, %zu train, %zu held out\n",
              d.size(), train.size(), test.size());
  std::printf("   conv 3x3 x%zu (pad 1) -> relu -> max pool 2x2 -> Linear(%zu, 10) -> softmax cross-entropy; Adam lr %g, "
              "batch %zu, %ld epochs\n",
              filters, filters * 16, lr, batch, epochs);

  CNN net(filters, gen);
  nn::Adam opt(net.parameters(), lr);
  const std::string csv_path = out + "/01_convolution.csv";
  example::Progress progress("epoch", epochs, 1.0);
  double test_acc = 0, test_loss = 0;
  {  // the CSV is closed (flushed) at the end of this scope, before gnuplot reads it
    example::Csv csv(csv_path, {"epoch", "train_loss", "train_acc", "test_loss", "test_acc"});
    {
      auto [tl, ta] = evaluate(net, d, train);
      auto [vl, va] = evaluate(net, d, test);
      csv.row(0, tl, ta, vl, va);
    }
    for (long e = 1; e <= epochs; ++e) {
      std::shuffle(train.begin(), train.end(), gen.engine());
      for (std::size_t from = 0; from < train.size(); from += batch) {
        const std::size_t to = std::min(train.size(), from + batch);
        Tensor loss = softmax_cross_entropy(net(batch_images(d, train, from, to)), batch_labels(d, train, from, to));
        opt.zero_grad();
        backward(loss);
        opt.step();
      }
      auto [tl, ta] = evaluate(net, d, train);
      std::tie(test_loss, test_acc) = evaluate(net, d, test);
      csv.row(e, tl, ta, test_loss, test_acc);
      progress.update(e, "train loss " + example::fmt(tl) + " acc " + example::fmt(100 * ta, 4) + "%, held-out loss " +
                             example::fmt(test_loss) + " acc " + example::fmt(100 * test_acc, 4) + "%");
    }
  }
  std::printf("   held-out accuracy %.2f%% after %ld epochs (%.1f s)\n", 100 * test_acc, epochs, progress.elapsed());

  const std::string png = out + "/01_convolution.png";
  if (example::gnuplot(out + "/01_convolution.gp",
                       "set terminal pngcairo size 900,420 font ',10'\nset output '" + png +
                           "'\nset datafile separator ','\nset multiplot layout 1,2 title 'small CNN on the 8x8 digits "
                           "(UCI, Alpaydin and Kaynak)'\nset xlabel 'epoch'\nset ylabel 'cross-entropy'\nset logscale y\n"
                           "set grid\nplot '" + csv_path + "' using 1:2 with linespoints title 'train', '' "
                           "using 1:4 with linespoints title 'held out'\nunset logscale y\nset ylabel "
                           "'accuracy (%)'\nset yrange [80:100]\nset key bottom right\nplot '" + csv_path +
                           "' using 1:($1 > 0 ? $3*100 : 1/0) with linespoints title 'train', '' using 1:($1 > 0 ? $5*100 : 1/0) "
                           "with linespoints title 'held out', " + example::fmt(100 * target) +
                           " with lines dt 2 lc rgb 'black' title 'target'\nunset multiplot\n"))
    std::printf("   wrote %s and %s\n", csv_path.c_str(), png.c_str());
  else
    std::printf("   wrote %s\n", csv_path.c_str());

  const bool pass = conv_ok && test_acc >= target;
  return example::report("01_convolution", "5x5/3x3/s2/p1 -> 3x3; CNN on 8x8 digits (UCI, Alpaydin & Kaynak)",
                         "held-out accuracy", ">= " + example::fmt(100 * target, 3) + "% (and 3x3 map)",
                         example::fmt(100 * test_acc, 4) + "%" + (conv_ok ? "" : " (3x3 check FAILED)"), pass);
}
