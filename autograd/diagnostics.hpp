// The thread's modes (grad, anomaly) and the checks anomaly mode runs. Tape::to_dot lives in
// diagnostics.cpp too.
#pragma once

#include <cstddef>

#include "tapegrad/autograd/tensor.hpp"

namespace tapegrad {

namespace detail {
// Constant-initialised inline thread_locals: read directly on every op, with no TLS wrapper call.
inline thread_local bool grad_mode = true;
inline thread_local bool anomaly_mode = false;
}  // namespace detail

// Grad mode (thread-local). NoGrad: nothing inside it is recorded.
inline bool grad_enabled() { return detail::grad_mode; }
class NoGrad {
 public:
  NoGrad() : previous_(detail::grad_mode) { detail::grad_mode = false; }
  ~NoGrad() { detail::grad_mode = previous_; }
  NoGrad(const NoGrad&) = delete;
  NoGrad& operator=(const NoGrad&) = delete;

 private:
  bool previous_;
};

// Anomaly mode (thread-local): the first op whose output or input gradient is not finite raises an
// Error naming the op and the shapes.
inline bool anomaly_enabled() { return detail::anomaly_mode; }
class DetectAnomaly {
 public:
  DetectAnomaly() : previous_(detail::anomaly_mode) { detail::anomaly_mode = true; }
  ~DetectAnomaly() { detail::anomaly_mode = previous_; }
  DetectAnomaly(const DetectAnomaly&) = delete;
  DetectAnomaly& operator=(const DetectAnomaly&) = delete;

 private:
  bool previous_;
};

class Tape;
namespace detail {
struct Node;
// Anomaly checks: an op's output (inputs named in the message), and a node's input gradients after its
// backward ran.
void check_output(const char* op, const void* out, const Shape& out_shape, DType dtype, const Tensor* const* inputs,
                  std::size_t n_in);
void check_grads(const Tape& tape, const Node& node);
}  // namespace detail

}  // namespace tapegrad
