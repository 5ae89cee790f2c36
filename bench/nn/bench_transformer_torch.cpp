// LibTorch baseline of bench_transformer.cpp (optional target bench_transformer_torch, built when CMake
// finds Torch; the binary also holds the engine and GEMM benches, so the ratios come from one run).
//
//   BM_transformer_encoder_layer_torch/B/T/E/H/FF   torch::nn::TransformerEncoderLayer (post-norm, ReLU,
//                        dropout 0), forward + backward of sum(y * w), x requiring its gradient; one
//                        intra-op thread. LibTorch's C++ layer takes (T, B, E); the FLOPs are the same.
//
// Before timing, its output is checked against the engine's layer with the same weights (state-dict names,
// '.' written '_'), normwise relative 1e-4 in float32.
#include <benchmark/benchmark.h>
#include <torch/torch.h>

#include <cmath>
#include <string>
#include <vector>

#include "tapegrad/tapegrad.hpp"

namespace {

using namespace tapegrad;

torch::Tensor torch_of(const Tensor& t) {
  std::vector<std::int64_t> shape;
  for (std::size_t k = 0; k < t.rank(); ++k) shape.push_back(std::int64_t(t.size(long(k))));
  const Tensor f = t.to(DType::f32);
  return torch::from_blob(f.raw_data(), shape, torch::kFloat32).clone();
}

void BM_transformer_encoder_layer_torch(benchmark::State& state) {
  torch::set_num_threads(1);
  const std::size_t B = std::size_t(state.range(0)), T = std::size_t(state.range(1)), E = std::size_t(state.range(2)),
                    H = std::size_t(state.range(3)), FF = std::size_t(state.range(4));
  Generator gen(1);
  nn::TransformerLayerConfig c;
  c.d_model = E, c.nhead = H, c.dim_feedforward = FF, c.dropout = 0.0;
  nn::TransformerEncoderLayer ours(c, gen, DType::f32);
  const Tensor x = randn({B, T, E}, gen, 1.0, DType::f32), w = randn({B, T, E}, gen, 1.0, DType::f32);
  torch::nn::TransformerEncoderLayer layer(
      torch::nn::TransformerEncoderLayerOptions(std::int64_t(E), std::int64_t(H)).dim_feedforward(std::int64_t(FF)).dropout(0.0));
  const nn::NamedTensors sd = nn::state_dict(ours);
  {
    torch::NoGradGuard no_grad;
    for (auto& p : layer->named_parameters()) {
      std::string key = p.key();
      for (char& ch : key)
        if (ch == '.') ch = '_';
      p.value().copy_(torch_of(sd.at(key)));
    }
  }
  torch::Tensor xt = torch_of(x).transpose(0, 1).contiguous().requires_grad_();  // (T, B, E)
  const torch::Tensor wt = torch_of(w).transpose(0, 1).contiguous();
  {  // the answer first
    NoGrad no_grad;
    const torch::Tensor want = torch_of(ours(x)).transpose(0, 1);
    const torch::Tensor got = layer->forward(xt).detach();
    const double rel = (got - want).norm().item<double>() / want.norm().item<double>();
    if (!(rel < 1e-4)) {
      state.SkipWithError(("LibTorch's layer disagrees with the engine's: relative " + std::to_string(rel)).c_str());
      return;
    }
  }
  for (auto _ : state) {
    layer->zero_grad();
    if (xt.grad().defined()) xt.grad().zero_();
    (layer->forward(xt) * wt).sum().backward();
    benchmark::DoNotOptimize(xt.grad().data_ptr<float>());
  }
}

const bool registered = [] {
  benchmark::RegisterBenchmark("BM_transformer_encoder_layer_torch", BM_transformer_encoder_layer_torch)
      ->Args({32, 32, 256, 8, 1024})
      ->MeasureProcessCPUTime()
      ->Unit(benchmark::kMillisecond);
  benchmark::AddCustomContext("torch_version", TORCH_VERSION);
  return true;
}();

}  // namespace
