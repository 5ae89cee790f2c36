// Transformer benches (issue 20), float32, one BLAS thread:
//
//   BM_transformer_encoder_layer_engine/B/T/E/H/FF   nn::TransformerEncoderLayer (post-norm, ReLU, dropout
//                                                    off), forward + backward of L = sum(y * w) to every
//                                                    parameter and x (x needs its gradient: a layer inside
//                                                    a stack)
//   BM_transformer_encoder_layer_gemms/B/T/E/H/FF    only the layer's GEMMs (forward and the two of each
//                                                    backward product), cblas on preallocated buffers; the
//                                                    per-head products as B H small GEMMs
//   BM_transformer_sgemm_rate/M/N/K                  one large sgemm: the single-core GEMM rate (counter
//                                                    GFLOPs) that turns the layer's FLOPs into its floor
//   BM_transformer_encoder_layer_torch/...           torch::nn::TransformerEncoderLayer (bench_transformer_
//                                                    torch.cpp, when LibTorch is found)
//   BM_transformer_decode_cached/T_out               greedy decoding of T_out tokens (E 256, 8 heads, FF
//   BM_transformer_decode_recompute/T_out            1024, 2 decoder layers, B 1, S 32): keys and values
//                                                    kept per layer, against rerunning the whole prefix
//
// Every engine bench reports its FLOPs (counter "flop"); the encoder layer's are those of its GEMMs:
//   forward 2 B T E (3E) + 2 B T E E + 4 B T E FF + 4 B T T E, backward twice that.
// Before timing, the float32 layer's gradients are checked against the same layer in float64 (normwise
// relative 1e-3), and cached decoding's tokens against recomputed decoding's.
#include <cblas.h>

#include <benchmark/benchmark.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <vector>

#include "tapegrad/tapegrad.hpp"

namespace {

using namespace tapegrad;

struct LayerDims {
  std::size_t B, T, E, H, FF;
};

LayerDims dims_of(const benchmark::State& s) {
  return {std::size_t(s.range(0)), std::size_t(s.range(1)), std::size_t(s.range(2)), std::size_t(s.range(3)),
          std::size_t(s.range(4))};
}

double layer_flops(const LayerDims& d) {
  const double BT = double(d.B * d.T), E = double(d.E);
  const double fwd = 2 * BT * E * 3 * E + 2 * BT * E * E + 4 * BT * E * double(d.FF) + 4 * BT * double(d.T) * E;
  return 3 * fwd;
}

void BM_transformer_encoder_layer_engine(benchmark::State& state) {
  const LayerDims d = dims_of(state);
  Generator gen(1);
  nn::TransformerLayerConfig c;
  c.d_model = d.E, c.nhead = d.H, c.dim_feedforward = d.FF, c.dropout = 0.0;
  nn::TransformerEncoderLayer layer(c, gen, DType::f32);
  Tensor x = parameter(randn({d.B, d.T, d.E}, gen, 1.0, DType::f32));
  const Tensor w = randn({d.B, d.T, d.E}, gen, 1.0, DType::f32);
  {  // the answer first: the same layer in float64
    nn::TransformerEncoderLayer ref(c, gen, DType::f64);
    nn::load_state_dict(ref, nn::state_dict(layer));
    Tensor x64 = parameter(x.to(DType::f64));
    backward(sum(layer(x) * w));
    backward(sum(ref(x64) * w.to(DType::f64)));
    const auto a = x.grad().to_vector(), b = x64.grad().to_vector();
    double num = 0, den = 0;
    for (std::size_t i = 0; i < a.size(); ++i) num += (a[i] - b[i]) * (a[i] - b[i]), den += b[i] * b[i];
    if (!(std::sqrt(num / den) < 1e-3)) {
      state.SkipWithError("float32 layer gradient disagrees with float64");
      return;
    }
  }
  for (auto _ : state) {
    layer.zero_grad();
    x.zero_grad();
    backward(sum(layer(x) * w));
    benchmark::DoNotOptimize(x.grad().raw_data());
  }
  state.counters["flop"] = layer_flops(d);
  state.counters["GFLOPs"] = benchmark::Counter(layer_flops(d) * 1e-9, benchmark::Counter::kIsIterationInvariantRate);
}

// C (m x n) = op(A) op(B) (+ C with beta 1), row-major.
void sgemm(bool ta, bool tb, int m, int n, int k, const float* a, const float* b, float beta, float* c) {
  cblas_sgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans, m, n, k, 1.0f, a, ta ? m : k,
              b, tb ? k : n, beta, c, n);
}

void BM_transformer_encoder_layer_gemms(benchmark::State& state) {
  const LayerDims d = dims_of(state);
  const int BT = int(d.B * d.T), E = int(d.E), F = int(d.FF), T = int(d.T), D = int(d.E / d.H), BH = int(d.B * d.H);
  std::vector<float> x(BT * E, 0.5f), wqkv(3 * E * E, 0.01f), qkv(BT * 3 * E), wo(E * E, 0.01f), o(BT * E), y(BT * E);
  std::vector<float> w1(E * F, 0.01f), f1(BT * F), w2(F * E, 0.01f), s(BH * T * T, 0.01f), gs(BH * T * T);
  std::vector<float> dqkv(BT * 3 * E), dx(BT * E), dwqkv(3 * E * E), dwo(E * E), do_(BT * E), dw1(E * F), df1(BT * F), dw2(F * E);
  for (auto _ : state) {
    // forward: projections, per-head scores and weighted sums, output and feed-forward products
    sgemm(false, false, BT, 3 * E, E, x.data(), wqkv.data(), 0, qkv.data());
    for (int h = 0; h < BH; ++h) {
      sgemm(false, true, T, T, D, qkv.data() + h * T * D, qkv.data() + h * T * D, 0, s.data() + h * T * T);
      sgemm(false, false, T, D, T, s.data() + h * T * T, qkv.data() + h * T * D, 0, o.data() + (h * T * D) );
    }
    sgemm(false, false, BT, E, E, o.data(), wo.data(), 0, y.data());
    sgemm(false, false, BT, F, E, y.data(), w1.data(), 0, f1.data());
    sgemm(false, false, BT, E, F, f1.data(), w2.data(), 0, y.data());
    // backward: two products per forward product
    sgemm(false, true, BT, F, E, y.data(), w2.data(), 0, df1.data());
    sgemm(true, false, F, E, BT, f1.data(), y.data(), 0, dw2.data());
    sgemm(false, true, BT, E, F, df1.data(), w1.data(), 0, do_.data());
    sgemm(true, false, E, F, BT, y.data(), df1.data(), 0, dw1.data());
    sgemm(false, true, BT, E, E, do_.data(), wo.data(), 0, dx.data());
    sgemm(true, false, E, E, BT, o.data(), do_.data(), 0, dwo.data());
    for (int h = 0; h < BH; ++h) {
      float* sh = s.data() + h * T * T;
      const float* qh = qkv.data() + h * T * D;
      sgemm(false, true, T, T, D, dx.data() + (h * T * D) , qh, 0, gs.data() + h * T * T);  // dA = dO V^T
      sgemm(true, false, T, D, T, sh, dx.data() + (h * T * D) , 0, dqkv.data() + h * T * D);  // dV = A^T dO
      sgemm(false, false, T, D, T, gs.data() + h * T * T, qh, 0, dqkv.data() + h * T * D);  // dQ = dS K
      sgemm(true, false, T, D, T, gs.data() + h * T * T, qh, 0, dqkv.data() + h * T * D);   // dK = dS^T Q
    }
    sgemm(false, true, BT, E, 3 * E, dqkv.data(), wqkv.data(), 0, dx.data());
    sgemm(true, false, E, 3 * E, BT, x.data(), dqkv.data(), 0, dwqkv.data());
    benchmark::DoNotOptimize(dx.data());
    benchmark::DoNotOptimize(dwqkv.data());
  }
  state.counters["flop"] = layer_flops(d);
  state.counters["GFLOPs"] = benchmark::Counter(layer_flops(d) * 1e-9, benchmark::Counter::kIsIterationInvariantRate);
}

void BM_transformer_sgemm_rate(benchmark::State& state) {
  const int M = int(state.range(0)), N = int(state.range(1)), K = int(state.range(2));
  std::vector<float> a(std::size_t(M) * K, 0.5f), b(std::size_t(K) * N, 0.25f), c(std::size_t(M) * N);
  for (auto _ : state) {
    sgemm(false, false, M, N, K, a.data(), b.data(), 0, c.data());
    benchmark::DoNotOptimize(c.data());
  }
  const double flop = 2.0 * M * N * K;
  state.counters["GFLOPs"] = benchmark::Counter(flop * 1e-9, benchmark::Counter::kIsIterationInvariantRate);
}

// A decoder-only model in eval mode whose generator never picks <eos>, so every run makes T_out tokens.
struct DecodeProblem {
  nn::Transformer model;
  Index src;
  explicit DecodeProblem(Generator& gen) : model(config(), gen, DType::f32) {
    model.eval();
    NoGrad no_grad;
    model.generator.bias.data<float>()[nn::Tokenizer::eos_id] = -1e9f;
    std::vector<std::int64_t> ids(32);
    for (std::size_t i = 0; i < ids.size(); ++i) ids[i] = std::int64_t(4 + gen.below(28));
    src = Index(ids, {32, 1});
  }
  static nn::TransformerConfig config() {
    nn::TransformerConfig c;
    c.src_vocab = c.tgt_vocab = 32;
    c.d_model = 256, c.nhead = 8, c.dim_feedforward = 1024, c.num_encoder_layers = 1, c.num_decoder_layers = 2;
    c.dropout = 0.0;
    return c;
  }
};

void BM_transformer_decode(benchmark::State& state, bool cached) {
  Generator gen(2);
  DecodeProblem p(gen);
  const std::size_t T = std::size_t(state.range(0));
  // The two ways give the same tokens (checked before timing).
  const auto a = p.model.generate(p.src, T, Tensor(), true).ids, b = p.model.generate(p.src, T, Tensor(), false).ids;
  if (a != b || a[0].size() != T) {
    state.SkipWithError("cached and recomputed decoding disagree");
    return;
  }
  for (auto _ : state) benchmark::DoNotOptimize(p.model.generate(p.src, T, Tensor(), cached).ids.data());
  state.counters["tokens"] = double(T);
}

const bool registered = [] {
  using benchmark::RegisterBenchmark;
  const std::vector<std::int64_t> layer{32, 32, 256, 8, 1024};
  RegisterBenchmark("BM_transformer_encoder_layer_engine", BM_transformer_encoder_layer_engine)
      ->Args(layer)->MeasureProcessCPUTime()->Unit(benchmark::kMillisecond);
  RegisterBenchmark("BM_transformer_encoder_layer_gemms", BM_transformer_encoder_layer_gemms)
      ->Args(layer)->MeasureProcessCPUTime()->Unit(benchmark::kMillisecond);
  RegisterBenchmark("BM_transformer_sgemm_rate", BM_transformer_sgemm_rate)
      ->Args({1024, 768, 256})->MeasureProcessCPUTime()->Unit(benchmark::kMillisecond);
  for (std::int64_t T : {16, 32, 64}) {
    RegisterBenchmark("BM_transformer_decode_cached", [](benchmark::State& s) { BM_transformer_decode(s, true); })
        ->Arg(T)->MeasureProcessCPUTime()->Unit(benchmark::kMillisecond);
    RegisterBenchmark("BM_transformer_decode_recompute", [](benchmark::State& s) { BM_transformer_decode(s, false); })
        ->Arg(T)->MeasureProcessCPUTime()->Unit(benchmark::kMillisecond);
  }
  return true;
}();

}  // namespace
