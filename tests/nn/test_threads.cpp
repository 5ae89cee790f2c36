// Two models trained in two threads at once (each thread records on its own thread_local tape) end with
// bit-identical parameters to the same two trainings run one after the other.
#include <boost/test/unit_test.hpp>

#include <cstring>
#include <thread>
#include <vector>

#include <tapegrad/autograd/tape.hpp>
#include <tapegrad/nn/models/linear.hpp>
#include <tapegrad/nn/training/optim.hpp>
#include <tapegrad/nn/models/rnn.hpp>
#include <tapegrad/ops/loss.hpp>
#include <tapegrad/ops/shape.hpp>

using namespace tapegrad;

BOOST_AUTO_TEST_SUITE(threads)

namespace {

// An LSTM over (T, B, I) with a linear head on the last state, trained on fixed random data with Adam.
struct Model : nn::Module {
  Generator gen;  // first: the layers below draw their init from it
  nn::LSTMCell cell;
  nn::Linear head;
  explicit Model(std::uint64_t seed)
      : gen(seed), cell(3, 8, gen, false, nn::Init::glorot, 0.01, DType::f32), head(8, 2, gen, true, DType::f32) {
    register_module("cell", cell);
    register_module("head", head);
  }
};

// Trains a fresh model from `seed` for `steps` steps; returns every parameter's bytes.
std::vector<std::vector<char>> train(std::uint64_t seed, int steps) {
  Model m(seed);
  Generator data(seed + 100);
  const Tensor x = randn({6, 4, 3}, data), y = randn({4, 2}, data);
  nn::Adam opt(m.parameters(), 1e-2);
  for (int s = 0; s < steps; ++s) {
    opt.zero_grad();
    const nn::Sequence seq = nn::run(m.cell, x);
    const Tensor loss = mse_loss(m.head(seq.last.h), y);
    backward(loss);
    opt.step();
  }
  std::vector<std::vector<char>> out;
  for (const Tensor& p : m.parameters()) {
    const char* b = static_cast<const char*>(p.raw_data());
    out.emplace_back(b, b + p.numel() * dtype_size(p.dtype()));
  }
  return out;
}

}  // namespace

BOOST_AUTO_TEST_CASE(two_models_in_two_threads) {
  const int steps = 200;
  const auto a_alone = train(1, steps), b_alone = train(2, steps);
  BOOST_TEST_REQUIRE(a_alone != b_alone);  // the two trainings differ, so a mix-up would show
  std::vector<std::vector<char>> a_threaded, b_threaded;
  std::thread ta([&] { a_threaded = train(1, steps); });
  std::thread tb([&] { b_threaded = train(2, steps); });
  ta.join();
  tb.join();
  BOOST_TEST((a_threaded == a_alone));
  BOOST_TEST((b_threaded == b_alone));
}

BOOST_AUTO_TEST_SUITE_END()
