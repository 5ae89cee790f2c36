// LibTorch side of bench_workload.cpp (optional target bench_workload_torch, built when CMake finds Torch;
// the binary also holds the engine's benches, so the ratio comes from one run).
//
//   BM_workload_<addition|dates>_torch   the same model, sizes, batch and step (forward + mean
//        cross-entropy over non-pad targets + backward + clip_grad_norm_(5) + Adam), written as a LibTorch
//        user would: torch::nn::LSTM for the encoder over a packed sequence (pack_padded_sequence, so each
//        sequence's final state is the thought vector, as the engine's masked encoder gives), torch::nn::LSTM
//        for the teacher-forced decoder, the additive attention of all decoder steps at once (its scores
//        do not feed back into the cell: Luong-style attention after the cell), one intra-op thread.
//
// Before timing, LibTorch's loss and every parameter's gradient are checked against the engine's from the
// same initial weights (normwise relative 1e-4 in float32; PyTorch's LSTM layout is the transpose,
// weight_ih = W_x^T, weight_hh = W_h^T, bias_hh zero). Padded encoder positions differ (zeros in LibTorch,
// the carried state in the engine) but the attention mask gives them weight exactly 0 in both.
#include <benchmark/benchmark.h>
#include <torch/csrc/autograd/profiler_legacy.h>
#include <torch/torch.h>

#include <cstdlib>
#include <memory>
#include <string>
#include <vector>

#include "nn/workload_problem.hpp"

namespace {

using namespace tapegrad::bench;
namespace tg = tapegrad;
using Clock = ProcessCpuClock;

torch::Tensor torch_of(const tg::Tensor& t) {
  std::vector<std::int64_t> shape;
  for (std::size_t k = 0; k < t.rank(); ++k) shape.push_back(std::int64_t(t.size(long(k))));
  const tg::Tensor f = t.to(tg::DType::f32);
  return torch::from_blob(f.raw_data(), shape, torch::kFloat32).clone();
}

torch::Tensor ids_of(const tg::Index& ids, std::size_t row_begin, std::size_t row_end) {
  const std::int64_t B = std::int64_t(ids.shape[1]);
  std::vector<std::int64_t> v(ids.values.begin() + std::ptrdiff_t(row_begin * ids.shape[1]),
                              ids.values.begin() + std::ptrdiff_t(row_end * ids.shape[1]));
  return torch::tensor(v, torch::kInt64).reshape({std::int64_t(row_end - row_begin), B});
}

double rel(const torch::Tensor& got, const torch::Tensor& want) {
  return (got - want).norm().item<double>() / std::max(want.norm().item<double>(), 1e-30);
}

struct TorchSeq2Seq {
  bool attention;
  std::int64_t V, H;
  torch::Tensor enc_emb, dec_emb, out_W, out_b, Wa, Ua, va;
  torch::nn::LSTM enc{nullptr}, dec{nullptr};
  torch::Tensor src, lengths, mask, dec_in, targets;  // (S, B), (B), (B, S) bool, (T-1, B), ((T-1) B)
  std::vector<torch::Tensor> params;
  std::unique_ptr<torch::optim::Adam> opt;
  double lr, clip;

  static void copy_lstm(torch::nn::LSTM& m, const tg::nn::RecurrentCell& cell) {
    const auto& c = dynamic_cast<const tg::nn::LSTMCell&>(cell);
    auto ps = m->named_parameters();
    ps["weight_ih_l0"].copy_(torch_of(c.W_x).t());
    ps["weight_hh_l0"].copy_(torch_of(c.W_h).t());
    ps["bias_ih_l0"].copy_(torch_of(c.b));
    ps["bias_hh_l0"].zero_();
  }

  explicit TorchSeq2Seq(const WorkloadProblem& p)
      : attention(p.s.attention != tg::nn::AttentionKind::none),
        V(std::int64_t(p.vocab.size())),
        H(std::int64_t(p.s.hidden)),
        lr(p.s.lr),
        clip(p.s.clip) {
    const std::int64_t E = std::int64_t(p.s.embed);
    const tg::nn::Seq2Seq& m = *p.model;
    enc = torch::nn::LSTM(torch::nn::LSTMOptions(E, H));
    dec = torch::nn::LSTM(torch::nn::LSTMOptions(E, H));
    {
      torch::NoGradGuard no_grad;
      copy_lstm(enc, *m.encoder.cell);
      copy_lstm(dec, *m.decoder->cell);
    }
    enc_emb = torch_of(m.encoder.embed.weight).requires_grad_();
    dec_emb = torch_of(m.decoder->embed.weight).requires_grad_();
    out_W = torch_of(m.decoder->out.W).requires_grad_();
    out_b = torch_of(m.decoder->out.b).requires_grad_();
    params = {enc_emb, dec_emb, out_W, out_b};
    for (auto& t : enc->parameters()) params.push_back(t);
    for (auto& t : dec->parameters()) params.push_back(t);
    if (attention) {
      const auto& a = dynamic_cast<const tg::nn::AdditiveAttention&>(*dynamic_cast<const tg::nn::AttentionDecoder&>(*m.decoder).attention);
      Wa = torch_of(a.Wa).requires_grad_();
      Ua = torch_of(a.Ua).requires_grad_();
      va = torch_of(a.va).requires_grad_();
      params.push_back(Wa);
      params.push_back(Ua);
      params.push_back(va);
    }
    opt = std::make_unique<torch::optim::Adam>(params, torch::optim::AdamOptions(lr));
    // The batch.
    const std::size_t S = p.S(), T = p.T();
    src = ids_of(p.batch.source.ids, 0, S);
    std::vector<std::int64_t> len(p.batch.source.lengths.begin(), p.batch.source.lengths.end());
    lengths = torch::tensor(len, torch::kInt64);
    mask = (torch_of(p.batch.source.mask) != 0).t().contiguous();  // (B, S)
    dec_in = ids_of(p.batch.target.ids, 0, T - 1);
    targets = ids_of(p.batch.target.ids, 1, T).reshape({-1});
  }

  std::int64_t num_parameters() const {
    std::int64_t n = 0;
    for (const auto& t : params) n += t.numel();
    return n - (enc->named_parameters()["bias_hh_l0"].numel() + dec->named_parameters()["bias_hh_l0"].numel());
  }

  torch::Tensor loss() {
    namespace rnn = torch::nn::utils::rnn;
    const std::int64_t S = src.size(0);
    const torch::Tensor x = torch::embedding(enc_emb, src);  // (S, B, E)
    auto [packed_out, thought] = enc->forward_with_packed_input(rnn::pack_padded_sequence(x, lengths, false, false), {});
    const torch::Tensor y = torch::embedding(dec_emb, dec_in);  // (T', B, E)
    const torch::Tensor s = std::get<0>(dec->forward(y, thought));  // (T', B, H)
    torch::Tensor feats = s;
    if (attention) {
      const torch::Tensor hs = std::get<0>(rnn::pad_packed_sequence(packed_out, false, 0.0, S)).transpose(0, 1);  // (B, S, H)
      const torch::Tensor sd = s.transpose(0, 1);                                                               // (B, T', H)
      const torch::Tensor pre = torch::tanh(torch::matmul(hs, Wa).unsqueeze(1) + torch::matmul(sd, Ua).unsqueeze(2));  // (B, T', S, A)
      const torch::Tensor e = torch::matmul(pre, va).masked_fill(mask.logical_not().unsqueeze(1), -1e30);  // (B, T', S)
      const torch::Tensor a = torch::softmax(e, -1);
      const torch::Tensor ctx = torch::bmm(a, hs).transpose(0, 1);  // (T', B, H)
      feats = torch::cat({ctx, s}, 2);
    }
    const torch::Tensor logits = torch::matmul(feats, out_W) + out_b;  // (T', B, V)
    return torch::nn::functional::cross_entropy(logits.reshape({-1, V}), targets,
                                                torch::nn::functional::CrossEntropyFuncOptions().ignore_index(tg::nn::Tokenizer::pad_id));
  }

  void update() {
    torch::nn::utils::clip_grad_norm_(params, clip);
    opt->step();
  }
};

// LibTorch's loss and gradients against the engine's, from the same weights; "" when they agree.
std::string check(WorkloadProblem& p, TorchSeq2Seq& t) {
  EngineStep e(p);
  const double engine_loss = e.forward_backward();
  t.opt->zero_grad();
  const torch::Tensor tl = t.loss();
  tl.backward();
  std::string why;
  const double torch_loss = tl.item<double>();
  if (!(std::abs(torch_loss - engine_loss) <= 1e-4 * std::abs(engine_loss)))
    why += "loss " + std::to_string(torch_loss) + " vs " + std::to_string(engine_loss) + "; ";
  if (t.num_parameters() != std::int64_t(p.model->num_parameters()))
    why += "parameters " + std::to_string(t.num_parameters()) + " vs " + std::to_string(p.model->num_parameters()) + "; ";
  const tg::nn::Seq2Seq& m = *p.model;
  auto cmp = [&](const std::string& name, const torch::Tensor& got, const tg::Tensor& want_param) {
    const double r = rel(got, torch_of(want_param.grad()));
    if (!(r < 1e-4)) why += "d/d" + name + " relative " + std::to_string(r) + "; ";
  };
  cmp("encoder.embed", t.enc_emb.grad(), m.encoder.embed.weight);
  cmp("decoder.embed", t.dec_emb.grad(), m.decoder->embed.weight);
  cmp("decoder.out.W", t.out_W.grad(), m.decoder->out.W);
  cmp("decoder.out.b", t.out_b.grad(), m.decoder->out.b);
  auto cmp_lstm = [&](const std::string& name, torch::nn::LSTM& l, const tg::nn::RecurrentCell& cell) {
    const auto& c = dynamic_cast<const tg::nn::LSTMCell&>(cell);
    auto ps = l->named_parameters();
    cmp(name + ".W_x", ps["weight_ih_l0"].grad().t(), c.W_x);
    cmp(name + ".W_h", ps["weight_hh_l0"].grad().t(), c.W_h);
    cmp(name + ".b", ps["bias_ih_l0"].grad(), c.b);
  };
  cmp_lstm("encoder.cell", t.enc, *m.encoder.cell);
  cmp_lstm("decoder.cell", t.dec, *m.decoder->cell);
  if (t.attention) {
    const auto& a = dynamic_cast<const tg::nn::AdditiveAttention&>(*dynamic_cast<const tg::nn::AttentionDecoder&>(*m.decoder).attention);
    cmp("attention.Wa", t.Wa.grad(), a.Wa);
    cmp("attention.Ua", t.Ua.grad(), a.Ua);
    cmp("attention.va", t.va.grad(), a.va);
  }
  if (!why.empty()) why = "LibTorch against the engine: " + why;
  return why;
}

void BM_workload_torch(benchmark::State& state, Workload w) {
  torch::set_num_threads(1);
  WorkloadProblem p(w);
  auto t = std::make_unique<TorchSeq2Seq>(p);
  if (const std::string why = check(p, *t); !why.empty()) {
    state.SkipWithError(why.c_str());
    return;
  }
  tg::Tape::current().clear();
  t = std::make_unique<TorchSeq2Seq>(p);  // fresh optimizer state; the weights are the engine's initial ones
  {  // one untimed step, as the engine's side has
    t->opt->zero_grad();
    t->loss().backward();
    t->update();
  }
  StepPhases phases;
  for (auto _ : state) {
    const auto t0 = Clock::now();
    t->opt->zero_grad();
    const torch::Tensor l = t->loss();
    phases.loss = l.item<double>();
    const auto t1 = Clock::now();
    l.backward();
    const auto t2 = Clock::now();
    t->update();
    const auto t3 = Clock::now();
    phases.add(t0, t1, t2, t3);
  }
  phases.report(state, p.describe());
}

// LibTorch's own profiler over a few steps (the legacy autograd profiler, a Chrome trace): where LibTorch's
// time goes by op, self time (bench/support/torch_trace.py sums it). Not timed; scripts/bench.sh workload-profile.
void BM_profile_workload_torch(benchmark::State& state, Workload w) {
  torch::set_num_threads(1);
  WorkloadProblem p(w);
  TorchSeq2Seq t(p);
  const char* dir = std::getenv("TAPEGRAD_TORCH_TRACE_DIR");
  const std::string path = std::string(dir ? dir : ".") + "/torch_trace_" + workload_name(w) + ".json";
  t.opt->zero_grad();
  t.loss().backward();  // warm-up, outside the trace
  t.update();
  {
    torch::autograd::profiler::RecordProfile trace(path);
    for (auto _ : state) {
      t.opt->zero_grad();
      torch::Tensor l = t.loss();
      l.backward();
      t.update();
    }
  }
  state.SetLabel(path);
}

const bool registered = [] {
  torch::set_num_threads(1);
  benchmark::AddCustomContext("torch_version", TORCH_VERSION);
  benchmark::AddCustomContext("torch_num_threads", std::to_string(torch::get_num_threads()));
  for (Workload w : {Workload::addition, Workload::dates})
    benchmark::RegisterBenchmark((std::string("BM_workload_") + workload_name(w) + "_torch").c_str(),
                                 [w](benchmark::State& s) { BM_workload_torch(s, w); })
        ->MeasureProcessCPUTime()
        ->Unit(benchmark::kMillisecond);
  for (Workload w : {Workload::addition, Workload::dates})
    benchmark::RegisterBenchmark((std::string("BM_profile_workload_") + workload_name(w) + "_torch").c_str(),
                                 [w](benchmark::State& s) { BM_profile_workload_torch(s, w); })
        ->Iterations(w == Workload::addition ? 20 : 5)
        ->Unit(benchmark::kMillisecond);
  return true;
}();

}  // namespace
