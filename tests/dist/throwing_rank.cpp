// A job in which one rank fails while the others wait in a collective: the job must end (non-zero exit,
// the failing rank's message), not hang. Run by ctest through tests/dist/expect_abort.cmake.
//   guarded    the body runs in dist::guarded(): the exception becomes dist::abort -> MPI_Abort
//   unguarded  the exception escapes main (std::terminate, SIGABRT): Open MPI's launcher ends the job
#include <tapegrad/nn/distributed/dist.hpp>
#include <tapegrad/tapegrad.hpp>

#include <cstdio>
#include <string>

using namespace tapegrad;

namespace {

int body() {
  Tensor w = parameter(ones({4, 3}, DType::f32));
  for (int step = 0; step < 3; ++step) {
    w.zero_grad();
    backward(sum(w * w));
    if (dist::rank() == dist::size() - 1 && step == 1)
      throw Error("injected failure on the last rank at step 1 (tests/dist/throwing_rank.cpp)");
    dist::allreduce_gradients({w});  // the other ranks wait here for the failed one
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  const std::string mode = argc > 1 ? argv[1] : "guarded";
  dist::init(&argc, &argv);
  if (dist::size() < 2) std::printf("throwing_rank: one rank only, the failure has no one to block\n");
  const int rc = mode == "unguarded" ? body() : dist::guarded(body);
  dist::finalize();
  return rc;
}
