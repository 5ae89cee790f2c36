// Shape family: reshape, transpose/permute, slice/pad, index_select/index_add, concat/split/chunk,
// stack, flip, broadcast_to. Values are copied into contiguous buffers (nodes never keep views).
#include "tapegrad/ops/shape.hpp"

#include "tapegrad/autograd/tape.hpp"
#include "tapegrad/ops/kernels.hpp"
#include "tapegrad/ops/reduce.hpp"

namespace tapegrad {

TAPEGRAD_OP(op_broadcast_to, "broadcast_to", "shape");

// broadcast_to(x, s): d = sum_to(dy, x.shape)
Tensor broadcast_to(const Tensor& x, const Shape& shape) {
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
