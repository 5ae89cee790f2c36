#include "tapegrad/nn/training/train.hpp"

#include <sys/stat.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <map>
#include <set>
#include <sstream>

#include "tapegrad/autograd/diagnostics.hpp"
#include "tapegrad/autograd/tape.hpp"
#include "tapegrad/nn/training/serialize.hpp"

namespace tapegrad::nn {

namespace {

std::string quoted(const std::string& s) { return "'" + s + "'"; }

bool file_exists(const std::string& path) {
  struct stat st {};
  return ::stat(path.c_str(), &st) == 0;
}

std::string num(double x, int precision = 6) {
  std::ostringstream os;
  os.precision(precision);
  os << x;
  return os.str();
}

// Keeps the header and the rows of steps <= last_step (a run stopped after its last checkpoint logged
// steps that the resumed run takes again), so the resumed log continues the same curve.
void truncate_log(const std::string& path, std::size_t last_step) {
  std::ifstream in(path);
  if (!in) return;
  std::vector<std::string> keep;
  std::string line;
  bool header = true;
  while (std::getline(in, line)) {
    if (header) {
      keep.push_back(line);
      header = false;
      continue;
    }
    if (std::strtoull(line.c_str(), nullptr, 10) <= last_step) keep.push_back(line);
  }
  in.close();
  std::ofstream out(path, std::ios::trunc);
  for (const auto& l : keep) out << l << '\n';
}

}  // namespace

std::string format_duration(double seconds) {
  if (!std::isfinite(seconds) || seconds < 0) return "?";
  const long s = std::lround(seconds);
  char buf[32];
  if (s >= 3600) std::snprintf(buf, sizeof buf, "%ldh%02ldm", s / 3600, s / 60 % 60);
  else if (s >= 60) std::snprintf(buf, sizeof buf, "%ldm%02lds", s / 60, s % 60);
  else std::snprintf(buf, sizeof buf, "%lds", s);
  return buf;
}

void save_checkpoint(const std::string& path, const Module& model, const Optimizer& optimizer,
                     const std::vector<std::pair<std::string, double>>& loop) {
  NamedArrays arrays;
  for (const auto& [name, t] : model.named_parameters()) arrays.emplace_back("model." + name, t);
  for (const auto& [name, t] : optimizer.state_dict()) arrays.emplace_back("optimizer." + name, t);
  for (const auto& [name, v] : loop) arrays.emplace_back("loop." + name, scalar(v, DType::f64));
  save_arrays(arrays, path);
}

namespace {

// load_checkpoint on arrays already read from `path` (the trainer reads the file once to check and load it).
std::vector<std::pair<std::string, double>> load_checkpoint_arrays(const NamedArrays& arrays, const std::string& path,
                                                                   Module& model, Optimizer& optimizer) {
  std::map<std::string, Tensor> params;
  NamedArrays optimizer_state;
  std::vector<std::pair<std::string, double>> loop;
  std::vector<std::string> problems;
  for (const auto& [name, t] : arrays) {
    if (name.rfind("model.", 0) == 0) params.emplace(name.substr(6), t);
    else if (name.rfind("optimizer.", 0) == 0) optimizer_state.emplace_back(name.substr(10), t);
    else if (name.rfind("loop.", 0) == 0) {
      if (t.rank() != 0 || t.dtype() != DType::f64) problems.push_back("entry " + quoted(name) + " is not a float64 scalar");
      else loop.emplace_back(name.substr(5), t.item());
    } else {
      problems.push_back("unexpected entry " + quoted(name) + " (not model., optimizer. or loop.)");
    }
  }
  std::vector<std::pair<Tensor, Tensor>> staged;  // parameter, its new value
  std::set<std::string> expected;
  for (const auto& [name, p] : model.named_parameters()) {
    expected.insert(name);
    const auto it = params.find(name);
    if (it == params.end()) {
      problems.push_back("parameter " + quoted(name) + " " + p.shape().str() + " is missing");
      continue;
    }
    if (it->second.dtype() != p.dtype() || it->second.shape() != p.shape()) {
      problems.push_back("parameter " + quoted(name) + " is " + dtype_name(p.dtype()) + " " + p.shape().str() +
                         " in the model but " + dtype_name(it->second.dtype()) + " " + it->second.shape().str() + " in the file");
      continue;
    }
    staged.emplace_back(p, it->second);
  }
  for (const auto& [name, t] : params)
    if (!expected.count(name)) problems.push_back("unexpected parameter " + quoted(name) + " (the model has no such parameter)");
  if (!problems.empty()) {
    std::string msg = "load_checkpoint: " + quoted(path) + ": ";
    for (std::size_t i = 0; i < problems.size(); ++i) msg += (i ? "; " : "") + problems[i];
    throw Error(msg + "; nothing was changed");
  }
  optimizer.load_state_dict(optimizer_state, quoted(path));  // validates all first; throws before any change
  for (auto& [p, v] : staged)
    if (p.numel()) std::memcpy(p.raw_data(), v.raw_data(), p.numel() * dtype_size(p.dtype()));
  return loop;
}

}  // namespace

std::vector<std::pair<std::string, double>> load_checkpoint(const std::string& path, Module& model, Optimizer& optimizer) {
  return load_checkpoint_arrays(load_arrays(path), path, model, optimizer);
}

Trainer::Trainer(Module& model, Optimizer& optimizer, TrainConfig config, TrainHooks hooks)
    : model_(model), optimizer_(optimizer), config_(std::move(config)), hooks_(std::move(hooks)) {}

TrainResult Trainer::run(std::size_t batches_per_epoch, const StepLoss& step_loss, const Evaluate& evaluate) {
  const TrainConfig& c = config_;
  if (batches_per_epoch == 0) throw Error("Trainer::run: batches_per_epoch must be positive");
  if (!step_loss) throw Error("Trainer::run: no step function");
  if (c.resume && c.checkpoint.empty()) throw Error("Trainer::run: resume needs a checkpoint path (TrainConfig::checkpoint)");
  const auto start = std::chrono::steady_clock::now();
  const auto elapsed = [&] { return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count(); };

  TrainResult result;
  result.last_eval = NAN;
  double epoch_sum = 0;
  const bool lead = c.rank == 0;  // prints and writes
  if (c.resume && file_exists(c.checkpoint)) {
    // The loop entries are checked before anything is loaded: a run with other data or another batch size
    // (another number of batches per epoch) would not continue the same run. One read of the file for both.
    const NamedArrays arrays = load_arrays(c.checkpoint);
    for (const auto& [name, t] : arrays)
      if (name == "loop.batches_per_epoch" && t.numel() == 1 && t.item() != double(batches_per_epoch))
        throw Error("Trainer::run: " + quoted(c.checkpoint) + " was written by a run with " + num(t.item()) +
                    " batches per epoch, this one has " + std::to_string(batches_per_epoch) +
                    " (other data or batch size); nothing was loaded");
    for (const auto& [key, value] : load_checkpoint_arrays(arrays, c.checkpoint, model_, optimizer_)) {
      if (key == "step") result.first_step = static_cast<std::size_t>(value);
      else if (key == "epoch_loss_sum") epoch_sum = value;
    }
    if (lead) std::printf("  %s: resumed from %s at step %zu (epoch %zu)\n", c.name.c_str(), c.checkpoint.c_str(), result.first_step,
                result.first_step / batches_per_epoch + 1);
  }
  const std::size_t total = c.epochs * batches_per_epoch;
  const std::size_t end = c.max_steps ? std::min(c.max_steps, total) : total;

  std::ofstream log;
  if (!c.log_csv.empty() && lead) {
    if (result.first_step > 0 && file_exists(c.log_csv)) {
      truncate_log(c.log_csv, result.first_step);
      log.open(c.log_csv, std::ios::app);
    } else {
      log.open(c.log_csv, std::ios::trunc);
      log << "step,epoch,loss," << c.metric << '\n';
    }
    if (!log) throw Error("Trainer::run: cannot write the log " + quoted(c.log_csv));
  }
  const auto checkpoint = [&](std::size_t step) {
    if (c.checkpoint.empty() || !lead) return;
    save_checkpoint(c.checkpoint, model_, optimizer_,
                    {{"step", double(step)}, {"epoch_loss_sum", epoch_sum}, {"batches_per_epoch", double(batches_per_epoch)}});
  };

  double last_print = -1e9;
  std::size_t step = result.first_step;
  while (step < end) {
    TrainStep s{step + 1, step / batches_per_epoch, step % batches_per_epoch};
    Tensor loss = step_loss(s);
    if (!loss.defined() || loss.numel() != 1)
      throw Error("Trainer::run: the step function must return a scalar loss, got " +
                  (loss.defined() ? loss.shape().str() : std::string("an undefined tensor")) + " at step " + std::to_string(s.step));
    const double value = loss.item();
    if (!std::isfinite(value)) throw Error("Trainer::run: the loss is " + num(value) + " at step " + std::to_string(s.step));
    optimizer_.zero_grad();
    backward(loss);
    if (hooks_.after_backward) hooks_.after_backward(s);
    if (c.clip_norm > 0) clip_grad_norm(optimizer_.parameters(), c.clip_norm);
    optimizer_.step();
    step = s.step;
    result.last_loss = value;
    epoch_sum += value;
    const bool epoch_end = s.batch + 1 == batches_per_epoch;
    double epoch_mean = NAN;
    if (epoch_end) {
      epoch_mean = epoch_sum / double(batches_per_epoch);
      result.epoch_loss.push_back(epoch_mean);
      epoch_sum = 0;
    }
    bool evaluated = false;
    if (evaluate && (epoch_end || (c.eval_every && step % c.eval_every == 0))) {
      NoGrad off_the_tape;
      result.last_eval = evaluate();
      evaluated = true;
    }
    if (log.is_open()) {
      log << step << ',' << s.epoch + 1 << ',' << num(value, 8) << ',';
      if (evaluated) log << num(result.last_eval, 8);
      log << '\n';
      log.flush();
    }
    if ((c.checkpoint_every && step % c.checkpoint_every == 0) || epoch_end || step == end) checkpoint(step);
    const double t = elapsed();
    if (lead && c.progress_every >= 0 && (epoch_end || evaluated || step == end || t - last_print >= c.progress_every)) {
      last_print = t;
      const double rate = t / double(step - result.first_step);
      std::string line = "  " + c.name + " step " + std::to_string(step) + "/" + std::to_string(total) + " (" +
                         std::to_string(100 * step / total) + "%) epoch " + std::to_string(s.epoch + 1) + "/" +
                         std::to_string(c.epochs) + "  loss " + num(value, 4);
      if (epoch_end) line += " (epoch mean " + num(epoch_mean, 4) + ")";
      if (evaluated) line += "  " + c.metric + " " + num(result.last_eval, 4);
      line += "  " + format_duration(t) + " elapsed, ETA " + format_duration(rate * double(end - step));
      std::printf("%s\n", line.c_str());
      std::fflush(stdout);
    }
    if (hooks_.on_step)
      hooks_.on_step({s.step, s.epoch, s.batch, value, epoch_end, epoch_mean, evaluated, evaluated ? result.last_eval : NAN});
  }
  result.steps = step;
  result.finished = step >= total;
  if (evaluate && std::isnan(result.last_eval)) {  // nothing ran (already finished)
    NoGrad off_the_tape;
    result.last_eval = evaluate();
  }
  result.seconds = elapsed();
  return result;
}

}  // namespace tapegrad::nn
