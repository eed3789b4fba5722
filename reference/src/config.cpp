// Config presets and validation (the config.json reader is formats/src/config_json.cpp).
#include "dsv2/config.hpp"

#include <algorithm>
#include <climits>
#include <cmath>
#include <fstream>
#include <sstream>
#include <stdexcept>
#include <sys/stat.h>


namespace dsv2 {

namespace {


[[noreturn]] void fail(const std::string& where, const std::string& key, const std::string& what) {
    throw std::invalid_argument(where + ": \"" + key + "\" " + what);
}

// Upper bound on any single dimension: far above every real model, far below overflow of the
// products the code forms from them (sizes are int64_t; the largest product is d·V).
constexpr int64_t kMaxDim = int64_t(1) << 24;

}  // namespace

const char* to_string(TopkMethod m) {
    return m == TopkMethod::greedy ? "greedy" : "group_limited_greedy";
}

void Config::validate(const std::string& where) const {
    auto positive = [&](int64_t v, const char* key) {
        if (v <= 0) fail(where, key, "must be a positive integer, got " + std::to_string(v));
        if (v > kMaxDim) fail(where, key, "is implausibly large (" + std::to_string(v) + " > 2^24)");
    };
    positive(V, "vocab_size");
    positive(d, "hidden_size");
    positive(L, "num_hidden_layers");
    if (L > 4096) fail(where, "num_hidden_layers", "is implausibly large (" + std::to_string(L) + ")");
    positive(n_h, "num_attention_heads");
    positive(d_h, "qk_nope_head_dim");
    positive(d_R, "qk_rope_head_dim");
    if (d_R % 2 != 0) fail(where, "qk_rope_head_dim", "must be even (RoPE rotates pairs), got " + std::to_string(d_R));
    positive(d_v, "v_head_dim");
    positive(d_c, "kv_lora_rank");
    if (d_q < 0) fail(where, "q_lora_rank", "must be null or a positive integer, got " + std::to_string(d_q));
    if (d_q > 0) positive(d_q, "q_lora_rank");
    positive(max_position_embeddings, "max_position_embeddings");
    if (!(rope_theta > 1.0)) fail(where, "rope_theta", "must be > 1");
    if (!(rms_norm_eps > 0.0) || rms_norm_eps > 1.0) fail(where, "rms_norm_eps", "must be in (0, 1]");

    if (N_r > 0 && moe_layer_freq < 1) fail(where, "moe_layer_freq", "must be >= 1");  // before is_moe_layer divides by it
    bool any_dense = false;
    for (int64_t l = 0; l < L; ++l) any_dense = any_dense || !is_moe_layer(l);
    if (any_dense) positive(d_ff, "intermediate_size");

    if (N_r < 0) fail(where, "n_routed_experts", "must be null or a positive integer");
    if (N_r > 0) {
        positive(N_r, "n_routed_experts");
        positive(d_e, "moe_intermediate_size");
        if (N_s < 0) fail(where, "n_shared_experts", "must be null or a non-negative integer");
        if (K_r < 1 || K_r > N_r)
            fail(where, "num_experts_per_tok", "must be in [1, n_routed_experts = " + std::to_string(N_r) + "], got " + std::to_string(K_r));
        if (first_k_dense_replace < 0) fail(where, "first_k_dense_replace", "must be >= 0");
        if (!(routed_scaling_factor > 0.0)) fail(where, "routed_scaling_factor", "must be > 0");
        if (topk_method == TopkMethod::group_limited_greedy) {
            if (G < 1 || N_r % G != 0)
                fail(where, "n_group", "must divide n_routed_experts = " + std::to_string(N_r) + ", got " + std::to_string(G));
            if (G_k < 1 || G_k > G)
                fail(where, "topk_group", "must be in [1, n_group = " + std::to_string(G) + "], got " + std::to_string(G_k));
            if (K_r > G_k * (N_r / G))
                fail(where, "num_experts_per_tok", "exceeds the experts in topk_group groups (" + std::to_string(G_k * (N_r / G)) + ")");
        }
    }
    // Every dimension is capped, but their products could still overflow int64 further on: bound
    // the parameter count (in double) well inside the range of exact integers.
    const double dd = double(d), qk = double(n_h) * double(d_qk());
    const double per_layer = dd * (double(d_q) + qk) + double(d_q) * qk + dd * qk + dd * double(d_c + d_R) +
                             double(d_c) * double(n_h) * double(d_h + d_v) + double(n_h) * double(d_v) * dd +
                             3.0 * dd * std::max(double(d_ff), double(N_r + N_s) * double(d_e)) + double(N_r) * dd;
    const double bound = 2.0 * double(V) * dd + double(L) * per_layer;
    if (bound > 0x1p50)
        throw std::invalid_argument(where + ": the sizes describe a model of about " + std::to_string(bound) +
                                    " parameters, far beyond any real one (limit 2^50)");
    if (has_yarn) {
        if (!(yarn.s > 0.0)) fail(where, "rope_scaling.factor", "must be > 0");
        if (yarn.L0 <= 0) fail(where, "rope_scaling.original_max_position_embeddings", "must be a positive integer");
        if (!(yarn.beta_fast > 0.0)) fail(where, "rope_scaling.beta_fast", "must be > 0");
        if (!(yarn.beta_slow > 0.0)) fail(where, "rope_scaling.beta_slow", "must be > 0");
    }
}

// ---------------------------------------------------------------------------------------------
// Presets. `deepseek-v2` and `deepseek-v2-lite` are the released config.json files
// (data/configs/ holds them verbatim; a test checks they parse to these presets).

std::vector<std::string> preset_names() { return {"deepseek-v2", "deepseek-v2-lite", "tiny"}; }

Config config_preset(const std::string& name) {
    Config c;
    c.rope_theta = 10000.0;
    c.has_yarn = true;
    c.yarn = Yarn{40.0, 4096, 32.0, 1.0, 0.707, 0.707};
    c.max_position_embeddings = 163840;
    c.rms_norm_eps = 1e-6;
    c.first_k_dense_replace = 1;
    c.moe_layer_freq = 1;
    c.aux_loss_alpha = 0.001;
    c.d_h = 128; c.d_R = 64; c.d_v = 128; c.d_c = 512;
    c.N_s = 2; c.K_r = 6;
    c.bos_token_id = 100000; c.eos_token_id = 100001;
    if (name == "deepseek-v2") {
        c.V = 102400; c.d = 5120; c.L = 60; c.n_h = 128; c.d_q = 1536;
        c.d_ff = 12288; c.d_e = 1536; c.N_r = 160; c.G = 8; c.G_k = 3;
        c.topk_method = TopkMethod::group_limited_greedy;
        c.routed_scaling_factor = 16.0;
    } else if (name == "deepseek-v2-lite") {
        c.V = 102400; c.d = 2048; c.L = 27; c.n_h = 16; c.d_q = 0;
        c.d_ff = 10944; c.d_e = 1408; c.N_r = 64; c.G = 1; c.G_k = 1;
        c.topk_method = TopkMethod::greedy;
        c.routed_scaling_factor = 1.0;
    } else if (name == "tiny") {
        // Small enough for tests in milliseconds, with every feature of V2 switched on:
        // query compression, group-limited routing, routed_scaling_factor != 1, d_v != d_h,
        // YaRN with all three ramp regimes (d_R = 8 gives low = 1, high = 3), a dense layer 0.
        c.V = 256;  // byte-level: the demo encodes text as UTF-8 bytes
        c.d = 64; c.L = 3; c.n_h = 4; c.d_h = 16; c.d_R = 8; c.d_v = 12; c.d_c = 32; c.d_q = 24;
        c.d_ff = 128; c.d_e = 32; c.N_r = 8; c.N_s = 1; c.K_r = 2; c.G = 4; c.G_k = 2;
        c.topk_method = TopkMethod::group_limited_greedy;
        c.routed_scaling_factor = 2.0;
        c.bos_token_id = -1; c.eos_token_id = -1;
    } else {
        std::string names;
        for (auto& n : preset_names()) names += (names.empty() ? "" : ", ") + n;
        throw std::invalid_argument("unknown preset \"" + name + "\" (known: " + names + ")");
    }
    c.validate("preset " + name);
    return c;
}

}  // namespace dsv2
