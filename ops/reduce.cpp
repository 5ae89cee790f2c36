// Reduction family: sum, mean, max over axes (keepdims), and sum_to, the engine's un-broadcast.
#include "tapegrad/ops/reduce.hpp"

#include <cstring>

#include "tapegrad/autograd/tape.hpp"
#include "tapegrad/ops/kernels.hpp"
#include "tapegrad/ops/shape.hpp"

namespace tapegrad {

TAPEGRAD_OP(op_sum_to, "sum_to", "reduce");

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
        dispatch(c.dtype(), [&](auto z) {
          using T = decltype(z);
          T* gx = c.grad<T>(0);
          const T* gy = c.gout<T>();
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
