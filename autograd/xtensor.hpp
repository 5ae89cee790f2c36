// Interop with xtensor (header-only; include it where you already use xtensor).
//  - as_xtensor<T>(t): an xtensor view over the tensor's buffer, no copy (row-major, contiguous).
//  - from_xtensor(std::move(a)): a tensor that adopts a row-major xarray/xtensor's buffer, no copy.
//  - to_xarray<T>(t): an owning copy.
#pragma once

#include <memory>
#include <type_traits>
#include <vector>
#include <xtensor/xadapt.hpp>
#include <xtensor/xarray.hpp>

#include "tapegrad/autograd/tensor.hpp"

namespace tapegrad {

// The view of a Tensor& is handed out for writing: it bumps the tensor's version (Tensor::version). Read
// through a const Tensor& to leave the version alone.
template <class T, class Tn, class = std::enable_if_t<std::is_same_v<std::decay_t<Tn>, Tensor>>>
auto as_xtensor(Tn& t) {
  return xt::adapt(const_cast<T*>(t.template data<T>()), t.numel(), xt::no_ownership(), t.shape().to_vector());
}

template <class T> xt::xarray<T> to_xarray(const Tensor& t) { return as_xtensor<T>(t); }

// Moves the container into the tensor's owner: its buffer is used in place.
template <class E> Tensor from_xtensor(E&& a) {
  using C = std::decay_t<E>;
  using T = typename C::value_type;
  static_assert(std::is_same_v<T, float> || std::is_same_v<T, double>, "tapegrad holds float32 or float64");
  if (a.layout() != xt::layout_type::row_major) {  // column-major: copy into row-major order
    xt::xarray<T, xt::layout_type::row_major> rm = a;
    return from_xtensor(std::move(rm));
  }
  auto owner = std::make_shared<C>(std::forward<E>(a));
  Shape shape(owner->shape().begin(), owner->shape().end());
  T* data = owner->data();
  return adopt(std::shared_ptr<void>(owner, data), data, shape, dtype_of<T>::value);
}

}  // namespace tapegrad
