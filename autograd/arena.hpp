// Where a graph's values live: tensor slots in blocks that never move, and the bump arena that holds
// their values, gradients and the ops' saved state, reset in O(1) when the next graph starts. (arena.cpp
// also holds the per-thread block pool of owned tensors, detail::make_leaf.)
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <vector>

#include "tapegrad/autograd/shape.hpp"

namespace tapegrad::detail {

struct LeafImpl;

struct Slot {
  void* data = nullptr;
  void* grad = nullptr;  // null until a gradient reaches it (leaves: their own gradient buffer)
  Shape shape;
  DType dtype = DType::f32;
  bool requires_grad = false;
  std::int32_t producer = -1;  // index of the node that wrote it; -1 for leaves
  LeafImpl* leaf = nullptr;    // owned tensors registered on this tape
  std::uint64_t version = 0;   // leaves: the leaf's version when it entered this graph
  // A view (OpCall::output_view) of slot `view_of`'s values from byte `view_offset` on. Its gradient is
  // that slot's at the same place (grad_shared), so its consumers' backward writes there directly and the
  // view op's own backward is skipped; unless grad() asked for the view itself (keep_grad).
  static constexpr std::uint32_t none = ~std::uint32_t(0);
  std::uint32_t view_of = none;
  std::size_t view_offset = 0;
  bool grad_shared = false;
  bool keep_grad = false;
  void clear_grad() {
    grad = nullptr;
    grad_shared = false;
  }
};

// A chunked bump allocator. reset() is O(1) and keeps the memory; after a step that overflowed the
// first chunk, the chunks are merged so the next step runs from one chunk.
class Arena {
 public:
  Arena() = default;
  Arena(const Arena&) = delete;
  Arena& operator=(const Arena&) = delete;
  ~Arena();
  void* allocate(std::size_t bytes) {  // 64-byte aligned; the common case is a pointer bump
    bytes = bytes ? (bytes + 63) & ~std::size_t(63) : 64;
    if (current_ < chunks_.size() && offset_ + bytes <= chunks_[current_].size) {
      void* p = chunks_[current_].base + offset_;
      offset_ += bytes;
      in_use_ += bytes;
      return p;
    }
    return allocate_slow(bytes);
  }
  void reset();
  std::size_t bytes_in_use() const { return in_use_; }
  std::size_t peak_bytes() const { return peak_ > in_use_ ? peak_ : in_use_; }
  void reset_peak() { peak_ = in_use_; }

 private:
  void* allocate_slow(std::size_t bytes);
  void add_chunk(std::size_t size);
  struct Chunk {
    char* base;
    std::size_t size;
  };
  std::vector<Chunk> chunks_;
  std::size_t current_ = 0, offset_ = 0, in_use_ = 0, peak_ = 0;
};

// Slots in fixed blocks: a slot never moves once made, so references to its shape stay valid while
// later ops (or create_graph backward passes) add slots. Blocks are kept across graphs.
class SlotStore {
 public:
  static constexpr std::size_t block = 1024;
  std::size_t size() const { return size_; }
  Slot& operator[](std::size_t i) { return blocks_[i / block][i % block]; }
  const Slot& operator[](std::size_t i) const { return blocks_[i / block][i % block]; }
  Slot& emplace_back() {  // the next slot, in place; the caller sets every field
    if (size_ == blocks_.size() * block) blocks_.emplace_back(new Slot[block]);
    return (*this)[size_++];
  }
  void clear() { size_ = 0; }

 private:
  std::vector<std::unique_ptr<Slot[]>> blocks_;
  std::size_t size_ = 0;
};

}  // namespace tapegrad::detail
