// Memory of the RNN training steps of bench_rnn.cpp (a plain executable, not a Google Benchmark):
//
//   bench_rnn_memory table
//       per cell (Elman, LSTM, GRU) and configuration: the bytes the tape keeps alive at the end of the
//       forward (nn::run and the loss, before backward: values, saved data and node lists in the tape's
//       arena) against the bytes of the activations the hand BPTT (rnn_hand.hpp) saves for its backward,
//       and the same at the end of nn::run alone (no loss). A markdown table on stdout.
//   bench_rnn_memory rss <elman|lstm|gru> <engine|checkpoint|hand> T B I H
//       one implementation's training steps in this process, which must be fresh (the peak RSS of a
//       process is a high-water mark: scripts/bench.sh memory runs one process per measurement). Set-up
//       (weights, data), then the resident set's high-water mark is reset (/proc/self/clear_refs, 5) and
//       one training step runs, then a second (steady state: buffers and arena already there). Prints
//       one line `rss <cell> <impl> T B I H base_kB step1_peak_kB step2_peak_kB maxrss_kB`. checkpoint:
//       the engine with nn::run_checkpointed (segments of about sqrt(T) steps).
//   bench_rnn_memory checkpoint T B I H [reps]
//       per cell, nn::run against nn::run_checkpointed: the tape's bytes at the end of the forward and
//       its peak in the step (the outer graph; the recomputation's nested graphs are in the RSS figures),
//       and the training step's time (median of reps, default 3, after one warm-up step). A markdown
//       table on stdout.
#include <malloc.h>
#include <sys/resource.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <memory>
#include <string>
#include <vector>

#include "nn/rnn_hand.hpp"
#include "nn/rnn_problem.hpp"

namespace {

using namespace tapegrad;
using namespace tapegrad::bench;

// VmRSS or VmHWM of this process, in kB (/proc/self/status).
long status_kb(const char* field) {
  std::ifstream in("/proc/self/status");
  std::string line;
  const std::size_t n = std::strlen(field);
  while (std::getline(in, line))
    if (line.compare(0, n, field) == 0 && line.size() > n && line[n] == ':') return std::atol(line.c_str() + n + 1);
  return -1;
}

// Resets VmHWM to the current resident set (Linux >= 4.0).
bool reset_peak_rss() {
  std::ofstream out("/proc/self/clear_refs");
  out << "5";
  out.flush();
  return bool(out);
}

Cell cell_of(const std::string& s) {
  if (s == "elman") return Cell::elman;
  if (s == "lstm") return Cell::lstm;
  if (s == "gru") return Cell::gru;
  std::fprintf(stderr, "bench_rnn_memory: unknown cell '%s' (elman, lstm, gru)\n", s.c_str());
  std::exit(2);
}

std::string grouped(double v) {  // 1234567 -> "1,234,567"
  std::string s = std::to_string(static_cast<long long>(v + 0.5)), out;
  for (std::size_t i = 0; i < s.size(); ++i) {
    if (i && (s.size() - i) % 3 == 0) out += ',';
    out += s[i];
  }
  return out;
}

int table() {
  const std::vector<Dims> dims{{20, 1, 32, 64}, {100, 1, 32, 64}, {20, 32, 32, 64}, {100, 32, 32, 64},
                               {20, 32, 128, 256}, {100, 32, 128, 256}, {1000, 32, 128, 256}};
  std::printf("| cell | B | I/H | T | tape at end of forward, B | tape at end of nn::run, B | hand saved, B | "
              "hand with workspace, B | forward / hand saved | run / hand saved |\n");
  std::printf("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n");
  Tape& tape = Tape::current();
  for (Cell cell : {Cell::elman, Cell::lstm, Cell::gru}) {
    for (const Dims& d : dims) {
      std::unique_ptr<EngineModel> e;
      {
        const Problem p(cell, d);
        e = std::make_unique<EngineModel>(p);
      }
      tape.clear();
      {
        const nn::Sequence seq = nn::run(*e->rnn, e->x, nn::State{e->h0, e->c0});
        (void)seq;
      }
      const double run_bytes = double(tape.bytes_in_use());
      tape.clear();
      const Tensor loss = e->forward();
      const double fwd_bytes = double(tape.bytes_in_use());
      tape.clear();
      const double saved = double(HandModel::saved_bytes(cell, d, false));
      const double work = double(HandModel::saved_bytes(cell, d, true));
      std::printf("| %s | %zu | %zu/%zu | %zu | %s | %s | %s | %s | **%.2fx** | **%.2fx** |\n", cell_name(cell), d.B,
                  d.I, d.H, d.T, grouped(fwd_bytes).c_str(), grouped(run_bytes).c_str(), grouped(saved).c_str(),
                  grouped(work).c_str(), fwd_bytes / saved, run_bytes / saved);
      std::fflush(stdout);
    }
  }
  return 0;
}

int rss(Cell cell, const std::string& impl, const Dims& d) {
  const bool engine = impl != "hand";
  std::unique_ptr<EngineModel> e;
  std::unique_ptr<HandModel> h;
  {
    const Problem p(cell, d);
    if (engine) {
      e = std::make_unique<EngineModel>(p);
      e->checkpointed = impl == "checkpoint";
    } else
      h = std::make_unique<HandModel>(p, ref::WeightGrads::per_step);
  }
  malloc_trim(0);
  const long base = status_kb("VmRSS");
  long peak[2] = {0, 0};
  for (long& pk : peak) {
    if (!reset_peak_rss()) {
      std::fprintf(stderr, "bench_rnn_memory: cannot reset the peak RSS (/proc/self/clear_refs)\n");
      return 1;
    }
    if (engine)
      e->train_step();
    else
      h->train_step();
    pk = status_kb("VmHWM");
  }
  rusage u{};
  getrusage(RUSAGE_SELF, &u);
  std::printf("rss %s %s %zu %zu %zu %zu %ld %ld %ld %ld\n", cell_name(cell), impl.c_str(), d.T, d.B, d.I,
              d.H, base, peak[0], peak[1], u.ru_maxrss);
  return 0;
}

double step_ms(EngineModel& e, std::size_t reps) {
  e.train_step();  // warm-up: the arena and the buffers
  std::vector<double> ms;
  for (std::size_t r = 0; r < reps; ++r) {
    const auto t0 = std::chrono::steady_clock::now();
    e.train_step();
    ms.push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count());
  }
  std::sort(ms.begin(), ms.end());
  return ms[ms.size() / 2];
}

int checkpoint(const Dims& d, std::size_t reps) {
  std::printf("| cell | B | I/H | T | tape at end of forward, run / checkpointed, B | ratio | tape peak in the step, "
              "run / checkpointed, B | ratio | step ms, run / checkpointed | time ratio |\n");
  std::printf("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n");
  Tape& tape = Tape::current();
  for (Cell cell : {Cell::elman, Cell::lstm, Cell::gru}) {
    double fwd[2], peak[2], ms[2];
    for (int k = 0; k < 2; ++k) {
      std::unique_ptr<EngineModel> e;
      {
        const Problem p(cell, d);
        e = std::make_unique<EngineModel>(p);
      }
      e->checkpointed = k == 1;
      tape.clear();
      {
        const Tensor loss = e->forward();
        fwd[k] = double(tape.bytes_in_use());
      }
      tape.clear();
      tape.reset_peak();
      e->forward_backward();
      peak[k] = double(tape.peak_bytes());
      tape.clear();
      ms[k] = step_ms(*e, reps);
      tape.clear();
    }
    std::printf("| %s | %zu | %zu/%zu | %zu | %s / %s | **%.2f** | %s / %s | **%.2f** | %.0f / %.0f | **%.2f** |\n",
                cell_name(cell), d.B, d.I, d.H, d.T, grouped(fwd[0]).c_str(), grouped(fwd[1]).c_str(), fwd[1] / fwd[0],
                grouped(peak[0]).c_str(), grouped(peak[1]).c_str(), peak[1] / peak[0], ms[0], ms[1], ms[1] / ms[0]);
    std::fflush(stdout);
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  tune_malloc();
  const std::string mode = argc > 1 ? argv[1] : "";
  if (mode == "table") return table();
  if (mode == "rss" && argc == 8) {
    const std::string impl = argv[3];
    if (impl != "engine" && impl != "checkpoint" && impl != "hand") {
      std::fprintf(stderr, "bench_rnn_memory: unknown implementation '%s' (engine, checkpoint, hand)\n", impl.c_str());
      return 2;
    }
    const Dims d{std::stoul(argv[4]), std::stoul(argv[5]), std::stoul(argv[6]), std::stoul(argv[7])};
    return rss(cell_of(argv[2]), impl, d);
  }
  if (mode == "checkpoint" && (argc == 6 || argc == 7)) {
    const Dims d{std::stoul(argv[2]), std::stoul(argv[3]), std::stoul(argv[4]), std::stoul(argv[5])};
    return checkpoint(d, argc == 7 ? std::stoul(argv[6]) : 3);
  }
  std::fprintf(stderr,
               "usage: bench_rnn_memory table\n"
               "       bench_rnn_memory rss <elman|lstm|gru> <engine|checkpoint|hand> T B I H\n"
               "       bench_rnn_memory checkpoint T B I H [reps]\n");
  return 2;
}
