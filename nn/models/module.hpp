// Module: named, nested parameters. A module owns its parameters as tensors (owned leaves that require
// grad) and registers its sub-modules, so a model can be iterated, counted, zeroed, saved and loaded.
#pragma once

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "tapegrad/autograd/tensor.hpp"

namespace tapegrad::nn {

class Module {
 public:
  Module() = default;
  virtual ~Module() = default;
  // Sub-modules are registered by address: a module is neither copied nor moved.
  Module(const Module&) = delete;
  Module& operator=(const Module&) = delete;

  // Depth-first, in registration order; names are dotted paths ("encoder.cell.W_x").
  std::vector<std::pair<std::string, Tensor>> named_parameters() const;
  std::vector<Tensor> parameters() const;
  std::size_t num_parameters() const;  // total number of scalars
  void zero_grad();
  void train(bool on = true);
  void eval() { train(false); }
  bool training() const { return training_; }

 protected:
  Tensor& register_parameter(const std::string& name, Tensor value);  // sets requires_grad
  void register_module(const std::string& name, Module& child);

 private:
  void collect(const std::string& prefix, std::vector<std::pair<std::string, Tensor>>& out) const;
  std::vector<std::pair<std::string, Tensor*>> params_;
  std::vector<std::pair<std::string, Module*>> children_;
  std::vector<std::unique_ptr<Tensor>> storage_;
  bool training_ = true;
};

}  // namespace tapegrad::nn
