// Shape family: reshape, transpose/permute, slice/pad, index_select/index_add, concat/split/chunk,
// stack, flip, broadcast_to. Values are copied into contiguous buffers (nodes never keep views).
#include "tapegrad/ops/shape.hpp"

#include <algorithm>
#include <array>
#include <cstring>
#include <string>

#include "tapegrad/autograd/leaf.hpp"
#include "tapegrad/autograd/op.hpp"
#include "tapegrad/ops/batching.hpp"
#include "tapegrad/ops/kernels.hpp"
#include "tapegrad/ops/reduce.hpp"

namespace tapegrad {

TAPEGRAD_OP(op_reshape, "reshape", "shape");
TAPEGRAD_OP(op_transpose, "transpose", "shape");
TAPEGRAD_OP(op_permute, "permute", "shape");
TAPEGRAD_OP(op_slice, "slice", "shape");
TAPEGRAD_OP(op_select, "select", "shape");
TAPEGRAD_OP(op_pad, "pad", "shape");
TAPEGRAD_OP(op_index_select, "index_select", "shape");
TAPEGRAD_OP(op_index_add, "index_add", "shape");
TAPEGRAD_OP(op_concat, "concat", "shape");
TAPEGRAD_OP(op_flip, "flip", "shape");
TAPEGRAD_OP(op_broadcast_to, "broadcast_to", "shape");

// Batching rules (autograd/autobatch.hpp): each call's value is row i of the stacked input, so an op along
// axis a of one call is the same op along axis a + 1 of the stack. Keys hold the axis as the call gave it
// (calls batch only with equal keys and equal input shapes, so equal keys mean equal axes).
namespace {
using autobatch::Group;
std::size_t stacked_axis(const Group& g, std::int64_t axis) {
  const auto r = static_cast<std::int64_t>(batching::call_rank(g, 0));
  return static_cast<std::size_t>(axis < 0 ? axis + r : axis) + 1;
}
// A view (an axis with nothing before it) costs one node and copies nothing: inside a task it runs in
// place rather than wait for a batch, which would cost a round through the scheduler and a batched op
// besides (not counted as unbatched).
bool view_in_task(const OpInfo& op, const Tensor& x, long axis) {
  // A parameter's rows are batched (one index_select of a tree's leaves); any other value's contiguous run
  // is a view, or off the tape a copy of one run: cheaper in place than through the scheduler.
  if (!x.defined() || (x.is_leaf() && x.requires_grad())) return false;
  const Shape& s = x.shape();
  const long r = static_cast<long>(s.rank());
  if (axis < -r || axis >= r) return false;  // the op reports it
  for (long d = 0; d < (axis < 0 ? axis + r : axis); ++d)
    if (s[static_cast<std::size_t>(d)] != 1) return false;
  autobatch::detail::run_in_place(op);
  return true;
}
TAPEGRAD_BATCH_RULE(reshape_rule, op_reshape, [](const Group& g) {
  Shape s{g.size()};
  for (std::size_t k = 0; k < g.num_keys(); ++k) s.push_back(static_cast<std::size_t>(g.key(k)));
  return batching::reshaped(g.in(0), s);
});
TAPEGRAD_BATCH_RULE(transpose_rule, op_transpose, [](const Group& g) { return transpose(g.in(0)); });
TAPEGRAD_BATCH_RULE(permute_rule, op_permute, [](const Group& g) {
  std::vector<std::size_t> axes{0};  // the stack's axis stays first
  for (std::size_t k = 0; k < g.num_keys(); ++k) axes.push_back(static_cast<std::size_t>(g.key(k)) + 1);
  return permute(g.in(0), axes);
});
TAPEGRAD_BATCH_RULE(broadcast_to_rule, op_broadcast_to, [](const Group& g) {
  Shape s{g.size()};
  for (std::size_t k = 0; k < g.num_keys(); ++k) s.push_back(static_cast<std::size_t>(g.key(k)));
  return broadcast_to(batching::aligned(g, 0, g.num_keys()), s);
});
// slice and select: the start is payload, so calls that take rows at different places still batch (a
// tree's leaves, each a row of one shared word matrix): one index_select of every call's rows on a
// leading axis; equal starts slice the stack directly.
Tensor gather_runs(const Group& g, std::size_t len) {
  const std::size_t n = g.size();
  std::size_t first = 0;
  bool equal = true;
  for (std::size_t i = 0; i < n; ++i) {
    const std::size_t start = *static_cast<const std::size_t*>(g.payload(i));
    equal = equal && (i == 0 || start == first);
    if (i == 0) first = start;
  }
  const Tensor& x = g.in(0);
  const std::size_t axis = g.shared(0) ? stacked_axis(g, g.key(0)) - 1 : stacked_axis(g, g.key(0));
  if (equal && !g.shared(0)) return slice(x, static_cast<long>(axis), first, first + len);
  // Rows of a leading axis only: of the shared value itself, or of each call's value in the stack.
  if (axis != (g.shared(0) ? 0u : 1u)) return Tensor();
  const std::size_t rows = g.shared(0) ? 0 : x.shape()[1];  // rows of one call (stacked)
  std::vector<std::int64_t> idx;
  idx.reserve(n * len);
  for (std::size_t i = 0; i < n; ++i) {
    const std::size_t start = *static_cast<const std::size_t*>(g.payload(i));
    for (std::size_t k = 0; k < len; ++k) idx.push_back(static_cast<std::int64_t>(i * rows + start + k));
  }
  const Tensor picked = index_select(g.shared(0) ? x : batching::merged_rows(x), 0, idx);  // (n len, ...)
  return batching::split_rows(picked, n);
}
// index_select: the indices are payload. Equal indices select on the stack; otherwise, on a leading
// axis, every call's rows are picked by one index_select (of the shared value, or of the calls' rows).
TAPEGRAD_BATCH_RULE(index_select_rule, op_index_select, [](const Group& g) {
  using Ids = std::vector<std::int64_t>;
  const Ids& first = *static_cast<const Ids*>(g.payload(0));
  bool equal = true;
  for (std::size_t i = 1; equal && i < g.size(); ++i) equal = *static_cast<const Ids*>(g.payload(i)) == first;
  const std::size_t axis = stacked_axis(g, g.key(0));  // in the stack
  if (equal && !g.shared(0)) return index_select(g.in(0), static_cast<long>(axis), first);
  if (axis != 1) return Tensor();
  const Tensor& x = g.in(0);
  const std::int64_t rows = g.shared(0) ? 0 : static_cast<std::int64_t>(x.shape()[1]);
  Ids all;
  for (std::size_t i = 0; i < g.size(); ++i)
    for (std::int64_t v : *static_cast<const Ids*>(g.payload(i))) all.push_back(static_cast<std::int64_t>(i) * rows + v);
  return batching::split_rows(index_select(g.shared(0) ? x : batching::merged_rows(x), 0, all), g.size());
});
TAPEGRAD_BATCH_RULE(slice_rule, op_slice, [](const Group& g) { return gather_runs(g, static_cast<std::size_t>(g.key(1))); });
TAPEGRAD_BATCH_RULE(select_rule, op_select, [](const Group& g) {
  const Tensor runs = gather_runs(g, 1);  // (n, 1, ...) at the selected axis
  if (!runs.defined()) return runs;
  Shape s;  // without the axis of size 1 the runs have in place of the selected one
  const std::size_t axis = stacked_axis(g, g.key(0));
  for (std::size_t d = 0; d < runs.rank(); ++d)
    if (d != axis) s.push_back(runs.shape()[d]);
  return batching::reshaped(runs, s);
});
TAPEGRAD_BATCH_RULE(pad_rule, op_pad, [](const Group& g) {
  return pad(g.in(0), static_cast<long>(stacked_axis(g, g.key(0))), static_cast<std::size_t>(g.key(1)),
             static_cast<std::size_t>(g.key(2)));
});
TAPEGRAD_BATCH_RULE(flip_rule, op_flip, [](const Group& g) { return flip(g.in(0), static_cast<long>(stacked_axis(g, g.key(0)))); });
// concat: when nothing comes before the axis in a call's inputs ((1, a) and (1, b) on axis 1: a tree's
// children), the calls' pieces one after another, x_0 y_0 x_1 y_1 ..., already are the stacked result:
// one concat, no gathering. Otherwise the stacked inputs are concatenated on the axis after the stack's.
TAPEGRAD_BATCH_RULE(concat_rule, op_concat, [](const Group& g) {
  if (!batching::all_stacked(g)) return Tensor();  // a shared piece would have to be repeated n times
  const std::size_t axis = stacked_axis(g, g.key(0)) - 1;  // in a call
  const Shape& s0 = g.call_input(0, 0).shape();
  bool leading = true;
  for (std::size_t d = 0; d < axis; ++d) leading = leading && s0[d] == 1;
  if (leading) {
    std::vector<Tensor> pieces;
    pieces.reserve(g.size() * g.num_inputs());
    Shape out{g.size()};
    for (std::size_t i = 0; i < g.size(); ++i)
      for (std::size_t j = 0; j < g.num_inputs(); ++j) pieces.push_back(g.call_input(i, j));
    const Tensor y = concat(pieces, static_cast<long>(axis));
    for (std::size_t d = 0; d < s0.rank(); ++d) out.push_back(d == axis ? y.shape()[d] / g.size() : s0[d]);
    return reshape(y, out);
  }
  std::vector<Tensor> xs;
  for (std::size_t j = 0; j < g.num_inputs(); ++j) xs.push_back(g.in(j));
  return concat(xs, static_cast<long>(axis + 1));
});
}  // namespace

namespace {

std::string axes_str(const std::vector<std::size_t>& axes) {
  std::string s = "(";
  for (std::size_t k = 0; k < axes.size(); ++k) s += (k ? ", " : "") + std::to_string(axes[k]);
  return s + (axes.size() == 1 ? ",)" : ")");
}

// The ops' attributes.
struct PermuteAttrs {
  std::array<std::size_t, Shape::max_rank> axes;  // output axis k = input axis axes[k]
};
struct AxisAttrs {  // concat, flip
  std::size_t axis;
};
struct SliceAttrs {
  std::size_t axis, start, stop;
};
struct PadAttrs {
  std::size_t axis, before;
};
struct IndexAttrs {  // index_select, index_add
  std::size_t axis;
  const std::int64_t* indices;
  std::size_t n;
};

// Calls f(i_out, i_in) for every element of the permuted output (out axis k = input axis axes[k]).
template <class F> void permute_index(const Shape& in, const std::size_t* axes, F&& f) {
  const std::size_t r = in.rank(), n = in.numel();
  if (n == 0) return;
  const auto st = strides_of(in);
  std::array<std::size_t, Shape::max_rank> os{}, ps{}, idx{};
  for (std::size_t k = 0; k < r; ++k) {
    os[k] = in[axes[k]];
    ps[k] = st[axes[k]];
  }
  std::size_t j = 0;
  for (std::size_t i = 0; i < n; ++i) {
    f(i, j);
    for (std::size_t k = r; k-- > 0;) {
      j += ps[k];
      if (++idx[k] < os[k]) break;
      j -= ps[k] * os[k];
      idx[k] = 0;
    }
  }
}

// A shape seen as (outer, size, inner) around one axis: element (o, j, i) sits at (o * size + j) * inner + i.
struct AroundAxis {
  std::size_t outer = 1, size = 1, inner = 1;
};
AroundAxis around(const Shape& s, std::size_t axis) {
  AroundAxis a;
  for (std::size_t k = 0; k < axis; ++k) a.outer *= s[k];
  a.size = s[axis];
  for (std::size_t k = axis + 1; k < s.rank(); ++k) a.inner *= s[k];
  return a;
}

Shape with_axis(Shape s, std::size_t axis, std::size_t size) {
  s[axis] = size;
  return s;
}

// Block copy between two tensors that differ only on one axis: for every outer index, `len` rows of
// the axis starting at src_off (in a source of size src_n) go to dst_off (in a destination of size
// dst_n). Accumulate: += instead of =.
template <class T, bool Acc>
void copy_rows(T* dst, std::size_t dst_n, std::size_t dst_off, const T* src, std::size_t src_n, std::size_t src_off,
               std::size_t len, std::size_t outer, std::size_t inner) {
  const std::size_t m = len * inner;
  for (std::size_t o = 0; o < outer; ++o) {
    T* d = dst + (o * dst_n + dst_off) * inner;
    const T* q = src + (o * src_n + src_off) * inner;
    if (Acc) {
      for (std::size_t i = 0; i < m; ++i) d[i] += q[i];
    } else if (m) {
      std::memcpy(d, q, m * sizeof(T));
    }
  }
}

Shape permuted(const Shape& in, const std::size_t* axes) {
  Shape s;
  for (std::size_t k = 0; k < in.rank(); ++k) s.push_back(in[axes[k]]);
  return s;
}

// y = x with axes permuted.
Tensor permute_impl(OpCall& call, const Tensor& x, const std::size_t* axes) {
  const Shape& in = x.shape();
  std::copy_n(axes, in.rank(), call.attrs<PermuteAttrs>().axes.begin());
  Tensor y = call.output(permuted(in, axes));
  dispatch(call.dtype(), [&](auto z) {
    using T = decltype(z);
    const T* px = static_cast<const T*>(x.raw_data());
    T* py = y.data<T>();
    permute_index(in, axes, [&](std::size_t i, std::size_t j) { py[i] = px[j]; });
  });
  return y;
}

// gx[permuted index] += gy: the adjoint of the forward gather.
void permute_backward(BackwardCtx& c) {
  const auto& axes = c.attrs<PermuteAttrs>().axes;
  kernels::grad_pass(c, [&](auto* gx, auto* gy) {
    permute_index(c.in_shape(0), axes.data(), [&](std::size_t i, std::size_t j) { gx[j] += gy[i]; });
  });
}

// slice's and select's backward: dy added into rows [start, stop) of axis a of dx.
void slice_backward(BackwardCtx& c) {
  const SliceAttrs& s = c.attrs<SliceAttrs>();
  const AroundAxis v = around(c.in_shape(0), s.axis);
  const std::size_t len = s.stop - s.start;
  dispatch(c.dtype(), [&](auto z) {
    using T = decltype(z);
    copy_rows<T, true>(c.grad<T>(0), v.size, s.start, c.gout<T>(), len, 0, len, v.outer, v.inner);
  });
}

}  // namespace

// reshape(x, s): same values, new shape. d = reshape(dy, x.shape)
Tensor reshape(const Tensor& x, const Shape& shape) {
  if (autobatch::in_task() && !view_in_task(op_reshape, x, 0)) {
    std::int64_t key[Shape::max_rank];
    for (std::size_t k = 0; k < shape.rank(); ++k) key[k] = static_cast<std::int64_t>(shape[k]);
    if (Tensor batched = autobatch::detail::out_of_line([&] { return autobatch::defer(reshape_rule, {&x}, {key, shape.rank()}); }); batched.defined()) return batched;
  }
  if (shape.checked_numel("reshape") != x.numel())
    throw Error("reshape: cannot reshape " + x.shape().str() + " (" + std::to_string(x.numel()) + " elements) to " +
                shape.str() + " (" + std::to_string(shape.numel()) + " elements)");
  OpCall call(op_reshape, {&x});
  Tensor y = call.output_view(shape, 0, 0);  // the same values in the same order
  call.record(
      [](BackwardCtx& c) {
        dispatch(c.dtype(), [&](auto z) {
          using T = decltype(z);
          c.accumulate<T>(0, c.gout<T>(), c.in_shape(0));  // the same values in the same order
        });
      },
      [](GraphCtx& g) { g.accumulate(0, reshape(g.gout(), g.in_shape(0))); });
  return y;
}

// transpose(x): swaps the last two axes. d = transpose(dy)
Tensor transpose(const Tensor& x) {
  if (autobatch::in_task()) if (Tensor batched = autobatch::detail::out_of_line([&] { return autobatch::defer(transpose_rule, {&x}); }); batched.defined()) return batched;
  const std::size_t r = x.rank();
  if (r < 2) throw Error("transpose: needs rank >= 2 to swap the last two axes, got " + x.shape().str());
  std::size_t axes[Shape::max_rank];
  for (std::size_t k = 0; k < r; ++k) axes[k] = k;
  axes[r - 2] = r - 1;
  axes[r - 1] = r - 2;
  OpCall call(op_transpose, {&x});
  Tensor y = permute_impl(call, x, axes);
  call.record(permute_backward, [](GraphCtx& g) { g.accumulate(0, transpose(g.gout())); });
  return y;
}

// permute(x, p): y axis k = x axis p[k]. d = permute(dy, inverse(p))
Tensor permute(const Tensor& x, const std::vector<std::size_t>& axes) {
  if (autobatch::in_task() && axes.size() <= Shape::max_rank) {
    std::int64_t key[Shape::max_rank];
    for (std::size_t k = 0; k < axes.size(); ++k) key[k] = static_cast<std::int64_t>(axes[k]);
    if (Tensor batched = autobatch::detail::out_of_line([&] { return autobatch::defer(permute_rule, {&x}, {key, axes.size()}); }); batched.defined()) return batched;
  }
  const std::size_t r = x.rank();
  bool ok = axes.size() == r;
  std::array<bool, Shape::max_rank> seen{};
  for (std::size_t k = 0; ok && k < r; ++k) {
    ok = axes[k] < r && !seen[axes[k]];
    if (ok) seen[axes[k]] = true;
  }
  if (!ok) throw Error("permute: axes " + axes_str(axes) + " are not a permutation of the axes of " + x.shape().str());
  OpCall call(op_permute, {&x});
  Tensor y = permute_impl(call, x, axes.data());
  call.record(permute_backward, [](GraphCtx& g) {
    const std::size_t r = g.in_shape(0).rank();
    const auto& p = g.attrs<PermuteAttrs>().axes;
    std::vector<std::size_t> inv(r);
    for (std::size_t k = 0; k < r; ++k) inv[p[k]] = k;
    g.accumulate(0, permute(g.gout(), inv));
  });
  return y;
}

// slice(x, a, s, e) = x[..., s:e, ...] on axis a. d = pad(dy, a, s, n - e)
Tensor slice(const Tensor& x, long axis, std::size_t start, std::size_t stop) {
  if (autobatch::in_task() && start <= stop && !view_in_task(op_slice, x, axis))
    if (Tensor batched = autobatch::detail::out_of_line([&] { return autobatch::defer(slice_rule, {&x}, {axis, std::int64_t(stop - start)}, &start); }); batched.defined())
      return batched;
  if (x.rank() == 0) throw Error("slice: cannot slice a rank-0 tensor " + x.shape().str());
  const std::size_t a = normalize_axis("slice", axis, x.shape());
  if (!(start <= stop && stop <= x.shape()[a]))
    throw Error("slice: range [" + std::to_string(start) + ", " + std::to_string(stop) + ") is not within axis " +
                std::to_string(a) + " of size " + std::to_string(x.shape()[a]) + " of input " + x.shape().str());
  OpCall call(op_slice, {&x});
  call.attrs<SliceAttrs>() = {a, start, stop};
  const Shape out = with_axis(x.shape(), a, stop - start);
  const AroundAxis v = around(x.shape(), a);
  Tensor y;
  if (v.outer == 1) {  // one contiguous run (a time step of a (T, B, ...) sequence): a view, no copy
    y = call.output_view(out, 0, start * v.inner);
  } else {
    y = call.output(out);
    dispatch(call.dtype(), [&](auto z) {
      using T = decltype(z);
      copy_rows<T, false>(y.data<T>(), stop - start, 0, static_cast<const T*>(x.raw_data()), v.size, start,
                          stop - start, v.outer, v.inner);
    });
  }
  call.record(slice_backward, [](GraphCtx& g) {
    const SliceAttrs& s = g.attrs<SliceAttrs>();
    const std::size_t n = g.in_shape(0)[s.axis];
    g.accumulate(0, pad(g.gout(), static_cast<long>(s.axis), s.start, n - s.stop));
  });
  return y;
}

// select(x, a, i) = x[..., i, ...], axis a removed: a slice of one without its axis. A view when the run
// is contiguous (a leading axis: one example's row of a batched value). d = dy into row i of dx.
Tensor select(const Tensor& x, long axis, std::size_t index) {
  if (autobatch::in_task() && !view_in_task(op_select, x, axis)) if (Tensor batched = autobatch::detail::out_of_line([&] { return autobatch::defer(select_rule, {&x}, {axis}, &index); }); batched.defined()) return batched;
  if (!x.defined()) throw Error("select: input is undefined");
  if (x.rank() == 0) throw Error("select: cannot select from a rank-0 tensor " + x.shape().str());
  const std::size_t a = normalize_axis("select", axis, x.shape());
  if (index >= x.shape()[a])
    throw Error("select: index " + std::to_string(index) + " is outside axis " + std::to_string(a) + " of size " +
                std::to_string(x.shape()[a]) + " of input " + x.shape().str());
  OpCall call(op_select, {&x});
  call.attrs<SliceAttrs>() = {a, index, index + 1};
  Shape out;
  for (std::size_t d = 0; d < x.rank(); ++d)
    if (d != a) out.push_back(x.shape()[d]);
  const AroundAxis v = around(x.shape(), a);
  Tensor y;
  if (v.outer == 1) {
    y = call.output_view(out, 0, index * v.inner);
  } else {
    y = call.output(out);
    dispatch(call.dtype(), [&](auto z) {
      using T = decltype(z);
      copy_rows<T, false>(y.data<T>(), 1, 0, static_cast<const T*>(x.raw_data()), v.size, index, 1, v.outer, v.inner);
    });
  }
  call.record(slice_backward, [](GraphCtx& g) {
    const SliceAttrs& s = g.attrs<SliceAttrs>();
    const Shape& in = g.in_shape(0);
    g.accumulate(0, pad(reshape(g.gout(), with_axis(in, s.axis, 1)), static_cast<long>(s.axis), s.start, in[s.axis] - s.stop));
  });
  return y;
}

// pad(x, a, b, e): b zeros before and e after on axis a. d = slice(dy, a, b, b + n)
Tensor pad(const Tensor& x, long axis, std::size_t before, std::size_t after) {
  if (autobatch::in_task())
    if (Tensor batched = autobatch::detail::out_of_line([&] { return autobatch::defer(pad_rule, {&x}, {axis, std::int64_t(before), std::int64_t(after)}); }); batched.defined()) return batched;
  if (x.rank() == 0) throw Error("pad: cannot pad a rank-0 tensor " + x.shape().str());
  const std::size_t a = normalize_axis("pad", axis, x.shape());
  // The padded size must not wrap (a wrapped size made a short buffer that the copy overran).
  std::size_t m = 0;
  const std::size_t n = x.shape()[a];
  if (__builtin_add_overflow(before, n, &m) || __builtin_add_overflow(m, after, &m))
    throw Error("pad: padding " + std::to_string(before) + " before and " + std::to_string(after) + " after axis " +
                std::to_string(a) + " of " + x.shape().str() + " overflows the size");
  with_axis(x.shape(), a, m).checked_numel("pad");
  OpCall call(op_pad, {&x});
  call.attrs<PadAttrs>() = {a, before};
  Tensor y = call.output(with_axis(x.shape(), a, m));
  const AroundAxis v = around(x.shape(), a);
  dispatch(call.dtype(), [&](auto z) {
    using T = decltype(z);
    T* py = y.data<T>();
    std::fill_n(py, y.numel(), T(0));
    copy_rows<T, false>(py, m, before, static_cast<const T*>(x.raw_data()), n, 0, n, v.outer, v.inner);
  });
  call.record(
      [](BackwardCtx& c) {
        const PadAttrs& p = c.attrs<PadAttrs>();
        const AroundAxis v = around(c.in_shape(0), p.axis);
        dispatch(c.dtype(), [&](auto z) {
          using T = decltype(z);
          copy_rows<T, true>(c.grad<T>(0), v.size, 0, c.gout<T>(), c.out_shape()[p.axis], p.before, v.size, v.outer,
                             v.inner);
        });
      },
      [](GraphCtx& g) {
        const PadAttrs& p = g.attrs<PadAttrs>();
        g.accumulate(0, slice(g.gout(), static_cast<long>(p.axis), p.before, p.before + g.in_shape(0)[p.axis]));
      });
  return y;
}

namespace {
void check_indices(const char* op, const std::vector<std::int64_t>& indices, std::size_t axis, std::size_t size,
                   const Shape& shape) {
  for (std::size_t k = 0; k < indices.size(); ++k)
    if (indices[k] < 0 || static_cast<std::size_t>(indices[k]) >= size)
      throw Error(std::string(op) + ": index " + std::to_string(indices[k]) + " (position " + std::to_string(k) +
                  ") out of range [0, " + std::to_string(size) + ") for axis " + std::to_string(axis) + " of " + shape.str());
}

// The axis and a copy of the indices, in the arena.
void save_indices(OpCall& call, std::size_t axis, const std::vector<std::int64_t>& indices) {
  std::int64_t* p = call.save<std::int64_t>(indices.size());
  std::copy(indices.begin(), indices.end(), p);
  call.attrs<IndexAttrs>() = {axis, p, indices.size()};
}
std::vector<std::int64_t> saved_indices(const IndexAttrs& a) { return {a.indices, a.indices + a.n}; }

// Row gather/scatter along an axis: dst row idx[j] (of dst_n) <-> src row j (of n), for every outer index.
// Gather: dst row j (+)= src row idx[j]; scatter: dst row idx[j] += src row j.
template <class T, bool Acc>
void gather_rows(T* dst, const T* src, std::size_t src_n, const std::int64_t* idx, std::size_t n, std::size_t outer,
                 std::size_t inner) {
  for (std::size_t o = 0; o < outer; ++o)
    for (std::size_t j = 0; j < n; ++j) {
      T* d = dst + (o * n + j) * inner;
      const T* q = src + (o * src_n + static_cast<std::size_t>(idx[j])) * inner;
      for (std::size_t i = 0; i < inner; ++i) {
        if (Acc) d[i] += q[i];
        else d[i] = q[i];
      }
    }
}
template <class T>
void scatter_add_rows(T* dst, std::size_t dst_n, const T* src, const std::int64_t* idx, std::size_t n, std::size_t outer,
                      std::size_t inner) {
  for (std::size_t o = 0; o < outer; ++o)
    for (std::size_t j = 0; j < n; ++j) {
      T* d = dst + (o * dst_n + static_cast<std::size_t>(idx[j])) * inner;
      const T* q = src + (o * n + j) * inner;
      for (std::size_t i = 0; i < inner; ++i) d[i] += q[i];
    }
}
}  // namespace

// index_select(x, a, idx): y[..., j, ...] = x[..., idx[j], ...]. d = index_add(dy, a, idx, n)
Tensor index_select(const Tensor& x, long axis, const std::vector<std::int64_t>& indices) {
  if (x.rank() == 0) throw Error("index_select: cannot index a rank-0 tensor " + x.shape().str());
  const std::size_t a = normalize_axis("index_select", axis, x.shape());
  check_indices("index_select", indices, a, x.shape()[a], x.shape());
  if (autobatch::in_task())  // checked first: the batch trusts the indices
    if (Tensor batched = autobatch::detail::out_of_line([&] { return autobatch::defer(index_select_rule, {&x}, {axis, std::int64_t(indices.size())}, &indices); });
        batched.defined())
      return batched;
  OpCall call(op_index_select, {&x});
  save_indices(call, a, indices);
  const std::size_t n = indices.size();
  Tensor y = call.output(with_axis(x.shape(), a, n));
  const AroundAxis v = around(x.shape(), a);
  dispatch(call.dtype(), [&](auto z) {
    using T = decltype(z);
    gather_rows<T, false>(y.data<T>(), static_cast<const T*>(x.raw_data()), v.size, indices.data(), n, v.outer, v.inner);
  });
  call.record(
      [](BackwardCtx& c) {
        const IndexAttrs& ia = c.attrs<IndexAttrs>();
        const AroundAxis v = around(c.in_shape(0), ia.axis);
        dispatch(c.dtype(), [&](auto z) {
          using T = decltype(z);
          scatter_add_rows<T>(c.grad<T>(0), v.size, c.gout<T>(), ia.indices, ia.n, v.outer, v.inner);
        });
      },
      [](GraphCtx& g) {
        const IndexAttrs& ia = g.attrs<IndexAttrs>();
        g.accumulate(0, index_add(g.gout(), static_cast<long>(ia.axis), saved_indices(ia), g.in_shape(0)[ia.axis]));
      });
  return y;
}

// index_add(s, a, idx, n): zeros with n rows on axis a, y[..., idx[j], ...] += s[..., j, ...].
// d = index_select(dy, a, idx)
Tensor index_add(const Tensor& src, long axis, const std::vector<std::int64_t>& indices, std::size_t size) {
  if (src.rank() == 0) throw Error("index_add: cannot scatter a rank-0 tensor " + src.shape().str());
  const std::size_t a = normalize_axis("index_add", axis, src.shape());
  if (src.shape()[a] != indices.size())
    throw Error("index_add: source " + src.shape().str() + " has " + std::to_string(src.shape()[a]) + " entries on axis " +
                std::to_string(a) + " but " + std::to_string(indices.size()) + " indices were given");
  const Shape out = with_axis(src.shape(), a, size);
  out.checked_numel("index_add");
  check_indices("index_add", indices, a, size, out);
  OpCall call(op_index_add, {&src});
  save_indices(call, a, indices);
  Tensor y = call.output(out);
  const AroundAxis v = around(out, a);
  dispatch(call.dtype(), [&](auto z) {
    using T = decltype(z);
    T* py = y.data<T>();
    std::fill_n(py, y.numel(), T(0));
    scatter_add_rows<T>(py, size, static_cast<const T*>(src.raw_data()), indices.data(), indices.size(), v.outer, v.inner);
  });
  call.record(
      [](BackwardCtx& c) {
        const IndexAttrs& ia = c.attrs<IndexAttrs>();
        const AroundAxis v = around(c.out_shape(), ia.axis);
        dispatch(c.dtype(), [&](auto z) {
          using T = decltype(z);
          gather_rows<T, true>(c.grad<T>(0), c.gout<T>(), v.size, ia.indices, ia.n, v.outer, v.inner);
        });
      },
      [](GraphCtx& g) {
        const IndexAttrs& ia = g.attrs<IndexAttrs>();
        g.accumulate(0, index_select(g.gout(), static_cast<long>(ia.axis), saved_indices(ia)));
      });
  return y;
}

// concat(xs, a): the inputs one after another along axis a. d x_k = slice(dy, a, off_k, off_k + n_k)
Tensor concat(const std::vector<Tensor>& xs, long axis) {
  if (autobatch::in_task() && !xs.empty()) if (Tensor batched = autobatch::detail::out_of_line([&] { return autobatch::defer(concat_rule, xs, {axis}); }); batched.defined()) return batched;
  if (xs.empty()) throw Error("concat: needs at least one tensor");
  for (std::size_t k = 0; k < xs.size(); ++k)
    if (!xs[k].defined()) throw Error("concat: input " + std::to_string(k) + " is undefined");
  const Shape& s0 = xs[0].shape();
  if (s0.rank() == 0) throw Error("concat: cannot concatenate rank-0 tensors " + s0.str());
  const std::size_t a = normalize_axis("concat", axis, s0);
  std::size_t total = 0;
  for (std::size_t k = 0; k < xs.size(); ++k) {
    const Shape& s = xs[k].shape();
    bool ok = s.rank() == s0.rank();
    for (std::size_t d = 0; ok && d < s.rank(); ++d) ok = d == a || s[d] == s0[d];
    if (!ok)
      throw Error("concat: input " + std::to_string(k) + " of shape " + s.str() + " does not match input 0 of shape " +
                  s0.str() + " on the axes other than " + std::to_string(a));
    total += s[a];
  }
  OpCall call(op_concat, xs);
  call.attrs<AxisAttrs>().axis = a;
  Tensor y = call.output(with_axis(s0, a, total));
  const AroundAxis v = around(y.shape(), a);
  dispatch(call.dtype(), [&](auto z) {
    using T = decltype(z);
    T* py = y.data<T>();
    std::size_t off = 0;
    for (const Tensor& x : xs) {
      const std::size_t n = x.shape()[a];
      copy_rows<T, false>(py, total, off, static_cast<const T*>(x.raw_data()), n, 0, n, v.outer, v.inner);
      off += n;
    }
  });
  call.record(
      [](BackwardCtx& c) {
        const std::size_t a = c.attrs<AxisAttrs>().axis;
        const AroundAxis v = around(c.out_shape(), a);
        dispatch(c.dtype(), [&](auto z) {
          using T = decltype(z);
          std::size_t off = 0;
          for (std::size_t k = 0; k < c.num_inputs(); ++k) {
            const std::size_t n = c.in_shape(k)[a];
            if (c.needs(k)) {  // input k's gradient is written in full: a new buffer is assigned, not zeroed
              bool fresh = false;
              T* gk = c.grad_for_write<T>(k, fresh);
              if (fresh) copy_rows<T, false>(gk, n, 0, c.gout<T>(), v.size, off, n, v.outer, v.inner);
              else copy_rows<T, true>(gk, n, 0, c.gout<T>(), v.size, off, n, v.outer, v.inner);
            }
            off += n;
          }
        });
      },
      [](GraphCtx& g) {
        const long a = static_cast<long>(g.attrs<AxisAttrs>().axis);
        std::size_t off = 0;
        for (std::size_t k = 0; k < g.num_inputs(); ++k) {
          const std::size_t n = g.in_shape(k)[static_cast<std::size_t>(a)];
          if (g.needs(k)) g.accumulate(k, slice(g.gout(), a, off, off + n));
          off += n;
        }
      });
  return y;
}

// Composite: consecutive slices of the given sizes along axis a.
std::vector<Tensor> split(const Tensor& x, const std::vector<std::size_t>& sizes, long axis) {
  if (x.rank() == 0) throw Error("split: cannot split a rank-0 tensor " + x.shape().str());
  const std::size_t a = normalize_axis("split", axis, x.shape());
  std::size_t total = 0;
  for (std::size_t n : sizes) total += n;
  if (total != x.shape()[a]) {
    std::vector<std::size_t> s(sizes.begin(), sizes.end());
    throw Error("split: sizes " + axes_str(s) + " add up to " + std::to_string(total) + ", not to the size " +
                std::to_string(x.shape()[a]) + " of axis " + std::to_string(a) + " of " + x.shape().str());
  }
  std::vector<Tensor> out;
  out.reserve(sizes.size());
  std::size_t off = 0;
  for (std::size_t n : sizes) {
    out.push_back(slice(x, static_cast<long>(a), off, off + n));
    off += n;
  }
  return out;
}

// Composite: n slices along axis a; sizes differ by at most one, the larger ones first (numpy's array_split).
std::vector<Tensor> chunk(const Tensor& x, std::size_t n, long axis) {
  if (n == 0) throw Error("chunk: cannot split " + x.shape().str() + " into 0 chunks");
  if (x.rank() == 0) throw Error("chunk: cannot split a rank-0 tensor " + x.shape().str());
  const std::size_t a = normalize_axis("chunk", axis, x.shape());
  const std::size_t m = x.shape()[a];
  std::vector<std::size_t> sizes(n, m / n);
  for (std::size_t k = 0; k < m % n; ++k) ++sizes[k];
  return split(x, sizes, static_cast<long>(a));
}

// Composite: each input reshaped with a new axis of size 1 at a, then concatenated along it.
Tensor stack(const std::vector<Tensor>& xs, long axis) {
  if (xs.empty()) throw Error("stack: needs at least one tensor");
  for (std::size_t k = 0; k < xs.size(); ++k)
    if (!xs[k].defined()) throw Error("stack: input " + std::to_string(k) + " is undefined");
  const Shape& s0 = xs[0].shape();
  const long r = static_cast<long>(s0.rank()) + 1;
  if (axis < -r || axis >= r)
    throw Error("stack: axis " + std::to_string(axis) + " out of range for stacking inputs of shape " + s0.str());
  const std::size_t a = static_cast<std::size_t>(axis < 0 ? axis + r : axis);
  for (std::size_t k = 1; k < xs.size(); ++k)
    if (xs[k].shape() != s0)
      throw Error("stack: input " + std::to_string(k) + " of shape " + xs[k].shape().str() +
                  " differs from input 0 of shape " + s0.str());
  Shape s;
  for (std::size_t d = 0; d < s0.rank(); ++d) {
    if (d == a) s.push_back(1);
    s.push_back(s0[d]);
  }
  if (a == s0.rank()) s.push_back(1);
  std::vector<Tensor> parts;
  parts.reserve(xs.size());
  for (const Tensor& x : xs) parts.push_back(reshape(x, s));
  return concat(parts, static_cast<long>(a));
}

// flip(x, a): reverses axis a. d = flip(dy, a)
Tensor flip(const Tensor& x, long axis) {
  if (autobatch::in_task()) if (Tensor batched = autobatch::detail::out_of_line([&] { return autobatch::defer(flip_rule, {&x}, {axis}); }); batched.defined()) return batched;
  if (x.rank() == 0) throw Error("flip: cannot flip a rank-0 tensor " + x.shape().str());
  const std::size_t a = normalize_axis("flip", axis, x.shape());
  OpCall call(op_flip, {&x});
  call.attrs<AxisAttrs>().axis = a;
  Tensor y = call.output(x.shape());
  const AroundAxis v = around(x.shape(), a);
  dispatch(call.dtype(), [&](auto z) {
    using T = decltype(z);
    T* py = y.data<T>();
    const T* px = static_cast<const T*>(x.raw_data());
    for (std::size_t j = 0; j < v.size; ++j)
      copy_rows<T, false>(py, v.size, v.size - 1 - j, px, v.size, j, 1, v.outer, v.inner);
  });
  call.record(
      [](BackwardCtx& c) {
        const AroundAxis v = around(c.in_shape(0), c.attrs<AxisAttrs>().axis);
        dispatch(c.dtype(), [&](auto z) {
          using T = decltype(z);
          T* gx = c.grad<T>(0);
          const T* gy = c.gout<T>();
          for (std::size_t j = 0; j < v.size; ++j)
            copy_rows<T, true>(gx, v.size, v.size - 1 - j, gy, v.size, j, 1, v.outer, v.inner);
        });
      },
      [](GraphCtx& g) { g.accumulate(0, flip(g.gout(), static_cast<long>(g.attrs<AxisAttrs>().axis))); });
  return y;
}

// broadcast_to(x, s): d = sum_to(dy, x.shape)
Tensor broadcast_to(const Tensor& x, const Shape& shape) {
  if (autobatch::in_task()) {
    std::int64_t key[Shape::max_rank];
    for (std::size_t k = 0; k < shape.rank(); ++k) key[k] = static_cast<std::int64_t>(shape[k]);
    if (Tensor batched = autobatch::detail::out_of_line([&] { return autobatch::defer(broadcast_to_rule, {&x}, {key, shape.rank()}); }); batched.defined()) return batched;
  }
  shape.checked_numel("broadcast_to");
  const Shape b = broadcast_shapes("broadcast_to", x.shape(), shape);
  if (b != shape) throw Error("broadcast_to: input " + x.shape().str() + " does not broadcast to " + shape.str());
  OpCall call(op_broadcast_to, {&x});
  Tensor y = call.output(shape);
  dispatch(call.dtype(), [&](auto z) {
    using T = decltype(z);
    const T* px = static_cast<const T*>(x.raw_data());
    T* py = y.data<T>();
    kernels::broadcast_index(shape, x.shape(), shape, [&](std::size_t i, std::size_t ix, std::size_t) { py[i] = px[ix]; });
  });
  call.record(
      [](BackwardCtx& c) {
        dispatch(c.dtype(), [&](auto z) {
          using T = decltype(z);
          c.accumulate<T>(0, c.gout<T>(), c.out_shape());
        });
      },
      [](GraphCtx& g) { g.accumulate(0, sum_to(g.gout(), g.in_shape(0))); });
  return y;
}

}  // namespace tapegrad

// ----- autobatch's hooks: per-example values stacked, and one example's row -----

namespace tapegrad::autobatch::detail {

using I = tapegrad::detail::TensorInternals;  // rows and views of the tape's slots

// Consecutive rows [start, start + n) of one recorded value of shape (N, ...one call's shape) are already
// the stack: a view of them. Anything else is copied together (concat, whose backward hands each call its
// gradient).
Tensor stack_rows(const std::vector<const Tensor*>& xs) {
  const Tensor& x0 = *xs[0];
  const Shape& s = x0.shape();
  const std::size_t n = xs.size(), bytes = s.numel() * dtype_size(x0.dtype());
  if (!x0.is_leaf() && bytes && I::slot(x0).view_of != tapegrad::detail::Slot::none) {
    Tape* tape = x0.tape();
    const std::uint32_t base = I::slot(x0).view_of;
    const tapegrad::detail::Slot& b = I::slot(*tape, base);
    bool rows = b.shape.rank() == s.rank() + 1 && b.dtype == x0.dtype() && I::slot(x0).view_offset % bytes == 0;
    for (std::size_t d = 0; rows && d < s.rank(); ++d) rows = b.shape[d + 1] == s[d];
    const std::size_t start = rows ? I::slot(x0).view_offset / bytes : 0;
    for (std::size_t i = 1; rows && i < n; ++i) {
      const Tensor& x = *xs[i];
      rows = !x.is_leaf() && x.tape() == tape && I::epoch(x) == I::epoch(x0) && I::slot(x).view_of == base &&
             I::slot(x).view_offset == (start + i) * bytes && x.shape() == s;
    }
    if (rows) {
      const Tensor whole = I::from_slot(tape, base, I::epoch(x0));
      return start == 0 && n == b.shape[0] ? whole : slice(whole, 0, start, start + n);
    }
  }
  // Off the tape: consecutive rows of one batch (row_of shares the batch's buffer) are that batch.
  Shape out{n};
  for (std::size_t d : s) out.push_back(d);
  if (x0.is_leaf() && I::leaf(x0)->owner && !x0.requires_grad() && bytes) {
    const auto& owner = I::leaf(x0)->owner;
    const char* first = static_cast<const char*>(x0.raw_data());
    bool rows = true;
    for (std::size_t i = 1; rows && i < n; ++i) {
      const Tensor& x = *xs[i];
      rows = x.is_leaf() && I::leaf(x)->owner == owner && !x.requires_grad() && x.dtype() == x0.dtype() &&
             x.shape() == s && static_cast<const char*>(x.raw_data()) == first + i * bytes;
    }
    if (rows) return adopt(owner, const_cast<char*>(first), out, x0.dtype());
  }
  std::vector<Tensor> parts;
  parts.reserve(n);
  for (const Tensor* x : xs) parts.push_back(*x);
  if (s.rank() == 0) return stack(parts, 0);
  return batching::reshaped(concat(parts, 0), out);
}

// A recorded batch: a select node (a view whose gradient is the batch's row). A batch off the tape
// (NoGrad): the row shares the batch's buffer, which nothing else can reach (no copy, no node).
Tensor row_of(const Tensor& stacked, std::size_t i) {
  if (!stacked.is_leaf()) return select(stacked, 0, i);
  const Shape row(stacked.shape().begin() + 1, stacked.shape().end());
  const std::size_t bytes = row.numel() * dtype_size(stacked.dtype());
  return adopt(I::leaf(stacked), static_cast<char*>(stacked.raw_data()) + i * bytes, row, stacked.dtype());
}

}  // namespace tapegrad::autobatch::detail
