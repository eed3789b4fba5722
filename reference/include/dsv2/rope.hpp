// Decoupled RoPE with YaRN frequencies, and the attention softmax scale (DeepSeek-V2 §2.1.3,
// §3.1.4; spec §2.4–2.5).
#pragma once

#include <vector>

#include "dsv2/config.hpp"
#include "dsv2/tensor.hpp"

namespace dsv2 {

/// YaRN correction range [low, high] of pair indices: D(r) = d_R·ln(L0/(2πr)) / (2 ln base),
/// low = max(floor(D(β_fast)), 0), high = min(ceil(D(β_slow)), d_R − 1).
struct YarnRange {
    int64_t low, high;
};
YarnRange yarn_correction_range(int64_t d_R, double base, int64_t L0, double beta_fast, double beta_slow);

/// mscale(s, m) = 0.1·m·ln s + 1 for s > 1, else 1.
double yarn_mscale(double s, double m);

/// Inverse frequencies θ'_k, k = 0 … d_R/2 − 1. Without YaRN θ_k = base^(−2k/d_R); with it
/// θ'_k = θ_k·(1 − r_k) + (θ_k/s)·r_k, r_k = clamp((k − low)/(high − low), 0, 1).
std::vector<double> rope_inv_freq(const Config& cfg);

/// cos/sin amplitude m_rope = mscale(s, mscale) / mscale(s, mscale_all_dim) (1 without YaRN;
/// 1 for every released DeepSeek config).
double rope_amplitude(const Config& cfg);

/// Attention softmax scale σ = d_qk^(−1/2) · mscale(s, mscale_all_dim)². 0.114721 for V2.
/// The same σ serves both attention forms (absorption is an exact rewrite of the same logits).
double softmax_scale(const Config& cfg);

/// Rotary tables for positions: angle(p, k) = p·θ'_k, computed in double.
struct Rope {
    std::vector<double> inv_freq;  ///< [d_R/2]
    double amplitude = 1.0;
    explicit Rope(const Config& cfg) : inv_freq(rope_inv_freq(cfg)), amplitude(rope_amplitude(cfg)) {}
};

/// Interleaved (GPT-J / complex) RoPE, the layout of the released weights: each d_R-wide chunk
/// of a row is rotated pairwise, (x_2k, x_2k+1) by angle p_t·θ'_k and scaled by the amplitude:
///   x'_2k   = a (x_2k cos − x_2k+1 sin),   x'_2k+1 = a (x_2k sin + x_2k+1 cos).
///   x [T, n·d_R] (n heads side by side), positions [T] → in place
template <typename S>
void apply_rope(Mat<S>& x, const std::vector<int64_t>& positions, const Rope& rope);

}  // namespace dsv2
