// Internal (not installed): helpers for the ops' batching rules (autograd/autobatch.hpp). A rule sees
// per-example inputs stacked on a new leading axis, (n, ...), and returns the stacked result.
#pragma once

#include <algorithm>

#include "tapegrad/autograd/autobatch.hpp"
#include "tapegrad/ops/shape.hpp"

namespace tapegrad::batching {

using autobatch::Group;

// x with another shape. Off the tape (NoGrad) a batch is an owned tensor that no user holds: the new
// shape shares its buffer instead of copying it (reshape copies owned tensors, which users may write).
inline Tensor reshaped(const Tensor& x, const Shape& s) {
  if (!x.is_leaf() || x.requires_grad()) return reshape(x, s);
  if (s.numel() != x.numel()) return reshape(x, s);  // reshape reports it
  return adopt(tapegrad::detail::TensorInternals::leaf(x), x.raw_data(), s, x.dtype());
}

// One call's rank of input j (a stacked input has one axis more).
inline std::size_t call_rank(const Group& g, std::size_t j) { return g.in(j).rank() - (g.shared(j) ? 0 : 1); }

// The largest call rank over the inputs: the rank of an elementwise call's output.
inline std::size_t max_call_rank(const Group& g) {
  std::size_t r = 0;
  for (std::size_t j = 0; j < g.num_inputs(); ++j) r = std::max(r, call_rank(g, j));
  return r;
}

// Input j ready to broadcast as one call's did against the others: a stacked input gets unit axes after
// its leading one up to `rank` + 1 axes; a shared input, right-aligned, broadcasts over the stack as is.
inline Tensor aligned(const Group& g, std::size_t j, std::size_t rank) {
  const Tensor& x = g.in(j);
  if (g.shared(j) || x.rank() == rank + 1) return x;
  Shape s{x.shape()[0]};
  for (std::size_t k = call_rank(g, j); k < rank; ++k) s.push_back(1);
  for (std::size_t k = 1; k < x.rank(); ++k) s.push_back(x.shape()[k]);
  return reshaped(x, s);
}

// (n, r, ...) seen as (n r, ...): the rows of all calls one after another (a view).
inline Tensor merged_rows(const Tensor& x) {
  Shape s{x.shape()[0] * x.shape()[1]};
  for (std::size_t k = 2; k < x.rank(); ++k) s.push_back(x.shape()[k]);
  return reshaped(x, s);
}

// (n r, ...) back to (n, r, ...).
inline Tensor split_rows(const Tensor& x, std::size_t n) {
  Shape s{n, x.shape()[0] / n};
  for (std::size_t k = 1; k < x.rank(); ++k) s.push_back(x.shape()[k]);
  return reshaped(x, s);
}

// True when every input is stacked (no shared input).
inline bool all_stacked(const Group& g) {
  for (std::size_t j = 0; j < g.num_inputs(); ++j)
    if (g.shared(j)) return false;
  return true;
}

}  // namespace tapegrad::batching
