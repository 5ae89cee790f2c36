// Optimizers and gradient clipping over a list of parameters (for example module.parameters()).
//
// An optimizer keeps handles to the parameters and updates their buffers in place, so every handle
// (the module's, the user's) sees the new values. It works in each parameter's dtype (float32 or float64)
// with state buffers of the same dtype and shape, one set per parameter, allocated on first use.
// step() skips parameters whose gradient is undefined (no backward reached them), as PyTorch does.
//
// Update rules, with g the gradient and every state starting at zero (PyTorch 1.13's, checked against
// ../shared/conformance/clip_and_optim):
//   SGD       w -= lr g
//   Momentum  v = mu v - lr g;  w += v                       (the course's form, see below)
//   AdaGrad   h += g^2;  w -= lr g / (sqrt(h) + eps)
//   RMSProp   h = alpha h + (1 - alpha) g^2;  w -= lr g / (sqrt(h) + eps)
//   Adam      m = b1 m + (1 - b1) g;  v = b2 v + (1 - b2) g^2;  t += 1
//             w -= (lr / (1 - b1^t)) m / (sqrt(v) / sqrt(1 - b2^t) + eps)
//
// Momentum: PyTorch's SGD(momentum) keeps b = mu b + g and steps w -= lr b. With v = -lr b the two are the
// same iterates while lr is constant; they differ only after set_lr(): here the velocity keeps the old
// step sizes (it is in the weights' units), in PyTorch the new lr rescales the whole buffer.
// The course's AdaGrad/RMSProp/Adam add eps = 1e-7; the defaults here are PyTorch's (1e-10, 1e-8, 1e-8).
#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "tapegrad/autograd/tensor.hpp"

namespace tapegrad::nn {

class Optimizer {
 public:
  virtual ~Optimizer() = default;
  Optimizer(const Optimizer&) = delete;
  Optimizer& operator=(const Optimizer&) = delete;

  void step();       // one update of every parameter that has a gradient
  void zero_grad();  // fills every parameter's gradient with zeros
  double lr() const { return lr_; }
  void set_lr(double lr);  // learning-rate schedules; lr > 0
  const std::vector<Tensor>& parameters() const { return params_; }
  const char* name() const { return name_; }

  // Checkpoints (nn::save / nn::load of an Optimizer in nn/training/serialize.hpp write these as one .npz).
  // The state as named arrays, copies, all prefixed "<name>.": "lr" and every hyper-parameter (rank 0,
  // float64), "num_parameters", each state buffer per parameter ("m.3": buffer m of parameter 3, the
  // parameter's dtype and shape; zeros where not yet allocated) and, for Adam, "step" (float64, one per
  // parameter; exact up to 2^53).
  using NamedArrays = std::vector<std::pair<std::string, Tensor>>;
  NamedArrays state_dict() const;
  // All or nothing: validates every entry first (same optimizer kind, same hyper-parameters, same number
  // of parameters, each buffer's dtype and shape, nothing missing, nothing extra) and raises an Error
  // naming `source` and every mismatch without changing anything; then restores the buffers, the step
  // counts and the learning rate (a schedule's current value).
  void load_state_dict(const NamedArrays& entries, const std::string& source = "state_dict");

 protected:
  // params: owned tensors (leaves), each at most once; lr > 0 and finite.
  Optimizer(const char* name, std::vector<Tensor> params, double lr, std::size_t state_buffers);
  // Updates params[i] in place from its gradient g (same shape and dtype).
  virtual void update(std::size_t i, Tensor& param, const Tensor& g) = 0;
  // State buffer k of parameter i: zeros of the parameter's shape and dtype, allocated on first use.
  Tensor& state(std::size_t k, std::size_t i);
  // For checkpoints: the name of state buffer k, the hyper-parameters a loaded state must agree with, and
  // per-parameter step counts where the rule keeps them (Adam points this at its own).
  virtual const char* buffer_name(std::size_t k) const;
  virtual std::vector<std::pair<std::string, double>> hyper_parameters() const { return {}; }
  std::vector<std::int64_t>* step_counts_ = nullptr;
  const char* name_;

 private:
  std::vector<Tensor> params_;
  std::vector<std::vector<Tensor>> state_;  // [buffer][parameter]
  double lr_;
};

class SGD : public Optimizer {
 public:
  SGD(std::vector<Tensor> params, double lr);

 private:
  void update(std::size_t i, Tensor& param, const Tensor& g) override;
};

class Momentum : public Optimizer {
 public:
  Momentum(std::vector<Tensor> params, double lr, double momentum = 0.9);  // 0 <= momentum < 1
  double momentum() const { return momentum_; }

 private:
  void update(std::size_t i, Tensor& param, const Tensor& g) override;
  const char* buffer_name(std::size_t) const override { return "velocity"; }
  std::vector<std::pair<std::string, double>> hyper_parameters() const override { return {{"momentum", momentum_}}; }
  double momentum_;
};

class AdaGrad : public Optimizer {
 public:
  AdaGrad(std::vector<Tensor> params, double lr = 0.01, double eps = 1e-10);  // eps >= 0

 private:
  void update(std::size_t i, Tensor& param, const Tensor& g) override;
  const char* buffer_name(std::size_t) const override { return "sum_sq"; }
  std::vector<std::pair<std::string, double>> hyper_parameters() const override { return {{"eps", eps_}}; }
  double eps_;
};

class RMSProp : public Optimizer {
 public:
  RMSProp(std::vector<Tensor> params, double lr = 0.01, double alpha = 0.99, double eps = 1e-8);  // 0 <= alpha < 1

 private:
  void update(std::size_t i, Tensor& param, const Tensor& g) override;
  const char* buffer_name(std::size_t) const override { return "mean_sq"; }
  std::vector<std::pair<std::string, double>> hyper_parameters() const override { return {{"alpha", alpha_}, {"eps", eps_}}; }
  double alpha_, eps_;
};

class Adam : public Optimizer {
 public:
  // 0 <= beta1, beta2 < 1; eps >= 0. The step count t is kept per parameter (it advances only when the
  // parameter has a gradient).
  Adam(std::vector<Tensor> params, double lr = 1e-3, double beta1 = 0.9, double beta2 = 0.999, double eps = 1e-8);

 private:
  void update(std::size_t i, Tensor& param, const Tensor& g) override;
  const char* buffer_name(std::size_t k) const override { return k == 0 ? "m" : "v"; }
  std::vector<std::pair<std::string, double>> hyper_parameters() const override {
    return {{"beta1", beta1_}, {"beta2", beta2_}, {"eps", eps_}};
  }
  double beta1_, beta2_, eps_;
  std::vector<std::int64_t> steps_;
};

// Global clipping (the course's gradient_clipping): norm = sqrt(sum over all gradients of g^2); when
// rate = max_norm / norm < 1 every gradient is multiplied by rate. No epsilon is added to the norm (the
// conformance data rules out PyTorch's max_norm / (norm + 1e-6)); a zero norm leaves the gradients as they
// are. Returns the norm before clipping. Parameters without a gradient are skipped. A non-finite norm
// raises an Error and leaves the gradients untouched.
double clip_grad_norm(const std::vector<Tensor>& params, double max_norm);

// Per-tensor clipping: each gradient is clipped as above by its own norm. Returns the norm of each
// parameter's gradient before clipping (0 for a parameter without a gradient).
std::vector<double> clip_grad_norm_per_tensor(const std::vector<Tensor>& params, double max_norm);

}  // namespace tapegrad::nn
