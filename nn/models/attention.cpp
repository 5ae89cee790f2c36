#include "tapegrad/nn/models/attention.hpp"

#include <cmath>
#include <string>
#include <vector>

#include "tapegrad/nn/models/init.hpp"
#include "tapegrad/ops/activation.hpp"
#include "tapegrad/ops/elementwise.hpp"
#include "tapegrad/ops/linalg.hpp"
#include "tapegrad/ops/shape.hpp"

namespace tapegrad::nn {

namespace {
std::string sz(std::size_t n) { return std::to_string(n); }
}  // namespace

namespace {
// The checks both forms share; hd is (B, H_dec) (rank 2) or (B, T, H_dec) (rank 3).
void check_inputs(const std::string& who, const Tensor& hs, const Tensor& hd, std::size_t hd_rank) {
  if (!hs.defined() || !hd.defined()) throw Error(who + ": encoder states hs or decoder state hd is undefined");
  if (hs.rank() != 3 || hd.rank() != hd_rank)
    throw Error(who + ": expects hs (B, S, H_enc) and hd " + (hd_rank == 2 ? "(B, H_dec)" : "(B, T, H_dec)") + ", got hs " +
                hs.shape().str() + " and hd " + hd.shape().str());
  if (hd.size(0) != hs.size(0))
    throw Error(who + ": batch of hs " + hs.shape().str() + " differs from batch of hd " + hd.shape().str());
  if (hs.size(0) == 0 || hs.size(1) == 0) throw Error(who + ": empty batch or sequence, hs " + hs.shape().str());
}

// The mask (B, S) as the scores' dtype, checked; undefined without one.
Tensor checked_mask(const std::string& who, const Tensor& hs, const Tensor& mask, DType dtype) {
  if (!mask.defined()) return mask;
  const std::size_t B = hs.size(0), S = hs.size(1);
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
  return mask.dtype() == dtype ? mask : mask.to(dtype);
}
}  // namespace

AttentionOutput Attention::operator()(const Tensor& hs, const Tensor& hd, const Tensor& mask) const {
  const std::string who = name();
  check_inputs(who, hs, hd, 2);
  const std::size_t B = hs.size(0), S = hs.size(1), H = hs.size(2);
  check_sizes(H, hd.size(1));

  Tensor e = score(hs, hd);  // (B, S)
  // A large finite negative score, not -inf: exp underflows to exactly 0 and no inf - inf appears.
  if (const Tensor keep = checked_mask(who, hs, mask, e.dtype()); keep.defined()) e = where(keep, e, scalar(-1e30, e.dtype()));
  Tensor a = softmax(e, -1);
  Tensor context = reshape(matmul(reshape(a, {B, 1, S}), hs), {B, H});  // sum_s a_s hs_s
  return {a, context};
}

AttentionOutput Attention::over_steps(const Tensor& hs, const Tensor& hd, const Tensor& mask) const {
  const std::string who = std::string(name()) + "::over_steps";
  check_inputs(who, hs, hd, 3);
  const std::size_t B = hs.size(0), S = hs.size(1);
  check_sizes(hs.size(2), hd.size(2));
  if (hd.size(1) == 0) throw Error(who + ": no decoder step, hd " + hd.shape().str());

  Tensor e = score_steps(hs, hd);  // (B, T, S)
  if (const Tensor keep = checked_mask(who, hs, mask, e.dtype()); keep.defined())
    e = where(reshape(keep, {B, 1, S}), e, scalar(-1e30, e.dtype()));
  Tensor a = softmax(e, -1);
  return {a, matmul(a, hs)};  // context_t = sum_s a_t,s hs_s: (B, T, S) x (B, S, H_enc)
}

Tensor Attention::score_steps(const Tensor& hs, const Tensor& hd) const {
  const std::size_t B = hd.size(0), T = hd.size(1), D = hd.size(2), S = hs.size(1);
  std::vector<Tensor> scores;
  for (std::size_t t = 0; t < T; ++t) scores.push_back(score(hs, reshape(slice(hd, 1, t, t + 1), {B, D})));
  return reshape(stack(scores, 1), {B, T, S});
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

Tensor DotAttention::score_steps(const Tensor& hs, const Tensor& hd) const {
  return matmul(hd, permute(hs, {0, 2, 1}));  // (B, T, H) x (B, H, S)
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

Tensor GeneralAttention::score_steps(const Tensor& hs, const Tensor& hd) const {
  return matmul(hd, permute(matmul(hs, W), {0, 2, 1}));  // hd_t . (hs_s W): (B, T, D) x (B, D, S)
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

Tensor AdditiveAttention::score_steps(const Tensor& hs, const Tensor& hd) const {
  const std::size_t B = hs.size(0), S = hs.size(1), T = hd.size(1), A = Wa.size(1);
  // hs Wa and hd Ua once for every step; then a step at a time: pre_t (B, S, A) = hs Wa + (hd_t Ua), so the
  // largest buffer is (B, S, A), not (B, T, S, A) (at B 128, T 11, S 28, A 256 that would be 40 MB per
  // tensor, above malloc's mmap threshold: fresh pages, faulted in, at every training step).
  const Tensor keys = matmul(hs, Wa), queries = matmul(hd, Ua), v = reshape(va, {A, 1});
  std::vector<Tensor> scores;
  for (std::size_t t = 0; t < T; ++t)
    scores.push_back(reshape(matmul(tanh(keys + slice(queries, 1, t, t + 1)), v), {B, 1, S}));
  return concat(scores, 1);
}

}  // namespace tapegrad::nn
