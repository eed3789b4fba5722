// The model configuration and the one dimension vocabulary of dsv2.
//
// Every dimension has the paper's symbol as its field name (DeepSeek-V2 report §2.1, §2.2)
// and the Hugging Face `config.json` key beside it. Code everywhere else in dsv2 — the oracle,
// the CUDA path, the tests, the notebooks — uses these names and no others.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace dsv2 {

/// How the router restricts the experts a token may choose (`topk_method`).
enum class TopkMethod {
    greedy,               ///< plain top-K_r over all N_r experts (V2-Lite)
    group_limited_greedy  ///< keep the G_k best groups (group score = max), then top-K_r (V2)
};

/// YaRN context extension (`rope_scaling`, type "yarn"). Absent means plain RoPE.
struct Yarn {
    double s = 1.0;               ///< factor
    int64_t L0 = 4096;            ///< original_max_position_embeddings
    double beta_fast = 32.0;      ///< beta_fast
    double beta_slow = 1.0;       ///< beta_slow
    double mscale = 1.0;          ///< mscale: numerator of the cos/sin amplitude
    double mscale_all_dim = 0.0;  ///< mscale_all_dim: softmax factor m² and amplitude denominator
};

/// A DeepSeek-V2 model shape and its routing / positional conventions.
struct Config {
    // --- sizes ---------------------------------------------------------------------------
    int64_t V = 0;      ///< vocab_size
    int64_t d = 0;      ///< hidden_size
    int64_t L = 0;      ///< num_hidden_layers
    int64_t n_h = 0;    ///< num_attention_heads
    int64_t d_h = 0;    ///< qk_nope_head_dim: per-head content ("nope") q/k width
    int64_t d_R = 0;    ///< qk_rope_head_dim: per-head decoupled RoPE width (paper d_h^R)
    int64_t d_v = 0;    ///< v_head_dim
    int64_t d_c = 0;    ///< kv_lora_rank: KV latent width
    int64_t d_q = 0;    ///< q_lora_rank: query latent width (paper d_c'); 0 = no query compression
    int64_t d_ff = 0;   ///< intermediate_size: width of the dense MLP layers
    int64_t d_e = 0;    ///< moe_intermediate_size: width of one expert

    // --- DeepSeekMoE ---------------------------------------------------------------------
    int64_t N_r = 0;    ///< n_routed_experts (0 = no MoE layers)
    int64_t N_s = 0;    ///< n_shared_experts (stored as one MLP of width N_s·d_e)
    int64_t K_r = 0;    ///< num_experts_per_tok
    int64_t G = 1;      ///< n_group: expert groups (devices)
    int64_t G_k = 1;    ///< topk_group: groups kept per token
    TopkMethod topk_method = TopkMethod::greedy;  ///< topk_method
    bool norm_topk_prob = false;                  ///< norm_topk_prob: renormalise the K_r gates
    double routed_scaling_factor = 1.0;           ///< routed_scaling_factor (used only without renormalisation)
    int64_t first_k_dense_replace = 0;            ///< first_k_dense_replace
    int64_t moe_layer_freq = 1;                   ///< moe_layer_freq
    double aux_loss_alpha = 0.0;                  ///< aux_loss_alpha (α1 of the expert-balance loss)

    // --- positions and norms -------------------------------------------------------------
    double rope_theta = 10000.0;          ///< rope_theta
    bool has_yarn = false;                ///< rope_scaling present
    Yarn yarn;                            ///< rope_scaling
    int64_t max_position_embeddings = 0;  ///< max_position_embeddings
    double rms_norm_eps = 1e-6;           ///< rms_norm_eps

    int64_t bos_token_id = -1;  ///< bos_token_id (-1: none)
    int64_t eos_token_id = -1;  ///< eos_token_id (-1: none)

    // --- derived -------------------------------------------------------------------------
    int64_t d_qk() const { return d_h + d_R; }        ///< score head width (192 for V2)
    int64_t cache_width() const { return d_c + d_R; } ///< latent-cache row: [c_KV | k_R] (576)
    bool has_q_lora() const { return d_q > 0; }
    /// Is layer `l` a DeepSeekMoE layer (else a dense SwiGLU MLP)? [HF DeepseekV2DecoderLayer]
    bool is_moe_layer(int64_t l) const {
        return N_r > 0 && l >= first_k_dense_replace && l % moe_layer_freq == 0;
    }

    /// Throws std::invalid_argument naming the first inconsistent field.
    void validate(const std::string& where = "config") const;
};

/// Names accepted by `config_preset`.
std::vector<std::string> preset_names();

/// `deepseek-v2`, `deepseek-v2-lite` or `tiny` (a small shape for tests and the demo).
Config config_preset(const std::string& name);

const char* to_string(TopkMethod m);

}  // namespace dsv2
