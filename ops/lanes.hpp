// Internal: the one row-reduction loop of the op kernels (no xtensor here, so BLAS code can use it too).
#pragma once

#include <algorithm>
#include <cstddef>

namespace tapegrad::kernels {

// combine(... combine(init, term(0)) ..., term(n-1)) over a row, with 8 independent accumulators: the
// compiler vectorises them, where one accumulator is a serial chain (about 7x slower on rows of 1024).
template <class A, class Term, class Combine> A lanes_reduce(std::size_t n, A init, Term term, Combine combine) {
  A acc[8];
  std::fill(acc, acc + 8, init);
  std::size_t i = 0;
  for (; i + 8 <= n; i += 8)
    for (std::size_t k = 0; k < 8; ++k) acc[k] = combine(acc[k], term(i + k));
  A s = init;
  for (; i < n; ++i) s = combine(s, term(i));
  for (std::size_t k = 0; k < 8; ++k) s = combine(s, acc[k]);
  return s;
}

}  // namespace tapegrad::kernels
