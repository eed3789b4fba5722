// Multi-head Latent Attention (DeepSeek-V2 §2.1, App. C; spec §2.1–2.3), in both forms:
//   naive    — up-project K and V from the cached latent, then ordinary multi-head attention
//              (the paper's equations; how prefill is usually computed);
//   absorbed — fold W^UK into the query and W^UV after the value sum, and attend over the
//              576-wide latent rows directly (MQA with one shared KV head; how decode is served).
// Both read the same latent cache and give the same output up to rounding.
#pragma once

#include <vector>

#include "dsv2/config.hpp"
#include "dsv2/rope.hpp"
#include "dsv2/tensor.hpp"
#include "dsv2/trace.hpp"
#include "dsv2/weights.hpp"

namespace dsv2 {

enum class AttentionForm { naive, absorbed };
const char* to_string(AttentionForm f);

/// The MLA cache: per layer and token one row [ĉ^KV (d_c, post-norm) | k^R (d_R, post-RoPE)],
/// d_c + d_R = 576 elements for DeepSeek-V2, and nothing else.
template <typename S>
class LatentCache {
public:
    explicit LatentCache(const Config& cfg, int64_t reserve_tokens = 0);

    int64_t length() const { return len_; }   ///< tokens cached (= next position)
    int64_t layers() const { return int64_t(rows_.size()); }
    int64_t width() const { return d_c_ + d_R_; }

    /// Writes the rows of positions [length(), length() + T) for layer l.
    ///   c_kv [T, d_c], k_pe [T, d_R]
    void write(int64_t l, MatCRef<S> c_kv, MatCRef<S> k_pe);
    /// After every layer has written its T rows: length() += T.
    void commit(int64_t T);

    /// Views of layer l over `n` cached positions (default: all, including rows written but not
    /// yet committed by the step in flight).
    ///   c_kv [n, d_c], k_pe [n, d_R]
    auto c_kv(int64_t l, int64_t n) const { return rows_[size_t(l)].topLeftCorner(n, d_c_); }
    auto k_pe(int64_t l, int64_t n) const { return rows_[size_t(l)].block(0, d_c_, n, d_R_); }

    int64_t elements() const { return layers() * len_ * width(); }  ///< L · length · (d_c + d_R)
    int64_t bytes() const { return elements() * int64_t(sizeof(S)); }

private:
    int64_t d_c_, d_R_, len_ = 0;
    std::vector<Mat<S>> rows_;  ///< per layer [capacity, d_c + d_R]
};

/// The query side, eqs. (37)–(39) of App. C:
///   with query compression: c^Q = RMSNorm(W^DQ x), [q^C | q^R] = W^UQ/W^QR c^Q (per head);
///   without (V2-Lite):      [q^C | q^R] = q_proj x.
/// The per-head split is [nope d_h | rope d_R]; RoPE is applied to q^R at `positions`.
template <typename S>
struct MlaQuery {
    Mat<S> q_nope;  ///< [T, n_h·d_h]
    Mat<S> q_pe;    ///< [T, n_h·d_R], post-RoPE
};
template <typename S>
MlaQuery<S> mla_query(const Config& cfg, const Weights<S>& w, int64_t l, MatCRef<S> x,
                      const std::vector<int64_t>& positions, const Rope& rope, Trace* trace);

/// The key/value side, eqs. (41) and (43): [c^KV | k^R] = kv_a_proj_with_mqa x (latent first),
/// ĉ^KV = RMSNorm(c^KV) (the norm covers the latent only), k^R = RoPE(k^R). These two are the
/// whole cache row of the token.
template <typename S>
struct MlaLatent {
    Mat<S> c_kv;  ///< [T, d_c], post-norm
    Mat<S> k_pe;  ///< [T, d_R], post-RoPE, one key shared by all heads
};
template <typename S>
MlaLatent<S> mla_latent(const Config& cfg, const Weights<S>& w, int64_t l, MatCRef<S> x,
                        const std::vector<int64_t>& positions, const Rope& rope, Trace* trace);

/// Naive attention, eqs. (42), (44)–(46): per head i, k^C_i = W^UK_i ĉ, v_i = W^UV_i ĉ,
/// K_i = [k^C_i | k^R], softmax(σ Q_i K_iᵀ) over the causal prefix, o_i = P V_i.
/// Query t (absolute position p_t) sees cached positions 0 … p_t.
///   q [T, n_h·(d_h|d_R)], c_kv [S, d_c], k_pe [S, d_R], W_kv_b [n_h·(d_h+d_v), d_c] → o [T, n_h·d_v]
template <typename S>
Mat<S> mla_attend_naive(const Config& cfg, const MlaQuery<S>& q, MatCRef<S> c_kv, MatCRef<S> k_pe,
                        MatCRef<S> W_kv_b, const std::vector<int64_t>& positions);

/// Absorbed attention (spec §2.3): q̃_i = W^UK_iᵀ q^C_i ∈ R^d_c; scores σ(q̃_i·ĉ_j + q^R_i·k^R_j);
/// õ_i = Σ_j p_ij ĉ_j ∈ R^d_c; o_i = W^UV_i õ_i. Same σ and same causal rule as the naive form.
///   → o [T, n_h·d_v]; records attn.q_absorbed and attn.o_latent [T, n_h·d_c]
template <typename S>
Mat<S> mla_attend_absorbed(const Config& cfg, const MlaQuery<S>& q, MatCRef<S> c_kv, MatCRef<S> k_pe,
                           MatCRef<S> W_kv_b, const std::vector<int64_t>& positions, int64_t l, Trace* trace);

/// The absorbed form with every head's query stacked as a row of one matrix, as in FlashMLA:
/// rows (t, i) of Q̃ [T·n_h, d_c] — the memory of q_absorbed [T, n_h·d_c] read as one row per
/// (token, head) — against the cached rows at once: scores = Q̃ ĉᵀ + Q^R k^Rᵀ [T·n_h, S],
/// Õ = P ĉ. Each latent row is read once per block of tokens and shared by all heads, instead
/// of once per head; tokens go in blocks that keep the score block under 2^24 elements. The
/// same numbers as mla_attend_absorbed up to the order of sums (test_mla, "stacked"); this is
/// the form mla_forward runs. Same inputs, outputs and recorded names as mla_attend_absorbed;
/// `score_budget` (elements of one score block) is a parameter only so that tests can force
/// many blocks.
template <typename S>
Mat<S> mla_attend_absorbed_stacked(const Config& cfg, const MlaQuery<S>& q, MatCRef<S> c_kv, MatCRef<S> k_pe,
                                   MatCRef<S> W_kv_b, const std::vector<int64_t>& positions, int64_t l = 0,
                                   Trace* trace = nullptr, int64_t score_budget = int64_t(1) << 24);

/// The whole attention sub-layer of layer l for the T new tokens: projections, cache write,
/// attention over the cache (in `form`), W^O. x = input_layernorm(h).
///   x [T, d] → u [T, d]
template <typename S>
Mat<S> mla_forward(const Config& cfg, const Weights<S>& w, int64_t l, MatCRef<S> x,
                   const std::vector<int64_t>& positions, const Rope& rope, LatentCache<S>& cache,
                   AttentionForm form, Trace* trace);

}  // namespace dsv2
