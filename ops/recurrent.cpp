// Recurrent family: the fused Elman step and the fused pointwise parts of the LSTM and GRU steps (see
// recurrent.hpp for why they exist).
// Each op: forward (xsimd batches over each row's contiguous H-blocks, ops/simd.hpp) and its backward on
// raw buffers. None saves anything: backward reads the inputs (which the tape keeps) and the output, and
// recomputes gate values with the same loops (memory of long sequences, issue 18). For create_graph, each
// differentiates its composed form (below): the derivative is not written a second time in primitive ops.
#include "tapegrad/ops/recurrent.hpp"

#include <algorithm>
#include <string>

#include "tapegrad/autograd/op.hpp"
#include "tapegrad/ops/batching.hpp"
#include "tapegrad/ops/activation.hpp"
#include "tapegrad/ops/elementwise.hpp"
#include "tapegrad/ops/linalg.hpp"
#include "tapegrad/ops/parallel_for.hpp"
#include "tapegrad/ops/products.hpp"
#include "tapegrad/ops/shape.hpp"
#include "tapegrad/ops/simd.hpp"

namespace tapegrad {

TAPEGRAD_OP(op_lstm_cell, "lstm_cell", "recurrent");
TAPEGRAD_OP(op_lstm_hidden, "lstm_hidden", "recurrent");
TAPEGRAD_OP(op_gru_cell, "gru_cell", "recurrent");

// Batching rules (autograd/autobatch.hpp): the fused cells work row by row, so the calls' rows stacked,
// (n B, ...), make one call; the weights and peepholes must be shared.
namespace {
using autobatch::Group;
bool rows_then_shared(const Group& g, std::size_t stacked) {
  for (std::size_t j = 0; j < g.num_inputs(); ++j)
    if (g.shared(j) != (j >= stacked) || (j < stacked && g.in(j).rank() != 3)) return false;
  return true;
}
std::vector<Tensor> rows_and_shared(const Group& g, std::size_t stacked) {
  std::vector<Tensor> in;
  for (std::size_t j = 0; j < g.num_inputs(); ++j) in.push_back(j < stacked ? batching::merged_rows(g.in(j)) : g.in(j));
  return in;
}
TAPEGRAD_BATCH_RULE(lstm_cell_rule, op_lstm_cell, [](const Group& g) {
  if (!rows_then_shared(g, 2)) return Tensor();
  const auto in = rows_and_shared(g, 2);
  return batching::split_rows(in.size() == 4 ? lstm_cell(in[0], in[1], in[2], in[3]) : lstm_cell(in[0], in[1]), g.size());
});
TAPEGRAD_BATCH_RULE(lstm_hidden_rule, op_lstm_hidden, [](const Group& g) {
  if (!rows_then_shared(g, 2)) return Tensor();
  const auto in = rows_and_shared(g, 2);
  return batching::split_rows(in.size() == 3 ? lstm_hidden(in[0], in[1], in[2]) : lstm_hidden(in[0], in[1]), g.size());
});
TAPEGRAD_BATCH_RULE(gru_cell_rule, op_gru_cell, [](const Group& g) {
  if (!rows_then_shared(g, 3)) return Tensor();
  const auto in = rows_and_shared(g, 3);
  return batching::split_rows(gru_cell(in[0], in[1], in[2], in[3]), g.size());
});
}  // namespace

namespace {


// a must be (B, 4H) and s (B, H) (s: "c_prev" or "c"); peepholes (H); one dtype. Returns H.
std::size_t check_lstm(const char* op, const Tensor& a, const Tensor& s, const char* s_name,
                       std::initializer_list<std::pair<const char*, const Tensor*>> peepholes) {
  if (!a.defined() || a.rank() != 2 || a.size(1) % 4 != 0 || a.size(1) == 0)
    throw Error(std::string(op) + ": gate pre-activations a must be (B, 4H), got " + shape_str(a));
  const std::size_t B = a.size(0), H = a.size(1) / 4;
  if (!s.defined() || s.rank() != 2 || s.size(0) != B || s.size(1) != H)
    throw Error(std::string(op) + ": " + s_name + " must be (B, H) = (" + std::to_string(B) + ", " + std::to_string(H) +
                ") to match a " + a.shape().str() + ", got " + shape_str(s));
  for (const auto& [name, p] : peepholes)
    if (!p->defined() || p->rank() != 1 || p->size(0) != H)
      throw Error(std::string(op) + ": peephole " + name + " must be (H) = " + Shape{H}.str() + " to match a " +
                  a.shape().str() + ", got " + shape_str(*p));
  auto same = [&](const Tensor& t, const char* name) {
    if (t.dtype() != a.dtype())
      throw Error(std::string(op) + ": " + name + " " + t.shape().str() + " is " + dtype_name(t.dtype()) + ", a " +
                  a.shape().str() + " is " + dtype_name(a.dtype()));
  };
  same(s, s_name);
  for (const auto& [name, p] : peepholes) same(*p, name);
  return H;
}

template <class T> const T* data_of(const Tensor& t) { return static_cast<const T*>(t.raw_data()); }

using simd::for_lanes;
using simd::ld;
using simd::st;

// The fused kernels' loop: body(r, j0, j1) for every row r over per-thread blocks of columns [j0, j1) that
// start at multiples of the vector width (ops/parallel_for.hpp: one thread below its size threshold). Split
// by columns, a sum over rows (a peephole's or b_hn's gradient) stays in one thread, rows in order, so any
// thread count gives the one-thread values bit for bit.
template <class T, class Body> void by_columns(std::size_t B, std::size_t H, std::size_t work, Body body) {
  parallel::for_range(H, work, [&](std::size_t j0, std::size_t j1) {
    for (std::size_t r = 0; r < B; ++r) body(r, j0, j1);
  }, xsimd::batch<T>::size);
}

// Input i of a fused op's node, or undefined when the op was called without it (the peepholes).
Tensor in_or_none(const GraphCtx& g, std::size_t i) { return i < g.num_inputs() ? g.in(i) : Tensor(); }

}  // namespace

// ---- the composed forms (the math: nn/models/rnn.hpp, above RNNCell, LSTMCell and GRUCell) ---------------------

Tensor rnn_cell_composed(const Tensor& xp, const Tensor& h_prev, const Tensor& W, Activation f) {
  return activate(f, addmm(xp, h_prev, W));
}

Tensor rnn_sequence_composed(const Tensor& xp, const Tensor& h0, const Tensor& W, Activation f) {
  const std::size_t B = h0.size(0), H = h0.size(1), T = xp.numel() / (B * H);
  const Tensor rows = reshape(xp, {T * B, H});
  std::vector<Tensor> hs(T);
  Tensor h = h0;
  for (std::size_t t = 0; t < T; ++t) hs[t] = h = rnn_cell_composed(slice(rows, 0, t * B, (t + 1) * B), h, W, f);
  return reshape(concat(hs, 0), {T, B, H});
}

Tensor lstm_cell_composed(const Tensor& a, const Tensor& c_prev, const Tensor& p_i, const Tensor& p_f) {
  const std::size_t H = c_prev.size(1);
  const Tensor i = sigmoid(p_i.defined() ? slice(a, 1, 0, H) + p_i * c_prev : slice(a, 1, 0, H));
  const Tensor f = sigmoid(p_f.defined() ? slice(a, 1, H, 2 * H) + p_f * c_prev : slice(a, 1, H, 2 * H));
  return f * c_prev + i * tanh(slice(a, 1, 2 * H, 3 * H));
}

Tensor lstm_hidden_composed(const Tensor& a, const Tensor& c, const Tensor& p_o) {
  const std::size_t H = c.size(1);
  const Tensor o = sigmoid(p_o.defined() ? slice(a, 1, 3 * H, 4 * H) + p_o * c : slice(a, 1, 3 * H, 4 * H));
  return o * tanh(c);
}

Tensor gru_cell_composed(const Tensor& xp, const Tensor& hp, const Tensor& h, const Tensor& b_hn) {
  const std::size_t H = h.size(1);
  const auto a = split(xp, {2 * H, H}, 1), p = split(hp, {2 * H, H}, 1);
  const auto rz = chunk(sigmoid(a[0] + p[0]), 2, 1);
  const Tensor n = tanh(a[1] + rz[0] * (p[1] + b_hn));
  return n + rz[1] * (h - n);  // (1 - z) n + z h
}

Tensor gru_course_composed(const Tensor& xp, const Tensor& h, const Tensor& W_h, const Tensor& U_h) {
  const std::size_t H = h.size(1);
  const auto a = split(xp, {2 * H, H}, 1);  // [a_r a_z], a_n
  const auto rz = chunk(sigmoid(addmm(a[0], h, W_h)), 2, 1);
  const Tensor h_bar = tanh(addmm(a[1], rz[0] * h, U_h));
  return h + rz[1] * (h_bar - h);  // (1 - z) h + z h_bar
}

// ---- lstm_cell ----------------------------------------------------------------------------------------
// Forward saves nothing: backward recomputes i, f, g from a and c_prev, its inputs, which the tape keeps
// anyway (a few sigmoids and a tanh per element against 3 (B, H) blocks per step kept alive until
// backward; the memory of a long sequence is what this op is for). Backward, with dc = the incoming
// gradient of c:
//   da_i = dc g i (1 - i),  da_f = dc c_prev f (1 - f),  da_g = dc i (1 - g^2),  (da_o: none here)
//   dc_prev = dc f + p_i da_i + p_f da_f,  dp_i = sum_rows da_i c_prev,  dp_f = sum_rows da_f c_prev.

namespace {

Tensor lstm_cell_impl(const Tensor& a, const Tensor& c_prev, const Tensor* p_i, const Tensor* p_f) {
  if (autobatch::in_task())
    if (Tensor batched = p_i ? autobatch::detail::out_of_line([&] { return autobatch::defer(lstm_cell_rule, {&a, &c_prev, p_i, p_f}); }) : autobatch::detail::out_of_line([&] { return autobatch::defer(lstm_cell_rule, {&a, &c_prev}); });
        batched.defined())
      return batched;
  const std::size_t H = p_i ? check_lstm("lstm_cell", a, c_prev, "c_prev", {{"p_i", p_i}, {"p_f", p_f}})
                            : check_lstm("lstm_cell", a, c_prev, "c_prev", {});
  const std::size_t B = a.size(0);
  OpCall call = p_i ? OpCall(op_lstm_cell, {&a, &c_prev, p_i, p_f}) : OpCall(op_lstm_cell, {&a, &c_prev});
  Tensor c = call.output({B, H});
  dispatch(call.dtype(), [&](auto z) {
    using T = decltype(z);
    const T *pa = data_of<T>(a), *pcp = data_of<T>(c_prev);
    T* pc = c.data<T>();
    const T* pi = p_i ? data_of<T>(*p_i) : nullptr;
    const T* pf = p_f ? data_of<T>(*p_f) : nullptr;
    by_columns<T>(B, H, B * 8 * H, [&](std::size_t r, std::size_t j0, std::size_t j1) {
      const T *ar = pa + r * 4 * H, *cpr = pcp + r * H;
      T* cr = pc + r * H;
      for_lanes<T>(j0, j1, [&](std::size_t j, auto x) {
        using X = decltype(x);
        const X cp = ld<X>(cpr + j);
        X ai = ld<X>(ar + j), af = ld<X>(ar + H + j);
        if (pi) {
          ai = ai + ld<X>(pi + j) * cp;
          af = af + ld<X>(pf + j) * cp;
        }
        const X i = simd::sigmoid(ai), f = simd::sigmoid(af), g = simd::tanh(ld<X>(ar + 2 * H + j));
        st(cr + j, f * cp + i * g);
      });
    });
  });
  call.record(
      [](BackwardCtx& c) {
        const std::size_t B = c.out_shape()[0], H = c.out_shape()[1];
        const bool peep = c.num_inputs() == 4;
        dispatch(c.dtype(), [&](auto z) {
          using T = decltype(z);
          const T *dc = c.gout<T>(), *av = c.in<T>(0), *cp = c.in<T>(1);
          const T* pi = peep ? c.in<T>(2) : nullptr;
          const T* pf = peep ? c.in<T>(3) : nullptr;
          // a's gradient is written in 3 of its 4 blocks (zero-filled first); c_prev's in full, so a fresh
          // buffer is assigned rather than accumulated into. The inputs' shapes differ: no two alias.
          bool fresh = false;
          T* ga = c.needs(0) ? c.grad<T>(0) : nullptr;
          T* gcp = c.needs(1) ? c.grad_for_write<T>(1, fresh) : nullptr;
          T* gpi = peep && c.needs(2) ? c.grad<T>(2) : nullptr;
          T* gpf = peep && c.needs(3) ? c.grad<T>(3) : nullptr;
          by_columns<T>(B, H, B * 10 * H, [&](std::size_t r, std::size_t j0, std::size_t j1) {
            const T *ar = av + r * 4 * H, *d = dc + r * H, *cpr = cp + r * H;
            T* gar = ga ? ga + r * 4 * H : nullptr;
            T* gcpr = gcp ? gcp + r * H : nullptr;
            for_lanes<T>(j0, j1, [&](std::size_t j, auto x) {
              using X = decltype(x);
              const X cpj = ld<X>(cpr + j), dj = ld<X>(d + j);
              X ai = ld<X>(ar + j), af = ld<X>(ar + H + j);
              if (peep) {
                ai = ai + ld<X>(pi + j) * cpj;
                af = af + ld<X>(pf + j) * cpj;
              }
              const X i = simd::sigmoid(ai), f = simd::sigmoid(af), g = simd::tanh(ld<X>(ar + 2 * H + j));
              const X dai = dj * g * i * (X(1) - i), daf = dj * cpj * f * (X(1) - f);
              if (gar) {
                st(gar + j, ld<X>(gar + j) + dai);
                st(gar + H + j, ld<X>(gar + H + j) + daf);
                st(gar + 2 * H + j, ld<X>(gar + 2 * H + j) + dj * i * (X(1) - g * g));
              }
              if (gcpr) {
                X v = dj * f;
                if (peep) v = v + ld<X>(pi + j) * dai + ld<X>(pf + j) * daf;
                st(gcpr + j, fresh ? v : ld<X>(gcpr + j) + v);
              }
              if (gpi) st(gpi + j, ld<X>(gpi + j) + dai * cpj);
              if (gpf) st(gpf + j, ld<X>(gpf + j) + daf * cpj);
            });
          });
        });
      },
      [](GraphCtx& g) {
        g.differentiate([&] { return lstm_cell_composed(g.in(0), g.in(1), in_or_none(g, 2), in_or_none(g, 3)); });
      });
  return c;
}

}  // namespace

Tensor lstm_cell(const Tensor& a, const Tensor& c_prev) { return lstm_cell_impl(a, c_prev, nullptr, nullptr); }
Tensor lstm_cell(const Tensor& a, const Tensor& c_prev, const Tensor& p_i, const Tensor& p_f) {
  return lstm_cell_impl(a, c_prev, &p_i, &p_f);
}

// ---- lstm_hidden --------------------------------------------------------------------------------------
// Forward saves nothing: backward recomputes o and tanh(c) from a and c, its inputs (as lstm_cell).
// Backward, with dh = the incoming gradient of h:
//   da_o = dh tanh(c) o (1 - o),  dc = dh o (1 - tanh(c)^2) + p_o da_o,  dp_o = sum_rows da_o c.

namespace {

Tensor lstm_hidden_impl(const Tensor& a, const Tensor& c, const Tensor* p_o) {
  if (autobatch::in_task())
    if (Tensor batched = p_o ? autobatch::detail::out_of_line([&] { return autobatch::defer(lstm_hidden_rule, {&a, &c, p_o}); }) : autobatch::detail::out_of_line([&] { return autobatch::defer(lstm_hidden_rule, {&a, &c}); });
        batched.defined())
      return batched;
  const std::size_t H = p_o ? check_lstm("lstm_hidden", a, c, "c", {{"p_o", p_o}}) : check_lstm("lstm_hidden", a, c, "c", {});
  const std::size_t B = a.size(0);
  OpCall call = p_o ? OpCall(op_lstm_hidden, {&a, &c, p_o}) : OpCall(op_lstm_hidden, {&a, &c});
  Tensor h = call.output({B, H});
  dispatch(call.dtype(), [&](auto z) {
    using T = decltype(z);
    const T *pa = data_of<T>(a), *pc = data_of<T>(c);
    T* ph = h.data<T>();
    const T* po = p_o ? data_of<T>(*p_o) : nullptr;
    by_columns<T>(B, H, B * 5 * H, [&](std::size_t r, std::size_t j0, std::size_t j1) {
      const T *ao = pa + r * 4 * H + 3 * H, *cr = pc + r * H;
      T* hr = ph + r * H;
      for_lanes<T>(j0, j1, [&](std::size_t j, auto x) {
        using X = decltype(x);
        const X cj = ld<X>(cr + j);
        X a = ld<X>(ao + j);
        if (po) a = a + ld<X>(po + j) * cj;
        st(hr + j, simd::sigmoid(a) * simd::tanh(cj));
      });
    });
  });
  call.record(
      [](BackwardCtx& c) {
        const std::size_t B = c.out_shape()[0], H = c.out_shape()[1];
        const bool peep = c.num_inputs() == 3;
        dispatch(c.dtype(), [&](auto z) {
          using T = decltype(z);
          const T *dh = c.gout<T>(), *av = c.in<T>(0), *cv = c.in<T>(1);
          const T* po = peep ? c.in<T>(2) : nullptr;
          // c's gradient is written in full: a fresh buffer is assigned rather than accumulated into.
          bool fresh = false;
          T* ga = c.needs(0) ? c.grad<T>(0) : nullptr;
          T* gc = c.needs(1) ? c.grad_for_write<T>(1, fresh) : nullptr;
          T* gpo = peep && c.needs(2) ? c.grad<T>(2) : nullptr;
          by_columns<T>(B, H, B * 6 * H, [&](std::size_t r, std::size_t j0, std::size_t j1) {
            const T *ao = av + r * 4 * H + 3 * H, *d = dh + r * H, *cr = cv + r * H;
            T* gar = ga ? ga + r * 4 * H + 3 * H : nullptr;
            T* gcr = gc ? gc + r * H : nullptr;
            for_lanes<T>(j0, j1, [&](std::size_t j, auto x) {
              using X = decltype(x);
              const X cj = ld<X>(cr + j), dj = ld<X>(d + j);
              X aj = ld<X>(ao + j);
              if (peep) aj = aj + ld<X>(po + j) * cj;
              const X oj = simd::sigmoid(aj), tj = simd::tanh(cj);
              const X dao = dj * tj * oj * (X(1) - oj);
              if (gar) st(gar + j, ld<X>(gar + j) + dao);
              if (gcr) {
                X v = dj * oj * (X(1) - tj * tj);
                if (peep) v = v + ld<X>(po + j) * dao;
                st(gcr + j, fresh ? v : ld<X>(gcr + j) + v);
              }
              if (gpo) st(gpo + j, ld<X>(gpo + j) + dao * cj);
            });
          });
        });
      },
      [](GraphCtx& g) { g.differentiate([&] { return lstm_hidden_composed(g.in(0), g.in(1), in_or_none(g, 2)); }); });
  return h;
}

}  // namespace

Tensor lstm_hidden(const Tensor& a, const Tensor& c) { return lstm_hidden_impl(a, c, nullptr); }
Tensor lstm_hidden(const Tensor& a, const Tensor& c, const Tensor& p_o) { return lstm_hidden_impl(a, c, &p_o); }

// ---- gru_cell -----------------------------------------------------------------------------------------
// Forward saves nothing: backward recomputes r, z, n and v = hp_n + b_hn from xp, hp and b_hn, its inputs
// (as lstm_cell). Backward, with dh' = the incoming gradient:
//   dn = dh' (1 - z),  dz = dh' (h - n),  du = dn (1 - n^2)   (u = xp_n + r v, n = tanh u)
//   dxp = [dr r (1 - r), dz z (1 - z), du] with dr = du v;  dhp = [same, same, du r];
//   dh = dh' z;  db_hn = sum_rows du r.

Tensor gru_cell(const Tensor& xp, const Tensor& hp, const Tensor& h, const Tensor& b_hn) {
  if (autobatch::in_task()) if (Tensor batched = autobatch::detail::out_of_line([&] { return autobatch::defer(gru_cell_rule, {&xp, &hp, &h, &b_hn}); }); batched.defined()) return batched;
  if (!xp.defined() || xp.rank() != 2 || xp.size(1) % 3 != 0 || xp.size(1) == 0)
    throw Error("gru_cell: input projection xp must be (B, 3H), got " + shape_str(xp));
  const std::size_t B = xp.size(0), H = xp.size(1) / 3;
  if (!hp.defined() || hp.shape() != xp.shape())
    throw Error("gru_cell: recurrent projection hp must be (B, 3H) like xp " + xp.shape().str() + ", got " + shape_str(hp));
  if (!h.defined() || h.shape() != Shape{B, H})
    throw Error("gru_cell: h must be (B, H) = " + Shape{B, H}.str() + " to match xp " + xp.shape().str() + ", got " + shape_str(h));
  if (!b_hn.defined() || b_hn.shape() != Shape{H})
    throw Error("gru_cell: b_hn must be (H) = " + Shape{H}.str() + " to match xp " + xp.shape().str() + ", got " + shape_str(b_hn));
  for (const auto& [name, t] : {std::pair<const char*, const Tensor*>{"hp", &hp}, {"h", &h}, {"b_hn", &b_hn}})
    if (t->dtype() != xp.dtype())
      throw Error(std::string("gru_cell: ") + name + " " + t->shape().str() + " is " + dtype_name(t->dtype()) + ", xp " +
                  xp.shape().str() + " is " + dtype_name(xp.dtype()));
  OpCall call(op_gru_cell, {&xp, &hp, &h, &b_hn});
  Tensor out = call.output({B, H});
  dispatch(call.dtype(), [&](auto z) {
    using T = decltype(z);
    const T *px = data_of<T>(xp), *ph = data_of<T>(hp), *pprev = data_of<T>(h);
    const T* pb = data_of<T>(b_hn);
    T* po = out.data<T>();
    by_columns<T>(B, H, B * 11 * H, [&](std::size_t r, std::size_t j0, std::size_t j1) {
      const T *xr = px + r * 3 * H, *hr = ph + r * 3 * H, *prev = pprev + r * H;
      T* outr = po + r * H;
      for_lanes<T>(j0, j1, [&](std::size_t j, auto x) {
        using X = decltype(x);
        const X rg = simd::sigmoid(ld<X>(xr + j) + ld<X>(hr + j));
        const X zg = simd::sigmoid(ld<X>(xr + H + j) + ld<X>(hr + H + j));
        const X v = ld<X>(hr + 2 * H + j) + ld<X>(pb + j);
        const X n = simd::tanh(ld<X>(xr + 2 * H + j) + rg * v);
        st(outr + j, n + zg * (ld<X>(prev + j) - n));
      });
    });
  });
  call.record(
      [](BackwardCtx& c) {
        const std::size_t B = c.out_shape()[0], H = c.out_shape()[1];
        dispatch(c.dtype(), [&](auto z) {
          using T = decltype(z);
          const T *dout = c.gout<T>(), *xv = c.in<T>(0), *hpv = c.in<T>(1), *hv = c.in<T>(2), *bv = c.in<T>(3);
          // xp and hp are fully written, and so is h's gradient: fresh buffers are assigned. xp and hp have
          // one shape, so the same tensor may be both: then both accumulate into one zero-filled buffer.
          const bool alias = c.node().inputs()[0] == c.node().inputs()[1];
          bool fx = false, fh = false, fprev = false;
          T* gx = !c.needs(0) ? nullptr : alias ? c.grad<T>(0) : c.grad_for_write<T>(0, fx);
          T* gh = !c.needs(1) ? nullptr : alias ? c.grad<T>(1) : c.grad_for_write<T>(1, fh);
          T* gprev = c.needs(2) ? c.grad_for_write<T>(2, fprev) : nullptr;
          T* gb = c.needs(3) ? c.grad<T>(3) : nullptr;
          by_columns<T>(B, H, B * 14 * H, [&](std::size_t r, std::size_t j0, std::size_t j1) {
            const T *xr = xv + r * 3 * H, *pr = hpv + r * 3 * H, *d = dout + r * H, *hr = hv + r * H;
            T* gxr = gx ? gx + r * 3 * H : nullptr;
            T* ghr = gh ? gh + r * 3 * H : nullptr;
            T* gpr = gprev ? gprev + r * H : nullptr;
            for_lanes<T>(j0, j1, [&](std::size_t j, auto x) {
              using X = decltype(x);
              const X rg = simd::sigmoid(ld<X>(xr + j) + ld<X>(pr + j));
              const X zg = simd::sigmoid(ld<X>(xr + H + j) + ld<X>(pr + H + j));
              const X v = ld<X>(pr + 2 * H + j) + ld<X>(bv + j);
              const X n = simd::tanh(ld<X>(xr + 2 * H + j) + rg * v);
              const X dj = ld<X>(d + j);
              const X du = dj * (X(1) - zg) * (X(1) - n * n);
              const X dar = du * v * rg * (X(1) - rg), daz = dj * (ld<X>(hr + j) - n) * zg * (X(1) - zg);
              // Into a new buffer (f = true) the value is assigned, else added.
              const auto put = [](T* p, bool f, const X& val) { st(p, f ? val : ld<X>(p) + val); };
              if (gxr) {
                put(gxr + j, fx, dar);
                put(gxr + H + j, fx, daz);
                put(gxr + 2 * H + j, fx, du);
              }
              if (ghr) {
                put(ghr + j, fh, dar);
                put(ghr + H + j, fh, daz);
                put(ghr + 2 * H + j, fh, du * rg);
              }
              if (gpr) put(gpr + j, fprev, dj * zg);
              if (gb) put(gb + j, false, du * rg);
            });
          });
        });
      },
      [](GraphCtx& g) { g.differentiate([&] { return gru_cell_composed(g.in(0), g.in(1), g.in(2), g.in(3)); }); });
  return out;
}

// ---- rnn_cell -----------------------------------------------------------------------------------------
// Forward: h = xp, h += h_prev W (gemv at B = 1), h = f(h) in place. Backward, with dh the incoming
// gradient: du = dh f'(u) from h, then dxp += du, dh_prev += du W^T, dW += h_prev^T du (deferred for a
// thin product into a leaf, as matmul's).

TAPEGRAD_OP(op_rnn_cell, "rnn_cell", "recurrent");
namespace {
TAPEGRAD_BATCH_RULE(rnn_cell_rule, op_rnn_cell, [](const autobatch::Group& g) {
  if (!rows_then_shared(g, 2)) return Tensor();
  const auto in = rows_and_shared(g, 2);
  return batching::split_rows(rnn_cell(in[0], in[1], in[2], static_cast<Activation>(g.key(0))), g.size());
});
}  // namespace

namespace {

struct RNNCellAttrs {
  Activation f;
};

}  // namespace

Tensor rnn_cell(const Tensor& xp, const Tensor& h_prev, const Tensor& W, Activation f) {
  if (autobatch::in_task()) if (Tensor batched = autobatch::detail::out_of_line([&] { return autobatch::defer(rnn_cell_rule, {&xp, &h_prev, &W}, {static_cast<std::int64_t>(f)}); }); batched.defined()) return batched;
  if (!W.defined() || W.rank() != 2 || W.size(0) != W.size(1))
    throw Error("rnn_cell: W must be square (H, H), got " + shape_str(W));
  const std::size_t H = W.size(0);
  if (!h_prev.defined() || h_prev.rank() != 2 || h_prev.size(1) != H)
    throw Error("rnn_cell: h_prev must be (B, H) with H = " + std::to_string(H) + " to match W " + W.shape().str() +
                ", got " + shape_str(h_prev));
  const std::size_t B = h_prev.size(0);
  if (!xp.defined() || xp.shape() != Shape{B, H})
    throw Error("rnn_cell: xp must be (B, H) = " + Shape{B, H}.str() + " to match h_prev " + h_prev.shape().str() +
                " and W " + W.shape().str() + ", got " + shape_str(xp));
  OpCall call(op_rnn_cell, {&xp, &h_prev, &W});
  call.attrs<RNNCellAttrs>().f = f;
  Tensor h = call.output({B, H});
  dispatch(call.dtype(), [&](auto z) {
    using T = decltype(z);
    T* ph = h.data<T>();
    std::copy_n(data_of<T>(xp), B * H, ph);
    kernels::product(B, H, H, data_of<T>(h_prev), data_of<T>(W), ph, T(1));
    parallel::for_range(B * H, 2 * B * H, [&](std::size_t j0, std::size_t j1) {
      for_lanes<T>(j0, j1, [&](std::size_t j, auto x) {
        using X = decltype(x);
        const X u = ld<X>(ph + j);
        st(ph + j, simd::activate(f, u));
      });
    }, 64);
  });
  call.record(
      [](BackwardCtx& c) {
        const std::size_t B = c.out_shape()[0], H = c.out_shape()[1];
        dispatch(c.dtype(), [&](auto z) {
          using T = decltype(z);
          // du is xp's gradient: written straight into xp's buffer when that is new, unless a deferred dW
          // will read du after the sweep (xp's buffer may still take other contributions) or xp is also
          // h_prev or W (their gradients are written from du). Else du goes to tape scratch.
          const std::uint32_t* ids = c.node().inputs();
          bool fresh = false;
          T* gx = c.needs(0) && ids[0] != ids[1] && ids[0] != ids[2] && !kernels::may_defer_grad_b(B, H, H)
                      ? c.grad_for_write<T>(0, fresh)
                      : nullptr;
          T* du = fresh ? gx : c.scratch<T>(B * H);
          const T *gy = c.gout<T>(), *y = c.out<T>();
          const Activation f = c.attrs<RNNCellAttrs>().f;
          const bool add = gx && !fresh;
          parallel::for_range(B * H, 4 * B * H, [&](std::size_t i0, std::size_t i1) {
            simd::times_derivative(f, gy + i0, y + i0, du + i0, i1 - i0);
            if (add)
              for (std::size_t i = i0; i < i1; ++i) gx[i] += du[i];
          });
          if (!gx && c.needs(0)) c.accumulate<T>(0, du, c.out_shape());
          kernels::product_grads<T>(c, 1, 2, 1, B, H, H, du);
        });
      },
      [](GraphCtx& g) {
        g.differentiate([&] { return rnn_cell_composed(g.in(0), g.in(1), g.in(2), g.attrs<RNNCellAttrs>().f); });
      });
  return h;
}

// ---- rnn_sequence -------------------------------------------------------------------------------------
// Forward: per step, as rnn_cell, into row block t of the output. Backward, with g the incoming gradient
// (T, B, H) and dh = 0 after the last step: du_t = (g_t + dh) f'(h_t), dh = du_t W^T, back to t = 0; then
// dxp += du, dh0 += du_0 W^T, dW += h0^T du_0 + [h_0..h_(T-2)]^T [du_1..du_(T-1)]: one product over the
// (T-1)*B rows of y (a GEMM even at B = 1, where T rank-1 updates would be T ger calls).

TAPEGRAD_OP(op_rnn_sequence, "rnn_sequence", "recurrent");

Tensor rnn_sequence(const Tensor& xp, const Tensor& h0, const Tensor& W, Activation f) {
  if (!W.defined() || W.rank() != 2 || W.size(0) != W.size(1))
    throw Error("rnn_sequence: W must be square (H, H), got " + shape_str(W));
  const std::size_t H = W.size(0);
  if (!h0.defined() || h0.rank() != 2 || h0.size(1) != H)
    throw Error("rnn_sequence: h0 must be (B, H) with H = " + std::to_string(H) + " to match W " + W.shape().str() +
                ", got " + shape_str(h0));
  const std::size_t B = h0.size(0);
  const bool ok = xp.defined() && ((xp.rank() == 3 && xp.size(1) == B && xp.size(2) == H) ||
                                   (xp.rank() == 2 && B > 0 && xp.size(0) % B == 0 && xp.size(1) == H));
  if (!ok || xp.numel() == 0)
    throw Error("rnn_sequence: xp must be (T, B, H) or (T*B, H) with T > 0, B = " + std::to_string(B) + ", H = " +
                std::to_string(H) + " (h0 " + h0.shape().str() + ", W " + W.shape().str() + "), got " + shape_str(xp));
  const std::size_t T = xp.numel() / (B * H);
  OpCall call(op_rnn_sequence, {&xp, &h0, &W});
  call.attrs<RNNCellAttrs>().f = f;
  Tensor y = call.output({T, B, H});
  dispatch(call.dtype(), [&](auto z) {
    using T_ = decltype(z);
    T_* py = y.data<T_>();
    const T_* pw = data_of<T_>(W);
    std::copy_n(data_of<T_>(xp), T * B * H, py);
    for (std::size_t t = 0; t < T; ++t) {
      T_* ht = py + t * B * H;
      kernels::product(B, H, H, t ? ht - B * H : data_of<T_>(h0), pw, ht, T_(1));
      for_lanes<T_>(B * H, [&](std::size_t j, auto x) {
        using X = decltype(x);
        st(ht + j, simd::activate(f, ld<X>(ht + j)));
      });
    }
  });
  call.record(
      [](BackwardCtx& c) {
        const std::size_t T = c.out_shape()[0], B = c.out_shape()[1], H = c.out_shape()[2], BH = B * H;
        dispatch(c.dtype(), [&](auto z) {
          using T_ = decltype(z);
          const Activation f = c.attrs<RNNCellAttrs>().f;
          const T_ *g = c.gout<T_>(), *y = c.out<T_>(), *w = c.in<T_>(2);
          // du is xp's gradient when that buffer is new and is no other input's (see rnn_cell).
          const std::uint32_t* ids = c.node().inputs();
          bool fresh = false;
          T_* gx = c.needs(0) && ids[0] != ids[1] && ids[0] != ids[2] ? c.grad_for_write<T_>(0, fresh) : nullptr;
          T_* du = fresh ? gx : c.scratch<T_>(T * BH);
          T_* dh = c.scratch<T_>(BH);  // du_(t+1) W^T
          for (std::size_t t = T; t-- > 0;) {
            T_* dut = du + t * BH;
            const T_* gt = g + t * BH;
            if (t + 1 < T)
              for (std::size_t i = 0; i < BH; ++i) dut[i] = gt[i] + dh[i];
            simd::times_derivative(f, t + 1 < T ? static_cast<const T_*>(dut) : gt, y + t * BH, dut, BH);
            if (t > 0) kernels::product_bt(B, H, H, dut, w, dh, T_(0));
          }
          if (gx && !fresh) {
            for (std::size_t i = 0; i < T * BH; ++i) gx[i] += du[i];
          } else if (!gx && c.needs(0)) {
            c.accumulate<T_>(0, du, c.in_shape(0));
          }
          if (c.needs(1)) {  // dh0 += du_0 W^T
            T_* gh = c.grad_for_write<T_>(1, fresh);
            kernels::product_bt(B, H, H, static_cast<const T_*>(du), w, gh, fresh ? T_(0) : T_(1));
          }
          if (c.needs(2)) {  // dW += h0^T du_0 + [h_0..h_(T-2)]^T [du_1..du_(T-1)]: the states already lie
                             // in consecutive rows of y, so one product over (T-1)*B rows, without a copy
            T_* gw = c.grad_for_write<T_>(2, fresh);
            kernels::product_at(B, H, H, c.in<T_>(1), static_cast<const T_*>(du), gw, fresh ? T_(0) : T_(1));
            if (T > 1)
              kernels::product_at((T - 1) * B, H, H, y, static_cast<const T_*>(du + BH), gw, T_(1));
          }
        });
      },
      [](GraphCtx& g) {
        g.differentiate([&] { return rnn_sequence_composed(g.in(0), g.in(1), g.in(2), g.attrs<RNNCellAttrs>().f); });
      });
  return y;
}

}  // namespace tapegrad
