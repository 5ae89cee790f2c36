// Reduction family: sum, mean, max over axes (keepdims), and sum_to, the engine's un-broadcast.
// The reduced axes travel in the op's attributes as a bitmask (bit k: axis k); a reduction's output,
// with or without keepdims, has the memory layout of the input's shape with 1 on every reduced axis.
#include "tapegrad/ops/reduce.hpp"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <functional>
#include <string>

#include "tapegrad/autograd/op.hpp"
#include "tapegrad/ops/batching.hpp"
#include "tapegrad/ops/elementwise.hpp"
#include "tapegrad/ops/kernels.hpp"
#include "tapegrad/ops/shape.hpp"

namespace tapegrad {

TAPEGRAD_OP(op_sum, "sum", "reduce");
TAPEGRAD_OP(op_mean, "mean", "reduce");
TAPEGRAD_OP(op_max, "max", "reduce");
TAPEGRAD_OP(op_sum_to, "sum_to", "reduce");

// Batching rules (autograd/autobatch.hpp): a reduction of one call is the same reduction over the stack's
// axes after the leading one. Key: {all axes?, keepdims, axis...}.
namespace {
using autobatch::Group;
std::vector<long> stacked_axes(const Group& g) {
  const auto r = static_cast<long>(batching::call_rank(g, 0));
  std::vector<long> axes;
  if (g.key(0)) {
    for (long a = 1; a <= r; ++a) axes.push_back(a);
  } else {
    for (std::size_t k = 2; k < g.num_keys(); ++k) axes.push_back((g.key(k) < 0 ? g.key(k) + r : g.key(k)) + 1);
  }
  return axes;
}
TAPEGRAD_BATCH_RULE(sum_rule, op_sum, [](const Group& g) { return sum(g.in(0), stacked_axes(g), g.key(1) != 0); });
TAPEGRAD_BATCH_RULE(mean_rule, op_mean, [](const Group& g) { return mean(g.in(0), stacked_axes(g), g.key(1) != 0); });
TAPEGRAD_BATCH_RULE(max_rule, op_max, [](const Group& g) {
  const Tensor& x = g.in(0);
  if (g.key(0)) return max(reshape(x, {x.shape()[0], x.numel() / std::max<std::size_t>(x.shape()[0], 1)}), 1, false);
  return max(x, stacked_axes(g)[0], g.key(1) != 0);
});
// The key of a reduction over `axes` (all of them when `all`).
Tensor defer_reduce(const autobatch::Rule& rule, const Tensor& x, bool all, const std::vector<long>& axes,
                                       bool keepdims) {
  std::int64_t key[2 + Shape::max_rank];
  key[0] = all;
  key[1] = keepdims;
  std::size_t n = 2;
  for (long a : axes) {
    if (n == 2 + Shape::max_rank) return Tensor();  // more axes than any tensor has: the op reports it
    key[n++] = a;
  }
  return autobatch::detail::out_of_line([&] { return autobatch::defer(rule, {&x}, {key, n}); });
}
}  // namespace

namespace {

std::string axes_str(const std::vector<long>& axes) {
  std::string s = "(";
  for (std::size_t k = 0; k < axes.size(); ++k) s += (k ? ", " : "") + std::to_string(axes[k]);
  return s + (axes.size() == 1 ? ",)" : ")");
}

// The reduced axes of `s` as a bitmask; negative axes count from the end. Errors name op and shape.
std::int64_t axes_mask(const char* op, const std::vector<long>& axes, const Shape& s) {
  std::int64_t mask = 0;
  for (long a : axes) {
    const std::size_t k = normalize_axis(op, a, s);
    if (mask & (std::int64_t{1} << k))
      throw Error(std::string(op) + ": axes " + axes_str(axes) + " name axis " + std::to_string(k) +
                  " twice for input of shape " + s.str());
    mask |= std::int64_t{1} << k;
  }
  return mask;
}

std::int64_t all_axes(std::size_t rank) { return (std::int64_t{1} << rank) - 1; }

// The input's shape with 1 on the reduced axes (keepdims), or without them.
Shape reduced_shape(const Shape& s, std::int64_t mask, bool keepdims) {
  Shape out;
  for (std::size_t k = 0; k < s.rank(); ++k) {
    if (!(mask & (std::int64_t{1} << k))) out.push_back(s[k]);
    else if (keepdims) out.push_back(1);
  }
  return out;
}

// The differentiable gradient of a reduction: gout back in keepdims layout, broadcast to the input.
Tensor spread(const Tensor& gout, const Shape& in, std::int64_t mask) {
  const Shape kept = reduced_shape(in, mask, true);
  return broadcast_to(gout.shape() == kept ? gout : reshape(gout, kept), in);
}

// A reduction's axes: bit k set for axis k.
struct SumAttrs {
  std::int64_t mask;
  double scale;  // 1 for sum, 1/count for mean
};
struct MaxAttrs {
  std::int64_t mask;
  std::int64_t* argmax;  // per output element, the flat index of the first maximum of its input row
};

// sum and mean: y = scale * sum over the masked axes.
Tensor sum_impl(const OpInfo& op, const Tensor& x, std::int64_t mask, bool keepdims, bool mean) {
  OpCall call(op, {&x});
  const Shape kept = reduced_shape(x.shape(), mask, true);
  const std::size_t count = kept.numel() ? x.numel() / kept.numel() : 0;
  const double scale = mean ? 1.0 / static_cast<double>(count) : 1.0;
  call.attrs<SumAttrs>() = {mask, scale};
  Tensor y = call.output(reduced_shape(x.shape(), mask, keepdims));
  dispatch(call.dtype(), [&](auto z) {
    using T = decltype(z);
    T* py = y.data<T>();
    const std::size_t n = kept.numel();
    const T* px = static_cast<const T*>(x.raw_data());
    if (n == 1) {  // the whole tensor (a loss): 8 lanes, where one accumulator is a serial chain
      // in fixed blocks (parallel::reduce_blocks): the same value at any thread count
      py[0] = parallel::reduce_blocks<T>(x.numel(), [px](std::size_t b, std::size_t e) {
        return kernels::lanes_reduce(e - b, T(0), [px, b](std::size_t i) { return px[b + i]; }, std::plus<T>());
      });
    } else {
      std::fill_n(py, n, T(0));
      detail::sum_to_accumulate<T>(py, kept, px, x.shape());
    }
    if (mean)
      for (std::size_t i = 0; i < n; ++i) py[i] *= static_cast<T>(scale);
  });
  call.record(
      [](BackwardCtx& c) {
        const Shape& in = c.in_shape(0);
        const Shape kept = reduced_shape(in, c.attrs<SumAttrs>().mask, true);
        dispatch(c.dtype(), [&](auto z) {
          using T = decltype(z);
          const T* gy = c.gout<T>();
          const T s = static_cast<T>(c.attrs<SumAttrs>().scale);
          if (kept.numel() == 1) {  // one value spread over the input: a plain (vectorised) loop
            bool fresh = false;
            T* gx = c.grad_for_write<T>(0, fresh);
            const T v = s * gy[0];
            const std::size_t n = in.numel();
            parallel::for_range(n, n, [&](std::size_t b, std::size_t e) {
              if (fresh) std::fill(gx + b, gx + e, v);
              else for (std::size_t i = b; i < e; ++i) gx[i] += v;
            });
            return;
          }
          T* gx = c.grad<T>(0);
          kernels::broadcast_index(in, in, kept, [&](std::size_t i, std::size_t, std::size_t iy) { gx[i] += s * gy[iy]; });
        });
      },
      [](GraphCtx& g) {
        const SumAttrs& a = g.attrs<SumAttrs>();
        const Tensor d = spread(g.gout(), g.in_shape(0), a.mask);
        g.accumulate(0, a.scale == 1.0 ? d : d * a.scale);
      });
  return y;
}

// max over the masked axes (all, or one): the node keeps, per output element, the flat index of the
// first maximum of its input row (saved, in the arena).
Tensor max_impl(const Tensor& x, std::int64_t mask, bool keepdims) {
  const Shape& s = x.shape();
  for (std::size_t k = 0; k < s.rank(); ++k)
    if ((mask & (std::int64_t{1} << k)) && s[k] == 0)
      throw Error("max: cannot reduce axis " + std::to_string(k) + " of size 0 of input " + s.str());
  OpCall call(op_max, {&x});
  Tensor y = call.output(reduced_shape(s, mask, keepdims));
  // Reduced axes are either all of them or one, so every input row is (outer, size, inner) around it.
  std::size_t outer = 1, size = x.numel(), inner = 1;
  if (mask != all_axes(s.rank())) {
    std::size_t a = 0;
    while (!(mask & (std::int64_t{1} << a))) ++a;
    size = s[a];
    for (std::size_t k = 0; k < a; ++k) outer *= s[k];
    for (std::size_t k = a + 1; k < s.rank(); ++k) inner *= s[k];
  }
  std::int64_t* arg = call.save<std::int64_t>(outer * inner);
  call.attrs<MaxAttrs>() = {mask, arg};
  dispatch(call.dtype(), [&](auto z) {
    using T = decltype(z);
    const T* px = static_cast<const T*>(x.raw_data());
    T* py = y.data<T>();
    for (std::size_t o = 0; o < outer; ++o)
      for (std::size_t i = 0; i < inner; ++i) {
        std::size_t best = o * size * inner + i;
        for (std::size_t j = 1; j < size; ++j) {
          const std::size_t at = (o * size + j) * inner + i;
          if (px[at] > px[best] || (std::isnan(px[at]) && !std::isnan(px[best]))) best = at;  // NaN propagates
        }
        py[o * inner + i] = px[best];
        arg[o * inner + i] = static_cast<std::int64_t>(best);
      }
  });
  call.record(
      [](BackwardCtx& c) {
        const std::int64_t* arg = c.attrs<MaxAttrs>().argmax;
        kernels::grad_pass(c, [&](auto* gx, auto* gy) {
          for (std::size_t j = 0, n = c.out_shape().numel(); j < n; ++j) gx[arg[j]] += gy[j];
        });
      },
      [](GraphCtx& g) {
        const Shape& in = g.in_shape(0);
        const std::int64_t* arg = g.attrs<MaxAttrs>().argmax;
        Tensor onehot = zeros(in, g.gout().dtype());  // a constant: where each maximum sits
        dispatch(onehot.dtype(), [&](auto z) {
          using T = decltype(z);
          T* p = onehot.data<T>();
          for (std::size_t j = 0, n = g.gout().numel(); j < n; ++j) p[arg[j]] = T(1);
        });
        g.accumulate(0, spread(g.gout(), in, g.attrs<MaxAttrs>().mask) * onehot);
      });
  return y;
}

}  // namespace

// sum(x) = sum of all elements. d = broadcast_to(dy, x.shape)
Tensor sum(const Tensor& x) {
  if (autobatch::in_task()) if (Tensor batched = defer_reduce(sum_rule, x, true, {}, false); batched.defined()) return batched;
  return sum_impl(op_sum, x, all_axes(x.rank()), false, false);
}

// sum(x, axes): sum over axes (an empty list reduces nothing). d = broadcast_to(reshape(dy, keepdims shape), x.shape)
Tensor sum(const Tensor& x, const std::vector<long>& axes, bool keepdims) {
  if (autobatch::in_task()) if (Tensor batched = defer_reduce(sum_rule, x, false, axes, keepdims); batched.defined()) return batched;
  return sum_impl(op_sum, x, axes_mask("sum", axes, x.shape()), keepdims, false);
}

// mean(x) = sum(x) / n. d = broadcast_to(dy, x.shape) / n
Tensor mean(const Tensor& x) {
  if (autobatch::in_task()) if (Tensor batched = defer_reduce(mean_rule, x, true, {}, false); batched.defined()) return batched;
  return sum_impl(op_mean, x, all_axes(x.rank()), false, true);
}

// mean(x, axes) = sum(x, axes) / n, n the number of elements reduced into each output. d = spread(dy) / n
Tensor mean(const Tensor& x, const std::vector<long>& axes, bool keepdims) {
  if (autobatch::in_task()) if (Tensor batched = defer_reduce(mean_rule, x, false, axes, keepdims); batched.defined()) return batched;
  return sum_impl(op_mean, x, axes_mask("mean", axes, x.shape()), keepdims, true);
}

// max(x) = largest element. d = dy at the first maximum, 0 elsewhere
Tensor max(const Tensor& x) {
  if (autobatch::in_task()) if (Tensor batched = defer_reduce(max_rule, x, true, {}, false); batched.defined()) return batched;
  return max_impl(x, all_axes(x.rank()), false);
}

// max(x, a) = largest along axis a. d = dy at the first maximum of each row along a, 0 elsewhere
Tensor max(const Tensor& x, long axis, bool keepdims) {
  if (autobatch::in_task()) if (Tensor batched = defer_reduce(max_rule, x, false, {axis}, keepdims); batched.defined()) return batched;
  return max_impl(x, axes_mask("max", {axis}, x.shape()), keepdims);
}

// sum_to(x, s): sums x over the axes where s broadcasts to x's shape. d sum_to = broadcast_to(dy).
Tensor sum_to(const Tensor& x, const Shape& shape) {
  const Shape b = broadcast_shapes("sum_to", shape, x.shape());
  if (b != x.shape())
    throw Error("sum_to: shape " + shape.str() + " does not broadcast to the input shape " + x.shape().str());
  OpCall call(op_sum_to, {&x});
  Tensor y = call.output(shape);
  dispatch(call.dtype(), [&](auto z) {
    using T = decltype(z);
    std::memset(y.data<T>(), 0, shape.numel() * sizeof(T));
    detail::sum_to_accumulate<T>(y.data<T>(), shape, static_cast<const T*>(x.raw_data()), x.shape());
  });
  call.record(
      [](BackwardCtx& c) {
        kernels::grad_pass(c, [&](auto* gx, auto* gy) {
          kernels::broadcast_index(c.in_shape(0), c.in_shape(0), c.out_shape(),
                                   [&](std::size_t i, std::size_t, std::size_t iy) { gx[i] += gy[iy]; });
        });
      },
      [](GraphCtx& g) { g.accumulate(0, broadcast_to(g.gout(), g.in_shape(0))); });
  return y;
}

// Engine hook: the differentiable un-broadcast used by create_graph.
Tensor detail::graph_sum_to(const Tensor& g, const Shape& shape) { return sum_to(g, shape); }

}  // namespace tapegrad
