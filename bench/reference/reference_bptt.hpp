// Hand-derived backpropagation through time (BPTT), written the way the course derives it, on raw
// contiguous row-major buffers with BLAS. These are the references the engine's gradients are tested
// against (tests/reference/test_reference_bptt.cpp) and the hand-written baselines of the benchmarks. Nothing
// here records on the tape.
//
// Written as a careful engineer writes BPTT by hand, so that it is an honest floor for the engine's
// speed: the input projection of all steps as one GEMM, the recurrent product per step (gemv at batch
// 1), bias and activation in one pass over each step's block, activations vectorised with the same
// xsimd kernels the engine uses (exp, tanh), pointwise backward loops the compiler vectorises, and every
// buffer allocated once per sequence length. Two variants of the weight gradients:
//   WeightGrads::per_step  dW_x += x_t^T da_t and dW_h += h_(t-1)^T da_t inside the backward sweep, one
//                          GEMM per step (ger at batch 1), as the recursion is usually written
//   WeightGrads::fused     one GEMM over all T*B rows after the sweep ("fused W"): dW_x = X^T dA,
//                          dW_h = H_prev^T dA with the deltas of all steps kept
// Both give the same gradients to rounding (tests/reference/test_reference_bptt.cpp).
//
// Each class is a reusable workspace: forward() saves what backward() needs into buffers that are sized
// on first use and reused by later calls of the same or smaller size (no allocation per step, none per
// call in a steady loop). backward() returns gradients for every parameter, for x and for the initial
// state, owned by the workspace and overwritten by the next backward(). The parameter and input buffers
// handed to forward() must stay alive and unchanged until backward() has returned (as in any hand
// implementation that saves references instead of copies).
//
// Instantiated for float and double.
#pragma once

#include <cstddef>
#include <vector>

#include "tapegrad/ops/activation.hpp"  // the one Activation enum (nothing of the engine runs here)

namespace tapegrad::reference {

using tapegrad::Activation;
using tapegrad::activation_name;

enum class WeightGrads { per_step, fused };
const char* weight_grads_name(WeightGrads w);

// ---------------------------------------------------------------------------------------------------
// The course's simple (Elman) RNN over x (T, B, I), row-vector layout:
//   u_t = x_t W_in + z_(t-1) W + b,   z_t = f(u_t)          W_in (I,H), W (H,H), b (H)
//   v_t = z_t W_out + c,              y_t = g(v_t)          W_out (H,O), c (O)
//   E = 1/2 sum_t sum (d_t - y_t)^2   (or any seed dE/dy)
// Backward (the delta recursion, with delta_(T+1) = 0):
//   delta_out_t = dE/dy_t * g'(v_t)
//   delta_t     = (delta_out_t W_out^T + delta_(t+1) W^T) * f'(u_t)
//   dE/dW_out = sum_t z_t^T delta_out_t     dE/dc = sum_t,b delta_out_t
//   dE/dW_in  = sum_t x_t^T delta_t         dE/dW = sum_t z_(t-1)^T delta_t     dE/db = sum_t,b delta_t
//   dE/dx_t   = delta_t W_in^T              dE/dz_0 = delta_1 W^T
// f'(u) is computed from z = f(u): sigmoid z(1-z), tanh 1-z^2, relu [z > 0] (= [u > 0]), identity 1.
template <class T> struct ElmanParams {
  const T* W_in = nullptr;   // (I, H)
  const T* W = nullptr;      // (H, H)
  const T* b = nullptr;      // (H)
  const T* W_out = nullptr;  // (H, O)
  const T* c = nullptr;      // (O)
};

template <class T> struct ElmanGrads {
  std::vector<T> W_in, W, b, W_out, c;  // shapes as ElmanParams
  std::vector<T> x;                     // (T, B, I)
  std::vector<T> z0;                    // (B, H)
};

template <class T> class ElmanBPTT {
 public:
  ElmanBPTT(std::size_t input, std::size_t hidden, std::size_t output, Activation f,
            Activation g = Activation::sigmoid, WeightGrads w = WeightGrads::fused);

  // x (T, B, I); z0 (B, H), or nullptr for zeros. Returns y (T, B, O).
  const std::vector<T>& forward(const ElmanParams<T>& p, const T* x, const T* z0, std::size_t steps, std::size_t batch);
  // E = 1/2 sum (d - y)^2 over the last forward, d (T, B, O).
  T half_sum_loss(const T* d) const;
  // Gradients of E = sum(y * dy) + sum(z * dz) for the last forward: dy = dE/dy (T, B, O), any upstream
  // gradient; dz (T, B, H) = dE/dz_t reaching z_1 .. z_T from elsewhere, or nullptr for none (then
  // delta_t = (delta_out_t W_out^T + dz_t + delta_(t+1) W^T) * f'(u_t)).
  const ElmanGrads<T>& backward(const T* dy, const T* dz = nullptr);
  // Gradients of E = 1/2 sum (d - y)^2: the seed dE/dy = y - d.
  const ElmanGrads<T>& backward_half_sum(const T* d);

  const std::vector<T>& y() const { return y_; }  // (T, B, O), valid up to T*B*O
  const T* z(std::size_t t) const;                 // z_t for t in [0, T]; z(0) is the initial state (B, H)
  std::size_t steps() const { return steps_; }
  std::size_t batch() const { return batch_; }

 private:
  std::size_t I_, H_, O_;
  Activation f_, g_;
  WeightGrads w_;
  ElmanParams<T> p_{};
  const T* x_ = nullptr;
  std::size_t steps_ = 0, batch_ = 0;
  bool saved_ = false;
  std::vector<T> z_;      // (T+1, B, H): z_0 .. z_T
  std::vector<T> y_;      // (T, B, O)
  std::vector<T> dout_;   // (T, B, O) delta_out
  std::vector<T> delta_;  // (T, B, H)
  ElmanGrads<T> grads_;
};

// ---------------------------------------------------------------------------------------------------
// An LSTM over x (T, B, I) with fused gates, row-vector layout (lstm_cell of the conformance MANIFEST,
// transposed): a_t = x_t W_x + h_(t-1) W_h + b, W_x (I,4H), W_h (H,4H), b (4H), split in four chunks of
// H in the order i, f, g, o:
//   i = sigmoid(a_i), f = sigmoid(a_f), g = tanh(a_g), o = sigmoid(a_o)
//   c_t = f * c_(t-1) + i * g   (the constant error carousel),   h_t = o * tanh(c_t)
// Backward through time, with dh_t = dE/dh_t (seed) + da_(t+1) W_h^T and dc_(T+1) from the seed on c_T:
//   do = dh_t * tanh(c_t)            dc = dc_(t+1) * f_(t+1) + dh_t * o * (1 - tanh^2(c_t))
//   di = dc * g   df = dc * c_(t-1)  dg = dc * i
//   da = [di i(1-i), df f(1-f), dg (1-g^2), do o(1-o)]
//   dW_x = sum_t x_t^T da_t   dW_h = sum_t h_(t-1)^T da_t   db = sum_t,b da_t   dx_t = da_t W_x^T
//   dh_0 = da_1 W_h^T         dc_0 = dc_1 * f_1
template <class T> struct LSTMParams {
  const T* W_x = nullptr;  // (I, 4H)
  const T* W_h = nullptr;  // (H, 4H)
  const T* b = nullptr;    // (4H)
};

template <class T> struct LSTMGrads {
  std::vector<T> W_x, W_h, b;  // shapes as LSTMParams
  std::vector<T> x;            // (T, B, I)
  std::vector<T> h0, c0;       // (B, H)
};

template <class T> class LSTMBPTT {
 public:
  LSTMBPTT(std::size_t input, std::size_t hidden, WeightGrads w = WeightGrads::fused);

  // x (T, B, I); h0, c0 (B, H), or nullptr for zeros. Returns h (T, B, H) (h_1 .. h_T).
  const T* forward(const LSTMParams<T>& p, const T* x, const T* h0, const T* c0, std::size_t steps, std::size_t batch);
  // Gradients of E = sum(h * dh) + sum(c_T * dc_last) for the last forward: dh (T, B, H) is dE/dh_t for
  // every step; dc_last (B, H) is dE/dc_T, or nullptr for zero.
  const LSTMGrads<T>& backward(const T* dh, const T* dc_last = nullptr);

  const T* h(std::size_t t) const;  // h_t for t in [0, T] (B, H); h(0) is the initial state
  const T* c(std::size_t t) const;  // c_t likewise
  std::size_t steps() const { return steps_; }
  std::size_t batch() const { return batch_; }

 private:
  std::size_t I_, H_;
  WeightGrads w_;
  LSTMParams<T> p_{};
  const T* x_ = nullptr;
  std::size_t steps_ = 0, batch_ = 0;
  bool saved_ = false;
  std::vector<T> gates_;  // (T, B, 4H): activated i, f, g, o
  std::vector<T> h_, c_;  // (T+1, B, H)
  std::vector<T> tc_;     // (T, B, H): tanh(c_t)
  std::vector<T> da_;     // (T, B, 4H)
  std::vector<T> dh_, dc_;  // (B, H) running dE/dh_t, dE/dc_t
  LSTMGrads<T> grads_;
};

// ---------------------------------------------------------------------------------------------------
// A GRU over x (T, B, I) in PyTorch's reset_after convention (nn::GRUCell with reset_after, the gru_cell
// op), row-vector layout, gates fused in the order r, z, n: W_x (I,3H), W_h (H,3H), b (3H), b_hn (H):
//   xp = x_t W_x + b,  hp = h_(t-1) W_h
//   r = sigmoid(xp_r + hp_r),  z = sigmoid(xp_z + hp_z),  v = hp_n + b_hn,  n = tanh(xp_n + r v)
//   h_t = (1 - z) n + z h_(t-1)
// Backward, with dh = dE/dh_t (seed) + the recurrent term:
//   du = dh (1 - z)(1 - n^2),  da_r = du v r(1 - r),  da_z = dh (h_(t-1) - n) z(1 - z)
//   dxp = [da_r, da_z, du],  dhp = [da_r, da_z, du r],  dh_(t-1) = dh z + dhp W_h^T
//   dW_x = sum_t x_t^T dxp_t   dW_h = sum_t h_(t-1)^T dhp_t   db = sum_t,b dxp   db_hn = sum_t,b du r
//   dx_t = dxp_t W_x^T
template <class T> struct GRUParams {
  const T* W_x = nullptr;   // (I, 3H)
  const T* W_h = nullptr;   // (H, 3H)
  const T* b = nullptr;     // (3H)
  const T* b_hn = nullptr;  // (H)
};

template <class T> struct GRUGrads {
  std::vector<T> W_x, W_h, b, b_hn;  // shapes as GRUParams
  std::vector<T> x;                  // (T, B, I)
  std::vector<T> h0;                 // (B, H)
};

template <class T> class GRUBPTT {
 public:
  GRUBPTT(std::size_t input, std::size_t hidden, WeightGrads w = WeightGrads::fused);

  // x (T, B, I); h0 (B, H), or nullptr for zeros. Returns h (T, B, H) (h_1 .. h_T).
  const T* forward(const GRUParams<T>& p, const T* x, const T* h0, std::size_t steps, std::size_t batch);
  // Gradients of E = sum(h * dh) for the last forward: dh (T, B, H) is dE/dh_t for every step.
  const GRUGrads<T>& backward(const T* dh);

  const T* h(std::size_t t) const;  // h_t for t in [0, T] (B, H); h(0) is the initial state
  std::size_t steps() const { return steps_; }
  std::size_t batch() const { return batch_; }

 private:
  std::size_t I_, H_;
  WeightGrads w_;
  GRUParams<T> p_{};
  const T* x_ = nullptr;
  std::size_t steps_ = 0, batch_ = 0;
  bool saved_ = false;
  std::vector<T> xp_;        // (T, B, 3H) x W_x + b
  std::vector<T> hp_;        // (B, 3H) one step's h W_h
  std::vector<T> rznv_;      // (T, B, 4H): r, z, n, v
  std::vector<T> h_;         // (T+1, B, H)
  std::vector<T> dxp_, dhp_;  // (T, B, 3H)
  std::vector<T> dh_;        // (B, H) running dE/dh_t
  GRUGrads<T> grads_;
};

extern template class ElmanBPTT<float>;
extern template class ElmanBPTT<double>;
extern template class LSTMBPTT<float>;
extern template class LSTMBPTT<double>;
extern template class GRUBPTT<float>;
extern template class GRUBPTT<double>;

}  // namespace tapegrad::reference
