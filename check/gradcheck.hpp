// Numerical gradient checking, as a public API: float64, central differences. A client of the engine
// (grad, Tape::Scope, creation functions), not part of it: nothing in autograd/ includes it.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "tapegrad/autograd/tensor.hpp"

namespace tapegrad {

struct GradcheckOptions {
  double eps = 1e-6;                  // central-difference step
  double atol = 1e-7;                 // |analytic - numeric| <= atol + rtol * |numeric|
  double rtol = 1e-5;
  std::size_t full_jacobian_max = 256;  // inputs up to this many elements: every element is perturbed
  std::size_t directions = 6;           // larger inputs: this many random-direction checks
  std::uint64_t seed = 1234;            // for the output weights and the directions
};

struct GradcheckResult {
  bool ok = true;
  std::string message;        // on failure: the input, the element (or direction) and both values
  double max_abs_error = 0;
  std::size_t checks = 0;     // number of comparisons made
};

using Function = std::function<Tensor(const std::vector<Tensor>&)>;

// Checks d L / d x for every input that requires grad, where L = sum(f(inputs) * w) for a fixed random
// w of f's output shape (so the gradients are not all ones). Inputs must be float64 owned tensors.
GradcheckResult gradcheck(const Function& f, const std::vector<Tensor>& inputs, const GradcheckOptions& options = {});

// Second derivatives: checks, for each input k, the gradient of x -> d L / d x_k (computed with
// create_graph) the same way.
GradcheckResult gradgradcheck(const Function& f, const std::vector<Tensor>& inputs, const GradcheckOptions& options = {});

}  // namespace tapegrad
