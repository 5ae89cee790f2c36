// libFuzzer harness: nn::Tree::parse over arbitrary text. A parsed tree must validate, print back to a
// string that parses to the same tree, and any failure must be a tapegrad::Error.
#include <cstdint>
#include <cstdlib>
#include <string>

#include <tapegrad/nn/models/recursive.hpp>

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  tapegrad::nn::Tree t;
  try {
    t = tapegrad::nn::Tree::parse(text);
  } catch (const tapegrad::Error&) {
    return 0;
  }
  std::int64_t max_leaf = 0;
  for (const auto& n : t.nodes) max_leaf = n.leaf > max_leaf ? n.leaf : max_leaf;
  t.validate("fuzz", static_cast<std::size_t>(max_leaf) + 1);
  const std::string printed = t.str();
  const tapegrad::nn::Tree u = tapegrad::nn::Tree::parse(printed);
  if (u.str() != printed || u.size() != t.size()) std::abort();
  return 0;
}
