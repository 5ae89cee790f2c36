#include "tapegrad/nn/models/transformer.hpp"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <string>

#include "tapegrad/autograd/diagnostics.hpp"
#include "tapegrad/nn/models/init.hpp"
#include "tapegrad/ops/activation.hpp"
#include "tapegrad/ops/elementwise.hpp"
#include "tapegrad/ops/linalg.hpp"
#include "tapegrad/ops/loss.hpp"
#include "tapegrad/ops/norm.hpp"
#include "tapegrad/ops/reduce.hpp"
#include "tapegrad/ops/shape.hpp"

namespace tapegrad::nn {

namespace {

std::string num(std::size_t n) { return std::to_string(n); }

// x * mask / (1 - p) with a fresh mask, in training mode; x itself otherwise.
Tensor drop(const Module& m, const Tensor& x, double p, Generator* gen, const char* who) {
  if (!m.training() || p <= 0.0) return x;
  if (!gen)
    throw Error(std::string(who) + ": dropout " + std::to_string(p) + " in training mode needs a Generator (or call eval())");
  return dropout(x, bernoulli_mask(x.shape(), 1.0 - p, *gen, x.dtype()), 1.0 - p);
}

void check_model_input(const char* who, const char* what, const Tensor& x, std::size_t E) {
  if (!x.defined() || x.rank() != 3 || x.size(2) != E || x.size(0) == 0 || x.size(1) == 0)
    throw Error(std::string(who) + ": " + what + " must be (B, T, E) with E = " + num(E) + ", B, T >= 1, got " + shape_str(x));
}

// (B, Tq, Tk)-shaped truth of "may attend", from the masks; all true: nothing to mask.
struct Keep {
  std::vector<char> allowed;  // B * Tq * Tk
  bool any_masked = false;
};

Keep keep_of(const AttentionMasks& m, std::size_t B, std::size_t Tq, std::size_t Tk) {
  const char* who = "MultiheadAttention";
  Keep k;
  k.allowed.assign(B * Tq * Tk, 1);
  if (m.causal && Tk < Tq)
    throw Error(std::string(who) + ": causal attention needs at least as many keys as queries, got " + num(Tq) +
                " queries and " + num(Tk) + " keys");
  std::vector<double> am, pm;
  if (m.attn_mask.defined()) {
    if (m.attn_mask.shape() != Shape{Tq, Tk})
      throw Error(std::string(who) + ": attn_mask " + m.attn_mask.shape().str() + " must be (Tq, Tk) = " + Shape{Tq, Tk}.str());
    if (m.attn_mask.requires_grad()) throw Error(std::string(who) + ": attn_mask " + m.attn_mask.shape().str() + " must be a constant");
    am = m.attn_mask.to_vector();
  }
  if (m.key_padding_mask.defined()) {
    if (m.key_padding_mask.shape() != Shape{B, Tk})
      throw Error(std::string(who) + ": key_padding_mask " + m.key_padding_mask.shape().str() + " must be (B, Tk) = " +
                  Shape{B, Tk}.str());
    if (m.key_padding_mask.requires_grad())
      throw Error(std::string(who) + ": key_padding_mask " + m.key_padding_mask.shape().str() + " must be a constant");
    pm = m.key_padding_mask.to_vector();
  }
  if (!m.causal && am.empty() && pm.empty()) return k;
  for (std::size_t b = 0; b < B; ++b)
    for (std::size_t t = 0; t < Tq; ++t) {
      bool row_any = false;
      for (std::size_t s = 0; s < Tk; ++s) {
        bool ok = true;
        if (m.causal && s > t + (Tk - Tq)) ok = false;
        if (!am.empty() && am[t * Tk + s] != 0.0) ok = false;
        if (!pm.empty() && pm[b * Tk + s] != 0.0) ok = false;
        k.allowed[(b * Tq + t) * Tk + s] = ok;
        k.any_masked |= !ok;
        row_any |= ok;
      }
      if (!row_any)
        throw Error(std::string(who) + ": the masks leave query " + num(t) + " of example " + num(b) +
                    " no key to attend to (Tq " + num(Tq) + ", Tk " + num(Tk) + ")");
    }
  return k;
}

// The encoder's input: the source batch-major with <eos> after each sequence's last real token, and its
// key-padding mask (undefined when nothing is padded). Without the <eos>, no encoder position could tell
// that it ends its sequence (padding keys are never attended), and "the last digit of the year" would have
// to be found from absolute positions alone; fairseq's sources end the same way.
struct SourceBatch {
  Index ids;  // (B, S + 1)
  Tensor pad; // (B, S + 1), nonzero = padding
};
SourceBatch source_batch(const Index& src, const Tensor& src_mask, DType dtype) {
  const std::size_t S = src.shape[0], B = src.shape[1], S1 = S + 1;
  std::vector<double> m;
  if (src_mask.defined()) {
    if (src_mask.shape() != Shape{S, B})
      throw Error("Transformer: source mask " + src_mask.shape().str() + " must be (S, B) = " + Shape{S, B}.str());
    m = src_mask.to_vector();
  }
  std::vector<std::int64_t> ids(B * S1, Tokenizer::pad_id);
  std::vector<double> pad(B * S1, 1.0);
  bool any = false;
  for (std::size_t b = 0; b < B; ++b) {
    std::size_t k = 0;
    for (std::size_t s = 0; s < S; ++s)
      if (m.empty() || m[s * B + b] != 0.0) ids[b * S1 + k] = src.values[s * B + b], pad[b * S1 + k++] = 0.0;
    ids[b * S1 + k] = Tokenizer::eos_id, pad[b * S1 + k++] = 0.0;
    any |= k < S1;
  }
  return {Index(std::move(ids), {B, S1}), any ? from_values(pad, {B, S1}, dtype) : Tensor()};
}

// dst's values := src's (same shape; converted to dst's dtype), in place: the parameter stays the same leaf.
void copy_values(Tensor& dst, const Tensor& src) {
  const Tensor v = src.detach().to(dst.dtype());
  std::memcpy(dst.raw_data(), v.raw_data(), v.numel() * dtype_size(v.dtype()));
  dst.bump_version();
}

// (T, B) time-major ids to (B, T) batch-major.
Index batch_major(const Index& ids) {
  const std::size_t T = ids.shape[0], B = ids.shape[1];
  std::vector<std::int64_t> v(T * B);
  for (std::size_t t = 0; t < T; ++t)
    for (std::size_t b = 0; b < B; ++b) v[b * T + t] = ids.values[t * B + b];
  return Index(std::move(v), {B, T});
}

void check_token_ids(const char* who, const Index& ids, std::size_t vocab) {
  if (ids.shape.rank() != 2 || ids.shape.numel() == 0 || ids.values.size() != ids.shape.numel())
    throw Error(std::string(who) + ": ids " + ids.shape.str() + " must be non-empty (T, B)");
  for (std::int64_t id : ids.values)
    if (id < 0 || id >= std::int64_t(vocab))
      throw Error(std::string(who) + ": id " + std::to_string(id) + " in ids " + ids.shape.str() + " is outside [0, " +
                  num(vocab) + ")");
}

}  // namespace

// ---- TorchLinear, LayerNorm, positions ------------------------------------------------------------------

Tensor TransposedWeight::operator()(const Tensor& W, std::size_t begin, std::size_t end) const {
  const auto rows = [&] { return begin == 0 && end == W.size(0) ? W : slice(W, 0, begin, end); };
  if (grad_enabled()) return transpose(rows());
  std::lock_guard<std::mutex> lock(mutex_);
  if (!t_.defined() || data_ != W.raw_data() || version_ != W.version()) {
    t_ = transpose(rows());
    data_ = W.raw_data(), version_ = W.version();
  }
  return t_;
}

TorchLinear::TorchLinear(std::size_t in, std::size_t out, Generator& gen, DType dtype) {
  weight = register_parameter("weight", init::glorot_uniform({out, in}, gen, dtype));
  bias = register_parameter("bias", zeros({out}, dtype));
}

Tensor TorchLinear::operator()(const Tensor& x) const {
  if (!x.defined() || x.rank() < 1 || x.size(-1) != weight.size(1))
    throw Error("TorchLinear: input " + shape_str(x) + " does not end in " + num(weight.size(1)) + " features (weight " +
                weight.shape().str() + ")");
  return linear(x, weight_t_(weight, 0, weight.size(0)), bias);
}

LayerNorm::LayerNorm(std::size_t dim, double eps_, DType dtype) : eps(eps_) {
  weight = register_parameter("weight", ones({dim}, dtype));
  bias = register_parameter("bias", zeros({dim}, dtype));
}

Tensor LayerNorm::operator()(const Tensor& x) const { return layer_norm(x, weight, bias, eps); }

Tensor sinusoidal_positions(std::size_t T, std::size_t E, DType dtype, std::size_t offset) {
  std::vector<double> pe(T * E);
  for (std::size_t t = 0; t < T; ++t)
    for (std::size_t i = 0; i < E; i += 2) {
      // 10000^(-2i/E) as exp(2i * -ln(10000) / E), the way PyTorch's tutorial computes it.
      const double angle = double(t + offset) * std::exp(double(i) * (-std::log(10000.0) / double(E)));
      pe[t * E + i] = std::sin(angle);
      if (i + 1 < E) pe[t * E + i + 1] = std::cos(angle);
    }
  return from_values(pe, {T, E}, dtype);
}

Tensor add_positions(const Tensor& x, std::size_t offset) {
  if (!x.defined() || x.rank() != 3) throw Error("add_positions: x must be (B, T, E), got " + shape_str(x));
  const std::size_t E = x.size(2);
  return x * std::sqrt(double(E)) + sinusoidal_positions(x.size(1), E, x.dtype(), offset);
}

// ---- MultiheadAttention ---------------------------------------------------------------------------------

MultiheadAttention::MultiheadAttention(std::size_t E, std::size_t H, Generator& gen, double p, DType dtype)
    : out_proj(E, E, gen, dtype), embed_dim(E), num_heads(H), dropout(p) {
  if (E == 0 || H == 0 || E % H != 0)
    throw Error("MultiheadAttention: embed_dim " + num(E) + " must be a positive multiple of num_heads " + num(H));
  if (!(p >= 0.0 && p < 1.0)) throw Error("MultiheadAttention: dropout " + std::to_string(p) + " must be in [0, 1)");
  in_proj_weight = register_parameter("in_proj_weight", init::glorot_uniform({3 * E, E}, gen, dtype));
  in_proj_bias = register_parameter("in_proj_bias", zeros({3 * E}, dtype));
  register_module("out_proj", out_proj);
}

Tensor MultiheadAttention::project(const Tensor& x, std::size_t block) const {
  const std::size_t E = embed_dim;
  // A leading-axis slice of the weight is a view; its transpose is the one copy (none when decoding).
  return linear(x, block_t_[block](in_proj_weight, block * E, (block + 1) * E), slice(in_proj_bias, 0, block * E, (block + 1) * E));
}

AttentionResult MultiheadAttention::operator()(const Tensor& query, const Tensor& key, const Tensor& value,
                                               const AttentionMasks& masks, AttentionWeights need,
                                               Generator* dropout_gen) const {
  check_model_input("MultiheadAttention", "query", query, embed_dim);
  check_model_input("MultiheadAttention", "key", key, embed_dim);
  if (!value.defined() || value.shape() != key.shape())
    throw Error("MultiheadAttention: value " + shape_str(value) + " must have key's shape " + key.shape().str());
  if (key.size(0) != query.size(0))
    throw Error("MultiheadAttention: batch of query " + query.shape().str() + " differs from key " + key.shape().str());
  return attend(project(query, 0), project(key, 1), project(value, 2), masks, need, dropout_gen);
}

AttentionResult MultiheadAttention::attend(const Tensor& q, const Tensor& k, const Tensor& v, const AttentionMasks& masks,
                                           AttentionWeights need, Generator* dropout_gen) const {
  check_model_input("MultiheadAttention", "q", q, embed_dim);
  check_model_input("MultiheadAttention", "k", k, embed_dim);
  if (!v.defined() || v.shape() != k.shape() || k.size(0) != q.size(0))
    throw Error("MultiheadAttention: q " + q.shape().str() + ", k " + k.shape().str() + ", v " + shape_str(v) +
                " must be (B, Tq, E), (B, Tk, E), (B, Tk, E)");
  const std::size_t B = q.size(0), Tq = q.size(1), Tk = k.size(1), E = embed_dim, H = num_heads, D = E / H;
  // (B, T, E) -> (B H, T, D): head h holds features h D .. h D + D - 1, as PyTorch splits them.
  const auto heads = [&](const Tensor& t, std::size_t T) { return reshape(permute(reshape(t, {B, T, H, D}), {0, 2, 1, 3}), {B * H, T, D}); };
  const Tensor qh = heads(q * (1.0 / std::sqrt(double(D))), Tq), kh = heads(k, Tk), vh = heads(v, Tk);
  Tensor scores = reshape(matmul(qh, transpose(kh)), {B, H, Tq, Tk});
  const Keep keep = keep_of(masks, B, Tq, Tk);
  if (keep.any_masked) {
    std::vector<double> allowed(keep.allowed.begin(), keep.allowed.end());
    // -1e30, not -inf: exp underflows to exactly 0 and no inf - inf appears.
    scores = where(from_values(allowed, {B, 1, Tq, Tk}, scores.dtype()), scores, scalar(-1e30, scores.dtype()));
  }
  const Tensor a = softmax(scores, -1);  // (B, H, Tq, Tk)
  const Tensor ad = drop(*this, a, dropout, dropout_gen, "MultiheadAttention");
  const Tensor o = matmul(reshape(ad, {B * H, Tq, Tk}), vh);  // (B H, Tq, D)
  AttentionResult r;
  r.out = out_proj(reshape(permute(reshape(o, {B, H, Tq, D}), {0, 2, 1, 3}), {B, Tq, E}));
  if (need == AttentionWeights::averaged) r.weights = mean(a, {1});
  else if (need == AttentionWeights::per_head) r.weights = a;
  return r;
}

// ---- encoder layer --------------------------------------------------------------------------------------

namespace {
void check_layer_config(const char* who, const TransformerLayerConfig& c) {
  if (c.d_model == 0 || c.nhead == 0 || c.d_model % c.nhead != 0 || c.dim_feedforward == 0)
    throw Error(std::string(who) + ": d_model " + num(c.d_model) + " must be a positive multiple of nhead " + num(c.nhead) +
                ", dim_feedforward " + num(c.dim_feedforward) + " positive");
  if (!(c.dropout >= 0.0 && c.dropout < 1.0)) throw Error(std::string(who) + ": dropout " + std::to_string(c.dropout) + " must be in [0, 1)");
}
const TransformerLayerConfig& checked(const char* who, const TransformerLayerConfig& c) {
  check_layer_config(who, c);
  return c;
}
}  // namespace

TransformerEncoderLayer::TransformerEncoderLayer(const TransformerLayerConfig& c, Generator& gen, DType dtype)
    : config(checked("TransformerEncoderLayer", c)),
      self_attn(c.d_model, c.nhead, gen, c.dropout, dtype),
      linear1(c.d_model, c.dim_feedforward, gen, dtype),
      linear2(c.dim_feedforward, c.d_model, gen, dtype),
      norm1(c.d_model, c.layer_norm_eps, dtype),
      norm2(c.d_model, c.layer_norm_eps, dtype) {
  register_module("self_attn", self_attn);
  register_module("linear1", linear1);
  register_module("linear2", linear2);
  register_module("norm1", norm1);
  register_module("norm2", norm2);
}

Tensor TransformerEncoderLayer::operator()(const Tensor& x, const Tensor& pad, Generator* gen) const {
  check_model_input("TransformerEncoderLayer", "x", x, config.d_model);
  const char* who = "TransformerEncoderLayer";
  const double p = config.dropout;
  AttentionMasks m;
  m.key_padding_mask = pad;
  const auto sa = [&](const Tensor& h) { return drop(*this, self_attn(h, h, h, m, AttentionWeights::none, gen).out, p, gen, who); };
  const auto ff = [&](const Tensor& h) {
    return drop(*this, linear2(drop(*this, relu(linear1(h)), p, gen, who)), p, gen, who);
  };
  if (config.norm_first) {
    const Tensor h = x + sa(norm1(x));
    return h + ff(norm2(h));
  }
  const Tensor h = norm1(x + sa(x));
  return norm2(h + ff(h));
}

// ---- decoder layer --------------------------------------------------------------------------------------

TransformerDecoderLayer::TransformerDecoderLayer(const TransformerLayerConfig& c, Generator& gen, DType dtype)
    : config(checked("TransformerDecoderLayer", c)),
      self_attn(c.d_model, c.nhead, gen, c.dropout, dtype),
      multihead_attn(c.d_model, c.nhead, gen, c.dropout, dtype),
      linear1(c.d_model, c.dim_feedforward, gen, dtype),
      linear2(c.dim_feedforward, c.d_model, gen, dtype),
      norm1(c.d_model, c.layer_norm_eps, dtype),
      norm2(c.d_model, c.layer_norm_eps, dtype),
      norm3(c.d_model, c.layer_norm_eps, dtype) {
  register_module("self_attn", self_attn);
  register_module("multihead_attn", multihead_attn);
  register_module("linear1", linear1);
  register_module("linear2", linear2);
  register_module("norm1", norm1);
  register_module("norm2", norm2);
  register_module("norm3", norm3);
}

// The layer's formula once, for both the whole sequence and one step: sa and ca are the two attentions
// of their (normed or not) input.
template <class SelfAttention, class CrossAttention>
Tensor TransformerDecoderLayer::block(const Tensor& x, SelfAttention&& sa, CrossAttention&& ca, Generator* gen) const {
  const char* who = "TransformerDecoderLayer";
  const double p = config.dropout;
  const auto ff = [&](const Tensor& h) {
    return drop(*this, linear2(drop(*this, relu(linear1(h)), p, gen, who)), p, gen, who);
  };
  if (config.norm_first) {
    const Tensor h1 = x + drop(*this, sa(norm1(x)), p, gen, who);
    const Tensor h2 = h1 + drop(*this, ca(norm2(h1)), p, gen, who);
    return h2 + ff(norm3(h2));
  }
  const Tensor h1 = norm1(x + drop(*this, sa(x), p, gen, who));
  const Tensor h2 = norm2(h1 + drop(*this, ca(h1), p, gen, who));
  return norm3(h2 + ff(h2));
}

Tensor TransformerDecoderLayer::operator()(const Tensor& x, const Tensor& memory, bool tgt_causal, const Tensor& mem_pad,
                                           Generator* gen, Tensor* cross_weights) const {
  check_model_input("TransformerDecoderLayer", "x", x, config.d_model);
  check_model_input("TransformerDecoderLayer", "memory", memory, config.d_model);
  AttentionMasks self_masks, cross_masks;
  self_masks.causal = tgt_causal;
  cross_masks.key_padding_mask = mem_pad;
  const AttentionWeights need = cross_weights ? AttentionWeights::per_head : AttentionWeights::none;
  return block(
      x, [&](const Tensor& h) { return self_attn(h, h, h, self_masks, AttentionWeights::none, gen).out; },
      [&](const Tensor& h) {
        AttentionResult r = multihead_attn(h, memory, memory, cross_masks, need, gen);
        if (cross_weights) *cross_weights = r.weights;
        return r.out;
      },
      gen);
}

Tensor TransformerDecoderLayer::step(const Tensor& x_t, const Tensor& memory, DecoderLayerCache& cache,
                                     const Tensor& mem_pad, Tensor* cross_weights) const {
  check_model_input("TransformerDecoderLayer::step", "x_t", x_t, config.d_model);
  if (x_t.size(1) != 1) throw Error("TransformerDecoderLayer::step: x_t " + x_t.shape().str() + " must be one position (B, 1, E)");
  if (training()) throw Error("TransformerDecoderLayer::step: decoding with a cache is for evaluation (call eval())");
  if (!cache.mem_k.defined()) {
    check_model_input("TransformerDecoderLayer::step", "memory", memory, config.d_model);
    cache.mem_k = multihead_attn.project(memory, 1);
    cache.mem_v = multihead_attn.project(memory, 2);
  }
  AttentionMasks cross_masks;
  cross_masks.key_padding_mask = mem_pad;
  const AttentionWeights need = cross_weights ? AttentionWeights::per_head : AttentionWeights::none;
  return block(
      x_t,
      [&](const Tensor& h) {
        // The new position's key and value join the earlier ones; it may see all of them (causal holds).
        const Tensor k = self_attn.project(h, 1), v = self_attn.project(h, 2);
        cache.self_k = cache.self_k.defined() ? concat({cache.self_k, k}, 1) : k;
        cache.self_v = cache.self_v.defined() ? concat({cache.self_v, v}, 1) : v;
        return self_attn.attend(self_attn.project(h, 0), cache.self_k, cache.self_v).out;
      },
      [&](const Tensor& h) {
        AttentionResult r = multihead_attn.attend(multihead_attn.project(h, 0), cache.mem_k, cache.mem_v, cross_masks, need);
        if (cross_weights) *cross_weights = r.weights;
        return r.out;
      },
      nullptr);
}

// ---- stacks ---------------------------------------------------------------------------------------------

TransformerEncoder::TransformerEncoder(const TransformerLayerConfig& c, std::size_t n, bool final_norm, Generator& gen,
                                       DType dtype) {
  for (std::size_t i = 0; i < n; ++i) {
    layers.push_back(std::make_unique<TransformerEncoderLayer>(c, gen, dtype));
    register_module("layers." + num(i), *layers.back());
  }
  if (final_norm) {
    norm = std::make_unique<LayerNorm>(c.d_model, c.layer_norm_eps, dtype);
    register_module("norm", *norm);
  }
}

Tensor TransformerEncoder::operator()(const Tensor& x, const Tensor& pad, Generator* gen) const {
  Tensor h = x;
  for (const auto& layer : layers) h = (*layer)(h, pad, gen);
  return norm ? (*norm)(h) : h;
}

TransformerDecoder::TransformerDecoder(const TransformerLayerConfig& c, std::size_t n, bool final_norm, Generator& gen,
                                       DType dtype) {
  for (std::size_t i = 0; i < n; ++i) {
    layers.push_back(std::make_unique<TransformerDecoderLayer>(c, gen, dtype));
    register_module("layers." + num(i), *layers.back());
  }
  if (final_norm) {
    norm = std::make_unique<LayerNorm>(c.d_model, c.layer_norm_eps, dtype);
    register_module("norm", *norm);
  }
}

Tensor TransformerDecoder::operator()(const Tensor& x, const Tensor& memory, const Tensor& mem_pad, Generator* gen,
                                      Tensor* cross_weights) const {
  Tensor h = x;
  for (std::size_t i = 0; i < layers.size(); ++i)
    h = (*layers[i])(h, memory, true, mem_pad, gen, i + 1 == layers.size() ? cross_weights : nullptr);
  return norm ? (*norm)(h) : h;
}

Tensor TransformerDecoder::step(const Tensor& x_t, const Tensor& memory, std::vector<DecoderLayerCache>& caches,
                                const Tensor& mem_pad, Tensor* cross_weights) const {
  if (caches.size() != layers.size()) caches.assign(layers.size(), DecoderLayerCache{});
  Tensor h = x_t;
  for (std::size_t i = 0; i < layers.size(); ++i)
    h = layers[i]->step(h, memory, caches[i], mem_pad, i + 1 == layers.size() ? cross_weights : nullptr);
  return norm ? (*norm)(h) : h;
}

// ---- Transformer seq2seq --------------------------------------------------------------------------------

namespace {
TransformerLayerConfig layer_config(const TransformerConfig& c) {
  TransformerLayerConfig l;
  l.d_model = c.d_model, l.nhead = c.nhead, l.dim_feedforward = c.dim_feedforward, l.dropout = c.dropout;
  l.norm_first = c.norm_first;
  return l;
}
}  // namespace

Transformer::Transformer(const TransformerConfig& c, Generator& gen, DType dtype)
    : config(c),
      src_embed(std::max<std::size_t>(c.src_vocab, 1), c.d_model, gen, dtype),
      tgt_embed(std::max<std::size_t>(c.tgt_vocab, 1), c.d_model, gen, dtype),
      encoder(layer_config(c), c.num_encoder_layers, true, gen, dtype),
      decoder(layer_config(c), c.num_decoder_layers, true, gen, dtype),
      generator(c.d_model, std::max<std::size_t>(c.tgt_vocab, 1), gen, dtype) {
  if (c.src_vocab <= std::size_t(Tokenizer::eos_id) || c.tgt_vocab <= std::size_t(Tokenizer::eos_id))
    throw Error("Transformer: vocabularies must hold the special tokens <pad> <unk> <bos> <eos> (ids 0-3), got src " +
                num(c.src_vocab) + ", tgt " + num(c.tgt_vocab));
  // N(0, 1/E): the sqrt(E) scale of the embeddings then brings them to unit size beside the positions.
  for (Tensor* w : {&src_embed.weight, &tgt_embed.weight})
    copy_values(*w, init::normal(w->shape(), 1.0 / std::sqrt(double(c.d_model)), gen, dtype));
  register_module("src_embed", src_embed);
  register_module("tgt_embed", tgt_embed);
  register_module("encoder", encoder);
  register_module("decoder", decoder);
  register_module("generator", generator);
}

Tensor Transformer::encode(const Index& src, const Tensor& src_mask, Generator* gen) const {
  check_token_ids("Transformer::encode", src, config.src_vocab);
  const SourceBatch sb = source_batch(src, src_mask, src_embed.weight.dtype());
  return encoder(add_positions(src_embed(sb.ids)), sb.pad, gen);
}

Tensor Transformer::loss(const Index& src, const Index& tgt, const Tensor& src_mask, Generator* gen) const {
  check_token_ids("Transformer::loss", tgt, config.tgt_vocab);
  if (tgt.shape[0] < 2) throw Error("Transformer::loss: target ids " + tgt.shape.str() + " need <bos> and one target (T >= 2)");
  if (tgt.shape[1] != src.shape[1])
    throw Error("Transformer::loss: source ids " + src.shape.str() + " and target ids " + tgt.shape.str() + " differ in batch");
  const std::size_t T = tgt.shape[0] - 1, B = tgt.shape[1], V = config.tgt_vocab;
  const Tensor memory = encode(src, src_mask, gen);
  const Tensor pad = source_batch(src, src_mask, memory.dtype()).pad;
  const Index bt = batch_major(tgt);  // (B, T + 1)
  std::vector<std::int64_t> in(B * T), keep, targets;
  for (std::size_t b = 0; b < B; ++b)
    for (std::size_t t = 0; t < T; ++t) {
      in[b * T + t] = bt.values[b * (T + 1) + t];
      const std::int64_t y = bt.values[b * (T + 1) + t + 1];
      if (y != Tokenizer::pad_id) {
        keep.push_back(std::int64_t(b * T + t));
        targets.push_back(y);
      }
    }
  if (keep.empty()) throw Error("Transformer::loss: every target in " + tgt.shape.str() + " is <pad>: nothing to predict");
  const Tensor h = decoder(add_positions(tgt_embed(Index(std::move(in), {B, T}))), memory, pad, gen);
  Tensor logits = reshape(generator(h), {B * T, V});
  if (keep.size() != B * T) logits = index_select(logits, 0, keep);  // padding drops out of the mean
  return softmax_cross_entropy(logits, Index(std::move(targets)));
}

TransformerGenerated Transformer::generate(const Index& src, std::size_t max_length, const Tensor& src_mask,
                                           bool cache_keys_values) const {
  if (max_length == 0) throw Error("Transformer::generate: max_length must be at least 1");
  if (training()) throw Error("Transformer::generate: call eval() first (dropout is on in training mode)");
  NoGrad no_grad;
  const std::size_t B = src.shape.rank() == 2 ? src.shape[1] : 0;
  const Tensor memory = encode(src, src_mask);
  const Tensor pad = source_batch(src, src_mask, memory.dtype()).pad;
  TransformerGenerated g;
  g.ids.resize(B);
  std::vector<bool> done(B, false);
  std::vector<DecoderLayerCache> caches;
  std::vector<std::int64_t> prefix(B, Tokenizer::bos_id);  // (B, t + 1) batch-major, for recomputing
  std::vector<std::int64_t> last(B, Tokenizer::bos_id);
  std::vector<Tensor> weights;
  const std::size_t V = config.tgt_vocab;
  for (std::size_t t = 0; t < max_length; ++t) {
    Tensor h, w;
    if (cache_keys_values) {
      h = decoder.step(add_positions(tgt_embed(Index(last, {B, 1})), t), memory, caches, pad, &w);
      weights.push_back(w);  // (B, heads, 1, S)
    } else {
      h = decoder(add_positions(tgt_embed(Index(prefix, {B, t + 1}))), memory, pad, nullptr, &w);
      h = slice(h, 1, t, t + 1);
      weights.assign(1, w);  // the last run's map covers every step
    }
    const std::vector<double> logits = generator(h).to_vector();  // (B, 1, V)
    std::vector<std::int64_t> next_prefix;
    next_prefix.reserve(B * (t + 2));
    bool all_done = true;
    for (std::size_t b = 0; b < B; ++b) {
      const double* row = logits.data() + b * V;
      const std::int64_t y = std::int64_t(std::max_element(row, row + V) - row);
      last[b] = y;
      if (!done[b]) {
        if (y == Tokenizer::eos_id) done[b] = true;
        else g.ids[b].push_back(y);
      }
      all_done &= done[b];
      next_prefix.insert(next_prefix.end(), prefix.begin() + std::ptrdiff_t(b * (t + 1)),
                         prefix.begin() + std::ptrdiff_t((b + 1) * (t + 1)));
      next_prefix.push_back(y);
    }
    prefix = std::move(next_prefix);
    if (all_done) break;
  }
  g.cross_attention = weights.size() == 1 ? weights[0] : concat(weights, 2);
  return g;
}

// ---- interchange ----------------------------------------------------------------------------------------

namespace {
std::string key_of(const std::string& prefix, std::string name) {
  std::replace(name.begin(), name.end(), '.', '_');
  return prefix + name;
}
}  // namespace

void load_state_dict(Module& module, const NamedTensors& state, const std::string& prefix) {
  const auto params = module.named_parameters();
  for (const auto& [name, p] : params) {  // every check first: a bad dict changes nothing
    const std::string key = key_of(prefix, name);
    auto it = state.find(key);
    if (it == state.end()) throw Error("load_state_dict: no entry " + key + " for parameter " + name + " " + p.shape().str());
    if (!it->second.defined() || it->second.shape() != p.shape())
      throw Error("load_state_dict: entry " + key + " is " + shape_str(it->second) + ", parameter " + name + " is " +
                  p.shape().str());
  }
  for (const auto& [name, p] : params) {
    Tensor dst = p;
    copy_values(dst, state.at(key_of(prefix, name)));
  }
}

NamedTensors state_dict(const Module& module, const std::string& prefix) {
  NamedTensors out;
  for (const auto& [name, p] : module.named_parameters()) out[key_of(prefix, name)] = p.detach();
  return out;
}

}  // namespace tapegrad::nn
