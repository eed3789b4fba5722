// DeepSeekMoE (DeepSeek-V2 §2.2; spec §3): the router, the experts, and routing statistics.
#pragma once

#include <vector>

#include "dsv2/config.hpp"
#include "dsv2/tensor.hpp"
#include "dsv2/trace.hpp"
#include "dsv2/weights.hpp"

namespace dsv2 {

/// The router's decision for T tokens.
///
/// Tie rule (shared with the CUDA router): experts — and, for group-limited routing, groups —
/// are ranked by score, higher first, and equal scores by index, lower first. topk_idx lists a
/// token's experts in that rank order.
template <typename S>
struct Routing {
    Mat<S> logits;        ///< [T, N_r] u_tᵀ e_i
    Mat<S> scores;        ///< [T, N_r] s_{i,t} = softmax_i(logits)
    IdxMat topk_idx;      ///< [T, K_r] chosen experts, best first
    Mat<S> topk_weight;   ///< [T, K_r] gates g_{i,t} as applied to the expert outputs
};

/// Router, eq. (21) and the released gate: logits = x Eᵀ, s = softmax over all N_r experts;
/// top-K_r by `greedy` or `group_limited_greedy` (groups of N_r/G contiguous experts, group
/// score = max, keep the best G_k groups); gates = s of the chosen experts, then either
/// renormalised (norm_topk_prob and K_r > 1: g / (Σg + 1e-20)) or scaled by
/// routed_scaling_factor — V2 does one or the other, not both.
/// The router computes in the compute type S: fp32 in the default oracle (as DeepSeek's gate,
/// which casts to fp32), fp64 in the fp64 oracle.
///   x [T, d], E = mlp.gate.weight [N_r, d]
template <typename S>
Routing<S> route(const Config& cfg, MatCRef<S> x, MatCRef<S> E);

/// Top-k of one row of scores by the tie rule above, restricted to `allowed` (empty: all).
std::vector<int64_t> topk_indices(const double* scores, int64_t n, int64_t k, const std::vector<bool>& allowed = {});

/// The MoE FFN of layer l, eq. (20) less the residual:
///   Σ_{i≤N_s} FFN^(s)_i(u) + Σ_i g_{i,t} FFN^(r)_i(u).
/// Tokens are grouped by expert (each expert runs one product over its rows, experts in
/// parallel), then scattered back in each token's rank order.
///   x [T, d] → [T, d]
template <typename S>
Mat<S> moe_forward(const Config& cfg, const Weights<S>& w, int64_t l, MatCRef<S> x, Trace* trace);

/// The dense SwiGLU FFN of layers below first_k_dense_replace.   x [T, d] → [T, d]
template <typename S>
Mat<S> dense_mlp_forward(const Config& cfg, const Weights<S>& w, int64_t l, MatCRef<S> x, Trace* trace);

/// Expert loads and the paper's balance losses (§2.2.3, eqs. 23–31) for T routed tokens, with
/// the N_r experts split into D devices of N_r/D contiguous experts and at most M devices
/// per token. The losses are reported without their α factors.
struct RoutingStats {
    int64_t T = 0, N_r = 0, K_r = 0, D = 1, M = 1;
    std::vector<int64_t> load;   ///< [N_r] tokens sent to each expert
    std::vector<double> f;       ///< [N_r] f_i = N_r/(K_r T) · load_i
    std::vector<double> P;       ///< [N_r] P_i = mean_t s_{i,t}
    std::vector<double> f_dev;   ///< [D] f'_i = mean_{j∈E_i} f_j
    std::vector<double> P_dev;   ///< [D] P'_i = Σ_{j∈E_i} P_j
    std::vector<double> f_comm;  ///< [D] f''_i = D/(M T) · #tokens sent to device i
    double expert_balance = 0;   ///< Σ f_i P_i          (L_ExpBal / α1)
    double device_balance = 0;   ///< Σ f'_i P'_i        (L_DevBal / α2)
    double comm_balance = 0;     ///< Σ f''_i P''_i      (L_CommBal / α3), P'' = P'
};
/// topk_idx [T, K_r], scores [T, N_r]. D must divide N_r.
RoutingStats routing_stats(const IdxMat& topk_idx, const Mat<double>& scores, int64_t K_r, int64_t D, int64_t M);

}  // namespace dsv2
