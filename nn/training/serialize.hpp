// Saving and loading a Module's parameters as a NumPy .npz archive: a zip (stored, uncompressed, as
// np.savez) of one .npy file per parameter, named by the parameter's dotted path ("encoder.cell.W_x.npy"),
// so np.load(path)["encoder.cell.W_x"] reads it. Values are '<f4' or '<f8' (the parameter's dtype),
// C order, .npy format 1.0.
#pragma once

#include <string>
#include <utility>
#include <vector>

#include "tapegrad/nn/models/module.hpp"
#include "tapegrad/nn/training/optim.hpp"

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

// Any named float32/float64 arrays as one .npz (entry "name.npy" each), written atomically as above: the
// building block of optimizer and training checkpoints. Names must be unique and non-empty.
using NamedArrays = std::vector<std::pair<std::string, Tensor>>;
void save_arrays(const NamedArrays& arrays, const std::string& path);
// Reads every entry of a .npz written by save_arrays (or np.savez of '<f4'/'<f8' C-order arrays), in the
// file's order, as owned tensors. A missing, truncated or corrupt file, or an entry of another dtype,
// raises an Error naming the file and the entry.
NamedArrays load_arrays(const std::string& path);

// An optimizer's state (Optimizer::state_dict: buffers, step counts, lr, hyper-parameters), atomically.
void save(const Optimizer& optimizer, const std::string& path);
// All or nothing: a bad file, another optimizer kind, other hyper-parameters or parameter shapes raise an
// Error naming the file and change nothing (Optimizer::load_state_dict).
void load(Optimizer& optimizer, const std::string& path);

}  // namespace tapegrad::nn
