// A real workload: one training step of example 10's model (seq2seq addition) and example 11's (dates with
// attention) at the classic settings, the engine's side (bench/nn/workload_problem.hpp). The LibTorch side,
// the same models, is bench/nn/bench_workload_torch.cpp (binary bench_workload_torch, which holds these
// benches too, so the ratio comes from one run).
//
//   BM_workload_<addition|dates>_engine   forward + loss + backward + clip + Adam, on one fixed batch
//
// Counters: fwd_ms, bwd_ms, opt_ms, the step's phases timed inside the loop (process CPU time), and loss, the
// loss of the last step (it should fall: the loop keeps training on one batch).
#include <benchmark/benchmark.h>

#include <cstdio>

#include "nn/workload_problem.hpp"

namespace {

using namespace tapegrad;
using namespace tapegrad::bench;
using Clock = ProcessCpuClock;

void BM_workload_engine(benchmark::State& state, Workload w) {
  WorkloadProblem p(w);
  EngineStep step(p);
  step.step();  // one untimed step, as LibTorch's side has (its check): buffers and arena at their size
  StepPhases phases;
  for (auto _ : state) {
    const auto t0 = Clock::now();
    step.optimizer().zero_grad();
    const Tensor l = p.model->loss(p.batch.source.ids, p.batch.target.ids, p.batch.source.mask);
    phases.loss = l.item();
    const auto t1 = Clock::now();
    backward(l);
    const auto t2 = Clock::now();
    step.update();
    const auto t3 = Clock::now();
    phases.add(t0, t1, t2, t3);
  }
  phases.report(state, p.describe());
}

const bool registered = [] {
  for (Workload w : {Workload::addition, Workload::dates})
    benchmark::RegisterBenchmark((std::string("BM_workload_") + workload_name(w) + "_engine").c_str(),
                                 [w](benchmark::State& s) { BM_workload_engine(s, w); })
        ->MeasureProcessCPUTime()
        ->Unit(benchmark::kMillisecond);
  return true;
}();

}  // namespace
