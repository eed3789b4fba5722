// ex3 — latent compression, the KV side. Do not change this file.
#pragma once

#include <cstdint>
#include <vector>

#include "dsv2/config.hpp"
#include "dsv2/tensor.hpp"
#include "dsv2/weights.hpp"

namespace ex3 {

/// What one layer caches per token: the post-norm latent and the post-RoPE key.
struct Latent {
    dsv2::Mat<double> c_kv;  ///< [T, d_c]  ĉ^KV = kv_a_layernorm(c^KV)
    dsv2::Mat<double> k_pe;  ///< [T, d_R]  k^R = RoPE(W^KR x), one key shared by all heads
};

/// [c^KV | k^R] = x · kv_a_proj_with_mqaᵀ (latent first), ĉ^KV = RMSNorm(c^KV) with
/// kv_a_layernorm, k^R rotated at `positions`.
///   x [T, d] (the output of input_layernorm), positions [T] → Latent
Latent latent(const dsv2::Config& cfg, const dsv2::Weights<double>& w, int64_t l, const dsv2::Mat<double>& x,
              const std::vector<int64_t>& positions);

}  // namespace ex3
