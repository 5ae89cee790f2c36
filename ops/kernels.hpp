// Internal helpers shared by the op families' kernels (not part of the public API).
#pragma once

#include <algorithm>
#include <array>
#include <cstddef>
#include <xtensor/xadapt.hpp>

#include "tapegrad/autograd/op.hpp"

namespace tapegrad::kernels {

// A 1-D xtensor view over n contiguous values, without copying (xsimd-vectorised math on it).
template <class T> auto flat(T* p, std::size_t n) {
  return xt::adapt(p, n, xt::no_ownership(), std::array<std::size_t, 1>{n});
}
template <class T> auto flat(const T* p, std::size_t n) { return flat(const_cast<T*>(p), n); }

// Calls f(i_out, i_a, i_b) for every element of `out`, where a and b broadcast to out.
template <class F> void broadcast_index(const Shape& out, const Shape& a, const Shape& b, F&& f) {
  const std::size_t r = out.rank(), n = out.numel();
  if (n == 0) return;
  std::array<std::size_t, Shape::max_rank> sa{}, sb{}, idx{};
  const auto ga = strides_of(a), gb = strides_of(b);
  for (std::size_t k = 0; k < r; ++k) {
    const std::size_t oa = r - a.rank(), ob = r - b.rank();
    sa[k] = (k >= oa && a[k - oa] != 1) ? ga[k - oa] : 0;
    sb[k] = (k >= ob && b[k - ob] != 1) ? gb[k - ob] : 0;
  }
  std::size_t ia = 0, ib = 0;
  for (std::size_t i = 0; i < n; ++i) {
    f(i, ia, ib);
    for (std::size_t k = r; k-- > 0;) {
      ia += sa[k];
      ib += sb[k];
      if (++idx[k] < out[k]) break;
      ia -= sa[k] * out[k];
      ib -= sb[k] * out[k];
      idx[k] = 0;
    }
  }
}

// An owned constant computed elementwise from x's values: y_i = f(x_i). Used for masks (relu, clamp,
// abs) in differentiable backward passes, where the mask itself is not differentiated.
template <class F> Tensor constant_from(const Tensor& x, F&& f) {
  Tensor c = empty(x.shape(), x.dtype());
  dispatch(x.dtype(), [&](auto z) {
    using T = decltype(z);
    const T* px = static_cast<const T*>(x.raw_data());
    T* pc = c.data<T>();
    for (std::size_t i = 0, n = x.numel(); i < n; ++i) pc[i] = static_cast<T>(f(px[i]));
  });
  return c;
}

// Row maximum with 8 independent accumulators: the compiler vectorises them, where one accumulator is
// a serial chain of dependent compares (about 7x slower on rows of 1024).
template <class T> T lanes_max(const T* p, std::size_t n) {  // n >= 1
  T acc[8];
  std::fill(acc, acc + 8, p[0]);
  std::size_t i = 0;
  for (; i + 8 <= n; i += 8)
    for (std::size_t k = 0; k < 8; ++k) acc[k] = acc[k] < p[i + k] ? p[i + k] : acc[k];
  T m = p[0];
  for (; i < n; ++i) m = m < p[i] ? p[i] : m;
  for (std::size_t k = 0; k < 8; ++k) m = m < acc[k] ? acc[k] : m;
  return m;
}

// A unary op's forward: y = f(x) through a whole-buffer kernel(vx, vy) on 1-D views (xsimd-vectorised).
template <class K> Tensor unary(OpCall& call, const Tensor& x, K kernel) {
  Tensor y = call.output(x.shape());
  dispatch(call.dtype(), [&](auto z) {
    using T = decltype(z);
    const std::size_t n = x.numel();
    auto vy = kernels::flat(y.data<T>(), n);
    auto vx = kernels::flat(static_cast<const T*>(x.raw_data()), n);
    kernel(vx, vy);
  });
  return y;
}

}  // namespace tapegrad::kernels
