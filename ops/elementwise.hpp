// Elementwise ops with full NumPy broadcasting, and the arithmetic operators.
#pragma once

#include "tapegrad/autograd/tensor.hpp"

namespace tapegrad {

Tensor add(const Tensor& a, const Tensor& b);
Tensor sub(const Tensor& a, const Tensor& b);
Tensor mul(const Tensor& a, const Tensor& b);
Tensor div(const Tensor& a, const Tensor& b);
Tensor pow(const Tensor& a, const Tensor& b);  // a^b for a > 0 (d/db needs log a)
Tensor pow(const Tensor& x, double p);          // x^p; for p not an integer, x > 0
Tensor add_scalar(const Tensor& x, double s);
Tensor mul_scalar(const Tensor& x, double s);
Tensor neg(const Tensor& x);
Tensor exp(const Tensor& x);
Tensor log(const Tensor& x);
Tensor sqrt(const Tensor& x);
Tensor abs(const Tensor& x);  // d|x|/dx = sign(x), 0 at 0
Tensor clamp(const Tensor& x, double lo, double hi);  // gradient passes where lo < x < hi
// where(mask, a, b): a where mask != 0, else b; mask is a constant (never differentiated); all broadcast.
Tensor where(const Tensor& mask, const Tensor& a, const Tensor& b);

// Dropout with an explicit mask of 0/1 values (draw it with bernoulli_mask): y = x * mask / keep_prob.
Tensor dropout(const Tensor& x, const Tensor& mask, double keep_prob);
// An owned 0/1 tensor, 1 with probability keep_prob; off the tape.
Tensor bernoulli_mask(const Shape& shape, double keep_prob, Generator& gen, DType dtype = default_dtype());

inline Tensor operator+(const Tensor& a, const Tensor& b) { return add(a, b); }
inline Tensor operator-(const Tensor& a, const Tensor& b) { return sub(a, b); }
inline Tensor operator*(const Tensor& a, const Tensor& b) { return mul(a, b); }
inline Tensor operator/(const Tensor& a, const Tensor& b) { return div(a, b); }
inline Tensor operator-(const Tensor& x) { return neg(x); }
inline Tensor operator+(const Tensor& x, double s) { return add_scalar(x, s); }
inline Tensor operator+(double s, const Tensor& x) { return add_scalar(x, s); }
inline Tensor operator-(const Tensor& x, double s) { return add_scalar(x, -s); }
inline Tensor operator-(double s, const Tensor& x) { return add_scalar(neg(x), s); }
inline Tensor operator*(const Tensor& x, double s) { return mul_scalar(x, s); }
inline Tensor operator*(double s, const Tensor& x) { return mul_scalar(x, s); }
inline Tensor operator/(const Tensor& x, double s) { return mul_scalar(x, 1.0 / s); }
inline Tensor operator/(double s, const Tensor& x) { return mul_scalar(pow(x, -1.0), s); }

}  // namespace tapegrad
