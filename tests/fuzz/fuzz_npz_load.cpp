// libFuzzer harness: nn::load over arbitrary bytes. The module has a float32 (2, 3) "W" and a float64 (3,)
// "b", the parameters of the corpus archives (written by nn::save), so mutations reach the .npy headers.
// Any outcome but success or a tapegrad::Error is a finding (a crash, a sanitizer report, another
// exception); a failed load must leave the parameters unchanged.
#include <sys/mman.h>
#include <unistd.h>

#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <string>

#include <tapegrad/nn/models/module.hpp>
#include <tapegrad/nn/training/serialize.hpp>

namespace {

struct Model : tapegrad::nn::Module {
  tapegrad::Tensor W, b;
  Model() {
    W = register_parameter("W", tapegrad::full({2, 3}, 7.0, tapegrad::DType::f32));
    b = register_parameter("b", tapegrad::full({3}, 7.0, tapegrad::DType::f64));
  }
};

// One in-memory file, rewritten per input: nn::load reads it through /proc/self/fd.
int file_fd() {
  static const int fd = memfd_create("fuzz.npz", 0);
  if (fd < 0) std::abort();
  return fd;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const int fd = file_fd();
  if (ftruncate(fd, 0) != 0) std::abort();
  std::size_t done = 0;
  while (done < size) {
    const ssize_t n = pwrite(fd, data + done, size - done, static_cast<off_t>(done));
    if (n <= 0) std::abort();
    done += static_cast<std::size_t>(n);
  }
  static const std::string path = "/proc/self/fd/" + std::to_string(fd);
  Model m;
  try {
    tapegrad::nn::load(m, path);
  } catch (const tapegrad::Error&) {
    // Validation failed: no parameter may have changed.
    for (double v : m.W.to_vector())
      if (v != 7.0) std::abort();
    for (double v : m.b.to_vector())
      if (v != 7.0) std::abort();
  }
  return 0;
}
