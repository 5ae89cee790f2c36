#include "tapegrad/autograd/arena.hpp"

#include <algorithm>
#include <cstdlib>
#include <new>

namespace tapegrad::detail {

Arena::~Arena() {
  for (auto& c : chunks_) std::free(c.base);
}

void* Arena::allocate_slow(std::size_t bytes) {
  while (current_ < chunks_.size() && offset_ + bytes > chunks_[current_].size) {
    ++current_;
    offset_ = 0;
  }
  if (current_ == chunks_.size()) {
    std::size_t size = std::max<std::size_t>(bytes, chunks_.empty() ? (1u << 20) : chunks_.back().size * 2);
    char* base = static_cast<char*>(std::aligned_alloc(64, size));
    if (!base) throw std::bad_alloc();
    chunks_.push_back({base, size});
    offset_ = 0;
  }
  void* p = chunks_[current_].base + offset_;
  offset_ += bytes;
  in_use_ += bytes;
  return p;
}

std::size_t Arena::capacity() const {
  std::size_t c = 0;
  for (auto& ch : chunks_) c += ch.size;
  return c;
}

void Arena::reset() {
  peak_ = std::max(peak_, in_use_);
  if (chunks_.size() > 1) {  // merge, so the next step of the same size fits one chunk
    const std::size_t total = capacity();
    for (auto& c : chunks_) std::free(c.base);
    chunks_.clear();
    char* base = static_cast<char*>(std::aligned_alloc(64, total));
    if (!base) throw std::bad_alloc();
    chunks_.push_back({base, total});
  }
  current_ = 0;
  offset_ = 0;
  in_use_ = 0;
}

}  // namespace tapegrad::detail
