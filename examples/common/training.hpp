// Options and plumbing the seq2seq examples (10, 11) share for training on a user's own file and for
// stopping and resuming (header-only, public API only): --data FILE, --separator S, --test-fraction F,
// --checkpoint DIR, --resume, --max-steps N, --checkpoint-every N. The loop itself is nn::Trainer and the
// data utilities are nn/data/data.hpp; this only maps command-line options onto them.
#pragma once

#include <tapegrad/tapegrad.hpp>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <string>
#include <vector>

#include "example.hpp"

namespace example {

inline const char* training_usage() {
  return "  --data FILE (train on your own file: one question<sep>answer a line, UTF-8; default: generated data)\n"
         "  --separator S (default _)  --test-fraction F (held out from FILE, default 0.1)\n"
         "  --checkpoint DIR (model + optimizer + loop position every --checkpoint-every N steps, default 200, and at\n"
         "  each epoch's end, one .npz per model, written atomically)\n"
         "  --resume (continue from DIR's checkpoints; the run goes on exactly as if never stopped)\n"
         "  --max-steps N (stop each model after N steps in all, with a checkpoint: resume later with --resume)";
}

struct TrainingOptions {
  std::string data, separator, checkpoint_dir;
  double test_fraction = 0.1;
  bool resume = false;
  std::size_t max_steps = 0, checkpoint_every = 0;

  explicit TrainingOptions(const Args& args) {
    data = args.str("data", "");
    separator = args.str("separator", "_");
    test_fraction = args.real("test-fraction", 0.1);
    checkpoint_dir = args.str("checkpoint", "");
    resume = args.flag("resume");
    max_steps = static_cast<std::size_t>(args.integer("max-steps", 0));
    checkpoint_every = static_cast<std::size_t>(args.integer("checkpoint-every", 200));
    if (resume && checkpoint_dir.empty()) {
      std::fprintf(stderr, "error: --resume needs --checkpoint DIR\n");
      std::exit(2);
    }
    if (!checkpoint_dir.empty()) std::filesystem::create_directories(checkpoint_dir);
  }

  // The held-out split of --data FILE (the vocabulary is then built from the training part only).
  tapegrad::nn::TrainTestSplit read_file(std::uint64_t seed) const {
    tapegrad::nn::ReadOptions options;
    options.separator = separator;
    const auto pairs = tapegrad::nn::read_pairs(data, options);
    auto split = tapegrad::nn::split_train_test(pairs, test_fraction, seed);
    std::printf("read %zu pairs from %s (separator '%s'): %zu for training, %zu held out (seed %llu), e.g. \"%s\" -> \"%s\"\n",
                pairs.size(), data.c_str(), separator.c_str(), split.train.size(), split.test.size(),
                static_cast<unsigned long long>(seed), split.train[0].question.c_str(), split.train[0].answer.c_str());
    return split;
  }

  // The loop's settings for one model; `name` names its checkpoint (DIR/name.npz) and its log.
  tapegrad::nn::TrainConfig config(const std::string& name, const std::string& log_csv, std::size_t epochs,
                                   double clip_norm) const {
    tapegrad::nn::TrainConfig c;
    c.name = name;
    c.epochs = epochs;
    c.clip_norm = clip_norm;
    c.max_steps = max_steps;
    c.log_csv = log_csv;
    c.metric = "held-out exact match";
    if (!checkpoint_dir.empty()) {
      std::string file = name;
      for (char& ch : file)
        if (ch == '/' || ch == ' ' || ch == '+') ch = '_';
      c.checkpoint = checkpoint_dir + "/" + file + ".npz";
      c.checkpoint_every = checkpoint_every;
      c.resume = resume;
    }
    return c;
  }
};

// The first evaluation at or above a target: the step it came after and the seconds since this object was
// made (training and the evaluations so far). Wrap the evaluation in it; tell it each step.
class FirstReach {
 public:
  explicit FirstReach(double target) : target_(target) {}
  void at_step(std::size_t step) { step_now_ = step; }
  double operator()(double metric) {
    if (seconds_ < 0 && metric >= target_) {
      step_ = step_now_;
      seconds_ = std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
    }
    return metric;
  }
  bool reached() const { return seconds_ >= 0; }
  // "reached 99% after 1200 steps, 14.2 s" or "99% not reached".
  std::string str() const {
    char buf[128];
    if (!reached()) std::snprintf(buf, sizeof buf, "%g%% not reached", 100 * target_);
    else std::snprintf(buf, sizeof buf, "reached %g%% after %zu steps, %.1f s", 100 * target_, step_, seconds_);
    return buf;
  }

 private:
  double target_, seconds_ = -1;
  std::size_t step_ = 0, step_now_ = 0;
  std::chrono::steady_clock::time_point start_ = std::chrono::steady_clock::now();
};

// What a stopped run prints instead of pretending it finished.
inline void note_stopped(const tapegrad::nn::TrainResult& r, const std::string& name, const TrainingOptions& o) {
  if (r.finished) return;
  std::printf("  %s stopped at step %zu (--max-steps %zu)%s\n", name.c_str(), r.steps, o.max_steps,
              o.checkpoint_dir.empty() ? "" : "; continue with the same command and --resume (without --max-steps)");
}

}  // namespace example
