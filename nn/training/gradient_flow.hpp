// Gradient flow over time: how much of a loss's gradient reaches each step of a recurrence, the measure
// behind the course's vanishing and exploding gradient (勾配消失 / 勾配爆発). For a loss L computed from a
// run of T steps, the report holds ||dL/dh_t|| for every t (and ||dL/dc_t|| for an LSTM's memory cell, the
// constant error carousel): the total derivative through every later step, as backpropagation through time
// carries it. For a simple RNN, dL/dh_t = dL/dh_(t+1) diag(f'(u_(t+1))) W^T, so the norm shrinks (or grows)
// roughly geometrically with the distance T-1-t; an LSTM's dL/dc_t = dL/dc_(t+1) * f_(t+1) + ... keeps it
// when the forget gate is near 1.
//
// Off the training path: the norms come from the functional grad() with the graph retained, so the
// parameters' grad() are untouched and backward(loss) can still follow for the update.
#pragma once

#include <vector>

#include "tapegrad/autograd/tensor.hpp"
#include "tapegrad/nn/models/rnn.hpp"

namespace tapegrad::nn {

// A run that keeps every state: states[t] = (h_t, c_t) after reading x_t (c only for cells with a memory
// cell). The same computation as nn::run (one input projection for all steps, then step_projected), so a
// loss built from `outputs` or `states` has the same value and gradients.
struct TracedSequence {
  Tensor outputs;             // (T, B, H)
  std::vector<State> states;  // T states, in time order
  State last;
};
TracedSequence run_traced(const RecurrentCell& cell, const Tensor& x, const State& s0 = {});

struct GradientFlow {
  std::vector<double> h;  // ||dL/dh_t|| (Frobenius norm over the batch), t = 0 .. T-1
  std::vector<double> c;  // ||dL/dc_t||, for states with a memory cell; empty otherwise
};

// How the norm of a gradient (B, H) is taken: the Frobenius norm over the whole batch, or the mean over
// the batch of each sequence's own norm (each row's).
enum class NormOver { batch, sequence_mean };

// ||dL/dh_t|| (and ||dL/dc_t||) for each state of a run; loss must be a scalar recorded on the current
// graph that the states lead to. A state the loss does not depend on has norm 0.
GradientFlow gradient_norms_over_time(const Tensor& loss, const std::vector<State>& states,
                                      NormOver norm = NormOver::batch);
// The same from nn::run's result (h only: Sequence keeps no c_t; use run_traced for an LSTM's c).
GradientFlow gradient_norms_over_time(const Tensor& loss, const Sequence& seq, NormOver norm = NormOver::batch);

// The mean factor per step by which a norm changes going back in time: exp of the least-squares slope of
// log(norm) against the distance back (T-1-t), over the steps whose norm is positive and finite. < 1:
// vanishing, > 1: exploding, 1: flat. Needs two such steps (Error otherwise).
double decay_per_step(const std::vector<double>& norms);

}  // namespace tapegrad::nn
