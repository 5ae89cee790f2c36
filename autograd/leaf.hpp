// Internal: the storage behind an owned tensor. Not part of the public API.
#pragma once

#include <memory>
#include <string>

#include "tapegrad/autograd/tensor.hpp"

namespace tapegrad::detail {

struct LeafImpl {  // no enable_shared_from_this: its weak count cost two atomics per tensor freed
  Shape shape;
  DType dtype = DType::f32;
  std::shared_ptr<void> owner;  // keeps an adopted container's `data` alive; empty for the leaf's own buffer
  void* data = nullptr;
  bool requires_grad = false;
  std::shared_ptr<LeafImpl> grad;  // an owned tensor of the same shape, allocated on first use
  std::string name;
  // Bumped by every in-place write the library makes (optimizer steps, nn::load, zero_grad, a non-const
  // data<T>() or as_xtensor view); a graph records it when the leaf enters it, and backward compares.
  std::uint64_t version = 0;
  // Where this leaf sits on a tape during the current graph (valid while tape->epoch() == epoch).
  Tape* tape = nullptr;
  std::uint64_t epoch = 0;
  std::uint32_t slot = 0;
};

// A leaf with its own 64-byte aligned buffer (uninitialised), in one block with the leaf.
std::shared_ptr<LeafImpl> make_leaf(const Shape& shape, DType dtype);

}  // namespace tapegrad::detail
