// Hand-derived BPTT for the simple RNN and the LSTM (see the header for the equations). Products over
// all time steps at once (x W_in, z W_out, and every weight gradient) are one GEMM each over T*B rows;
// only the recurrent products run per step.
#include "tapegrad/nn/reference_bptt.hpp"

#include <algorithm>
#include <cmath>
#include <string>

#include "tapegrad/autograd/shape.hpp"
#include "tapegrad/ops/blas.hpp"

namespace tapegrad::nn::reference {

const char* activation_name(Activation a) {
  switch (a) {
    case Activation::sigmoid: return "sigmoid";
    case Activation::tanh: return "tanh";
    case Activation::relu: return "relu";
    case Activation::identity: return "identity";
  }
  return "?";
}

namespace {

// C (m,n) = beta C + op(A) op(B), row-major; op(A) is (m,k), op(B) is (k,n). lda/ldb are the row
// lengths of A and B as stored. A single row (batch 1) goes to gemv: OpenBLAS 0.3.21 runs a 1-row GEMM
// through its full packing path, 3-4x slower than gemv, and a hand-written BPTT would not pay that.
template <class T>
void gemm(bool ta, bool tb, std::size_t m, std::size_t n, std::size_t k, const T* a, std::size_t lda, const T* b,
          std::size_t ldb, T beta, T* c, std::size_t ldc) {
  if (m == 1 && !ta) {  // c (n) = op(B)^T a: B stored (k, n) -> trans; stored (n, k) -> no trans
    blas::gemv(tb ? CblasNoTrans : CblasTrans, tb ? n : k, tb ? k : n, b, a, beta, c);
    return;
  }
  blas::gemm(ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans, m, n, k, a, lda, b, ldb, beta, c, ldc);
}

template <class T> inline T sigm(T x) { return T(1) / (T(1) + std::exp(-x)); }

template <class T> void activate(Activation a, T* p, std::size_t n) {
  switch (a) {
    case Activation::sigmoid:
      for (std::size_t i = 0; i < n; ++i) p[i] = sigm(p[i]);
      break;
    case Activation::tanh:
      for (std::size_t i = 0; i < n; ++i) p[i] = std::tanh(p[i]);
      break;
    case Activation::relu:
      for (std::size_t i = 0; i < n; ++i) p[i] = p[i] > T(0) ? p[i] : T(0);
      break;
    case Activation::identity: break;
  }
}

// d[i] *= a'(u_i), with a'(u) written through the output y = a(u).
template <class T> void times_derivative(Activation a, T* d, const T* y, std::size_t n) {
  switch (a) {
    case Activation::sigmoid:
      for (std::size_t i = 0; i < n; ++i) d[i] *= y[i] * (T(1) - y[i]);
      break;
    case Activation::tanh:
      for (std::size_t i = 0; i < n; ++i) d[i] *= T(1) - y[i] * y[i];
      break;
    case Activation::relu:
      for (std::size_t i = 0; i < n; ++i) d[i] = y[i] > T(0) ? d[i] : T(0);
      break;
    case Activation::identity: break;
  }
}

// out (n) = sum over the rows of m (rows, n).
template <class T> void column_sums(const T* m, std::size_t rows, std::size_t n, T* out) {
  std::fill(out, out + n, T(0));
  for (std::size_t r = 0; r < rows; ++r, m += n)
    for (std::size_t j = 0; j < n; ++j) out[j] += m[j];
}

// v += row (n) on each of `rows` rows.
template <class T> void add_row(T* v, std::size_t rows, std::size_t n, const T* row) {
  for (std::size_t r = 0; r < rows; ++r, v += n)
    for (std::size_t j = 0; j < n; ++j) v[j] += row[j];
}

void check_sizes(const char* where, std::size_t steps, std::size_t batch) {
  if (steps == 0 || batch == 0)
    throw Error(std::string(where) + ": steps " + std::to_string(steps) + " and batch " + std::to_string(batch) +
                " must both be positive (x (T, B, I) = (" + std::to_string(steps) + ", " + std::to_string(batch) +
                ", ...))");
}

}  // namespace

// ---------------------------------------------------------------------------------------------------
// ElmanBPTT

template <class T>
ElmanBPTT<T>::ElmanBPTT(std::size_t input, std::size_t hidden, std::size_t output, Activation f, Activation g)
    : I_(input), H_(hidden), O_(output), f_(f), g_(g) {
  if (input == 0 || hidden == 0 || output == 0)
    throw Error("ElmanBPTT: sizes (input " + std::to_string(input) + ", hidden " + std::to_string(hidden) + ", output " +
                std::to_string(output) + ") must be positive");
}

template <class T> const T* ElmanBPTT<T>::z(std::size_t t) const {
  if (!saved_ || t > steps_)
    throw Error("ElmanBPTT::z: step " + std::to_string(t) + " outside [0, " + std::to_string(steps_) + "]" +
                (saved_ ? "" : " (no forward yet)"));
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
  // x_t W_in for every t at once, then per step: + z_(t-1) W + b, z_t = f(u_t).
  gemm(false, false, TB, H_, I_, x, I_, p.W_in, H_, T(0), zs + BH, H_);
  for (std::size_t t = 0; t < steps; ++t) {
    T* zt = zs + (t + 1) * BH;
    gemm(false, false, batch, H_, H_, zs + t * BH, H_, p.W, H_, T(1), zt, H_);
    add_row(zt, batch, H_, p.b);
    activate(f_, zt, BH);
  }
  // y_t = g(z_t W_out + c), all t at once.
  gemm(false, false, TB, O_, H_, zs + BH, H_, p.W_out, O_, T(0), y_.data(), O_);
  add_row(y_.data(), TB, O_, p.c);
  activate(g_, y_.data(), TB * O_);
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
  gr.W_in.resize(I_ * H_);
  gr.W.resize(H_ * H_);
  gr.b.resize(H_);
  gr.W_out.resize(H_ * O_);
  gr.c.resize(O_);
  gr.x.resize(TB * I_);
  gr.z0.resize(BH);
  const T* zs = z_.data();
  T* dl = delta_.data();

  // delta_out_t = dE/dy_t * g'(v_t); dW_out = sum_t z_t^T delta_out_t; dc = column sums.
  times_derivative(g_, dout_.data(), y_.data(), TB * O_);
  gemm(true, false, H_, O_, TB, zs + BH, H_, dout_.data(), O_, T(0), gr.W_out.data(), O_);
  column_sums(dout_.data(), TB, O_, gr.c.data());
  // delta_t = (delta_out_t W_out^T + delta_(t+1) W^T) * f'(u_t): the output term for all t at once,
  // then the recurrent term backwards in time.
  gemm(false, true, TB, H_, O_, dout_.data(), O_, p_.W_out, O_, T(0), dl, H_);
  for (std::size_t t = steps_; t-- > 0;) {
    T* dt = dl + t * BH;
    if (dz)
      for (std::size_t k = 0; k < BH; ++k) dt[k] += dz[t * BH + k];
    if (t + 1 < steps_) gemm(false, true, B, H_, H_, dt + BH, H_, p_.W, H_, T(1), dt, H_);
    times_derivative(f_, dt, zs + (t + 1) * BH, BH);
  }
  // Weight gradients summed over time: one GEMM each over the T*B rows.
  gemm(true, false, I_, H_, TB, x_, I_, dl, H_, T(0), gr.W_in.data(), H_);
  gemm(true, false, H_, H_, TB, zs, H_, dl, H_, T(0), gr.W.data(), H_);  // z_0 .. z_(T-1)
  column_sums(dl, TB, H_, gr.b.data());
  gemm(false, true, TB, I_, H_, dl, H_, p_.W_in, H_, T(0), gr.x.data(), I_);
  gemm(false, true, B, H_, H_, dl, H_, p_.W, H_, T(0), gr.z0.data(), H_);
  return gr;
}

// ---------------------------------------------------------------------------------------------------
// LSTMBPTT

template <class T> LSTMBPTT<T>::LSTMBPTT(std::size_t input, std::size_t hidden) : I_(input), H_(hidden) {
  if (input == 0 || hidden == 0)
    throw Error("LSTMBPTT: sizes (input " + std::to_string(input) + ", hidden " + std::to_string(hidden) +
                ") must be positive");
}

template <class T> const T* LSTMBPTT<T>::h(std::size_t t) const {
  if (!saved_ || t > steps_)
    throw Error("LSTMBPTT::h: step " + std::to_string(t) + " outside [0, " + std::to_string(steps_) + "]" +
                (saved_ ? "" : " (no forward yet)"));
  return h_.data() + t * batch_ * H_;
}

template <class T> const T* LSTMBPTT<T>::c(std::size_t t) const {
  if (!saved_ || t > steps_)
    throw Error("LSTMBPTT::c: step " + std::to_string(t) + " outside [0, " + std::to_string(steps_) + "]" +
                (saved_ ? "" : " (no forward yet)"));
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
  // x_t W_x for every t at once; per step + h_(t-1) W_h + b, then the gates and the cell.
  gemm(false, false, TB, G, I_, x, I_, p.W_x, G, T(0), gates_.data(), G);
  for (std::size_t t = 0; t < steps; ++t) {
    T* a = gates_.data() + t * batch * G;
    gemm(false, false, batch, G, H, h_.data() + t * BH, H, p.W_h, G, T(1), a, G);
    const T* cp = c_.data() + t * BH;
    T* cn = c_.data() + (t + 1) * BH;
    T* hn = h_.data() + (t + 1) * BH;
    T* tc = tc_.data() + t * BH;
    for (std::size_t r = 0; r < batch; ++r) {
      T* ar = a + r * G;
      for (std::size_t j = 0; j < G; ++j) ar[j] += p.b[j];
      for (std::size_t j = 0; j < H; ++j) {
        const T i = sigm(ar[j]), f = sigm(ar[H + j]), g = std::tanh(ar[2 * H + j]), o = sigm(ar[3 * H + j]);
        ar[j] = i;
        ar[H + j] = f;
        ar[2 * H + j] = g;
        ar[3 * H + j] = o;
        const std::size_t k = r * H + j;
        cn[k] = f * cp[k] + i * g;
        tc[k] = std::tanh(cn[k]);
        hn[k] = o * tc[k];
      }
    }
  }
  saved_ = true;
  return h_.data() + BH;
}

template <class T> const LSTMGrads<T>& LSTMBPTT<T>::backward(const T* dh_seq, const T* dc_last) {
  if (!saved_) throw Error("LSTMBPTT::backward: call forward first");
  if (!dh_seq) throw Error("LSTMBPTT::backward: no upstream gradient dh (T, B, H)");
  const std::size_t H = H_, G = 4 * H, B = batch_, BH = B * H, TB = steps_ * B;
  da_.resize(TB * G);
  dh_.resize(BH);
  dc_.resize(BH);
  auto& gr = grads_;
  gr.W_x.resize(I_ * G);
  gr.W_h.resize(H * G);
  gr.b.resize(G);
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
      const T* g4 = gt + r * G;
      T* d4 = dat + r * G;
      for (std::size_t j = 0; j < H; ++j) {
        const std::size_t k = r * H + j;
        const T i = g4[j], f = g4[H + j], g = g4[2 * H + j], o = g4[3 * H + j];
        const T dh = dhs[k] + dh_[k];
        const T dc = dc_[k] + dh * o * (T(1) - tc[k] * tc[k]);
        d4[j] = dc * g * i * (T(1) - i);
        d4[H + j] = dc * cp[k] * f * (T(1) - f);
        d4[2 * H + j] = dc * i * (T(1) - g * g);
        d4[3 * H + j] = dh * tc[k] * o * (T(1) - o);
        dc_[k] = dc * f;  // dE/dc_(t-1) through the carousel
      }
    }
    // dE/dh_(t-1) = da_t W_h^T
    gemm(false, true, B, H, G, dat, G, p_.W_h, G, T(0), dh_.data(), H);
  }
  gemm(true, false, I_, G, TB, x_, I_, da_.data(), G, T(0), gr.W_x.data(), G);
  gemm(true, false, H, G, TB, h_.data(), H, da_.data(), G, T(0), gr.W_h.data(), G);  // h_0 .. h_(T-1)
  column_sums(da_.data(), TB, G, gr.b.data());
  gemm(false, true, TB, I_, G, da_.data(), G, p_.W_x, G, T(0), gr.x.data(), I_);
  std::copy(dh_.begin(), dh_.end(), gr.h0.begin());
  std::copy(dc_.begin(), dc_.end(), gr.c0.begin());
  return gr;
}

template class ElmanBPTT<float>;
template class ElmanBPTT<double>;
template class LSTMBPTT<float>;
template class LSTMBPTT<double>;

}  // namespace tapegrad::nn::reference
