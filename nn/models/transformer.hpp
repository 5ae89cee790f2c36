// The Transformer (Vaswani et al. 2017), composed from ops: multi-head attention with causal and
// key-padding masks, sinusoidal positions, encoder and decoder layers (post-norm as PyTorch's default, or
// pre-norm), their stacks, and a seq2seq model whose greedy decoding keeps each layer's keys and values.
//
// Layout is PyTorch's with batch_first: activations (B, T, E); weights as torch.nn stores them, (out, in),
// under torch's parameter names, so a state dict from PyTorch (names with '.' written '_') loads as it is
// (load_state_dict below). Masks follow PyTorch too: nonzero = masked out (never attended).
//
//   MultiheadAttention, per head h of size D = E / heads (W_q, W_k, W_v the three row blocks of in_proj_weight):
//     q = query W_q^T + b_q,  k = key W_k^T + b_k,  v = value W_v^T + b_v           (B, T, E), split in heads
//     A_h = softmax(q_h k_h^T / sqrt(D) + mask)      (masked scores are -1e30: weight exactly 0)
//     out = concat_h(A_h v_h) W_o^T + b_o;   weights = mean_h A_h (optional)
//   This is the course's attention (score, softmax, weighted sum of states) with the score the scaled dot
//   product of learned projections, run for every query position at once and in several heads.
//
//   Positions:  PE[t, 2i] = sin(t / 10000^(2i/E)),  PE[t, 2i+1] = cos(t / 10000^(2i/E));  x sqrt(E) + PE
//
//   Encoder layer (post-norm):  h = LN1(x + SA(x));          y = LN2(h + FF(h))
//                 (pre-norm):   h = x + SA(LN1(x));          y = h + FF(LN2(h))
//   Decoder layer (post-norm):  h1 = LN1(x + SA(x, causal)); h2 = LN2(h1 + CA(h1, memory)); y = LN3(h2 + FF(h2))
//                 (pre-norm):   h1 = x + SA(LN1(x));         h2 = h1 + CA(LN2(h1), memory); y = h2 + FF(LN3(h2))
//   FF(h) = linear2(dropout(relu(linear1(h)))); dropout also after SA, CA and FF (before each residual
//   sum) and on the attention weights, in training mode only.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "tapegrad/nn/models/linear.hpp"
#include "tapegrad/nn/models/module.hpp"
#include "tapegrad/nn/data/tokenizer.hpp"

namespace tapegrad::nn {

// Rows [begin, end) of a parameter W, transposed: recorded while grad mode is on (the gradient reaches W);
// under NoGrad a copy kept until W's version changes (an optimiser step, load_state_dict), so that greedy
// decoding does not transpose every weight at every step. Thread-safe.
class TransposedWeight {
 public:
  Tensor operator()(const Tensor& W, std::size_t begin, std::size_t end) const;

 private:
  mutable std::mutex mutex_;
  mutable Tensor t_;
  mutable const void* data_ = nullptr;
  mutable std::uint64_t version_ = 0;
};

// y = x weight^T + bias over the last axis, weight (out, in) as torch.nn.Linear keeps it (nn::Linear keeps
// W (in, out)); parameter names "weight" and "bias", so state dicts map one to one.
class TorchLinear : public Module {
 public:
  TorchLinear(std::size_t in, std::size_t out, Generator& gen, DType dtype = default_dtype());
  Tensor operator()(const Tensor& x) const;
  Tensor weight, bias;

 private:
  TransposedWeight weight_t_;
};

// Layer norm over the last axis (ops/norm.hpp's layer_norm), weight 1 and bias 0 to start.
class LayerNorm : public Module {
 public:
  explicit LayerNorm(std::size_t dim, double eps = 1e-5, DType dtype = default_dtype());
  Tensor operator()(const Tensor& x) const;
  Tensor weight, bias;
  double eps;
};

// PE (T, E) of the formula above, rows offset .. offset + T - 1 (an owned constant).
Tensor sinusoidal_positions(std::size_t T, std::size_t E, DType dtype = default_dtype(), std::size_t offset = 0);
// x (B, T, E) scaled by sqrt(E) plus PE of positions offset .. offset + T - 1.
Tensor add_positions(const Tensor& x, std::size_t offset = 0);

// Which keys each query may see. Any mask is a constant of any dtype, nonzero = masked out.
struct AttentionMasks {
  bool causal = false;     // query t sees keys s <= t + (Tk - Tq) (the queries are the last Tq positions)
  Tensor attn_mask;        // (Tq, Tk), shared by the batch
  Tensor key_padding_mask; // (B, Tk): padding keys of each example
};

enum class AttentionWeights { none, averaged, per_head };

struct AttentionResult {
  Tensor out;      // (B, Tq, E)
  Tensor weights;  // averaged (B, Tq, Tk), per_head (B, heads, Tq, Tk), or undefined
};

class MultiheadAttention : public Module {
 public:
  MultiheadAttention(std::size_t embed_dim, std::size_t num_heads, Generator& gen, double dropout = 0.0,
                     DType dtype = default_dtype());
  // query (B, Tq, E), key and value (B, Tk, E). `dropout_gen` draws the dropout of the attention weights
  // (needed in training mode with dropout > 0).
  AttentionResult operator()(const Tensor& query, const Tensor& key, const Tensor& value,
                             const AttentionMasks& masks = {}, AttentionWeights need = AttentionWeights::none,
                             Generator* dropout_gen = nullptr) const;
  // The pieces, for decoding step by step with cached keys and values: one projection of x (..., E) by
  // a block of in_proj (0 = q, 1 = k, 2 = v), and attention over already projected q (B, Tq, E), k and v
  // (B, Tk, E).
  Tensor project(const Tensor& x, std::size_t block) const;
  AttentionResult attend(const Tensor& q, const Tensor& k, const Tensor& v, const AttentionMasks& masks = {},
                         AttentionWeights need = AttentionWeights::none, Generator* dropout_gen = nullptr) const;

  Tensor in_proj_weight, in_proj_bias;  // (3E, E), (3E): q, k, v stacked
  TorchLinear out_proj;
  std::size_t embed_dim, num_heads;
  double dropout;

 private:
  TransposedWeight block_t_[3];
};

struct TransformerLayerConfig {
  std::size_t d_model = 512, nhead = 8, dim_feedforward = 2048;
  double dropout = 0.1;
  bool norm_first = false;  // pre-norm
  double layer_norm_eps = 1e-5;
};

class TransformerEncoderLayer : public Module {
 public:
  TransformerEncoderLayer(const TransformerLayerConfig& config, Generator& gen, DType dtype = default_dtype());
  // x (B, S, E); src_key_padding_mask (B, S) or undefined.
  Tensor operator()(const Tensor& x, const Tensor& src_key_padding_mask = Tensor(), Generator* dropout_gen = nullptr) const;

  TransformerLayerConfig config;
  MultiheadAttention self_attn;
  TorchLinear linear1, linear2;
  LayerNorm norm1, norm2;
};

// One decoder layer's keys and values kept between decoding steps: self-attention's of every earlier
// position (grown by one row a step), cross-attention's of the memory (projected once).
struct DecoderLayerCache {
  Tensor self_k, self_v;  // (B, t, E)
  Tensor mem_k, mem_v;    // (B, S, E)
};

class TransformerDecoderLayer : public Module {
 public:
  TransformerDecoderLayer(const TransformerLayerConfig& config, Generator& gen, DType dtype = default_dtype());
  // x (B, T, E) with a causal self-attention (when tgt_causal), memory (B, S, E). cross_weights, when given,
  // receives the cross-attention's weights per head (B, heads, T, S).
  Tensor operator()(const Tensor& x, const Tensor& memory, bool tgt_causal = true,
                    const Tensor& memory_key_padding_mask = Tensor(), Generator* dropout_gen = nullptr,
                    Tensor* cross_weights = nullptr) const;
  // One new position x_t (B, 1, E) given the cache (its mem_k / mem_v filled from the memory when empty);
  // the same values as operator() at that position, without recomputing earlier positions. Evaluation only.
  Tensor step(const Tensor& x_t, const Tensor& memory, DecoderLayerCache& cache,
              const Tensor& memory_key_padding_mask = Tensor(), Tensor* cross_weights = nullptr) const;

  TransformerLayerConfig config;
  MultiheadAttention self_attn, multihead_attn;
  TorchLinear linear1, linear2;
  LayerNorm norm1, norm2, norm3;

 private:
  template <class SelfAttention, class CrossAttention>
  Tensor block(const Tensor& x, SelfAttention&& sa, CrossAttention&& ca, Generator* dropout_gen) const;
};

// N layers (parameter names layers.0..., and norm.* for the final norm when present, as torch's).
class TransformerEncoder : public Module {
 public:
  TransformerEncoder(const TransformerLayerConfig& config, std::size_t num_layers, bool final_norm, Generator& gen,
                     DType dtype = default_dtype());
  Tensor operator()(const Tensor& x, const Tensor& src_key_padding_mask = Tensor(), Generator* dropout_gen = nullptr) const;
  std::vector<std::unique_ptr<TransformerEncoderLayer>> layers;
  std::unique_ptr<LayerNorm> norm;  // null without a final norm
};

class TransformerDecoder : public Module {
 public:
  TransformerDecoder(const TransformerLayerConfig& config, std::size_t num_layers, bool final_norm, Generator& gen,
                     DType dtype = default_dtype());
  // cross_weights: the last layer's cross-attention per head (B, heads, T, S), when given.
  Tensor operator()(const Tensor& x, const Tensor& memory, const Tensor& memory_key_padding_mask = Tensor(),
                    Generator* dropout_gen = nullptr, Tensor* cross_weights = nullptr) const;
  Tensor step(const Tensor& x_t, const Tensor& memory, std::vector<DecoderLayerCache>& caches,
              const Tensor& memory_key_padding_mask = Tensor(), Tensor* cross_weights = nullptr) const;
  std::vector<std::unique_ptr<TransformerDecoderLayer>> layers;
  std::unique_ptr<LayerNorm> norm;
};

struct TransformerConfig {
  std::size_t src_vocab = 0, tgt_vocab = 0;
  std::size_t d_model = 64, nhead = 4, num_encoder_layers = 2, num_decoder_layers = 2, dim_feedforward = 256;
  double dropout = 0.1;
  bool norm_first = false;
};

struct TransformerGenerated {
  std::vector<std::vector<std::int64_t>> ids;  // per batch element, without <bos>, up to (not with) <eos>
  Tensor cross_attention;                      // last decoder layer, per head: (B, heads, T_out, S)
};

// Seq2seq: token embeddings (scaled by sqrt(E)) plus positions, the encoder and decoder stacks (each with
// a final norm, as torch.nn.Transformer), and a linear layer to the target vocabulary. Token ids are
// time-major (T, B) with source masks (S, B), 1 = real token, as nn/data/data.hpp's batches (nn::Seq2Seq's
// convention); they are turned into batch-major activations and a key-padding mask inside, and each source
// gets <eos> after its last real token (so the encoder's memory has S + 1 positions): with padding keys
// masked, nothing else tells a position that it ends its sequence. Vocabularies hold nn::Tokenizer's
// special tokens (ids 0-3).
class Transformer : public Module {
 public:
  Transformer(const TransformerConfig& config, Generator& gen, DType dtype = default_dtype());
  Tensor encode(const Index& src, const Tensor& src_mask = Tensor(), Generator* dropout_gen = nullptr) const;
  // Teacher forcing: tgt (T, B) = <bos> y_1 .. <eos> <pad>..; mean cross-entropy over non-pad targets.
  Tensor loss(const Index& src, const Index& tgt, const Tensor& src_mask = Tensor(), Generator* dropout_gen = nullptr) const;
  // Greedy decoding off the tape, until every row has produced <eos> or max_length tokens. With
  // cache_keys_values, each step runs the decoder on the new position only (keys and values of earlier
  // positions kept per layer); without, it reruns the decoder over the whole prefix (the same ids).
  TransformerGenerated generate(const Index& src, std::size_t max_length, const Tensor& src_mask = Tensor(),
                                bool cache_keys_values = true) const;

  TransformerConfig config;
  Embedding src_embed, tgt_embed;
  TransformerEncoder encoder;
  TransformerDecoder decoder;
  TorchLinear generator;
};

// Weight interchange by name: the key of parameter "a.b.c" is prefix + "a_b_c" (PyTorch's state-dict name
// with '.' written '_'). load_state_dict copies the values in place (converted to each parameter's dtype);
// a missing key or another shape is an Error naming the key and the shapes, and nothing changes then.
// Keys of `state` that name no parameter are ignored (a case folder also holds its inputs).
using NamedTensors = std::map<std::string, Tensor>;
void load_state_dict(Module& module, const NamedTensors& state, const std::string& prefix = "");
NamedTensors state_dict(const Module& module, const std::string& prefix = "");

}  // namespace tapegrad::nn
