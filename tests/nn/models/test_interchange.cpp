// Weight interchange (nn/models/interchange): PyTorch and course layouts, both ways; round trips; gradients
// through import; loading into cells; bad inputs.
#include <boost/test/unit_test.hpp>

#include <tapegrad/nn/models/interchange.hpp>

#include "support/xt.hpp"

using namespace tapegrad;
using namespace tapegrad::nn;
using namespace tapegrad::test;

namespace {

constexpr std::size_t B = 2, I = 3, H = 4;

Tensor rnd(const Shape& s, Generator& g) { return randn(s, g, 0.7, DType::f64); }

// Exact equality, values and shape.
bool same(const Tensor& a, const Tensor& b) {
  return a.defined() && b.defined() && a.shape() == b.shape() && max_abs_diff(a, to_xt(b)) == 0.0;
}

PyTorchRNNWeights torch_w(Generator& g, std::size_t gates, bool zero_bias_hh) {
  PyTorchRNNWeights w{rnd({gates * H, I}, g), rnd({gates * H, H}, g), rnd({gates * H}, g), rnd({gates * H}, g)};
  if (zero_bias_hh) w.bias_hh = zeros({gates * H}, DType::f64);
  return w;
}

}  // namespace

BOOST_AUTO_TEST_SUITE(interchange)

BOOST_AUTO_TEST_CASE(pytorch_import_layout) {
  Generator g(1);
  PyTorchRNNWeights w = torch_w(g, 4, false);
  LSTMWeights l = lstm_from_pytorch(w);
  BOOST_TEST(same(l.W_x, transpose(w.weight_ih)));
  BOOST_TEST(same(l.W_h, transpose(w.weight_hh)));
  BOOST_TEST(max_abs_diff(l.b, to_xt(w.bias_ih) + to_xt(w.bias_hh)) == 0.0);
  BOOST_TEST(!l.p_i.defined());
  // Element check of the layout: W_x[k, j] = weight_ih[j, k] (row j of weight_ih is gate unit j).
  BOOST_TEST(l.W_x.at({2, 9}) == w.weight_ih.at({9, 2}));

  PyTorchRNNWeights gw = torch_w(g, 3, false);
  GRUWeights gr = gru_from_pytorch(gw);
  BOOST_TEST((gr.convention == GRUConvention::reset_after));
  BOOST_TEST(same(gr.b_hn, slice(gw.bias_hh, 0, 2 * H, 3 * H)));
  // r and z biases add; the n block of b is bias_ih's alone.
  BOOST_TEST(gr.b.at({1}) == gw.bias_ih.at({1}) + gw.bias_hh.at({1}));
  BOOST_TEST(gr.b.at({2 * H + 1}) == gw.bias_ih.at({2 * H + 1}));
}

BOOST_AUTO_TEST_CASE(export_of_import_round_trip) {
  Generator g(2);
  // With bias_hh zero (GRU: zero in r, z) the round trip gives w back exactly.
  {
    PyTorchRNNWeights w = torch_w(g, 4, true);
    PyTorchRNNWeights e = lstm_to_pytorch(lstm_from_pytorch(w));
    BOOST_TEST(same(e.weight_ih, w.weight_ih));
    BOOST_TEST(same(e.weight_hh, w.weight_hh));
    BOOST_TEST(same(e.bias_ih, w.bias_ih));
    BOOST_TEST(same(e.bias_hh, w.bias_hh));
  }
  {
    PyTorchRNNWeights w = torch_w(g, 3, false);
    w.bias_hh = pad(slice(w.bias_hh, 0, 2 * H, 3 * H), 0, 2 * H, 0);  // [0 0 b_hn]
    PyTorchRNNWeights e = gru_to_pytorch(gru_from_pytorch(w));
    BOOST_TEST(same(e.weight_ih, w.weight_ih));
    BOOST_TEST(same(e.weight_hh, w.weight_hh));
    BOOST_TEST(same(e.bias_ih, w.bias_ih));
    BOOST_TEST(same(e.bias_hh, w.bias_hh));
  }
  {
    PyTorchRNNWeights w = torch_w(g, 1, true);
    PyTorchRNNWeights e = rnn_to_pytorch(rnn_from_pytorch(w));
    BOOST_TEST(same(e.weight_ih, w.weight_ih));
    BOOST_TEST(same(e.weight_hh, w.weight_hh));
    BOOST_TEST(same(e.bias_ih, w.bias_ih));
    BOOST_TEST(same(e.bias_hh, w.bias_hh));
  }
  // In general: weights exact, bias_ih + bias_hh (GRU: and b_hn) preserved, so the same function.
  {
    PyTorchRNNWeights w = torch_w(g, 4, false);
    PyTorchRNNWeights e = lstm_to_pytorch(lstm_from_pytorch(w));
    BOOST_TEST(same(e.weight_ih, w.weight_ih));
    BOOST_TEST(same(e.weight_hh, w.weight_hh));
    BOOST_TEST(max_abs_diff(e.bias_ih + e.bias_hh, to_xt(w.bias_ih) + to_xt(w.bias_hh)) == 0.0);
  }
  {
    PyTorchRNNWeights w = torch_w(g, 3, false);
    PyTorchRNNWeights e = gru_to_pytorch(gru_from_pytorch(w));
    BOOST_TEST(same(slice(e.bias_hh, 0, 2 * H, 3 * H), slice(w.bias_hh, 0, 2 * H, 3 * H)));
    Tensor x = rnd({B, I}, g), h = rnd({B, H}, g);
    Tensor h1 = GRUCell(gru_from_pytorch(w)).step(x, {h, {}}).h;
    Tensor h2 = GRUCell(gru_from_pytorch(e)).step(x, {h, {}}).h;
    BOOST_TEST(max_abs_diff(h1, to_xt(h2)) < 1e-15);
  }
}

BOOST_AUTO_TEST_CASE(import_of_export_round_trip_is_exact) {
  Generator g(3);
  LSTMCell lstm(I, H, g, false, Init::glorot, 0.01, DType::f64);
  LSTMWeights l = lstm_from_pytorch(lstm_to_pytorch(lstm.weights()));
  BOOST_TEST(same(l.W_x, lstm.W_x));
  BOOST_TEST(same(l.W_h, lstm.W_h));
  BOOST_TEST(same(l.b, lstm.b));

  GRUCell gru(I, H, g, GRUConvention::reset_after, Init::glorot, 0.01, DType::f64);
  for (std::size_t k = 0; k < H; ++k) gru.b_hn.data<double>()[k] = 0.1 * double(k + 1);
  GRUWeights r = gru_from_pytorch(gru_to_pytorch(gru.weights()));
  BOOST_TEST(same(r.W_x, gru.W_x));
  BOOST_TEST(same(r.W_h, gru.W_h));
  BOOST_TEST(same(r.b, gru.b));
  BOOST_TEST(same(r.b_hn, gru.b_hn));

  RNNCell rnn(I, H, g, Activation::sigmoid, Init::he, 0.01, DType::f64);
  RNNWeights e = rnn_from_pytorch(rnn_to_pytorch(rnn.weights()));
  BOOST_TEST(same(e.W_in, rnn.W_in));
  BOOST_TEST(same(e.W, rnn.W));
  BOOST_TEST(same(e.b, rnn.b));
}

BOOST_AUTO_TEST_CASE(course_layout_round_trips) {
  Generator g(4);
  CourseLSTMWeights c{rnd({I, H}, g), rnd({I, H}, g), rnd({I, H}, g), rnd({I, H}, g), rnd({H, H}, g), rnd({H, H}, g),
                      rnd({H, H}, g), rnd({H, H}, g), rnd({H}, g),    rnd({H}, g),    rnd({H}, g),    rnd({H}, g),
                      rnd({H}, g),    rnd({H}, g),    rnd({H}, g)};
  LSTMWeights l = lstm_from_course(c);
  BOOST_TEST(same(slice(l.W_x, 1, H, 2 * H), c.W_f));  // gate order i, f, g, o
  BOOST_TEST(same(slice(l.W_h, 1, 3 * H, 4 * H), c.U_o));
  BOOST_TEST(same(slice(l.b, 0, 2 * H, 3 * H), c.b_g));
  CourseLSTMWeights c2 = lstm_to_course(l);
  const Tensor* a[] = {&c.W_i, &c.W_f, &c.W_g, &c.W_o, &c.U_i, &c.U_f, &c.U_g, &c.U_o,
                       &c.b_i, &c.b_f, &c.b_g, &c.b_o, &c.p_i, &c.p_f, &c.p_o};
  const Tensor* b[] = {&c2.W_i, &c2.W_f, &c2.W_g, &c2.W_o, &c2.U_i, &c2.U_f, &c2.U_g, &c2.U_o,
                       &c2.b_i, &c2.b_f, &c2.b_g, &c2.b_o, &c2.p_i, &c2.p_f, &c2.p_o};
  for (int k = 0; k < 15; ++k) BOOST_TEST(same(*a[k], *b[k]), "course LSTM tensor " << k);

  CourseGRUWeights cg{rnd({I, H}, g), rnd({I, H}, g), rnd({I, H}, g), rnd({H, H}, g), rnd({H, H}, g),
                      rnd({H, H}, g), rnd({H}, g),    rnd({H}, g),    rnd({H}, g)};
  GRUWeights gw = gru_from_course(cg);
  BOOST_TEST((gw.convention == GRUConvention::course));
  BOOST_TEST(same(gw.U_h, cg.U_h));
  BOOST_TEST(same(slice(gw.W_h, 1, H, 2 * H), cg.U_z));
  CourseGRUWeights cg2 = gru_to_course(gw);
  BOOST_TEST(same(cg2.W_r, cg.W_r));
  BOOST_TEST(same(cg2.W_z, cg.W_z));
  BOOST_TEST(same(cg2.W_h, cg.W_h));
  BOOST_TEST(same(cg2.U_r, cg.U_r));
  BOOST_TEST(same(cg2.U_z, cg.U_z));
  BOOST_TEST(same(cg2.U_h, cg.U_h));
  BOOST_TEST(same(cg2.b_r, cg.b_r));
  BOOST_TEST(same(cg2.b_z, cg.b_z));
  BOOST_TEST(same(cg2.b_h, cg.b_h));
}

// Imports are composed from ops: gradients reach the PyTorch-layout and course-layout tensors.
BOOST_AUTO_TEST_CASE(gradients_flow_through_import) {
  Generator g(5);
  auto p = [&](const Shape& s) { return parameter(rnd(s, g)); };
  std::vector<Tensor> in{p({B, I}), p({B, H}), p({3 * H, I}), p({3 * H, H}), p({3 * H}), p({3 * H})};
  GradcheckResult r = gradcheck(
      [](const std::vector<Tensor>& v) { return GRUCell(gru_from_pytorch({v[2], v[3], v[4], v[5]})).step(v[0], {v[1], {}}).h; },
      in);
  BOOST_TEST(r.ok, r.message);
  std::vector<Tensor> lin{p({B, I}), p({B, H}), p({B, H}), p({4 * H, I}), p({4 * H, H}), p({4 * H}), p({4 * H})};
  r = gradcheck(
      [](const std::vector<Tensor>& v) {
        State s = LSTMCell(lstm_from_pytorch({v[3], v[4], v[5], v[6]})).step(v[0], {v[1], v[2]});
        return concat({s.h, s.c}, 1);
      },
      lin);
  BOOST_TEST(r.ok, r.message);
  std::vector<Tensor> cin{p({B, I}), p({B, H}), p({I, H}), p({I, H}), p({I, H}), p({H, H}), p({H, H}), p({H, H}),
                          p({H}), p({H}), p({H})};
  r = gradcheck(
      [](const std::vector<Tensor>& v) {
        return GRUCell(gru_from_course({v[2], v[3], v[4], v[5], v[6], v[7], v[8], v[9], v[10]})).step(v[0], {v[1], {}}).h;
      },
      cin);
  BOOST_TEST(r.ok, r.message);
}

BOOST_AUTO_TEST_CASE(state_dict_layers) {
  Generator g(6);
  StateDict sd;
  PyTorchRNNWeights f = torch_w(g, 4, false), b = torch_w(g, 4, false);
  put_pytorch_layer(sd, f, 0, false);
  put_pytorch_layer(sd, b, 0, true);
  BOOST_TEST(sd.size() == 8u);
  BOOST_TEST(sd.count("bias_hh_l0_reverse") == 1u);
  BOOST_TEST(same(pytorch_layer(sd, 0, true).weight_hh, b.weight_hh));
  BOOST_TEST(same(pytorch_layer(sd, 0, false).bias_ih, f.bias_ih));
  expect_error([&] { pytorch_layer(sd, 1, false); }, {"pytorch_layer", "weight_ih_l1"});
}

// load_weights copies values into a cell's own parameters (the same leaves) and converts dtypes.
BOOST_AUTO_TEST_CASE(load_weights_into_cells) {
  Generator g(7);
  LSTMCell cell(I, H, g, false, Init::glorot, 0.01, DType::f32);
  Tensor before = cell.W_x;
  PyTorchRNNWeights w = torch_w(g, 4, false);
  LSTMWeights imported = lstm_from_pytorch(w);
  load_weights(cell, imported);
  BOOST_TEST(cell.W_x.raw_data() == before.raw_data());
  BOOST_TEST((cell.W_x.dtype() == DType::f32));
  BOOST_TEST(max_abs_diff(cell.W_x, to_xt(imported.W_x)) < 1e-6);
  BOOST_TEST(max_abs_diff(cell.b, to_xt(imported.b)) < 1e-6);

  GRUCell gc(I, H, g, GRUConvention::course, Init::glorot, 0.01, DType::f64);
  GRUWeights gw = gru_from_course({rnd({I, H}, g), rnd({I, H}, g), rnd({I, H}, g), rnd({H, H}, g), rnd({H, H}, g),
                                   rnd({H, H}, g), rnd({H}, g), rnd({H}, g), rnd({H}, g)});
  load_weights(gc, gw);
  BOOST_TEST(same(gc.U_h, gw.U_h));
  BOOST_TEST(same(gc.W_x, gw.W_x));
  RNNCell rc(I, H, g, Activation::tanh, Init::lecun, 0.01, DType::f64);
  RNNWeights rw = rnn_from_pytorch(torch_w(g, 1, false));
  load_weights(rc, rw);
  BOOST_TEST(same(rc.W, rw.W));
  BOOST_TEST(same(rc.b, rw.b));

  // Mismatches.
  expect_error([&] { load_weights(gc, gru_from_pytorch(torch_w(g, 3, false))); }, {"load_weights(GRUCell)", "conventions"});
  LSTMCell peep(I, H, g, true, Init::glorot, 0.01, DType::f64);
  expect_error([&] { load_weights(peep, imported); }, {"load_weights(LSTMCell)", "peepholes"});
  LSTMCell wide(I, H + 1, g, false, Init::glorot, 0.01, DType::f64);
  expect_error([&] { load_weights(wide, imported); }, {"load_weights(LSTMCell)", "W_x", "(3, 16)", "(3, 20)"});
}

BOOST_AUTO_TEST_CASE(bad_inputs) {
  Generator g(8);
  PyTorchRNNWeights w = torch_w(g, 4, false);
  expect_error([&] { gru_from_pytorch(w); }, {"gru_from_pytorch", "(12, 3)", "(16, 3)"});
  PyTorchRNNWeights short_bias = w;
  short_bias.bias_hh = zeros({3 * H}, DType::f64);
  expect_error([&] { lstm_from_pytorch(short_bias); }, {"lstm_from_pytorch", "(12,)"});
  PyTorchRNNWeights vec = w;
  vec.weight_ih = zeros({4 * H}, DType::f64);
  expect_error([&] { lstm_from_pytorch(vec); }, {"lstm_from_pytorch", "weight_ih", "(16,)", "matrices"});
  LSTMCell peep(I, H, g, true, Init::glorot, 0.01, DType::f64);
  expect_error([&] { lstm_to_pytorch(peep.weights()); }, {"lstm_to_pytorch", "peepholes"});
  GRUCell course(I, H, g, GRUConvention::course, Init::glorot, 0.01, DType::f64);
  expect_error([&] { gru_to_pytorch(course.weights()); }, {"gru_to_pytorch", "(4, 8)", "reset_after"});
  GRUCell after(I, H, g, GRUConvention::reset_after, Init::glorot, 0.01, DType::f64);
  expect_error([&] { gru_to_course(after.weights()); }, {"gru_to_course", "(4, 12)", "reset_after"});
  CourseGRUWeights cg{rnd({I, H}, g), rnd({I, H}, g), rnd({I, H + 1}, g), rnd({H, H}, g), rnd({H, H}, g),
                      rnd({H, H}, g), rnd({H}, g),    rnd({H}, g),        rnd({H}, g)};
  expect_error([&] { gru_from_course(cg); }, {"gru_from_course", "W_h", "(3, 5)", "(3, 4)"});
}

BOOST_AUTO_TEST_SUITE_END()
