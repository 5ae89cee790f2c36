// A training loop that the examples share: epochs of mini-batches, a progress line with loss and ETA,
// periodic evaluation, a CSV log, checkpoints (model + optimizer + the loop's position, one .npz written
// atomically) every N steps, and resuming that continues the same run bit for bit.
//
// Why resuming is exact: the loop's only state besides the model's and the optimizer's is the global step
// (and the running sum of the epoch's losses, for the epoch mean). Everything random that a step uses must
// be a function of (seed, epoch, batch): nn::BatchIterator's shuffling is, and the step callback gets the
// step number to seed any Generator of its own (dropout, sampling) with. So a checkpoint after step s and a
// fresh process that loads it run steps s+1.. exactly as the uninterrupted run did.
//
// One step: step_loss -> zero_grad, backward -> hooks.after_backward (data parallelism averages the
// gradients over processes here) -> clip_grad_norm (clip_norm) -> the optimizer's step -> evaluation (under
// NoGrad) -> the CSV row, checkpoint, progress line -> hooks.on_step. Under data parallelism every rank runs
// the loop (the hooks may call collectives: every rank calls them at the same steps) and only rank 0
// (TrainConfig::rank) prints and writes the log and the checkpoints.
//
//   nn::Trainer trainer(model, opt, config);
//   auto result = trainer.run(data.batches_per_epoch(), [&](const nn::TrainStep& s) {
//     auto b = data.batch(s.epoch, s.batch);
//     return model.loss(b.source.ids, b.target.ids, b.source.mask);   // the loop does backward and step
//   }, [&] { return nn::exact_match(model, test); });
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "tapegrad/nn/models/module.hpp"
#include "tapegrad/nn/training/optim.hpp"

namespace tapegrad::nn {

struct TrainConfig {
  std::size_t epochs = 1;
  std::size_t max_steps = 0;        // stop after this global step (0: run every epoch); a checkpoint is saved there
  double clip_norm = 0;             // clip_grad_norm before each update (0: none)
  std::size_t eval_every = 0;       // evaluate every N steps (0: only at the end of each epoch)
  std::string checkpoint;           // the checkpoint file (.npz); empty: no checkpoints
  std::size_t checkpoint_every = 0; // steps between checkpoints (0: at the end of each epoch only)
  bool resume = false;              // start from `checkpoint` when the file exists (else from step 0)
  std::string log_csv;              // step,epoch,loss,eval rows (eval empty where not evaluated); empty: none
  std::string name = "train";       // the progress line's label
  double progress_every = 2.0;      // seconds between progress lines (and one at each epoch's end); < 0: none
  std::string metric = "eval";      // the evaluation's name in the progress lines
  int rank = 0;                     // this process's rank (dist::rank()): only rank 0 prints and writes the log
                                    // and the checkpoints; every rank reads the checkpoint to resume
};

struct TrainStep {
  std::size_t step;   // global step, 1-based: the step being taken
  std::size_t epoch;  // 0-based
  std::size_t batch;  // 0-based within the epoch
};

// What on_step sees after each update.
struct StepInfo {
  std::size_t step, epoch, batch;  // as TrainStep
  double loss;                     // this step's loss (this process's share under data parallelism)
  bool epoch_end;                  // the last batch of its epoch
  double epoch_loss;               // the epoch's mean loss where epoch_end, else NaN
  bool evaluated;                  // evaluate ran after this step
  double eval;                     // its value where evaluated, else NaN
};

struct TrainHooks {
  // After backward, before clipping and the update: the step's gradients are in the parameters' grad().
  // Data parallelism averages them here (dist::allreduce_gradients); so clip_norm clips the average.
  std::function<void(const TrainStep&)> after_backward;
  // After each update, its evaluation, log row and checkpoint: curves, summaries, a metric over processes.
  std::function<void(const StepInfo&)> on_step;
};

struct TrainResult {
  std::size_t first_step = 0;      // steps before this run (from the checkpoint), 0 for a fresh run
  std::size_t steps = 0;           // the global step reached
  bool finished = false;           // every epoch done (false when max_steps stopped it)
  double last_loss = 0;            // the loss of the last step
  double last_eval = 0;            // the last evaluation (NaN when none ran)
  std::vector<double> epoch_loss;  // mean loss of each epoch completed in this run
  double seconds = 0;
};

class Trainer {
 public:
  // step_loss: the recorded scalar loss of one step (the loop runs zero_grad, backward, clipping and the
  // update); evaluate: a metric of the model, called under NoGrad (optional).
  using StepLoss = std::function<Tensor(const TrainStep&)>;
  using Evaluate = std::function<double()>;

  Trainer(Module& model, Optimizer& optimizer, TrainConfig config, TrainHooks hooks = {});
  TrainResult run(std::size_t batches_per_epoch, const StepLoss& step_loss, const Evaluate& evaluate = {});
  const TrainConfig& config() const { return config_; }

 private:
  Module& model_;
  Optimizer& optimizer_;
  TrainConfig config_;
  TrainHooks hooks_;
};

// A checkpoint: every parameter of `model` as "model.<name>", the optimizer's state_dict as
// "optimizer.<entry>" and `loop` entries as "loop.<name>" (float64 scalars), one .npz written atomically.
void save_checkpoint(const std::string& path, const Module& model, const Optimizer& optimizer,
                     const std::vector<std::pair<std::string, double>>& loop);
// All or nothing: the model's parameters (names, dtypes, shapes), the optimizer's state and the loop
// entries are validated before anything changes; returns the loop entries. Any problem is an Error naming
// the file.
std::vector<std::pair<std::string, double>> load_checkpoint(const std::string& path, Module& model, Optimizer& optimizer);

// "1h02m", "3m05s", "12s": durations for progress lines.
std::string format_duration(double seconds);

}  // namespace tapegrad::nn
