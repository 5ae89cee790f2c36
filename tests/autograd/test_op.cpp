// The op author's API (autograd/op.hpp): typed attributes, forward-only scratch, deferred updates.
#include <boost/test/unit_test.hpp>

#include <cstdint>
#include <thread>
#include <vector>

#include "support/xt.hpp"

using namespace tapegrad;
using namespace tapegrad::test;

namespace {

TAPEGRAD_OP(op_test_scale, "test_scale", "test");
TAPEGRAD_OP(op_test_nested, "test_nested", "test");
TAPEGRAD_OP(op_test_copy_deferred, "test_copy_deferred", "test");

struct ScaleAttrs {
  double s;
};

// y = s x, with s kept as the op's attribute.
Tensor scale(const Tensor& x, double s) {
  OpCall call(op_test_scale, {&x});
  call.attrs<ScaleAttrs>().s = s;
  Tensor y = call.output(x.shape());
  const double* px = x.data<double>();
  for (std::size_t i = 0; i < x.numel(); ++i) y.data<double>()[i] = s * px[i];
  call.record(
      [](BackwardCtx& c) {
        const double s = c.attrs<ScaleAttrs>().s;
        for (std::size_t i = 0; i < c.in_shape(0).numel(); ++i) c.grad<double>(0)[i] += s * c.gout<double>()[i];
      },
      [](GraphCtx& g) { g.accumulate(0, g.gout() * g.attrs<ScaleAttrs>().s); });
  return y;
}

// Calls another op between making its attributes and reading them: the inner call's scratch must not
// reuse the outer call's.
struct NestedAttrs {
  double marker[4];
};
Tensor nested(const Tensor& x) {
  OpCall call(op_test_nested, {&x});
  NestedAttrs& a = call.attrs<NestedAttrs>();
  for (double& m : a.marker) m = 7.0;
  Tensor inner = scale(x, 2.0);
  inner = scale(inner, 3.0);
  Tensor y = call.output(x.shape());
  for (std::size_t i = 0; i < x.numel(); ++i) y.data<double>()[i] = inner.data<double>()[i] + a.marker[i % 4];
  call.record([](BackwardCtx& c) {
    for (std::size_t i = 0; i < c.in_shape(0).numel(); ++i) c.grad<double>(0)[i] += 6.0 * c.gout<double>()[i];
  });
  return y;
}

// y = x; backward hands gx += gy to the engine (BackwardCtx::defer), with its own payload.
struct CopyUpdate {
  const double* g;
  std::size_t n;
};
int g_deferred_calls = 0;
std::size_t g_deferred_updates = 0;
void apply_copies(void* grad, const void* const* payloads, std::size_t count) {
  ++g_deferred_calls;
  g_deferred_updates += count;
  for (std::size_t k = 0; k < count; ++k) {
    const auto& u = *static_cast<const CopyUpdate*>(payloads[k]);
    for (std::size_t i = 0; i < u.n; ++i) static_cast<double*>(grad)[i] += u.g[i];
  }
}
Tensor copy_deferred(const Tensor& x) {
  OpCall call(op_test_copy_deferred, {&x});
  Tensor y = call.output(x.shape());
  for (std::size_t i = 0; i < x.numel(); ++i) y.data<double>()[i] = x.data<double>()[i];
  call.record([](BackwardCtx& c) {
    const std::size_t n = c.in_shape(0).numel();
    CopyUpdate* u = c.scratch<CopyUpdate>(1);
    *u = {c.gout<double>(), n};
    if (c.defer(0, apply_copies, u)) return;
    for (std::size_t i = 0; i < n; ++i) c.grad<double>(0)[i] += c.gout<double>()[i];
  });
  return y;
}

}  // namespace

BOOST_AUTO_TEST_SUITE(op_api)

BOOST_AUTO_TEST_CASE(attributes_reach_both_backward_passes) {
  Tensor x = parameter(from_values({1.0, -2.0, 3.0}, {3}, DType::f64));
  Tensor y = sum(scale(x, 2.5) * scale(x, -1.0));  // -2.5 x^2: d/dx = -5 x, d2/dx2 = -5
  backward(y, Tensor(), true);
  BOOST_TEST(x.grad().to_vector() == std::vector<double>({-5.0, 10.0, -15.0}), boost::test_tools::per_element());
  auto g = grad(y, {x}, {Tensor(), true, true});
  auto gg = grad(sum(g[0]), {x});
  BOOST_TEST(gg[0].to_vector() == std::vector<double>({-5.0, -5.0, -5.0}), boost::test_tools::per_element());
}

BOOST_AUTO_TEST_CASE(forward_only_scratch_is_not_reused_while_a_call_holds_it) {
  Tensor x = from_values({1.0, 2.0, 3.0, 4.0}, {4}, DType::f64);
  Tensor y;
  {
    NoGrad off;
    y = nested(x);
    y = nested(y);  // the second outer call starts from scratch released by the first
  }
  // nested(x) = 6 x + 7, twice.
  BOOST_TEST(y.to_vector() == std::vector<double>({6 * 13.0 + 7, 6 * 19.0 + 7, 6 * 25.0 + 7, 6 * 31.0 + 7}),
             boost::test_tools::per_element());
}

BOOST_AUTO_TEST_CASE(deferred_updates_of_one_buffer_run_as_one_group) {
  Tensor w = parameter(from_values({1.0, 2.0}, {2}, DType::f64));
  g_deferred_calls = 0;
  g_deferred_updates = 0;
  Tensor y = sum(copy_deferred(w) * 3.0 + copy_deferred(w) * 4.0);
  backward(y);
  BOOST_TEST(g_deferred_calls == 1);
  BOOST_TEST(g_deferred_updates == 2u);
  BOOST_TEST(w.grad().to_vector() == std::vector<double>({7.0, 7.0}), boost::test_tools::per_element());
  // Anomaly mode checks every gradient during the sweep, so nothing is deferred there.
  w.zero_grad();
  g_deferred_calls = 0;
  {
    DetectAnomaly on;
    backward(sum(copy_deferred(w) * 3.0));
  }
  BOOST_TEST(g_deferred_calls == 0);
  BOOST_TEST(w.grad().to_vector() == std::vector<double>({3.0, 3.0}), boost::test_tools::per_element());
}

BOOST_AUTO_TEST_CASE(owned_buffers_are_aligned_and_survive_a_free_on_another_thread) {
  // Sizes in several block classes, and one above the pooled range (1 MiB).
  for (std::size_t n : {std::size_t(0), std::size_t(1), std::size_t(31), std::size_t(32), std::size_t(1000),
                        std::size_t(200000)}) {
    std::vector<Tensor> kept;
    for (int k = 0; k < 3; ++k) {
      Tensor t = full({n}, double(k), DType::f64);
      BOOST_TEST(reinterpret_cast<std::uintptr_t>(t.raw_data()) % 64 == 0u);
      kept.push_back(t);
    }
    std::thread([moved = std::move(kept)]() mutable { moved.clear(); }).join();  // freed over there
    Tensor a = full({n}, 5.0, DType::f64), b = full({n}, 6.0, DType::f64);  // reuse blocks here
    for (std::size_t i = 0; i < n; ++i) {
      BOOST_TEST_REQUIRE(a.data<double>()[i] == 5.0);
      BOOST_TEST_REQUIRE(b.data<double>()[i] == 6.0);
    }
  }
}

BOOST_AUTO_TEST_SUITE_END()
