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

// The same over [j0, j1): with j0 a multiple of the batch size, each j takes the same path (batch or
// scalar) as in the whole-row loop, so a row split at such points computes the same values.
template <class T, class F> void for_lanes(std::size_t j0, std::size_t j1, F&& f) {
  using V = xsimd::batch<T>;
  std::size_t j = j0;
  for (; j + V::size <= j1; j += V::size) f(j, V(T(0)));
  for (; j < j1; ++j) f(j, T(0));
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

// The recurrent activations, written once for the fused kernels (ops/recurrent.cpp, Activation of
// ops/activation.hpp) and the hand references (bench/reference/reference_bptt.cpp, whose enum adds identity for an
// output layer): any enum with sigmoid, tanh and relu; another value is the identity.
template <class A, class X> X activate(A a, const X& u) {
  if (a == A::sigmoid) return simd::sigmoid(u);
  if (a == A::tanh) return simd::tanh(u);
  if (a == A::relu) return xsimd::max(u, X(0));
  return u;
}

// d = dh * a'(u) for n values, the derivative written through the output y = a(u); d may be dh. A
// branch-free loop per activation: vectorised.
template <class A, class T> void times_derivative(A a, const T* dh, const T* __restrict y, T* d, std::size_t n) {
  if (a == A::sigmoid) {
    for (std::size_t i = 0; i < n; ++i) d[i] = dh[i] * y[i] * (T(1) - y[i]);
  } else if (a == A::tanh) {
    for (std::size_t i = 0; i < n; ++i) d[i] = dh[i] * (T(1) - y[i] * y[i]);
  } else if (a == A::relu) {
    for (std::size_t i = 0; i < n; ++i) d[i] = y[i] > T(0) ? dh[i] : T(0);
  } else if (d != dh) {
    for (std::size_t i = 0; i < n; ++i) d[i] = dh[i];
  }
}

}  // namespace tapegrad::simd
