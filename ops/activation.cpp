// Activation family. Each op: forward kernel (xtensor over flat buffers, so xsimd vectorises exp/tanh),
// then its backward on raw buffers and its differentiable backward in ops (for create_graph).
#include "tapegrad/ops/activation.hpp"

#include <algorithm>
#include <cmath>
#include <functional>
#include <string>
#include <vector>
#include <xtensor/xmath.hpp>
#include <xtensor/xnoalias.hpp>

#include "tapegrad/autograd/op.hpp"
#include "tapegrad/ops/batching.hpp"
#include "tapegrad/ops/elementwise.hpp"
#include "tapegrad/ops/kernels.hpp"
#include "tapegrad/ops/reduce.hpp"

namespace tapegrad {

TAPEGRAD_OP(op_sigmoid, "sigmoid", "activation");
TAPEGRAD_OP(op_tanh, "tanh", "activation");
TAPEGRAD_OP(op_relu, "relu", "activation");
TAPEGRAD_OP(op_softplus, "softplus", "activation");
TAPEGRAD_OP(op_log_sigmoid, "log_sigmoid", "activation");
TAPEGRAD_OP(op_softmax, "softmax", "activation");
TAPEGRAD_OP(op_log_softmax, "log_softmax", "activation");

// Batching rules (autograd/autobatch.hpp): the activations are elementwise; softmax's axis moves one on.
namespace {
using autobatch::Group;
template <Tensor (*F)(const Tensor&)> Tensor unary_rule(const Group& g) { return F(g.in(0)); }
std::size_t stacked_axis(const Group& g) {
  const auto r = static_cast<std::int64_t>(batching::call_rank(g, 0));
  return static_cast<std::size_t>(g.key(0) < 0 ? g.key(0) + r : g.key(0)) + 1;
}
TAPEGRAD_BATCH_RULE(sigmoid_rule, op_sigmoid, unary_rule<sigmoid>);
TAPEGRAD_BATCH_RULE(tanh_rule, op_tanh, unary_rule<tanh>);
TAPEGRAD_BATCH_RULE(relu_rule, op_relu, unary_rule<relu>);
TAPEGRAD_BATCH_RULE(softplus_rule, op_softplus, unary_rule<softplus>);
TAPEGRAD_BATCH_RULE(log_sigmoid_rule, op_log_sigmoid, unary_rule<log_sigmoid>);
TAPEGRAD_BATCH_RULE(softmax_rule, op_softmax, [](const Group& g) { return softmax(g.in(0), static_cast<long>(stacked_axis(g))); });
TAPEGRAD_BATCH_RULE(log_softmax_rule, op_log_softmax, [](const Group& g) {
  return log_softmax(g.in(0), static_cast<long>(stacked_axis(g)));
});
}  // namespace

namespace {

using kernels::unary_grad;

struct AxisAttrs {
  std::size_t axis;
};

// The tensor seen as (outer, n, inner) around the softmax axis: rows of length n, stride inner.
struct Along {
  std::size_t outer = 1, n = 1, inner = 1;
};
Along along(const Shape& s, std::size_t axis) {
  Along a;
  for (std::size_t k = 0; k < s.rank(); ++k) {
    if (k < axis) a.outer *= s[k];
    else if (k == axis) a.n = s[k];
    else a.inner *= s[k];
  }
  return a;
}

// sum_i a_i b_i (b == nullptr: sum_i a_i), vectorised.
template <class T> T lanes_dot(const T* a, const T* b, std::size_t n) {
  if (!b) return kernels::lanes_reduce(n, T(0), [a](std::size_t i) { return a[i]; }, std::plus<T>());
  return kernels::lanes_reduce(n, T(0), [a, b](std::size_t i) { return a[i] * b[i]; }, std::plus<T>());
}

// softmax (Log = false) or log_softmax (Log = true) along the axis; the maximum is subtracted first.
template <bool Log, class T> void softmax_forward(const T* x, T* y, const Along& a) {
  const std::size_t n = a.n, inner = a.inner;
  if (n == 0 || inner == 0) return;
  if (inner == 1) {  // contiguous rows
    for (std::size_t o = 0; o < a.outer; ++o) {
      const T* xr = x + o * n;
      T* yr = y + o * n;
      const T m = kernels::lanes_max(xr, n);
      auto vx = kernels::flat(xr, n);
      auto vy = kernels::flat(yr, n);
      xt::noalias(vy) = xt::exp(vx - m);
      const T s = lanes_dot<T>(yr, nullptr, n);
      if constexpr (Log) xt::noalias(vy) = (vx - m) - std::log(s);  // x - m is exact-ish; m + log s would round at |m|
      else xt::noalias(vy) = vy * (T(1) / s);
    }
    return;
  }
  // Strided rows: work on whole inner-length slices, each contiguous.
  std::vector<T> buf(2 * inner);
  auto vm = kernels::flat(buf.data(), inner);
  auto vs = kernels::flat(buf.data() + inner, inner);
  for (std::size_t o = 0; o < a.outer; ++o) {
    const T* xb = x + o * n * inner;
    T* yb = y + o * n * inner;
    xt::noalias(vm) = kernels::flat(xb, inner);
    for (std::size_t k = 1; k < n; ++k) xt::noalias(vm) = xt::maximum(vm, kernels::flat(xb + k * inner, inner));
    std::fill(vs.begin(), vs.end(), T(0));
    for (std::size_t k = 0; k < n; ++k) {
      auto vy = kernels::flat(yb + k * inner, inner);
      xt::noalias(vy) = xt::exp(kernels::flat(xb + k * inner, inner) - vm);
      xt::noalias(vs) += vy;
    }
    if constexpr (Log) {
      xt::noalias(vs) = xt::log(vs);
      for (std::size_t k = 0; k < n; ++k)
        xt::noalias(kernels::flat(yb + k * inner, inner)) = (kernels::flat(xb + k * inner, inner) - vm) - vs;
    } else {
      for (std::size_t k = 0; k < n; ++k) {
        auto vy = kernels::flat(yb + k * inner, inner);
        xt::noalias(vy) = vy / vs;
      }
    }
  }
}

// softmax backward: gx += y * (gy - sum_axis(gy * y)).
template <class T> void softmax_backward(T* gx, const T* gy, const T* y, const Along& a) {
  const std::size_t n = a.n, inner = a.inner;
  if (inner == 1) {  // contiguous rows
    for (std::size_t o = 0; o < a.outer; ++o) {
      const std::size_t b = o * n;
      const T s = lanes_dot(gy + b, y + b, n);
      for (std::size_t k = 0; k < n; ++k) gx[b + k] += y[b + k] * (gy[b + k] - s);
    }
    return;
  }
  std::vector<T> s(inner);
  for (std::size_t o = 0; o < a.outer; ++o) {
    const std::size_t b = o * n * inner;
    std::fill(s.begin(), s.end(), T(0));
    for (std::size_t k = 0; k < n; ++k)
      for (std::size_t j = 0; j < inner; ++j) s[j] += gy[b + k * inner + j] * y[b + k * inner + j];
    for (std::size_t k = 0; k < n; ++k)
      for (std::size_t j = 0; j < inner; ++j) {
        const std::size_t i = b + k * inner + j;
        gx[i] += y[i] * (gy[i] - s[j]);
      }
  }
}

// log_softmax backward: gx += gy - exp(y) * sum_axis(gy).
template <class T> void log_softmax_backward(T* gx, const T* gy, const T* y, const Along& a) {
  const std::size_t n = a.n, inner = a.inner;
  if (inner == 1) {  // contiguous rows
    for (std::size_t o = 0; o < a.outer; ++o) {
      const std::size_t b = o * n;
      const T s = lanes_dot<T>(gy + b, nullptr, n);
      xt::noalias(kernels::flat(gx + b, n)) += kernels::flat(gy + b, n) - xt::exp(kernels::flat(y + b, n)) * s;
    }
    return;
  }
  std::vector<T> buf(inner);
  auto vs = kernels::flat(buf.data(), inner);
  for (std::size_t o = 0; o < a.outer; ++o) {
    const std::size_t b = o * n * inner;
    std::fill(buf.begin(), buf.end(), T(0));
    for (std::size_t k = 0; k < n; ++k) xt::noalias(vs) += kernels::flat(gy + b + k * inner, inner);
    for (std::size_t k = 0; k < n; ++k) {
      const std::size_t r = b + k * inner;
      xt::noalias(kernels::flat(gx + r, inner)) += kernels::flat(gy + r, inner) - xt::exp(kernels::flat(y + r, inner)) * vs;
    }
  }
}

}  // namespace

// d sigmoid(x) = y (1 - y) dx
Tensor sigmoid(const Tensor& x) {
  if (autobatch::in_task()) if (Tensor batched = autobatch::detail::out_of_line([&] { return autobatch::defer(sigmoid_rule, {&x}); }); batched.defined()) return batched;
  OpCall call(op_sigmoid, {&x});
  Tensor y = kernels::unary(call, x, [](auto& vx, auto& vy) {
    using T = typename std::decay_t<decltype(vy)>::value_type;
    xt::noalias(vy) = T(1) / (T(1) + xt::exp(-vx));  // exp overflows to inf for x << 0: y = 0, no NaN
  });
  call.record([](BackwardCtx& c) { unary_grad(c, [](auto gy, auto, auto y) { return gy * y * (decltype(gy)(1) - y); }); },
              [](GraphCtx& g) { g.accumulate(0, g.gout() * g.out() * (1.0 - g.out())); });
  return y;
}

// d tanh(x) = (1 - y^2) dx
Tensor tanh(const Tensor& x) {
  if (autobatch::in_task()) if (Tensor batched = autobatch::detail::out_of_line([&] { return autobatch::defer(tanh_rule, {&x}); }); batched.defined()) return batched;
  OpCall call(op_tanh, {&x});
  Tensor y = kernels::unary(call, x, [](auto& vx, auto& vy) { xt::noalias(vy) = xt::tanh(vx); });
  call.record([](BackwardCtx& c) { unary_grad(c, [](auto gy, auto, auto y) { return gy * (decltype(gy)(1) - y * y); }); },
              [](GraphCtx& g) { g.accumulate(0, g.gout() * (1.0 - g.out() * g.out())); });
  return y;
}

// d relu(x) = [x > 0] dx
Tensor relu(const Tensor& x) {
  if (autobatch::in_task()) if (Tensor batched = autobatch::detail::out_of_line([&] { return autobatch::defer(relu_rule, {&x}); }); batched.defined()) return batched;
  OpCall call(op_relu, {&x});
  Tensor y = kernels::unary(call, x, [](auto& vx, auto& vy) {
    using T = typename std::decay_t<decltype(vy)>::value_type;
    xt::noalias(vy) = xt::maximum(vx, T(0));
  });
  call.record(
      [](BackwardCtx& c) {
        unary_grad(c, [](auto gy, auto x, auto) { return x > decltype(gy)(0) ? gy : decltype(gy)(0); });
      },
      [](GraphCtx& g) { g.accumulate(0, g.gout() * kernels::constant_from(g.in(0), [](auto v) { return v > 0; })); });
  return y;
}

Tensor activate(Activation a, const Tensor& x) {
  switch (a) {
    case Activation::sigmoid: return sigmoid(x);
    case Activation::tanh: return tanh(x);
    case Activation::relu: return relu(x);
    case Activation::identity: return x;
  }
  throw Error("activate: unknown activation " + std::to_string(static_cast<int>(a)) + " for x " + shape_str(x));
}

// softplus(x) = max(x, 0) + log1p(e^-|x|);  d softplus(x) = sigmoid(x) dx
Tensor softplus(const Tensor& x) {
  if (autobatch::in_task()) if (Tensor batched = autobatch::detail::out_of_line([&] { return autobatch::defer(softplus_rule, {&x}); }); batched.defined()) return batched;
  OpCall call(op_softplus, {&x});
  Tensor y = kernels::unary(call, x, [](auto& vx, auto& vy) {
    using T = typename std::decay_t<decltype(vy)>::value_type;
    xt::noalias(vy) = xt::maximum(vx, T(0)) + xt::log1p(xt::exp(-xt::abs(vx)));
  });
  call.record(
      [](BackwardCtx& c) {
        unary_grad(c, [](auto gy, auto x, auto) {
          using T = decltype(gy);
          return gy / (T(1) + std::exp(-x));
        });
      },
      [](GraphCtx& g) { g.accumulate(0, g.gout() * sigmoid(g.in(0))); });
  return y;
}

// log_sigmoid(x) = min(x, 0) - log1p(e^-|x|);  d log_sigmoid(x) = sigmoid(-x) dx
Tensor log_sigmoid(const Tensor& x) {
  if (autobatch::in_task()) if (Tensor batched = autobatch::detail::out_of_line([&] { return autobatch::defer(log_sigmoid_rule, {&x}); }); batched.defined()) return batched;
  OpCall call(op_log_sigmoid, {&x});
  Tensor y = kernels::unary(call, x, [](auto& vx, auto& vy) {
    using T = typename std::decay_t<decltype(vy)>::value_type;
    xt::noalias(vy) = xt::minimum(vx, T(0)) - xt::log1p(xt::exp(-xt::abs(vx)));
  });
  call.record(
      [](BackwardCtx& c) {
        unary_grad(c, [](auto gy, auto x, auto) {
          using T = decltype(gy);
          return gy / (T(1) + std::exp(x));
        });
      },
      [](GraphCtx& g) { g.accumulate(0, g.gout() * sigmoid(neg(g.in(0)))); });
  return y;
}

// d softmax(x) = y * (dy - sum_axis(dy * y))
Tensor softmax(const Tensor& x, long axis) {
  if (autobatch::in_task()) if (Tensor batched = autobatch::detail::out_of_line([&] { return autobatch::defer(softmax_rule, {&x}, {axis}); }); batched.defined()) return batched;
  const std::size_t ax = normalize_axis("softmax", axis, x.shape());
  OpCall call(op_softmax, {&x});
  call.attrs<AxisAttrs>().axis = ax;
  Tensor y = call.output(x.shape());
  dispatch(call.dtype(), [&](auto z) {
    using T = decltype(z);
    softmax_forward<false>(static_cast<const T*>(x.raw_data()), y.data<T>(), along(x.shape(), ax));
  });
  call.record(
      [](BackwardCtx& c) {
        dispatch(c.dtype(), [&](auto z) {
          using T = decltype(z);
          softmax_backward(c.grad<T>(0), c.gout<T>(), c.out<T>(), along(c.out_shape(), c.attrs<AxisAttrs>().axis));
        });
      },
      [](GraphCtx& g) {
        const long ax = static_cast<long>(g.attrs<AxisAttrs>().axis);
        const Tensor y = g.out();
        g.accumulate(0, y * (g.gout() - sum(g.gout() * y, {ax}, true)));
      });
  return y;
}

// d log_softmax(x) = dy - exp(y) * sum_axis(dy)
Tensor log_softmax(const Tensor& x, long axis) {
  if (autobatch::in_task()) if (Tensor batched = autobatch::detail::out_of_line([&] { return autobatch::defer(log_softmax_rule, {&x}, {axis}); }); batched.defined()) return batched;
  const std::size_t ax = normalize_axis("log_softmax", axis, x.shape());
  OpCall call(op_log_softmax, {&x});
  call.attrs<AxisAttrs>().axis = ax;
  Tensor y = call.output(x.shape());
  dispatch(call.dtype(), [&](auto z) {
    using T = decltype(z);
    softmax_forward<true>(static_cast<const T*>(x.raw_data()), y.data<T>(), along(x.shape(), ax));
  });
  call.record(
      [](BackwardCtx& c) {
        dispatch(c.dtype(), [&](auto z) {
          using T = decltype(z);
          log_softmax_backward(c.grad<T>(0), c.gout<T>(), c.out<T>(), along(c.out_shape(), c.attrs<AxisAttrs>().axis));
        });
      },
      [](GraphCtx& g) {
        const long ax = static_cast<long>(g.attrs<AxisAttrs>().axis);
        g.accumulate(0, g.gout() - exp(g.out()) * sum(g.gout(), {ax}, true));
      });
  return y;
}

}  // namespace tapegrad
