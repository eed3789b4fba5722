// What the dsv2 commands share beyond their options (app/cli.hpp): where a model comes from, and
// generation (generate and demo).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace dsv2 {
struct Config;
class Tokenizer;
class Trace;
namespace engine {
class Runner;
}
}  // namespace dsv2

namespace dsv2::app {

/// Where a model comes from: a preset with seeded random weights, or a checkpoint directory.
struct ModelSource {
    std::string preset;     ///< non-empty: a preset name
    uint64_t seed = 0;      ///< seed of the random weights of a preset
    std::string model_dir;  ///< non-empty: a Hugging Face checkpoint directory
};

/// The embedded default model: trained by tools/train/, shipped in data/models/kjv-tiny.
std::string default_model_dir();

struct GenerateOptions {
    std::string model_dir;
    std::string prompt;
    int64_t max_new_tokens = 64;
    double temperature = 0.0;  ///< 0 = greedy
    double top_p = 1.0;
    uint64_t seed = 0;
    std::string attention = "absorbed";
    bool attention_given = false;  ///< --attention on the command line (refused with an engine device)
    std::string device = "cpu";    ///< cpu (the oracle), host or cuda (the engine; app/engine_source.hpp)
    std::string dtype = "fp32";    ///< the engine's weights: fp32 or bf16
};

/// What one generation produced, and how long it took.
struct GenerateResult {
    std::vector<int32_t> prompt_ids, new_ids;
    std::string text;  ///< the new text only
    double prefill_seconds = 0, decode_seconds = 0;
};

/// The prompt's ids (BOS added), checked against the model: not empty, inside the vocabulary, and
/// with --max-new-tokens within max_position_embeddings.
std::vector<int32_t> encode_prompt(const Config& cfg, const Tokenizer& tok, const GenerateOptions& o);

/// Prompt ids → prefill → decode (sampled as `o` says) → text on `runner` (the oracle or the
/// engine, its cache empty and large enough); `stream` prints as it goes. With `trace` every call
/// is recorded there and stops at the first NaN or Inf; without, Runner::forward_checked guards.
GenerateResult generate(engine::Runner& runner, const Tokenizer& tok, const GenerateOptions& o,
                        std::vector<int32_t> prompt_ids, bool stream, Trace* trace = nullptr);

/// Refuses, before any work, an output path whose directory is missing or not writable.
void check_writable(const std::string& path, const char* option);

/// Parses "3,14,15" strictly: integers separated by commas, nothing else.
std::vector<int32_t> parse_tokens(const std::string& text);

}  // namespace dsv2::app
