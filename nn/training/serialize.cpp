#include "tapegrad/nn/training/serialize.hpp"

#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <unistd.h>
#include <zip.h>

#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>

#if !defined(__BYTE_ORDER__) || __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "nn/training/serialize writes little-endian .npy data ('<f4', '<f8') straight from memory"
#endif

namespace tapegrad::nn {

namespace {

using Bytes = std::vector<char>;

std::string quoted(const std::string& s) { return "'" + s + "'"; }
std::string sys_error() { return std::strerror(errno); }

// ---- .npy (format 1.0 written; 1.0, 2.0 and 3.0 read) -----------------------------------------------

const char npy_magic[] = "\x93NUMPY";
constexpr std::size_t npy_magic_len = 6;

const char* npy_descr(DType d) { return d == DType::f32 ? "<f4" : "<f8"; }

Bytes encode_npy(const Tensor& t) {
  std::string header = "{'descr': '" + std::string(npy_descr(t.dtype())) + "', 'fortran_order': False, 'shape': " +
                       t.shape().str() + ", }";  // Shape::str() is Python's tuple syntax: (), (3,), (2, 3)
  // Magic, version, header length, header padded with spaces and ended by '\n': a multiple of 64 bytes.
  const std::size_t preamble = npy_magic_len + 2 + 2;
  const std::size_t total = (preamble + header.size() + 1 + 63) / 64 * 64;
  header.append(total - preamble - header.size() - 1, ' ');
  header.push_back('\n');
  const std::size_t nbytes = t.numel() * dtype_size(t.dtype());
  Bytes out;
  out.reserve(total + nbytes);
  out.insert(out.end(), npy_magic, npy_magic + npy_magic_len);
  out.push_back(1);
  out.push_back(0);
  out.push_back(static_cast<char>(header.size() & 0xff));
  out.push_back(static_cast<char>((header.size() >> 8) & 0xff));
  out.insert(out.end(), header.begin(), header.end());
  if (nbytes) {
    const char* data = static_cast<const char*>(t.raw_data());
    out.insert(out.end(), data, data + nbytes);
  }
  return out;
}

struct NpyArray {
  std::string descr;
  bool fortran_order = false;
  Shape shape;
  std::size_t data_offset = 0;
};

[[noreturn]] void bad_npy(const std::string& what) { throw Error(what); }

// Parses the header of one .npy entry; throws an Error saying what is wrong.
NpyArray decode_npy_header(const Bytes& b) {
  NpyArray a;
  if (b.size() < npy_magic_len + 4 || std::memcmp(b.data(), npy_magic, npy_magic_len) != 0) bad_npy("not a .npy file (bad magic)");
  const auto u8 = [&](std::size_t i) { return static_cast<std::size_t>(static_cast<unsigned char>(b[i])); };
  const std::size_t major = u8(6);
  std::size_t header_len = 0, start = 0;
  if (major == 1) {
    header_len = u8(8) | u8(9) << 8;
    start = 10;
  } else if (major == 2 || major == 3) {
    if (b.size() < 12) bad_npy("truncated .npy header");
    header_len = u8(8) | u8(9) << 8 | u8(10) << 16 | u8(11) << 24;
    start = 12;
  } else {
    bad_npy(".npy format version " + std::to_string(major) + " is not supported");
  }
  if (start + header_len > b.size()) bad_npy("truncated .npy header");
  const std::string h(b.data() + start, header_len);
  a.data_offset = start + header_len;

  const auto value_of = [&](const std::string& key) {
    const auto k = h.find("'" + key + "'");
    if (k == std::string::npos) bad_npy(".npy header lacks '" + key + "': " + h);
    const auto colon = h.find(':', k);
    if (colon == std::string::npos) bad_npy("malformed .npy header: " + h);
    std::size_t v = colon + 1;
    while (v < h.size() && h[v] == ' ') ++v;
    return v;
  };
  std::size_t v = value_of("descr");
  const auto q = v < h.size() ? h[v] : '\0';
  const auto end = h.find(q, v + 1);
  if ((q != '\'' && q != '"') || end == std::string::npos) bad_npy("malformed descr in .npy header: " + h);
  a.descr = h.substr(v + 1, end - v - 1);

  v = value_of("fortran_order");
  if (h.compare(v, 4, "True") == 0) a.fortran_order = true;
  else if (h.compare(v, 5, "False") != 0) bad_npy("malformed fortran_order in .npy header: " + h);

  v = value_of("shape");
  const auto close = h.find(')', v);
  if (v >= h.size() || h[v] != '(' || close == std::string::npos) bad_npy("malformed shape in .npy header: " + h);
  std::size_t rank = 0;
  for (std::size_t i = v + 1; i < close;) {
    while (i < close && (h[i] == ' ' || h[i] == ',')) ++i;
    if (i >= close) break;
    if (h[i] < '0' || h[i] > '9') bad_npy("malformed shape in .npy header: " + h);
    std::size_t d = 0;
    for (; i < close && h[i] >= '0' && h[i] <= '9'; ++i) {
      if (d > (SIZE_MAX - 9) / 10) bad_npy("shape too large in .npy header: " + h);
      d = d * 10 + static_cast<std::size_t>(h[i] - '0');
    }
    if (++rank > Shape::max_rank) bad_npy("shape of rank > " + std::to_string(Shape::max_rank) + " in .npy header: " + h);
    a.shape.push_back(d);
  }
  return a;
}

// ---- files ------------------------------------------------------------------------------------------

std::string directory_of(const std::string& path) {
  const auto slash = path.find_last_of('/');
  if (slash == std::string::npos) return ".";
  return slash == 0 ? "/" : path.substr(0, slash);
}

// The mode a new file gets: the old target's, else 0666 less the process umask (read without changing it).
mode_t new_file_mode(const std::string& path) {
  struct stat st {};
  if (::stat(path.c_str(), &st) == 0 && S_ISREG(st.st_mode)) return st.st_mode & 07777;
  mode_t mask = 022;
  std::ifstream status("/proc/self/status");
  for (std::string line; std::getline(status, line);)
    if (line.rfind("Umask:", 0) == 0) mask = static_cast<mode_t>(std::stoul(line.substr(6), nullptr, 8));
  return 0666 & ~mask;
}

// Temporary files are named <path>.tmp-<pid>-XXXXXX. A process killed during a save leaves its temporary
// behind; the next save to the same path removes those whose process no longer exists.
void remove_stale_temporaries(const std::string& path) {
  const std::string dir = directory_of(path);
  const auto slash = path.find_last_of('/');
  const std::string prefix = (slash == std::string::npos ? path : path.substr(slash + 1)) + ".tmp-";
  DIR* d = ::opendir(dir.c_str());
  if (!d) return;
  while (const dirent* e = ::readdir(d)) {
    const char* name = e->d_name;
    if (std::strncmp(name, prefix.c_str(), prefix.size()) != 0) continue;
    char* end = nullptr;
    const long pid = std::strtol(name + prefix.size(), &end, 10);
    if (end == name + prefix.size() || *end != '-' || pid <= 0) continue;
    if (::kill(static_cast<pid_t>(pid), 0) == 0 || errno != ESRCH) continue;  // alive, or not ours to judge
    ::unlinkat(::dirfd(d), name, 0);
  }
  ::closedir(d);
}

// Writes bytes to a temporary file beside `path`, fsyncs it, renames it over `path`, fsyncs the directory.
void write_atomically(const std::string& path, const Bytes& bytes) {
  const auto fail = [&](const std::string& what) { throw Error("nn::save: " + quoted(path) + ": " + what); };
  remove_stale_temporaries(path);
  std::string tmp = path + ".tmp-" + std::to_string(::getpid()) + "-XXXXXX";
  const int fd = ::mkstemp(tmp.data());
  if (fd < 0) fail("cannot create a temporary file in " + quoted(directory_of(path)) + ": " + sys_error());
  bool renamed = false;
  struct Cleanup {
    int fd;
    const std::string& tmp;
    bool& renamed;
    ~Cleanup() {
      if (fd >= 0) ::close(fd);
      if (!renamed) ::unlink(tmp.c_str());
    }
  } cleanup{fd, tmp, renamed};

  std::size_t done = 0;
  while (done < bytes.size()) {
    const ssize_t n = ::write(fd, bytes.data() + done, bytes.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) fail("writing " + std::to_string(bytes.size()) + " bytes to " + quoted(tmp) + " failed after " + std::to_string(done) + ": " + sys_error());
    done += static_cast<std::size_t>(n);
  }
  if (::fchmod(fd, new_file_mode(path)) != 0) fail("chmod of " + quoted(tmp) + " failed: " + sys_error());
  if (::fsync(fd) != 0) fail("fsync of " + quoted(tmp) + " failed: " + sys_error());
  const int closing = cleanup.fd;
  cleanup.fd = -1;
  if (::close(closing) != 0) fail("closing " + quoted(tmp) + " failed: " + sys_error());
  if (::rename(tmp.c_str(), path.c_str()) != 0) fail("renaming " + quoted(tmp) + " over it failed: " + sys_error());
  renamed = true;
  // Make the rename itself durable. Best effort: the new file is already in place.
  const int dir = ::open(directory_of(path).c_str(), O_RDONLY | O_DIRECTORY);
  if (dir >= 0) {
    ::fsync(dir);
    ::close(dir);
  }
}

Bytes read_file(const std::string& path) {
  const auto fail = [&](const std::string& what) { throw Error("nn::load: " + quoted(path) + ": " + what); };
  const int fd = ::open(path.c_str(), O_RDONLY);
  if (fd < 0) fail("cannot open: " + sys_error());
  struct Closer {
    int fd;
    ~Closer() { ::close(fd); }
  } closer{fd};
  struct stat st {};
  if (::fstat(fd, &st) != 0) fail("cannot stat: " + sys_error());
  if (!S_ISREG(st.st_mode)) fail("not a regular file");
  Bytes bytes(static_cast<std::size_t>(st.st_size));
  std::size_t done = 0;
  while (done < bytes.size()) {
    const ssize_t n = ::read(fd, bytes.data() + done, bytes.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) fail("read failed: " + sys_error());
    if (n == 0) break;
    done += static_cast<std::size_t>(n);
  }
  bytes.resize(done);
  return bytes;
}

// ---- zip --------------------------------------------------------------------------------------------

struct ZipError {
  zip_error_t e;
  ZipError() { zip_error_init(&e); }
  ~ZipError() { zip_error_fini(&e); }
  std::string str() { return zip_error_strerror(&e); }
};

// An empty zip archive: only the end-of-central-directory record (libzip writes nothing for no entries).
Bytes empty_zip() {
  Bytes b(22, 0);
  std::memcpy(b.data(), "PK\x05\x06", 4);
  return b;
}

Bytes build_archive(const std::string& path, const std::vector<std::pair<std::string, Bytes>>& entries) {
  const auto fail = [&](const std::string& what) { throw Error("nn::save: " + quoted(path) + ": " + what); };
  if (entries.empty()) return empty_zip();
  ZipError err;
  zip_source_t* mem = zip_source_buffer_create(nullptr, 0, 0, &err.e);
  if (!mem) fail("libzip: " + err.str());
  zip_source_keep(mem);  // outlives zip_close, which writes the archive into it
  struct Release {
    zip_source_t* s;
    ~Release() { zip_source_free(s); }
  } release{mem};
  zip_t* za = zip_open_from_source(mem, ZIP_TRUNCATE, &err.e);
  if (!za) fail("libzip: " + err.str());
  for (const auto& [name, bytes] : entries) {
    zip_source_t* src = zip_source_buffer(za, bytes.data(), bytes.size(), 0);
    zip_int64_t index = src ? zip_file_add(za, name.c_str(), src, ZIP_FL_ENC_UTF_8) : -1;
    if (src && index < 0) zip_source_free(src);
    if (index < 0 || zip_set_file_compression(za, static_cast<zip_uint64_t>(index), ZIP_CM_STORE, 0) != 0) {
      const std::string what = zip_strerror(za);
      zip_discard(za);
      fail("libzip: adding " + quoted(name) + ": " + what);
    }
  }
  if (zip_close(za) != 0) {
    const std::string what = zip_strerror(za);
    zip_discard(za);
    fail("libzip: " + what);
  }
  zip_stat_t st;
  zip_stat_init(&st);
  if (zip_source_stat(mem, &st) != 0 || zip_source_open(mem) != 0) fail("libzip: reading the archive back from memory failed");
  Bytes out(static_cast<std::size_t>(st.size));
  const zip_int64_t n = zip_source_read(mem, out.data(), out.size());
  zip_source_close(mem);
  if (n < 0 || static_cast<std::size_t>(n) != out.size()) fail("libzip: reading the archive back from memory failed");
  return out;
}

// Every entry of the archive, name -> bytes; CRCs are checked (libzip verifies them on reading to the end).
std::map<std::string, Bytes> read_archive(const std::string& path, const Bytes& file) {
  const auto fail = [&](const std::string& what) { throw Error("nn::load: " + quoted(path) + ": " + what); };
  if (file.size() < 22)  // libzip would open an empty file as an empty archive
    fail("not a valid .npz (zip) archive, truncated or corrupt: " + std::to_string(file.size()) +
         " bytes, shorter than a zip's end record");
  ZipError err;
  zip_source_t* src = zip_source_buffer_create(file.data(), file.size(), 0, &err.e);
  if (!src) fail("libzip: " + err.str());
  zip_t* za = zip_open_from_source(src, ZIP_RDONLY | ZIP_CHECKCONS, &err.e);
  if (!za) {
    zip_source_free(src);
    fail("not a valid .npz (zip) archive, truncated or corrupt: " + err.str());
  }
  struct Discard {
    zip_t* za;
    ~Discard() { zip_discard(za); }  // also frees src
  } discard{za};

  std::map<std::string, Bytes> entries;
  const zip_int64_t count = zip_get_num_entries(za, 0);
  for (zip_int64_t i = 0; i < count; ++i) {
    zip_stat_t st;
    if (zip_stat_index(za, static_cast<zip_uint64_t>(i), 0, &st) != 0 || !(st.valid & ZIP_STAT_NAME) || !(st.valid & ZIP_STAT_SIZE))
      fail("entry " + std::to_string(i) + ": " + zip_strerror(za));
    const std::string name = st.name;
    zip_file_t* f = zip_fopen_index(za, static_cast<zip_uint64_t>(i), 0);
    if (!f) fail("entry " + quoted(name) + ": " + zip_strerror(za));
    Bytes bytes(static_cast<std::size_t>(st.size) + 1);  // one spare byte: reading to the end checks the CRC
    std::size_t done = 0;
    zip_int64_t n = 0;
    while ((n = zip_fread(f, bytes.data() + done, bytes.size() - done)) > 0) {
      done += static_cast<std::size_t>(n);
      if (done == bytes.size()) break;
    }
    const std::string what = n < 0 ? zip_file_strerror(f) : "";
    zip_fclose(f);
    if (n < 0) fail("entry " + quoted(name) + " is corrupt: " + what);
    if (done != static_cast<std::size_t>(st.size))
      fail("entry " + quoted(name) + " holds " + std::to_string(done) + " bytes, its directory says " + std::to_string(st.size));
    bytes.resize(done);
    if (!entries.emplace(name, std::move(bytes)).second) fail("entry " + quoted(name) + " appears twice");
  }
  return entries;
}

}  // namespace

void save(const Module& module, const std::string& path) {
  const auto named = module.named_parameters();
  std::vector<std::pair<std::string, Bytes>> entries;
  std::set<std::string> seen;
  for (const auto& [name, t] : named) {
    if (!seen.insert(name).second) throw Error("nn::save: " + quoted(path) + ": the module has two parameters named " + quoted(name));
    entries.emplace_back(name + ".npy", encode_npy(t));
  }
  write_atomically(path, build_archive(path, entries));
}

void load(Module& module, const std::string& path) {
  const auto named = module.named_parameters();
  const std::map<std::string, Bytes> entries = read_archive(path, read_file(path));

  // Validate everything before touching any parameter.
  std::vector<std::string> problems;
  std::vector<std::pair<Tensor, const char*>> staged;  // parameter, its new values
  std::set<std::string> expected;
  for (const auto& [name, t] : named) {
    const std::string entry = name + ".npy";
    if (!expected.insert(entry).second) {
      problems.push_back("the module has two parameters named " + quoted(name));
      continue;
    }
    const auto it = entries.find(entry);
    if (it == entries.end()) {
      problems.push_back("parameter " + quoted(name) + " " + t.shape().str() + " is missing from the file");
      continue;
    }
    NpyArray a;
    try {
      a = decode_npy_header(it->second);
    } catch (const Error& e) {
      problems.push_back("entry " + quoted(entry) + " is corrupt: " + e.what());
      continue;
    }
    const std::string module_side = std::string(dtype_name(t.dtype())) + " " + t.shape().str();
    const std::string file_side = quoted(a.descr) + " " + a.shape.str() + (a.fortran_order ? " fortran order" : "");
    if (a.descr != npy_descr(t.dtype()) || a.shape != t.shape() || a.fortran_order) {
      problems.push_back("parameter " + quoted(name) + " is " + module_side + " in the module but " + file_side + " in the file");
      continue;
    }
    const std::size_t nbytes = t.numel() * dtype_size(t.dtype());
    if (it->second.size() - a.data_offset != nbytes) {
      problems.push_back("entry " + quoted(entry) + " " + a.shape.str() + " holds " + std::to_string(it->second.size() - a.data_offset) +
                         " bytes of data, not " + std::to_string(nbytes));
      continue;
    }
    staged.emplace_back(t, it->second.data() + a.data_offset);
  }
  for (const auto& [entry, bytes] : entries)
    if (!expected.count(entry)) problems.push_back("unexpected entry " + quoted(entry) + " (the module has no such parameter)");
  if (!problems.empty()) {
    std::string msg = "nn::load: " + quoted(path) + ": ";
    for (std::size_t i = 0; i < problems.size(); ++i) msg += (i ? "; " : "") + problems[i];
    throw Error(msg + "; no parameter was changed");
  }
  for (auto& [t, values] : staged) {
    if (t.numel()) std::memcpy(t.raw_data(), values, t.numel() * dtype_size(t.dtype()));
    t.bump_version();  // an in-place write: a graph that recorded the old values can no longer backward
  }
}

void save_arrays(const NamedArrays& arrays, const std::string& path) {
  std::vector<std::pair<std::string, Bytes>> entries;
  std::set<std::string> seen;
  for (const auto& [name, t] : arrays) {
    if (name.empty()) throw Error("nn::save_arrays: " + quoted(path) + ": an array has an empty name");
    if (!t.defined()) throw Error("nn::save_arrays: " + quoted(path) + ": array " + quoted(name) + " is undefined");
    if (!seen.insert(name).second) throw Error("nn::save_arrays: " + quoted(path) + ": two arrays are named " + quoted(name));
    entries.emplace_back(name + ".npy", encode_npy(t));
  }
  write_atomically(path, build_archive(path, entries));
}

NamedArrays load_arrays(const std::string& path) {
  const std::map<std::string, Bytes> entries = read_archive(path, read_file(path));
  const auto fail = [&](const std::string& entry, const std::string& what) {
    throw Error("nn::load_arrays: " + quoted(path) + ": entry " + quoted(entry) + " " + what);
  };
  NamedArrays out;
  for (const auto& [entry, bytes] : entries) {
    if (entry.size() <= 4 || entry.compare(entry.size() - 4, 4, ".npy") != 0) fail(entry, "is not a .npy array");
    NpyArray a;
    try {
      a = decode_npy_header(bytes);
    } catch (const Error& e) {
      fail(entry, std::string("is corrupt: ") + e.what());
    }
    DType dtype = DType::f32;
    if (a.descr == npy_descr(DType::f64)) dtype = DType::f64;
    else if (a.descr != npy_descr(DType::f32)) fail(entry, "has dtype " + quoted(a.descr) + ", not '<f4' or '<f8'");
    if (a.fortran_order) fail(entry, "is in Fortran order");
    const std::size_t nbytes = a.shape.numel() * dtype_size(dtype);
    if (bytes.size() - a.data_offset != nbytes)
      fail(entry, a.shape.str() + " holds " + std::to_string(bytes.size() - a.data_offset) + " bytes of data, not " +
                      std::to_string(nbytes));
    Tensor t = empty(a.shape, dtype);
    if (nbytes) std::memcpy(t.raw_data(), bytes.data() + a.data_offset, nbytes);
    out.emplace_back(entry.substr(0, entry.size() - 4), t);
  }
  return out;
}

void save(const Optimizer& optimizer, const std::string& path) { save_arrays(optimizer.state_dict(), path); }

void load(Optimizer& optimizer, const std::string& path) { optimizer.load_state_dict(load_arrays(path), quoted(path)); }

}  // namespace tapegrad::nn
