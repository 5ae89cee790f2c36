// Saving and loading a Module's parameters as .npz: round trips, NumPy interoperability, damaged and
// mismatched files (an Error, no parameter changed), and the atomic write.
#include <boost/test/unit_test.hpp>

#include <signal.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>

#include <tapegrad/nn/models/linear.hpp>
#include <tapegrad/nn/training/serialize.hpp>

#include "support/files.hpp"
#include "support/xt.hpp"

using namespace tapegrad;
using namespace tapegrad::test;
namespace fs = std::filesystem;

namespace {

// A nested module: enc.W (3,4), enc.b (4), dec.W (4,2), scale () (rank 0), table (2,2,3).
struct Net : nn::Module {
  nn::Linear enc, dec;
  Tensor scale, table;
  Net(std::uint64_t seed, DType dtype, std::size_t hidden = 4)
      : Net(std::make_shared<Generator>(seed), dtype, hidden) {}

 private:
  Net(std::shared_ptr<Generator> gen, DType dtype, std::size_t hidden)
      : enc(3, hidden, *gen, true, dtype), dec(hidden, 2, *gen, false, dtype) {
    register_module("enc", enc);
    register_module("dec", dec);
    scale = register_parameter("scale", scalar(gen->normal(), dtype));
    table = register_parameter("table", randn({2, 2, 3}, *gen, 1.0, dtype));
  }
};

// Every parameter's values, in order.
std::vector<std::vector<double>> snapshot(const nn::Module& m) {
  std::vector<std::vector<double>> out;
  for (auto& [name, t] : m.named_parameters()) out.push_back(t.to_vector());
  return out;
}

void write_bytes(const std::string& path, const std::string& bytes) {
  std::ofstream f(path, std::ios::binary | std::ios::trunc);
  f.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

// /usr/bin/python3 with NumPy, or a failing test that says what to install.
bool require_numpy() {
  const bool ok = std::system("/usr/bin/python3 -c 'import numpy' >/dev/null 2>&1") == 0;
  BOOST_TEST(ok, "/usr/bin/python3 with NumPy is needed to check .npz interoperability: install python3-numpy "
                 "(apt-get install python3-numpy, or bash scripts/install-deps.sh)");
  return ok;
}

int run_python(const std::string& script_path, const std::string& script) {
  write_bytes(script_path, script);
  return std::system(("/usr/bin/python3 " + script_path).c_str());
}

// Loading must fail with an Error whose message holds every fragment, and leave the module as it was.
void expect_load_error(nn::Module& m, const std::string& path, std::initializer_list<std::string> fragments) {
  const auto before = snapshot(m);
  expect_error([&] { nn::load(m, path); }, fragments);
  BOOST_TEST((snapshot(m) == before), "a failed load changed a parameter");
}

}  // namespace

BOOST_AUTO_TEST_SUITE(serialize)

BOOST_AUTO_TEST_CASE(round_trip_float64_and_float32) {
  test::TempDir dir("serialize");
  for (DType d : {DType::f64, DType::f32}) {
    BOOST_TEST_CONTEXT(dtype_name(d)) {
      Net a(1, d), b(2, d);
      BOOST_REQUIRE(snapshot(a) != snapshot(b));
      const std::string path = dir / (std::string("net_") + dtype_name(d) + ".npz");
      nn::save(a, path);
      Tensor handle = b.enc.W;  // taken before the load: must see the loaded values
      const void* buffer = b.enc.W.raw_data();
      nn::load(b, path);
      BOOST_TEST((snapshot(b) == snapshot(a)));  // bit for bit
      BOOST_TEST(handle.to_vector() == a.enc.W.to_vector());
      BOOST_TEST(b.enc.W.raw_data() == buffer);  // in place
      BOOST_TEST((b.enc.W.dtype() == d));
    }
  }
  BOOST_TEST(dir.entries() == 2u);  // no temporary files left behind
}

BOOST_AUTO_TEST_CASE(saving_over_an_existing_file_replaces_it) {
  test::TempDir dir("serialize");
  const std::string path = dir / "net.npz";
  Net a(1, DType::f64), b(2, DType::f64), c(3, DType::f64);
  nn::save(a, path);
  nn::save(b, path);
  nn::load(c, path);
  BOOST_TEST((snapshot(c) == snapshot(b)));
  BOOST_TEST(dir.entries() == 1u);
}

BOOST_AUTO_TEST_CASE(a_module_without_parameters_round_trips) {
  test::TempDir dir("serialize");
  nn::Module empty;
  nn::save(empty, dir / "empty.npz");
  nn::load(empty, dir / "empty.npz");
  Net a(1, DType::f64);
  expect_load_error(a, dir / "empty.npz", {"empty.npz", "'enc.W' (3, 4) is missing"});
}

BOOST_AUTO_TEST_CASE(numpy_reads_the_file_and_writes_one_we_read) {
  if (!require_numpy()) return;
  test::TempDir dir("serialize");
  for (DType d : {DType::f64, DType::f32}) {
    BOOST_TEST_CONTEXT(dtype_name(d)) {
      Net a(5, d);
      const std::string ours = dir / "ours.npz", doubled = dir / "doubled.npz", compressed = dir / "compressed.npz";
      nn::save(a, ours);
      // NumPy checks names, dtypes, shapes and values (written out with repr, exact), then writes 2x the values
      // with np.savez and with np.savez_compressed (deflate).
      std::string expect = "{";
      for (auto& [name, t] : a.named_parameters()) {
        std::string vals = "[";
        for (double v : t.to_vector()) {
          char buf[40];
          std::snprintf(buf, sizeof buf, "%.17g,", v);
          vals += buf;
        }
        expect += "'" + name + "': (" + "(" + [&] {
          std::string s;
          for (std::size_t k = 0; k < t.rank(); ++k) s += std::to_string(t.shape()[k]) + ",";
          return s;
        }() + "), " + vals + "]),";
      }
      expect += "}";
      const std::string descr = d == DType::f64 ? "<f8" : "<f4";
      const std::string script =
          "import numpy as np, sys\n"
          "expect = " + expect + "\n"
          "z = np.load('" + ours + "')\n"
          "assert sorted(z.files) == sorted(expect), z.files\n"
          "out = {}\n"
          "for k, (shape, vals) in expect.items():\n"
          "    a = z[k]\n"
          "    assert a.dtype == np.dtype('" + descr + "'), (k, a.dtype)\n"
          "    assert a.shape == shape, (k, a.shape, shape)\n"
          "    assert a.flags['C_CONTIGUOUS']\n"
          "    assert [float(v) for v in a.ravel()] == [float(np.array(v, dtype=a.dtype)) for v in vals], k\n"
          "    out[k] = (a * 2).astype(a.dtype)\n"  // a rank-0 float32 times 2 would promote to float64
          "np.savez('" + doubled + "', **out)\n"
          "np.savez_compressed('" + compressed + "', **out)\n";
      BOOST_REQUIRE(run_python(dir / "check.py", script) == 0);
      for (const std::string& path : {doubled, compressed}) {
        Net b(6, d);
        nn::load(b, path);
        auto want = snapshot(a);
        for (auto& v : want)
          for (double& x : v) x *= 2;
        BOOST_TEST((snapshot(b) == want), path);
      }
    }
  }
}

BOOST_AUTO_TEST_CASE(truncated_file_is_an_error_and_changes_nothing) {
  test::TempDir dir("serialize");
  const std::string path = dir / "net.npz";
  Net a(1, DType::f64), b(2, DType::f64);
  nn::save(a, path);
  const std::string bytes = test::read_file(path);
  write_bytes(path, bytes.substr(0, bytes.size() / 2));
  expect_load_error(b, path, {"nn::load", "net.npz", "truncated or corrupt"});
  write_bytes(path, "");
  expect_load_error(b, path, {"nn::load", "net.npz"});
  write_bytes(path, bytes.substr(0, bytes.size() - 1));  // the end record cut short
  expect_load_error(b, path, {"nn::load", "net.npz"});
}

BOOST_AUTO_TEST_CASE(corrupt_bytes_are_an_error_and_change_nothing) {
  test::TempDir dir("serialize");
  const std::string path = dir / "net.npz";
  Net a(1, DType::f64), b(2, DType::f64);
  nn::save(a, path);
  const std::string bytes = test::read_file(path);
  // A flipped bit in the values of table (found by its bytes): the entry's CRC no longer matches.
  const auto& table = a.table;
  const std::string raw(static_cast<const char*>(table.raw_data()), 8 * table.numel());
  const auto at = bytes.find(raw);
  BOOST_REQUIRE(at != std::string::npos);
  std::string bad = bytes;
  bad[at + raw.size() / 2] ^= 0x10;
  write_bytes(path, bad);
  expect_load_error(b, path, {"nn::load", "net.npz", "table.npy", "corrupt"});
  // A damaged .npy header (the magic of the first entry): also caught by the CRC.
  bad = bytes;
  bad[bytes.find("\x93NUMPY") + 1] = 'X';
  write_bytes(path, bad);
  expect_load_error(b, path, {"nn::load", "net.npz", "corrupt"});
  // Garbage that is not a zip at all.
  write_bytes(path, std::string(300, 'x'));
  expect_load_error(b, path, {"nn::load", "net.npz", "not a valid .npz"});
}

BOOST_AUTO_TEST_CASE(malformed_npy_entries_are_errors) {
  if (!require_numpy()) return;
  test::TempDir dir("serialize");
  Net a(1, DType::f64);
  nn::save(a, dir / "net.npz");
  // Valid zips (correct CRCs) whose entries are not valid .npy arrays of the right size.
  const std::string script =
      "import zipfile, numpy as np\n"
      "src = np.load('" + dir / "net.npz" + "')\n"
      "def write(path, name, data):\n"
      "    with zipfile.ZipFile(path, 'w') as z:\n"
      "        for k in src.files:\n"
      "            if k + '.npy' != name:\n"
      "                with z.open(k + '.npy', 'w') as f: np.lib.format.write_array(f, src[k])\n"
      "        z.writestr(name, data)\n"
      "write('" + dir / "magic.npz" + "', 'dec.W.npy', b'not an array at all')\n"
      "import io\n"
      "b = io.BytesIO(); np.lib.format.write_array(b, src['dec.W']); full = b.getvalue()\n"
      "write('" + dir / "short.npz" + "', 'dec.W.npy', full[:-8])\n"
      "b = io.BytesIO(); np.lib.format.write_array(b, np.asfortranarray(src['dec.W'])); fort = b.getvalue()\n"
      "write('" + dir / "fortran.npz" + "', 'dec.W.npy', fort)\n"
      "b = io.BytesIO(); np.lib.format.write_array(b, src['dec.W'].astype('>f8')); big = b.getvalue()\n"
      "write('" + dir / "bigendian.npz" + "', 'dec.W.npy', big)\n";
  BOOST_REQUIRE(run_python(dir / "make.py", script) == 0);
  Net b(2, DType::f64);
  expect_load_error(b, dir / "magic.npz", {"magic.npz", "dec.W.npy", "bad magic"});
  expect_load_error(b, dir / "short.npz", {"short.npz", "dec.W.npy", "bytes of data, not 64"});
  expect_load_error(b, dir / "fortran.npz", {"fortran.npz", "'dec.W'", "fortran order"});
  expect_load_error(b, dir / "bigendian.npz", {"bigendian.npz", "'dec.W'", "'>f8'"});
}

BOOST_AUTO_TEST_CASE(mismatched_shapes_dtypes_and_names_are_errors) {
  test::TempDir dir("serialize");
  const std::string path = dir / "net.npz";
  Net a(1, DType::f64);
  nn::save(a, path);
  Net wider(2, DType::f64, 5);  // enc.W (3,5), enc.b (5), dec.W (5,2)
  expect_load_error(wider, path, {"nn::load", "net.npz", "'enc.W' is float64 (3, 5) in the module but '<f8' (3, 4) in the file",
                                  "'dec.W' is float64 (5, 2) in the module but '<f8' (4, 2)", "no parameter was changed"});
  Net single(2, DType::f32);
  expect_load_error(single, path, {"'enc.W' is float32 (3, 4) in the module but '<f8' (3, 4) in the file"});

  // A module with one parameter more (missing from the file) and one with one parameter less (extra in it).
  struct Bigger : Net {
    Tensor extra;
    Bigger() : Net(3, DType::f64) { extra = register_parameter("extra", zeros({7}, DType::f64)); }
  } bigger;
  expect_load_error(bigger, path, {"net.npz", "parameter 'extra' (7,) is missing from the file"});
  struct Smaller : nn::Module {
    Generator gen{4};
    nn::Linear enc{3, 4, gen, true, DType::f64};
    Smaller() { register_module("enc", enc); }
  } smaller;
  expect_load_error(smaller, path, {"net.npz", "unexpected entry 'dec.W.npy'", "unexpected entry 'scale.npy'"});
}

BOOST_AUTO_TEST_CASE(missing_file_is_an_error) {
  test::TempDir dir("serialize");
  Net b(2, DType::f64);
  expect_load_error(b, dir / "nope.npz", {"nn::load", "nope.npz", "cannot open", "No such file"});
  expect_load_error(b, dir.path.string(), {"nn::load", "not a regular file"});
}

BOOST_AUTO_TEST_CASE(save_into_a_missing_directory_is_an_error_and_writes_nothing) {
  test::TempDir dir("serialize");
  Net a(1, DType::f64);
  const std::string path = dir / "no_such_dir/net.npz";
  expect_error([&] { nn::save(a, path); }, {"nn::save", "no_such_dir/net.npz", "cannot create a temporary file", "No such file"});
  BOOST_TEST(!fs::exists(path));
  BOOST_TEST(dir.entries() == 0u);
}

BOOST_AUTO_TEST_CASE(a_failed_write_leaves_the_old_file_intact) {
  // The disk fills up mid-write (simulated with a file-size limit, which binds root too): the error names
  // the file, the temporary file is removed and the previous archive is still there, whole.
  test::TempDir dir("serialize");
  const std::string path = dir / "net.npz";
  Net old(1, DType::f64), big(2, DType::f64, 64), check(3, DType::f64);
  nn::save(old, path);
  const std::string before = test::read_file(path);
  bool threw = false;
  std::string message;
  {
    struct rlimit saved {};
    BOOST_REQUIRE(::getrlimit(RLIMIT_FSIZE, &saved) == 0);
    struct sigaction ignore {}, previous {};
    ignore.sa_handler = SIG_IGN;
    ::sigaction(SIGXFSZ, &ignore, &previous);
    struct rlimit small = saved;
    small.rlim_cur = 1024;  // the new archive is about 3 KB
    BOOST_REQUIRE(::setrlimit(RLIMIT_FSIZE, &small) == 0);
    try {
      nn::save(big, path);
    } catch (const Error& e) {
      threw = true;
      message = e.what();
    }
    ::setrlimit(RLIMIT_FSIZE, &saved);
    ::sigaction(SIGXFSZ, &previous, nullptr);
  }
  BOOST_TEST(threw);
  BOOST_TEST(message.find("nn::save") != std::string::npos, message);
  BOOST_TEST(message.find("net.npz") != std::string::npos, message);
  BOOST_TEST(message.find("File too large") != std::string::npos, message);
  BOOST_TEST(test::read_file(path) == before);
  BOOST_TEST(dir.entries() == 1u);  // the temporary file is gone
  nn::load(check, path);
  BOOST_TEST((snapshot(check) == snapshot(old)));
}

BOOST_AUTO_TEST_CASE(a_failed_rename_removes_the_temporary_file) {
  test::TempDir dir("serialize");
  fs::create_directory(dir.path / "occupied");
  fs::create_directory(dir.path / "occupied" / "inside");  // a non-empty directory cannot be renamed over
  Net a(1, DType::f64);
  expect_error([&] { nn::save(a, dir / "occupied"); }, {"nn::save", "occupied", "renaming"});
  BOOST_TEST(fs::is_directory(dir.path / "occupied" / "inside"));
  BOOST_TEST(dir.entries() == 1u);
}

BOOST_AUTO_TEST_SUITE_END()
