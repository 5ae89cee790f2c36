#include "tapegrad/nn/models/seq2seq.hpp"

#include <algorithm>
#include <cmath>

#include "tapegrad/autograd/tape.hpp"
#include "tapegrad/ops/elementwise.hpp"
#include "tapegrad/ops/loss.hpp"
#include "tapegrad/ops/shape.hpp"

namespace tapegrad::nn {

namespace {
std::string num(std::size_t n) { return std::to_string(n); }

// Rows [begin, end) of a time-major (T, B) Index, as a (end - begin, B) Index.
Index rows(const Index& ids, std::size_t begin, std::size_t end) {
  const std::size_t B = ids.shape[1];
  return Index(std::vector<std::int64_t>(ids.values.begin() + static_cast<std::ptrdiff_t>(begin * B),
                                         ids.values.begin() + static_cast<std::ptrdiff_t>(end * B)),
               Shape{end - begin, B});
}
}  // namespace

std::unique_ptr<RecurrentCell> make_cell(CellType type, std::size_t input, std::size_t hidden, Generator& gen, DType dtype) {
  switch (type) {
    case CellType::rnn: return std::make_unique<RNNCell>(input, hidden, gen, Activation::tanh, Init::lecun, 0.01, dtype);
    case CellType::lstm: return std::make_unique<LSTMCell>(input, hidden, gen, false, Init::glorot, 0.01, dtype);
    case CellType::gru:
      return std::make_unique<GRUCell>(input, hidden, gen, GRUConvention::course, Init::glorot, 0.01, dtype);
  }
  throw Error("make_cell: unknown cell type");
}

void check_ids(const char* who, const Index& ids, std::size_t vocab, std::size_t rank) {
  if (ids.shape.rank() != rank || ids.values.size() != ids.shape.numel())
    throw Error(std::string(who) + ": token ids of shape " + ids.shape.str() + " (" + num(ids.values.size()) +
                " values), expected rank " + num(rank) + (rank == 2 ? " (T, B)" : " (B)"));
  if (ids.values.empty()) throw Error(std::string(who) + ": empty sequence, token ids of shape " + ids.shape.str());
  for (std::size_t i = 0; i < ids.values.size(); ++i) {
    const std::int64_t id = ids.values[i];
    if (id < 0 || id >= static_cast<std::int64_t>(vocab)) {
      std::string at = rank == 2 ? "(t=" + num(i / ids.shape[1]) + ", b=" + num(i % ids.shape[1]) + ")" : "(b=" + num(i) + ")";
      throw Error(std::string(who) + ": token id " + std::to_string(id) + " at " + at + " of ids " + ids.shape.str() +
                  " is outside [0, " + num(vocab) + ")");
    }
  }
}

Tensor attention_map(const Tensor& attention, std::size_t b) {
  if (!attention.defined() || attention.rank() != 3)
    throw Error("attention_map: expects attention weights (T_out, B, S), got " + shape_str(attention));
  if (b >= attention.size(1))
    throw Error("attention_map: batch element " + num(b) + " outside attention " + attention.shape().str());
  return reshape(slice(attention, 1, b, b + 1), {attention.size(0), attention.size(2)});
}

// ---- Encoder ----------------------------------------------------------------------------------------

Encoder::Encoder(std::size_t vocab, std::size_t embed_dim, std::size_t hidden, Generator& gen, CellType type,
                 bool reverse, DType dtype)
    : embed(vocab, embed_dim, gen, dtype), cell(make_cell(type, embed_dim, hidden, gen, dtype)), reverse_input(reverse) {
  register_module("embed", embed);
  register_module("cell", *cell);
}

EncoderOutput Encoder::operator()(const Index& src, const Tensor& mask) const {
  check_ids("Encoder", src, vocab_size());
  const std::size_t S = src.shape[0], B = src.shape[1], E = embed.weight.size(1);
  const Tensor x = embed(src);  // (S, B, E)
  EncoderOutput out;
  Tensor outputs;
  if (!mask.defined()) {
    Sequence seq = run(*cell, x, {}, reverse_input);
    outputs = seq.outputs;
    out.thought = seq.last;
  } else {
    if (mask.shape() != Shape{S, B})
      throw Error("Encoder: mask " + mask.shape().str() + " does not match source ids " + src.shape.str());
    if (mask.requires_grad()) throw Error("Encoder: mask " + mask.shape().str() + " must be a constant");
    const auto mv = mask.to_vector();
    for (std::size_t b = 0; b < B; ++b) {
      bool any = false;
      for (std::size_t t = 0; t < S && !any; ++t) any = mv[t * B + b] != 0.0;
      if (!any) throw Error("Encoder: sequence " + num(b) + " is empty (mask " + mask.shape().str() + " is all 0 in its column)");
    }
    // Steps where every sequence still reads a real token need no where: the state is the cell's. (Padding
    // sits after the tokens, so these are the first min-length steps; where costs two broadcast passes
    // forward and two backward per state tensor.)
    std::vector<bool> all_real(S, true);
    for (std::size_t t = 0; t < S; ++t)
      for (std::size_t b = 0; b < B && all_real[t]; ++b) all_real[t] = mv[t * B + b] != 0.0;
    const Tensor m = mask.dtype() == cell->dtype() ? mask : mask.to(cell->dtype());
    // As nn::run, but a padded step keeps the previous state: s_t = where(m_t, cell(x_t, s_(t-1)), s_(t-1)).
    const Tensor xp = cell->project(reshape(x, {S * B, E}));
    State s = cell->initial_state(B);
    std::vector<Tensor> steps(S);
    for (std::size_t k = 0; k < S; ++k) {
      const std::size_t t = reverse_input ? S - 1 - k : k;
      State next = cell->step_projected(slice(xp, 0, t * B, (t + 1) * B), s);
      if (all_real[t]) {
        s = next;
      } else {
        const Tensor mt = reshape(slice(m, 0, t, t + 1), {B, 1});
        s.h = where(mt, next.h, s.h);
        if (next.c.defined()) s.c = where(mt, next.c, s.c);
      }
      steps[t] = s.h;
    }
    outputs = stack(steps, 0);
    out.thought = s;
    out.mask = transpose(m);  // (B, S)
  }
  out.states = permute(outputs, {1, 0, 2});  // (B, S, H)
  return out;
}

// ---- Decoder ----------------------------------------------------------------------------------------

Decoder::Decoder(std::size_t vocab, std::size_t embed_dim, std::size_t hidden, Generator& gen, CellType type, bool peek,
                 DType dtype)
    : Decoder(vocab, embed_dim, hidden, 0, gen, type, peek, dtype) {}

Decoder::Decoder(std::size_t vocab, std::size_t embed_dim, std::size_t hidden, std::size_t extra_out, Generator& gen,
                 CellType type, bool peek, DType dtype)
    : embed(vocab, embed_dim, gen, dtype),
      cell(make_cell(type, embed_dim + (peek ? hidden : 0), hidden, gen, dtype)),
      out(hidden + extra_out + (peek ? hidden : 0), vocab, gen, true, dtype),
      peeky(peek) {
  register_module("embed", embed);
  register_module("cell", *cell);
  register_module("out", out);
}

void Decoder::check_thought(const char* who, const EncoderOutput& enc, std::size_t batch) const {
  try {
    cell->check_state(enc.thought, batch);
  } catch (const Error& e) {
    throw Error(std::string(who) + ": the thought vector (initial state) does not fit the decoder at batch " +
                num(batch) + ": " + e.what());
  }
}

Tensor Decoder::cell_inputs(const Tensor& emb, const EncoderOutput& enc) const { return peeky ? with_peek(emb, enc) : emb; }

Tensor Decoder::with_peek(const Tensor& feats, const EncoderOutput& enc) const {
  if (!peeky) return feats;
  const Tensor& h = enc.thought.h;  // (B, H)
  if (feats.rank() == 2) return concat({feats, h}, 1);
  const std::size_t T = feats.size(0), B = h.size(0), H = h.size(1);
  return concat({feats, broadcast_to(reshape(h, {1, B, H}), {T, B, H})}, 2);
}

Decoder::Result Decoder::forward(const Index& inputs, const EncoderOutput& enc) const {
  check_ids("Decoder", inputs, vocab_size());
  check_thought("Decoder", enc, inputs.shape[1]);
  Sequence seq = run(*cell, cell_inputs(embed(inputs), enc), enc.thought);
  return {out(with_peek(seq.outputs, enc)), Tensor()};
}

Decoder::Step Decoder::step(const Index& y, const State& s, const EncoderOutput& enc) const {
  check_ids("Decoder::step", y, vocab_size(), 1);
  check_thought("Decoder::step", enc, y.shape[0]);
  State next = cell->step(cell_inputs(embed(y), enc), s);
  Tensor logits = out(with_peek(next.h, enc));
  return {logits, next, Tensor()};
}

Tensor Decoder::loss(const Index& tgt, const EncoderOutput& enc, std::size_t* tokens_out, std::int64_t pad_id) const {
  if (tgt.shape.rank() != 2 || tgt.shape[0] < 2 || tgt.values.size() != tgt.shape.numel())
    throw Error("Decoder::loss: target ids " + tgt.shape.str() + " must be (T, B) with T >= 2 (<bos> and one target)");
  check_ids("Decoder::loss", tgt, vocab_size());
  const std::size_t T = tgt.shape[0];
  return loss(rows(tgt, 0, T - 1), rows(tgt, 1, T), enc, tokens_out, pad_id);
}

Tensor Decoder::loss(const Index& inputs, const Index& targets, const EncoderOutput& enc, std::size_t* tokens_out,
                     std::int64_t pad_id) const {
  if (inputs.shape != targets.shape)
    throw Error("Decoder::loss: inputs " + inputs.shape.str() + " and targets " + targets.shape.str() + " differ in shape");
  check_ids("Decoder::loss", targets, vocab_size());
  const Result r = forward(inputs, enc);
  const std::size_t N = targets.values.size(), V = vocab_size();
  std::vector<std::int64_t> keep, kept_targets;
  for (std::size_t i = 0; i < N; ++i)
    if (targets.values[i] != pad_id) {
      keep.push_back(static_cast<std::int64_t>(i));
      kept_targets.push_back(targets.values[i]);
    }
  if (keep.empty()) throw Error("Decoder::loss: every target in " + targets.shape.str() + " is <pad>: nothing to predict");
  if (tokens_out) *tokens_out = keep.size();
  Tensor logits = reshape(r.logits, {N, V});
  if (keep.size() != N) logits = index_select(logits, 0, keep);  // padding positions drop out of the mean
  return softmax_cross_entropy(logits, Index(std::move(kept_targets)));
}

Generated Decoder::generate(const EncoderOutput& enc, const GenerateOptions& o, Generator* gen) const {
  if (o.max_length == 0) throw Error("Decoder::generate: max_length must be at least 1");
  if (o.sample && !gen) throw Error("Decoder::generate: sampling needs a Generator");
  if (o.sample && !(o.temperature > 0.0 && std::isfinite(o.temperature)))
    throw Error("Decoder::generate: temperature " + std::to_string(o.temperature) + " must be positive");
  if (!enc.thought.h.defined() || enc.thought.h.rank() != 2)
    throw Error("Decoder::generate: the thought vector h is " + shape_str(enc.thought.h) + ", expected (B, H)");
  const std::size_t B = enc.thought.h.size(0), V = vocab_size();
  for (std::int64_t id : {o.bos_id, o.eos_id})
    if (id < 0 || id >= static_cast<std::int64_t>(V))
      throw Error("Decoder::generate: <bos>/<eos> id " + std::to_string(id) + " is outside [0, " + num(V) + ")");

  NoGrad no_grad;
  Generated g;
  g.ids.resize(B);
  std::vector<bool> done(B, false);
  std::vector<Tensor> weights;
  Index y(std::vector<std::int64_t>(B, o.bos_id));
  State s = enc.thought;
  for (std::size_t k = 0; k < o.max_length; ++k) {
    Step st = step(y, s, enc);
    if (st.weights.defined()) weights.push_back(st.weights);
    const auto lv = st.logits.to_vector();  // (B, V)
    for (std::size_t b = 0; b < B; ++b) {
      const double* row = lv.data() + b * V;
      std::int64_t pick = 0;
      if (!o.sample) {
        pick = std::max_element(row, row + V) - row;
      } else {  // softmax(logits / temperature), stable, then inverse CDF
        const double mx = *std::max_element(row, row + V);
        std::vector<double> p(V);
        double z = 0;
        for (std::size_t v = 0; v < V; ++v) z += (p[v] = std::exp((row[v] - mx) / o.temperature));
        double u = gen->uniform(0.0, z), acc = 0;
        pick = static_cast<std::int64_t>(V - 1);
        for (std::size_t v = 0; v < V; ++v)
          if ((acc += p[v]) > u) {
            pick = static_cast<std::int64_t>(v);
            break;
          }
      }
      if (done[b]) pick = o.eos_id;  // finished rows keep feeding <eos>
      else if (pick == o.eos_id) done[b] = true;
      else g.ids[b].push_back(pick);
      y.values[b] = pick;
    }
    s = st.state;
    if (std::all_of(done.begin(), done.end(), [](bool d) { return d; })) break;
  }
  if (!weights.empty()) g.attention = stack(weights, 0);
  return g;
}

// ---- AttentionDecoder -------------------------------------------------------------------------------

AttentionDecoder::AttentionDecoder(std::size_t vocab, std::size_t embed_dim, std::size_t hidden, std::size_t enc_hidden,
                                   Generator& gen, AttentionKind kind, CellType type, bool peek, DType dtype)
    : Decoder(vocab, embed_dim, hidden, enc_hidden, gen, type, peek, dtype) {
  switch (kind) {
    case AttentionKind::dot:
      if (enc_hidden != hidden)
        throw Error("AttentionDecoder: dot attention needs equal encoder and decoder sizes, got " + num(enc_hidden) +
                    " and " + num(hidden));
      attention = std::make_unique<DotAttention>();
      break;
    case AttentionKind::general: attention = std::make_unique<GeneralAttention>(enc_hidden, hidden, gen, dtype); break;
    case AttentionKind::additive:
      attention = std::make_unique<AdditiveAttention>(enc_hidden, hidden, hidden, gen, dtype);
      break;
    case AttentionKind::none: throw Error("AttentionDecoder: attention kind is none (use Decoder)");
  }
  register_module("attention", *attention);
}

Decoder::Result AttentionDecoder::forward(const Index& inputs, const EncoderOutput& enc) const {
  check_ids("AttentionDecoder", inputs, vocab_size());
  check_thought("AttentionDecoder", enc, inputs.shape[1]);
  if (!enc.states.defined()) throw Error("AttentionDecoder: the encoder states hs are undefined");
  Sequence seq = run(*cell, cell_inputs(embed(inputs), enc), enc.thought);
  // Attention after the cell does not feed back into it: every step's at once (Attention::over_steps).
  AttentionOutput a = attention->over_steps(enc.states, permute(seq.outputs, {1, 0, 2}), enc.mask);  // (B, T, .)
  Tensor feats = concat({permute(a.context, {1, 0, 2}), seq.outputs}, 2);  // (T, B, H_enc + H)
  return {out(with_peek(feats, enc)), permute(a.weights, {1, 0, 2})};
}

Decoder::Step AttentionDecoder::step(const Index& y, const State& s, const EncoderOutput& enc) const {
  check_ids("AttentionDecoder::step", y, vocab_size(), 1);
  check_thought("AttentionDecoder::step", enc, y.shape[0]);
  if (!enc.states.defined()) throw Error("AttentionDecoder::step: the encoder states hs are undefined");
  State next = cell->step(cell_inputs(embed(y), enc), s);
  AttentionOutput a = (*attention)(enc.states, next.h, enc.mask);
  Tensor logits = out(with_peek(concat({a.context, next.h}, 1), enc));
  return {logits, next, a.weights};
}

// ---- Seq2Seq ----------------------------------------------------------------------------------------

namespace {
std::unique_ptr<Decoder> make_decoder(const Seq2SeqConfig& c, Generator& gen, DType dtype) {
  if (c.attention == AttentionKind::none)
    return std::make_unique<Decoder>(c.tgt_vocab, c.embed, c.hidden, gen, c.cell, c.peeky, dtype);
  return std::make_unique<AttentionDecoder>(c.tgt_vocab, c.embed, c.hidden, c.hidden, gen, c.attention, c.cell, c.peeky,
                                            dtype);
}
}  // namespace

Seq2Seq::Seq2Seq(const Seq2SeqConfig& c, Generator& gen, DType dtype)
    : config(c),
      encoder(c.src_vocab, c.embed, c.hidden, gen, c.cell, c.reverse_input, dtype),
      decoder(make_decoder(c, gen, dtype)) {
  if (c.src_vocab == 0 || c.tgt_vocab == 0 || c.embed == 0 || c.hidden == 0)
    throw Error("Seq2Seq: vocabularies, embed and hidden sizes must be positive");
  register_module("encoder", encoder);
  register_module("decoder", *decoder);
}

EncoderOutput Seq2Seq::encode(const Index& src, const Tensor& src_mask) const { return encoder(src, src_mask); }

Tensor Seq2Seq::loss(const Index& src, const Index& tgt, const Tensor& src_mask) const {
  if (tgt.shape.rank() == 2 && src.shape.rank() == 2 && tgt.shape[1] != src.shape[1])
    throw Error("Seq2Seq::loss: source ids " + src.shape.str() + " and target ids " + tgt.shape.str() +
                " have different batch sizes");
  return decoder->loss(tgt, encode(src, src_mask));
}

Generated Seq2Seq::generate(const Index& src, const GenerateOptions& options, const Tensor& src_mask, Generator* gen) const {
  NoGrad no_grad;
  return decoder->generate(encode(src, src_mask), options, gen);
}

}  // namespace tapegrad::nn
