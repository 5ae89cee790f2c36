#include "tapegrad/nn/models/vae.hpp"

#include "tapegrad/ops/activation.hpp"
#include "tapegrad/ops/elementwise.hpp"
#include "tapegrad/ops/loss.hpp"
#include "tapegrad/ops/reduce.hpp"

namespace tapegrad::nn {

namespace {

void same_shapes(const char* fn, std::initializer_list<std::pair<const char*, const Tensor*>> ts) {
  const Tensor* first = ts.begin()->second;
  std::string all;
  bool ok = true;
  for (auto& [n, t] : ts) {
    all += std::string(all.empty() ? "" : ", ") + n + " " + shape_str(*t);
    if (!t->defined() || !first->defined() || t->shape() != first->shape()) ok = false;
  }
  if (!ok) throw Error(std::string(fn) + ": shapes differ or are undefined: " + all);
  if (first->rank() < 1 || first->size(0) == 0) throw Error(std::string(fn) + ": needs a non-empty batch axis, got " + all);
}

double batch_of(const Tensor& t) { return static_cast<double>(t.size(0)); }
}  // namespace

Tensor reparameterize(const Tensor& mu, const Tensor& logvar, const Tensor& eps) {
  same_shapes("reparameterize", {{"mu", &mu}, {"logvar", &logvar}, {"eps", &eps}});
  return mu + exp(logvar * 0.5) * eps;
}

Tensor reparameterize(const Tensor& mu, const Tensor& logvar, Generator& gen) {
  same_shapes("reparameterize", {{"mu", &mu}, {"logvar", &logvar}});
  return reparameterize(mu, logvar, randn(mu.shape(), gen, 1.0, mu.dtype()));
}

Tensor kl_standard_normal(const Tensor& mu, const Tensor& logvar) {
  same_shapes("kl_standard_normal", {{"mu", &mu}, {"logvar", &logvar}});
  return sum(1.0 + logvar - mu * mu - exp(logvar)) * (-0.5 / batch_of(mu));
}

Tensor kl_diag_gaussians(const Tensor& mu_q, const Tensor& logvar_q, const Tensor& mu_p, const Tensor& logvar_p) {
  same_shapes("kl_diag_gaussians", {{"mu_q", &mu_q}, {"logvar_q", &logvar_q}, {"mu_p", &mu_p}, {"logvar_p", &logvar_p}});
  Tensor d = mu_q - mu_p;
  Tensor ratio = (exp(logvar_q) + d * d) * exp(-logvar_p);
  return sum(logvar_p - logvar_q + ratio - 1.0) * (0.5 / batch_of(mu_q));
}

VAE::VAE(std::size_t input, std::size_t hidden, std::size_t latent, Generator& gen, DType dtype)
    : enc_hidden(input, hidden, gen, true, dtype),
      enc_mu(hidden, latent, gen, true, dtype),
      enc_logvar(hidden, latent, gen, true, dtype),
      dec_hidden(latent, hidden, gen, true, dtype),
      dec_out(hidden, input, gen, true, dtype) {
  register_module("enc_hidden", enc_hidden);
  register_module("enc_mu", enc_mu);
  register_module("enc_logvar", enc_logvar);
  register_module("dec_hidden", dec_hidden);
  register_module("dec_out", dec_out);
}

VAE::Posterior VAE::encode(const Tensor& x) const {
  if (!x.defined() || x.rank() != 2 || x.size(1) != input_size() || x.size(0) == 0)
    throw Error("VAE::encode: x must be (B, " + std::to_string(input_size()) + ") with B > 0, got " + shape_str(x));
  Tensor h = tanh(enc_hidden(x));
  return {enc_mu(h), enc_logvar(h)};
}

Tensor VAE::decode(const Tensor& z) const {
  if (!z.defined() || z.rank() != 2 || z.size(1) != latent_size())
    throw Error("VAE::decode: z must be (B, " + std::to_string(latent_size()) + "), got " + shape_str(z));
  return dec_out(tanh(dec_hidden(z)));
}

VAE::Loss VAE::loss(const Tensor& x, const Tensor& eps, double kl_weight) const {
  Posterior q = encode(x);
  if (!eps.defined() || eps.shape() != q.mu.shape())
    throw Error("VAE::loss: eps " + shape_str(eps) + " must match the latent shape " + q.mu.shape().str());
  Loss out;
  out.z = reparameterize(q.mu, q.logvar, eps);
  out.logits = decode(out.z);
  // BCE with logits is a mean over B * D elements; times D it is the per-image sum, averaged over B.
  out.recon = binary_cross_entropy_with_logits(out.logits, x) * static_cast<double>(x.size(1));
  out.kl = kl_standard_normal(q.mu, q.logvar);
  out.loss = out.recon + out.kl * kl_weight;
  return out;
}

VAE::Loss VAE::loss(const Tensor& x, Generator& gen, double kl_weight) const {
  if (!x.defined() || x.rank() != 2)
    throw Error("VAE::loss: x must be (B, " + std::to_string(input_size()) + "), got " + shape_str(x));
  return loss(x, randn({x.size(0), latent_size()}, gen, 1.0, x.dtype()), kl_weight);
}

}  // namespace tapegrad::nn
