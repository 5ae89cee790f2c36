// ctx.attrs<A>() is checked in debug builds and wherever TAPEGRAD_CHECK_ATTRS is defined (the sanitized
// build defines it for the library). This file defines it for its own ops, so the check runs in every build:
// a backward that reads another struct than its forward made, or attributes the forward never made, is an
// Error naming the op instead of a reinterpretation of bytes.
#define TAPEGRAD_CHECK_ATTRS 1
#include <boost/test/unit_test.hpp>

#include "support/xt.hpp"

using namespace tapegrad;
using namespace tapegrad::test;

namespace {

TAPEGRAD_OP(op_test_attrs_right, "test_attrs_right", "test");
TAPEGRAD_OP(op_test_attrs_wrong, "test_attrs_wrong", "test");
TAPEGRAD_OP(op_test_attrs_none, "test_attrs_none", "test");

struct Factor {
  double k;
};
struct Other {
  double k;
};

// y = k x, with the backward reading the attributes as Factor (right), Other (wrong) or with none made.
template <class Read, bool make>
Tensor scaled(const OpInfo& op, const Tensor& x, double k) {
  OpCall call(op, {&x});
  if (make) call.attrs<Factor>().k = k;
  Tensor y = call.output(x.shape());
  for (std::size_t i = 0; i < x.numel(); ++i) y.data<double>()[i] = k * x.data<double>()[i];
  call.record([](BackwardCtx& c) {
    const double f = c.attrs<Read>().k;
    for (std::size_t i = 0; i < c.in_shape(0).numel(); ++i) c.grad<double>(0)[i] += f * c.gout<double>()[i];
  });
  return y;
}

}  // namespace

BOOST_AUTO_TEST_SUITE(attrs_check)

BOOST_AUTO_TEST_CASE(the_forwards_type_reads_back) {
  Tensor x = parameter(from_values({1.0, -2.0}, {2}, DType::f64));
  backward(sum(scaled<Factor, true>(op_test_attrs_right, x, 3.0)));
  BOOST_TEST(x.grad().to_vector() == std::vector<double>({3.0, 3.0}), boost::test_tools::per_element());
}

BOOST_AUTO_TEST_CASE(another_type_is_an_error_naming_the_op) {
  Tape::Scope scope;  // the failed sweep's graph goes with the scope
  Tensor x = parameter(from_values({1.0, -2.0}, {2}, DType::f64));
  Tensor y = sum(scaled<Other, true>(op_test_attrs_wrong, x, 3.0));
  expect_error([&] { backward(y); }, {"test_attrs_wrong", "attrs<A>()", "another type"});
}

BOOST_AUTO_TEST_CASE(attributes_never_made_are_an_error) {
  Tape::Scope scope;
  Tensor x = parameter(from_values({1.0, -2.0}, {2}, DType::f64));
  Tensor y = sum(scaled<Factor, false>(op_test_attrs_none, x, 3.0));
  expect_error([&] { backward(y); }, {"test_attrs_none", "never called OpCall::attrs<A>()"});
}

BOOST_AUTO_TEST_SUITE_END()
