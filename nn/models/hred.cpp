#include "tapegrad/nn/models/hred.hpp"

#include <algorithm>
#include <cmath>

#include "tapegrad/autograd/tape.hpp"
#include "tapegrad/nn/models/vae.hpp"
#include "tapegrad/ops/activation.hpp"
#include "tapegrad/ops/elementwise.hpp"
#include "tapegrad/ops/shape.hpp"

namespace tapegrad::nn {

namespace {
std::string num(std::size_t n) { return std::to_string(n); }
}  // namespace

double kl_anneal_linear(std::size_t step, std::size_t warmup_steps, double start, double end) {
  if (warmup_steps == 0 || step >= warmup_steps) return end;
  return start + (end - start) * static_cast<double>(step) / static_cast<double>(warmup_steps);
}

Index word_drop(const Index& ids, double p, Generator& gen, std::int64_t unk_id) {
  if (!(p >= 0.0 && p <= 1.0)) throw Error("word_drop: probability " + std::to_string(p) + " outside [0, 1] for ids " + ids.shape.str());
  Index out = ids;
  for (auto& id : out.values) {
    if (id == Tokenizer::pad_id || id == Tokenizer::bos_id || id == Tokenizer::eos_id) continue;
    if (gen.uniform() < p) id = unk_id;
  }
  return out;
}

// ---- HRED -------------------------------------------------------------------------------------------

HRED::HRED(const HREDConfig& c, Generator& gen, DType dtype) : HRED(c, 0, gen, dtype) {}

HRED::HRED(const HREDConfig& c, std::size_t extra, Generator& gen, DType dtype)
    : config(c),
      encoder(c.vocab, c.embed, c.utterance_hidden, gen, c.cell, false, dtype),
      context_cell(make_cell(c.cell, c.utterance_hidden, c.context_hidden, gen, dtype)),
      bridge(c.context_hidden + extra, c.decoder_hidden, gen, true, dtype),
      decoder(c.vocab, c.embed, c.decoder_hidden, gen, c.cell, c.context_input, dtype) {
  register_module("encoder", encoder);
  register_module("context_cell", *context_cell);
  register_module("bridge", bridge);
  register_module("decoder", decoder);
}

std::size_t HRED::batch_of(const std::vector<PaddedBatch>& utterances, const char* who) const {
  if (utterances.empty()) throw Error(std::string(who) + ": no context utterances (need N >= 1)");
  const std::size_t B = utterances[0].ids.shape.rank() == 2 ? utterances[0].ids.shape[1] : 0;
  for (std::size_t n = 0; n < utterances.size(); ++n)
    if (utterances[n].ids.shape.rank() != 2 || utterances[n].ids.shape[1] != B)
      throw Error(std::string(who) + ": utterance " + num(n) + " has ids " + utterances[n].ids.shape.str() +
                  ", utterance 0 has " + utterances[0].ids.shape.str() + " (every utterance needs the same batch B)");
  return B;
}

Tensor HRED::context(const std::vector<PaddedBatch>& utterances) const {
  batch_of(utterances, "HRED::context");
  std::vector<Tensor> u;
  for (const auto& utt : utterances) u.push_back(encoder(utt.ids, utt.mask).thought.h);  // (B, H_u)
  return run(*context_cell, stack(u, 0)).last.h;  // (B, H_c)
}

EncoderOutput HRED::condition(const Tensor& features) const {
  if (!features.defined() || features.rank() != 2 || features.size(1) != bridge.W.size(0))
    throw Error("HRED::condition: features must be (B, " + num(bridge.W.size(0)) + ") (context" +
                (bridge.W.size(0) > config.context_hidden ? std::string(" and latent z") : std::string("")) + "), got " +
                shape_str(features));
  EncoderOutput out;
  out.thought.h = tanh(bridge(features));
  if (decoder.cell->has_cell_state()) out.thought.c = zeros(out.thought.h.shape(), out.thought.h.dtype());
  return out;
}

Tensor HRED::loss(const std::vector<PaddedBatch>& utterances, const Index& response) const {
  const std::size_t B = batch_of(utterances, "HRED::loss");
  if (response.shape.rank() != 2 || response.shape[1] != B)
    throw Error("HRED::loss: response ids " + response.shape.str() + " do not match the context's batch " + num(B));
  return decoder.loss(response, condition(context(utterances)));
}

Generated HRED::generate(const std::vector<PaddedBatch>& utterances, const GenerateOptions& options, Generator* gen) const {
  NoGrad no_grad;
  return decoder.generate(condition(context(utterances)), options, gen);
}

// ---- VHRED ------------------------------------------------------------------------------------------

VHRED::VHRED(const HREDConfig& c, Generator& gen, DType dtype)
    : HRED(c, c.latent, gen, dtype),
      prior_hidden(c.context_hidden, c.context_hidden, gen, true, dtype),
      prior_mu(c.context_hidden, c.latent, gen, true, dtype),
      prior_logvar(c.context_hidden, c.latent, gen, true, dtype),
      post_hidden(c.context_hidden + c.utterance_hidden, c.context_hidden, gen, true, dtype),
      post_mu(c.context_hidden, c.latent, gen, true, dtype),
      post_logvar(c.context_hidden, c.latent, gen, true, dtype) {
  if (c.latent == 0) throw Error("VHRED: latent size must be positive");
  register_module("prior_hidden", prior_hidden);
  register_module("prior_mu", prior_mu);
  register_module("prior_logvar", prior_logvar);
  register_module("post_hidden", post_hidden);
  register_module("post_mu", post_mu);
  register_module("post_logvar", post_logvar);
}

VHRED::Gaussian VHRED::prior(const Tensor& c) const {
  Tensor h = tanh(prior_hidden(c));
  return {prior_mu(h), prior_logvar(h)};
}

VHRED::Gaussian VHRED::posterior(const Tensor& c, const Tensor& r) const {
  if (!c.defined() || !r.defined() || c.rank() != 2 || r.rank() != 2 || c.size(0) != r.size(0))
    throw Error("VHRED::posterior: context " + shape_str(c) + " and response vector " + shape_str(r) +
                " must be (B, H_c) and (B, H_u)");
  Tensor h = tanh(post_hidden(concat({c, r}, 1)));
  return {post_mu(h), post_logvar(h)};
}

VHRED::Elbo VHRED::elbo(const std::vector<PaddedBatch>& utterances, const PaddedBatch& response, const Tensor& eps,
                        const ElboOptions& o, Generator* gen) const {
  const std::size_t B = batch_of(utterances, "VHRED::elbo");
  const Index& tgt = response.ids;
  if (tgt.shape.rank() != 2 || tgt.shape[1] != B || tgt.shape[0] < 2)
    throw Error("VHRED::elbo: response ids " + tgt.shape.str() + " must be (T, B) with T >= 2 and B = " + num(B));
  if (!eps.defined() || eps.shape() != Shape{B, config.latent})
    throw Error("VHRED::elbo: eps " + shape_str(eps) + " must be (B, latent) = " + Shape{B, config.latent}.str());
  if (o.word_drop > 0.0 && !gen) throw Error("VHRED::elbo: word drop " + std::to_string(o.word_drop) + " needs a Generator");

  Elbo e;
  const Tensor c = context(utterances);
  const Tensor r = encoder(tgt, response.mask).thought.h;  // the response vector
  e.p = prior(c);
  e.q = posterior(c, r);
  e.z = reparameterize(e.q.mu, e.q.logvar, eps);
  const EncoderOutput cond = condition(concat({c, e.z}, 1));

  const std::size_t T = tgt.shape[0];
  Index inputs(std::vector<std::int64_t>(tgt.values.begin(), tgt.values.end() - static_cast<std::ptrdiff_t>(B)),
               Shape{T - 1, B});
  Index targets(std::vector<std::int64_t>(tgt.values.begin() + static_cast<std::ptrdiff_t>(B), tgt.values.end()),
                Shape{T - 1, B});
  if (o.word_drop > 0.0) inputs = word_drop(inputs, o.word_drop, *gen);
  // The decoder's loss is a mean over tokens; tokens / B turns it into a sum per dialogue.
  const Tensor nll = decoder.loss(inputs, targets, cond, &e.tokens, Tokenizer::pad_id);
  e.recon = nll * (static_cast<double>(e.tokens) / static_cast<double>(B));
  e.kl = kl_diag_gaussians(e.q.mu, e.q.logvar, e.p.mu, e.p.logvar);
  e.loss = e.recon + e.kl * o.kl_weight;
  return e;
}

Generated VHRED::generate(const std::vector<PaddedBatch>& utterances, const GenerateOptions& options, Generator* gen) const {
  NoGrad no_grad;
  const Tensor c = context(utterances);
  const Gaussian p = prior(c);
  const Tensor z = gen ? reparameterize(p.mu, p.logvar, *gen) : p.mu;
  return decoder.generate(condition(concat({c, z}, 1)), options, gen);
}

}  // namespace tapegrad::nn
