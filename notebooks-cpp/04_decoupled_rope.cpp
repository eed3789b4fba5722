// ---
// jupyter:
//   jupytext:
//     formats: cpp:percent
//     text_representation:
//       extension: .cpp
//       format_name: percent
//   kernelspec:
//     display_name: C++17
//     language: c++
//     name: xcpp17
// ---

// %% [markdown]
// # 04 — Decoupled RoPE
//
// Rotary position embedding (RoPE) rotates pairs of query and key coordinates by an angle
// proportional to the token's position, so that $q \cdot k$ depends on the positions only
// through their difference. MLA cannot simply rotate its keys $k^C = W^{UK} c^{KV}$: the
// rotation would sit between $W^{UQ}$ and $W^{UK}$ and stop the absorption of notebook 05
// (§2.1.3 of the paper). Instead it adds a separate, small RoPE part to every head:
//
// $$q_{t,i} = [q^C_{t,i};\ \mathrm{RoPE}_t(q^R_{t,i})], \qquad
//   k_{j,i} = [k^C_{j,i};\ \mathrm{RoPE}_j(k^R_j)],$$
//
// with one $k^R_j \in \mathbb{R}^{d_R}$ shared by all heads and cached beside the latent.
// This notebook shows the three facts numerically and compares the two RoPE layouts in use.

// %%
#include <cmath>
#include <cstdio>
#include <vector>

#include "dsv2/config.hpp"
#include "dsv2/rope.hpp"
#include "dsv2/weights.hpp"
#include "nb.hpp"

using dsv2::Mat;

// RoPE of one row at position p (dsv2::apply_rope rotates the interleaved pairs (2k, 2k+1)).
Mat<double> rope_at(const Mat<double>& x, int64_t p, const dsv2::Rope& rope) {
    Mat<double> y = x;
    dsv2::apply_rope<double>(y, std::vector<int64_t>(size_t(x.rows()), p), rope);
    return y;
}

#if !defined(__CLING__) && !defined(__CLANG_REPL__)
int main() {
#endif

// %% [markdown]
// ## 1. RoPE scores depend on the relative position only
//
// For DeepSeek-V2's $d_R = 64$ (with its YaRN frequencies, part 5): rotate $q$ to position $t$
// and $k$ to position $j$, then shift both by the same $\Delta$. The score does not move; the
// rotation keeps lengths.

// %%
cell(1);
const dsv2::Config v2 = dsv2::config_preset("deepseek-v2");
const dsv2::Rope rope_v2(v2);
const Mat<double> qr = nb::randn(1, v2.d_R, 1), kr = nb::randn(1, v2.d_R, 2);
auto score = [&](int64_t t, int64_t j) { return rope_at(qr, t, rope_v2).row(0).dot(rope_at(kr, j, rope_v2).row(0)); };
double worst_shift = 0;
for (int64_t delta : {1, 17, 1000, 100000}) {
    const double a = score(12, 5), b = score(12 + delta, 5 + delta);
    std::printf("score(t=12, j=5) = %+.12f   score(t=%lld, j=%lld) = %+.12f\n", a, (long long)(12 + delta),
                (long long)(5 + delta), b);
    worst_shift = std::max(worst_shift, std::abs(a - b) / std::abs(a));
}
check(worst_shift < 1e-10, "shifting both positions leaves the RoPE score unchanged (relative position only)");
check(std::abs(rope_at(qr, 777, rope_v2).norm() - qr.norm()) < 1e-12 * qr.norm(), "RoPE is a rotation: it keeps the length");

// %% [markdown]
// ## 2. RoPE on $k^C$ would break the absorption
//
// Suppose RoPE were applied to the compressed keys themselves: $k_j = R_j W^{UK} \hat c_j$ and
// $q_t = R_t q^C_t$. Then
//
// $$q_t \cdot k_j = q^{C\top}_t R_t^\top R_j W^{UK} \hat c_j = q^{C\top}_t R_{j-t} W^{UK} \hat c_j ,$$
//
// and the matrix between query and latent depends on $j - t$: there is no single absorbed
// query $\tilde q = W^{UK\top} q^C$ to dot with every cached $\hat c_j$. Below: one head of the
// `tiny` preset ($d_h = 16$, $d_c = 32$), the **same** latent placed at positions $j = 0 … 9$,
// a query at $t = 9$. The coupled score changes with $j$; the absorbed $\tilde q \cdot \hat c$
// is one number, equal to the coupled score only where the rotation vanishes ($j = t$).

// %%
cell(2);
const dsv2::Config tiny = dsv2::config_preset("tiny");
const dsv2::Weights<double> w = dsv2::random_weights<double>(tiny, 3);
const Mat<double> W_UK0 = w.mat(dsv2::layer_prefix(1) + "self_attn.kv_b_proj.weight").topRows(tiny.d_h);  // head 0 [d_h, d_c]
dsv2::Config rot16 = tiny;           // a plain RoPE as wide as the content head, to rotate k^C
rot16.d_R = tiny.d_h;
rot16.has_yarn = false;
const dsv2::Rope rope16(rot16);
const Mat<double> qC = nb::randn(1, tiny.d_h, 4), c_hat = nb::randn(1, tiny.d_c, 5);
const Mat<double> kC = c_hat * W_UK0.transpose();                                  // [1, d_h]
const double absorbed = (qC * W_UK0).row(0).dot(c_hat.row(0));                     // q̃·ĉ, no position
const int64_t t_q = 9;
double lo = 1e300, hi = -1e300;
for (int64_t j = 0; j <= t_q; ++j) {
    const double coupled = rope_at(qC, t_q, rope16).row(0).dot(rope_at(kC, j, rope16).row(0));
    lo = std::min(lo, coupled), hi = std::max(hi, coupled);
    std::printf("  latent at j = %lld: coupled score %+.6f   absorbed q~.c %+.6f\n", (long long)j, coupled, absorbed);
}
const double at_t = rope_at(qC, t_q, rope16).row(0).dot(rope_at(kC, t_q, rope16).row(0));
check((hi - lo) > 0.05 * std::abs(absorbed), "with RoPE on k^C the score of one latent changes with its position");
check(std::abs(at_t - absorbed) < 1e-12 * std::abs(absorbed), "at j = t (no rotation) it equals the absorbed q~.c");

// %% [markdown]
// ## 3. The decoupled form keeps $\tilde q \cdot \hat c$ position-free
//
// MLA's score for head $i$ is $\tilde q_{t,i} \cdot \hat c_j + \mathrm{RoPE}_t(q^R_{t,i}) \cdot
// \mathrm{RoPE}_j(k^R_j)$. The first term never sees a position, so $\tilde q$ is computed once
// per query and dotted with every cached latent; the second is an ordinary RoPE score over
// $d_R$ dimensions, relative in $t - j$. Here with the `tiny` preset's interleaved YaRN RoPE.

// %%
cell(3);
const dsv2::Rope rope_tiny(tiny);
const Mat<double> qR = nb::randn(1, tiny.d_R, 6), kR = nb::randn(1, tiny.d_R, 7);
auto decoupled = [&](int64_t t, int64_t j) {
    return absorbed + rope_at(qR, t, rope_tiny).row(0).dot(rope_at(kR, j, rope_tiny).row(0));
};
std::printf("content part q~.c = %+.6f at every (t, j)\n", absorbed);
for (int64_t j : {0, 3, 9})
    std::printf("  t = 9, j = %lld: %+.9f    t = 509, j = %lld: %+.9f\n", (long long)j, decoupled(9, j),
                (long long)(500 + j), decoupled(509, 500 + j));
double worst_dec = 0;
for (int64_t j = 0; j <= 9; ++j) worst_dec = std::max(worst_dec, std::abs(decoupled(9, j) - decoupled(509, 500 + j)));
check(worst_dec < 1e-12, "the decoupled score depends on t - j only");
check(std::abs(decoupled(9, 0) - decoupled(9, 9)) > 1e-6, "and the RoPE part still carries position");

// %% [markdown]
// ## 4. Interleaved RoPE and Hugging Face's permute + rotate_half
//
// DeepSeek's weights are trained for **interleaved** pairs $(x_{2k}, x_{2k+1})$ (the complex form
// of the reference code; `dsv2::apply_rope`). The Hugging Face modelling file first permutes each
// 64-vector to evens-then-odds, $[x_0, x_2, …, x_{62}, x_1, x_3, …, x_{63}]$, then applies the
// Llama/NeoX `rotate_half` with `cos = cat(cos θ, cos θ)`. The two give the same scores, and the
// HF vectors are the evens-then-odds reordering of the interleaved ones. Applying `rotate_half`
// **without** the permutation is the classic silent bug.

// %%
cell(4);
const int64_t dR = v2.d_R, half = dR / 2;
auto permute = [&](const Mat<double>& x) {                                          // evens, then odds
    Mat<double> y(1, dR);
    for (int64_t k = 0; k < half; ++k) y(0, k) = x(0, 2 * k), y(0, half + k) = x(0, 2 * k + 1);
    return y;
};
auto rotate_half_rope = [&](const Mat<double>& x, int64_t p) {                    // NeoX / Llama form
    Mat<double> y(1, dR);
    for (int64_t k = 0; k < half; ++k) {
        const double a = double(p) * rope_v2.inv_freq[size_t(k)], c = std::cos(a), s = std::sin(a);
        y(0, k) = rope_v2.amplitude * (x(0, k) * c - x(0, half + k) * s);        // x·cos + rotate_half(x)·sin
        y(0, half + k) = rope_v2.amplitude * (x(0, half + k) * c + x(0, k) * s);
    }
    return y;
};
const int64_t tq = 300, tk = 41;
const Mat<double> q_il = rope_at(qr, tq, rope_v2), k_il = rope_at(kr, tk, rope_v2);
const Mat<double> q_hf = rotate_half_rope(permute(qr), tq), k_hf = rotate_half_rope(permute(kr), tk);
const Mat<double> q_bug = rotate_half_rope(qr, tq), k_bug = rotate_half_rope(kr, tk);
const double s_il = q_il.row(0).dot(k_il.row(0)), s_hf = q_hf.row(0).dot(k_hf.row(0)), s_bug = q_bug.row(0).dot(k_bug.row(0));
std::printf("score: interleaved %+.12f   HF permute+rotate_half %+.12f   rotate_half, no permute %+.12f\n", s_il, s_hf, s_bug);
check(nb::rel_err(q_hf, permute(q_il)) < 1e-14 && nb::rel_err(k_hf, permute(k_il)) < 1e-14,
      "HF's rotated vectors = evens-then-odds reordering of the interleaved ones");
check(std::abs(s_hf - s_il) < 1e-12 * std::abs(s_il), "the two layouts give the same q.k");
check(std::abs(s_bug - s_il) > 1e-3 * std::abs(s_il), "rotate_half on un-permuted vectors gives a different score");

// %% [markdown]
// ## 5. YaRN frequencies and the softmax scale
//
// DeepSeek-V2 extends its context from 4K to 128K with YaRN (§3.1.4): pair $k$ keeps its
// frequency $\theta_k = 10000^{-2k/d_R}$ below the correction range, is divided by $s = 40$ above
// it, and is blended inside it. For $d_R = 64$ the range is $[10, 23]$. The softmax scale carries
// $\mathrm{mscale}^2$: $\sigma = d_{qk}^{-1/2} (0.1 \cdot 0.707 \ln 40 + 1)^2 = 0.114721$.

// %%
cell(5);
const dsv2::YarnRange yr = dsv2::yarn_correction_range(v2.d_R, v2.rope_theta, v2.yarn.L0, v2.yarn.beta_fast, v2.yarn.beta_slow);
std::printf("correction range: [%lld, %lld]\n  k   theta_k        theta'_k       theta/theta'\n", (long long)yr.low, (long long)yr.high);
bool ramp_ok = true;
for (int64_t k = 0; k < half; ++k) {
    const double th = std::pow(v2.rope_theta, -2.0 * double(k) / double(v2.d_R)), ratio = th / rope_v2.inv_freq[size_t(k)];
    if (k % 3 == 0 || k == yr.low || k == yr.high) std::printf("  %-3lld %.6e  %.6e  %6.2f\n", (long long)k, th, rope_v2.inv_freq[size_t(k)], ratio);
    if (k <= yr.low) ramp_ok = ramp_ok && std::abs(ratio - 1.0) < 1e-12;
    if (k >= yr.high) ramp_ok = ramp_ok && std::abs(ratio - 40.0) < 1e-9;
}
const double sigma = dsv2::softmax_scale(v2);
std::printf("sigma = %.6f = 192^-1/2 (%.7f) x mscale^2 (%.6f)\n", sigma, 1.0 / std::sqrt(192.0), sigma * std::sqrt(192.0));
check(yr.low == 10 && yr.high == 23, "YaRN correction range [10, 23] for d_R = 64");
check(ramp_ok, "pairs up to 10 keep theta_k; pairs from 23 on use theta_k / 40");
check(std::abs(sigma - 0.114721) < 5e-7, "softmax scale 0.114721");

// %%
cell(6);
#if !defined(__CLING__) && !defined(__CLANG_REPL__)
return nb::finish();
}
#else
nb::finish();
#endif
