#include "tapegrad/nn/models/module.hpp"

namespace tapegrad::nn {

Tensor& Module::register_parameter(const std::string& name, Tensor value) {
  for (auto& [n, p] : params_)
    if (n == name) throw Error("Module: parameter '" + name + "' registered twice");
  if (!value.defined() || !value.is_leaf()) throw Error("Module: parameter '" + name + "' must be an owned tensor");
  value.requires_grad_(true);
  if (value.name().empty()) value.set_name(name);  // error messages (version check) and DOT labels name it
  storage_.push_back(std::make_unique<Tensor>(std::move(value)));
  params_.emplace_back(name, storage_.back().get());
  return *storage_.back();
}

void Module::register_module(const std::string& name, Module& child) {
  if (&child == this) throw Error("Module: '" + name + "' cannot contain itself");
  children_.emplace_back(name, &child);
}

void Module::collect(const std::string& prefix, std::vector<std::pair<std::string, Tensor>>& out) const {
  for (const auto& [n, p] : params_) out.emplace_back(prefix + n, *p);
  for (const auto& [n, m] : children_) m->collect(prefix + n + ".", out);
}

std::vector<std::pair<std::string, Tensor>> Module::named_parameters() const {
  std::vector<std::pair<std::string, Tensor>> out;
  collect("", out);
  return out;
}

std::vector<Tensor> Module::parameters() const {
  std::vector<Tensor> out;
  for (auto& [n, t] : named_parameters()) out.push_back(t);
  return out;
}

std::size_t Module::num_parameters() const {
  std::size_t n = 0;
  for (auto& [name, t] : named_parameters()) n += t.numel();
  return n;
}

void Module::zero_grad() {
  for (auto& [n, t] : named_parameters()) t.zero_grad();
}

void Module::train(bool on) {
  training_ = on;
  for (auto& [n, m] : children_) m->train(on);
}

}  // namespace tapegrad::nn
