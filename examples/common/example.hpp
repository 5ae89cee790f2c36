// Shared plumbing of the course examples (header-only, public API only): command-line options, progress,
// CSV curves, gnuplot pictures, and the closing result line that the tour collects into its summary.
#pragma once

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include <tapegrad/autograd/tensor.hpp>
#include <tapegrad/ops/blas_info.hpp>

namespace example {

// --key value options and --flag switches. Every example accepts --quick (short settings for the tour),
// --out DIR (where CSV/PNG go; default out/) and --seed N.
class Args {
 public:
  Args(int argc, char** argv, std::string usage) : usage_(std::move(usage)) {
    tapegrad::tune_malloc();  // every example's main starts here
    for (int i = 1; i < argc; ++i) {
      std::string a = argv[i];
      if (a == "--help" || a == "-h") {
        std::printf("%s\n  common: --quick (short settings), --out DIR (default out), --seed N\n", usage_.c_str());
        std::exit(0);
      }
      if (a.rfind("--", 0) != 0) fail("unexpected argument '" + a + "'");
      const std::string key = a.substr(2);
      if (i + 1 < argc && std::string(argv[i + 1]).rfind("--", 0) != 0) values_[key] = argv[++i];
      else values_[key] = "";
    }
    // The header line: the BLAS kernels the run's speed depends on (and the warning when they are generic).
    std::printf("tapegrad | %s\n", tapegrad::blas_summary().c_str());
    tapegrad::warn_if_generic_blas();
  }
  bool flag(const std::string& k) const { used_[k] = true; return values_.count(k) > 0; }
  bool quick() const { return flag("quick"); }
  std::string str(const std::string& k, const std::string& def) const {
    used_[k] = true;
    auto it = values_.find(k);
    return it == values_.end() ? def : it->second;
  }
  long integer(const std::string& k, long def) const {
    const std::string s = str(k, "");
    if (s.empty()) return def;
    char* end = nullptr;
    const long v = std::strtol(s.c_str(), &end, 10);
    if (*end) fail("--" + k + " needs an integer, got '" + s + "'");
    return v;
  }
  double real(const std::string& k, double def) const {
    const std::string s = str(k, "");
    if (s.empty()) return def;
    char* end = nullptr;
    const double v = std::strtod(s.c_str(), &end);
    if (*end) fail("--" + k + " needs a number, got '" + s + "'");
    return v;
  }
  std::string out_dir() const {
    const std::string d = str("out", "out");
    std::filesystem::create_directories(d);
    return d;
  }
  std::uint64_t seed() const { return static_cast<std::uint64_t>(integer("seed", 1)); }
  // Call after reading all options: an unknown option is an error, not silently ignored.
  void check_unused() const {
    for (auto& [k, v] : values_)
      if (!used_.count(k)) fail("unknown option --" + k);
  }

 private:
  [[noreturn]] void fail(const std::string& msg) const {
    std::fprintf(stderr, "error: %s\n%s\n", msg.c_str(), usage_.c_str());
    std::exit(2);
  }
  std::string usage_;
  std::map<std::string, std::string> values_;
  mutable std::map<std::string, bool> used_;
};

// Prints progress at most every `every` seconds (and at the end), with elapsed time.
class Progress {
 public:
  Progress(std::string what, long total, double every = 2.0) : what_(std::move(what)), total_(total), every_(every) {}
  void update(long done, const std::string& status = "") {
    const double t = elapsed();
    if (done < total_ && t - last_ < every_) return;
    last_ = t;
    std::printf("  %s %ld/%ld (%3.0f%%) %6.1fs  %s\n", what_.c_str(), done, total_, 100.0 * done / total_, t, status.c_str());
    std::fflush(stdout);
  }
  double elapsed() const { return std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count(); }

 private:
  std::string what_;
  long total_;
  double every_, last_ = -1e9;
  std::chrono::steady_clock::time_point start_ = std::chrono::steady_clock::now();
};

// A CSV file with a header row.
class Csv {
 public:
  Csv(const std::string& path, const std::vector<std::string>& columns) : path_(path), f_(path) {
    for (std::size_t i = 0; i < columns.size(); ++i) f_ << (i ? "," : "") << columns[i];
    f_ << '\n';
  }
  template <class... V> void row(const V&... v) {
    std::ostringstream os;
    os.precision(8);
    ((os << v << ','), ...);
    std::string s = os.str();
    s.pop_back();
    f_ << s << '\n';
    f_.flush();  // a picture drawn while the Csv is alive must see every row
  }
  void close() { f_.close(); }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
  std::ofstream f_;
};

// Runs a gnuplot script (terminal pngcairo or png, output set by the caller's script). Returns false,
// with a note, when gnuplot is missing: pictures are extras, the numbers are in the CSV.
inline bool gnuplot(const std::string& script_path, const std::string& script) {
  {
    std::ofstream f(script_path);
    f << script;
  }
  if (std::system("command -v gnuplot >/dev/null 2>&1") != 0) {
    std::printf("  (gnuplot not found: %s not drawn; install gnuplot-nox)\n", script_path.c_str());
    return false;
  }
  const std::string cmd = "gnuplot '" + script_path + "' 2>/dev/null";
  return std::system(cmd.c_str()) == 0;
}

// The closing line each example prints; scripts/tour.sh collects these into one summary table.
// Returns the process exit code (0 when the target is met).
inline int report(const std::string& example, const std::string& task, const std::string& metric,
                  const std::string& target, const std::string& achieved, bool pass) {
  std::printf("RESULT | %s | %s | %s | %s | %s | %s\n", example.c_str(), task.c_str(), metric.c_str(), target.c_str(),
              achieved.c_str(), pass ? "PASS" : "FAIL");
  std::fflush(stdout);
  return pass ? 0 : 1;
}

inline std::string fmt(double v, int precision = 4) {
  std::ostringstream os;
  os.precision(precision);
  os << v;
  return os.str();
}

}  // namespace example
