// ex5 — the router: softmax and greedy top-k with the tie rule. Do not change this file.
#pragma once

#include "dsv2/config.hpp"
#include "dsv2/tensor.hpp"

namespace ex5 {

struct Route {
    dsv2::Mat<double> scores;       ///< [T, N_r] s_{i,t} = softmax_i(x_t · e_i)
    dsv2::IdxMat topk_idx;          ///< [T, K_r] the chosen experts, best first
    dsv2::Mat<double> topk_weight;  ///< [T, K_r] their gates
};

/// Greedy router (topk_method = greedy): logits = x Eᵀ, scores = softmax over all N_r experts,
/// the K_r best by score — equal scores ranked by the lower expert index — and gates = the
/// chosen scores, renormalised to sum 1 when cfg.norm_topk_prob (and K_r > 1), otherwise
/// multiplied by cfg.routed_scaling_factor.
///   x [T, d], E = mlp.gate.weight [N_r, d] → Route
Route route(const dsv2::Config& cfg, const dsv2::Mat<double>& x, const dsv2::Mat<double>& E);

}  // namespace ex5
