#include "tapegrad/nn/models/linear.hpp"

#include "tapegrad/nn/models/init.hpp"
#include "tapegrad/ops/elementwise.hpp"
#include "tapegrad/ops/linalg.hpp"
#include "tapegrad/ops/shape.hpp"

namespace tapegrad::nn {

Linear::Linear(std::size_t in, std::size_t out, Generator& gen, bool bias, DType dtype) {
  W = register_parameter("W", init::glorot_uniform({in, out}, gen, dtype));
  if (bias) b = register_parameter("b", zeros({out}, dtype));
}

Tensor Linear::operator()(const Tensor& x) const {
  if (x.rank() < 1 || x.size(-1) != W.size(0))
    throw Error("Linear: input " + x.shape().str() + " does not end in " + std::to_string(W.size(0)) + " features (W " +
                W.shape().str() + ")");
  if (b.defined()) return linear(x, W, b);  // one node: the bias is the GEMM's starting value
  Tensor y;
  if (x.rank() <= 3 && x.rank() >= 2) {
    y = matmul(x, W);
  } else {  // rank 1 or > 3: through a 2-D view
    std::size_t rows = 1;  // the leading sizes' product (not numel / in: in may be 0, as in PyTorch's Linear(0, n))
    for (std::size_t k = 0; k + 1 < x.rank(); ++k) rows *= x.size(long(k));
    Shape flat{rows, W.size(0)};
    Shape out(x.shape().begin(), x.shape().end() - 1);
    out.push_back(W.size(1));
    y = reshape(matmul(reshape(x, flat), W), out);
  }
  return y;
}

Embedding::Embedding(std::size_t vocab, std::size_t dim, Generator& gen, DType dtype) {
  weight = register_parameter("weight", init::normal({vocab, dim}, 1.0, gen, dtype));
}

Tensor Embedding::operator()(const Index& ids) const { return embedding(weight, ids); }

}  // namespace tapegrad::nn
