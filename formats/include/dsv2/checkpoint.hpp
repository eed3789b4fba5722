// Hugging Face checkpoint directories: config.json plus model.safetensors, or shards listed in
// model.safetensors.index.json. Tensors may be F32, F16 or BF16; they are converted to the
// compute type straight from the memory-mapped files.
#pragma once

#include <string>
#include <vector>

#include "dsv2/config_json.hpp"
#include "dsv2/io.hpp"
#include "dsv2/weights.hpp"

namespace dsv2 {

/// What a checkpoint directory holds, compared with what its config expects.
struct CheckpointReport {
    struct Tensor {
        std::string name, file;
        DType dtype = DType::F32;
        std::vector<int64_t> shape;
        std::vector<int64_t> expected_shape;  ///< empty when the config does not expect it
    };
    std::vector<std::string> files;         ///< safetensors files, in load order
    int64_t bytes = 0;                      ///< their total size
    std::vector<Tensor> tensors;            ///< every tensor found, in name order
    std::vector<std::string> missing;       ///< expected, not found
    std::vector<std::string> unexpected;    ///< found, not expected
    std::vector<std::string> misshaped;     ///< "name: has [a, b], expected [c, d]"
    std::vector<std::string> bad_dtype;     ///< weights must be F32, F16 or BF16
    bool ok() const { return missing.empty() && misshaped.empty() && bad_dtype.empty(); }
};

/// Opens every safetensors file of `dir` (validating each header) and compares the tensors with
/// `cfg`. Throws std::invalid_argument / std::runtime_error naming the file for malformed files,
/// a bad index, or a tensor stored twice.
CheckpointReport inspect_checkpoint(const std::string& dir, const Config& cfg);

/// Loads the weights `cfg` expects. Throws naming the first missing, mis-shaped or wrongly typed
/// tensor. Unexpected tensors are ignored; their names are returned in `unexpected` if given.
/// With `progress`, a progress line is drawn on stderr (when it is a terminal) for loads that
/// take more than half a second.
template <typename S>
Weights<S> load_weights(const std::string& dir, const Config& cfg, bool progress = false,
                        std::vector<std::string>* unexpected = nullptr);

}  // namespace dsv2
