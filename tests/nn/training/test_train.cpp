// nn::Trainer: an interrupted and resumed run equals an uninterrupted one bit for bit (parameters, the
// CSV log, the epoch losses), also after a crash between checkpoints; bad checkpoints change nothing.
#include <boost/test/unit_test.hpp>

#include <fcntl.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <sstream>

#include <tapegrad/nn/data/data.hpp>
#include <tapegrad/nn/training/serialize.hpp>
#include <tapegrad/nn/training/train.hpp>

#include "support/files.hpp"
#include "support/xt.hpp"

using namespace tapegrad;
namespace fs = std::filesystem;

namespace {

// Addition of one-digit numbers, 30 pairs, batches of 8 (4 per epoch, the last one of 6).
struct Setup {
  std::vector<nn::QAPair> pairs;
  nn::Tokenizer vocab;
  std::unique_ptr<nn::BatchIterator> data;
  Setup() {
    for (int a = 0; a < 6; ++a)
      for (int b = 0; b < 5; ++b) pairs.push_back({std::to_string(a) + "+" + std::to_string(b), std::to_string(a + b), 0});
    vocab = nn::build_vocabulary(pairs, nn::TokenLevel::character);
    data = std::make_unique<nn::BatchIterator>(pairs, vocab, vocab, 8, 5);
  }
  std::unique_ptr<nn::Seq2Seq> model(std::uint64_t seed) const {
    nn::Seq2SeqConfig c;
    c.src_vocab = c.tgt_vocab = vocab.size();
    c.embed = 6, c.hidden = 10;
    Generator gen(seed);
    return std::make_unique<nn::Seq2Seq>(c, gen);
  }
};

struct Run {
  std::unique_ptr<nn::Seq2Seq> model;
  std::unique_ptr<nn::Adam> opt;
  nn::TrainResult result;
};

// crash_at: the step function throws at that step (a process killed between checkpoints).
Run train_run(const Setup& s, std::uint64_t init_seed, nn::TrainConfig config, std::size_t crash_at = 0) {
  Run r;
  r.model = s.model(init_seed);
  r.opt = std::make_unique<nn::Adam>(r.model->parameters(), 0.02);
  config.progress_every = -1;
  config.clip_norm = 1.0;
  nn::Trainer trainer(*r.model, *r.opt, config);
  nn::Seq2Seq& m = *r.model;
  r.result = trainer.run(
      s.data->batches_per_epoch(),
      [&](const nn::TrainStep& step) {
        if (step.step == crash_at) throw std::runtime_error("killed");
        nn::PairBatch b = s.data->batch(step.epoch, step.batch);
        return m.loss(b.source.ids, b.target.ids, b.source.mask);
      },
      [&] { return nn::exact_match(m, *s.data); });
  return r;
}

// One float64 weight w; the loss w^2 has the gradient 2w.
struct One : nn::Module {
  Tensor w;
  explicit One(double v) { w = register_parameter("w", from_values({v}, {1}, DType::f64)); }
  Tensor loss() const { return sum(w * w); }
};

nn::TrainConfig quiet(std::size_t epochs = 1) {
  nn::TrainConfig c;
  c.epochs = epochs;
  c.progress_every = -1;
  return c;
}

// What body() printed on stdout (file descriptor 1, where printf goes).
template <class Body> std::string stdout_of(Body&& body) {
  test::TempDir dir("stdout");
  const std::string path = dir.file("out.txt");
  std::fflush(stdout);
  const int saved = ::dup(1), fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
  ::dup2(fd, 1);
  ::close(fd);
  try {
    body();
  } catch (...) {
    std::fflush(stdout);
    ::dup2(saved, 1);
    ::close(saved);
    throw;
  }
  std::fflush(stdout);
  ::dup2(saved, 1);
  ::close(saved);
  std::ifstream in(path);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

}  // namespace

BOOST_AUTO_TEST_SUITE(train)

BOOST_AUTO_TEST_CASE(after_backward_hook_sees_the_gradients_before_clipping_and_the_update) {
  One m(3.0);
  nn::SGD opt(m.parameters(), 0.1);
  nn::TrainConfig config = quiet();
  config.clip_norm = 1.0;
  std::vector<std::string> events;
  nn::TrainHooks hooks;
  hooks.after_backward = [&](const nn::TrainStep& s) {
    events.push_back("hook " + std::to_string(s.step));
    BOOST_TEST(m.w.grad().item() == 6.0);  // d w^2 = 2w, before clipping
    BOOST_TEST(m.w.item() == 3.0);         // not updated yet
    m.w.grad().data<double>()[0] *= 100;   // what an all-reduce or a custom clipping may do
  };
  hooks.on_step = [&](const nn::StepInfo& i) { events.push_back("on_step " + std::to_string(i.step)); };
  nn::Trainer trainer(m, opt, config, hooks);
  trainer.run(1, [&](const nn::TrainStep& s) {
    events.push_back("loss " + std::to_string(s.step));
    return m.loss();
  });
  BOOST_TEST((events == std::vector<std::string>{"loss 1", "hook 1", "on_step 1"}));
  // Clipping ran after the hook, on 600: clipped to norm 1, so w = 3 - 0.1 * 1 (clipping before the hook would
  // leave 100: w = -7; no clipping, 600: w = -57).
  BOOST_TEST(std::abs(m.w.item() - 2.9) <= 1e-12);
}

BOOST_AUTO_TEST_CASE(on_step_sees_every_step_its_loss_epoch_mean_and_evaluation) {
  One m(1.0);
  nn::SGD opt(m.parameters(), 0.1);
  nn::TrainConfig config = quiet(2);
  config.eval_every = 2;
  std::vector<nn::StepInfo> seen;
  std::vector<double> losses;
  nn::TrainHooks hooks;
  hooks.on_step = [&](const nn::StepInfo& i) { seen.push_back(i); };
  nn::Trainer trainer(m, opt, config, hooks);
  int evals = 0;
  auto result = trainer.run(
      3,
      [&](const nn::TrainStep&) {
        Tensor l = m.loss();
        losses.push_back(l.item());
        return l;
      },
      [&] { return double(++evals); });
  BOOST_TEST_REQUIRE(seen.size() == 6u);
  for (std::size_t k = 0; k < 6; ++k) {
    const auto& i = seen[k];
    BOOST_TEST(i.step == k + 1);
    BOOST_TEST(i.epoch == k / 3);
    BOOST_TEST(i.batch == k % 3);
    BOOST_TEST(i.loss == losses[k]);
    BOOST_TEST(i.epoch_end == (k % 3 == 2));
    // evaluated at steps 2 and 4 (eval_every) and 3 and 6 (epoch ends), the evaluations counted 1, 2, 3, 4
    const bool eval_here = (k + 1) % 2 == 0 || k % 3 == 2;
    BOOST_TEST(i.evaluated == eval_here);
    BOOST_TEST(std::isnan(i.eval) == !eval_here);
  }
  BOOST_TEST(seen[2].eval == 2.0);
  BOOST_TEST(seen[5].eval == 4.0);
  BOOST_TEST(std::abs(seen[2].epoch_loss - (losses[0] + losses[1] + losses[2]) / 3) <= 1e-15);
  BOOST_TEST(std::isnan(seen[0].epoch_loss));
  BOOST_TEST(seen[5].epoch_loss == result.epoch_loss[1]);
}

BOOST_AUTO_TEST_CASE(evaluation_runs_under_no_grad) {
  One m(2.0);
  nn::SGD opt(m.parameters(), 0.1);
  nn::Trainer trainer(m, opt, quiet(2));
  std::vector<bool> recording_in_eval, recording_in_step;
  trainer.run(
      2,
      [&](const nn::TrainStep&) {
        recording_in_step.push_back(grad_enabled());
        return m.loss();
      },
      [&] {
        recording_in_eval.push_back(grad_enabled());
        Tensor l = m.loss();
        BOOST_TEST(!l.requires_grad());  // an owned result: nothing went on the tape
        return l.item();
      });
  BOOST_TEST(recording_in_eval.size() == 2u);
  for (bool on : recording_in_eval) BOOST_TEST(!on);
  for (bool on : recording_in_step) BOOST_TEST(on);
  BOOST_TEST(grad_enabled());  // restored after the run
}

BOOST_AUTO_TEST_CASE(only_rank_0_prints_and_writes_every_rank_resumes) {
  test::TempDir dir("train");
  auto run = [&](int rank, std::size_t max_steps, bool resume, nn::TrainResult* out) {
    One m(1.0);
    nn::SGD opt(m.parameters(), 0.1);
    nn::TrainConfig config;
    config.epochs = 2;
    config.max_steps = max_steps;
    config.progress_every = 0;  // a line every step (rank 0)
    config.rank = rank;
    config.checkpoint = dir.file("ckpt-rank" + std::to_string(rank) + ".npz");
    config.log_csv = dir.file("log-rank" + std::to_string(rank) + ".csv");
    config.resume = resume;
    nn::Trainer trainer(m, opt, config);
    return stdout_of([&] { *out = trainer.run(3, [&](const nn::TrainStep&) { return m.loss(); }, [&] { return 0.0; }); });
  };
  nn::TrainResult r0, r1;
  const std::string said0 = run(0, 0, false, &r0), said1 = run(1, 0, false, &r1);
  BOOST_TEST(said0.find("train step 6/6") != std::string::npos, said0);
  BOOST_TEST(said1.empty(), said1);
  BOOST_TEST(fs::exists(dir.file("ckpt-rank0.npz")));
  BOOST_TEST(fs::exists(dir.file("log-rank0.csv")));
  BOOST_TEST(!fs::exists(dir.file("ckpt-rank1.npz")));
  BOOST_TEST(!fs::exists(dir.file("log-rank1.csv")));
  BOOST_TEST(r0.steps == 6u);
  BOOST_TEST(r1.steps == 6u);
  // A rank other than 0 resumes from the checkpoint rank 0 wrote (same file for all), silently.
  fs::copy_file(dir.file("ckpt-rank0.npz"), dir.file("ckpt-rank1.npz"));
  nn::TrainResult again;
  const std::string said_again = run(1, 0, true, &again);
  BOOST_TEST(again.first_step == 6u);
  BOOST_TEST(said_again.empty(), said_again);
}

BOOST_AUTO_TEST_CASE(stopped_and_resumed_equals_uninterrupted_bit_for_bit) {
  test::TempDir dir("train");
  const Setup s;
  nn::TrainConfig config;
  config.epochs = 3;  // 12 steps
  config.eval_every = 5;
  config.checkpoint_every = 3;

  nn::TrainConfig whole = config;
  whole.log_csv = dir.file("whole.csv");
  whole.checkpoint = dir.file("whole.npz");
  Run a = train_run(s, 1, whole);
  BOOST_TEST(a.result.steps == 12u);
  BOOST_TEST(a.result.finished);
  BOOST_TEST(a.result.epoch_loss.size() == 3u);

  // The same run stopped after step 7 (--max-steps), then resumed in fresh objects built with another
  // initialisation (the checkpoint replaces it).
  nn::TrainConfig part = config;
  part.log_csv = dir.file("part.csv");
  part.checkpoint = dir.file("part.npz");
  part.max_steps = 7;
  Run b1 = train_run(s, 1, part);
  BOOST_TEST(b1.result.steps == 7u);
  BOOST_TEST(!b1.result.finished);
  BOOST_TEST((test::parameter_bytes(*b1.model) != test::parameter_bytes(*a.model)));
  part.max_steps = 0;
  part.resume = true;
  Run b2 = train_run(s, 123, part);
  BOOST_TEST(b2.result.first_step == 7u);
  BOOST_TEST(b2.result.steps == 12u);
  BOOST_TEST((test::parameter_bytes(*b2.model) == test::parameter_bytes(*a.model)));
  BOOST_TEST(test::read_file(part.log_csv) == test::read_file(whole.log_csv));
  BOOST_TEST(b2.result.epoch_loss.back() == a.result.epoch_loss.back());  // epoch 2 spans the stop
  BOOST_TEST(b2.result.last_eval == a.result.last_eval);

  // Killed at step 11 (after the checkpoint of step 9; steps 10 was logged), resumed: the log's step 10
  // is replaced by the resumed run's, and everything agrees again.
  nn::TrainConfig crash = config;
  crash.log_csv = dir.file("crash.csv");
  crash.checkpoint = dir.file("crash.npz");
  BOOST_CHECK_THROW(train_run(s, 1, crash, 11), std::runtime_error);
  BOOST_TEST(test::read_file(crash.log_csv).find("\n10,") != std::string::npos);
  crash.resume = true;
  Run c = train_run(s, 6, crash);
  BOOST_TEST(c.result.first_step == 9u);
  BOOST_TEST((test::parameter_bytes(*c.model) == test::parameter_bytes(*a.model)));
  BOOST_TEST(test::read_file(crash.log_csv) == test::read_file(whole.log_csv));

  // Resuming a finished run does nothing more.
  Run d = train_run(s, 7, crash);
  BOOST_TEST(d.result.first_step == 12u);
  BOOST_TEST((test::parameter_bytes(*d.model) == test::parameter_bytes(*a.model)));
}

// Resuming with other data (another number of batches per epoch) is an Error before anything loads.
BOOST_AUTO_TEST_CASE(resume_with_another_batch_size_is_an_error) {
  test::TempDir dir("train");
  const Setup s;
  nn::TrainConfig config;
  config.checkpoint = dir.file("ckpt.npz");
  config.max_steps = 2;
  train_run(s, 1, config);
  auto model = s.model(4);
  const auto before = test::parameter_bytes(*model);
  nn::Adam opt(model->parameters(), 0.02);
  config.resume = true;
  config.progress_every = -1;
  nn::Trainer trainer(*model, opt, config);
  std::string e;
  try {
    trainer.run(7, [&](const nn::TrainStep&) { return Tensor(); });
  } catch (const Error& err) {
    e = err.what();
  }
  BOOST_TEST(e.find("written by a run with 4 batches per epoch, this one has 7") != std::string::npos, e);
  BOOST_TEST((test::parameter_bytes(*model) == before));
}

BOOST_AUTO_TEST_CASE(resume_without_a_checkpoint_file_starts_fresh) {
  test::TempDir dir("train");
  const Setup s;
  nn::TrainConfig config;
  config.epochs = 1;
  config.checkpoint = dir.file("none-yet.npz");
  config.resume = true;
  Run r = train_run(s, 1, config);
  BOOST_TEST(r.result.first_step == 0u);
  BOOST_TEST(fs::exists(config.checkpoint));
}

BOOST_AUTO_TEST_CASE(bad_checkpoints_are_errors_and_change_nothing) {
  test::TempDir dir("train");
  const Setup s;
  auto model = s.model(1);
  nn::Adam opt(model->parameters(), 0.02);
  nn::save_checkpoint(dir.file("ok.npz"), *model, opt, {{"step", 3}});

  nn::Seq2SeqConfig c;
  c.src_vocab = c.tgt_vocab = s.vocab.size();
  c.embed = 6, c.hidden = 12;  // another size
  Generator gen(2);
  nn::Seq2Seq other(c, gen);
  nn::Adam other_opt(other.parameters(), 0.02);
  const auto before = test::parameter_bytes(other);
  std::string e;
  try {
    nn::load_checkpoint(dir.file("ok.npz"), other, other_opt);
  } catch (const Error& err) {
    e = err.what();
  }
  BOOST_TEST(e.find("is float32 (12, 48) in the model but float32 (10, 40) in the file") != std::string::npos, e);
  BOOST_TEST((test::parameter_bytes(other) == before));

  // The model fits but the optimizer does not (another kind): nothing changes either.
  auto same = s.model(3);
  nn::RMSProp rms(same->parameters(), 0.02);
  const auto same_before = test::parameter_bytes(*same);
  BOOST_CHECK_THROW(nn::load_checkpoint(dir.file("ok.npz"), *same, rms), Error);
  BOOST_TEST((test::parameter_bytes(*same) == same_before));

  // A truncated file.
  {
    std::string all = test::read_file(dir.file("ok.npz"));
    std::ofstream(dir.file("cut.npz"), std::ios::binary) << all.substr(0, all.size() - 100);
  }
  nn::Adam opt3(same->parameters(), 0.02);
  BOOST_CHECK_THROW(nn::load_checkpoint(dir.file("cut.npz"), *same, opt3), Error);
  BOOST_TEST((test::parameter_bytes(*same) == same_before));
  // The loop entries come back.
  auto loop = nn::load_checkpoint(dir.file("ok.npz"), *same, opt3);
  BOOST_TEST(loop.size() == 1u);
  BOOST_TEST(loop[0].first == "step");
  BOOST_TEST(loop[0].second == 3.0);
  BOOST_TEST((test::parameter_bytes(*same) == test::parameter_bytes(*model)));
}

BOOST_AUTO_TEST_CASE(format_duration_reads_well) {
  BOOST_TEST(nn::format_duration(12.4) == "12s");
  BOOST_TEST(nn::format_duration(185) == "3m05s");
  BOOST_TEST(nn::format_duration(3725) == "1h02m");
}

BOOST_AUTO_TEST_SUITE_END()
