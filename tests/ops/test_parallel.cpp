// The thread setting (ops/parallel.hpp): set/get, the environment, its effect on OpenBLAS, the size
// threshold, and results of the threaded kernels: bitwise equal run to run at a fixed count, and equal to
// one thread (the fused cells bit for bit, a whole LSTM step with threaded GEMMs to rounding).
// ctest runs this binary with TAPEGRAD_NUM_THREADS=1 like every test; the cases here set 2 threads
// themselves and restore the count. The ctest entry threads_env runs env_at_first_use with
// TAPEGRAD_NUM_THREADS=2.
#include <cblas.h>
#include <boost/test/unit_test.hpp>

#include <cstdlib>
#include <cstring>
#include <vector>

#include "tapegrad/tapegrad.hpp"
#include "tapegrad/ops/parallel_for.hpp"

using namespace tapegrad;

namespace {

struct KeepThreads {  // restores the count a case changed
  int saved = num_threads();
  ~KeepThreads() { set_num_threads(saved); }
};

struct LowThreshold {  // splits kernels from 4096 elements of work, so small cases exercise the split paths
  LowThreshold() { parallel::set_min_work(4096); }
  ~LowThreshold() { parallel::set_min_work(parallel::kMinWork); }
};

struct EnvVar {  // sets (or unsets, with nullptr) a variable for a scope
  std::string name, old;
  bool had;
  EnvVar(const char* n, const char* v) : name(n), had(std::getenv(n) != nullptr) {
    if (had) old = std::getenv(n);
    if (v) setenv(n, v, 1); else unsetenv(n);
  }
  ~EnvVar() {
    if (had) setenv(name.c_str(), old.c_str(), 1); else unsetenv(name.c_str());
  }
};

Tensor random(const Shape& s, std::uint64_t seed) {
  Generator g(seed);
  return randn(s, g);
}

// Values and gradients of an LSTM over T steps at batch B, width H, from fixed weights.
std::vector<std::vector<double>> lstm_run(std::size_t T, std::size_t B, std::size_t H, bool peepholes) {
  Tape::Scope scope;
  const Tensor Wx = parameter(random({H, 4 * H}, 1) * 0.05), Wh = parameter(random({H, 4 * H}, 2) * 0.05),
               b = parameter(random({4 * H}, 3) * 0.1), x = parameter(random({T, B, H}, 4)),
               h0 = parameter(random({B, H}, 5) * 0.1), c0 = parameter(random({B, H}, 6) * 0.1);
  const Tensor pi = parameter(random({H}, 7) * 0.1), pf = parameter(random({H}, 8) * 0.1),
               po = parameter(random({H}, 9) * 0.1);
  Tensor h = h0, c = c0, loss = zeros({});
  for (std::size_t t = 0; t < T; ++t) {
    const Tensor a = matmul(select(x, 0, t), Wx) + b + matmul(h, Wh);
    c = peepholes ? lstm_cell(a, c, pi, pf) : lstm_cell(a, c);
    h = peepholes ? lstm_hidden(a, c, po) : lstm_hidden(a, c);
    loss = loss + sum(h * random({B, H}, 100 + t));
  }
  backward(loss);
  std::vector<std::vector<double>> out{{loss.item()}};
  for (const Tensor& p : {Wx, Wh, b, x, h0, c0}) out.push_back(p.grad().to_vector());
  if (peepholes)
    for (const Tensor& p : {pi, pf, po}) out.push_back(p.grad().to_vector());
  return out;
}

bool bitwise_equal(const std::vector<std::vector<double>>& a, const std::vector<std::vector<double>>& b) {
  if (a.size() != b.size()) return false;
  for (std::size_t k = 0; k < a.size(); ++k)
    if (a[k].size() != b[k].size() || std::memcmp(a[k].data(), b[k].data(), a[k].size() * sizeof(double)) != 0)
      return false;
  return true;
}

double max_rel_diff(const std::vector<std::vector<double>>& a, const std::vector<std::vector<double>>& b) {
  double worst = 0;
  for (std::size_t k = 0; k < a.size(); ++k) {
    double num = 0, den = 0;
    for (std::size_t i = 0; i < a[k].size(); ++i) {
      num = std::max(num, std::abs(a[k][i] - b[k][i]));
      den = std::max(den, std::abs(b[k][i]));
    }
    worst = std::max(worst, den == 0 ? num : num / den);
  }
  return worst;
}

}  // namespace

BOOST_AUTO_TEST_SUITE(threads)

BOOST_AUTO_TEST_CASE(set_and_get) {
  KeepThreads keep;
  set_num_threads(3);
  BOOST_TEST(num_threads() == 3);
  BOOST_TEST(openblas_get_num_threads() == 3);  // the one setting drives OpenBLAS too
  set_num_threads(1);
  BOOST_TEST(num_threads() == 1);
  BOOST_TEST(openblas_get_num_threads() == 1);
  BOOST_CHECK_THROW(set_num_threads(0), Error);
  BOOST_CHECK_THROW(set_num_threads(-2), Error);
  BOOST_TEST(num_threads() == 1);  // unchanged by a refused value
}

BOOST_AUTO_TEST_CASE(environment_precedence) {
  EnvVar t("TAPEGRAD_NUM_THREADS", "5"), o("OMP_NUM_THREADS", "4,2"), b("OPENBLAS_NUM_THREADS", "3");
  BOOST_TEST(parallel::threads_from_environment() == 5);
  {
    EnvVar t2("TAPEGRAD_NUM_THREADS", nullptr);
    BOOST_TEST(parallel::threads_from_environment() == 4);  // OMP_NUM_THREADS's first level
    EnvVar o2("OMP_NUM_THREADS", "");
    BOOST_TEST(parallel::threads_from_environment() == 3);
    EnvVar b2("OPENBLAS_NUM_THREADS", "zero");              // not a count: ignored
    BOOST_TEST(parallel::threads_from_environment() == 1);  // none set: one thread (opt-in)
  }
  EnvVar bad("TAPEGRAD_NUM_THREADS", "0");
  BOOST_TEST(parallel::threads_from_environment() == 4);
}

// Run alone by the ctest entry threads_env (TAPEGRAD_NUM_THREADS=2): the first use reads the variable and
// hands the count to OpenBLAS. Anywhere else, the count in force is whatever the variable said or an
// earlier case set, so the case checks only that the count is positive.
BOOST_AUTO_TEST_CASE(env_at_first_use) {
  const char* env = std::getenv("TAPEGRAD_NUM_THREADS");
  const char* first = std::getenv("TAPEGRAD_TEST_FIRST_USE");
  if (env && first) {
    BOOST_TEST(num_threads() == std::atoi(env));
    BOOST_TEST(openblas_get_num_threads() == std::atoi(env));
  }
  BOOST_TEST(num_threads() >= 1);
}

BOOST_AUTO_TEST_CASE(small_work_stays_on_one_thread) {
  KeepThreads keep;
  set_num_threads(2);
  BOOST_TEST(parallel::threads_for(1000, parallel::kMinWork - 1) == 1);
  BOOST_TEST(parallel::threads_for(1, parallel::kMinWork * 4) == 1);  // one item: nothing to split
  BOOST_TEST(parallel::threads_for(1000, parallel::kMinWork * 4) == 2);
  set_num_threads(1);
  BOOST_TEST(parallel::threads_for(1000, parallel::kMinWork * 4) == 1);
  // Small products run OpenBLAS on one thread, large ones on all.
  set_num_threads(2);
  parallel::blas_threads_for(64 * 256);
  BOOST_TEST(openblas_get_num_threads() == 1);
  parallel::blas_threads_for(parallel::kMinBlasWork);
  BOOST_TEST(openblas_get_num_threads() == 2);
}

// The fused cells split by columns at multiples of the vector width: 2 threads give the 1-thread values
// bit for bit, with and without peepholes (whose gradients sum over rows), H not a multiple of the width.
BOOST_AUTO_TEST_CASE(fused_cells_match_one_thread_bitwise) {
  KeepThreads keep;
  LowThreshold low;
  for (const bool peep : {false, true}) {
    const std::size_t B = 48, H = 250;  // lstm_cell's work 8 B H = 96k: above the lowered threshold
    BOOST_REQUIRE(8 * B * H >= parallel::min_work());
    for (const DType dt : {DType::f32, DType::f64}) {
      auto run = [&] {
        Tape::Scope scope;
        const Tensor a = parameter(random({B, 4 * H}, 11).to(dt)), c0 = parameter(random({B, H}, 12).to(dt));
        const Tensor pi = parameter(random({H}, 13).to(dt)), pf = parameter(random({H}, 14).to(dt)),
                     po = parameter(random({H}, 15).to(dt));
        const Tensor c = peep ? lstm_cell(a, c0, pi, pf) : lstm_cell(a, c0);
        const Tensor h = peep ? lstm_hidden(a, c, po) : lstm_hidden(a, c);
        const Tensor xp = random({B, 3 * H}, 16).to(dt), hp = random({B, 3 * H}, 17).to(dt);
        const Tensor bhn = parameter(random({H}, 18).to(dt));
        const Tensor g = gru_cell(xp, hp, h, bhn);
        backward(sum((g + c) * random({B, H}, 19).to(dt)));
        std::vector<std::vector<double>> out{g.to_vector(), c.to_vector(), a.grad().to_vector(), c0.grad().to_vector(),
                                             bhn.grad().to_vector()};
        if (peep)
          for (const Tensor& p : {pi, pf, po}) out.push_back(p.grad().to_vector());
        return out;
      };
      set_num_threads(1);
      const auto one = run();
      set_num_threads(2);
      const auto two = run(), again = run();
      BOOST_TEST(bitwise_equal(two, again));
      BOOST_TEST(bitwise_equal(two, one));
    }
  }
}

// A whole LSTM (threaded GEMMs and cells): bitwise equal run to run at 2 threads, equal to 1 thread within
// float rounding.
BOOST_AUTO_TEST_CASE(lstm_deterministic_at_fixed_count) {
  KeepThreads keep;
  LowThreshold low;
  for (const bool peep : {false, true}) {
    set_num_threads(1);
    const auto one = lstm_run(4, 64, 256, peep);
    set_num_threads(2);
    const auto two = lstm_run(4, 64, 256, peep), again = lstm_run(4, 64, 256, peep);
    BOOST_TEST(bitwise_equal(two, again));
    BOOST_TEST(max_rel_diff(two, one) < 1e-5);
  }
}

BOOST_AUTO_TEST_SUITE_END()
