// tapegrad::dist (nn/distributed/dist.hpp) under MPI. ctest runs this with mpirun -np 2 (tests/CMakeLists.txt); it also
// runs as one process (a world of one rank) and at any size that divides the test's global batch.
//
// Every rank runs the same test cases in the same order, so the collectives inside them pair up. A check
// that fails on one rank is reported by that rank; mpirun then exits non-zero.
#define BOOST_TEST_MODULE dist
#include <boost/test/unit_test.hpp>

#include <tapegrad/nn/distributed/dist.hpp>
#include <tapegrad/tapegrad.hpp>

#include <algorithm>
#include <cmath>
#include <memory>
#include <set>
#include <string>
#include <vector>

using namespace tapegrad;

namespace {

struct MpiWorld {
  MpiWorld() { dist::init(); }
  ~MpiWorld() { dist::finalize(); }
};

// Calls f and checks that it throws an Error whose message contains every one of `parts`.
template <class F> void check_error(F&& f, const std::vector<std::string>& parts) {
  try {
    f();
    BOOST_ERROR("expected a tapegrad::Error");
  } catch (const Error& e) {
    const std::string msg = e.what();
    BOOST_TEST_MESSAGE("rank " << dist::rank() << " got: " << msg);
    for (const auto& p : parts) BOOST_CHECK_MESSAGE(msg.find(p) != std::string::npos, "'" << msg << "' lacks '" << p << "'");
  }
}

// Sets p's gradient to c (same shape and dtype): backward of sum(p * c).
void set_grad(Tensor& p, const Tensor& c) {
  p.zero_grad();
  backward(sum(p * c));
}

// All values of a list of tensors, as double, one after the other.
std::vector<double> flatten(const std::vector<Tensor>& ts) {
  std::vector<double> out;
  for (const Tensor& t : ts) {
    const std::vector<double> v = t.to_vector();
    out.insert(out.end(), v.begin(), v.end());
  }
  return out;
}

// An LSTM (I -> H) read out by a linear layer from its last state: the adding-problem model, float64.
struct Net : nn::Module {
  nn::LSTMCell cell;
  nn::Linear out;
  Net(std::size_t I, std::size_t H, Generator& gen)
      : cell(I, H, gen, false, nn::Init::glorot, 0.01, DType::f64), out(H, 1, gen, true, DType::f64) {
    register_module("cell", cell);
    register_module("out", out);
  }
  Tensor operator()(const Tensor& x) const { return out(nn::run(cell, x).last.h); }
};

// Samples [first, first + count) of a (T, B, I) sequence batch stored row-major.
Tensor batch_slice(const std::vector<double>& x, std::size_t T, std::size_t B, std::size_t I, std::size_t first,
                   std::size_t count) {
  std::vector<double> v(T * count * I);
  for (std::size_t t = 0; t < T; ++t)
    for (std::size_t b = 0; b < count; ++b)
      for (std::size_t i = 0; i < I; ++i) v[(t * count + b) * I + i] = x[(t * B + first + b) * I + i];
  return from_values(v, {T, count, I}, DType::f64);
}

}  // namespace

BOOST_GLOBAL_FIXTURE(MpiWorld);

BOOST_AUTO_TEST_SUITE(dist_world)

BOOST_AUTO_TEST_CASE(rank_and_size) {
  BOOST_TEST(dist::initialized());
  BOOST_TEST(dist::size() >= 1);
  BOOST_TEST(dist::rank() >= 0);
  BOOST_TEST(dist::rank() < dist::size());
  // Every rank has a distinct rank: the sum of ranks is 0 + 1 + ... + (size - 1).
  const double total = dist::allreduce_sum(double(dist::rank()));
  BOOST_TEST(total == double(dist::size()) * (dist::size() - 1) / 2);
  BOOST_TEST_MESSAGE("world of " << dist::size() << " ranks");
}

BOOST_AUTO_TEST_CASE(broadcast_parameters_copies_root_values) {
  const int r = dist::rank(), n = dist::size();
  for (int root : {0, n - 1}) {
    // Values that depend on the rank, in both dtypes.
    Tensor a = parameter(full({3, 4}, 10.0 * r + 1, DType::f32));
    Tensor b = parameter(full({5}, -2.5 * r - 1, DType::f64));
    dist::broadcast_parameters({a, b}, root);
    for (double v : a.to_vector()) BOOST_TEST(v == 10.0 * root + 1);
    for (double v : b.to_vector()) BOOST_TEST(v == -2.5 * root - 1);
  }
}

BOOST_AUTO_TEST_CASE(broadcast_of_numbers) {
  std::vector<double> v = {double(dist::rank()), 7.0};
  dist::broadcast(v, 0);
  BOOST_TEST(v[0] == 0.0);
  BOOST_TEST(v[1] == 7.0);
}

BOOST_AUTO_TEST_SUITE_END()

BOOST_AUTO_TEST_SUITE(dist_allreduce)

// Each rank's gradient is (rank + 1) * (i + 1) at element i: the average is (size + 1) / 2 * (i + 1),
// checked in float32 and float64, in one call over a mixed list.
BOOST_AUTO_TEST_CASE(averages_float32_and_float64) {
  const int r = dist::rank(), n = dist::size();
  Tensor a = parameter(zeros({3, 4}, DType::f32));
  Tensor b = parameter(zeros({7}, DType::f64));
  Tensor c = parameter(zeros({2, 2}, DType::f32));
  auto ramp = [&](const Shape& s, DType d) {
    std::vector<double> v(s.numel());
    for (std::size_t i = 0; i < v.size(); ++i) v[i] = double(r + 1) * double(i + 1);
    return from_values(v, s, d);
  };
  set_grad(a, ramp(a.shape(), DType::f32));
  set_grad(b, ramp(b.shape(), DType::f64));
  set_grad(c, ramp(c.shape(), DType::f32));
  dist::allreduce_gradients({a, b, c});
  // The expected value computed as the library does: the sum over ranks, times 1/size.
  const double ranks_sum = double(n) * (n + 1) / 2;
  for (const Tensor* p : {&a, &b, &c}) {
    const std::vector<double> g = p->grad().to_vector();
    for (std::size_t i = 0; i < g.size(); ++i) {
      const double want = p->dtype() == DType::f32 ? double(float(ranks_sum * (i + 1)) * (1.0f / float(n)))
                                                   : ranks_sum * double(i + 1) * (1.0 / double(n));
      BOOST_TEST(g[i] == want);
    }
  }
  // A second step reuses the buffers: the result must not depend on the previous step's contents.
  set_grad(a, ones({3, 4}, DType::f32));
  set_grad(b, full({7}, 3.0, DType::f64));
  set_grad(c, full({2, 2}, 0.5, DType::f32));
  dist::allreduce_gradients({a, b, c});
  for (double v : a.grad().to_vector()) BOOST_TEST(v == 1.0);
  for (double v : b.grad().to_vector()) BOOST_TEST(v == 3.0);
  for (double v : c.grad().to_vector()) BOOST_TEST(v == 0.5);
}

// A parameter with a gradient on rank 0 only: every rank gets g0 / size. One with no gradient anywhere
// stays undefined on every rank (optimizers skip it, as in one process).
BOOST_AUTO_TEST_CASE(missing_gradients_count_as_zeros) {
  const int r = dist::rank(), n = dist::size();
  Tensor a = parameter(zeros({4}, DType::f64));
  Tensor b = parameter(zeros({2}, DType::f32));
  Tensor untouched = parameter(zeros({3}, DType::f64));
  if (r == 0) set_grad(a, full({4}, 6.0, DType::f64));
  set_grad(b, full({2}, 2.0, DType::f32));
  dist::allreduce_gradients({a, untouched, b});
  BOOST_REQUIRE(a.grad().defined());
  for (double v : a.grad().to_vector()) BOOST_TEST(v == 6.0 * (1.0 / n));
  for (double v : b.grad().to_vector()) BOOST_TEST(v == 2.0);
  BOOST_TEST(!untouched.grad().defined());
}

BOOST_AUTO_TEST_CASE(mismatched_parameter_lists_raise_on_every_rank) {
  if (dist::size() < 2) {
    BOOST_TEST_MESSAGE("one rank: nothing to mismatch");
    return;
  }
  const int r = dist::rank();
  Tensor a = parameter(zeros({3, 4}, DType::f32));
  Tensor extra = parameter(zeros({2}, DType::f32));
  set_grad(a, ones({3, 4}, DType::f32));
  set_grad(extra, ones({2}, DType::f32));
  // One more parameter on rank 0.
  std::vector<Tensor> list = {a};
  if (r == 0) list.push_back(extra);
  check_error([&] { dist::allreduce_gradients(list); }, {"allreduce_gradients", "different parameter lists", "rank"});
  // Same element count, another shape on rank 0: (4, 3) against (3, 4).
  Tensor t = parameter(zeros(r == 0 ? Shape{4, 3} : Shape{3, 4}, DType::f32));
  set_grad(t, ones(t.shape(), DType::f32));
  check_error([&] { dist::allreduce_gradients({t}); }, {"shapes or dtypes differ"});
  // Same shape, another dtype on rank 0.
  Tensor u = parameter(zeros({5}, r == 0 ? DType::f64 : DType::f32));
  check_error([&] { dist::broadcast_parameters({u}); }, {"broadcast_parameters", "different parameter lists"});
  // The world still works afterwards.
  dist::allreduce_gradients({a});
  for (double v : a.grad().to_vector()) BOOST_TEST(v == 1.0);
}

BOOST_AUTO_TEST_CASE(bad_inputs) {
  Tensor a = parameter(zeros({2}, DType::f64));
  check_error([&] { dist::allreduce_gradients({a, Tensor()}); }, {"allreduce_gradients", "parameter 1 is undefined"});
  Tensor recorded = a * 2.0;
  check_error([&] { dist::allreduce_gradients({recorded}); }, {"not an owned leaf"});
  check_error([&] { dist::broadcast_parameters({a}, dist::size()); }, {"broadcast_parameters", "is not a rank"});
  check_error([&] { dist::broadcast_parameters({a}, -1); }, {"is not a rank"});
  std::vector<double> v(dist::rank() == 0 ? 3 : 2);
  if (dist::size() > 1) check_error([&] { dist::allreduce_sum(v); }, {"allreduce_sum", "different lengths"});
}

BOOST_AUTO_TEST_SUITE_END()

BOOST_AUTO_TEST_SUITE(dist_sampler)

// nn::DistributedSampler's own tests (any world size, no MPI) are in tests/nn/data/test_data.cpp; here each rank
// uses its own shard (dist::sampler: this process's rank and size).

// Under MPI: the shards' histogram, summed over ranks, is one per sample; and every rank draws the same
// permutation (rank 0's view compared everywhere).
BOOST_AUTO_TEST_CASE(same_permutation_on_every_rank) {
  const std::size_t n = 30 * std::size_t(dist::size());
  nn::DistributedSampler mine = dist::sampler(n, 2024);
  BOOST_TEST(mine.rank() == dist::rank());
  BOOST_TEST(mine.size() == dist::size());
  mine.set_epoch(1);
  std::vector<double> count(n, 0.0);
  for (std::size_t i : mine.indices()) count[i] += 1;
  dist::allreduce_sum(count);
  for (double c : count) BOOST_TEST(c == 1.0);

  nn::DistributedSampler rank0_view(n, 2024, true, false, 0, dist::size());
  rank0_view.set_epoch(1);
  const auto idx = rank0_view.indices();
  std::vector<double> here(idx.begin(), idx.end()), there = here;
  dist::broadcast(there, 0);
  BOOST_TEST((here == there));
}

// One shuffle: the ranks' j-th local batches of their samplers, put together in rank order (rank r's k-th
// sample at position k * size + r), are exactly batch j of a one-process nn::BatchIterator with the same seed
// and the global batch size, in every epoch.
BOOST_AUTO_TEST_CASE(ranks_see_the_global_batches_of_one_process) {
  const std::size_t size = std::size_t(dist::size()), local = 3, B = local * size, batches = 7, n = B * batches;
  std::vector<nn::QAPair> pairs;
  for (std::size_t i = 0; i < n; ++i) pairs.push_back({std::to_string(i), std::to_string(i % 10), 0});
  const nn::Tokenizer vocab = nn::build_vocabulary(pairs, nn::TokenLevel::character);
  const nn::BatchIterator one(pairs, vocab, vocab, B, 99);
  nn::DistributedSampler sampler = dist::sampler(n, 99);
  for (std::size_t epoch = 0; epoch < 3; ++epoch) {
    sampler.set_epoch(epoch);
    const auto mine = sampler.indices();
    BOOST_TEST_REQUIRE(mine.size() == local * batches);
    std::vector<double> global(n, 0.0);  // sample + 1 at its place in the global batches; summed over ranks
    for (std::size_t j = 0; j < batches; ++j) {
      // What this rank trains on: its slice of the shard, batched by the same iterator.
      const std::vector<std::size_t> slice(mine.begin() + std::ptrdiff_t(j * local), mine.begin() + std::ptrdiff_t((j + 1) * local));
      BOOST_TEST((one.batch_of(slice).index == slice));
      for (std::size_t k = 0; k < local; ++k) global[j * B + k * size + std::size_t(dist::rank())] = double(slice[k] + 1);
    }
    dist::allreduce_sum(global);
    for (std::size_t j = 0; j < batches; ++j) {
      const auto expected = one.batch(epoch, j).index;
      std::vector<std::size_t> got;
      for (std::size_t m = 0; m < B; ++m) got.push_back(std::size_t(global[j * B + m]) - 1);
      BOOST_TEST((got == expected), "epoch " << epoch << " batch " << j);
    }
  }
}

BOOST_AUTO_TEST_SUITE_END()

BOOST_AUTO_TEST_SUITE(dist_training)

// K Adam steps of data-parallel training (each rank: B / size samples, gradients averaged) against one
// process stepping on the whole batch, in float64. Each rank starts from a different draw, so the
// broadcast of rank 0's weights is part of what is checked; the one-process reference (computed on every
// rank) starts from rank 0's draw.
//
// At every step the averaged gradient equals the one-process gradient to 1e-12 of the largest gradient.
// After K steps: (1) the parameters are bit-identical on every rank (every rank applies the same update
// to the same values); (2) they equal the one-process run to a relative 1e-12 of the largest parameter.
// They are not bit-identical to it: the batch mean is summed in another order (the two halves' means,
// then their average) and the GEMMs over B/2 and B rows block their sums differently; each step's
// gradients then differ by a few ulps (about 1e-16 relative), which K = 5 Adam steps carry forward
// without amplifying (measured: about 1e-16 of the largest weight).
BOOST_AUTO_TEST_CASE(parameters_match_one_process_on_the_concatenated_batch) {
  const int r = dist::rank(), n = dist::size();
  const std::size_t T = 6, I = 2, H = 8, B = 8, K = 5;
  BOOST_REQUIRE_MESSAGE(B % std::size_t(n) == 0, "the global batch " << B << " must split evenly over " << n << " ranks");
  const std::size_t local = B / std::size_t(n);

  Generator data_gen(99);  // the same data on every rank
  std::vector<std::vector<double>> xs, ds;
  for (std::size_t k = 0; k < K; ++k) {
    std::vector<double> x(T * B * I), d(B);
    for (auto& v : x) v = data_gen.uniform(-1.0, 1.0);
    for (auto& v : d) v = data_gen.uniform(0.0, 2.0);
    xs.push_back(x);
    ds.push_back(d);
  }

  Generator own(1000 + std::uint64_t(r)), ref_gen(1000);
  Net net(I, H, own), ref(I, H, ref_gen);
  dist::broadcast_parameters(net);
  nn::Adam opt(net.parameters(), 0.05), ref_opt(ref.parameters(), 0.05);
  double worst_grad = 0;
  for (std::size_t k = 0; k < K; ++k) {
    const std::vector<double> d_local(ds[k].begin() + r * local, ds[k].begin() + (r + 1) * local);
    opt.zero_grad();
    backward(mse_loss(net(batch_slice(xs[k], T, B, I, r * local, local)), from_values(d_local, {local, 1}, DType::f64)));
    dist::allreduce_gradients(net);

    ref_opt.zero_grad();
    backward(mse_loss(ref(batch_slice(xs[k], T, B, I, 0, B)), from_values(ds[k], {B, 1}, DType::f64)));
    // The averaged gradient itself (Adam's step hardly depends on the gradient's scale, so a sum instead of
    // a mean would slip through a check of the parameters alone).
    std::vector<Tensor> g, g_ref;
    for (const Tensor& p : net.parameters()) g.push_back(p.grad());
    for (const Tensor& p : ref.parameters()) g_ref.push_back(p.grad());
    const std::vector<double> gv = flatten(g), gv_ref = flatten(g_ref);
    double g_scale = 0;
    for (std::size_t i = 0; i < gv.size(); ++i) {
      g_scale = std::max(g_scale, std::abs(gv_ref[i]));
      worst_grad = std::max(worst_grad, std::abs(gv[i] - gv_ref[i]));
    }
    BOOST_TEST(worst_grad <= 1e-12 * g_scale, "step " << k << ": max |gradient - one process| " << worst_grad
                                                   << " against the largest gradient " << g_scale);
    opt.step();
    ref_opt.step();
  }

  const std::vector<double> mine = flatten(net.parameters()), reference = flatten(ref.parameters());
  std::vector<double> rank0 = mine;
  dist::broadcast(rank0, 0);
  BOOST_REQUIRE(mine.size() == reference.size());
  std::size_t differ_from_rank0 = 0;
  double scale = 0, worst = 0, moved = 0;
  Generator init_gen(1000);
  const std::vector<double> start = flatten(Net(I, H, init_gen).parameters());
  for (std::size_t i = 0; i < mine.size(); ++i) {
    differ_from_rank0 += mine[i] != rank0[i];
    scale = std::max(scale, std::abs(reference[i]));
    worst = std::max(worst, std::abs(mine[i] - reference[i]));
    moved = std::max(moved, std::abs(reference[i] - start[i]));
  }
  BOOST_TEST_MESSAGE("rank " << r << ": max |dist - one process| = " << worst << ", largest weight " << scale
                             << ", largest move in " << K << " steps " << moved << "; max gradient difference "
                             << worst_grad);
  BOOST_TEST(differ_from_rank0 == 0u);
  BOOST_TEST(moved > 0.01);  // the training moved the weights: the comparison is not of two initial states
  BOOST_TEST(worst <= 1e-12 * scale);
}

BOOST_AUTO_TEST_SUITE_END()
