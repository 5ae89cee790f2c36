// Recurrent cells, runner, stacked / bidirectional RNNs, truncated BPTT: gradient checks in float64
// (every parameter, the input and the initial state), conformance against ../shared/conformance at
// rtol 1e-9, and bad inputs.
#include <boost/test/unit_test.hpp>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <functional>
#include <string>

#include <tapegrad/nn/models/interchange.hpp>
#include <tapegrad/nn/models/rnn.hpp>

#include "support/conformance.hpp"
#include "support/xt.hpp"

using namespace tapegrad;
using namespace tapegrad::nn;
using namespace tapegrad::test;

namespace {

Tensor rnd(const Shape& s, Generator& g, double std = 0.6) { return parameter(randn(s, g, std, DType::f64)); }

void expect_gradcheck(const Function& f, const std::vector<Tensor>& in, const std::string& what) {
  GradcheckResult r = gradcheck(f, in);
  BOOST_TEST(r.ok, what << ": " << r.message);
  BOOST_TEST(r.checks > 0u, what << ": no comparisons made");
}

// One step's outputs as one tensor: h, or concat(h, c) for LSTM.
Tensor flat_state(const State& s) { return s.c.defined() ? concat({s.h, s.c}, 1) : s.h; }

constexpr std::size_t B = 2, I = 3, H = 4, T = 3;

// Inputs for a bound LSTM: x, h0, c0, W_x, W_h, b, [p_i, p_f, p_o].
std::vector<Tensor> lstm_inputs(Generator& g, bool peep) {
  std::vector<Tensor> v{rnd({B, I}, g), rnd({B, H}, g), rnd({B, H}, g), rnd({I, 4 * H}, g), rnd({H, 4 * H}, g), rnd({4 * H}, g)};
  if (peep) v.insert(v.end(), {rnd({H}, g), rnd({H}, g), rnd({H}, g)});
  return v;
}
LSTMWeights lstm_w(const std::vector<Tensor>& v, std::size_t k) {
  LSTMWeights w{v[k], v[k + 1], v[k + 2], {}, {}, {}};
  if (v.size() >= k + 6) w.p_i = v[k + 3], w.p_f = v[k + 4], w.p_o = v[k + 5];
  return w;
}

// Inputs for a bound GRU: x, h0, W_x, W_h, (U_h | b_hn), b.
std::vector<Tensor> gru_inputs(Generator& g, GRUConvention conv) {
  if (conv == GRUConvention::course)
    return {rnd({B, I}, g), rnd({B, H}, g), rnd({I, 3 * H}, g), rnd({H, 2 * H}, g), rnd({H, H}, g), rnd({3 * H}, g)};
  return {rnd({B, I}, g), rnd({B, H}, g), rnd({I, 3 * H}, g), rnd({H, 3 * H}, g), rnd({H}, g), rnd({3 * H}, g)};
}
GRUWeights gru_w(const std::vector<Tensor>& v, std::size_t k, GRUConvention conv) {
  GRUWeights w;
  w.W_x = v[k], w.W_h = v[k + 1], w.b = v[k + 3], w.convention = conv;
  (conv == GRUConvention::course ? w.U_h : w.b_hn) = v[k + 2];
  return w;
}

}  // namespace

BOOST_AUTO_TEST_SUITE(rnn)

// ---- gradient checks: one step --------------------------------------------------------------------

// Both forms of the Elman step: fused (the op rnn_cell) and composed (f(addmm(...))).
BOOST_AUTO_TEST_CASE(elman_step_gradcheck_each_activation) {
  for (bool fused : {true, false})
    for (Activation a : {Activation::sigmoid, Activation::tanh, Activation::relu}) {
      Generator g(11);
      std::vector<Tensor> in{rnd({B, I}, g), rnd({B, H}, g), rnd({I, H}, g), rnd({H, H}, g), rnd({H}, g)};
      expect_gradcheck(
          [a, fused](const std::vector<Tensor>& v) {
            RNNCell cell({v[2], v[3], v[4]}, a);
            cell.fused = fused;
            return cell.step(v[0], {v[1], {}}).h;
          },
          in, std::string("RNNCell ") + activation_name(a) + (fused ? " fused" : " composed"));
    }
}

// Both forms of the LSTM step: fused (ops/recurrent) and composed from primitive ops.
BOOST_AUTO_TEST_CASE(lstm_step_gradcheck_with_and_without_peepholes) {
  for (bool fused : {true, false})
    for (bool peep : {false, true}) {
      Generator g(12);
      expect_gradcheck(
          [fused](const std::vector<Tensor>& v) {
            LSTMCell cell(lstm_w(v, 3));
            cell.fused = fused;
            return flat_state(cell.step(v[0], {v[1], v[2]}));
          },
          lstm_inputs(g, peep),
          std::string(peep ? "LSTMCell peepholes" : "LSTMCell") + (fused ? " fused" : " composed"));
    }
}

// The output of `forward(fused)` and the gradients of sum(out^2) for every input, for the composed and the
// fused form of a cell: they must agree to rounding (float64).
void expect_fused_equals_composed(std::vector<Tensor>& in, const std::function<Tensor(bool)>& forward,
                                  const std::string& what) {
  std::vector<std::vector<double>> results[2];
  for (bool fused : {false, true}) {
    Tensor out = forward(fused);
    results[fused].push_back(out.to_vector());
    backward(sum(out * out));
    for (auto& t : in) {
      results[fused].push_back(t.grad().to_vector());
      t.zero_grad();
    }
  }
  for (std::size_t k = 0; k < results[0].size(); ++k) {
    BOOST_TEST_REQUIRE(results[0][k].size() == results[1][k].size());
    double worst = 0, scale = 0;
    for (std::size_t j = 0; j < results[0][k].size(); ++j) {
      worst = std::max(worst, std::abs(results[0][k][j] - results[1][k][j]));
      scale = std::max(scale, std::abs(results[0][k][j]));
    }
    BOOST_TEST(worst <= 1e-12 * std::max(1.0, scale), what << ", result " << k << " (0: output): " << worst);
  }
}

// The fused step is an optimisation of the composed one: the same values and gradients over a sequence,
// to rounding (float64), with and without peepholes.
BOOST_AUTO_TEST_CASE(lstm_fused_equals_composed_over_a_sequence) {
  for (bool peep : {false, true}) {
    Generator g(15);
    std::vector<Tensor> in = lstm_inputs(g, peep);
    in[0] = rnd({T, B, I}, g);
    expect_fused_equals_composed(
        in,
        [&in](bool fused) {
          LSTMCell cell(lstm_w(in, 3));
          cell.fused = fused;
          Sequence s = run(cell, in[0], {in[1], in[2]});
          return concat({reshape(s.outputs, {T * B, H}), s.last.c}, 0);
        },
        peep ? "LSTM with peepholes" : "LSTM");
  }
}

// The fused Elman step equals the composed one over a sequence, for each activation, at batch 1 (the
// vector loops and the deferred dW) and B: values and every gradient.
BOOST_AUTO_TEST_CASE(elman_fused_equals_composed_over_a_sequence) {
  for (std::size_t batch : {std::size_t(1), B})
    for (Activation a : {Activation::sigmoid, Activation::tanh, Activation::relu}) {
      Generator g(17);
      std::vector<Tensor> in{rnd({T, batch, I}, g), rnd({batch, 40}, g), rnd({I, 40}, g), rnd({40, 40}, g),
                             rnd({40}, g)};
      expect_fused_equals_composed(
          in,
          [&in, a](bool fused) {
            RNNCell cell({in[2], in[3], in[4]}, a);
            cell.fused = fused;
            return run(cell, in[0], {in[1], {}}).outputs;
          },
          std::string("Elman ") + activation_name(a) + ", B " + std::to_string(batch));
    }
}

// whole_sequence (all steps as the one op rnn_sequence) equals stepping the composed cell: outputs, the
// last state and every gradient, at batch 1 (the loops at H 5, gemv at H 40) and B; and a gradient check.
BOOST_AUTO_TEST_CASE(elman_whole_sequence_equals_stepping) {
  for (std::size_t batch : {std::size_t(1), B})
    for (std::size_t width : {std::size_t(5), std::size_t(40)})
      for (Activation a : {Activation::sigmoid, Activation::tanh, Activation::relu}) {
        Generator g(18);
        std::vector<Tensor> in{rnd({T, batch, I}, g), rnd({batch, width}, g), rnd({I, width}, g),
                               rnd({width, width}, g), rnd({width}, g)};
        expect_fused_equals_composed(
            in,
            [&in, a](bool whole) {
              RNNCell cell({in[2], in[3], in[4]}, a);
              cell.fused = whole;
              cell.whole_sequence = whole;
              const Sequence s = run(cell, in[0], {in[1], {}});
              return s.outputs * 2.0 + reshape(s.last.h, {1, s.last.h.size(0), s.last.h.size(1)}) +
                     reshape(s.steps[1], {1, s.steps[1].size(0), s.steps[1].size(1)});
            },
            std::string("Elman whole sequence ") + activation_name(a) + ", B " + std::to_string(batch) + ", H " +
                std::to_string(width));
      }
  Generator g(23);
  std::vector<Tensor> in{rnd({T, B, I}, g), rnd({B, H}, g), rnd({I, H}, g), rnd({H, H}, g), rnd({H}, g)};
  expect_gradcheck(
      [](const std::vector<Tensor>& v) {
        RNNCell cell({v[2], v[3], v[4]});
        cell.whole_sequence = true;
        return run(cell, v[0], {v[1], {}}).outputs;
      },
      in, "run RNNCell whole_sequence");
}

// reset_after in both forms: fused (gru_cell) and composed.
BOOST_AUTO_TEST_CASE(gru_step_gradcheck_both_conventions) {
  for (GRUConvention conv : {GRUConvention::course, GRUConvention::reset_after})
    for (bool fused : {true, false}) {
      if (conv == GRUConvention::course && fused) continue;  // the course convention has one form
      Generator g(13);
      expect_gradcheck(
          [conv, fused](const std::vector<Tensor>& v) {
            GRUCell cell(gru_w(v, 2, conv));
            cell.fused = fused;
            return cell.step(v[0], {v[1], {}}).h;
          },
          gru_inputs(g, conv),
          conv == GRUConvention::course ? "GRUCell course" : fused ? "GRUCell reset_after fused" : "GRUCell reset_after composed");
    }
}

// The fused reset_after step equals the composed one over a sequence: values and every gradient.
BOOST_AUTO_TEST_CASE(gru_fused_equals_composed_over_a_sequence) {
  Generator g(16);
  std::vector<Tensor> in = gru_inputs(g, GRUConvention::reset_after);  // x, h0, W_x, W_h, b_hn, b
  in[0] = rnd({T, B, I}, g);
  expect_fused_equals_composed(
      in,
      [&in](bool fused) {
        GRUCell cell(gru_w(in, 2, GRUConvention::reset_after));
        cell.fused = fused;
        return reshape(run(cell, in[0], {in[1], {}}).outputs, {T * B, H});
      },
      "GRU reset_after");
}

// A cell that owns its parameters computes what the same weights bound compute, and its parameters are
// the ones that receive gradients.
BOOST_AUTO_TEST_CASE(owned_cells_match_bound_cells_and_get_gradients) {
  Generator g(14);
  LSTMCell owned(I, H, g, true, Init::glorot, 0.01, DType::f64);
  BOOST_TEST(owned.named_parameters().size() == 6u);
  BOOST_TEST(owned.b.at({H}) == 1.0);  // forget-gate bias
  BOOST_TEST(owned.b.at({0}) == 0.0);
  LSTMCell bound(owned.weights());
  BOOST_TEST(bound.parameters().empty());
  Tensor x = randn({B, I}, g, 1.0, DType::f64);
  State s0 = owned.initial_state(B);
  BOOST_TEST(max_abs_diff(owned.step(x, s0).h, to_xt(bound.step(x, s0).h)) == 0.0);
  backward(sum(owned.step(x, s0).h));
  for (auto& [name, p] : owned.named_parameters()) BOOST_TEST(p.grad().defined(), name);

  GRUCell gc(I, H, g, GRUConvention::course, Init::orthogonal, 0.01, DType::f64);
  GRUCell gr(I, H, g, GRUConvention::reset_after, Init::he, 0.01, DType::f64);
  BOOST_TEST(gc.named_parameters().size() == 4u);
  BOOST_TEST(gr.named_parameters().size() == 4u);
  BOOST_TEST(gc.U_h.shape() == (Shape{H, H}));
  BOOST_TEST(gr.b_hn.shape() == (Shape{H}));
  RNNCell rc(I, H, g, Activation::relu, Init::normal, 0.5, DType::f64);
  BOOST_TEST(rc.named_parameters().size() == 3u);
  BOOST_TEST((rc.dtype() == DType::f64));
}

// ---- gradient checks: sequences -------------------------------------------------------------------

BOOST_AUTO_TEST_CASE(run_gradcheck_forward_and_reversed) {
  for (bool reverse : {false, true}) {
    Generator g(21);
    // x (T,B,I), h0, c0, W_x, W_h, b, p_i, p_f, p_o
    std::vector<Tensor> in = lstm_inputs(g, true);
    in[0] = rnd({T, B, I}, g);
    for (bool fused : {true, false})
      expect_gradcheck(
          [reverse, fused](const std::vector<Tensor>& v) {
            LSTMCell cell(lstm_w(v, 3));
            cell.fused = fused;
            Sequence s = run(cell, v[0], {v[1], v[2]}, reverse);
            return concat({reshape(s.outputs, {T * B, H}), s.last.c}, 0);
          },
          in, std::string(reverse ? "run LSTM reversed" : "run LSTM") + (fused ? " fused" : " composed"));
  }
  Generator g(22);
  std::vector<Tensor> in{rnd({T, B, I}, g), rnd({B, H}, g), rnd({I, H}, g), rnd({H, H}, g), rnd({H}, g)};
  expect_gradcheck(
      [](const std::vector<Tensor>& v) { return run(RNNCell({v[2], v[3], v[4]}), v[0], {v[1], {}}).outputs; }, in,
      "run RNNCell");
}

BOOST_AUTO_TEST_CASE(bidirectional_gradcheck) {
  Generator g(23);
  // x, then a course GRU (forward) and a reset_after GRU (backward): W_x, W_h, U_h|b_hn, b each; h0 of both.
  std::vector<Tensor> in{rnd({T, B, I}, g)};
  for (auto conv : {GRUConvention::course, GRUConvention::reset_after}) {
    auto v = gru_inputs(g, conv);
    in.insert(in.end(), v.begin() + 1, v.end());  // h0, W_x, W_h, U_h|b_hn, b
  }
  expect_gradcheck(
      [](const std::vector<Tensor>& v) {
        Bidirectional bi(std::make_unique<GRUCell>(gru_w(v, 2, GRUConvention::course)),
                         std::make_unique<GRUCell>(gru_w(v, 7, GRUConvention::reset_after)));
        return bi(v[0], {v[1], {}}, {v[6], {}}).outputs;
      },
      in, "Bidirectional GRU");
}

BOOST_AUTO_TEST_CASE(stacked_gradcheck) {
  Generator g(24);
  // x, LSTM layer (I -> H) weights, Elman layer (H -> 3) weights; zero initial states.
  std::vector<Tensor> in{rnd({T, B, I}, g), rnd({I, 4 * H}, g), rnd({H, 4 * H}, g), rnd({4 * H}, g),
                         rnd({H, 3}, g), rnd({3, 3}, g), rnd({3}, g)};
  expect_gradcheck(
      [](const std::vector<Tensor>& v) {
        StackedRNN net;
        net.emplace<LSTMCell>(LSTMWeights{v[1], v[2], v[3], {}, {}, {}});
        net.emplace<RNNCell>(RNNWeights{v[4], v[5], v[6]}, Activation::tanh);
        auto r = net(v[0]);
        BOOST_TEST(r.last.size() == 2u);
        return r.outputs;
      },
      in, "StackedRNN LSTM+Elman");
}

BOOST_AUTO_TEST_CASE(elman_model_gradcheck) {
  Generator g(25);
  ElmanRNN model(I, H, 2, g, Activation::tanh, Activation::sigmoid, Init::lecun, 0.01, DType::f64);
  BOOST_TEST(model.named_parameters().size() == 5u);
  BOOST_TEST(model.named_parameters()[3].first == "out.W");
  // The model's own parameters are the gradcheck's inputs (gradcheck perturbs them in place).
  std::vector<Tensor> in = model.parameters();
  in.push_back(rnd({T, B, I}, g));
  in.push_back(rnd({B, H}, g));
  expect_gradcheck([&model](const std::vector<Tensor>& v) { return model(v[5], {v[6], {}}).y; }, in, "ElmanRNN");
}

// ---- conformance ----------------------------------------------------------------------------------

namespace {
// Both forms of the step: fused (rnn_cell) and composed.
// Each way of running the cell: a fused rnn_cell per step, composed ops per step, all steps as the one op
// rnn_sequence (RNNCell::whole_sequence), and run_checkpointed (segments of 2 steps recomputed in backward).
void elman_case(const char* name, Activation a) {
  for (const char* how : {"fused", "composed", "whole sequence", "checkpointed"}) {
    auto c = load_case(name);
    const auto& in = c.in;
    RNNCell cell({in.at("W_in"), in.at("W"), in.at("b")}, a);
    cell.fused = std::string(how) != "composed";
    cell.whole_sequence = std::string(how) == "whole sequence";
    Sequence seq = std::string(how) == "checkpointed" ? run_checkpointed(cell, in.at("x"), {in.at("z0"), {}}, 2)
                                                      : run(cell, in.at("x"), {in.at("z0"), {}});
    Tensor y = sigmoid(matmul(seq.outputs, in.at("W_out")) + in.at("c"));  // y_t = sigmoid(z_t W_out + c)
    BOOST_TEST(check_case(c, {{"y", y}, {"z", seq.outputs}}).ok(), name << " " << how);
  }
}
}  // namespace

BOOST_AUTO_TEST_CASE(conformance_elman_sigmoid_seq) { elman_case("elman_sigmoid_seq", Activation::sigmoid); }
BOOST_AUTO_TEST_CASE(conformance_elman_tanh_seq) { elman_case("elman_tanh_seq", Activation::tanh); }
BOOST_AUTO_TEST_CASE(conformance_elman_relu_seq) { elman_case("elman_relu_seq", Activation::relu); }

// The ElmanRNN model with the case's values copied into its parameters: same outputs, and its
// parameters' gradients equal grad_*.
BOOST_AUTO_TEST_CASE(conformance_elman_model) {
  auto c = load_case("elman_sigmoid_seq");
  const auto& in = c.in;
  Generator g(0);
  ElmanRNN model(in.at("W_in").size(0), in.at("W").size(0), in.at("W_out").size(1), g, Activation::sigmoid,
                 Activation::sigmoid, Init::lecun, 0.01, DType::f64);
  load_weights(model.cell, {in.at("W_in"), in.at("W"), in.at("b")});
  std::memcpy(model.out.W.raw_data(), in.at("W_out").raw_data(), in.at("W_out").numel() * 8);
  std::memcpy(model.out.b.raw_data(), in.at("c").raw_data(), in.at("c").numel() * 8);
  auto r = model(in.at("x"), {in.at("z0"), {}});
  Agreement agg;
  close(r.y, c.out.at("y"), "model y", agg);
  close(r.z, c.out.at("z"), "model z", agg);
  backward(sum(r.y * c.dout.at("y")) + sum(r.z * c.dout.at("z")));
  close(model.cell.W_in.grad(), c.grad.at("W_in"), "model grad W_in", agg);
  close(model.cell.W.grad(), c.grad.at("W"), "model grad W", agg);
  close(model.cell.b.grad(), c.grad.at("b"), "model grad b", agg);
  close(model.out.W.grad(), c.grad.at("W_out"), "model grad W_out", agg);
  close(model.out.b.grad(), c.grad.at("c"), "model grad c", agg);
  close(in.at("x").grad(), c.grad.at("x"), "model grad x", agg);
  close(in.at("z0").grad(), c.grad.at("z0"), "model grad z0", agg);
  BOOST_TEST_MESSAGE("conformance elman model: worst relative error " << agg.worst_rel << " (" << agg.where << ")");
  BOOST_TEST(agg.ok());
}

// The LSTM cases run for both forms of the step, fused and composed.
BOOST_AUTO_TEST_CASE(conformance_lstm_cell) {
  for (bool fused : {true, false}) {
    auto c = load_case("lstm_cell");
    const auto& in = c.in;
    // Imported through ops: the gradients reach W_ih, W_hh, b_ih, b_hh in PyTorch's layout.
    LSTMCell cell(lstm_from_pytorch({in.at("W_ih"), in.at("W_hh"), in.at("b_ih"), in.at("b_hh")}));
    cell.fused = fused;
    State s = cell.step(in.at("x"), {in.at("h0"), in.at("c0")});
    BOOST_TEST(check_case(c, {{"h1", s.h}, {"c1", s.c}}).ok(), (fused ? "fused" : "composed"));
  }
}

BOOST_AUTO_TEST_CASE(conformance_lstm_peephole_cell) {
  for (bool fused : {true, false}) {
    auto c = load_case("lstm_peephole_cell");
    const auto& in = c.in;
    LSTMWeights w = lstm_from_pytorch({in.at("W_ih"), in.at("W_hh"), in.at("b"), zeros_like(in.at("b"))});
    w.p_i = in.at("p_i"), w.p_f = in.at("p_f"), w.p_o = in.at("p_o");
    LSTMCell cell(w);
    cell.fused = fused;
    BOOST_TEST(cell.peepholes());
    State s = cell.step(in.at("x"), {in.at("h0"), in.at("c0")});
    BOOST_TEST(check_case(c, {{"h1", s.h}, {"c1", s.c}}).ok(), (fused ? "fused" : "composed"));
  }
}

BOOST_AUTO_TEST_CASE(conformance_gru_cell) {
  for (bool fused : {true, false}) {
    auto c = load_case("gru_cell");
    const auto& in = c.in;
    GRUCell cell(gru_from_pytorch({in.at("W_ih"), in.at("W_hh"), in.at("b_ih"), in.at("b_hh")}));
    cell.fused = fused;
    BOOST_TEST((cell.convention == GRUConvention::reset_after));
    State s = cell.step(in.at("x"), {in.at("h0"), {}});
    BOOST_TEST(check_case(c, {{"h1", s.h}}).ok(), (fused ? "fused" : "composed"));
  }
}

BOOST_AUTO_TEST_CASE(conformance_gru_cell_reset_before) {
  auto c = load_case("gru_cell_reset_before");
  const auto& in = c.in;
  GRUCell cell(gru_from_course({in.at("W_r"), in.at("W_z"), in.at("W_h"), in.at("U_r"), in.at("U_z"), in.at("U_h"),
                                in.at("b_r"), in.at("b_z"), in.at("b_h")}));
  BOOST_TEST((cell.convention == GRUConvention::course));
  State s = cell.step(in.at("x"), {in.at("h0"), {}});
  BOOST_TEST(check_case(c, {{"h1", s.h}}).ok());
}

BOOST_AUTO_TEST_CASE(conformance_bilstm_seq) {
  for (bool fused : {true, false}) {
    auto c = load_case("bilstm_seq");
    auto fwd = std::make_unique<LSTMCell>(lstm_from_pytorch(pytorch_layer(c.in, 0, false)));
    auto bwd = std::make_unique<LSTMCell>(lstm_from_pytorch(pytorch_layer(c.in, 0, true)));
    fwd->fused = bwd->fused = fused;
    Bidirectional bi(std::move(fwd), std::move(bwd));
    BOOST_TEST(check_case(c, {{"out", bi(c.in.at("x")).outputs}}).ok(), (fused ? "fused" : "composed"));
  }
}

BOOST_AUTO_TEST_CASE(conformance_bigru_seq) {
  for (bool fused : {true, false}) {
    auto c = load_case("bigru_seq");
    auto fwd = std::make_unique<GRUCell>(gru_from_pytorch(pytorch_layer(c.in, 0, false)));
    auto bwd = std::make_unique<GRUCell>(gru_from_pytorch(pytorch_layer(c.in, 0, true)));
    fwd->fused = bwd->fused = fused;
    Bidirectional bi(std::move(fwd), std::move(bwd));
    BOOST_TEST(check_case(c, {{"out", bi(c.in.at("x")).outputs}}).ok(), (fused ? "fused" : "composed"));
  }
}

// ---- runner semantics -----------------------------------------------------------------------------

BOOST_AUTO_TEST_CASE(run_equals_stepping_by_hand) {
  Generator g(31);
  GRUCell cell(I, H, g, GRUConvention::course, Init::glorot, 0.01, DType::f64);
  Tensor x = randn({T, B, I}, g, 1.0, DType::f64);
  NoGrad no_grad;
  Sequence fwd = run(cell, x), rev = run(cell, x, {}, true);
  BOOST_TEST(fwd.outputs.shape() == (Shape{T, B, H}));
  BOOST_TEST(fwd.steps.size() == T);
  State s = cell.initial_state(B), r = cell.initial_state(B);
  for (std::size_t t = 0; t < T; ++t) {
    s = cell.step(reshape(slice(x, 0, t, t + 1), {B, I}), s);
    BOOST_TEST(max_abs_diff(fwd.steps[t], to_xt(s.h)) < 1e-14);
    BOOST_TEST(max_abs_diff(reshape(slice(fwd.outputs, 0, t, t + 1), {B, H}), to_xt(s.h)) < 1e-14);
    const std::size_t u = T - 1 - t;
    r = cell.step(reshape(slice(x, 0, u, u + 1), {B, I}), r);
    BOOST_TEST(max_abs_diff(rev.steps[u], to_xt(r.h)) < 1e-14);
  }
  BOOST_TEST(max_abs_diff(fwd.last.h, to_xt(s.h)) < 1e-14);
  BOOST_TEST(max_abs_diff(rev.last.h, to_xt(r.h)) < 1e-14);
}

BOOST_AUTO_TEST_CASE(bidirectional_is_concat_of_forward_and_realigned_backward) {
  Generator g(32);
  auto f = std::make_unique<LSTMCell>(I, H, g, false, Init::glorot, 0.01, DType::f64);
  auto b = std::make_unique<RNNCell>(I, 2, g, Activation::tanh, Init::lecun, 0.01, DType::f64);
  LSTMCell& fc = *f;
  RNNCell& bc = *b;
  Bidirectional bi(std::move(f), std::move(b));
  BOOST_TEST(bi.named_parameters().size() == 6u);
  BOOST_TEST(bi.named_parameters()[3].first == "backward.W_in");
  Tensor x = randn({T, B, I}, g, 1.0, DType::f64);
  NoGrad no_grad;
  auto out = bi(x).outputs;
  BOOST_TEST(out.shape() == (Shape{T, B, H + 2}));
  Tensor hb = flip(run(bc, flip(x, 0)).outputs, 0);  // the course's h_b[::-1]
  BOOST_TEST(max_abs_diff(out, to_xt(concat({run(fc, x).outputs, hb}, 2))) < 1e-14);
}

BOOST_AUTO_TEST_CASE(stacked_layers_feed_each_other) {
  Generator g(33);
  StackedRNN net;
  net.emplace<LSTMCell>(I, H, g, false, Init::glorot, 0.01, DType::f64);
  net.emplace<GRUCell>(H, 5, g, GRUConvention::course, Init::glorot, 0.01, DType::f64);
  BOOST_TEST(net.num_layers() == 2u);
  BOOST_TEST(net.named_parameters()[3].first == "layer1.W_x");
  Tensor x = randn({T, B, I}, g, 1.0, DType::f64);
  NoGrad no_grad;
  auto r = net(x);
  BOOST_TEST(r.outputs.shape() == (Shape{T, B, 5}));
  Sequence l0 = run(net.layer(0), x);
  Sequence l1 = run(net.layer(1), l0.outputs);
  BOOST_TEST(max_abs_diff(r.outputs, to_xt(l1.outputs)) < 1e-14);
  BOOST_TEST(max_abs_diff(r.last[0].c, to_xt(l0.last.c)) < 1e-14);
  // Explicit initial states are used.
  auto s0 = net.initial_states(B);
  s0[1].h = full({B, 5}, 0.3, DType::f64);
  BOOST_TEST(max_abs_diff(net(x, s0).outputs, to_xt(r.outputs)) > 1e-6);
}

// ---- truncated BPTT -------------------------------------------------------------------------------

// The forward values are those of the full run; gradients stop at the window's start.
BOOST_AUTO_TEST_CASE(truncated_bptt_cuts_gradients_between_windows) {
  Generator g(41);
  const std::size_t TT = 7, k = 3;
  LSTMCell cell(I, H, g, true, Init::glorot, 0.01, DType::f64);
  Tensor x = rnd({TT, B, I}, g);
  Sequence full_run;
  {
    NoGrad no_grad;
    full_run = run(cell, x);
  }
  std::vector<std::size_t> begins, ends;
  TruncatedBPTT tbptt(cell, k);
  State last = tbptt.run(x, {}, [&](const TruncatedBPTT::Window& w) {
    begins.push_back(w.begin);
    ends.push_back(w.end);
    BOOST_TEST(w.seq.outputs.shape() == (Shape{w.end - w.begin, B, H}));
    BOOST_TEST(max_abs_diff(w.seq.outputs, to_xt(slice(full_run.outputs, 0, w.begin, w.end))) < 1e-14);
    x.zero_grad();
    backward(sum(w.seq.outputs));
    // Gradients reach x only inside this window.
    const auto gx = to_xt(x.grad());
    for (std::size_t t = 0; t < TT; ++t) {
      double m = 0;
      for (std::size_t j = 0; j < B * I; ++j) m = std::max(m, std::abs(gx.flat(t * B * I + j)));
      if (t >= w.begin && t < w.end) BOOST_TEST(m > 0.0, "window " << w.index << " t " << t);
      else BOOST_TEST(m == 0.0, "window " << w.index << " t " << t);
    }
  });
  BOOST_TEST(begins == (std::vector<std::size_t>{0, 3, 6}));
  BOOST_TEST(ends == (std::vector<std::size_t>{3, 6, 7}));
  BOOST_TEST(last.h.is_leaf());
  BOOST_TEST(max_abs_diff(last.h, to_xt(full_run.last.h)) < 1e-14);
  BOOST_TEST(max_abs_diff(last.c, to_xt(full_run.last.c)) < 1e-14);
}

// A short training loop: truncated BPTT with plain SGD lowers the loss of an Elman RNN that must echo
// its input one step late.
BOOST_AUTO_TEST_CASE(truncated_bptt_trains) {
  Generator g(42);
  const std::size_t TT = 40, Bn = 4;
  ElmanRNN model(1, 8, 1, g, Activation::tanh, Activation::sigmoid, Init::lecun, 0.01, DType::f64);
  Tensor x = bernoulli_mask({TT, Bn, 1}, 0.5, g, DType::f64);
  Tensor d = pad(slice(x, 0, 0, TT - 1), 0, 1, 0);  // d_t = x_(t-1)
  TruncatedBPTT tbptt(model.cell, 8);
  auto epoch = [&](bool update) {
    double total = 0;
    tbptt.run(x, {}, [&](const TruncatedBPTT::Window& w) {
      Tensor y = sigmoid(model.out(w.seq.outputs));
      Tensor loss = mse_loss(y, slice(d, 0, w.begin, w.end), Reduction::mean);
      total += loss.item();
      if (!update) return;
      backward(loss);
      for (Tensor p : model.parameters()) {
        double* v = p.data<double>();
        const double* gp = p.grad().data<double>();
        for (std::size_t i = 0; i < p.numel(); ++i) v[i] -= 2.0 * gp[i];
      }
      model.zero_grad();
    });
    return total;
  };
  const double before = epoch(false);
  for (int e = 0; e < 60; ++e) epoch(true);
  const double after = epoch(false);
  BOOST_TEST_MESSAGE("truncated BPTT echo task: loss " << before << " -> " << after);
  BOOST_TEST(after < 0.5 * before);
}

// ---- bad inputs -----------------------------------------------------------------------------------

BOOST_AUTO_TEST_CASE(bad_inputs_raise_errors_naming_the_cell_and_shapes) {
  Generator g(51);
  LSTMCell lstm(I, H, g, false, Init::glorot, 0.01, DType::f64);
  GRUCell gru(I, H, g, GRUConvention::course, Init::glorot, 0.01, DType::f64);
  RNNCell elman(I, H, g, Activation::tanh, Init::lecun, 0.01, DType::f64);
  const Tensor x = zeros({B, I}, DType::f64), h = zeros({B, H}, DType::f64);
  // step: wrong input width, wrong rank, wrong state shapes, missing c, c on a cell without one.
  expect_error([&] { lstm.step(zeros({B, I + 1}, DType::f64), {h, h}); }, {"LSTMCell", "(2, 4)", "I = 3"});
  expect_error([&] { gru.step(zeros({T, B, I}, DType::f64), {h, {}}); }, {"GRUCell", "(3, 2, 3)"});
  expect_error([&] { lstm.step(x, {zeros({B, H + 1}, DType::f64), h}); }, {"LSTMCell", "state h", "(2, 5)", "(2, 4)"});
  expect_error([&] { lstm.step(x, {h, {}}); }, {"LSTMCell", "state c", "(undefined)"});
  expect_error([&] { lstm.step(x, {h, zeros({B + 1, H}, DType::f64)}); }, {"LSTMCell", "state c", "(3, 4)"});
  expect_error([&] { elman.step(x, {h, h}); }, {"RNNCell", "no memory cell", "(2, 4)"});
  expect_error([&] { elman.step(x, {zeros({H}, DType::f64), {}}); }, {"RNNCell", "state h", "(4,)"});
  expect_error([&] { elman.step(x, {zeros({B, H}, DType::f32), {}}); }, {"RNNCell", "float"});
  // run: empty sequence, wrong rank, wrong width, batch mismatch with the state.
  expect_error([&] { run(lstm, zeros({0, B, I}, DType::f64)); }, {"LSTMCell", "T = 0", "(0, 2, 3)"});
  expect_error([&] { run(gru, x); }, {"GRUCell", "(2, 3)", "(T, B, I)"});
  expect_error([&] { run(elman, zeros({T, B, I + 2}, DType::f64)); }, {"RNNCell", "(3, 2, 5)", "I = 5"});
  expect_error([&] { run(gru, zeros({T, B + 1, I}, DType::f64), {h, {}}); }, {"GRUCell", "state h", "(3, 4)"});
  // Stacked and bidirectional: sizes that do not chain.
  StackedRNN net;
  net.emplace<LSTMCell>(I, H, g, false, Init::glorot, 0.01, DType::f64);
  expect_error([&] { net.emplace<GRUCell>(H + 1, H, g, GRUConvention::course, Init::glorot, 0.01, DType::f64); },
               {"StackedRNN", "GRUCell", "I = 5", "H = 4"});
  expect_error([&] { net(zeros({T, B, I}, DType::f64), {State{}, State{}}); }, {"StackedRNN", "2 initial states", "1 layers"});
  expect_error([&] { StackedRNN empty; empty(zeros({T, B, I}, DType::f64)); }, {"StackedRNN", "no layers"});
  expect_error(
      [&] {
        Bidirectional bi(std::make_unique<LSTMCell>(I, H, g, false, Init::glorot, 0.01, DType::f64),
                         std::make_unique<GRUCell>(I + 1, H, g, GRUConvention::course, Init::glorot, 0.01, DType::f64));
      },
      {"Bidirectional", "LSTMCell", "GRUCell", "I = 4"});
  // Truncated BPTT: no window, no steps.
  expect_error([&] { TruncatedBPTT t(lstm, 0); }, {"TruncatedBPTT", "LSTMCell", "window"});
  expect_error([&] { TruncatedBPTT(lstm, 2).run(zeros({0, B, I}, DType::f64), {}, {}); }, {"TruncatedBPTT", "T = 0"});
  // Bound weights of the wrong shapes.
  expect_error([&] { LSTMCell c({zeros({I, 3 * H}, DType::f64), zeros({H, 4 * H}, DType::f64), zeros({4 * H}, DType::f64), {}, {}, {}}); },
               {"LSTMCell", "W_x", "(3, 12)", "(3, 16)"});
  expect_error([&] { LSTMCell c({zeros({I, 4 * H}, DType::f64), zeros({H, 4 * H}, DType::f64), zeros({4 * H}, DType::f64), zeros({H}, DType::f64), {}, {}}); },
               {"LSTMCell", "peepholes"});
  expect_error([&] { RNNCell c({zeros({I, H}, DType::f64), zeros({H, H}, DType::f64), zeros({H + 1}, DType::f64)}); },
               {"RNNCell", "b", "(5,)", "(4,)"});
  GRUWeights bad = gru.weights();
  bad.convention = GRUConvention::reset_after;
  expect_error([&] { GRUCell c(bad); }, {"GRUCell", "reset_after", "(4, 8)", "(4, 12)"});
  bad = gru.weights();
  bad.b_hn = zeros({H}, DType::f64);
  expect_error([&] { GRUCell c(bad); }, {"GRUCell", "b_hn", "course"});
  expect_error([&] { LSTMCell c({zeros({I, 4 * H}, DType::f64), zeros({H, 4 * H}, DType::f32), zeros({4 * H}, DType::f32), {}, {}, {}}); },
               {"LSTMCell", "W_x", "float64"});
}

BOOST_AUTO_TEST_SUITE_END()
