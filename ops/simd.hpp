// Internal: loops over a row with xsimd batches, for the fused recurrent kernels and the hand-written
// BPTT references (the same kernel class on both sides of the benchmark). Not installed.
//
// for_lanes<T>(n, f) calls f(j, X{}) with X = xsimd::batch<T> for the full batches, then X = T for the
// rest; ld<X> / st load and store either. xsimd's exp and tanh are the ones xtensor's expressions use;
// calling them on batches directly saves building an expression per gate and row, which at H = 64 costs
// as much as the arithmetic.
#pragma once

#include <cmath>
#include <cstddef>
#include <type_traits>
#include <xsimd/xsimd.hpp>

namespace tapegrad::simd {

template <class T, class F> void for_lanes(std::size_t n, F&& f) {
  using V = xsimd::batch<T>;
  std::size_t j = 0;
  for (; j + V::size <= n; j += V::size) f(j, V(T(0)));
  for (; j < n; ++j) f(j, T(0));
}

template <class X, class T> X ld(const T* p) {
  if constexpr (std::is_same_v<X, T>) return *p;
  else return X::load_unaligned(p);
}

template <class X, class T> void st(T* p, const X& v) {
  if constexpr (std::is_same_v<X, T>) *p = v;
  else v.store_unaligned(p);
}

template <class X> X sigmoid(const X& x) {
  using std::exp;
  return X(1) / (X(1) + exp(-x));  // exp overflows to inf for x << 0: 0, no NaN
}

template <class X> X tanh(const X& x) {
  using std::tanh;
  return tanh(x);
}

}  // namespace tapegrad::simd
