#include "tapegrad/nn/models/attention.hpp"

#include <cmath>

#include "tapegrad/nn/models/init.hpp"
#include "tapegrad/ops/activation.hpp"
#include "tapegrad/ops/elementwise.hpp"
#include "tapegrad/ops/linalg.hpp"
#include "tapegrad/ops/shape.hpp"

namespace tapegrad::nn {

namespace {
std::string sz(std::size_t n) { return std::to_string(n); }
}  // namespace

AttentionOutput Attention::operator()(const Tensor& hs, const Tensor& hd, const Tensor& mask) const {
  const std::string who = name();
  if (!hs.defined() || !hd.defined()) throw Error(who + ": encoder states hs or decoder state hd is undefined");
  if (hs.rank() != 3 || hd.rank() != 2)
    throw Error(who + ": expects hs (B, S, H_enc) and hd (B, H_dec), got hs " + hs.shape().str() + " and hd " +
                hd.shape().str());
  const std::size_t B = hs.size(0), S = hs.size(1), H = hs.size(2);
  if (hd.size(0) != B)
    throw Error(who + ": batch of hs " + hs.shape().str() + " differs from batch of hd " + hd.shape().str());
  if (B == 0 || S == 0) throw Error(who + ": empty batch or sequence, hs " + hs.shape().str());
  check_sizes(H, hd.size(1));

  Tensor e = score(hs, hd);  // (B, S)
  if (mask.defined()) {
    if (mask.shape() != Shape{B, S})
      throw Error(who + ": mask " + mask.shape().str() + " does not match (B, S) of hs " + hs.shape().str());
    if (mask.requires_grad()) throw Error(who + ": mask " + mask.shape().str() + " must be a constant");
    const auto m = mask.to_vector();
    for (std::size_t b = 0; b < B; ++b) {
      bool any = false;
      for (std::size_t s = 0; s < S && !any; ++s) any = m[b * S + s] != 0.0;
      if (!any)
        throw Error(who + ": row " + sz(b) + " of mask " + mask.shape().str() + " masks every position (nothing to attend to)");
    }
    // A large finite negative score, not -inf: exp underflows to exactly 0 and no inf - inf appears.
    const Tensor keep = mask.dtype() == e.dtype() ? mask : mask.to(e.dtype());
    e = where(keep, e, scalar(-1e30, e.dtype()));
  }
  Tensor a = softmax(e, -1);
  Tensor context = reshape(matmul(reshape(a, {B, 1, S}), hs), {B, H});  // sum_s a_s hs_s
  return {a, context};
}

// ---- dot ----
void DotAttention::check_sizes(std::size_t h_enc, std::size_t h_dec) const {
  if (h_enc != h_dec)
    throw Error("DotAttention: encoder size " + sz(h_enc) + " differs from decoder size " + sz(h_dec));
}

Tensor DotAttention::score(const Tensor& hs, const Tensor& hd) const {
  const std::size_t B = hs.size(0), S = hs.size(1), H = hs.size(2);
  return reshape(matmul(hs, reshape(hd, {B, H, 1})), {B, S});
}

// ---- general ----
GeneralAttention::GeneralAttention(std::size_t h_enc, std::size_t h_dec, Generator& gen, DType dtype) {
  W = register_parameter("W", init::glorot_uniform({h_enc, h_dec}, gen, dtype));
}

GeneralAttention::GeneralAttention(Tensor w) {
  if (!w.defined() || w.rank() != 2) throw Error("GeneralAttention: W must be (H_enc, H_dec), got " + shape_str(w));
  W = register_parameter("W", std::move(w));
}

void GeneralAttention::check_sizes(std::size_t h_enc, std::size_t h_dec) const {
  if (h_enc != W.size(0) || h_dec != W.size(1))
    throw Error("GeneralAttention: hs size " + sz(h_enc) + " and hd size " + sz(h_dec) + " do not fit W " + W.shape().str());
}

Tensor GeneralAttention::score(const Tensor& hs, const Tensor& hd) const {
  const std::size_t B = hs.size(0), S = hs.size(1), D = hd.size(1);
  return reshape(matmul(matmul(hs, W), reshape(hd, {B, D, 1})), {B, S});
}

// ---- additive ----
AdditiveAttention::AdditiveAttention(std::size_t h_enc, std::size_t h_dec, std::size_t attn, Generator& gen, DType dtype) {
  Wa = register_parameter("Wa", init::glorot_uniform({h_enc, attn}, gen, dtype));
  Ua = register_parameter("Ua", init::glorot_uniform({h_dec, attn}, gen, dtype));
  va = register_parameter("va", init::normal({attn}, 1.0 / std::sqrt(double(attn)), gen, dtype));
}

AdditiveAttention::AdditiveAttention(Tensor wa, Tensor ua, Tensor v) {
  if (!wa.defined() || !ua.defined() || !v.defined() || wa.rank() != 2 || ua.rank() != 2 || v.rank() != 1 ||
      wa.size(1) != ua.size(1) || v.size(0) != wa.size(1))
    throw Error("AdditiveAttention: expects Wa (H_enc, A), Ua (H_dec, A), va (A), got " +
                shape_str(wa) + ", " + shape_str(ua) +
                ", " + shape_str(v));
  Wa = register_parameter("Wa", std::move(wa));
  Ua = register_parameter("Ua", std::move(ua));
  va = register_parameter("va", std::move(v));
}

void AdditiveAttention::check_sizes(std::size_t h_enc, std::size_t h_dec) const {
  if (h_enc != Wa.size(0) || h_dec != Ua.size(0))
    throw Error("AdditiveAttention: hs size " + sz(h_enc) + " and hd size " + sz(h_dec) + " do not fit Wa " +
                Wa.shape().str() + " and Ua " + Ua.shape().str());
}

Tensor AdditiveAttention::score(const Tensor& hs, const Tensor& hd) const {
  const std::size_t B = hs.size(0), S = hs.size(1), A = Wa.size(1);
  Tensor pre = matmul(hs, Wa) + reshape(matmul(hd, Ua), {B, 1, A});  // (B, S, A)
  return reshape(matmul(tanh(pre), reshape(va, {A, 1})), {B, S});
}

}  // namespace tapegrad::nn
