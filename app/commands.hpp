// The dsv2 command-line tool: one function per subcommand.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace dsv2 {
template <typename S>
class Model;
class Tokenizer;
class Trace;
}  // namespace dsv2

namespace dsv2::app {

/// Where a model comes from: a preset with seeded random weights, or a checkpoint directory.
struct ModelSource {
    std::string preset;     ///< non-empty: a preset name
    uint64_t seed = 0;      ///< seed of the random weights of a preset
    std::string model_dir;  ///< non-empty: a Hugging Face checkpoint directory
};

struct ForwardOptions {
    ModelSource source;
    std::string tokens;        ///< "3,14,15"
    int64_t prefill = -1;      ///< tokens in the first call; -1 = all
    std::string attention = "absorbed";
    bool attention_given = false;  ///< --attention on the command line (refused with an engine device)
    std::string precision = "fp32";
    std::string device = "cpu";    ///< cpu (the oracle), host or cuda (the engine; app/engine_source.hpp)
    std::string dtype = "fp32";    ///< the engine's weights: fp32 or bf16
    std::string out;           ///< logits .npy
    std::string dump;          ///< optional intermediates .safetensors
    bool routing_stats = false;  ///< print expert loads and balance terms per MoE layer
    int64_t devices = 0;       ///< D for the device / communication terms (0: the config's n_group)
    int64_t device_limit = 0;  ///< M (0: the config's topk_group)
};

/// The embedded default model: trained by tools/train/, shipped in data/models/kjv-tiny.
std::string default_model_dir();

struct DemoOptions {
    std::string model_dir;  ///< empty: the embedded default
    std::string prompt = "And God said";
    int64_t max_new_tokens = 48;
    double temperature = 0.8;  ///< a greedy small model loops; light sampling, seeded, reads better
    double top_p = 0.9;
    uint64_t seed = 1;
    std::string attention = "absorbed";
};

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

/// dsv2 bench: prefill and decode speed, the parts' GFLOP/s and this machine's floors.
struct BenchOptions {
    ModelSource source;
    int64_t layers = 0;                       ///< > 0: only the first `layers` layers
    int64_t prefill = 512;                    ///< prompt tokens of the prefill measurement
    std::string contexts = "128,1024,4096";   ///< decode contexts
    int64_t steps = 8;                        ///< timed decode steps per context
    std::string attention = "both";           ///< absorbed, naive or both
    std::string precision = "fp32";
    int threads = 0;                          ///< 0: OpenMP's default
    bool floors = true;                       ///< measure the GEMM rate and the memory bandwidth
    bool parts = true;                        ///< time projections, attention and experts alone
    std::string json;                         ///< also write the figures here
};

/// dsv2 compare: the fp64 oracle against another implementation, every named intermediate of
/// docs/intermediates.md, one line each, the first divergence named. The other implementation is
/// the intermediates a file holds (`--against`), or else dsv2's own engine run here on `device`
/// (app/engine_source.hpp). Exit 0 when every intermediate is within the dtype's bound, 1 otherwise.
struct CompareOptions {
    ModelSource source;
    std::string against;  ///< FILE.safetensors; empty: compare the engine on `device`
    std::string tokens;   ///< "3,14,15"; empty: the `tokens` tensor of FILE, or the default sequence
    int64_t prefill = -1;  ///< tokens in the first call; -1 = all
    std::string attention = "absorbed";  ///< the oracle's form against FILE (the engine chooses per call)
    bool attention_given = false;
    std::string dtype = "fp32";  ///< FILE's precision, or the engine's weights: fp32 or bf16 (sets the bound)
    std::string device = "cuda";  ///< the engine's device without --against: cuda or host
    bool device_given = false;
    bool json = false;
};

int run_forward(const ForwardOptions& o);
int run_compare(const CompareOptions& o);
int run_bench(const BenchOptions& o);

/// Refuses, before any work, an output path whose directory is missing or not writable.
void check_writable(const std::string& path, const char* option);
int run_generate(const GenerateOptions& o);
int run_demo(const DemoOptions& o);
int run_kv_cache(const ModelSource& src, int64_t context, int64_t groups, int64_t bytes_per_element, bool as_json);
int run_params(const ModelSource& src, bool as_json);
int run_inspect(const std::string& dir, bool list_tensors, bool as_json);

/// Prompt → tokens → prefill → decode (sampled as `o` says) → text; `stream` prints as it goes.
/// `trace`, if given, records every step (and guards against NaN/Inf).
GenerateResult generate_text(const Model<float>& model, const Tokenizer& tok, const GenerateOptions& o, bool stream,
                             Trace* trace = nullptr);

/// Parses "3,14,15" strictly: integers separated by commas, nothing else.
std::vector<int32_t> parse_tokens(const std::string& text);

}  // namespace dsv2::app
