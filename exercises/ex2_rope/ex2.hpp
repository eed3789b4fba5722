// ex2 — interleaved RoPE with YaRN frequencies. Do not change this file.
#pragma once

#include <cstdint>
#include <vector>

#include "dsv2/config.hpp"
#include "dsv2/tensor.hpp"

namespace ex2 {

/// Inverse frequencies θ'_k, k = 0 … d_R/2 − 1: θ_k = rope_theta^(−2k/d_R), blended with θ_k / s
/// over YaRN's correction range when cfg.has_yarn (see README.md).
std::vector<double> inv_freq(const dsv2::Config& cfg);

/// Interleaved RoPE: every d_R-wide chunk of row t (n heads side by side) has its pairs
/// (x_2k, x_2k+1) rotated by the angle positions[t]·inv_freq[k] and scaled by `amplitude`.
///   x [T, n·d_R], positions [T] → [T, n·d_R]
dsv2::Mat<double> apply_rope(const dsv2::Mat<double>& x, const std::vector<int64_t>& positions,
                             const std::vector<double>& inv_freq, double amplitude);

}  // namespace ex2
