// Test helpers for files: a temporary directory removed at the end of a test, whole-file reads, and a
// module's parameters as bytes (for bit-for-bit comparisons of training runs).
#pragma once

#include <stdlib.h>

#include <filesystem>
#include <fstream>
#include <iterator>
#include <stdexcept>
#include <string>
#include <system_error>
#include <vector>

#include <tapegrad/nn/models/module.hpp>

namespace tapegrad::test {

class TempDir {
 public:
  explicit TempDir(const std::string& tag = "test") {
    std::string tmpl = (std::filesystem::temp_directory_path() / ("tapegrad-" + tag + "-XXXXXX")).string();
    if (!::mkdtemp(tmpl.data())) throw std::runtime_error("TempDir: mkdtemp failed for " + tmpl);
    path = tmpl;
  }
  ~TempDir() {
    std::error_code ec;  // a test may have made the directory read-only
    std::filesystem::permissions(path, std::filesystem::perms::owner_all, std::filesystem::perm_options::add, ec);
    std::filesystem::remove_all(path, ec);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;

  std::string file(const std::string& name) const { return (path / name).string(); }
  std::string operator/(const std::string& name) const { return file(name); }
  std::string write(const std::string& name, const std::string& content) const {
    const std::string f = file(name);
    std::ofstream(f, std::ios::binary) << content;
    return f;
  }
  std::size_t entries() const {
    return static_cast<std::size_t>(
        std::distance(std::filesystem::directory_iterator(path), std::filesystem::directory_iterator()));
  }

  std::filesystem::path path;
};

inline std::string read_file(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(f), std::istreambuf_iterator<char>());
}

inline std::vector<char> parameter_bytes(const nn::Module& m) {
  std::vector<char> out;
  for (const auto& [name, t] : m.named_parameters()) {
    const char* p = static_cast<const char*>(t.raw_data());
    out.insert(out.end(), p, p + t.numel() * dtype_size(t.dtype()));
  }
  return out;
}

}  // namespace tapegrad::test
