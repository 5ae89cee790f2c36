// Index family: lookups by integer id. The ids are copied into the arena, so the node does not depend on
// the caller's Index outliving the graph.
#include "tapegrad/ops/index.hpp"

#include <algorithm>
#include <cstring>
#include <string>

#include "tapegrad/autograd/op.hpp"
#include "tapegrad/ops/batching.hpp"
#include "tapegrad/ops/shape.hpp"

namespace tapegrad {

TAPEGRAD_OP(op_embedding, "embedding", "index");

// Batching rule (autograd/autobatch.hpp): one lookup of every call's ids in the shared table. The ids'
// shape is in the key (calls of one group give outputs of one shape); the ids themselves are payload.
namespace {
using autobatch::Group;
TAPEGRAD_BATCH_RULE(embedding_rule, op_embedding, [](const Group& g) {
  if (!g.shared(0)) return Tensor();
  std::vector<std::int64_t> all;
  Shape s{g.size()};
  for (std::size_t k = 0; k < g.num_keys(); ++k) s.push_back(static_cast<std::size_t>(g.key(k)));
  all.reserve(s.numel());
  for (std::size_t i = 0; i < g.size(); ++i) {
    const Index& ids = *static_cast<const Index*>(g.payload(i));
    all.insert(all.end(), ids.values.begin(), ids.values.end());
  }
  return embedding(g.in(0), Index(std::move(all), s));
});
}  // namespace

namespace {
struct EmbeddingAttrs {
  std::int64_t* ids;  // n ids, copied
  std::size_t n;
};
}  // namespace

// out[i, :] = W[ids[i], :].  dW[ids[i], :] += dout[i, :]  (scatter-add: repeated ids accumulate)
Tensor embedding(const Tensor& weight, const Index& ids) {
  if (!weight.defined()) throw Error("embedding: weight is undefined");
  const Shape sw = weight.shape();
  if (sw.rank() != 2)
    throw Error("embedding: weight must be (V, D), got " + sw.str() + " for ids " + ids.shape.str());
  if (ids.values.size() != ids.shape.checked_numel("embedding"))
    throw Error("embedding: ids have " + std::to_string(ids.values.size()) + " values but shape " + ids.shape.str());
  if (ids.shape.rank() == Shape::max_rank)
    throw Error("embedding: ids of shape " + ids.shape.str() + " leave no room for the embedding axis");
  const std::size_t v = sw[0], d = sw[1], n = ids.values.size();
  for (std::size_t i = 0; i < n; ++i) {
    const std::int64_t id = ids.values[i];
    if (id < 0 || static_cast<std::uint64_t>(id) >= v)
      throw Error("embedding: id " + std::to_string(id) + " (position " + std::to_string(i) + ") is outside [0, V) with V = " +
                  std::to_string(v) + " (weight " + sw.str() + ", ids " + ids.shape.str() + ")");
  }
  if (autobatch::in_task() && ids.shape.numel() == ids.values.size()) {  // checked first: the batch trusts the ids
    std::int64_t key[Shape::max_rank];
    for (std::size_t k = 0; k < ids.shape.rank(); ++k) key[k] = static_cast<std::int64_t>(ids.shape[k]);
    if (Tensor batched = autobatch::detail::out_of_line([&] { return autobatch::defer(embedding_rule, {&weight}, {key, ids.shape.rank()}, &ids); }); batched.defined()) return batched;
  }

  OpCall call(op_embedding, {&weight});
  Shape out = ids.shape;
  out.push_back(d);
  Tensor y = call.output(out);
  auto& attrs = call.attrs<EmbeddingAttrs>();
  attrs = {call.save<std::int64_t>(n), n};
  if (n) std::memcpy(attrs.ids, ids.values.data(), n * sizeof(std::int64_t));
  const std::size_t row_bytes = d * dtype_size(call.dtype());
  const char* pw = static_cast<const char*>(weight.raw_data());
  char* py = static_cast<char*>(y.raw_data());
  for (std::size_t i = 0; i < n && row_bytes; ++i)
    std::memcpy(py + i * row_bytes, pw + static_cast<std::size_t>(ids.values[i]) * row_bytes, row_bytes);

  call.record(
      [](BackwardCtx& c) {
        const std::size_t n = c.attrs<EmbeddingAttrs>().n, d = c.in_shape(0)[1];
        const std::int64_t* id = c.attrs<EmbeddingAttrs>().ids;
        dispatch(c.dtype(), [&](auto z) {
          using T = decltype(z);
          const T* gy = c.gout<T>();
          T* gw = c.grad<T>(0);
          for (std::size_t i = 0; i < n; ++i) {
            T* row = gw + static_cast<std::size_t>(id[i]) * d;
            const T* g = gy + i * d;
            for (std::size_t j = 0; j < d; ++j) row[j] += g[j];
          }
        });
      },
      // The scatter-add as ops: index_add of the rows of dout, viewed as (n, D), into V rows.
      [](GraphCtx& g) {
        const EmbeddingAttrs& saved = g.attrs<EmbeddingAttrs>();
        const std::size_t n = saved.n;
        const Shape sw = g.in_shape(0);
        const std::vector<std::int64_t> ids(saved.ids, saved.ids + n);
        g.accumulate(0, index_add(reshape(g.gout(), Shape{n, sw[1]}), 0, ids, sw[0]));
      });
  return y;
}

}  // namespace tapegrad
