// Automatic operation batching: write the model for one example, run a minibatch of them batched.
//
//   std::vector<Tensor> losses = autobatch::map(trees.size(), [&](std::size_t i) { return model.loss(trees[i]); });
//
// Each example runs as a task (a fiber on this thread) with ordinary eager semantics: an op returns its
// value, so per-example code may read values, branch on them and stop when it likes. An op that has a
// batching rule suspends its task instead of running; when no task can go on, the scheduler takes the
// op most tasks wait on and runs each group of its calls with the same signature (op, the attributes
// that change the result, the shapes of the per-example inputs, the identity of shared inputs) as one op
// on stacked inputs, recorded on the tape like any op; each task gets a view of its row of the result
// and goes on. Backward needs nothing new: it sweeps the batched ops, and the views' gradients are rows of
// the batched output's. Ops without a rule run in their task at once, unbatched, and are counted
// (stats()). Design, rules and limits: docs/autobatching.md.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <initializer_list>
#include <map>
#include <string>
#include <type_traits>
#include <vector>

#include "tapegrad/autograd/tensor.hpp"

namespace tapegrad {

struct OpInfo;

namespace autobatch {

namespace detail {
struct Task;
class Scheduler;
inline thread_local Task* current_task = nullptr;
void run(std::size_t n, const std::function<void(std::size_t)>& body);
}  // namespace detail

// True inside an example's task (ops with a rule wait there for their batch).
inline bool in_task() { return detail::current_task != nullptr; }

// Runs f(i) for i in [0, n), each call as a task, its ops batched with the other tasks' ops; returns the
// results in order. An exception in any task ends every task (each is unwound at the op it waits on)
// and is rethrown here, the first one if several threw. Inside a task, a map makes child tasks that
// batch with every other task, and the calling task waits for them: how one example exposes work that
// does not depend on itself (the nodes of one level of a tree).
template <class F> auto map(std::size_t n, F&& f) {
  using R = std::decay_t<std::invoke_result_t<F&, std::size_t>>;
  std::vector<R> out(n);
  detail::run(n, [&](std::size_t i) { out[i] = f(i); });
  return out;
}
template <class F> void for_each(std::size_t n, F&& f) {
  detail::run(n, [&](std::size_t i) { f(i); });
}
// Library code that may run both ways: f(i) as child tasks inside a task, a plain loop otherwise (eager
// code stays eager). nn::RecursiveNN and nn::TreeLSTM fork each level of a tree.
template <class F> void fork(std::size_t n, F&& f) {
  if (in_task()) return for_each(n, std::forward<F>(f));
  for (std::size_t i = 0; i < n; ++i) f(i);
}

// What batched and what did not, by op name, since the last reset_stats() (this thread's).
struct OpStats {
  std::size_t batches = 0;  // batched calls of the op formed
  std::size_t batched = 0;  // calls that ran in them
  std::size_t alone = 0;    // calls with a rule that found no partner (a group of one, or a batch that failed)
  std::size_t no_rule = 0;  // calls of an op without a batching rule, run in their task
  std::size_t largest = 0;  // the largest batch
};
struct Stats {
  std::size_t maps = 0, tasks = 0;
  std::size_t gathers = 0;  // batched inputs that had to be copied together (the rest were views)
  std::map<std::string, OpStats> ops;
  std::size_t batches() const;
  std::size_t batched() const;
  std::size_t unbatched() const;  // alone + no_rule, all ops
  std::string table() const;      // one line per op: batches, calls per batch, alone, no rule
};
const Stats& stats();  // up to date at each call; references into it stay valid until reset_stats()
void reset_stats();

// ----- For op authors: a batching rule, and the op's first lines -----
//
//   Tensor linear(const Tensor& x, const Tensor& W, const Tensor& b) {
//     if (autobatch::in_task()) if (Tensor y = autobatch::defer(linear_rule, {&x, &W, &b}); y.defined()) return y;
//     ...the eager op...
//
// defer() suspends the task until its call ran in a batch, and returns this call's row of the result;
// it returns an undefined tensor when the call is to run alone, and the op then goes on eagerly.
// key: the attributes that change the result (an axis, a scalar as key_of(double), an activation):
// calls batch only with equal keys. payload: what differs per call but may still batch (a list of ids);
// the rule reads each call's through Group::payload(i).

// One batched call: n calls of an op with equal signatures.
class Group {
 public:
  std::size_t size() const { return n_; }
  std::size_t num_inputs() const { return in_.size(); }  // of every call (equal signatures)
  // Input j: a shared input (a parameter, or a value made before the map) as the calls passed it; a
  // per-example input as the calls' values stacked on a new leading axis, (n, ...): a view when they are
  // consecutive rows of one value, else copied together (on first use: a rule may not need it).
  const Tensor& in(std::size_t j) const;
  // Call i's own input j, as it passed it (for a rule that arranges the calls' values itself).
  const Tensor& call_input(std::size_t i, std::size_t j) const { return *call_inputs_[i][j]; }
  bool shared(std::size_t j) const { return shared_[j] != 0; }
  std::size_t num_keys() const { return num_keys_; }
  std::int64_t key(std::size_t k) const { return key_[k]; }
  double key_double(std::size_t k) const;
  const void* payload(std::size_t i) const { return payloads_[i]; }

 private:
  friend class detail::Scheduler;
  std::size_t n_ = 0;
  mutable std::vector<Tensor> in_;
  std::vector<const Tensor* const*> call_inputs_;
  const std::uint8_t* shared_ = nullptr;
  const std::int64_t* key_ = nullptr;
  std::size_t num_keys_ = 0;
  std::vector<const void*> payloads_;
};

// A rule: how n calls run as one. run returns the stacked result, (n, ...one call's output), or an
// undefined tensor when this combination of shared and per-example inputs has no batched form (then
// the calls run alone).
struct Rule {
  const OpInfo* op;
  Tensor (*run)(const Group& group);
};

// The key's words: a braced list ({axis, start}) or an array the op filled (a target shape). Copied:
// at most 2 + Shape::max_rank words (a reduction's flags and axes).
struct Key {
  static constexpr std::size_t capacity = 2 + Shape::max_rank;
  std::int64_t words[capacity];  // the first `size` are set
  std::size_t size = 0;
  Key() = default;
  Key(std::initializer_list<std::int64_t> l) : Key(l.begin(), l.size()) {}
  Key(const std::int64_t* w, std::size_t n);  // throws past capacity
};

Tensor defer(const Rule& rule, std::initializer_list<const Tensor*> inputs, const Key& key = {}, const void* payload = nullptr);
Tensor defer(const Rule& rule, const std::vector<Tensor>& inputs, const Key& key = {}, const void* payload = nullptr);
std::int64_t key_of(double v);  // a double's bits, as a key word

// Every op that has a rule (the op table checks that each of them forms batches).
const std::vector<const Rule*>& rules();
namespace detail {
struct RuleRegistrar {
  explicit RuleRegistrar(const Rule* rule);
};
}  // namespace detail
// Declares a rule for a registered op: TAPEGRAD_BATCH_RULE(linear_rule, op_linear, [](const Group& g) {...});
#define TAPEGRAD_BATCH_RULE(var, op, ...)                           \
  static const ::tapegrad::autobatch::Rule var{&op, __VA_ARGS__};   \
  static const ::tapegrad::autobatch::detail::RuleRegistrar var##_registrar { &var }

namespace detail {
// An op's call into defer, kept out of the op's own code: the eager path (every op, every time) then
// compiles as if autobatching did not exist, but for the one test of in_task().
template <class F> [[gnu::noinline, gnu::cold]] Tensor out_of_line(F&& f) { return f(); }
// Called by OpCall for every op that runs eagerly inside a task: counts it as alone or without a rule.
void count_eager(const OpInfo& op);
// An op about to run in its task by choice (a view: cheaper than a batch): not counted.
void run_in_place(const OpInfo& op);
// From ops/ (the core names no op): per-example values stacked on a new leading axis (a view when they
// are already consecutive rows of one value), and row i of a stacked value (a view).
Tensor stack_rows(const std::vector<const Tensor*>& xs);
Tensor row_of(const Tensor& stacked, std::size_t i);
}  // namespace detail

}  // namespace autobatch
}  // namespace tapegrad
