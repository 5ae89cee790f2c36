// Variational autoencoder pieces, composed from ops: the reparameterisation trick, KL divergences of
// diagonal Gaussians (also used by VHRED), and a Bernoulli VAE with MLP encoder and decoder.
#pragma once

#include "tapegrad/nn/models/linear.hpp"

namespace tapegrad::nn {

// z = mu + exp(logvar / 2) * eps: the noise eps ~ N(0, I) enters as a constant, so dz/dmu and dz/dlogvar
// flow (the reparameterisation trick). mu, logvar and eps have one shape.
Tensor reparameterize(const Tensor& mu, const Tensor& logvar, const Tensor& eps);
// The same with eps drawn from gen (an owned constant of mu's shape and dtype).
Tensor reparameterize(const Tensor& mu, const Tensor& logvar, Generator& gen);

// KL(N(mu, diag(exp(logvar))) || N(0, I)) = -1/2 sum(1 + logvar - mu^2 - exp(logvar)) / B,
// summed over all elements and divided by the batch B = mu.size(0) (mu, logvar (B, ...)).
Tensor kl_standard_normal(const Tensor& mu, const Tensor& logvar);
// KL(q || p) for q = N(mu_q, diag(exp(logvar_q))), p = N(mu_p, diag(exp(logvar_p))):
//   1/2 sum(logvar_p - logvar_q + (exp(logvar_q) + (mu_q - mu_p)^2) / exp(logvar_p) - 1) / B.
// With mu_p = 0, logvar_p = 0 it is kl_standard_normal.
Tensor kl_diag_gaussians(const Tensor& mu_q, const Tensor& logvar_q, const Tensor& mu_p, const Tensor& logvar_p);

// Bernoulli VAE on x (B, D) with values in [0, 1]:
//   encoder  h = tanh(x W_h + b_h);  mu = h W_mu + b_mu;  logvar = h W_lv + b_lv     q(z|x)
//   z = mu + exp(logvar / 2) * eps
//   decoder  logits = tanh(z W_d + b_d) W_o + b_o;  p(x|z) = Bernoulli(sigmoid(logits))
//   loss = -ELBO = recon + kl_weight * KL,  recon = sum_d BCE(logits, x) / B,  KL = kl_standard_normal
// (tanh rather than relu keeps the model smooth for gradient checks).
class VAE : public Module {
 public:
  VAE(std::size_t input, std::size_t hidden, std::size_t latent, Generator& gen, DType dtype = default_dtype());

  struct Posterior {
    Tensor mu, logvar;  // (B, latent)
  };
  struct Loss {
    Tensor loss;    // recon + kl_weight * kl (the negative ELBO, per image)
    Tensor recon;   // summed BCE per image, batch mean
    Tensor kl;      // KL to N(0, I), batch mean
    Tensor z, logits;
  };

  Posterior encode(const Tensor& x) const;
  Tensor decode(const Tensor& z) const;  // logits (B, input)
  Loss loss(const Tensor& x, const Tensor& eps, double kl_weight = 1.0) const;
  Loss loss(const Tensor& x, Generator& gen, double kl_weight = 1.0) const;

  std::size_t input_size() const { return enc_hidden.W.size(0); }
  std::size_t latent_size() const { return enc_mu.W.size(1); }

  Linear enc_hidden, enc_mu, enc_logvar, dec_hidden, dec_out;
};

}  // namespace tapegrad::nn
