// Loss family: fused, numerically stable losses, each a single node with a scalar (rank 0) output.
// Sums accumulate in double whatever the dtype. Each op also has a differentiable backward in ops.
#include "tapegrad/ops/loss.hpp"

#include <algorithm>
#include <cmath>
#include <functional>
#include <cstdint>
#include <string>
#include <xtensor/xmath.hpp>
#include <xtensor/xnoalias.hpp>

#include "tapegrad/autograd/op.hpp"
#include "tapegrad/ops/batching.hpp"
#include "tapegrad/ops/reduce.hpp"
#include "tapegrad/ops/shape.hpp"
#include "tapegrad/ops/activation.hpp"
#include "tapegrad/ops/elementwise.hpp"
#include "tapegrad/ops/kernels.hpp"

namespace tapegrad {

TAPEGRAD_OP(op_mse_loss, "mse_loss", "loss");
TAPEGRAD_OP(op_softmax_cross_entropy, "softmax_cross_entropy", "loss");
TAPEGRAD_OP(op_bce_with_logits, "binary_cross_entropy_with_logits", "loss");

// Batching rules (autograd/autobatch.hpp): each call's loss is its own reduction, so the batched form
// keeps the per-element (per-row) terms of all calls and reduces each call's part: (n,) losses.
namespace {
using autobatch::Group;
std::vector<long> call_axes(const Group& g) {  // every axis of one call, in the stack
  std::vector<long> axes;
  for (long a = 1; a <= static_cast<long>(batching::call_rank(g, 0)); ++a) axes.push_back(a);
  return axes;
}
TAPEGRAD_BATCH_RULE(mse_loss_rule, op_mse_loss, [](const Group& g) {
  if (g.shared(0) || g.shared(1)) return Tensor();
  const Tensor r = g.in(0) - g.in(1);
  const std::size_t per_call = g.in(0).numel() / g.size();
  const auto reduction = static_cast<Reduction>(g.key(0));
  const double k = reduction == Reduction::mean ? 1.0 / static_cast<double>(per_call) : reduction == Reduction::sum ? 1.0 : 0.5;
  return mul_scalar(sum(r * r, call_axes(g)), k);
});
TAPEGRAD_BATCH_RULE(cross_entropy_rule, op_softmax_cross_entropy, [](const Group& g) {
  if (g.shared(0)) return Tensor();  // the same logits with other targets: left to run alone
  const Shape& s = g.in(0).shape();  // (n, N, C)
  const std::size_t n = s[0], N = s[1], C = s[2];
  std::vector<std::int64_t> picked(n * N);  // row r's target, as a position in the flattened log-probabilities
  for (std::size_t i = 0; i < n; ++i) {
    const Index& t = *static_cast<const Index*>(g.payload(i));
    for (std::size_t r = 0; r < N; ++r) picked[i * N + r] = static_cast<std::int64_t>((i * N + r) * C) + t.values[r];
  }
  const Tensor logp = reshape(log_softmax(g.in(0), -1), {n * N * C});
  return neg(mean(reshape(index_select(logp, 0, picked), {n, N}), {1}));
});
TAPEGRAD_BATCH_RULE(bce_rule, op_bce_with_logits, [](const Group& g) {
  if (g.shared(0) || g.shared(1)) return Tensor();
  return mean(softplus(g.in(0)) - g.in(0) * g.in(1), call_axes(g));  // max(x,0) + log1p(e^-|x|) = softplus(x)
});
}  // namespace

namespace {

void require_same_shape(const char* op, const char* a_name, const Tensor& a, const char* b_name, const Tensor& b) {
  if (!a.defined() || !b.defined()) throw Error(std::string(op) + ": an input is undefined");
  if (a.shape() != b.shape())
    throw Error(std::string(op) + ": " + a_name + " shape " + a.shape().str() + " differs from " + b_name + " shape " +
                b.shape().str() + " (no broadcasting in losses)");
}

double reduction_scale(Reduction r, std::size_t n, const Shape& s) {
  switch (r) {
    case Reduction::mean:
      if (n == 0) throw Error("mse_loss: mean over an empty input of shape " + s.str());
      return 1.0 / static_cast<double>(n);
    case Reduction::sum: return 1.0;
    case Reduction::half_sum: return 0.5;
  }
  throw Error("mse_loss: unknown reduction for input of shape " + s.str());
}

struct ScaleAttrs {
  double k;
};
struct CrossEntropyAttrs {
  const std::int64_t* targets;  // N
  const void* probs;            // softmax(logits), (N, C), of the logits' dtype
};

}  // namespace

// L = k sum (y - d)^2, k = 1/n, 1 or 1/2;  dL/dy = 2k (y - d) = -dL/dd
Tensor mse_loss(const Tensor& y, const Tensor& d, Reduction reduction) {
  if (autobatch::in_task()) if (Tensor batched = autobatch::detail::out_of_line([&] { return autobatch::defer(mse_loss_rule, {&y, &d}, {static_cast<std::int64_t>(reduction)}); }); batched.defined()) return batched;
  require_same_shape("mse_loss", "prediction", y, "target", d);
  const double k = reduction_scale(reduction, y.numel(), y.shape());
  OpCall call(op_mse_loss, {&y, &d});
  call.attrs<ScaleAttrs>().k = k;
  Tensor out = call.output(Shape{});
  dispatch(call.dtype(), [&](auto z) {
    using T = decltype(z);
    const T *py = static_cast<const T*>(y.raw_data()), *pd = static_cast<const T*>(d.raw_data());
    double acc = 0;
    for (std::size_t i = 0, n = y.numel(); i < n; ++i) {
      const double r = static_cast<double>(py[i]) - static_cast<double>(pd[i]);
      acc += r * r;
    }
    out.data<T>()[0] = static_cast<T>(k * acc);
  });
  call.record(
      [](BackwardCtx& c) {
        dispatch(c.dtype(), [&](auto z) {
          using T = decltype(z);
          const T s = static_cast<T>(2.0 * c.attrs<ScaleAttrs>().k) * c.gout<T>()[0];
          const T *py = c.in<T>(0), *pd = c.in<T>(1);
          const std::size_t n = c.in_shape(0).numel();
          if (c.needs(0)) {
            T* g = c.grad<T>(0);
            for (std::size_t i = 0; i < n; ++i) g[i] += s * (py[i] - pd[i]);
          }
          if (c.needs(1)) {
            T* g = c.grad<T>(1);
            for (std::size_t i = 0; i < n; ++i) g[i] -= s * (py[i] - pd[i]);
          }
        });
      },
      [](GraphCtx& g) {
        const Tensor gr = g.gout() * ((g.in(0) - g.in(1)) * (2.0 * g.attrs<ScaleAttrs>().k));
        g.accumulate(0, gr);
        if (g.needs(1)) g.accumulate(1, neg(gr));
      });
  return out;
}

// L = mean_n (logsumexp(x_n) - x_n[t_n]);  dL/dx = (softmax(x) - onehot(t)) / N
Tensor softmax_cross_entropy(const Tensor& logits, const Index& targets) {
  const char* op = "softmax_cross_entropy";
  if (!logits.defined()) throw Error(std::string(op) + ": logits are undefined");
  const Shape& s = logits.shape();
  if (s.rank() != 2) throw Error(std::string(op) + ": logits must be (N, C), got shape " + s.str());
  const std::size_t N = s[0], C = s[1];
  if (targets.values.size() != N || targets.shape.numel() != targets.values.size())
    throw Error(std::string(op) + ": " + std::to_string(targets.values.size()) + " targets of shape " + targets.shape.str() +
                " for logits of shape " + s.str() + " (expected " + std::to_string(N) + ")");
  if (N == 0) throw Error(std::string(op) + ": mean over an empty batch, logits of shape " + s.str());
  for (std::size_t n = 0; n < N; ++n) {
    const std::int64_t t = targets.values[n];
    if (t < 0 || static_cast<std::size_t>(t) >= C)
      throw Error(std::string(op) + ": target id " + std::to_string(t) + " at row " + std::to_string(n) +
                  " is out of range [0, " + std::to_string(C) + ") for logits of shape " + s.str() + ", targets " +
                  targets.shape.str());
  }
  // Checked first: the batched form trusts every call's targets.
  if (autobatch::in_task()) if (Tensor batched = autobatch::detail::out_of_line([&] { return autobatch::defer(cross_entropy_rule, {&logits}, {}, &targets); }); batched.defined()) return batched;
  OpCall call(op_softmax_cross_entropy, {&logits});
  Tensor out = call.output(Shape{});
  dispatch(call.dtype(), [&](auto z) {
    using T = decltype(z);
    std::int64_t* ids = call.save<std::int64_t>(N);
    T* p = call.save<T>(N * C);
    call.attrs<CrossEntropyAttrs>() = {ids, p};
    std::copy(targets.values.begin(), targets.values.end(), ids);
    const T* x = static_cast<const T*>(logits.raw_data());
    double acc = 0;
    for (std::size_t n = 0; n < N; ++n) {
      const T* xr = x + n * C;
      T* pr = p + n * C;
      const T m = kernels::lanes_max(xr, C);
      xt::noalias(kernels::flat(pr, C)) = xt::exp(kernels::flat(xr, C) - m);
      const double se = kernels::lanes_reduce(C, 0.0, [pr](std::size_t c) { return double(pr[c]); }, std::plus<double>());
      const T inv = static_cast<T>(1.0 / se);
      for (std::size_t c = 0; c < C; ++c) pr[c] *= inv;
      acc += static_cast<double>(m) + std::log(se) - static_cast<double>(xr[ids[n]]);
    }
    out.data<T>()[0] = static_cast<T>(acc / static_cast<double>(N));
  });
  call.record(
      [](BackwardCtx& c) {
        dispatch(c.dtype(), [&](auto z) {
          using T = decltype(z);
          const std::size_t N = c.in_shape(0)[0], C = c.in_shape(0)[1];
          const std::int64_t* ids = c.attrs<CrossEntropyAttrs>().targets;
          const T* p = static_cast<const T*>(c.attrs<CrossEntropyAttrs>().probs);
          const T s = c.gout<T>()[0] / static_cast<T>(N);
          T* gx = c.grad<T>(0);
          for (std::size_t i = 0; i < N * C; ++i) gx[i] += s * p[i];
          for (std::size_t n = 0; n < N; ++n) gx[n * C + static_cast<std::size_t>(ids[n])] -= s;
        });
      },
      [](GraphCtx& g) {
        const std::size_t N = g.in_shape(0)[0], C = g.in_shape(0)[1];
        const std::int64_t* ids = g.attrs<CrossEntropyAttrs>().targets;
        const Tensor x = g.in(0);
        Tensor onehot = zeros(x.shape(), x.dtype());
        dispatch(x.dtype(), [&](auto z) {
          using T = decltype(z);
          for (std::size_t n = 0; n < N; ++n) onehot.data<T>()[n * C + static_cast<std::size_t>(ids[n])] = T(1);
        });
        g.accumulate(0, g.gout() * ((softmax(x, -1) - onehot) * (1.0 / static_cast<double>(N))));
      });
  return out;
}

// L = mean(max(x, 0) - x t + log1p(e^-|x|));  dL/dx = (sigmoid(x) - t) / n, dL/dt = -x / n
Tensor binary_cross_entropy_with_logits(const Tensor& logits, const Tensor& targets) {
  if (autobatch::in_task()) if (Tensor batched = autobatch::detail::out_of_line([&] { return autobatch::defer(bce_rule, {&logits, &targets}); }); batched.defined()) return batched;
  const char* op = "binary_cross_entropy_with_logits";
  require_same_shape(op, "logits", logits, "targets", targets);
  if (logits.numel() == 0) throw Error(std::string(op) + ": mean over an empty input of shape " + logits.shape().str());
  OpCall call(op_bce_with_logits, {&logits, &targets});
  Tensor out = call.output(Shape{});
  dispatch(call.dtype(), [&](auto z) {
    using T = decltype(z);
    const T *x = static_cast<const T*>(logits.raw_data()), *t = static_cast<const T*>(targets.raw_data());
    double acc = 0;
    for (std::size_t i = 0, n = logits.numel(); i < n; ++i) {
      const double xi = x[i];
      acc += std::max(xi, 0.0) - xi * static_cast<double>(t[i]) + std::log1p(std::exp(-std::abs(xi)));
    }
    out.data<T>()[0] = static_cast<T>(acc / static_cast<double>(logits.numel()));
  });
  call.record(
      [](BackwardCtx& c) {
        dispatch(c.dtype(), [&](auto z) {
          using T = decltype(z);
          const std::size_t n = c.in_shape(0).numel();
          const T s = c.gout<T>()[0] / static_cast<T>(n);
          const T *x = c.in<T>(0), *t = c.in<T>(1);
          if (c.needs(0)) {
            T* g = c.grad<T>(0);
            for (std::size_t i = 0; i < n; ++i) g[i] += s * (T(1) / (T(1) + std::exp(-x[i])) - t[i]);
          }
          if (c.needs(1)) {
            T* g = c.grad<T>(1);
            for (std::size_t i = 0; i < n; ++i) g[i] -= s * x[i];
          }
        });
      },
      [](GraphCtx& g) {
        const double inv_n = 1.0 / static_cast<double>(g.in_shape(0).numel());
        if (g.needs(0)) g.accumulate(0, g.gout() * ((sigmoid(g.in(0)) - g.in(1)) * inv_n));
        if (g.needs(1)) g.accumulate(1, g.gout() * (g.in(0) * -inv_n));
      });
  return out;
}

}  // namespace tapegrad
