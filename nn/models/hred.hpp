// Hierarchical encoder-decoder for dialogue (HRED, Serban et al. 2016) and its latent-variable version
// (VHRED, Serban et al. 2017), composed from nn/models/seq2seq's Encoder and Decoder, nn/models/rnn cells and nn/models/vae's
// Gaussian pieces.
//
// A dialogue batch is a list of N context utterances, each a PaddedBatch (T_n, B) with its mask (every
// dialogue in the batch has the same N), and a response <bos> y_1 .. <eos> (T, B).
//
//   HRED:   u_n = Encoder(utterance_n).h                     utterance vector (the utterance's thought vector)
//           c_n = context_cell(u_n, c_(n-1)),  c = c_N       context vector, c_0 = 0
//           s_0 = tanh(c W_b + b_b)  (h of the decoder's initial state; c = 0 for LSTM)
//           decoder as in seq2seq from s_0; with context_input, s_0's h is also concatenated to every
//           decoder input and to the output layer (peeky).
//           loss = mean over non-<pad> response tokens of -log p(y_t | y_<t, c)
//   VHRED:  prior      p(z | c)    = N(mu_p, diag(exp(logvar_p))),  h = tanh(c W + b), mu_p = h W_mu + b, logvar_p likewise
//           posterior  q(z | c, r) = N(mu_q, diag(exp(logvar_q))),  the same on [c, r], r = Encoder(response).h
//           z = mu_q + exp(logvar_q / 2) * eps   (training; eps ~ N(0, I) a constant);  z from the prior when generating
//           s_0 = tanh([c, z] W_b + b_b)
//           -ELBO = recon + kl_weight * KL(q || p),  recon = sum of response token NLLs / B,  KL per dialogue / B
#pragma once

#include <memory>
#include <vector>

#include "tapegrad/nn/models/seq2seq.hpp"

namespace tapegrad::nn {

// KL annealing: the weight of the KL term at `step`, rising linearly from `start` to `end` over
// warmup_steps steps and staying at `end` afterwards (warmup_steps = 0: always `end`).
double kl_anneal_linear(std::size_t step, std::size_t warmup_steps, double start = 0.0, double end = 1.0);

// Word drop (Bowman et al. 2016): each token of ids that is not <pad>, <bos> or <eos> is replaced by
// unk_id with probability p. Off the tape: it returns new ids. p in [0, 1].
Index word_drop(const Index& ids, double p, Generator& gen, std::int64_t unk_id = Tokenizer::unk_id);

struct HREDConfig {
  std::size_t vocab = 0, embed = 16, utterance_hidden = 32, context_hidden = 32, decoder_hidden = 32;
  CellType cell = CellType::gru;
  bool context_input = false;  // also feed the conditioning vector to every decoder step (peeky)
  std::size_t latent = 8;      // VHRED only
};

class HRED : public Module {
 public:
  HRED(const HREDConfig& config, Generator& gen, DType dtype = default_dtype());

  // The context vector c (B, context_hidden) of N >= 1 utterances.
  Tensor context(const std::vector<PaddedBatch>& utterances) const;
  // The decoder's conditioning from a (B, F) vector: c for HRED, [c, z] for VHRED.
  EncoderOutput condition(const Tensor& features) const;
  // Mean cross-entropy of the response (T, B) given the context (teacher forcing).
  // (HRED only: a VHRED is trained through elbo().)
  Tensor loss(const std::vector<PaddedBatch>& utterances, const Index& response) const;
  // Greedy or sampled responses (Decoder::generate), off the tape.
  virtual Generated generate(const std::vector<PaddedBatch>& utterances, const GenerateOptions& options = {},
                             Generator* gen = nullptr) const;

  HREDConfig config;
  Encoder encoder;                              // utterance encoder (also encodes responses in VHRED)
  std::unique_ptr<RecurrentCell> context_cell;  // over utterance vectors
  Linear bridge;                                // conditioning -> the decoder's initial h
  Decoder decoder;

 protected:
  HRED(const HREDConfig& config, std::size_t extra_condition, Generator& gen, DType dtype);
  std::size_t batch_of(const std::vector<PaddedBatch>& utterances, const char* who) const;
};

struct VHREDElboOptions {
  double kl_weight = 1.0;  // see kl_anneal_linear
  double word_drop = 0.0;  // probability of replacing a decoder input token by <unk> (needs a Generator)
};

class VHRED : public HRED {
 public:
  VHRED(const HREDConfig& config, Generator& gen, DType dtype = default_dtype());

  struct Gaussian {
    Tensor mu, logvar;  // (B, latent)
  };
  Gaussian prior(const Tensor& context) const;
  Gaussian posterior(const Tensor& context, const Tensor& response_vector) const;

  using ElboOptions = VHREDElboOptions;
  struct Elbo {
    Tensor loss;   // recon + kl_weight * kl: the negative ELBO per dialogue, batch mean
    Tensor recon;  // summed response NLL per dialogue, batch mean
    Tensor kl;     // KL(q || p) per dialogue, batch mean
    Gaussian q, p;
    Tensor z;
    std::size_t tokens = 0;  // response tokens counted
  };
  // eps (B, latent): the reparameterisation noise, a constant. response: <bos> .. <eos> with its mask.
  Elbo elbo(const std::vector<PaddedBatch>& utterances, const PaddedBatch& response, const Tensor& eps,
            const ElboOptions& options = {}, Generator* gen = nullptr) const;
  // Draws z from the prior (noise from gen; z = mu_p without a Generator), then decodes.
  Generated generate(const std::vector<PaddedBatch>& utterances, const GenerateOptions& options = {},
                     Generator* gen = nullptr) const override;

  Linear prior_hidden, prior_mu, prior_logvar;
  Linear post_hidden, post_mu, post_logvar;
};

}  // namespace tapegrad::nn
