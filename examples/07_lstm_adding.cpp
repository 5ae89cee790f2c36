// LSTM (長短期記憶) on the adding problem (Hochreiter & Schmidhuber 1997), against a simple RNN; with and
// without gradient clipping (勾配クリッピング), with peepholes (覗き穴結合); and a continual task that needs
// the forget gate (忘却ゲート, Gers et al. 2000).
//
// The adding problem: T steps of two input channels, a random value in [0, 1) and a marker that is 1 at
// exactly two steps (one in each half) and 0 elsewhere. The target, read from the last hidden state, is
// the sum of the two marked values. Predicting the mean (1) gives MSE = Var(sum) = 2/12 = 0.167, the
// baseline a model that does not carry the marked values over T steps stays at.
//
// The continual task: a stream without resets, cut into segments of 10..20 steps; each segment has two
// marked values and ends with a query step (a third channel); the target at the query is the sum of the
// two values marked in *this* segment. The state is never reset, so the model must forget the previous
// segment's values: with the forget gate it resets the CEC in one step; with the forget gate fixed open
// (f = 1: the 1997 LSTM, no forget gate) the CEC only accumulates, and the model must learn to cancel it
// by writing the opposite value through the input gate. Trained on streams of 8 segments, tested on
// streams of 60. (Measured: the forget gate learns faster and ends 5-6x lower; without it the LSTM still
// learns to cancel on this bounded task, so it does not fail outright as in Gers et al.'s longer streams.)
//
// Targets: every LSTM variant on the adding problem reaches test MSE < 0.01 (the simple RNN, trained with
// the same budget, is reported beside it), and the LSTM with a forget gate reaches MSE < 0.01 on the
// continual task over 60 segments. --quick (the tour) runs the simple RNN, the clipped LSTM and the
// continual task; the LSTM without clipping and with peepholes run in full settings (or --all-variants).
//
// Gradient flow over time (勾配消失 / 勾配爆発): ||dL/dh_t|| (and the LSTM's ||dL/dc_t||) of the last step's
// loss against the distance back in time, from nn::gradient_norms_over_time, for the simple RNN (sigmoid,
// tanh), the LSTM with and without its forget gate and the GRU, at T = 50 and 100, at initialisation and
// after training on the adding problem: out/07_gradient_flow.png (log scale) and the per-step factor of a
// fit of log-norm vs distance for each cell. It ends with its own RESULT line before the main one.
#include <tapegrad/tapegrad.hpp>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdio>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "common/data.hpp"
#include "common/example.hpp"

using namespace tapegrad;

namespace {

// ---- data --------------------------------------------------------------------------------------------

struct Batch {
  Tensor x;  // (T, B, C)
  Tensor d;  // adding: (B, 1); continual: (T*B, 1)
  Tensor mask;  // continual only: (T*B, 1), 1 at query steps
  double queries = 0;
  std::vector<int> segment_of;  // continual, per (t*B + b) query: the segment index
};

// The adding problem's batch (examples/common/data.hpp), in this example's Batch.
Batch adding_batch(std::size_t T, std::size_t B, Generator& gen) {
  example::AddingBatch a = example::adding_batch(T, B, gen);
  return {a.x, a.d, Tensor(), double(B), {}};
}

// B independent streams of `segments` segments each; all streams are cut to the shortest stream's length
// T (the rest of the longer streams is dropped: its queries are not counted).
Batch continual_batch(std::size_t segments, std::size_t B, Generator& gen, std::size_t min_len = 10,
                      std::size_t max_len = 20) {
  std::vector<std::vector<double>> val(B), mark(B), query(B), target(B);
  std::vector<std::vector<int>> seg(B);
  std::size_t T = SIZE_MAX;
  for (std::size_t b = 0; b < B; ++b) {
    for (std::size_t s = 0; s < segments; ++s) {
      const std::size_t len = min_len + gen.below(max_len - min_len + 1);
      const std::size_t m1 = gen.below(len - 1);
      std::size_t m2 = gen.below(len - 2);
      if (m2 >= m1) ++m2;
      double sum = 0;
      for (std::size_t t = 0; t < len; ++t) {
        const bool q = t + 1 == len;
        const double v = q ? 0.0 : gen.uniform();
        const bool m = t == m1 || t == m2;
        if (m) sum += v;
        val[b].push_back(v);
        mark[b].push_back(m ? 1.0 : 0.0);
        query[b].push_back(q ? 1.0 : 0.0);
        target[b].push_back(q ? sum : 0.0);
        seg[b].push_back(q ? int(s) : -1);
      }
    }
    T = std::min(T, val[b].size());
  }
  Batch out;
  std::vector<double> x(T * B * 3), d(T * B), mask(T * B);
  out.segment_of.assign(T * B, -1);
  for (std::size_t t = 0; t < T; ++t)
    for (std::size_t b = 0; b < B; ++b) {
      const std::size_t i = t * B + b;
      x[i * 3] = val[b][t];
      x[i * 3 + 1] = mark[b][t];
      x[i * 3 + 2] = query[b][t];
      d[i] = target[b][t];
      mask[i] = query[b][t];
      out.queries += query[b][t];
      out.segment_of[i] = seg[b][t];
    }
  out.x = from_values(x, {T, B, 3});
  out.d = from_values(d, {T * B, 1});
  out.mask = from_values(mask, {T * B, 1});
  return out;
}

// ---- models ------------------------------------------------------------------------------------------

struct Net {
  std::unique_ptr<nn::RecurrentCell> cell;
  std::unique_ptr<nn::Linear> out;
  bool fixed_open_forget = false;  // LSTM only: the forget gate held at f = sigmoid(30) = 1
  std::vector<Tensor> parameters() const {
    std::vector<Tensor> p = cell->parameters();
    for (auto& t : out->parameters()) p.push_back(t);
    return p;
  }
  // Adding problem: the prediction from the last state, (B, 1).
  Tensor last(const Tensor& x) const { return (*out)(nn::run(*cell, x).last.h); }
  // Continual: a prediction at every step, (T*B, 1).
  Tensor every(const Tensor& x) const {
    Tensor h = nn::run(*cell, x).outputs;
    return (*out)(reshape(h, {h.size(0) * h.size(1), h.size(2)}));
  }
  // Removes the forget gate: its weights 0 and its bias 30 (sigmoid(30) rounds to 1 in float32).
  void hold_forget_open() {
    auto* lstm = dynamic_cast<nn::LSTMCell*>(cell.get());
    const std::size_t H = lstm->hidden_size();
    for (Tensor* w : {&lstm->W_x, &lstm->W_h}) {
      float* p = w->data<float>();
      const std::size_t rows = w->size(0);
      for (std::size_t r = 0; r < rows; ++r)
        for (std::size_t j = H; j < 2 * H; ++j) p[r * 4 * H + j] = 0.0f;
    }
    float* b = lstm->b.data<float>();
    for (std::size_t j = H; j < 2 * H; ++j) b[j] = 30.0f;
  }
};

Tensor masked_mse(const Tensor& y, const Batch& batch) {
  Tensor e = y - batch.d;
  return sum(e * e * batch.mask) / batch.queries;
}

struct Run {
  std::string name;
  std::vector<double> curve;  // mean training loss per logging interval
  std::vector<double> grad_norm;  // mean gradient norm (before clipping) per logging interval
  double test_mse = 0;
  double seconds = 0;
};

struct Settings {
  std::size_t T, B, H;
  long steps;
  long log_every;
  double lr;
};

// Trains `net` on the adding problem; clip <= 0: no clipping.
Run train_adding(const std::string& name, Net& net, const Settings& s, double clip, const Batch& test,
                 Generator& gen) {
  Run r{name, {}, {}, 0, 0};
  std::vector<Tensor> params = net.parameters();
  nn::Adam opt(params, s.lr);
  example::Progress progress(name, s.steps);
  double running = 0, norms = 0;
  for (long step = 1; step <= s.steps; ++step) {
    Batch b = adding_batch(s.T, s.B, gen);
    Tensor loss = mse_loss(net.last(b.x), b.d);
    running += loss.item();
    opt.zero_grad();
    backward(loss);
    norms += nn::clip_grad_norm(params, clip > 0 ? clip : 1e30);
    opt.step();
    if (net.fixed_open_forget) net.hold_forget_open();
    if (step % s.log_every == 0) {
      r.curve.push_back(running / s.log_every);
      r.grad_norm.push_back(norms / s.log_every);
      progress.update(step, "train MSE " + example::fmt(running / s.log_every));
      running = norms = 0;
    }
  }
  r.seconds = progress.elapsed();
  NoGrad no_grad;
  r.test_mse = mse_loss(net.last(test.x), test.d).item();
  return r;
}

struct ContinualRun {
  Run run;
  std::vector<double> mse_by_segment;
};

ContinualRun train_continual(const std::string& name, Net& net, long steps, std::size_t B, std::size_t segments,
                             double lr, double clip, long log_every, const Batch& test, std::size_t test_segments,
                             Generator& gen) {
  ContinualRun cr{{name, {}, {}, 0, 0}, {}};
  std::vector<Tensor> params = net.parameters();
  nn::Adam opt(params, lr);
  if (net.fixed_open_forget) net.hold_forget_open();
  example::Progress progress(name, steps);
  double running = 0;
  for (long step = 1; step <= steps; ++step) {
    Batch b = continual_batch(segments, B, gen);
    Tensor loss = masked_mse(net.every(b.x), b);
    running += loss.item();
    opt.zero_grad();
    backward(loss);
    nn::clip_grad_norm(params, clip);
    opt.step();
    if (net.fixed_open_forget) net.hold_forget_open();
    if (step % log_every == 0) {
      cr.run.curve.push_back(running / log_every);
      progress.update(step, "train MSE " + example::fmt(running / log_every));
      running = 0;
    }
  }
  cr.run.seconds = progress.elapsed();
  NoGrad no_grad;
  const std::vector<double> y = net.every(test.x).to_vector();
  const std::vector<double> d = test.d.to_vector();
  std::vector<double> se(test_segments, 0.0), n(test_segments, 0.0);
  double total = 0;
  for (std::size_t i = 0; i < y.size(); ++i) {
    const int sg = test.segment_of[i];
    if (sg < 0) continue;
    const double e = (y[i] - d[i]) * (y[i] - d[i]);
    se[std::size_t(sg)] += e;
    n[std::size_t(sg)] += 1;
    total += e;
  }
  cr.run.test_mse = total / test.queries;
  for (std::size_t k = 0; k < test_segments; ++k) cr.mse_by_segment.push_back(n[k] > 0 ? se[k] / n[k] : NAN);
  return cr;
}

// ---- gradient flow over time (勾配消失 / 勾配爆発) ------------------------------------------------------

// The cells compared: the simple RNN (sigmoid, tanh), the LSTM with and without its forget gate, the GRU.
struct FlowCell {
  const char* label;
  int kind;  // 0 RNN sigmoid, 1 RNN tanh, 2 LSTM, 3 LSTM with f = 1, 4 GRU
};
const FlowCell kFlowCells[] = {{"simple RNN (sigmoid)", 0}, {"simple RNN (tanh)", 1}, {"LSTM", 2},
                               {"LSTM, no forget gate (f = 1)", 3}, {"GRU", 4}};

// ||dL/dh_t|| (and ||dL/dc_t||) of the adding problem's loss at the last step, mean over 64 sequences of
// length T, by nn::gradient_norms_over_time (off the training path).
nn::GradientFlow measure_flow(const Net& net, std::size_t T, std::uint64_t seed) {
  Generator gen(seed);
  Batch b = adding_batch(T, 64, gen);
  nn::TracedSequence seq = nn::run_traced(*net.cell, b.x);
  Tensor loss = mse_loss((*net.out)(seq.last.h), b.d);
  nn::GradientFlow flow = nn::gradient_norms_over_time(loss, seq.states, nn::NormOver::sequence_mean);
  Tape::current().clear();  // the retained graph is not needed: no update follows
  return flow;
}

struct FlowResult {
  // [cell][phase 0 init / 1 trained][T index]
  std::vector<std::array<std::array<nn::GradientFlow, 2>, 2>> flow;
  std::vector<double> test_mse;  // after the flow training, per cell
};

}  // namespace

int main(int argc, char** argv) {
  example::Args args(argc, argv,
                     "07_lstm_adding: LSTM vs simple RNN on the adding problem; clipping, peepholes; forget gate\n"
                     "  --T N (50)  --hidden H (32)  --batch B (64)  --steps N (adding; default 3000, quick 600)\n"
                     "  --lr LR (0.01)  --clip C (1.0)  --continual-steps N (default 1500, quick 300)\n"
                     "  --skip-rnn  --skip-continual (leave parts out)\n"
                     "  --flow-steps N (gradient flow: training steps of each cell before the second measurement;\n"
                     "  default: --steps)  --skip-flow\n"
                     "  --all-variants (with --quick: also the LSTM without clipping and with peepholes, run by default\n"
                     "  in full settings; the quick tour runs the simple RNN, the clipped LSTM and the continual task)");
  const bool quick = args.quick();
  Settings s;
  s.T = std::size_t(args.integer("T", 50));
  s.H = std::size_t(args.integer("hidden", 32));
  s.B = std::size_t(args.integer("batch", 64));
  s.steps = args.integer("steps", quick ? 600 : 3000);
  s.lr = args.real("lr", 0.01);
  s.log_every = std::max(1L, s.steps / 60);
  const double clip = args.real("clip", 1.0);
  const long cont_steps = args.integer("continual-steps", quick ? 300 : 1500);
  const bool skip_rnn = args.flag("skip-rnn");
  const bool skip_continual = args.flag("skip-continual");
  const long flow_steps = args.integer("flow-steps", s.steps);
  const bool skip_flow = args.flag("skip-flow");
  const bool all_variants = !quick || args.flag("all-variants");
  const double target = args.real("target", 0.01);
  const std::string out = args.out_dir();
  const std::uint64_t seed = args.seed();
  args.check_unused();

  std::printf("adding problem: T = %zu, two channels (value, marker), target = sum of the two marked values\n", s.T);
  std::printf("  baseline (predict the mean): MSE = Var = 1/6 = 0.167; target: LSTM test MSE < %g\n", target);
  std::printf("  hidden %zu, batch %zu, Adam lr %g, %ld steps per model, float32\n", s.H, s.B, s.lr, s.steps);

  Generator test_gen(seed + 1000);
  const Batch test = adding_batch(s.T, 1000, test_gen);

  auto make = [&](std::unique_ptr<nn::RecurrentCell> cell, Generator& gen) {
    Net n;
    n.cell = std::move(cell);
    n.out = std::make_unique<nn::Linear>(s.H, 1, gen);
    return n;
  };
  std::vector<Run> runs;
  auto add_run = [&](const std::string& name, int kind, double c) {
    Generator gen(seed);  // same initial draw and same data stream for every variant
    Net net = kind == 0 ? make(std::make_unique<nn::RNNCell>(2, s.H, gen, nn::Activation::tanh), gen)
                        : make(std::make_unique<nn::LSTMCell>(2, s.H, gen, kind == 2), gen);
    runs.push_back(train_adding(name, net, s, c, test, gen));
  };
  if (!skip_rnn) add_run("simple RNN (tanh), clip " + example::fmt(clip), 0, clip);
  if (all_variants) add_run("LSTM, no clipping", 1, 0.0);
  add_run("LSTM, clip " + example::fmt(clip), 1, clip);
  if (all_variants) add_run("LSTM + peepholes, clip " + example::fmt(clip), 2, clip);

  // The curves, one column per model.
  {
    std::vector<std::string> cols = {"step"};
    auto col = [](std::string n) {  // no commas inside a CSV header
      for (auto& ch : n)
        if (ch == ',') ch = ';';
      return n;
    };
    for (auto& r : runs) cols.push_back(col(r.name) + " train MSE");
    for (auto& r : runs) cols.push_back(col(r.name) + " grad norm");
    std::ofstream f(out + "/07_lstm_adding_curves.csv");
    for (std::size_t i = 0; i < cols.size(); ++i) f << (i ? "," : "") << cols[i];
    f << '\n';
    for (std::size_t k = 0; k < runs[0].curve.size(); ++k) {
      f << (k + 1) * s.log_every;
      for (auto& r : runs) f << ',' << r.curve[k];
      for (auto& r : runs) f << ',' << r.grad_norm[k];
      f << '\n';
    }
  }

  // The continual task.
  std::vector<ContinualRun> cont;
  const std::size_t test_segments = 60;
  if (!skip_continual) {
    std::printf("continual task: segments of 10..20 steps, no resets; train on 8 segments, test on %zu\n",
                test_segments);
    Generator cgen(seed + 2000);
    const Batch ctest = continual_batch(test_segments, 256, cgen);
    for (int variant = 0; variant < 2; ++variant) {
      Generator gen(seed);
      Net net = make(std::make_unique<nn::LSTMCell>(3, s.H, gen), gen);
      net.fixed_open_forget = variant == 1;
      cont.push_back(train_continual(variant == 0 ? "LSTM with forget gate" : "LSTM, forget gate fixed open (f = 1)",
                                     net, cont_steps, 32, 8, s.lr, clip, std::max(1L, cont_steps / 60), ctest,
                                     test_segments, gen));
    }
    example::Csv seg(out + "/07_lstm_continual_by_segment.csv", {"segment", "with forget gate", "forget gate fixed open"});
    for (std::size_t k = 0; k < test_segments; ++k) seg.row(k + 1, cont[0].mse_by_segment[k], cont[1].mse_by_segment[k]);
    example::Csv cc(out + "/07_lstm_continual_curves.csv", {"step", "with forget gate", "forget gate fixed open"});
    const long every = std::max(1L, cont_steps / 60);
    for (std::size_t k = 0; k < cont[0].run.curve.size(); ++k)
      cc.row((k + 1) * every, cont[0].run.curve[k], cont[1].run.curve[k]);
  }

  // The table.
  bool pass = true;
  std::printf("\n%-40s %12s %10s\n", ("adding problem, T = " + std::to_string(s.T)).c_str(), "test MSE", "time");
  for (auto& r : runs) {
    const bool is_lstm = r.name.rfind("LSTM", 0) == 0;
    if (is_lstm) pass = pass && r.test_mse < target;
    std::printf("%-40s %12.5f %9.1fs  %s\n", r.name.c_str(), r.test_mse, r.seconds,
                is_lstm ? (r.test_mse < target ? "< target" : "ABOVE TARGET") : "(baseline 0.167)");
  }
  if (!cont.empty()) {
    std::printf("%-40s %12s %10s\n", "continual task (60 segments, no reset)", "test MSE", "time");
    for (auto& c : cont)
      std::printf("%-40s %12.5f %9.1fs  (last segment %.4f)\n", c.run.name.c_str(), c.run.test_mse, c.run.seconds,
                  c.mse_by_segment.back());
    pass = pass && cont[0].run.test_mse < target;
  }
  std::ofstream(out + "/07_lstm_adding_results.csv") << [&] {
    std::ostringstream os;
    os << "model,task,test_mse,seconds\n";
    for (auto& r : runs) os << '"' << r.name << "\",adding T=" << s.T << ',' << r.test_mse << ',' << r.seconds << '\n';
    for (auto& c : cont) os << '"' << c.run.name << "\",continual," << c.run.test_mse << ',' << c.run.seconds << '\n';
    return os.str();
  }();

  // Pictures: the adding problem's loss curves (and gradient norms); the continual task by segment.
  {
    std::string plot = "plot ";
    for (std::size_t i = 0; i < runs.size(); ++i)
      plot += std::string(i ? ", " : "") + "'" + out + "/07_lstm_adding_curves.csv' using 1:" + std::to_string(i + 2) +
              " with lines lw 2 title '" + runs[i].name + "'";
    plot += ", 0.1667 with lines dt 2 lc rgb 'gray' title 'baseline 1/6', " + example::fmt(target) +
            " with lines dt 3 lc rgb 'black' title 'target'\n";
    std::string gplot = "plot ";
    for (std::size_t i = 0; i < runs.size(); ++i)
      gplot += std::string(i ? ", " : "") + "'" + out + "/07_lstm_adding_curves.csv' using 1:" +
               std::to_string(runs.size() + i + 2) + " with lines lw 2 title '" + runs[i].name + "'";
    gplot += "\n";
    std::string script = "set terminal pngcairo size 1200,600\nset output '" + out + "/07_lstm_adding.png'\n"
                         "set datafile separator ','\nset multiplot layout 1,2\n"
                         "set title 'adding problem, T = " + std::to_string(s.T) + ": training MSE'\n"
                         "set xlabel 'step'\nset logscale y\nset key below\n" + plot +
                         "set title 'gradient norm (before clipping)'\n" + gplot + "unset multiplot\n";
    example::gnuplot(out + "/07_lstm_adding.gp", script);
  }
  if (!cont.empty()) {
    const std::string f = out + "/07_lstm_continual_by_segment.csv";
    const std::string c = out + "/07_lstm_continual_curves.csv";
    example::gnuplot(out + "/07_lstm_continual.gp",
                     "set terminal pngcairo size 1200,480\nset output '" + out + "/07_lstm_continual.png'\n"
                     "set datafile separator ','\nset multiplot layout 1,2\nset logscale y\n"
                     "set title 'continual task: training MSE (8 segments)'\nset xlabel 'step'\n"
                     "plot '" + c + "' using 1:2 with lines lw 2 title 'with forget gate', '' using 1:3 with lines "
                     "lw 2 title 'forget gate fixed open', 0.1667 with lines dt 2 lc rgb 'gray' title 'baseline'\n"
                     "set title 'test: MSE per segment of a 60-segment stream (no reset)'\nset xlabel 'segment'\n"
                     "plot '" + f + "' using 1:2 with linespoints lw 2 title 'with forget gate', '' using 1:3 with "
                     "linespoints lw 2 title 'forget gate fixed open', 0.1667 with lines dt 2 lc rgb 'gray' title "
                     "'baseline'\nunset multiplot\n");
  }
  // Gradient flow over time: ||dL/dh_t|| against the distance T-1-t, before and after training, for each
  // cell at T = 50 and 100 (trained at T = 50), with the per-step factor of a fit of log-norm vs distance.
  int flow_code = 0;
  if (!skip_flow) {
    const std::size_t Ts[2] = {50, 100};
    std::printf("\ngradient flow over time: ||dL/dh_t|| (and ||dL/dc_t||) of the last step's loss, mean over 64 sequences;\n"
                "  each cell measured at its initialisation and after %ld steps on the adding problem (T = 50)\n",
                flow_steps);
    FlowResult fr;
    Settings fs = s;
    fs.T = 50;
    fs.steps = flow_steps;
    fs.log_every = std::max(1L, flow_steps / 10);
    for (const FlowCell& fc : kFlowCells) {
      Generator gen(seed + 3000);
      std::unique_ptr<nn::RecurrentCell> cell;
      if (fc.kind <= 1)
        cell = std::make_unique<nn::RNNCell>(2, s.H, gen, fc.kind == 0 ? nn::Activation::sigmoid : nn::Activation::tanh);
      else if (fc.kind <= 3) cell = std::make_unique<nn::LSTMCell>(2, s.H, gen);
      else cell = std::make_unique<nn::GRUCell>(2, s.H, gen);
      Net net = make(std::move(cell), gen);
      net.fixed_open_forget = fc.kind == 3;
      if (net.fixed_open_forget) net.hold_forget_open();
      fr.flow.emplace_back();
      for (int k = 0; k < 2; ++k) fr.flow.back()[0][k] = measure_flow(net, Ts[k], seed + 4000);
      Run r = train_adding(std::string(fc.label) + " (flow)", net, fs, clip, test, gen);
      fr.test_mse.push_back(r.test_mse);
      for (int k = 0; k < 2; ++k) fr.flow.back()[1][k] = measure_flow(net, Ts[k], seed + 4000);
    }
    // One CSV and one panel per (phase, T): distance back in time, then each cell's norms.
    std::vector<std::string> cols = {"distance"};
    for (const FlowCell& fc : kFlowCells) {
      cols.push_back(std::string(fc.label) + " h");
      if (fc.kind == 2 || fc.kind == 3) cols.push_back(std::string(fc.label) + " c");
    }
    for (auto& c : cols)
      for (auto& ch : c)
        if (ch == ',') ch = ';';
    std::string script = "set terminal pngcairo noenhanced size 1200,900 font ',10'\nset output '" + out +
                         "/07_gradient_flow.png'\nset datafile separator ','\nset multiplot layout 2,2\n"
                         "set logscale y\nset format y '1e%L'\nset grid\nset key bottom left font ',8'\n"
                         "set xlabel 'distance back in time T-1-t'\nset ylabel '||dL/dh_t||, ||dL/dc_t|| (dashed)'\n";
    for (int phase = 0; phase < 2; ++phase)
      for (int k = 0; k < 2; ++k) {
        const std::string name = out + "/07_gradient_flow_T" + std::to_string(Ts[k]) + (phase ? "_trained" : "_init") + ".csv";
        {
          std::ofstream f(name);
          for (std::size_t i = 0; i < cols.size(); ++i) f << (i ? "," : "") << cols[i];
          f << '\n';
          f.precision(8);
          for (std::size_t d = 0; d < Ts[k]; ++d) {
            const std::size_t t = Ts[k] - 1 - d;
            f << d;
            for (std::size_t c = 0; c < fr.flow.size(); ++c) {
              const nn::GradientFlow& g = fr.flow[c][phase][k];
              f << ',' << g.h[t];
              if (!g.c.empty()) f << ',' << g.c[t];
            }
            f << '\n';
          }
        }
        script += "set title 'T = " + std::to_string(Ts[k]) + ", " + (phase ? "after " + std::to_string(flow_steps) + " training steps" : std::string("at initialisation")) + "'\nplot ";
        for (std::size_t i = 1; i < cols.size(); ++i)
          script += std::string(i > 1 ? ", " : "") + "'" + name + "' using 1:" + std::to_string(i + 1) + " with lines lw 2 " +
                    (cols[i].back() == 'c' ? "dt 2 " : "") + "title '" + cols[i] + "'";
        script += "\n";
      }
    script += "unset multiplot\n";
    const bool drew = example::gnuplot(out + "/07_gradient_flow.gp", script);

    // The per-step factor going back in time (< 1: vanishing, > 1: exploding), a fit of log-norm vs distance.
    const auto factor = [](const std::vector<double>& n) {
      try {
        return nn::decay_per_step(n);
      } catch (const Error&) {
        return 0.0;  // every norm underflowed to 0: vanished completely
      }
    };
    std::printf("\nper-step factor of the gradient norm going back in time (fit of log norm vs distance; < 1 vanishing, > 1 exploding)\n");
    std::printf("  %-34s %10s %10s %10s %10s %12s\n", "cell, state", "T=50 init", "trained", "T=100 init", "trained", "test MSE");
    std::vector<std::array<std::array<double, 2>, 2>> fh(fr.flow.size()), fc_(fr.flow.size());
    for (std::size_t c = 0; c < fr.flow.size(); ++c) {
      for (int which = 0; which < 2; ++which) {
        if (which == 1 && fr.flow[c][0][0].c.empty()) continue;
        std::printf("  %-34s", (std::string(kFlowCells[c].label) + (which ? ", c" : ", h")).c_str());
        for (int k = 0; k < 2; ++k)
          for (int phase = 0; phase < 2; ++phase) {
            const nn::GradientFlow& g = fr.flow[c][phase][k];
            const double v = factor(which ? g.c : g.h);
            (which ? fc_[c] : fh[c])[phase][k] = v;
            std::printf(" %10.4f", v);
          }
        std::printf(" %12.4f\n", fr.test_mse[c]);
      }
    }
    // The story in one line: the simple RNN's gradient vanishes geometrically (factor < 1 per step, so
    // over 100 steps it shrinks by factor^99); the LSTM's memory cell carries it (factor near 1).
    const double rnn_sig = fh[0][1][1], rnn_tanh = fh[1][1][1], lstm_c = fc_[2][1][1], lstm_f1_c = fc_[3][1][1], gru = fh[4][1][1];
    const bool flow_pass = rnn_sig < 0.95 && rnn_tanh < 0.95 && lstm_c >= 0.95 && lstm_f1_c >= 0.95;
    std::printf("  over 100 steps the trained simple RNN's gradient shrinks by %.3g (sigmoid) and %.3g (tanh); the LSTM's\n"
                "  memory cell keeps %.3g of it (%.3g without the forget gate), the GRU's state %.3g%s\n",
                std::pow(rnn_sig, 99), std::pow(rnn_tanh, 99), std::pow(lstm_c, 99), std::pow(lstm_f1_c, 99), std::pow(gru, 99),
                drew ? ("; picture " + out + "/07_gradient_flow.png").c_str() : "");
    flow_code = example::report(
        "07_lstm_adding (gradient flow)", "norm of dL/dh_t (LSTM: dL/dc_t) vs distance back, T=50/100, 5 cells",
        "per-step factor of the norm, T=100, trained", "RNN < 0.95; LSTM c >= 0.95 (with and without forget gate)",
        "RNN sigmoid " + example::fmt(rnn_sig, 3) + ", tanh " + example::fmt(rnn_tanh, 3) + "; LSTM h " +
            example::fmt(fh[2][1][1], 3) + " c " + example::fmt(lstm_c, 3) + "; f=1 c " + example::fmt(lstm_f1_c, 3) +
            "; GRU " + example::fmt(gru, 3),
        flow_pass);
  }

  std::string achieved;
  for (auto& r : runs) achieved += (achieved.empty() ? "" : ", ") + r.name.substr(0, r.name.find(',')) +
                                   (r.name.find("no clip") != std::string::npos ? " (no clip)" : "") + " " +
                                   example::fmt(r.test_mse, 3);
  if (!cont.empty()) achieved += "; continual: forget " + example::fmt(cont[0].run.test_mse, 3) + ", f=1 " +
                                 example::fmt(cont[1].run.test_mse, 3);
  const int code = example::report("07_lstm_adding", "adding problem T=" + std::to_string(s.T) + (cont.empty() ? "" : " + continual task"),
                                   "test MSE", "LSTM < " + example::fmt(target), achieved, pass);
  return code ? code : flow_code;
}
