// nn::save under SIGKILL: a child process saves a large checkpoint over and over (each save with new
// values); the parent kills it at random moments. After every kill the file at the path must load and
// hold one complete save (every value equal, from a save no older than the last one seen), and at most
// the killed child's temporary file may be left beside it (the next save removes it).
#include <boost/test/unit_test.hpp>

#include <dirent.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <random>
#include <string>
#include <thread>

#include <tapegrad/nn/models/module.hpp>
#include <tapegrad/nn/training/serialize.hpp>

using namespace tapegrad;

BOOST_AUTO_TEST_SUITE(save_kill)

namespace {

// 16 MB of float32 parameters in three tensors.
struct Big : nn::Module {
  Tensor a, b, c;
  Big() {
    a = register_parameter("a", zeros({1024, 2048}, DType::f32));
    b = register_parameter("b", zeros({1024, 1024}, DType::f32));
    c = register_parameter("nested.c", zeros({1024, 1024}, DType::f32));
  }
  void fill(double v) {
    for (Tensor t : parameters()) {
      float* p = t.data<float>();
      for (std::size_t i = 0; i < t.numel(); ++i) p[i] = static_cast<float>(v);
    }
  }
};

// The single value every element of the loaded file holds; fails the test when they differ.
double loaded_value(const std::string& path) {
  Big m;
  m.fill(-1);
  nn::load(m, path);
  const double v = m.a.data<float>()[0];
  for (const Tensor& t : m.parameters()) {
    const float* p = t.data<float>();
    for (std::size_t i = 0; i < t.numel(); ++i)
      if (p[i] != v) {
        BOOST_TEST(false, "a torn checkpoint: element " << i << " is " << p[i] << ", element 0 is " << v);
        return v;
      }
  }
  return v;
}

int count_temporaries(const std::string& dir, const std::string& prefix) {
  int n = 0;
  DIR* d = opendir(dir.c_str());
  while (dirent* e = d ? readdir(d) : nullptr)
    if (std::string(e->d_name).rfind(prefix, 0) == 0) ++n;
  if (d) closedir(d);
  return n;
}

}  // namespace

BOOST_AUTO_TEST_CASE(kill_during_save_leaves_the_previous_file) {
  // On tmpfs where there is one: a SIGKILL (unlike a power cut) leaves the page cache, so what is tested
  // is the write-rename protocol, and fsync costs nothing there (on a busy disk a 16 MB fsync took 2 s).
  std::string dir_template = access("/dev/shm", W_OK) == 0 ? "/dev/shm/tapegrad_save_kill_XXXXXX"
                                                             : "/tmp/tapegrad_save_kill_XXXXXX";
  BOOST_TEST_REQUIRE(mkdtemp(dir_template.data()) != nullptr);
  const std::string dir = dir_template.c_str(), path = dir + "/ckpt.npz", temp_prefix = "ckpt.npz.tmp-";

  // The first complete file, and the time one save takes here.
  Big m;
  m.fill(0);
  const auto t0 = std::chrono::steady_clock::now();
  nn::save(m, path);
  const double save_ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();

  std::mt19937_64 rng(20261201);
  // Kill anywhere in the child's first two saves (timed from when its setup is done): before, during and
  // after the rename, about half of the kills after a completed save.
  std::uniform_real_distribution<double> delay_ms(0.0, 2.0 * save_ms + 1.0);
  const int trials = 50;
  double last = 0;
  int changed = 0, max_temporaries = 0;
  for (int trial = 0; trial < trials; ++trial) {
    const double start = last + 1;
    int ready[2];
    BOOST_TEST_REQUIRE(pipe(ready) == 0);
    const pid_t pid = fork();
    BOOST_TEST_REQUIRE(pid >= 0);
    if (pid == 0) {  // the child: save start, start + 1, ... until killed
      try {
        Big child;
        child.fill(start);
        if (write(ready[1], "r", 1) != 1) _exit(1);
        for (double v = start;; v += 1) {
          child.fill(v);
          nn::save(child, path);
        }
      } catch (...) {
      }
      _exit(1);
    }
    close(ready[1]);
    char byte = 0;
    BOOST_TEST_REQUIRE(read(ready[0], &byte, 1) == 1);  // the child is about to save
    close(ready[0]);
    std::this_thread::sleep_for(std::chrono::duration<double, std::milli>(delay_ms(rng)));
    kill(pid, SIGKILL);
    int status = 0;
    waitpid(pid, &status, 0);
    BOOST_TEST_REQUIRE((WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL), "the child ended on its own");

    const double v = loaded_value(path);
    BOOST_TEST(v >= last, "trial " << trial << ": the file went back from save " << last << " to " << v);
    BOOST_TEST((v == last || v >= start), "trial " << trial << ": value " << v << " was never saved");
    changed += v != last;
    last = v;
    const int temporaries = count_temporaries(dir, temp_prefix);
    max_temporaries = std::max(max_temporaries, temporaries);
    BOOST_TEST(temporaries <= 1, "trial " << trial << ": " << temporaries << " temporary files beside the checkpoint");
  }
  BOOST_TEST_MESSAGE("save of 16 MB: " << save_ms << " ms; " << trials << " kills, " << changed
                                       << " after a new save completed; at most " << max_temporaries
                                       << " temporary file(s) left by a kill");
  BOOST_TEST(changed > 0);  // some kills came after a completed save, so the check saw new files too
  // A save by a live process removes what the killed ones left.
  nn::save(m, path);
  BOOST_TEST(count_temporaries(dir, temp_prefix) == 0);
  BOOST_TEST(loaded_value(path) == 0.0);
  std::remove(path.c_str());
  rmdir(dir.c_str());
}

BOOST_AUTO_TEST_SUITE_END()
