// Attention over encoder states, composed from ops.
//
//   score_s = dot:      hs_s . hd                        (Luong "dot")
//             general:  hs_s W hd^T                      (Luong "general"; W is (H_enc, H_dec))
//             additive: va . tanh(hs_s Wa + hd Ua)       (Bahdanau; Wa (H_enc, A), Ua (H_dec, A), va (A))
//   a = softmax_s(score)          (masked positions get score -1e30 -> weight exactly 0)
//   context = sum_s a_s hs_s
// hs (B, S, H_enc) are the encoder's hidden states, hd (B, H_dec) the decoder's state; a is (B, S),
// context (B, H_enc). mask (B, S): nonzero = attend, 0 = padding; a row with no position left is an Error.
// over_steps: the T decoder states of a teacher-forced sequence at once, hd (B, T, H_dec) -> a (B, T, S),
// context (B, T, H_enc): the same numbers as T calls, with what does not depend on t (hs Wa, hs W) done
// once and a few large products instead of T small ones (AttentionDecoder::forward).
#pragma once

#include "tapegrad/nn/models/module.hpp"

namespace tapegrad::nn {

struct AttentionOutput {
  Tensor weights;  // a (B, S); over_steps: (B, T, S)
  Tensor context;  // (B, H_enc); over_steps: (B, T, H_enc)
};

class Attention : public Module {
 public:
  AttentionOutput operator()(const Tensor& hs, const Tensor& hd, const Tensor& mask = Tensor()) const;
  // hd (B, T, H_dec): every step at once (see top).
  AttentionOutput over_steps(const Tensor& hs, const Tensor& hd, const Tensor& mask = Tensor()) const;
  // The unnormalised scores (B, S), shapes already checked.
  virtual Tensor score(const Tensor& hs, const Tensor& hd) const = 0;
  // The same for hd (B, T, H_dec): scores (B, T, S). By default T calls of score, stacked.
  virtual Tensor score_steps(const Tensor& hs, const Tensor& hd) const;
  virtual const char* name() const = 0;

 protected:
  virtual void check_sizes(std::size_t h_enc, std::size_t h_dec) const = 0;
};

class DotAttention : public Attention {
 public:
  Tensor score(const Tensor& hs, const Tensor& hd) const override;
  Tensor score_steps(const Tensor& hs, const Tensor& hd) const override;
  const char* name() const override { return "DotAttention"; }

 protected:
  void check_sizes(std::size_t h_enc, std::size_t h_dec) const override;
};

class GeneralAttention : public Attention {
 public:
  GeneralAttention(std::size_t h_enc, std::size_t h_dec, Generator& gen, DType dtype = default_dtype());
  explicit GeneralAttention(Tensor W);  // adopts W (H_enc, H_dec) as the parameter (shares its buffer)
  Tensor score(const Tensor& hs, const Tensor& hd) const override;
  Tensor score_steps(const Tensor& hs, const Tensor& hd) const override;
  const char* name() const override { return "GeneralAttention"; }
  Tensor W;

 protected:
  void check_sizes(std::size_t h_enc, std::size_t h_dec) const override;
};

class AdditiveAttention : public Attention {
 public:
  AdditiveAttention(std::size_t h_enc, std::size_t h_dec, std::size_t attn, Generator& gen, DType dtype = default_dtype());
  // Adopts the given tensors as the parameters (shares their buffers): Wa (H_enc, A), Ua (H_dec, A), va (A).
  AdditiveAttention(Tensor Wa, Tensor Ua, Tensor va);
  Tensor score(const Tensor& hs, const Tensor& hd) const override;
  Tensor score_steps(const Tensor& hs, const Tensor& hd) const override;
  const char* name() const override { return "AdditiveAttention"; }
  Tensor Wa, Ua, va;

 protected:
  void check_sizes(std::size_t h_enc, std::size_t h_dec) const override;
};

}  // namespace tapegrad::nn
