#include "tapegrad/autograd/arena.hpp"

#include <algorithm>
#include <cstdlib>
#include <new>
#include <vector>

#include "tapegrad/autograd/leaf.hpp"

namespace tapegrad::detail {

Arena::~Arena() {
  for (auto& c : chunks_) std::free(c.base);
}

void Arena::add_chunk(std::size_t size) {
  char* base = static_cast<char*>(std::aligned_alloc(64, size));
  if (!base) throw std::bad_alloc();
  chunks_.push_back({base, size});
}

void* Arena::allocate_slow(std::size_t bytes) {  // the next chunk that fits, or a new one
  while (current_ < chunks_.size() && offset_ + bytes > chunks_[current_].size) {
    ++current_;
    offset_ = 0;
  }
  if (current_ == chunks_.size())
    add_chunk(std::max<std::size_t>(bytes, chunks_.empty() ? (1u << 20) : chunks_.back().size * 2));
  return allocate(bytes);
}

void Arena::reset() {
  peak_ = std::max(peak_, in_use_);
  if (chunks_.size() > 1) {  // merge, so the next step of the same size fits one chunk
    std::size_t total = 0;
    for (auto& c : chunks_) total += c.size, std::free(c.base);
    chunks_.clear();
    add_chunk(total);
  }
  current_ = 0;
  offset_ = 0;
  in_use_ = 0;
}

// ----- owned tensors -----

namespace {
// Owned tensors of up to 1 MiB come from per-thread free lists, one per power-of-two block size, so a
// forward pass without recording (NoGrad) reuses the blocks of the tensors it dropped instead of calling
// malloc per op. A block freed on another thread joins that thread's list; each list keeps a few blocks.
thread_local bool t_pool_closed = false;  // trivially destructible: still readable while the thread exits
struct BlockPool {
  std::vector<void*> lists[13];  // block sizes 256 B << class, up to 1 MiB
  ~BlockPool() {
    t_pool_closed = true;  // tensors freed later (other thread_locals, statics) go straight to free()
    for (auto& list : lists)
      for (void* p : list) std::free(p);
  }
};
thread_local BlockPool t_pool;
std::size_t block_class(std::size_t bytes) { return bytes <= 256 ? 0 : 64 - __builtin_clzll((bytes - 1) >> 8); }

// A leaf's shared_ptr control block and its value buffer as one block; `data` receives the 64-byte
// aligned address after the control block.
template <class T> struct LeafAllocator {
  using value_type = T;
  std::size_t bytes;
  void** data;
  LeafAllocator(std::size_t b, void** d) : bytes(b), data(d) {}
  template <class U> LeafAllocator(const LeafAllocator<U>& o) : bytes(o.bytes), data(o.data) {}
  static std::size_t head(std::size_t n) { return (n * sizeof(T) + 63) / 64 * 64; }
  T* allocate(std::size_t n) {
    const std::size_t size = head(n) + bytes, c = block_class(size);
    void* p = nullptr;
    if (c < 13 && !t_pool_closed && !t_pool.lists[c].empty()) {
      p = t_pool.lists[c].back();
      t_pool.lists[c].pop_back();
    } else if (!(p = std::aligned_alloc(64, c < 13 ? std::size_t(256) << c : (size + 63) / 64 * 64))) {
      throw std::bad_alloc();
    }
    *data = static_cast<char*>(p) + head(n);
    return static_cast<T*>(p);
  }
  void deallocate(T* p, std::size_t n) {
    const std::size_t c = block_class(head(n) + bytes);
    if (c < 13 && !t_pool_closed && t_pool.lists[c].size() < 32) return t_pool.lists[c].push_back(p);
    std::free(p);
  }
  template <class U> bool operator==(const LeafAllocator<U>& o) const { return bytes == o.bytes; }
  template <class U> bool operator!=(const LeafAllocator<U>& o) const { return bytes != o.bytes; }
};
}  // namespace

std::shared_ptr<LeafImpl> make_leaf(const Shape& shape, DType dtype) {
  void* data = nullptr;
  auto leaf = std::allocate_shared<LeafImpl>(LeafAllocator<LeafImpl>(shape.numel() * dtype_size(dtype), &data));
  leaf->shape = shape;
  leaf->dtype = dtype;
  leaf->data = data;
  return leaf;
}

}  // namespace tapegrad::detail
