// The autobatching scheduler: tasks as fibers (Boost.Context), calls grouped by signature, groups run as
// one op by their rule. Why fibers and not a lazy graph: docs/autobatching.md.
#include "tapegrad/autograd/autobatch.hpp"

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <memory>
#include <sstream>
#include <utility>

#include <boost/context/fiber.hpp>
#include <boost/context/protected_fixedsize_stack.hpp>

#include "tapegrad/autograd/leaf.hpp"
#include "tapegrad/autograd/op.hpp"

#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/common_interface_defs.h>
#define TAPEGRAD_ASAN_FIBERS 1
#endif

namespace tapegrad::autobatch {

namespace ctx = boost::context;

namespace {

thread_local Stats t_stats;
// Counts by op while maps run, keyed by the op's registration (no string per batch); stats() names them.
thread_local std::vector<std::pair<const OpInfo*, OpStats>> t_counts;
OpStats& counts_of(const OpInfo& op) {
  for (auto& [o, c] : t_counts)
    if (o == &op) return c;
  return t_counts.emplace_back(&op, OpStats{}).second;
}

std::vector<const Rule*>& rule_registry() {
  static std::vector<const Rule*> r;
  return r;
}

// Thrown at the op a task waits on when the map ends early (another task threw): unwinds the task.
struct Cancelled {};

// Task stacks, kept per thread and reused: mapping a fresh stack per task cost more than the ops it ran.
// 1 MiB each (virtual; pages are touched as used), with a guard page below.
constexpr std::size_t stack_size = std::size_t(1) << 20;
struct StackPool {
  std::vector<ctx::stack_context> free;
  ctx::protected_fixedsize_stack make{stack_size};
  ~StackPool() {
    for (auto& s : free) make.deallocate(s);
  }
};
thread_local StackPool t_stacks;

// FNV-1a over the signature's words.
std::uint64_t hash_words(const std::vector<std::uint64_t>& w) {
  std::uint64_t h = 1469598103934665603ull;
  for (std::uint64_t x : w) h = (h ^ x) * 1099511628211ull;
  return h;
}

}  // namespace

const Tensor& Group::in(std::size_t j) const {
  if (in_[j].defined()) return in_[j];
  if (shared(j)) return in_[j] = *call_inputs_[0][j];
  std::vector<const Tensor*> column(n_);
  for (std::size_t i = 0; i < n_; ++i) column[i] = call_inputs_[i][j];
  in_[j] = detail::stack_rows(column);
  if (!in_[j].is_leaf() && tapegrad::detail::TensorInternals::slot(in_[j]).view_of == tapegrad::detail::Slot::none)
    ++t_stats.gathers;
  return in_[j];
}

double Group::key_double(std::size_t k) const {
  double v;
  std::memcpy(&v, &key_[k], sizeof v);
  return v;
}

Key::Key(const std::int64_t* w, std::size_t n) : size(n) {
  if (n > capacity) throw Error("autobatch: a key of " + std::to_string(n) + " words (at most " + std::to_string(capacity) + ")");
  std::copy(w, w + n, words);
}

std::int64_t key_of(double v) {
  std::int64_t k;
  std::memcpy(&k, &v, sizeof k);
  return k;
}

namespace detail {

// Modes that belong to whoever runs: a task's NoGrad must not leak into the scheduler or another task.
struct Modes {
  bool grad = true;
  Tape* tape = nullptr;
  static Modes current() { return {tapegrad::detail::grad_mode, &Tape::current()}; }
  void install() const {
    tapegrad::detail::grad_mode = grad;
    Tape::exchange_current(tape);
  }
};

enum class Resume { result, alone, cancel };

struct Task {
  std::size_t index = 0;
  const std::function<void(std::size_t)>* body = nullptr;
  Task* parent = nullptr;     // the task whose nested map made this one
  std::size_t children = 0;   // while this task waits on its nested map: the children not done
  ctx::fiber fiber;     // the task, while it is suspended
  ctx::fiber back;      // the scheduler, while the task runs
  Modes modes;          // the task's modes, while it is suspended
  bool done = false;
  std::exception_ptr error;
  // The call it waits on.
  const Rule* rule = nullptr;
  std::vector<const Tensor*> inputs;
  std::vector<std::uint8_t> shared;
  std::vector<std::int64_t> key;
  std::vector<std::uint64_t> signature;
  std::uint64_t hash = 0;
  const void* payload = nullptr;
  // How it goes on.
  Resume how = Resume::result;
  Tensor result;
  const OpInfo* alone_op = nullptr;  // told to run this op alone: its OpCall is not counted as "no rule"
#if TAPEGRAD_ASAN_FIBERS
  void* fake_stack = nullptr;
  const void* back_bottom = nullptr;
  std::size_t back_size = 0;
  const void* stack_bottom = nullptr;
  std::size_t stack_size = 0;
#endif

  void reset() {  // for reuse from the pool; buffers keep their capacity
    body = nullptr;
    parent = nullptr;
    children = 0;
    done = false;
    error = nullptr;
    rule = nullptr;
    payload = nullptr;
    how = Resume::result;
    result = Tensor();
    alone_op = nullptr;
  }

  // Called by the task: hand control back until the scheduler resumes it.
  void suspend() {
    modes = Modes::current();
#if TAPEGRAD_ASAN_FIBERS
    __sanitizer_start_switch_fiber(&fake_stack, back_bottom, back_size);
#endif
    back = std::move(back).resume();
#if TAPEGRAD_ASAN_FIBERS
    __sanitizer_finish_switch_fiber(fake_stack, &back_bottom, &back_size);
#endif
  }
};

// Hands out the pool's stacks; tells the task where its stack is (for AddressSanitizer's fiber switches).
struct PooledStack {
  Task* task;
  ctx::stack_context allocate();
  void deallocate(ctx::stack_context& s) noexcept { t_stacks.free.push_back(s); }
};

thread_local std::vector<std::unique_ptr<Task>> t_task_pool;

class Scheduler {
 public:
  Scheduler() {
    Tape& tape = Tape::current();
    first_slot_ = tape.released() ? 0 : tape.num_slots();
    tape_ = &tape;
    epoch_ = tape.epoch();
  }

  Scheduler(const Scheduler&) = delete;
  Scheduler& operator=(const Scheduler&) = delete;
  ~Scheduler() {
    for (Task* t : tasks_) t_task_pool.push_back(std::unique_ptr<Task>(t));
  }

  // n new tasks running body(0..n-1); their parent (a task waiting on them, or null) goes on when all are done.
  void spawn(std::size_t n, const std::function<void(std::size_t)>& body, Task* parent) {
    t_stats.tasks += n;
    for (std::size_t i = 0; i < n; ++i) {
      tasks_.push_back(new_task());
      Task& t = *tasks_.back();
      t.index = i;
      t.body = &body;
      t.parent = parent;
      t.modes = Modes::current();
      t.fiber = ctx::fiber(std::allocator_arg, PooledStack{&t}, [this, &t](ctx::fiber&& back) { return entry(t, std::move(back)); });
      ready_.push_back(&t);
    }
    if (parent) parent->children = n;
  }

  void run() {
    ++t_stats.maps;
    const Modes mine = Modes::current();
    std::exception_ptr failure;
    std::vector<Task*> now;
    while (true) {
      while (!ready_.empty() && !failure) {  // run every task that can go on (spawning adds more)
        now.swap(ready_);
        ready_.clear();
        for (Task* t : now) {
          resume(*t, mine);
          if (t->done) {
            if (t->error && !failure) failure = t->error;
            if (t->parent && --t->parent->children == 0) ready_.push_back(t->parent);
          } else if (!t->children) {
            enqueue(t);
          }
        }
      }
      if (failure || buckets_.empty()) break;
      // The op most tasks wait on goes first, every group of it (one batch per signature): the tasks that
      // wait on it all move on together, so they stay in step even where their shapes differ (the slices
      // of sequences of different lengths); the others keep waiting for partners.
      const Rule* next = busiest_rule();
      for (std::size_t k = 0; k < buckets_.size();) {
        if (buckets_[k].tasks.front()->rule != next) {
          ++k;
          continue;
        }
        std::vector<Task*> group = std::move(buckets_[k].tasks);
        buckets_.erase(buckets_.begin() + static_cast<long>(k));
        execute(group, mine);
        ready_.insert(ready_.end(), group.begin(), group.end());
      }
    }
    if (failure) {
      cancel_all(mine);
      std::rethrow_exception(failure);
    }
  }

  std::size_t first_slot() const { return first_slot_; }
  const Tape* tape() const { return tape_; }
  std::uint64_t epoch() const { return epoch_; }

 private:
  struct Bucket {
    std::uint64_t hash;
    std::vector<Task*> tasks;
  };

  ctx::fiber entry(Task& t, ctx::fiber&& back) {
    t.back = std::move(back);
#if TAPEGRAD_ASAN_FIBERS
    __sanitizer_finish_switch_fiber(nullptr, &t.back_bottom, &t.back_size);
#endif
    try {
      (*t.body)(t.index);
    } catch (const Cancelled&) {
    } catch (const ctx::detail::forced_unwind&) {
      throw;  // Boost.Context unwinding a fiber destroyed while suspended: must pass through
    } catch (...) {
      t.error = std::current_exception();
    }
    t.done = true;
    t.modes = Modes::current();
#if TAPEGRAD_ASAN_FIBERS
    __sanitizer_start_switch_fiber(nullptr, t.back_bottom, t.back_size);  // this stack ends
#endif
    return std::move(t.back);
  }

  void resume(Task& t, const Modes& mine) {
    t.modes.install();
    current_task = &t;
#if TAPEGRAD_ASAN_FIBERS
    void* fake = nullptr;
    __sanitizer_start_switch_fiber(&fake, t.stack_bottom, t.stack_size);
#endif
    t.fiber = std::move(t.fiber).resume();
#if TAPEGRAD_ASAN_FIBERS
    __sanitizer_finish_switch_fiber(fake, nullptr, nullptr);
#endif
    current_task = nullptr;
    mine.install();
  }

  const Rule* busiest_rule() {
    waiting_.clear();  // (rule, tasks waiting on it), one pass over the buckets
    for (const Bucket& b : buckets_) {
      const Rule* r = b.tasks.front()->rule;
      auto it = std::find_if(waiting_.begin(), waiting_.end(), [r](const auto& w) { return w.first == r; });
      if (it == waiting_.end()) waiting_.emplace_back(r, b.tasks.size());
      else it->second += b.tasks.size();
    }
    const Rule* best = nullptr;
    std::size_t most = 0;
    for (const auto& [r, n] : waiting_)
      if (n > most) {
        most = n;
        best = r;
      }
    return best;
  }

  void enqueue(Task* t) {
    for (Bucket& b : buckets_)
      if (b.hash == t->hash && b.tasks.front()->signature == t->signature) return b.tasks.push_back(t);
    buckets_.push_back({t->hash, {t}});
  }

  // Runs a group as one op; on any failure (no batched form, an error) its calls run alone instead, each
  // in its own task, so an error is raised in the example that caused it, with its own shapes.
  void execute(std::vector<Task*>& group, const Modes& mine) {
    Task& first = *group.front();
    const Rule& rule = *first.rule;
    OpStats& s = counts_of(*rule.op);
    // Calls that differ in nothing (every input shared, no payload) are left to run alone.
    bool differ = first.payload != nullptr;
    for (std::uint8_t sh : first.shared) differ = differ || !sh;
    if (group.size() > 1 && differ) {
      first.modes.install();
      Tensor y;
      std::vector<Tensor> rows;
      try {
        Group g;
        g.n_ = group.size();
        g.key_ = first.key.data();
        g.num_keys_ = first.key.size();
        g.shared_ = first.shared.data();
        g.in_.resize(first.inputs.size());
        g.payloads_.resize(group.size());
        g.call_inputs_.resize(group.size());
        for (std::size_t i = 0; i < group.size(); ++i) {
          g.payloads_[i] = group[i]->payload;
          g.call_inputs_[i] = group[i]->inputs.data();
        }
        y = rule.run(g);
        if (y.defined() && y.rank() >= 1 && y.shape()[0] == group.size()) {
          rows.reserve(group.size());
          for (std::size_t i = 0; i < group.size(); ++i) rows.push_back(row_of(y, i));
        }
      } catch (const std::exception& e) {  // the calls run alone, and raise it (or not) each in its own task
        if (std::getenv("TAPEGRAD_AUTOBATCH_DEBUG")) std::fprintf(stderr, "autobatch: %s batch failed: %s\n", rule.op->name, e.what());
        rows.clear();
      } catch (...) {
        rows.clear();
      }
      mine.install();
      if (!rows.empty()) {
        ++s.batches;
        s.batched += group.size();
        s.largest = std::max(s.largest, group.size());
        for (std::size_t i = 0; i < group.size(); ++i) {
          group[i]->how = Resume::result;
          group[i]->result = std::move(rows[i]);
        }
        return;
      }
    }
    s.alone += group.size();
    for (Task* t : group) {
      t->how = Resume::alone;
      t->alone_op = rule.op;
    }
  }

  // Every task not done is resumed with the op (or the map) it waits on throwing Cancelled, which unwinds
  // it; children before their parents (newest first), whose stacks hold the children's bodies.
  void cancel_all(const Modes& mine) {
    buckets_.clear();
    ready_.clear();
    for (auto it = tasks_.rbegin(); it != tasks_.rend(); ++it)
      while (!(*it)->done && (*it)->fiber) {
        (*it)->how = Resume::cancel;
        resume(**it, mine);
      }
  }

  // Tasks come from a per-thread pool: their call buffers keep their capacity from one map to the next.
  static Task* new_task() {
    if (t_task_pool.empty()) return new Task;
    Task* t = t_task_pool.back().release();
    t_task_pool.pop_back();
    t->reset();
    return t;
  }

  std::vector<Task*> tasks_;  // every task of the map, children included
  std::vector<Task*> ready_;
  std::vector<std::pair<const Rule*, std::size_t>> waiting_;  // busiest_rule's tally
  std::vector<Bucket> buckets_;
  std::size_t first_slot_ = 0;
  const Tape* tape_ = nullptr;
  std::uint64_t epoch_ = 0;
};

ctx::stack_context PooledStack::allocate() {
  ctx::stack_context s;
  if (t_stacks.free.empty()) {
    s = t_stacks.make.allocate();
  } else {
    s = t_stacks.free.back();
    t_stacks.free.pop_back();
  }
#if TAPEGRAD_ASAN_FIBERS
  task->stack_bottom = static_cast<char*>(s.sp) - s.size;
  task->stack_size = s.size;
#endif
  return s;
}

namespace {
thread_local Scheduler* t_scheduler = nullptr;

struct SchedulerScope {
  Scheduler* previous;
  explicit SchedulerScope(Scheduler* s) : previous(t_scheduler) { t_scheduler = s; }
  ~SchedulerScope() { t_scheduler = previous; }
};

// Signature words of one input. A shared input is named by identity: a parameter (an owned tensor that
// requires grad) or a value of the graph made before the map; every other input is per-example, named by
// dtype and shape. Undefined inputs never match anything: the call runs alone and the op reports them.
std::uint64_t t_unique = 0;
void sign_input(Task& t, const Tensor* x, const Scheduler& sched) {
  auto& w = t.signature;
  if (!x || !x->defined()) {
    t.shared.push_back(false);
    w.push_back(3);
    w.push_back(++t_unique);
    return;
  }
  using I = tapegrad::detail::TensorInternals;
  const bool shared = x->is_leaf() ? I::leaf(*x)->requires_grad
                                   : (x->tape() == sched.tape() && I::epoch(*x) == sched.epoch() &&
                                      I::slot_index(*x) < sched.first_slot());
  t.shared.push_back(shared);
  if (shared) {
    w.push_back(1);
    w.push_back(x->is_leaf() ? reinterpret_cast<std::uintptr_t>(I::leaf(*x).get()) : I::slot_index(*x));
    return;
  }
  const Shape& s = x->shape();
  w.push_back(2 + (static_cast<std::uint64_t>(x->dtype()) << 8) + (static_cast<std::uint64_t>(s.rank()) << 16));
  for (std::size_t d : s) w.push_back(d);
}
}  // namespace

void run(std::size_t n, const std::function<void(std::size_t)>& body) {
  if (n <= 1) {  // nothing to batch with: the call runs here
    for (std::size_t i = 0; i < n; ++i) body(i);
    return;
  }
  if (Task* t = current_task) {  // nested: children of this task, which waits for them
    if (t->how == Resume::cancel) throw Cancelled{};
    t_scheduler->spawn(n, body, t);
    t->suspend();
    if (t->how == Resume::cancel) throw Cancelled{};
    return;
  }
  Scheduler sched;
  SchedulerScope scope(&sched);
  sched.spawn(n, body, nullptr);
  sched.run();
}

void run_in_place(const OpInfo& op) { current_task->alone_op = &op; }

void count_eager(const OpInfo& op) {
  Task* t = current_task;
  if (t->alone_op == &op) {
    t->alone_op = nullptr;  // counted when the scheduler let it run alone
    return;
  }
  ++counts_of(op).no_rule;
}

}  // namespace detail

namespace {
Tensor defer_impl(const Rule& rule, const Tensor* const* inputs, std::size_t count, const Key& key, const void* payload) {
  detail::Task& t = *detail::current_task;
  if (t.how == detail::Resume::cancel) throw Cancelled{};
  const detail::Scheduler& sched = *detail::t_scheduler;
  t.rule = &rule;
  t.inputs.assign(inputs, inputs + count);
  t.key.assign(key.words, key.words + key.size);
  t.payload = payload;
  t.shared.clear();
  auto& w = t.signature;
  w.clear();
  w.push_back(reinterpret_cast<std::uintptr_t>(&rule));
  w.push_back(tapegrad::detail::grad_mode);
  w.push_back(reinterpret_cast<std::uintptr_t>(&Tape::current()));
  w.push_back(key.size);
  for (std::int64_t k : t.key) w.push_back(static_cast<std::uint64_t>(k));
  w.push_back(count);
  for (std::size_t j = 0; j < count; ++j) detail::sign_input(t, inputs[j], sched);
  t.hash = hash_words(w);
  t.suspend();
  if (t.how == detail::Resume::cancel) throw Cancelled{};
  if (t.how == detail::Resume::alone) return Tensor();
  return std::move(t.result);
}
}  // namespace

Tensor defer(const Rule& rule, std::initializer_list<const Tensor*> inputs, const Key& key, const void* payload) {
  return defer_impl(rule, inputs.begin(), inputs.size(), key, payload);
}

Tensor defer(const Rule& rule, const std::vector<Tensor>& inputs, const Key& key, const void* payload) {
  thread_local std::vector<const Tensor*> ptrs;  // reused: the call is copied before the task suspends
  ptrs.resize(inputs.size());
  for (std::size_t j = 0; j < inputs.size(); ++j) ptrs[j] = &inputs[j];
  return defer_impl(rule, ptrs.data(), ptrs.size(), key, payload);
}

const std::vector<const Rule*>& rules() { return rule_registry(); }
detail::RuleRegistrar::RuleRegistrar(const Rule* rule) { rule_registry().push_back(rule); }

// ----- statistics -----

const Stats& stats() {
  // Updated in place (entries only ever added between resets): what an earlier call returned stays valid.
  for (const auto& [op, c] : t_counts) t_stats.ops[op->name] = c;
  return t_stats;
}
void reset_stats() {
  t_stats = Stats{};
  t_counts.clear();
}

std::size_t Stats::batches() const {
  std::size_t n = 0;
  for (const auto& [name, s] : ops) n += s.batches;
  return n;
}
std::size_t Stats::batched() const {
  std::size_t n = 0;
  for (const auto& [name, s] : ops) n += s.batched;
  return n;
}
std::size_t Stats::unbatched() const {
  std::size_t n = 0;
  for (const auto& [name, s] : ops) n += s.alone + s.no_rule;
  return n;
}

std::string Stats::table() const {
  std::ostringstream os;
  os << "autobatch: " << maps << " map(s), " << tasks << " task(s), " << batches() << " batches of " << batched()
     << " calls, " << unbatched() << " calls unbatched, " << gathers << " gathered inputs\n";
  os << "  op                              batches  calls/batch  largest    alone  no rule\n";
  for (const auto& [name, s] : ops) {
    char line[160];
    std::snprintf(line, sizeof line, "  %-30s %8zu %12.1f %8zu %8zu %8zu\n", name.c_str(), s.batches,
                  s.batches ? double(s.batched) / double(s.batches) : 0.0, s.largest, s.alone, s.no_rule);
    os << line;
  }
  return os.str();
}

}  // namespace tapegrad::autobatch
