// Turning a ModelSource (preset or checkpoint directory) into a config and a runnable model.
#pragma once

#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <stdexcept>
#include <string>
#include <utility>

#include "commands.hpp"
#include "dsv2/checkpoint.hpp"
#include "dsv2/config.hpp"
#include "dsv2/engine/agreement.hpp"
#include "dsv2/model.hpp"
#include "dsv2/tokenizer.hpp"

namespace dsv2::app {

inline Config source_config(const ModelSource& src) {
    return src.model_dir.empty() ? config_preset(src.preset) : config_from_file(src.model_dir);
}

inline std::string source_name(const ModelSource& src) {
    return src.model_dir.empty() ? "preset " + src.preset + " (seed " + std::to_string(src.seed) + ")" : src.model_dir;
}

inline double physical_memory_bytes() { return double(sysconf(_SC_PHYS_PAGES)) * double(sysconf(_SC_PAGE_SIZE)); }

/// Refuses, before allocating, a model whose weights cannot fit in this machine's memory.
inline void check_fits_in_memory(const Config& cfg, int64_t bytes_per_element, const std::string& what) {
    const double need = double(weight_bytes(cfg, bytes_per_element));
    const double have = physical_memory_bytes();
    if (need > 0.8 * have)
        throw std::runtime_error(what + " needs " + std::to_string(int64_t(need / 1e9)) + " GB of weights at " +
                                 std::to_string(bytes_per_element) + " bytes per parameter; this machine has " +
                                 std::to_string(int64_t(have / 1e9)) + " GB of memory");
}

/// Refuses, before allocating, a run of T tokens (the first `prefill` in one call) whose working
/// memory cannot fit beside the weights: logits [T, V] (float and S), the latent cache, the
/// per-head attention scores of the largest call and, with a dump, every intermediate.
inline void check_run_fits(const Config& cfg, int64_t T, int64_t prefill, int64_t bytes_per_element, bool dump,
                           const std::string& what) {
    const double Td = double(T), P = double(std::max<int64_t>(prefill, 1)), S = double(bytes_per_element);
    double need = Td * double(cfg.V) * (4.0 + S) + double(cfg.L) * Td * double(cfg.cache_width()) * S +
                  2.0 * P * Td * S * double(cfg.n_h) + double(weight_bytes(cfg, bytes_per_element));
    if (dump) need += Td * 8.0 * (double(cfg.V) + double(cfg.L) * (20.0 * double(cfg.d) + 3.0 * double(cfg.n_h * cfg.d_c)));
    const double have = physical_memory_bytes();
    if (need > 0.8 * have)
        throw std::invalid_argument(what + ": " + std::to_string(T) + " tokens would need about " +
                                    std::to_string(int64_t(need / 1e9)) + " GB (weights, logits, cache, attention scores" +
                                    (dump ? ", dump" : "") + "); this machine has " + std::to_string(int64_t(have / 1e9)) + " GB");
}

template <typename S>
Model<S> load_model(const ModelSource& src) {
    Config cfg = source_config(src);
    check_fits_in_memory(cfg, int64_t(sizeof(S)), source_name(src));
    if (src.model_dir.empty()) {
        Weights<S> w = random_weights<S>(cfg, src.seed);
        return Model<S>(std::move(cfg), std::move(w));
    }
    std::vector<std::string> unexpected;
    Weights<S> w = load_weights<S>(src.model_dir, cfg, /*progress=*/true, &unexpected);
    if (!unexpected.empty())
        std::fprintf(stderr, "dsv2: note: %s holds %zu tensors the config does not use (first: %s); see dsv2 inspect\n",
                     src.model_dir.c_str(), unexpected.size(), unexpected.front().c_str());
    return Model<S>(std::move(cfg), std::move(w));
}

using engine::for_each_call;  // the schedule (dsv2/engine/agreement.hpp)

/// Runs `tokens` the way `dsv2 forward` and `dsv2 compare` do (for_each_call's schedule) with
/// the attention form `form`. `on_step` receives each call's logits [n, V] and the index of its
/// first token.
template <typename S, typename OnStep>
void run_prefill_then_decode(const Model<S>& model, const std::vector<int32_t>& tokens, int64_t prefill,
                             AttentionForm form, Trace* trace, OnStep&& on_step) {
    const int64_t T = int64_t(tokens.size());
    LatentCache<S> cache(model.config(), T);
    for_each_call(T, prefill, [&](int64_t first, int64_t n) {
        const std::vector<int32_t> part(tokens.begin() + first, tokens.begin() + first + n);
        on_step(model.forward(part, cache, form, trace), first);
    });
}

/// A model directory with its tokenizer, for generate and demo: the directory must hold
/// tokenizer.json, and every id the tokenizer can produce must be inside the model's vocabulary.
inline std::pair<Tokenizer, Model<float>> load_text_model(const std::string& dir) {
    struct stat st {};
    if (stat(dir.c_str(), &st) != 0 || !S_ISDIR(st.st_mode))
        throw std::invalid_argument("--model " + dir + ": not a directory (give the checkpoint directory)");
    Tokenizer tok = Tokenizer::from_file(dir);
    const Config cfg = config_from_file(dir);
    if (tok.vocab_size() > cfg.V)
        throw std::invalid_argument(dir + "/tokenizer.json: its " + std::to_string(tok.vocab_size()) +
                                    " tokens exceed the vocabulary of " + dir + "/config.json (vocab_size " +
                                    std::to_string(cfg.V) + ")");
    return {std::move(tok), load_model<float>(ModelSource{"", 0, dir})};
}

}  // namespace dsv2::app
