// The real workloads of bench/nn/bench_workload.cpp (engine) and bench/nn/bench_workload_torch.cpp
// (LibTorch): one training step of example 10's and example 11's models at the classic settings, on one
// fixed mini-batch drawn the way the examples draw theirs (nn::BatchIterator over generated pairs: padded,
// time-major ids with a mask).
//
//   addition   example 10 (baseline model): seq2seq, LSTM encoder (masked) -> LSTM decoder, teacher
//              forcing; numbers of up to 3 digits; embed 16, hidden 128, batch 128; Adam 5e-3, clip 5
//   dates      example 11: the same with additive (Bahdanau) attention after the decoder cell (Luong
//              style), date normalisation in 8 source formats; embed 16, hidden 256, batch 128;
//              Adam 1e-2, clip 5
//
// One step = forward + mean cross-entropy over the non-pad targets + backward + clip_grad_norm(5) + Adam,
// exactly what nn::Trainer runs per batch. The model is built once (its weights are what LibTorch copies);
// a timing loop keeps training on the same batch, after one untimed step.
#pragma once

#include <tapegrad/tapegrad.hpp>

#include <time.h>

#include <chrono>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "../../examples/common/dates.hpp"  // example 11's date generator (header-only)

namespace tapegrad::bench {

// The process's CPU time as a std::chrono clock: the step's phases are timed on the clock the benchmark
// itself reports (MeasureProcessCPUTime), so a loaded machine's waits do not count in them either.
struct ProcessCpuClock {
  using duration = std::chrono::nanoseconds;
  using rep = duration::rep;
  using period = duration::period;
  using time_point = std::chrono::time_point<ProcessCpuClock>;
  static constexpr bool is_steady = true;
  static time_point now() {
    timespec ts{};
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return time_point(duration(std::int64_t(ts.tv_sec) * 1000000000 + ts.tv_nsec));
  }
};

enum class Workload { addition, dates };
inline const char* workload_name(Workload w) { return w == Workload::addition ? "addition" : "dates"; }

struct WorkloadSettings {
  std::size_t embed, hidden, batch;
  nn::AttentionKind attention;
  double lr, clip;
};
inline WorkloadSettings settings_of(Workload w) {
  if (w == Workload::addition) return {16, 128, 128, nn::AttentionKind::none, 5e-3, 5.0};
  return {16, 256, 128, nn::AttentionKind::additive, 1e-2, 5.0};
}

struct WorkloadProblem {
  Workload w;
  WorkloadSettings s;
  nn::Tokenizer vocab;
  nn::PairBatch batch;  // source ids (S, B) + mask (S, B); target ids (T, B) = <bos> y <eos> <pad>..
  std::unique_ptr<nn::Seq2Seq> model;

  explicit WorkloadProblem(Workload w_) : w(w_), s(settings_of(w_)) {
    Generator gen(2026);
    std::vector<nn::QAPair> pairs;
    const std::size_t n = 4 * s.batch;  // enough pairs that the vocabulary is the task's whole alphabet
    if (w == Workload::addition) {
      std::set<std::pair<long, long>> seen;
      while (pairs.size() < n) {
        const long a = long(gen.below(1000)), b = long(gen.below(1000));
        if (seen.insert({a, b}).second) pairs.push_back({std::to_string(a) + "+" + std::to_string(b), std::to_string(a + b), 0});
      }
    } else {
      std::map<std::string, int> format_of;
      pairs = example::dates::generate(n, gen, format_of);
    }
    vocab = nn::build_vocabulary(pairs, nn::TokenLevel::character);
    const nn::BatchIterator it(pairs, vocab, vocab, s.batch, 1);
    batch = it.batch(0, 0);
    nn::Seq2SeqConfig c;
    c.src_vocab = c.tgt_vocab = vocab.size();
    c.embed = s.embed, c.hidden = s.hidden, c.cell = nn::CellType::lstm, c.attention = s.attention;
    Generator mgen(17);
    model = std::make_unique<nn::Seq2Seq>(c, mgen);
  }

  std::size_t S() const { return batch.source.steps(); }
  std::size_t T() const { return batch.target.steps(); }
  std::size_t B() const { return batch.source.batch(); }
  std::string describe() const {
    return std::string(workload_name(w)) + ": vocab " + std::to_string(vocab.size()) + ", source " + std::to_string(S()) +
           " steps, target " + std::to_string(T()) + " tokens (decoder " + std::to_string(T() - 1) + " steps), batch " +
           std::to_string(B()) + ", embed " + std::to_string(s.embed) + ", hidden " + std::to_string(s.hidden) + ", " +
           std::to_string(model->num_parameters()) + " parameters";
  }
};

// The engine's training step, as nn::Trainer runs it; returns the loss (before the update).
class EngineStep {
 public:
  explicit EngineStep(WorkloadProblem& p) : p_(p), params_(p.model->parameters()), opt_(params_, p.s.lr) {}
  double forward_backward() {
    opt_.zero_grad();
    const Tensor loss = p_.model->loss(p_.batch.source.ids, p_.batch.target.ids, p_.batch.source.mask);
    const double l = loss.item();
    backward(loss);
    return l;
  }
  void update() {
    nn::clip_grad_norm(params_, p_.s.clip);
    opt_.step();
  }
  double step() {
    const double l = forward_backward();
    update();
    return l;
  }
  nn::Adam& optimizer() { return opt_; }

 private:
  WorkloadProblem& p_;
  std::vector<Tensor> params_;
  nn::Adam opt_;
};

// The phases of the timed steps (forward, backward, optimizer), summed, and the counters both sides report.
struct StepPhases {
  using Clock = ProcessCpuClock;
  double fwd = 0, bwd = 0, opt = 0, loss = 0;
  void add(Clock::time_point t0, Clock::time_point t1, Clock::time_point t2, Clock::time_point t3) {
    fwd += ms(t0, t1), bwd += ms(t1, t2), opt += ms(t2, t3);
  }
  template <class State> void report(State& state, const std::string& label) const {
    const double n = double(state.iterations());
    state.counters["fwd_ms"] = fwd / n;
    state.counters["bwd_ms"] = bwd / n;
    state.counters["opt_ms"] = opt / n;
    state.counters["loss"] = loss;
    state.SetLabel(label);
  }
  static double ms(Clock::time_point a, Clock::time_point b) {
    return std::chrono::duration<double, std::milli>(b - a).count();
  }
};

}  // namespace tapegrad::bench
