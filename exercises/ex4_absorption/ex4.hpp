// ex4 — weight absorption: the absorbed query and the latent output. Do not change this file.
#pragma once

#include "dsv2/config.hpp"
#include "dsv2/tensor.hpp"

namespace ex4 {

/// The absorbed query of every head: q̃_i = W^UK_iᵀ q^C_i ∈ R^d_c.
///   q_nope [T, n_h·d_h] (heads side by side), W_kv_b = kv_b_proj.weight [n_h·(d_h + d_v), d_c]
///   → [T, n_h·d_c]
dsv2::Mat<double> absorbed_query(const dsv2::Config& cfg, const dsv2::Mat<double>& q_nope, const dsv2::Mat<double>& W_kv_b);

/// The output of every head from its latent output õ_i = Σ_j p_ij ĉ_j: o_i = W^UV_i õ_i ∈ R^d_v.
///   o_latent [T, n_h·d_c], W_kv_b [n_h·(d_h + d_v), d_c] → [T, n_h·d_v]
dsv2::Mat<double> latent_output(const dsv2::Config& cfg, const dsv2::Mat<double>& o_latent, const dsv2::Mat<double>& W_kv_b);

}  // namespace ex4
