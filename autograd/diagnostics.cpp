#include "tapegrad/autograd/diagnostics.hpp"

#include <cmath>
#include <sstream>
#include <string>

#include "tapegrad/autograd/leaf.hpp"
#include "tapegrad/autograd/op.hpp"

namespace tapegrad {

namespace {
bool all_finite(const void* data, std::size_t n, DType d) {
  return dispatch(d, [&](auto z) {
    using T = decltype(z);
    const T* p = static_cast<const T*>(data);
    for (std::size_t i = 0; i < n; ++i)
      if (!std::isfinite(p[i])) return false;
    return true;
  });
}
}  // namespace

void detail::check_output(const char* op, const void* out, const Shape& out_shape, DType dtype,
                          const Tensor* const* inputs, std::size_t n_in) {
  if (all_finite(out, out_shape.numel(), dtype)) return;
  std::string shapes;
  for (std::size_t k = 0; k < n_in; ++k) shapes += (k ? ", " : "") + inputs[k]->shape().str();
  throw Error(std::string("anomaly: op '") + op + "' produced a non-finite value in its output of shape " +
              out_shape.str() + " from inputs " + shapes);
}

void detail::check_grads(const Tape& tape, const Node& node) {
  for (std::uint32_t k = 0; k < node.n_in; ++k) {
    const auto& s = tape.slot(node.inputs()[k]);
    if (s.grad && !all_finite(s.grad, s.shape.numel(), s.dtype))
      throw Error(std::string("anomaly: backward of op '") + node.op->name +
                  "' produced a non-finite gradient for input " + std::to_string(k) + " of shape " + s.shape.str() +
                  " (output " + tape.slot(node.out).shape.str() + ")");
  }
}

std::string Tape::to_dot() const {
  std::ostringstream os;
  os << "digraph tape {\n  rankdir=TB;\n  node [fontname=\"Helvetica\", fontsize=10];\n";
  std::vector<bool> used(slots_.size(), false);
  for (std::size_t n = 0; n < nodes_.size(); ++n) {
    const auto& node = nodes_[n];
    os << "  n" << n << " [shape=box, style=filled, fillcolor=\"#dde8f7\", label=\"" << node.op->name << "\"];\n";
    for (std::uint32_t k = 0; k < node.n_in; ++k) {
      used[node.inputs()[k]] = true;
      os << "  s" << node.inputs()[k] << " -> n" << n << ";\n";
    }
    used[node.out] = true;
    os << "  n" << n << " -> s" << node.out << ";\n";
  }
  for (std::size_t i = 0; i < slots_.size(); ++i) {
    if (!used[i]) continue;
    const auto& s = slots_[i];
    std::string label = s.shape.str();
    if (s.leaf && !s.leaf->name.empty()) label = s.leaf->name + "\\n" + label;
    os << "  s" << i << " [shape=ellipse, label=\"" << label << "\"";
    if (s.leaf) os << ", style=filled, fillcolor=\"" << (s.requires_grad ? "#f7e3c4" : "#eeeeee") << "\"";
    os << "];\n";
  }
  os << "}\n";
  return os.str();
}

}  // namespace tapegrad
