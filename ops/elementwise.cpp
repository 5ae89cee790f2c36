// Elementwise family. Each op: forward kernel, then its backward (raw buffers) and its differentiable
// backward (ops, for create_graph), side by side. Broadcast inputs get gradients of the output's shape;
// the engine sums them down to each input's shape (BackwardCtx::accumulate / GraphCtx::accumulate).
#include "tapegrad/ops/elementwise.hpp"

#include <cmath>
#include <string>
#include <xtensor/xmath.hpp>
#include <xtensor/xnoalias.hpp>

#include "tapegrad/autograd/op.hpp"
#include "tapegrad/ops/batching.hpp"
#include "tapegrad/ops/kernels.hpp"

namespace tapegrad {

TAPEGRAD_OP(op_add, "add", "elementwise");
TAPEGRAD_OP(op_sub, "sub", "elementwise");
TAPEGRAD_OP(op_mul, "mul", "elementwise");
TAPEGRAD_OP(op_div, "div", "elementwise");
TAPEGRAD_OP(op_pow, "pow", "elementwise");
TAPEGRAD_OP(op_pow_scalar, "pow_scalar", "elementwise");
TAPEGRAD_OP(op_add_scalar, "add_scalar", "elementwise");
TAPEGRAD_OP(op_mul_scalar, "mul_scalar", "elementwise");
TAPEGRAD_OP(op_neg, "neg", "elementwise");
TAPEGRAD_OP(op_exp, "exp", "elementwise");
TAPEGRAD_OP(op_log, "log", "elementwise");
TAPEGRAD_OP(op_sqrt, "sqrt", "elementwise");
TAPEGRAD_OP(op_abs, "abs", "elementwise");
TAPEGRAD_OP(op_clamp, "clamp", "elementwise");
TAPEGRAD_OP(op_where, "where", "elementwise");

// Batching rules (autograd/autobatch.hpp): an elementwise op on stacked inputs, each stacked input given
// unit axes so that it broadcasts against the others as one call's did; shared inputs broadcast as is.
namespace {
using autobatch::Group;
template <Tensor (*F)(const Tensor&)> Tensor unary_rule(const Group& g) { return F(g.in(0)); }
template <Tensor (*F)(const Tensor&, const Tensor&)> Tensor binary_rule(const Group& g) {
  const std::size_t r = batching::max_call_rank(g);
  return F(batching::aligned(g, 0, r), batching::aligned(g, 1, r));
}
Tensor pow_tensor(const Tensor& a, const Tensor& b) { return pow(a, b); }
TAPEGRAD_BATCH_RULE(add_rule, op_add, binary_rule<add>);
TAPEGRAD_BATCH_RULE(sub_rule, op_sub, binary_rule<sub>);
TAPEGRAD_BATCH_RULE(mul_rule, op_mul, binary_rule<mul>);
TAPEGRAD_BATCH_RULE(div_rule, op_div, binary_rule<div>);
TAPEGRAD_BATCH_RULE(pow_rule, op_pow, binary_rule<pow_tensor>);
TAPEGRAD_BATCH_RULE(neg_rule, op_neg, unary_rule<neg>);
TAPEGRAD_BATCH_RULE(exp_rule, op_exp, unary_rule<exp>);
TAPEGRAD_BATCH_RULE(log_rule, op_log, unary_rule<log>);
TAPEGRAD_BATCH_RULE(sqrt_rule, op_sqrt, unary_rule<sqrt>);
TAPEGRAD_BATCH_RULE(abs_rule, op_abs, unary_rule<abs>);
TAPEGRAD_BATCH_RULE(pow_scalar_rule, op_pow_scalar, [](const Group& g) { return pow(g.in(0), g.key_double(0)); });
TAPEGRAD_BATCH_RULE(add_scalar_rule, op_add_scalar, [](const Group& g) { return add_scalar(g.in(0), g.key_double(0)); });
TAPEGRAD_BATCH_RULE(mul_scalar_rule, op_mul_scalar, [](const Group& g) { return mul_scalar(g.in(0), g.key_double(0)); });
TAPEGRAD_BATCH_RULE(clamp_rule, op_clamp, [](const Group& g) { return clamp(g.in(0), g.key_double(0), g.key_double(1)); });
TAPEGRAD_BATCH_RULE(where_rule, op_where, [](const Group& g) {
  const std::size_t r = batching::max_call_rank(g);
  return where(batching::aligned(g, 0, r), batching::aligned(g, 1, r), batching::aligned(g, 2, r));
});
}  // namespace

namespace {

// True when t broadcasts to s as one repeated block of s's trailing values (a bias row added to every
// row of a matrix): t without its leading 1s equals s's last dims. `inner` = the block's length.
bool trailing_block(const Shape& t, const Shape& s, std::size_t& inner) {
  std::size_t lead = 0;
  while (lead < t.rank() && t[lead] == 1) ++lead;
  const std::size_t k = t.rank() - lead;
  if (k > s.rank()) return false;
  for (std::size_t i = 0; i < k; ++i)
    if (t[lead + i] != s[s.rank() - k + i]) return false;
  inner = t.numel();
  return inner > 0;
}

// Runs out[i] = f(a[ia], b[ib]) over the broadcast of a and b.
template <class F> Tensor binary(OpCall& call, const Tensor& a, const Tensor& b, F f) {
  const Shape s = broadcast_shapes(call.name(), a.shape(), b.shape());
  Tensor y = call.output(s);
  dispatch(call.dtype(), [&](auto z) {
    using T = decltype(z);
    const T* pa = static_cast<const T*>(a.raw_data());
    const T* pb = static_cast<const T*>(b.raw_data());
    T* py = y.data<T>();
    const std::size_t n = s.numel();
    // The common layouts split across threads for a large output (ops/parallel_for.hpp), by elements or rows.
    if (a.shape() == s && b.shape() == s) {
      parallel::for_range(n, 3 * n, [&](std::size_t i0, std::size_t i1) {
        for (std::size_t i = i0; i < i1; ++i) py[i] = f(pa[i], pb[i]);
      });
    } else if (a.shape() == s && b.numel() == 1) {
      const T bv = pb[0];
      parallel::for_range(n, 2 * n, [&](std::size_t i0, std::size_t i1) {
        for (std::size_t i = i0; i < i1; ++i) py[i] = f(pa[i], bv);
      });
    } else if (std::size_t inner = 0; a.shape() == s && trailing_block(b.shape(), s, inner)) {
      parallel::for_range(n / inner, 2 * n, [&](std::size_t r0, std::size_t r1) {
        for (std::size_t r = r0 * inner; r < r1 * inner; r += inner)  // rows of a with the block b: vectorised
          for (std::size_t j = 0; j < inner; ++j) py[r + j] = f(pa[r + j], pb[j]);
      });
    } else if (b.shape() == s && trailing_block(a.shape(), s, inner)) {
      parallel::for_range(n / inner, 2 * n, [&](std::size_t r0, std::size_t r1) {
        for (std::size_t r = r0 * inner; r < r1 * inner; r += inner)
          for (std::size_t j = 0; j < inner; ++j) py[r + j] = f(pa[j], pb[r + j]);
      });
    } else {
      kernels::broadcast_index(s, a.shape(), b.shape(), [&](std::size_t i, std::size_t ia, std::size_t ib) { py[i] = f(pa[ia], pb[ib]); });
    }
  });
  return y;
}

// A binary op's backward: da = fa(gy, a, b, y), db = fb(gy, a, b, y) over the output (a and b read where
// they broadcast), into scratch of the output's shape that accumulate sums down to each input's shape.
template <class FA, class FB> void binary_grad(BackwardCtx& c, FA fa, FB fb) {
  dispatch(c.dtype(), [&](auto z) {
    using T = decltype(z);
    const Shape& s = c.out_shape();
    const T *gy = c.gout<T>(), *a = c.in<T>(0), *b = c.in<T>(1), *y = c.out<T>();
    T* ta = c.needs(0) ? c.scratch<T>(s.numel()) : nullptr;
    T* tb = c.needs(1) ? c.scratch<T>(s.numel()) : nullptr;
    auto at = [&](std::size_t i, std::size_t ia, std::size_t ib) {
      if (ta) ta[i] = fa(gy[i], a[ia], b[ib], y[i]);
      if (tb) tb[i] = fb(gy[i], a[ia], b[ib], y[i]);
    };
    if (c.in_shape(0) == s && c.in_shape(1) == s) {
      const std::size_t n = s.numel();
      parallel::for_range(n, 5 * n, [&](std::size_t i0, std::size_t i1) {
        for (std::size_t i = i0; i < i1; ++i) at(i, i, i);
      });
    } else {
      kernels::broadcast_index(s, c.in_shape(0), c.in_shape(1), at);
    }
    if (ta) c.accumulate<T>(0, ta, s);
    if (tb) c.accumulate<T>(1, tb, s);
  });
}

using kernels::unary_grad;

struct ScalarAttrs {
  double value;
};
struct RangeAttrs {
  double lo, hi;
};

}  // namespace

// d(a+b) = da + db
Tensor add(const Tensor& a, const Tensor& b) {
  if (autobatch::in_task()) if (Tensor batched = autobatch::detail::out_of_line([&] { return autobatch::defer(add_rule, {&a, &b}); }); batched.defined()) return batched;
  OpCall call(op_add, {&a, &b});
  Tensor y = binary(call, a, b, [](auto u, auto v) { return u + v; });
  call.record(
      [](BackwardCtx& c) {
        dispatch(c.dtype(), [&](auto z) {
          using T = decltype(z);
          for (std::size_t k = 0; k < 2; ++k)
            if (c.needs(k)) c.accumulate<T>(k, c.gout<T>(), c.out_shape());
        });
      },
      [](GraphCtx& g) {
        g.accumulate(0, g.gout());
        g.accumulate(1, g.gout());
      });
  return y;
}

// d(a-b) = da - db
Tensor sub(const Tensor& a, const Tensor& b) {
  if (autobatch::in_task()) if (Tensor batched = autobatch::detail::out_of_line([&] { return autobatch::defer(sub_rule, {&a, &b}); }); batched.defined()) return batched;
  OpCall call(op_sub, {&a, &b});
  Tensor y = binary(call, a, b, [](auto u, auto v) { return u - v; });
  call.record(
      [](BackwardCtx& c) {
        dispatch(c.dtype(), [&](auto z) {
          using T = decltype(z);
          if (c.needs(0)) c.accumulate<T>(0, c.gout<T>(), c.out_shape());
          if (c.needs(1)) {
            const std::size_t n = c.out_shape().numel();
            T* t = c.scratch<T>(n);
            for (std::size_t i = 0; i < n; ++i) t[i] = -c.gout<T>()[i];
            c.accumulate<T>(1, t, c.out_shape());
          }
        });
      },
      [](GraphCtx& g) {
        g.accumulate(0, g.gout());
        g.accumulate(1, neg(g.gout()));
      });
  return y;
}

// d(ab) = b da + a db
Tensor mul(const Tensor& a, const Tensor& b) {
  if (autobatch::in_task()) if (Tensor batched = autobatch::detail::out_of_line([&] { return autobatch::defer(mul_rule, {&a, &b}); }); batched.defined()) return batched;
  OpCall call(op_mul, {&a, &b});
  Tensor y = binary(call, a, b, [](auto u, auto v) { return u * v; });
  call.record(
      [](BackwardCtx& c) {
        if (c.in_shape(0) == c.out_shape() && c.in_shape(1) == c.out_shape()) {  // no broadcast: in place
          return dispatch(c.dtype(), [&](auto z) {
            using T = decltype(z);
            const T *gy = c.gout<T>(), *a = c.in<T>(0), *b = c.in<T>(1);
            const std::size_t n = c.out_shape().numel();
            T* ga = c.needs(0) ? c.grad<T>(0) : nullptr;
            T* gb = c.needs(1) ? c.grad<T>(1) : nullptr;
            parallel::for_range(n, 5 * n, [&](std::size_t i0, std::size_t i1) {
              if (ga) for (std::size_t i = i0; i < i1; ++i) ga[i] += gy[i] * b[i];
              if (gb) for (std::size_t i = i0; i < i1; ++i) gb[i] += gy[i] * a[i];
            });
          });
        }
        binary_grad(c, [](auto gy, auto, auto b, auto) { return gy * b; }, [](auto gy, auto a, auto, auto) { return gy * a; });
      },
      [](GraphCtx& g) {
        if (g.needs(0)) g.accumulate(0, g.gout() * g.in(1));
        if (g.needs(1)) g.accumulate(1, g.gout() * g.in(0));
      });
  return y;
}

// d(a/b) = da / b - (a / b^2) db
Tensor div(const Tensor& a, const Tensor& b) {
  if (autobatch::in_task()) if (Tensor batched = autobatch::detail::out_of_line([&] { return autobatch::defer(div_rule, {&a, &b}); }); batched.defined()) return batched;
  OpCall call(op_div, {&a, &b});
  Tensor y = binary(call, a, b, [](auto u, auto v) { return u / v; });
  call.record(
      [](BackwardCtx& c) {
        binary_grad(c, [](auto gy, auto, auto b, auto) { return gy / b; },
                    [](auto gy, auto a, auto b, auto) { return -gy * a / (b * b); });
      },
      [](GraphCtx& g) {
        if (g.needs(0)) g.accumulate(0, g.gout() / g.in(1));
        if (g.needs(1)) g.accumulate(1, neg(g.gout() * g.in(0) / (g.in(1) * g.in(1))));
      });
  return y;
}

// d(a^b) = b a^(b-1) da + a^b log(a) db
Tensor pow(const Tensor& a, const Tensor& b) {
  if (autobatch::in_task()) if (Tensor batched = autobatch::detail::out_of_line([&] { return autobatch::defer(pow_rule, {&a, &b}); }); batched.defined()) return batched;
  OpCall call(op_pow, {&a, &b});
  Tensor y = binary(call, a, b, [](auto u, auto v) { return std::pow(u, v); });
  call.record(
      [](BackwardCtx& c) {
        binary_grad(c, [](auto gy, auto a, auto b, auto) { return gy * b * std::pow(a, b - decltype(b)(1)); },
                    [](auto gy, auto a, auto, auto y) { return gy * y * std::log(a); });
      },
      [](GraphCtx& g) {
        if (g.needs(0)) g.accumulate(0, g.gout() * g.in(1) * pow(g.in(0), g.in(1) - 1.0));
        if (g.needs(1)) g.accumulate(1, g.gout() * g.out() * log(g.in(0)));
      });
  return y;
}

// d(x^p) = p x^(p-1) dx
Tensor pow(const Tensor& x, double p) {
  if (autobatch::in_task()) if (Tensor batched = autobatch::detail::out_of_line([&] { return autobatch::defer(pow_scalar_rule, {&x}, {autobatch::key_of(p)}); }); batched.defined()) return batched;
  OpCall call(op_pow_scalar, {&x});
  call.attrs<ScalarAttrs>().value = p;
  Tensor y = kernels::unary(call, x, [p](auto& vx, auto& vy) { xt::noalias(vy) = xt::pow(vx, p); });
  call.record(
      [](BackwardCtx& c) {
        const double p = c.attrs<ScalarAttrs>().value;
        unary_grad(c, [p](auto gy, auto x, auto) {
          using T = decltype(gy);
          return gy * T(p) * std::pow(x, T(p - 1));
        });
      },
      [](GraphCtx& g) {
        const double p = g.attrs<ScalarAttrs>().value;
        g.accumulate(0, g.gout() * (p * pow(g.in(0), p - 1)));
      });
  return y;
}

// d(x+s) = dx
Tensor add_scalar(const Tensor& x, double s) {
  if (autobatch::in_task()) if (Tensor batched = autobatch::detail::out_of_line([&] { return autobatch::defer(add_scalar_rule, {&x}, {autobatch::key_of(s)}); }); batched.defined()) return batched;
  OpCall call(op_add_scalar, {&x});
  Tensor y = kernels::unary(call, x, [s](auto& vx, auto& vy) {
    using T = typename std::decay_t<decltype(vy)>::value_type;
    xt::noalias(vy) = vx + T(s);
  });
  call.record([](BackwardCtx& c) { unary_grad(c, [](auto gy, auto, auto) { return gy; }); },
              [](GraphCtx& g) { g.accumulate(0, g.gout()); });
  return y;
}

// d(sx) = s dx
Tensor mul_scalar(const Tensor& x, double s) {
  if (autobatch::in_task()) if (Tensor batched = autobatch::detail::out_of_line([&] { return autobatch::defer(mul_scalar_rule, {&x}, {autobatch::key_of(s)}); }); batched.defined()) return batched;
  OpCall call(op_mul_scalar, {&x});
  call.attrs<ScalarAttrs>().value = s;
  Tensor y = kernels::unary(call, x, [s](auto& vx, auto& vy) {
    using T = typename std::decay_t<decltype(vy)>::value_type;
    xt::noalias(vy) = vx * T(s);
  });
  call.record(
      [](BackwardCtx& c) {
        const double s = c.attrs<ScalarAttrs>().value;
        unary_grad(c, [s](auto gy, auto, auto) { return gy * static_cast<decltype(gy)>(s); });
      },
      [](GraphCtx& g) { g.accumulate(0, g.gout() * g.attrs<ScalarAttrs>().value); });
  return y;
}

// d(-x) = -dx
Tensor neg(const Tensor& x) {
  if (autobatch::in_task()) if (Tensor batched = autobatch::detail::out_of_line([&] { return autobatch::defer(neg_rule, {&x}); }); batched.defined()) return batched;
  OpCall call(op_neg, {&x});
  Tensor y = kernels::unary(call, x, [](auto& vx, auto& vy) { xt::noalias(vy) = -vx; });
  call.record([](BackwardCtx& c) { unary_grad(c, [](auto gy, auto, auto) { return -gy; }); },
              [](GraphCtx& g) { g.accumulate(0, neg(g.gout())); });
  return y;
}

// d(e^x) = e^x dx
Tensor exp(const Tensor& x) {
  if (autobatch::in_task()) if (Tensor batched = autobatch::detail::out_of_line([&] { return autobatch::defer(exp_rule, {&x}); }); batched.defined()) return batched;
  OpCall call(op_exp, {&x});
  Tensor y = kernels::unary(call, x, [](auto& vx, auto& vy) { xt::noalias(vy) = xt::exp(vx); });
  call.record([](BackwardCtx& c) { unary_grad(c, [](auto gy, auto, auto y) { return gy * y; }); },
              [](GraphCtx& g) { g.accumulate(0, g.gout() * g.out()); });
  return y;
}

// d(log x) = dx / x
Tensor log(const Tensor& x) {
  if (autobatch::in_task()) if (Tensor batched = autobatch::detail::out_of_line([&] { return autobatch::defer(log_rule, {&x}); }); batched.defined()) return batched;
  OpCall call(op_log, {&x});
  Tensor y = kernels::unary(call, x, [](auto& vx, auto& vy) { xt::noalias(vy) = xt::log(vx); });
  call.record([](BackwardCtx& c) { unary_grad(c, [](auto gy, auto x, auto) { return gy / x; }); },
              [](GraphCtx& g) { g.accumulate(0, g.gout() / g.in(0)); });
  return y;
}

// d(sqrt x) = dx / (2 sqrt x)
Tensor sqrt(const Tensor& x) {
  if (autobatch::in_task()) if (Tensor batched = autobatch::detail::out_of_line([&] { return autobatch::defer(sqrt_rule, {&x}); }); batched.defined()) return batched;
  OpCall call(op_sqrt, {&x});
  Tensor y = kernels::unary(call, x, [](auto& vx, auto& vy) { xt::noalias(vy) = xt::sqrt(vx); });
  call.record([](BackwardCtx& c) { unary_grad(c, [](auto gy, auto, auto y) { return gy / (y + y); }); },
              [](GraphCtx& g) { g.accumulate(0, g.gout() / (g.out() * 2.0)); });
  return y;
}

// d|x| = sign(x) dx (0 at 0)
Tensor abs(const Tensor& x) {
  if (autobatch::in_task()) if (Tensor batched = autobatch::detail::out_of_line([&] { return autobatch::defer(abs_rule, {&x}); }); batched.defined()) return batched;
  OpCall call(op_abs, {&x});
  Tensor y = kernels::unary(call, x, [](auto& vx, auto& vy) { xt::noalias(vy) = xt::abs(vx); });
  call.record(
      [](BackwardCtx& c) {
        unary_grad(c, [](auto gy, auto x, auto) {
          using T = decltype(gy);
          return x > T(0) ? gy : (x < T(0) ? -gy : T(0));
        });
      },
      [](GraphCtx& g) {
        g.accumulate(0, g.gout() * kernels::constant_from(g.in(0), [](auto v) { return (v > 0) - (v < 0); }));
      });
  return y;
}

// d clamp(x, lo, hi) = dx where lo < x < hi, else 0
Tensor clamp(const Tensor& x, double lo, double hi) {
  if (autobatch::in_task())
    if (Tensor batched = autobatch::detail::out_of_line([&] { return autobatch::defer(clamp_rule, {&x}, {autobatch::key_of(lo), autobatch::key_of(hi)}); }); batched.defined()) return batched;
  if (!(lo <= hi)) throw Error("clamp: lo " + std::to_string(lo) + " exceeds hi " + std::to_string(hi) + " for input " + x.shape().str());
  OpCall call(op_clamp, {&x});
  call.attrs<RangeAttrs>() = {lo, hi};
  Tensor y = kernels::unary(call, x, [lo, hi](auto& vx, auto& vy) {
    using T = typename std::decay_t<decltype(vy)>::value_type;
    xt::noalias(vy) = xt::clip(vx, T(lo), T(hi));
  });
  call.record(
      [](BackwardCtx& c) {
        const RangeAttrs r = c.attrs<RangeAttrs>();
        unary_grad(c, [r](auto gy, auto x, auto) {
          using T = decltype(gy);
          return (x > T(r.lo) && x < T(r.hi)) ? gy : T(0);
        });
      },
      [](GraphCtx& g) {
        const double lo = g.attrs<RangeAttrs>().lo, hi = g.attrs<RangeAttrs>().hi;
        g.accumulate(0, g.gout() * kernels::constant_from(g.in(0), [lo, hi](auto v) { return v > lo && v < hi; }));
      });
  return y;
}

// where(m, a, b): da = dy where m, db = dy where not m; m is a constant.
Tensor where(const Tensor& mask, const Tensor& a, const Tensor& b) {
  if (autobatch::in_task()) if (Tensor batched = autobatch::detail::out_of_line([&] { return autobatch::defer(where_rule, {&mask, &a, &b}); }); batched.defined()) return batched;
  if (mask.requires_grad()) throw Error("where: the mask " + mask.shape().str() + " must be a constant (it is not differentiable)");
  OpCall call(op_where, {&a, &b, &mask});
  const Shape s = broadcast_shapes("where", broadcast_shapes("where", mask.shape(), a.shape()), b.shape());
  Tensor y = call.output(s);
  dispatch(call.dtype(), [&](auto z) {
    using T = decltype(z);
    const T *pm = static_cast<const T*>(mask.raw_data()), *pa = static_cast<const T*>(a.raw_data()),
            *pb = static_cast<const T*>(b.raw_data());
    T* py = y.data<T>();
    // Two passes keep the broadcast walker binary: y = a where m, then y = b where not m.
    kernels::broadcast_index(s, mask.shape(), a.shape(), [&](std::size_t i, std::size_t im, std::size_t ia) {
      py[i] = pm[im] != T(0) ? pa[ia] : T(0);
    });
    kernels::broadcast_index(s, mask.shape(), b.shape(), [&](std::size_t i, std::size_t im, std::size_t ib) {
      if (pm[im] == T(0)) py[i] = pb[ib];
    });
  });
  call.record(
      [](BackwardCtx& c) {
        dispatch(c.dtype(), [&](auto z) {
          using T = decltype(z);
          const Shape& s = c.out_shape();
          const T *gy = c.gout<T>(), *m = c.in<T>(2);
          T* t = c.scratch<T>(s.numel());
          for (std::size_t k = 0; k < 2; ++k) {
            if (!c.needs(k)) continue;
            const bool take_true = k == 0;
            kernels::broadcast_index(s, c.in_shape(2), s, [&](std::size_t i, std::size_t im, std::size_t) {
              t[i] = ((m[im] != T(0)) == take_true) ? gy[i] : T(0);
            });
            c.accumulate<T>(k, t, s);
          }
        });
      },
      [](GraphCtx& g) {
        const Tensor m = g.in(2);
        const Tensor zero = scalar(0.0, m.dtype());
        if (g.needs(0)) g.accumulate(0, where(m, g.gout(), zero));
        if (g.needs(1)) g.accumulate(1, where(m, zero, g.gout()));
      });
  return y;
}

// Composite: y = x * mask / keep_prob, the mask a constant drawn off the tape.
Tensor dropout(const Tensor& x, const Tensor& mask, double keep_prob) {
  if (!(keep_prob > 0.0 && keep_prob <= 1.0))
    throw Error("dropout: keep_prob " + std::to_string(keep_prob) + " must be in (0, 1] (input " + x.shape().str() + ")");
  if (mask.shape() != x.shape())
    throw Error("dropout: mask shape " + mask.shape().str() + " differs from input shape " + x.shape().str());
  if (mask.requires_grad()) throw Error("dropout: the mask " + mask.shape().str() + " must be a constant");
  return x * kernels::constant_from(mask, [keep_prob](auto m) { return m / keep_prob; });
}

Tensor bernoulli_mask(const Shape& shape, double keep_prob, Generator& gen, DType dtype) {
  if (!(keep_prob >= 0.0 && keep_prob <= 1.0))
    throw Error("bernoulli_mask: keep_prob " + std::to_string(keep_prob) + " must be in [0, 1] for shape " + shape.str());
  Tensor m = empty(shape, dtype);
  dispatch(dtype, [&](auto z) {
    using T = decltype(z);
    T* p = m.data<T>();
    for (std::size_t i = 0; i < m.numel(); ++i) p[i] = gen.uniform() < keep_prob ? T(1) : T(0);
  });
  return m;
}

// Engine hook: the sum of two gradients during create_graph.
Tensor detail::graph_add(const Tensor& a, const Tensor& b) { return add(a, b); }

}  // namespace tapegrad
