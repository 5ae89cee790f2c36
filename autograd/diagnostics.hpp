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
// Sets a thread-local mode until the end of the scope.
class ModeGuard {
 public:
  ModeGuard(bool& mode, bool on) : mode_(mode), previous_(mode) { mode = on; }
  ~ModeGuard() { mode_ = previous_; }
  ModeGuard(const ModeGuard&) = delete;
  ModeGuard& operator=(const ModeGuard&) = delete;

 private:
  bool& mode_;
  bool previous_;
};
}  // namespace detail

// Grad mode (thread-local). NoGrad: nothing inside it is recorded.
inline bool grad_enabled() { return detail::grad_mode; }
struct NoGrad : detail::ModeGuard {
  NoGrad() : ModeGuard(detail::grad_mode, false) {}
};

// Anomaly mode (thread-local): the first op whose output or input gradient is not finite raises an
// Error naming the op and the shapes.
inline bool anomaly_enabled() { return detail::anomaly_mode; }
struct DetectAnomaly : detail::ModeGuard {
  DetectAnomaly() : ModeGuard(detail::anomaly_mode, true) {}
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
