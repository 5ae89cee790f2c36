// Datasets shared by several course examples (header-only, public API only): the 8x8 handwritten digits
// (01 convolution, 13 VAE) and the adding problem (07 LSTM, 08 GRU).
#pragma once

#include <tapegrad/tapegrad.hpp>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <vector>

namespace example {

// The 8x8 digits: 1797 rows of 64 pixels (0..16) and a label, from data/digits.csv.gz
// (scripts/fetch-digits.sh extracts it from Debian's python3-sklearn package).
struct Digits {
  std::vector<float> pixels;  // N x 64, scaled to [0, 1]
  std::vector<std::int64_t> labels;
  std::size_t size() const { return labels.size(); }
};

// Reads the .csv.gz through `gzip -dc` (no zlib dependency); skips lines that are not 65 numbers (a header).
// Returns false when the file is missing or unreadable, or holds no digit.
inline bool load_digits(const std::string& path, Digits& d) {
  if (!std::filesystem::exists(path)) return false;
  const std::string cmd = "gzip -dc '" + path + "' 2>/dev/null";
  FILE* f = popen(cmd.c_str(), "r");
  if (!f) return false;
  char line[4096];
  while (std::fgets(line, sizeof line, f)) {
    std::vector<double> v;
    const char* p = line;
    while (true) {
      char* end = nullptr;
      const double x = std::strtod(p, &end);
      if (end == p) break;
      v.push_back(x);
      p = end;
      while (*p == ',' || *p == ' ') ++p;
    }
    if (v.size() != 65) continue;
    for (int i = 0; i < 64; ++i) d.pixels.push_back(static_cast<float>(v[i] / 16.0));
    d.labels.push_back(static_cast<std::int64_t>(v[64]));
  }
  return pclose(f) == 0 && d.size() > 0;
}

// The adding problem (Hochreiter & Schmidhuber 1997): T steps of two channels, a value in [0, 1) and a
// marker that is 1 at two steps, one in each half of the sequence; the target is the sum of the two
// marked values. x (T, B, 2), d (B, 1), float32.
struct AddingBatch {
  tapegrad::Tensor x;
  tapegrad::Tensor d;
};

inline AddingBatch adding_batch(std::size_t T, std::size_t B, tapegrad::Generator& gen) {
  std::vector<double> x(T * B * 2, 0.0), d(B, 0.0);
  for (std::size_t b = 0; b < B; ++b) {
    const std::size_t half = T / 2;
    const std::size_t m1 = gen.below(half), m2 = half + gen.below(T - half);
    for (std::size_t t = 0; t < T; ++t) {
      const double v = gen.uniform();
      x[(t * B + b) * 2] = v;
      if (t == m1 || t == m2) {
        x[(t * B + b) * 2 + 1] = 1.0;
        d[b] += v;
      }
    }
  }
  return {tapegrad::from_values(x, {T, B, 2}), tapegrad::from_values(d, {B, 1})};
}

}  // namespace example
