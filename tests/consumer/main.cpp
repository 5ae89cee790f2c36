// A user's project: find_package(tapegrad), one Elman step, backward, and a gradient it can check.
#include <tapegrad/tapegrad.hpp>

#include <cmath>
#include <iostream>

int main() {
  using namespace tapegrad;
  set_num_threads(num_threads());  // the thread setting (ops/parallel.hpp) links from the installed library
  Generator gen(7);
  Tensor W_in = parameter(randn({3, 4}, gen, 0.5, DType::f64));
  Tensor x = randn({2, 3}, gen, 1.0, DType::f64);
  Tensor z = tanh(matmul(x, W_in));
  Tensor loss = sum(z * z);
  backward(loss);
  auto r = gradcheck([&](const std::vector<Tensor>& in) { return sum(tanh(matmul(in[0], in[1])) * tanh(matmul(in[0], in[1]))); },
                     {x, W_in});
  std::cout << "consumer: grad norm entries " << W_in.grad().numel() << ", gradcheck " << (r.ok ? "ok" : r.message) << "\n";
  return r.ok && W_in.grad().numel() == 12 ? 0 : 1;
}
