// Saving and loading a Module's parameters as a NumPy .npz archive: a zip (stored, uncompressed, as
// np.savez) of one .npy file per parameter, named by the parameter's dotted path ("encoder.cell.W_x.npy"),
// so np.load(path)["encoder.cell.W_x"] reads it. Values are '<f4' or '<f8' (the parameter's dtype),
// C order, .npy format 1.0.
#pragma once

#include <string>

#include "tapegrad/nn/module.hpp"

namespace tapegrad::nn {

// Atomic: the archive is built in memory, written to a temporary file beside `path`, fsync'ed and
// renamed over `path` (then the directory is fsync'ed). A failure at any point raises an Error naming the
// file and leaves whatever was at `path` untouched; the temporary file is removed. A process killed
// during a save leaves its temporary (`path`.tmp-<pid>-XXXXXX) behind; the next save to `path` removes
// those of processes that no longer exist.
void save(const Module& module, const std::string& path);

// Reads and validates the whole archive first: every parameter of the module must be there with the same
// dtype and shape, and the archive must hold nothing else. Any mismatch, a missing or unreadable file, a
// truncated or corrupt archive raises an Error naming the file (and the parameter and shapes) and changes
// no parameter. On success the values are copied into the parameters' buffers in place, so every existing
// handle sees them.
void load(Module& module, const std::string& path);

}  // namespace tapegrad::nn
