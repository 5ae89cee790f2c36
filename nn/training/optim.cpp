#include "tapegrad/nn/training/optim.hpp"

#include <cmath>
#include <cstring>
#include <map>
#include <sstream>
#include <string>

#include <xsimd/xsimd.hpp>

namespace tapegrad::nn {

namespace {

std::string num(double x) {
  std::ostringstream os;
  os << x;
  return os.str();
}

void require(bool ok, const char* who, const std::string& what) {
  if (!ok) throw Error(std::string(who) + ": " + what);
}

// Calls f(T{}) with T the tensor's element type.
template <class F> void dispatch(DType d, F&& f) {
  if (d == DType::f32) f(float{});
  else f(double{});
}

}  // namespace

// ---- Optimizer -------------------------------------------------------------------------------------

Optimizer::Optimizer(const char* name, std::vector<Tensor> params, double lr, std::size_t state_buffers)
    : name_(name), params_(std::move(params)), state_(state_buffers), lr_(lr) {
  require(!params_.empty(), name_, "got an empty parameter list");
  for (std::size_t i = 0; i < params_.size(); ++i) {
    const Tensor& p = params_[i];
    require(p.defined(), name_, "parameter " + std::to_string(i) + " is undefined");
    require(p.is_leaf(), name_, "parameter " + std::to_string(i) + " of shape " + p.shape().str() +
                                    " is a recorded (tape) tensor, not an owned leaf");
    using I = tapegrad::detail::TensorInternals;
    for (std::size_t j = 0; j < i; ++j)
      require(I::leaf(params_[j]) != I::leaf(p), name_, "parameter " + std::to_string(i) + " of shape " +
                                                            p.shape().str() + " is the same tensor as parameter " +
                                                            std::to_string(j) + " (it would be updated twice per step)");
  }
  set_lr(lr);
  for (auto& buffers : state_) buffers.resize(params_.size());
}

void Optimizer::set_lr(double lr) {
  require(std::isfinite(lr) && lr > 0, name_, "learning rate must be positive and finite, got " + num(lr));
  lr_ = lr;
}

Tensor& Optimizer::state(std::size_t k, std::size_t i) {
  Tensor& s = state_[k][i];
  if (!s.defined()) s = zeros(params_[i].shape(), params_[i].dtype());
  return s;
}

void Optimizer::step() {
  for (std::size_t i = 0; i < params_.size(); ++i) {
    Tensor g = params_[i].grad();
    if (!g.defined()) continue;
    if (g.shape() != params_[i].shape() || g.dtype() != params_[i].dtype())
      throw Error(std::string(name_) + ": gradient " + g.shape().str() + " " + dtype_name(g.dtype()) + " of parameter " +
                  std::to_string(i) + " does not match its value " + params_[i].shape().str() + " " +
                  dtype_name(params_[i].dtype()));
    update(i, params_[i], g);
  }
}

void Optimizer::zero_grad() {
  for (Tensor& p : params_) p.zero_grad();
}

// ---- checkpoints -----------------------------------------------------------------------------------

const char* Optimizer::buffer_name(std::size_t k) const {
  static const char* const names[] = {"buffer0", "buffer1", "buffer2", "buffer3"};
  return k < 4 ? names[k] : "buffer";
}

Optimizer::NamedArrays Optimizer::state_dict() const {
  const std::string prefix = std::string(name_) + ".";
  NamedArrays out;
  out.emplace_back(prefix + "lr", scalar(lr_, DType::f64));
  out.emplace_back(prefix + "num_parameters", scalar(static_cast<double>(params_.size()), DType::f64));
  for (const auto& [key, value] : hyper_parameters()) out.emplace_back(prefix + key, scalar(value, DType::f64));
  for (std::size_t k = 0; k < state_.size(); ++k)
    for (std::size_t i = 0; i < params_.size(); ++i) {
      const Tensor& s = state_[k][i];
      Tensor copy = zeros(params_[i].shape(), params_[i].dtype());
      if (s.defined() && s.numel()) std::memcpy(copy.raw_data(), s.raw_data(), s.numel() * dtype_size(s.dtype()));
      out.emplace_back(prefix + buffer_name(k) + "." + std::to_string(i), copy);
    }
  if (step_counts_) {
    std::vector<double> steps(step_counts_->begin(), step_counts_->end());
    out.emplace_back(prefix + "step", from_values(steps, {steps.size()}, DType::f64));
  }
  return out;
}

namespace {

// The value of a rank-0 float64 entry, or an explanation in `problem`.
bool scalar_value(const Tensor& t, double& value, std::string& problem) {
  if (t.rank() != 0 || t.dtype() != DType::f64) {
    problem = "is " + std::string(dtype_name(t.dtype())) + " " + t.shape().str() + ", not a float64 scalar ()";
    return false;
  }
  value = *t.data<double>();
  return true;
}

}  // namespace

void Optimizer::load_state_dict(const NamedArrays& entries, const std::string& source) {
  const std::string prefix = std::string(name_) + ".";
  std::map<std::string, Tensor> found;
  std::vector<std::string> problems;
  for (const auto& [key, t] : entries) {
    if (key.rfind(prefix, 0) != 0) {
      const auto dot = key.find('.');
      problems.push_back("entry '" + key + "' " +
                         (dot == std::string::npos ? std::string("is not an optimizer state entry")
                                                   : "belongs to a " + key.substr(0, dot) + " optimizer, not " + name_));
      continue;
    }
    if (!t.defined()) problems.push_back("entry '" + key + "' is undefined");
    else if (!found.emplace(key.substr(prefix.size()), t).second) problems.push_back("entry '" + key + "' appears twice");
  }
  std::map<std::string, bool> used;
  const auto take = [&](const std::string& key) -> const Tensor* {
    const auto it = found.find(key);
    if (it == found.end()) {
      problems.push_back("'" + prefix + key + "' is missing");
      return nullptr;
    }
    used[key] = true;
    return &it->second;
  };
  double lr = 0, count = 0, value = 0;
  std::string why;
  if (const Tensor* t = take("lr")) {
    if (!scalar_value(*t, lr, why)) problems.push_back("'" + prefix + "lr' " + why);
    else if (!(std::isfinite(lr) && lr > 0)) problems.push_back("the learning rate " + num(lr) + " is not positive and finite");
  }
  if (const Tensor* t = take("num_parameters")) {
    if (!scalar_value(*t, count, why)) problems.push_back("'" + prefix + "num_parameters' " + why);
    else if (count != static_cast<double>(params_.size()))
      problems.push_back("the file holds the state of " + num(count) + " parameters, this optimizer has " +
                         std::to_string(params_.size()));
  }
  for (const auto& [key, expected] : hyper_parameters())
    if (const Tensor* t = take(key)) {
      if (!scalar_value(*t, value, why)) problems.push_back("'" + prefix + key + "' " + why);
      else if (value != expected)  // saved bit for bit: any difference is a different configuration
        problems.push_back("hyper-parameter " + key + " is " + num(value) + " in the file but " + num(expected) +
                           " in this optimizer");
    }
  std::vector<std::vector<Tensor>> staged(state_.size(), std::vector<Tensor>(params_.size()));
  for (std::size_t k = 0; k < state_.size(); ++k)
    for (std::size_t i = 0; i < params_.size(); ++i) {
      const std::string key = std::string(buffer_name(k)) + "." + std::to_string(i);
      const Tensor* t = take(key);
      if (!t) continue;
      const Tensor& p = params_[i];
      if (t->dtype() != p.dtype() || t->shape() != p.shape()) {
        problems.push_back("'" + prefix + key + "' is " + dtype_name(t->dtype()) + " " + t->shape().str() + " but parameter " +
                           std::to_string(i) + " is " + dtype_name(p.dtype()) + " " + p.shape().str());
        continue;
      }
      Tensor copy = empty(p.shape(), p.dtype());
      if (p.numel()) std::memcpy(copy.raw_data(), t->raw_data(), p.numel() * dtype_size(p.dtype()));
      staged[k][i] = copy;
    }
  std::vector<std::int64_t> steps;
  if (step_counts_)
    if (const Tensor* t = take("step")) {
      if (t->dtype() != DType::f64 || t->shape() != Shape{params_.size()}) {
        problems.push_back("'" + prefix + "step' is " + dtype_name(t->dtype()) + " " + t->shape().str() + ", not float64 (" +
                           std::to_string(params_.size()) + ",)");
      } else {
        for (std::size_t i = 0; i < params_.size(); ++i) {
          const double s = t->data<double>()[i];
          if (!(s >= 0 && s <= 9007199254740992.0 && std::floor(s) == s)) {
            problems.push_back("step count " + num(s) + " of parameter " + std::to_string(i) + " is not a count");
            break;
          }
          steps.push_back(static_cast<std::int64_t>(s));
        }
      }
    }
  for (const auto& [key, t] : found)
    if (!used.count(key)) problems.push_back("unexpected entry '" + prefix + key + "'");
  if (!problems.empty()) {
    std::string msg = std::string(name_) + "::load_state_dict: " + source + ": ";
    for (std::size_t i = 0; i < problems.size(); ++i) msg += (i ? "; " : "") + problems[i];
    throw Error(msg + "; the optimizer was not changed");
  }
  state_ = std::move(staged);
  if (step_counts_) *step_counts_ = std::move(steps);
  lr_ = lr;
}

// ---- the update rules ------------------------------------------------------------------------------

SGD::SGD(std::vector<Tensor> params, double lr) : Optimizer("SGD", std::move(params), lr, 0) {}

void SGD::update(std::size_t, Tensor& param, const Tensor& g) {
  dispatch(param.dtype(), [&](auto zero) {
    using T = decltype(zero);
    T* w = param.data<T>();
    const T* gp = g.data<T>();
    const T lr = static_cast<T>(this->lr());
    for (std::size_t k = 0, n = param.numel(); k < n; ++k) w[k] -= lr * gp[k];
  });
}

Momentum::Momentum(std::vector<Tensor> params, double lr, double momentum)
    : Optimizer("Momentum", std::move(params), lr, 1), momentum_(momentum) {
  require(momentum >= 0 && momentum < 1, name_, "momentum must be in [0, 1), got " + num(momentum));
}

void Momentum::update(std::size_t i, Tensor& param, const Tensor& g) {
  Tensor& velocity = state(0, i);
  dispatch(param.dtype(), [&](auto zero) {
    using T = decltype(zero);
    T* w = param.data<T>();
    T* v = velocity.data<T>();
    const T* gp = g.data<T>();
    const T lr = static_cast<T>(this->lr()), mu = static_cast<T>(momentum_);
    for (std::size_t k = 0, n = param.numel(); k < n; ++k) {
      v[k] = mu * v[k] - lr * gp[k];
      w[k] += v[k];
    }
  });
}

AdaGrad::AdaGrad(std::vector<Tensor> params, double lr, double eps)
    : Optimizer("AdaGrad", std::move(params), lr, 1), eps_(eps) {
  require(std::isfinite(eps) && eps >= 0, name_, "eps must be >= 0, got " + num(eps));
}

void AdaGrad::update(std::size_t i, Tensor& param, const Tensor& g) {
  Tensor& sum_sq = state(0, i);
  dispatch(param.dtype(), [&](auto zero) {
    using T = decltype(zero);
    T* w = param.data<T>();
    T* h = sum_sq.data<T>();
    const T* gp = g.data<T>();
    const T lr = static_cast<T>(this->lr()), eps = static_cast<T>(eps_);
    for (std::size_t k = 0, n = param.numel(); k < n; ++k) {
      h[k] += gp[k] * gp[k];
      w[k] -= lr * (gp[k] / (std::sqrt(h[k]) + eps));
    }
  });
}

RMSProp::RMSProp(std::vector<Tensor> params, double lr, double alpha, double eps)
    : Optimizer("RMSProp", std::move(params), lr, 1), alpha_(alpha), eps_(eps) {
  require(alpha >= 0 && alpha < 1, name_, "alpha must be in [0, 1), got " + num(alpha));
  require(std::isfinite(eps) && eps >= 0, name_, "eps must be >= 0, got " + num(eps));
}

void RMSProp::update(std::size_t i, Tensor& param, const Tensor& g) {
  Tensor& mean_sq = state(0, i);
  dispatch(param.dtype(), [&](auto zero) {
    using T = decltype(zero);
    T* w = param.data<T>();
    T* h = mean_sq.data<T>();
    const T* gp = g.data<T>();
    const T lr = static_cast<T>(this->lr()), alpha = static_cast<T>(alpha_), eps = static_cast<T>(eps_);
    const T one_minus_alpha = static_cast<T>(1 - alpha_);
    for (std::size_t k = 0, n = param.numel(); k < n; ++k) {
      h[k] = alpha * h[k] + one_minus_alpha * gp[k] * gp[k];
      w[k] -= lr * (gp[k] / (std::sqrt(h[k]) + eps));
    }
  });
}

Adam::Adam(std::vector<Tensor> params, double lr, double beta1, double beta2, double eps)
    : Optimizer("Adam", std::move(params), lr, 2), beta1_(beta1), beta2_(beta2), eps_(eps) {
  require(beta1 >= 0 && beta1 < 1, name_, "beta1 must be in [0, 1), got " + num(beta1));
  require(beta2 >= 0 && beta2 < 1, name_, "beta2 must be in [0, 1), got " + num(beta2));
  require(std::isfinite(eps) && eps >= 0, name_, "eps must be >= 0, got " + num(eps));
  steps_.assign(parameters().size(), 0);
  step_counts_ = &steps_;
}

void Adam::update(std::size_t i, Tensor& param, const Tensor& g) {
  Tensor& m_buf = state(0, i);
  Tensor& v_buf = state(1, i);
  const double t = static_cast<double>(++steps_[i]);
  const double step_size = lr() / (1 - std::pow(beta1_, t));
  const double bias2_sqrt = std::sqrt(1 - std::pow(beta2_, t));
  dispatch(param.dtype(), [&](auto zero) {
    using T = decltype(zero);
    T* w = param.data<T>();
    T* m = m_buf.data<T>();
    T* v = v_buf.data<T>();
    const T* gp = g.data<T>();
    const T b1 = static_cast<T>(beta1_), b2 = static_cast<T>(beta2_);
    const T one_minus_b1 = static_cast<T>(1 - beta1_), one_minus_b2 = static_cast<T>(1 - beta2_);
    const T eps = static_cast<T>(eps_), lr_t = static_cast<T>(step_size), bc2 = static_cast<T>(bias2_sqrt);
    // The same formulas a vector at a time: GCC does not vectorise the scalar loop (std::sqrt may set
    // errno), and the update was 4% of a seq2seq training step (bench_workload, example 10).
    using V = xsimd::batch<T>;
    constexpr std::size_t S = V::size;
    const std::size_t n = param.numel();
    std::size_t k0 = 0;
    for (; k0 + S <= n; k0 += S) {
      const V gk = V::load_unaligned(gp + k0);
      const V mk = V(b1) * V::load_unaligned(m + k0) + V(one_minus_b1) * gk;
      const V vk = V(b2) * V::load_unaligned(v + k0) + V(one_minus_b2) * gk * gk;
      mk.store_unaligned(m + k0);
      vk.store_unaligned(v + k0);
      (V::load_unaligned(w + k0) - V(lr_t) * (mk / (xsimd::sqrt(vk) / V(bc2) + V(eps)))).store_unaligned(w + k0);
    }
    for (std::size_t k = k0; k < n; ++k) {
      m[k] = b1 * m[k] + one_minus_b1 * gp[k];
      v[k] = b2 * v[k] + one_minus_b2 * gp[k] * gp[k];
      w[k] -= lr_t * (m[k] / (std::sqrt(v[k]) / bc2 + eps));
    }
  });
}

// ---- clipping --------------------------------------------------------------------------------------

namespace {

// Sum of squares of a gradient, in double. When the plain sum overflows while every value is finite
// (float64 gradients near 1e154), it is recomputed scaled by the largest magnitude.
struct SquaredNorm {
  double sum = 0, largest = 0;
  bool finite = true;
};

SquaredNorm squared_norm(const Tensor& g) {
  SquaredNorm s;
  dispatch(g.dtype(), [&](auto zero) {
    using T = decltype(zero);
    const T* p = g.data<T>();
    const std::size_t n = g.numel();
    for (std::size_t k = 0; k < n; ++k) {
      const double x = static_cast<double>(p[k]);
      s.sum += x * x;
      s.largest = std::max(s.largest, std::abs(x));
      if (!std::isfinite(x)) s.finite = false;
    }
  });
  return s;
}

// sqrt of a sum of squared norms, without overflow when every value is finite.
double combine(const std::vector<Tensor>& grads, const std::vector<SquaredNorm>& parts) {
  double sum = 0, largest = 0;
  for (const auto& s : parts) {
    sum += s.sum;
    largest = std::max(largest, s.largest);
  }
  if (std::isfinite(sum) || largest == 0) return std::sqrt(sum);
  double scaled = 0;
  for (const Tensor& g : grads)
    dispatch(g.dtype(), [&](auto zero) {
      using T = decltype(zero);
      const T* p = g.data<T>();
      for (std::size_t k = 0, n = g.numel(); k < n; ++k) {
        const double x = static_cast<double>(p[k]) / largest;
        scaled += x * x;
      }
    });
  return largest * std::sqrt(scaled);
}

void scale(Tensor& g, double rate) {
  dispatch(g.dtype(), [&](auto zero) {
    using T = decltype(zero);
    T* p = g.data<T>();
    const T r = static_cast<T>(rate);
    for (std::size_t k = 0, n = g.numel(); k < n; ++k) p[k] *= r;
  });
}

void check_max_norm(const char* who, double max_norm) {
  require(std::isfinite(max_norm) && max_norm > 0, who, "max_norm must be positive and finite, got " + num(max_norm));
}

// The gradients present, with their squared norms; throws before anything changes when one is not finite.
void gather(const char* who, const std::vector<Tensor>& params, std::vector<Tensor>& grads,
            std::vector<std::size_t>& index, std::vector<SquaredNorm>& parts) {
  for (std::size_t i = 0; i < params.size(); ++i) {
    require(params[i].defined() && params[i].is_leaf(), who,
            "parameter " + std::to_string(i) + " is not an owned (leaf) tensor");
    Tensor g = params[i].grad();
    if (!g.defined()) continue;
    SquaredNorm s = squared_norm(g);
    require(s.finite, who, "the gradient of parameter " + std::to_string(i) + " of shape " + g.shape().str() +
                               " is not finite (inf or nan); nothing was clipped");
    grads.push_back(g);
    index.push_back(i);
    parts.push_back(s);
  }
}

}  // namespace

double clip_grad_norm(const std::vector<Tensor>& params, double max_norm) {
  check_max_norm("clip_grad_norm", max_norm);
  std::vector<Tensor> grads;
  std::vector<std::size_t> index;
  std::vector<SquaredNorm> parts;
  gather("clip_grad_norm", params, grads, index, parts);
  const double norm = combine(grads, parts);
  if (norm > max_norm) {  // rate = max_norm / norm < 1; never divides by a zero norm
    const double rate = max_norm / norm;
    for (Tensor& g : grads) scale(g, rate);
  }
  return norm;
}

std::vector<double> clip_grad_norm_per_tensor(const std::vector<Tensor>& params, double max_norm) {
  check_max_norm("clip_grad_norm_per_tensor", max_norm);
  std::vector<Tensor> grads;
  std::vector<std::size_t> index;
  std::vector<SquaredNorm> parts;
  gather("clip_grad_norm_per_tensor", params, grads, index, parts);
  std::vector<double> norms(params.size(), 0.0);
  for (std::size_t j = 0; j < grads.size(); ++j) {
    const double norm = combine({grads[j]}, {parts[j]});
    norms[index[j]] = norm;
    if (norm > max_norm) scale(grads[j], max_norm / norm);
  }
  return norms;
}

}  // namespace tapegrad::nn
