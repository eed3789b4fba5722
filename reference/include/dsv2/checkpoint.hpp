// Hugging Face checkpoint directories: config.json plus model.safetensors, or shards listed in
// model.safetensors.index.json. Tensors may be F32, F16 or BF16; they are converted to S.
#pragma once

#include <string>

#include "dsv2/config.hpp"
#include "dsv2/weights.hpp"

namespace dsv2 {

/// Reads every tensor of `dir` that `cfg` expects, checking presence and shape; errors name the
/// file and tensor. Tensors the config does not expect are ignored (`dsv2 inspect` lists them).
template <typename S>
Weights<S> load_weights(const std::string& dir, const Config& cfg);

}  // namespace dsv2
