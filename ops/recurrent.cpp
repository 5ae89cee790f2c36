// Recurrent family: the fused pointwise parts of the LSTM and GRU steps (see recurrent.hpp for why they
// exist).
// Each op: forward (xtensor over each row's contiguous H-blocks, so xsimd vectorises exp/tanh) and its
// backward on raw buffers from the gate values saved by forward. For create_graph, each differentiates
// its composed form (below): the derivative is not written a second time in primitive ops.
#include "tapegrad/ops/recurrent.hpp"

#include <string>
#include <xtensor/xmath.hpp>
#include <xtensor/xnoalias.hpp>

#include "tapegrad/autograd/op.hpp"
#include "tapegrad/ops/activation.hpp"
#include "tapegrad/ops/elementwise.hpp"
#include "tapegrad/ops/kernels.hpp"
#include "tapegrad/ops/shape.hpp"

namespace tapegrad {

TAPEGRAD_OP(op_lstm_cell, "lstm_cell", "recurrent");
TAPEGRAD_OP(op_lstm_hidden, "lstm_hidden", "recurrent");
TAPEGRAD_OP(op_gru_cell, "gru_cell", "recurrent");

namespace {

struct SavedGates {  // the gate values forward computed, in the arena, of the inputs' dtype
  const void* values;
};

using kernels::flat;

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

// Input i of a fused op's node, or undefined when the op was called without it (the peepholes).
Tensor in_or_none(const GraphCtx& g, std::size_t i) { return i < g.num_inputs() ? g.in(i) : Tensor(); }

}  // namespace

// ---- the composed forms (the math: nn/rnn.hpp, above LSTMCell and GRUCell) -----------------------------

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

// ---- lstm_cell ----------------------------------------------------------------------------------------
// Forward saves i, f, g per row (3H). Backward, with dc = the incoming gradient of c:
//   da_i = dc g i (1 - i),  da_f = dc c_prev f (1 - f),  da_g = dc i (1 - g^2),  (da_o: none here)
//   dc_prev = dc f + p_i da_i + p_f da_f,  dp_i = sum_rows da_i c_prev,  dp_f = sum_rows da_f c_prev.

namespace {

Tensor lstm_cell_impl(const Tensor& a, const Tensor& c_prev, const Tensor* p_i, const Tensor* p_f) {
  const std::size_t H = p_i ? check_lstm("lstm_cell", a, c_prev, "c_prev", {{"p_i", p_i}, {"p_f", p_f}})
                            : check_lstm("lstm_cell", a, c_prev, "c_prev", {});
  const std::size_t B = a.size(0);
  OpCall call = p_i ? OpCall(op_lstm_cell, {&a, &c_prev, p_i, p_f}) : OpCall(op_lstm_cell, {&a, &c_prev});
  Tensor c = call.output({B, H});
  dispatch(call.dtype(), [&](auto z) {
    using T = decltype(z);
    T* ifg = call.save<T>(3 * B * H);
    call.attrs<SavedGates>().values = ifg;
    const T *pa = data_of<T>(a), *pcp = data_of<T>(c_prev);
    T* pc = c.data<T>();
    for (std::size_t r = 0; r < B; ++r) {
      const T* ar = pa + r * 4 * H;
      T* s = ifg + r * 3 * H;
      auto vi = flat(s, H), vf = flat(s + H, H), vg = flat(s + 2 * H, H);
      auto vcp = flat(pcp + r * H, H);
      if (p_i) {
        xt::noalias(vi) = T(1) / (T(1) + xt::exp(-(flat(ar, H) + flat(data_of<T>(*p_i), H) * vcp)));
        xt::noalias(vf) = T(1) / (T(1) + xt::exp(-(flat(ar + H, H) + flat(data_of<T>(*p_f), H) * vcp)));
      } else {
        xt::noalias(vi) = T(1) / (T(1) + xt::exp(-flat(ar, H)));
        xt::noalias(vf) = T(1) / (T(1) + xt::exp(-flat(ar + H, H)));
      }
      xt::noalias(vg) = xt::tanh(flat(ar + 2 * H, H));
      xt::noalias(flat(pc + r * H, H)) = vf * vcp + vi * vg;
    }
  });
  call.record(
      [](BackwardCtx& c) {
        const std::size_t B = c.out_shape()[0], H = c.out_shape()[1];
        const bool peep = c.num_inputs() == 4;
        dispatch(c.dtype(), [&](auto z) {
          using T = decltype(z);
          const T *dc = c.gout<T>(), *ifg = static_cast<const T*>(c.attrs<SavedGates>().values), *cp = c.in<T>(1);
          const T* pi = peep ? c.in<T>(2) : nullptr;
          const T* pf = peep ? c.in<T>(3) : nullptr;
          // a's gradient is written in 3 of its 4 blocks (zero-filled first); c_prev's in full, so a fresh
          // buffer is assigned rather than accumulated into. The inputs' shapes differ: no two alias.
          bool fresh = false;
          T* ga = c.needs(0) ? c.grad<T>(0) : nullptr;
          T* gcp = c.needs(1) ? c.grad_for_write<T>(1, fresh) : nullptr;
          T* gpi = peep && c.needs(2) ? c.grad<T>(2) : nullptr;
          T* gpf = peep && c.needs(3) ? c.grad<T>(3) : nullptr;
          for (std::size_t r = 0; r < B; ++r) {
            const T *s = ifg + r * 3 * H, *d = dc + r * H, *cpr = cp + r * H;
            T* gar = ga ? ga + r * 4 * H : nullptr;
            T* gcpr = gcp ? gcp + r * H : nullptr;
            for (std::size_t j = 0; j < H; ++j) {
              const T i = s[j], f = s[H + j], g = s[2 * H + j];
              const T dai = d[j] * g * i * (T(1) - i), daf = d[j] * cpr[j] * f * (T(1) - f);
              if (gar) {
                gar[j] += dai;
                gar[H + j] += daf;
                gar[2 * H + j] += d[j] * i * (T(1) - g * g);
              }
              if (gcpr) gcpr[j] = (fresh ? T(0) : gcpr[j]) + d[j] * f + (peep ? pi[j] * dai + pf[j] * daf : T(0));
              if (gpi) gpi[j] += dai * cpr[j];
              if (gpf) gpf[j] += daf * cpr[j];
            }
          }
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
// Forward saves o and tanh(c) per row (2H). Backward, with dh = the incoming gradient of h:
//   da_o = dh tanh(c) o (1 - o),  dc = dh o (1 - tanh(c)^2) + p_o da_o,  dp_o = sum_rows da_o c.

namespace {

Tensor lstm_hidden_impl(const Tensor& a, const Tensor& c, const Tensor* p_o) {
  const std::size_t H = p_o ? check_lstm("lstm_hidden", a, c, "c", {{"p_o", p_o}}) : check_lstm("lstm_hidden", a, c, "c", {});
  const std::size_t B = a.size(0);
  OpCall call = p_o ? OpCall(op_lstm_hidden, {&a, &c, p_o}) : OpCall(op_lstm_hidden, {&a, &c});
  Tensor h = call.output({B, H});
  dispatch(call.dtype(), [&](auto z) {
    using T = decltype(z);
    T* otc = call.save<T>(2 * B * H);
    call.attrs<SavedGates>().values = otc;
    const T *pa = data_of<T>(a), *pc = data_of<T>(c);
    T* ph = h.data<T>();
    for (std::size_t r = 0; r < B; ++r) {
      const T* ao = pa + r * 4 * H + 3 * H;
      auto vo = flat(otc + r * 2 * H, H), vtc = flat(otc + r * 2 * H + H, H);
      auto vc = flat(pc + r * H, H);
      if (p_o) xt::noalias(vo) = T(1) / (T(1) + xt::exp(-(flat(ao, H) + flat(data_of<T>(*p_o), H) * vc)));
      else xt::noalias(vo) = T(1) / (T(1) + xt::exp(-flat(ao, H)));
      xt::noalias(vtc) = xt::tanh(vc);
      xt::noalias(flat(ph + r * H, H)) = vo * vtc;
    }
  });
  call.record(
      [](BackwardCtx& c) {
        const std::size_t B = c.out_shape()[0], H = c.out_shape()[1];
        const bool peep = c.num_inputs() == 3;
        dispatch(c.dtype(), [&](auto z) {
          using T = decltype(z);
          const T *dh = c.gout<T>(), *otc = static_cast<const T*>(c.attrs<SavedGates>().values), *cv = c.in<T>(1);
          const T* po = peep ? c.in<T>(2) : nullptr;
          // c's gradient is written in full: a fresh buffer is assigned rather than accumulated into.
          bool fresh = false;
          T* ga = c.needs(0) ? c.grad<T>(0) : nullptr;
          T* gc = c.needs(1) ? c.grad_for_write<T>(1, fresh) : nullptr;
          T* gpo = peep && c.needs(2) ? c.grad<T>(2) : nullptr;
          for (std::size_t r = 0; r < B; ++r) {
            const T *o = otc + r * 2 * H, *tc = o + H, *d = dh + r * H, *cr = cv + r * H;
            T* gar = ga ? ga + r * 4 * H + 3 * H : nullptr;
            T* gcr = gc ? gc + r * H : nullptr;
            for (std::size_t j = 0; j < H; ++j) {
              const T dao = d[j] * tc[j] * o[j] * (T(1) - o[j]);
              if (gar) gar[j] += dao;
              if (gcr) gcr[j] = (fresh ? T(0) : gcr[j]) + d[j] * o[j] * (T(1) - tc[j] * tc[j]) + (peep ? po[j] * dao : T(0));
              if (gpo) gpo[j] += dao * cr[j];
            }
          }
        });
      },
      [](GraphCtx& g) { g.differentiate([&] { return lstm_hidden_composed(g.in(0), g.in(1), in_or_none(g, 2)); }); });
  return h;
}

}  // namespace

Tensor lstm_hidden(const Tensor& a, const Tensor& c) { return lstm_hidden_impl(a, c, nullptr); }
Tensor lstm_hidden(const Tensor& a, const Tensor& c, const Tensor& p_o) { return lstm_hidden_impl(a, c, &p_o); }

// ---- gru_cell -----------------------------------------------------------------------------------------
// Forward saves r, z, n and v = hp_n + b_hn per row (4H). Backward, with dh' = the incoming gradient:
//   dn = dh' (1 - z),  dz = dh' (h - n),  du = dn (1 - n^2)   (u = xp_n + r v, n = tanh u)
//   dxp = [dr r (1 - r), dz z (1 - z), du] with dr = du v;  dhp = [same, same, du r];
//   dh = dh' z;  db_hn = sum_rows du r.

Tensor gru_cell(const Tensor& xp, const Tensor& hp, const Tensor& h, const Tensor& b_hn) {
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
    T* rznv = call.save<T>(4 * B * H);
    call.attrs<SavedGates>().values = rznv;
    const T *px = data_of<T>(xp), *ph = data_of<T>(hp), *pprev = data_of<T>(h);
    auto vb = flat(data_of<T>(b_hn), H);
    T* po = out.data<T>();
    for (std::size_t r = 0; r < B; ++r) {
      const T *xr = px + r * 3 * H, *hr = ph + r * 3 * H;
      T* s = rznv + r * 4 * H;
      auto vr = flat(s, H), vz = flat(s + H, H), vn = flat(s + 2 * H, H), vv = flat(s + 3 * H, H);
      auto vh = flat(pprev + r * H, H);
      xt::noalias(vr) = T(1) / (T(1) + xt::exp(-(flat(xr, H) + flat(hr, H))));
      xt::noalias(vz) = T(1) / (T(1) + xt::exp(-(flat(xr + H, H) + flat(hr + H, H))));
      xt::noalias(vv) = flat(hr + 2 * H, H) + vb;
      xt::noalias(vn) = xt::tanh(flat(xr + 2 * H, H) + vr * vv);
      xt::noalias(flat(po + r * H, H)) = vn + vz * (vh - vn);
    }
  });
  call.record(
      [](BackwardCtx& c) {
        const std::size_t B = c.out_shape()[0], H = c.out_shape()[1];
        dispatch(c.dtype(), [&](auto z) {
          using T = decltype(z);
          const T *dout = c.gout<T>(), *rznv = static_cast<const T*>(c.attrs<SavedGates>().values), *hv = c.in<T>(2);
          // xp and hp are fully written, and so is h's gradient: fresh buffers are assigned. xp and hp have
          // one shape, so the same tensor may be both: then both accumulate into one zero-filled buffer.
          const bool alias = c.node().inputs()[0] == c.node().inputs()[1];
          bool fx = false, fh = false, fprev = false;
          T* gx = !c.needs(0) ? nullptr : alias ? c.grad<T>(0) : c.grad_for_write<T>(0, fx);
          T* gh = !c.needs(1) ? nullptr : alias ? c.grad<T>(1) : c.grad_for_write<T>(1, fh);
          T* gprev = c.needs(2) ? c.grad_for_write<T>(2, fprev) : nullptr;
          T* gb = c.needs(3) ? c.grad<T>(3) : nullptr;
          for (std::size_t r = 0; r < B; ++r) {
            const T *s = rznv + r * 4 * H, *d = dout + r * H, *hr = hv + r * H;
            T* gxr = gx ? gx + r * 3 * H : nullptr;
            T* ghr = gh ? gh + r * 3 * H : nullptr;
            T* gpr = gprev ? gprev + r * H : nullptr;
            for (std::size_t j = 0; j < H; ++j) {
              const T rg = s[j], zg = s[H + j], n = s[2 * H + j], v = s[3 * H + j];
              const T du = d[j] * (T(1) - zg) * (T(1) - n * n);
              const T dar = du * v * rg * (T(1) - rg), daz = d[j] * (hr[j] - n) * zg * (T(1) - zg);
              if (gxr) {
                gxr[j] = (fx ? T(0) : gxr[j]) + dar;
                gxr[H + j] = (fx ? T(0) : gxr[H + j]) + daz;
                gxr[2 * H + j] = (fx ? T(0) : gxr[2 * H + j]) + du;
              }
              if (ghr) {
                ghr[j] = (fh ? T(0) : ghr[j]) + dar;
                ghr[H + j] = (fh ? T(0) : ghr[H + j]) + daz;
                ghr[2 * H + j] = (fh ? T(0) : ghr[2 * H + j]) + du * rg;
              }
              if (gpr) gpr[j] = (fprev ? T(0) : gpr[j]) + d[j] * zg;
              if (gb) gb[j] += du * rg;
            }
          }
        });
      },
      [](GraphCtx& g) { g.differentiate([&] { return gru_cell_composed(g.in(0), g.in(1), g.in(2), g.in(3)); }); });
  return out;
}

}  // namespace tapegrad
