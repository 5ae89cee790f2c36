// Normalisation family: layer_norm, forward and backward on raw buffers side by side; for create_graph it
// differentiates layer_norm_composed (the derivative is not written a second time in ops).
#include "tapegrad/ops/norm.hpp"

#include <cmath>
#include <functional>
#include <string>

#include "tapegrad/autograd/op.hpp"
#include "tapegrad/ops/batching.hpp"
#include "tapegrad/ops/elementwise.hpp"
#include "tapegrad/ops/kernels.hpp"
#include "tapegrad/ops/reduce.hpp"

namespace tapegrad {

TAPEGRAD_OP(op_layer_norm, "layer_norm", "norm");

// Batching rule (autograd/autobatch.hpp): a row-wise op, so the calls' rows stacked make one call with the
// shared weight and bias.
namespace {
TAPEGRAD_BATCH_RULE(layer_norm_rule, op_layer_norm, [](const autobatch::Group& g) {
  if (g.shared(0) || !g.shared(1) || !g.shared(2)) return Tensor();
  return layer_norm(g.in(0), g.in(1), g.in(2), g.key_double(0));
});
}  // namespace

namespace {

struct LayerNormAttrs {
  double eps;
  const void* stats;  // per row: mean, then 1/sqrt(var + eps); of the input's dtype, in the arena
};

// x (..., E) with E >= 1; weight and bias (E); one dtype; eps >= 0 and finite. Returns E.
std::size_t check_layer_norm(const Tensor& x, const Tensor& w, const Tensor& b, double eps) {
  if (!x.defined() || x.rank() == 0 || x.size(-1) == 0)
    throw Error("layer_norm: x must be (..., E) with E >= 1, got " + shape_str(x));
  const std::size_t E = x.size(-1);
  for (const auto& [name, t] : {std::pair<const char*, const Tensor*>{"weight", &w}, {"bias", &b}}) {
    if (!t->defined() || t->rank() != 1 || t->size(0) != E)
      throw Error(std::string("layer_norm: ") + name + " must be (E) = " + Shape{E}.str() + " to match x " +
                  x.shape().str() + ", got " + shape_str(*t));
    if (t->dtype() != x.dtype())
      throw Error(std::string("layer_norm: ") + name + " " + t->shape().str() + " is " + dtype_name(t->dtype()) +
                  ", x " + x.shape().str() + " is " + dtype_name(x.dtype()));
  }
  if (!(eps >= 0) || !std::isfinite(eps))
    throw Error("layer_norm: eps must be finite and >= 0, got " + std::to_string(eps) + " for x " + x.shape().str());
  return E;
}

template <class T> T row_sum(const T* p, std::size_t n) {
  return kernels::lanes_reduce(n, T(0), [p](std::size_t i) { return p[i]; }, std::plus<T>());
}

}  // namespace

Tensor layer_norm_composed(const Tensor& x, const Tensor& weight, const Tensor& bias, double eps) {
  const Tensor xc = x - mean(x, {-1}, true);
  const Tensor var = mean(xc * xc, {-1}, true);
  return xc / sqrt(var + eps) * weight + bias;
}

// Per row, with xhat = (x - mean) r, r = 1/sqrt(var + eps), g = dy * weight:
//   dx = r (g - mean(g) - xhat mean(g xhat)),  dweight = sum_rows dy xhat,  dbias = sum_rows dy.
Tensor layer_norm(const Tensor& x, const Tensor& weight, const Tensor& bias, double eps) {
  if (autobatch::in_task())
    if (Tensor batched = autobatch::detail::out_of_line(
            [&] { return autobatch::defer(layer_norm_rule, {&x, &weight, &bias}, {autobatch::key_of(eps)}); });
        batched.defined())
      return batched;
  const std::size_t E = check_layer_norm(x, weight, bias, eps);
  const std::size_t rows = x.numel() / E;
  OpCall call(op_layer_norm, {&x, &weight, &bias});
  Tensor y = call.output(x.shape());
  dispatch(call.dtype(), [&](auto z) {
    using T = decltype(z);
    T* stats = call.save<T>(2 * rows);
    call.attrs<LayerNormAttrs>() = {eps, stats};
    const T *px = static_cast<const T*>(x.raw_data()), *pw = static_cast<const T*>(weight.raw_data());
    const T* pb = static_cast<const T*>(bias.raw_data());
    T* py = y.data<T>();
    for (std::size_t r = 0; r < rows; ++r) {
      const T* xr = px + r * E;
      T* yr = py + r * E;
      const T mu = row_sum(xr, E) / T(E);
      // Two passes (mean, then squares about it): the one-pass E[x^2] - mean^2 cancels for large means.
      const T var = kernels::lanes_reduce(E, T(0), [xr, mu](std::size_t i) { return (xr[i] - mu) * (xr[i] - mu); },
                                          std::plus<T>()) / T(E);
      const T rs = T(1) / std::sqrt(var + T(eps));
      stats[2 * r] = mu, stats[2 * r + 1] = rs;
      for (std::size_t i = 0; i < E; ++i) yr[i] = (xr[i] - mu) * rs * pw[i] + pb[i];
    }
  });
  call.record(
      [](BackwardCtx& c) {
        const std::size_t E = c.in_shape(0)[c.in_shape(0).rank() - 1], rows = c.in_shape(0).numel() / E;
        dispatch(c.dtype(), [&](auto z) {
          using T = decltype(z);
          const T *gy = c.gout<T>(), *px = c.in<T>(0), *pw = c.in<T>(1);
          const T* stats = static_cast<const T*>(c.attrs<LayerNormAttrs>().stats);
          T* gw = c.needs(1) ? c.grad<T>(1) : nullptr;
          T* gb = c.needs(2) ? c.grad<T>(2) : nullptr;
          bool fresh = false;
          T* gx = c.needs(0) ? c.grad_for_write<T>(0, fresh) : nullptr;
          T* xhat = c.scratch<T>(E);
          for (std::size_t r = 0; r < rows; ++r) {
            const T *xr = px + r * E, *gr = gy + r * E;
            const T mu = stats[2 * r], rs = stats[2 * r + 1];
            for (std::size_t i = 0; i < E; ++i) xhat[i] = (xr[i] - mu) * rs;
            if (gw)
              for (std::size_t i = 0; i < E; ++i) gw[i] += gr[i] * xhat[i];
            if (gb)
              for (std::size_t i = 0; i < E; ++i) gb[i] += gr[i];
            if (!gx) continue;
            const T mg = kernels::lanes_reduce(E, T(0), [gr, pw](std::size_t i) { return gr[i] * pw[i]; }, std::plus<T>()) / T(E);
            const T mgx = kernels::lanes_reduce(E, T(0), [gr, pw, xhat](std::size_t i) { return gr[i] * pw[i] * xhat[i]; },
                                                std::plus<T>()) / T(E);
            T* gxr = gx + r * E;
            if (fresh)
              for (std::size_t i = 0; i < E; ++i) gxr[i] = rs * (gr[i] * pw[i] - mg - xhat[i] * mgx);
            else
              for (std::size_t i = 0; i < E; ++i) gxr[i] += rs * (gr[i] * pw[i] - mg - xhat[i] * mgx);
          }
        });
      },
      [](GraphCtx& g) {
        const double eps = g.attrs<LayerNormAttrs>().eps;
        g.differentiate([&] { return layer_norm_composed(g.in(0), g.in(1), g.in(2), eps); });
      });
  return y;
}

}  // namespace tapegrad
