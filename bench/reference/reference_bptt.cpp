// Hand-derived BPTT for the simple RNN, the LSTM and the GRU (see the header for the equations and the
// two weight-gradient variants). Products over all time steps at once (the input projection, the output
// layer, dx) are one GEMM each over T*B rows; the recurrent products run per step, gemv at batch 1.
// Activations run through xsimd batches over each row (ops/simd.hpp), as the engine's recurrent kernels do.
#include "tapegrad/bench/reference/reference_bptt.hpp"

#include <algorithm>
#include <cmath>
#include <string>

#include "tapegrad/autograd/shape.hpp"
#include "tapegrad/ops/blas.hpp"
#include "tapegrad/ops/products.hpp"
#include "tapegrad/ops/simd.hpp"

namespace tapegrad::reference {

const char* weight_grads_name(WeightGrads w) { return w == WeightGrads::per_step ? "per_step" : "fused"; }

namespace {

using simd::for_lanes;
using simd::ld;
using simd::st;

// Every product goes through the engine's product kernels (ops/products.hpp), so the routing is the one the
// engine uses: for one row (batch 1) or a rank-1 update, xsimd loops on a small matrix (binary addition's
// 16x16, where a gemv or ger call costs several times its arithmetic) and gemv / ger above
// (blas::product); a GEMM otherwise. C (m,n) = beta C + op(A) op(B), row-major, beta 0 or 1.
template <class T>
void gemm(bool ta, bool tb, std::size_t m, std::size_t n, std::size_t k, const T* a, std::size_t lda, const T* b,
          std::size_t ldb, T beta, T* c, std::size_t ldc) {
  const bool packed = ldc == n && lda == (ta ? m : k) && ldb == (tb ? k : n) && (beta == T(0) || beta == T(1));
  if (packed && !ta && !tb) return kernels::product(m, k, n, a, b, c, beta);     // A (m,k) B (k,n)
  if (packed && !ta && tb) return kernels::product_bt(m, n, k, a, b, c, beta);   // A (m,k) B^T, B stored (n,k)
  if (packed && ta && !tb) return kernels::product_at(k, m, n, a, b, c, beta);   // A^T B, A stored (k,m)
  blas::product(ta, tb, m, n, k, a, lda, b, ldb, beta, c, ldc);
}

// p[r, :] = a(p[r, :] + bias) for `rows` rows of n: the bias and the activation in one pass (xsimd exp
// and tanh, as the engine's kernels).
template <class T> void bias_activate(Activation a, T* p, std::size_t rows, std::size_t n, const T* bias) {
  for (std::size_t r = 0; r < rows; ++r) {
    T* pr = p + r * n;
    for_lanes<T>(n, [&](std::size_t j, auto x) {
      using X = decltype(x);
      st(pr + j, simd::activate(a, ld<X>(pr + j) + ld<X>(bias + j)));
    });
  }
}

// d[i] *= a'(u_i), with a'(u) written through the output y = a(u) (ops/simd.hpp, as the engine's kernels).
template <class T> void times_derivative(Activation a, T* d, const T* y, std::size_t n) {
  simd::times_derivative(a, d, y, d, n);
}

// out (n) += sum over the rows of m (rows, n).
template <class T> void add_column_sums(const T* __restrict m, std::size_t rows, std::size_t n, T* __restrict out) {
  for (std::size_t r = 0; r < rows; ++r, m += n)
    for (std::size_t j = 0; j < n; ++j) out[j] += m[j];
}

// The weight gradients of x W_x + h W_h: dW_x (+)= x^T dx and dW_h (+)= h^T dh over `rows` rows: one step's
// B rows inside the sweep (beta 1, the per-step variant), or all T*B rows after it (beta 0, "fused W").
template <class T>
void weight_grads(std::size_t rows, std::size_t I, std::size_t H, std::size_t G, const T* x, const T* h, const T* dx,
                  const T* dh, T beta, T* dW_x, T* dW_h) {
  gemm(true, false, I, G, rows, x, I, dx, G, beta, dW_x, G);
  gemm(true, false, H, G, rows, h, H, dh, G, beta, dW_h, G);
}

// db = the column sums of the pre-activation gradients da over all rows; dx = da W_x^T.
template <class T>
void bias_and_input_grads(std::size_t rows, std::size_t I, std::size_t G, const T* da, const T* W_x, T* db, T* dx) {
  add_column_sums(da, rows, G, db);
  gemm(false, true, rows, I, G, da, G, W_x, G, T(0), dx, I);
}

template <class T> void zero(std::vector<T>& v, std::size_t n) { v.assign(n, T(0)); }

void check_sizes(const char* where, std::size_t steps, std::size_t batch) {
  if (steps == 0 || batch == 0)
    throw Error(std::string(where) + ": steps " + std::to_string(steps) + " and batch " + std::to_string(batch) +
                " must both be positive (x (T, B, I) = (" + std::to_string(steps) + ", " + std::to_string(batch) +
                ", ...))");
}

void check_step(const char* where, bool saved, std::size_t t, std::size_t steps) {
  if (!saved || t > steps)
    throw Error(std::string(where) + ": step " + std::to_string(t) + " outside [0, " + std::to_string(steps) + "]" +
                (saved ? "" : " (no forward yet)"));
}

}  // namespace

// ---------------------------------------------------------------------------------------------------
// ElmanBPTT

template <class T>
ElmanBPTT<T>::ElmanBPTT(std::size_t input, std::size_t hidden, std::size_t output, Activation f, Activation g,
                        WeightGrads w)
    : I_(input), H_(hidden), O_(output), f_(f), g_(g), w_(w) {
  if (input == 0 || hidden == 0 || output == 0)
    throw Error("ElmanBPTT: sizes (input " + std::to_string(input) + ", hidden " + std::to_string(hidden) + ", output " +
                std::to_string(output) + ") must be positive");
}

template <class T> const T* ElmanBPTT<T>::z(std::size_t t) const {
  check_step("ElmanBPTT::z", saved_, t, steps_);
  return z_.data() + t * batch_ * H_;
}

template <class T>
const std::vector<T>& ElmanBPTT<T>::forward(const ElmanParams<T>& p, const T* x, const T* z0, std::size_t steps,
                                            std::size_t batch) {
  check_sizes("ElmanBPTT::forward", steps, batch);
  if (!x || !p.W_in || !p.W || !p.b || !p.W_out || !p.c)
    throw Error("ElmanBPTT::forward: x and every parameter (W_in, W, b, W_out, c) must be given");
  p_ = p;
  x_ = x;
  steps_ = steps;
  batch_ = batch;
  const std::size_t BH = batch * H_, TB = steps * batch;
  z_.resize((steps + 1) * BH);
  y_.resize(TB * O_);
  if (z0) std::copy(z0, z0 + BH, z_.begin());
  else std::fill(z_.begin(), z_.begin() + BH, T(0));
  T* zs = z_.data();
  // x_t W_in for every t at once, then per step: + z_(t-1) W, and z_t = f(. + b) in one pass.
  gemm(false, false, TB, H_, I_, x, I_, p.W_in, H_, T(0), zs + BH, H_);
  for (std::size_t t = 0; t < steps; ++t) {
    T* zt = zs + (t + 1) * BH;
    gemm(false, false, batch, H_, H_, zs + t * BH, H_, p.W, H_, T(1), zt, H_);
    bias_activate(f_, zt, batch, H_, p.b);
  }
  // y_t = g(z_t W_out + c), all t at once.
  gemm(false, false, TB, O_, H_, zs + BH, H_, p.W_out, O_, T(0), y_.data(), O_);
  bias_activate(g_, y_.data(), TB, O_, p.c);
  saved_ = true;
  return y_;
}

template <class T> T ElmanBPTT<T>::half_sum_loss(const T* d) const {
  if (!saved_) throw Error("ElmanBPTT::half_sum_loss: call forward first");
  T e = 0;
  for (std::size_t i = 0, n = steps_ * batch_ * O_; i < n; ++i) e += (d[i] - y_[i]) * (d[i] - y_[i]);
  return e / T(2);
}

template <class T> const ElmanGrads<T>& ElmanBPTT<T>::backward_half_sum(const T* d) {
  if (!saved_) throw Error("ElmanBPTT::backward_half_sum: call forward first");
  if (!d) throw Error("ElmanBPTT::backward_half_sum: no target d (T, B, O)");
  const std::size_t n = steps_ * batch_ * O_;
  dout_.resize(n);
  for (std::size_t i = 0; i < n; ++i) dout_[i] = y_[i] - d[i];  // dE/dy = -(d - y)
  return backward(dout_.data());
}

template <class T> const ElmanGrads<T>& ElmanBPTT<T>::backward(const T* dy, const T* dz) {
  if (!saved_) throw Error("ElmanBPTT::backward: call forward first");
  if (!dy) throw Error("ElmanBPTT::backward: no upstream gradient dy (T, B, O)");
  const std::size_t B = batch_, BH = B * H_, TB = steps_ * B;
  dout_.resize(TB * O_);
  if (dy != dout_.data()) std::copy(dy, dy + TB * O_, dout_.begin());
  delta_.resize(TB * H_);
  auto& gr = grads_;
  const bool per_step = w_ == WeightGrads::per_step;
  if (per_step) {  // accumulated step by step
    zero(gr.W_in, I_ * H_);
    zero(gr.W, H_ * H_);
  } else {
    gr.W_in.resize(I_ * H_);
    gr.W.resize(H_ * H_);
  }
  zero(gr.b, H_);
  gr.W_out.resize(H_ * O_);
  zero(gr.c, O_);
  gr.x.resize(TB * I_);
  gr.z0.resize(BH);
  const T* zs = z_.data();
  T* dl = delta_.data();

  // delta_out_t = dE/dy_t * g'(v_t); dW_out = sum_t z_t^T delta_out_t; dc = column sums.
  times_derivative(g_, dout_.data(), y_.data(), TB * O_);
  gemm(true, false, H_, O_, TB, zs + BH, H_, dout_.data(), O_, T(0), gr.W_out.data(), O_);
  add_column_sums(dout_.data(), TB, O_, gr.c.data());
  // delta_t = (delta_out_t W_out^T + delta_(t+1) W^T) * f'(u_t): the output term for all t at once,
  // then the recurrent term backwards in time.
  gemm(false, true, TB, H_, O_, dout_.data(), O_, p_.W_out, O_, T(0), dl, H_);
  for (std::size_t t = steps_; t-- > 0;) {
    T* dt = dl + t * BH;
    if (dz)
      for (std::size_t k = 0; k < BH; ++k) dt[k] += dz[t * BH + k];
    if (t + 1 < steps_) gemm(false, true, B, H_, H_, dt + BH, H_, p_.W, H_, T(1), dt, H_);
    times_derivative(f_, dt, zs + (t + 1) * BH, BH);
    if (per_step) weight_grads(B, I_, H_, H_, x_ + t * B * I_, zs + t * BH, dt, dt, T(1), gr.W_in.data(), gr.W.data());
  }
  // Weight gradients summed over time: one GEMM each over the T*B rows (z_0 .. z_(T-1)).
  if (!per_step) weight_grads(TB, I_, H_, H_, x_, zs, dl, dl, T(0), gr.W_in.data(), gr.W.data());
  bias_and_input_grads(TB, I_, H_, dl, p_.W_in, gr.b.data(), gr.x.data());
  gemm(false, true, B, H_, H_, dl, H_, p_.W, H_, T(0), gr.z0.data(), H_);
  return gr;
}

// ---------------------------------------------------------------------------------------------------
// LSTMBPTT

template <class T>
LSTMBPTT<T>::LSTMBPTT(std::size_t input, std::size_t hidden, WeightGrads w) : I_(input), H_(hidden), w_(w) {
  if (input == 0 || hidden == 0)
    throw Error("LSTMBPTT: sizes (input " + std::to_string(input) + ", hidden " + std::to_string(hidden) +
                ") must be positive");
}

template <class T> const T* LSTMBPTT<T>::h(std::size_t t) const {
  check_step("LSTMBPTT::h", saved_, t, steps_);
  return h_.data() + t * batch_ * H_;
}

template <class T> const T* LSTMBPTT<T>::c(std::size_t t) const {
  check_step("LSTMBPTT::c", saved_, t, steps_);
  return c_.data() + t * batch_ * H_;
}

template <class T>
const T* LSTMBPTT<T>::forward(const LSTMParams<T>& p, const T* x, const T* h0, const T* c0, std::size_t steps,
                              std::size_t batch) {
  check_sizes("LSTMBPTT::forward", steps, batch);
  if (!x || !p.W_x || !p.W_h || !p.b) throw Error("LSTMBPTT::forward: x and every parameter (W_x, W_h, b) must be given");
  p_ = p;
  x_ = x;
  steps_ = steps;
  batch_ = batch;
  const std::size_t H = H_, G = 4 * H, BH = batch * H, TB = steps * batch;
  gates_.resize(TB * G);
  h_.resize((steps + 1) * BH);
  c_.resize((steps + 1) * BH);
  tc_.resize(TB * H);
  if (h0) std::copy(h0, h0 + BH, h_.begin());
  else std::fill(h_.begin(), h_.begin() + BH, T(0));
  if (c0) std::copy(c0, c0 + BH, c_.begin());
  else std::fill(c_.begin(), c_.begin() + BH, T(0));
  // x_t W_x for every t at once; per step + h_(t-1) W_h, then bias, gates and cell in one pass per row.
  gemm(false, false, TB, G, I_, x, I_, p.W_x, G, T(0), gates_.data(), G);
  for (std::size_t t = 0; t < steps; ++t) {
    T* a = gates_.data() + t * batch * G;
    gemm(false, false, batch, G, H, h_.data() + t * BH, H, p.W_h, G, T(1), a, G);
    for (std::size_t r = 0; r < batch; ++r) {
      T* ar = a + r * G;
      const std::size_t k = t * BH + r * H;
      const T *cp = c_.data() + k, *b = p.b;
      T *cn = c_.data() + BH + k, *hn = h_.data() + BH + k, *tc = tc_.data() + k;
      for_lanes<T>(H, [&](std::size_t j, auto x) {
        using X = decltype(x);
        const X i = simd::sigmoid(ld<X>(ar + j) + ld<X>(b + j));
        const X f = simd::sigmoid(ld<X>(ar + H + j) + ld<X>(b + H + j));
        const X g = simd::tanh(ld<X>(ar + 2 * H + j) + ld<X>(b + 2 * H + j));
        const X o = simd::sigmoid(ld<X>(ar + 3 * H + j) + ld<X>(b + 3 * H + j));
        const X c = f * ld<X>(cp + j) + i * g, tcj = simd::tanh(c);
        st(ar + j, i);
        st(ar + H + j, f);
        st(ar + 2 * H + j, g);
        st(ar + 3 * H + j, o);
        st(cn + j, c);
        st(tc + j, tcj);
        st(hn + j, o * tcj);
      });
    }
  }
  saved_ = true;
  return h_.data() + BH;
}

template <class T> const LSTMGrads<T>& LSTMBPTT<T>::backward(const T* dh_seq, const T* dc_last) {
  if (!saved_) throw Error("LSTMBPTT::backward: call forward first");
  if (!dh_seq) throw Error("LSTMBPTT::backward: no upstream gradient dh (T, B, H)");
  const std::size_t H = H_, G = 4 * H, B = batch_, BH = B * H, TB = steps_ * B;
  const bool per_step = w_ == WeightGrads::per_step;
  da_.resize(TB * G);
  dh_.resize(BH);
  dc_.resize(BH);
  auto& gr = grads_;
  if (per_step) {
    zero(gr.W_x, I_ * G);
    zero(gr.W_h, H * G);
  } else {
    gr.W_x.resize(I_ * G);
    gr.W_h.resize(H * G);
  }
  zero(gr.b, G);
  gr.x.resize(TB * I_);
  gr.h0.resize(BH);
  gr.c0.resize(BH);
  std::fill(dh_.begin(), dh_.end(), T(0));  // da_(t+1) W_h^T, zero after the last step
  if (dc_last) std::copy(dc_last, dc_last + BH, dc_.begin());
  else std::fill(dc_.begin(), dc_.end(), T(0));

  for (std::size_t t = steps_; t-- > 0;) {
    const T* gt = gates_.data() + t * B * G;
    const T* cp = c_.data() + t * BH;
    const T* tc = tc_.data() + t * BH;
    const T* dhs = dh_seq + t * BH;
    T* dat = da_.data() + t * B * G;
    for (std::size_t r = 0; r < B; ++r) {
      const T* __restrict g4 = gt + r * G;
      T* __restrict d4 = dat + r * G;
      const T* __restrict cpr = cp + r * H;
      const T* __restrict tcr = tc + r * H;
      const T* __restrict dhr = dhs + r * H;
      T* __restrict dhn = dh_.data() + r * H;
      T* __restrict dcn = dc_.data() + r * H;
      for (std::size_t j = 0; j < H; ++j) {
        const T i = g4[j], f = g4[H + j], g = g4[2 * H + j], o = g4[3 * H + j];
        const T dh = dhr[j] + dhn[j];
        const T dc = dcn[j] + dh * o * (T(1) - tcr[j] * tcr[j]);
        d4[j] = dc * g * i * (T(1) - i);
        d4[H + j] = dc * cpr[j] * f * (T(1) - f);
        d4[2 * H + j] = dc * i * (T(1) - g * g);
        d4[3 * H + j] = dh * tcr[j] * o * (T(1) - o);
        dcn[j] = dc * f;  // dE/dc_(t-1) through the carousel
      }
    }
    // dE/dh_(t-1) = da_t W_h^T
    gemm(false, true, B, H, G, dat, G, p_.W_h, G, T(0), dh_.data(), H);
    if (per_step) weight_grads(B, I_, H, G, x_ + t * B * I_, h_.data() + t * BH, dat, dat,
                               T(1), gr.W_x.data(), gr.W_h.data());
  }
  if (!per_step) weight_grads(TB, I_, H, G, x_, h_.data(), da_.data(), da_.data(), T(0), gr.W_x.data(), gr.W_h.data());
  bias_and_input_grads(TB, I_, G, da_.data(), p_.W_x, gr.b.data(), gr.x.data());
  std::copy(dh_.begin(), dh_.end(), gr.h0.begin());
  std::copy(dc_.begin(), dc_.end(), gr.c0.begin());
  return gr;
}

// ---------------------------------------------------------------------------------------------------
// GRUBPTT

template <class T>
GRUBPTT<T>::GRUBPTT(std::size_t input, std::size_t hidden, WeightGrads w) : I_(input), H_(hidden), w_(w) {
  if (input == 0 || hidden == 0)
    throw Error("GRUBPTT: sizes (input " + std::to_string(input) + ", hidden " + std::to_string(hidden) +
                ") must be positive");
}

template <class T> const T* GRUBPTT<T>::h(std::size_t t) const {
  check_step("GRUBPTT::h", saved_, t, steps_);
  return h_.data() + t * batch_ * H_;
}

template <class T>
const T* GRUBPTT<T>::forward(const GRUParams<T>& p, const T* x, const T* h0, std::size_t steps, std::size_t batch) {
  check_sizes("GRUBPTT::forward", steps, batch);
  if (!x || !p.W_x || !p.W_h || !p.b || !p.b_hn)
    throw Error("GRUBPTT::forward: x and every parameter (W_x, W_h, b, b_hn) must be given");
  p_ = p;
  x_ = x;
  steps_ = steps;
  batch_ = batch;
  const std::size_t H = H_, G = 3 * H, BH = batch * H, TB = steps * batch;
  xp_.resize(TB * G);
  hp_.resize(batch * G);
  rznv_.resize(TB * 4 * H);
  h_.resize((steps + 1) * BH);
  if (h0) std::copy(h0, h0 + BH, h_.begin());
  else std::fill(h_.begin(), h_.begin() + BH, T(0));
  // x_t W_x for every t at once; per step h_(t-1) W_h, then the gates and h_t in one pass per row.
  gemm(false, false, TB, G, I_, x, I_, p.W_x, G, T(0), xp_.data(), G);
  for (std::size_t t = 0; t < steps; ++t) {
    gemm(false, false, batch, G, H, h_.data() + t * BH, H, p.W_h, G, T(0), hp_.data(), G);
    for (std::size_t r = 0; r < batch; ++r) {
      const T* xr = xp_.data() + (t * batch + r) * G;
      const T* hr = hp_.data() + r * G;
      T* s = rznv_.data() + (t * batch + r) * 4 * H;
      const T *hprev = h_.data() + t * BH + r * H, *b = p.b, *bhn = p.b_hn;
      T* hnew = h_.data() + (t + 1) * BH + r * H;
      for_lanes<T>(H, [&](std::size_t j, auto x) {
        using X = decltype(x);
        const X rg = simd::sigmoid(ld<X>(xr + j) + ld<X>(b + j) + ld<X>(hr + j));
        const X zg = simd::sigmoid(ld<X>(xr + H + j) + ld<X>(b + H + j) + ld<X>(hr + H + j));
        const X v = ld<X>(hr + 2 * H + j) + ld<X>(bhn + j);
        const X n = simd::tanh(ld<X>(xr + 2 * H + j) + ld<X>(b + 2 * H + j) + rg * v);
        st(s + j, rg);
        st(s + H + j, zg);
        st(s + 2 * H + j, n);
        st(s + 3 * H + j, v);
        st(hnew + j, n + zg * (ld<X>(hprev + j) - n));
      });
    }
  }
  saved_ = true;
  return h_.data() + BH;
}

template <class T> const GRUGrads<T>& GRUBPTT<T>::backward(const T* dh_seq) {
  if (!saved_) throw Error("GRUBPTT::backward: call forward first");
  if (!dh_seq) throw Error("GRUBPTT::backward: no upstream gradient dh (T, B, H)");
  const std::size_t H = H_, G = 3 * H, B = batch_, BH = B * H, TB = steps_ * B;
  const bool per_step = w_ == WeightGrads::per_step;
  dxp_.resize(TB * G);
  dhp_.resize(TB * G);
  dh_.assign(BH, T(0));
  auto& gr = grads_;
  if (per_step) {
    zero(gr.W_x, I_ * G);
    zero(gr.W_h, H * G);
  } else {
    gr.W_x.resize(I_ * G);
    gr.W_h.resize(H * G);
  }
  zero(gr.b, G);
  zero(gr.b_hn, H);
  gr.x.resize(TB * I_);
  gr.h0.resize(BH);
  T* __restrict gbhn = gr.b_hn.data();

  for (std::size_t t = steps_; t-- > 0;) {
    T* dxt = dxp_.data() + t * B * G;
    T* dht = dhp_.data() + t * B * G;
    for (std::size_t r = 0; r < B; ++r) {
      const T* __restrict s = rznv_.data() + (t * B + r) * 4 * H;
      const T* __restrict hp = h_.data() + t * BH + r * H;
      const T* __restrict dhr = dh_seq + t * BH + r * H;
      T* __restrict dhn = dh_.data() + r * H;
      T* __restrict dx3 = dxt + r * G;
      T* __restrict dh3 = dht + r * G;
      for (std::size_t j = 0; j < H; ++j) {
        const T rg = s[j], zg = s[H + j], n = s[2 * H + j], v = s[3 * H + j];
        const T dh = dhr[j] + dhn[j];
        const T du = dh * (T(1) - zg) * (T(1) - n * n);
        const T dar = du * v * rg * (T(1) - rg), daz = dh * (hp[j] - n) * zg * (T(1) - zg);
        dx3[j] = dar;
        dx3[H + j] = daz;
        dx3[2 * H + j] = du;
        dh3[j] = dar;
        dh3[H + j] = daz;
        dh3[2 * H + j] = du * rg;
        gbhn[j] += du * rg;
        dhn[j] = dh * zg;  // the direct path; the recurrent product is added below
      }
    }
    // dE/dh_(t-1) = dh z + dhp_t W_h^T
    gemm(false, true, B, H, G, dht, G, p_.W_h, G, T(1), dh_.data(), H);
    if (per_step) weight_grads(B, I_, H, G, x_ + t * B * I_, h_.data() + t * BH, dxt, dht,
                               T(1), gr.W_x.data(), gr.W_h.data());
  }
  if (!per_step) weight_grads(TB, I_, H, G, x_, h_.data(), dxp_.data(), dhp_.data(),
                              T(0), gr.W_x.data(), gr.W_h.data());
  bias_and_input_grads(TB, I_, G, dxp_.data(), p_.W_x, gr.b.data(), gr.x.data());
  std::copy(dh_.begin(), dh_.end(), gr.h0.begin());
  return gr;
}

template class ElmanBPTT<float>;
template class ElmanBPTT<double>;
template class LSTMBPTT<float>;
template class LSTMBPTT<double>;
template class GRUBPTT<float>;
template class GRUBPTT<double>;

}  // namespace tapegrad::reference
