#include "tapegrad/nn/distributed/dist.hpp"

#include <mpi.h>

#include <algorithm>
#include <climits>
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "tapegrad/autograd/leaf.hpp"
#include "tapegrad/nn/models/module.hpp"

namespace tapegrad::dist {

namespace {

// The gradient buffers, one per dtype, grown when needed and reused from step to step.
struct State {
  bool we_initialised = false;
  std::vector<float> f32;
  std::vector<double> f64;
  std::vector<unsigned char> has_grad;
};
State& state() {
  static State s;
  return s;
}

bool mpi_active() {
  int init = 0, fin = 0;
  MPI_Initialized(&init);
  MPI_Finalized(&fin);
  return init && !fin;
}

std::string where() {
  if (!mpi_active()) return " (MPI not initialised)";
  int r = -1, n = -1;
  MPI_Comm_rank(MPI_COMM_WORLD, &r);
  MPI_Comm_size(MPI_COMM_WORLD, &n);
  return " (rank " + std::to_string(r) + " of " + std::to_string(n) + ")";
}

[[noreturn]] void fail(const std::string& what) { throw Error("dist: " + what + where()); }

void require_active(const char* who) {
  if (!mpi_active()) throw Error(std::string("dist: ") + who + ": MPI is not initialised; call tapegrad::dist::init first");
}

// A failed MPI call becomes an Error naming the call and MPI's own message.
void check(int rc, const char* call) {
  if (rc == MPI_SUCCESS) return;
  char msg[MPI_MAX_ERROR_STRING];
  int len = 0;
  if (MPI_Error_string(rc, msg, &len) != MPI_SUCCESS) len = std::snprintf(msg, sizeof msg, "error code %d", rc);
  fail(std::string(call) + " failed: " + std::string(msg, std::size_t(len)));
}

template <class T> MPI_Datatype mpi_type();
template <> MPI_Datatype mpi_type<float>() { return MPI_FLOAT; }
template <> MPI_Datatype mpi_type<double>() { return MPI_DOUBLE; }

// MPI counts are int: long buffers go in chunks.
template <class T> void allreduce_sum_inplace(T* data, std::size_t n, const char* who) {
  for (std::size_t off = 0; off < n; off += INT_MAX) {
    const int count = int(std::min<std::size_t>(n - off, INT_MAX));
    check(MPI_Allreduce(MPI_IN_PLACE, data + off, count, mpi_type<T>(), MPI_SUM, MPI_COMM_WORLD), who);
  }
}

void broadcast_bytes(void* data, std::size_t bytes, int root, const char* who) {
  auto* p = static_cast<char*>(data);
  for (std::size_t off = 0; off < bytes; off += INT_MAX) {
    const int count = int(std::min<std::size_t>(bytes - off, INT_MAX));
    check(MPI_Bcast(p + off, count, MPI_BYTE, root, MPI_COMM_WORLD), who);
  }
}

void check_params(const std::vector<Tensor>& params, const char* who) {
  for (std::size_t i = 0; i < params.size(); ++i) {
    const Tensor& p = params[i];
    if (!p.defined()) fail(std::string(who) + ": parameter " + std::to_string(i) + " is undefined");
    if (!p.is_leaf())
      fail(std::string(who) + ": parameter " + std::to_string(i) + " of shape " + p.shape().str() +
           " is a recorded (tape) tensor, not an owned leaf");
  }
}

// What every rank must agree on before a collective over the parameters: one allreduce (MAX) of the
// values and their negatives gives the maximum and minimum of each over the ranks. Returns the smallest
// number of parameters with a gradient on any rank (params.size() when every rank has every gradient).
std::int64_t agree_on(const std::vector<Tensor>& params, std::int64_t with_grad, const char* who) {
  std::int64_t n32 = 0, n64 = 0;
  std::uint64_t h = 1469598103934665603ull;  // FNV-1a over (dtype, rank, dims) of each parameter
  auto mix = [&h](std::uint64_t v) {
    h ^= v;
    h *= 1099511628211ull;
  };
  for (const Tensor& p : params) {
    (p.dtype() == DType::f32 ? n32 : n64) += std::int64_t(p.numel());
    mix(std::uint64_t(p.dtype()));
    mix(p.rank());
    for (std::size_t d : p.shape()) mix(d);
  }
  const std::int64_t hash = std::int64_t(h >> 1);  // non-negative, so that -hash does not overflow
  std::int64_t v[10] = {std::int64_t(params.size()), n32, n64, hash, with_grad};
  for (int i = 0; i < 5; ++i) v[5 + i] = -v[i];
  check(MPI_Allreduce(MPI_IN_PLACE, v, 10, MPI_INT64_T, MPI_MAX, MPI_COMM_WORLD), who);
  if (v[0] != -v[5] || v[1] != -v[6] || v[2] != -v[7] || v[3] != -v[8])
    fail(std::string(who) + ": the ranks pass different parameter lists (parameters " + std::to_string(-v[5]) + ".." +
         std::to_string(v[0]) + ", float32 elements " + std::to_string(-v[6]) + ".." + std::to_string(v[1]) +
         ", float64 elements " + std::to_string(-v[7]) + ".." + std::to_string(v[2]) +
         (v[0] == -v[5] && v[1] == -v[6] && v[2] == -v[7] ? ", same sizes but the shapes or dtypes differ" : "") + "); this rank has " + std::to_string(params.size()) +
         " parameters, " + std::to_string(n32) + " float32 and " + std::to_string(n64) + " float64 elements");
  return -v[9];
}

template <class T> void pack_reduce_unpack(const std::vector<Tensor>& params, const std::vector<unsigned char>& use,
                                           std::vector<T>& buf, const char* who) {
  std::size_t n = 0;
  for (std::size_t i = 0; i < params.size(); ++i)
    if (use[i] && params[i].dtype() == dtype_of<T>::value) n += params[i].numel();
  if (n == 0) return;
  if (buf.size() < n) buf.resize(n);
  std::size_t off = 0;
  for (std::size_t i = 0; i < params.size(); ++i) {
    if (!use[i] || params[i].dtype() != dtype_of<T>::value) continue;
    const Tensor g = params[i].grad();
    const std::size_t k = params[i].numel();
    if (g.defined()) std::memcpy(buf.data() + off, g.template data<T>(), k * sizeof(T));
    else std::fill(buf.data() + off, buf.data() + off + k, T(0));
    off += k;
  }
  allreduce_sum_inplace(buf.data(), n, who);
  const T inv = T(1) / T(size());
  off = 0;
  for (std::size_t i = 0; i < params.size(); ++i) {
    if (!use[i] || params[i].dtype() != dtype_of<T>::value) continue;
    const Tensor& p = params[i];
    if (!p.grad().defined()) {
      // Some other rank has a gradient for it: this rank gets a buffer, as a backward would allocate it.
      tapegrad::detail::TensorInternals::leaf(p)->grad = tapegrad::detail::TensorInternals::leaf(zeros(p.shape(), p.dtype()));
    }
    Tensor g = p.grad();
    T* dst = g.template data<T>();
    const T* src = buf.data() + off;
    const std::size_t k = p.numel();
    // Multiplying by 1/size is exact for a power-of-two size and within one rounding otherwise; every
    // rank does the same operations on the same sums, so the results stay identical across ranks.
    for (std::size_t j = 0; j < k; ++j) dst[j] = src[j] * inv;
    off += k;
  }
}

std::int64_t count_with_grad(const std::vector<Tensor>& params) {
  std::int64_t c = 0;
  for (const Tensor& p : params) c += p.grad().defined() ? 1 : 0;
  return c;
}

}  // namespace

// ---- setup -----------------------------------------------------------------------------------------

void init(int* argc, char*** argv) {
  int already = 0, fin = 0;
  MPI_Initialized(&already);
  MPI_Finalized(&fin);
  if (fin) throw Error("dist: init: MPI was already finalised (MPI cannot be initialised twice in a process)");
  if (!already) {
    int provided = 0;
    const int rc = MPI_Init_thread(argc, argv, MPI_THREAD_FUNNELED, &provided);
    if (rc != MPI_SUCCESS) throw Error("dist: init: MPI_Init_thread failed with code " + std::to_string(rc));
    state().we_initialised = true;
  }
  check(MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN), "init: MPI_Comm_set_errhandler");
}

void finalize() {
  if (!mpi_active() || !state().we_initialised) return;
  check(MPI_Barrier(MPI_COMM_WORLD), "finalize: MPI_Barrier");
  check(MPI_Finalize(), "finalize: MPI_Finalize");
  state() = State{};
}

bool initialized() { return mpi_active(); }

int rank() {
  require_active("rank()");
  int r = 0;
  check(MPI_Comm_rank(MPI_COMM_WORLD, &r), "rank(): MPI_Comm_rank");
  return r;
}

int size() {
  require_active("size()");
  int n = 0;
  check(MPI_Comm_size(MPI_COMM_WORLD, &n), "size(): MPI_Comm_size");
  return n;
}

void barrier() {
  require_active("barrier()");
  check(MPI_Barrier(MPI_COMM_WORLD), "barrier(): MPI_Barrier");
}

// ---- gradients and parameters -----------------------------------------------------------------------

void allreduce_gradients(const std::vector<Tensor>& params) {
  const char* who = "allreduce_gradients";
  require_active(who);
  check_params(params, who);
  const std::int64_t have = count_with_grad(params);
  const std::int64_t min_have = agree_on(params, have, who);
  State& s = state();
  s.has_grad.assign(params.size(), 1);
  if (min_have < std::int64_t(params.size())) {
    // Some rank lacks some gradient: agree on which parameters any rank has one for (MAX of flags).
    for (std::size_t i = 0; i < params.size(); ++i) s.has_grad[i] = params[i].grad().defined() ? 1 : 0;
    for (std::size_t off = 0; off < s.has_grad.size(); off += INT_MAX) {
      const int count = int(std::min<std::size_t>(s.has_grad.size() - off, INT_MAX));
      check(MPI_Allreduce(MPI_IN_PLACE, s.has_grad.data() + off, count, MPI_UNSIGNED_CHAR, MPI_MAX, MPI_COMM_WORLD),
            "allreduce_gradients: MPI_Allreduce of the gradient flags");
    }
  }
  pack_reduce_unpack<float>(params, s.has_grad, s.f32, "allreduce_gradients: MPI_Allreduce (float32)");
  pack_reduce_unpack<double>(params, s.has_grad, s.f64, "allreduce_gradients: MPI_Allreduce (float64)");
}

void allreduce_gradients(const nn::Module& module) { allreduce_gradients(module.parameters()); }

void broadcast_parameters(const std::vector<Tensor>& params, int root) {
  const char* who = "broadcast_parameters";
  require_active(who);
  if (root < 0 || root >= size())
    fail(std::string(who) + ": root " + std::to_string(root) + " is not a rank (0.." + std::to_string(size() - 1) + ")");
  check_params(params, who);
  agree_on(params, 0, who);
  // One broadcast per parameter: this runs once at the start, so a packed buffer would save little.
  for (const Tensor& p : params)
    broadcast_bytes(p.raw_data(), p.numel() * dtype_size(p.dtype()), root, "broadcast_parameters: MPI_Bcast");
}

void broadcast_parameters(const nn::Module& module, int root) { broadcast_parameters(module.parameters(), root); }

void allreduce_sum(std::vector<double>& values) {
  require_active("allreduce_sum");
  std::int64_t v[2] = {std::int64_t(values.size()), -std::int64_t(values.size())};
  check(MPI_Allreduce(MPI_IN_PLACE, v, 2, MPI_INT64_T, MPI_MAX, MPI_COMM_WORLD), "allreduce_sum: MPI_Allreduce");
  if (v[0] != -v[1])
    fail("allreduce_sum: the ranks pass different lengths (" + std::to_string(-v[1]) + ".." + std::to_string(v[0]) +
         "; this rank " + std::to_string(values.size()) + ")");
  allreduce_sum_inplace(values.data(), values.size(), "allreduce_sum: MPI_Allreduce");
}

double allreduce_sum(double value) {
  std::vector<double> v{value};
  allreduce_sum(v);
  return v[0];
}

void broadcast(std::vector<double>& values, int root) {
  require_active("broadcast");
  if (root < 0 || root >= size())
    fail("broadcast: root " + std::to_string(root) + " is not a rank (0.." + std::to_string(size() - 1) + ")");
  std::int64_t v[2] = {std::int64_t(values.size()), -std::int64_t(values.size())};
  check(MPI_Allreduce(MPI_IN_PLACE, v, 2, MPI_INT64_T, MPI_MAX, MPI_COMM_WORLD), "broadcast: MPI_Allreduce");
  if (v[0] != -v[1])
    fail("broadcast: the ranks pass different lengths (" + std::to_string(-v[1]) + ".." + std::to_string(v[0]) +
         "; this rank " + std::to_string(values.size()) + ")");
  broadcast_bytes(values.data(), values.size() * sizeof(double), root, "broadcast: MPI_Bcast");
}

// ---- sampler ---------------------------------------------------------------------------------------

nn::DistributedSampler sampler(std::size_t n, std::uint64_t seed, bool shuffle, bool drop_last) {
  return nn::DistributedSampler(n, seed, shuffle, drop_last, rank(), size());
}

// ---- ending the job --------------------------------------------------------------------------------

void abort(const std::string& why, int exit_code) {
  if (mpi_active()) {
    int r = -1, n = -1;  // no check(): this must not throw
    MPI_Comm_rank(MPI_COMM_WORLD, &r);
    MPI_Comm_size(MPI_COMM_WORLD, &n);
    std::fprintf(stderr, "dist: rank %d of %d: %s\n", r, n, why.c_str());
    std::fflush(stderr);
    MPI_Abort(MPI_COMM_WORLD, exit_code);
  } else {
    std::fprintf(stderr, "dist: %s\n", why.c_str());
    std::fflush(stderr);
  }
  std::exit(exit_code);  // MPI_Abort does not return; this is for the case without MPI
}

}  // namespace tapegrad::dist
