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
// # 09 — How a CUDA kernel is verified against the oracle, layer by layer
//
// The CUDA path (`cuda/`) is never trusted on its own. Each kernel is run on the inputs the
// oracle saw and compared with the oracle's tensor **of the same name** (docs/intermediates.md),
// with a relative-error bound that is derived, not guessed:
//
// - **fp64 judges fp32.** The fp64 oracle's own rounding (~1e-16) is negligible next to an fp32
//   kernel's (~1e-7), so the measured difference is the kernel's error.
// - **bf16 inputs get a bound from the unit roundoff** $u = 2^{-8}$: every rounded input is
//   $x(1+\delta)$ with $|\delta| \le u$, and the bound follows from the formula of the layer.
// - **Layer by layer, by name.** Comparing every named intermediate in forward order reports
//   the first place two implementations diverge, not just "the logits differ".
//
// `tests/cuda/test_cuda_rmsnorm.cpp` does this for the RMSNorm kernel of `cuda/src/rmsnorm.cu`
// (CTest label `gpu`; it exits 77 — skipped — without a device). This notebook runs on the CPU:
// the "kernels" are simulated with rounded inputs, so every bound can be watched at work.

// %%
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "dsv2/config.hpp"
#include "dsv2/layers.hpp"
#include "dsv2/model.hpp"
#include "dsv2/rope.hpp"
#include "dsv2/trace.hpp"
#include "dsv2/weights.hpp"
#include "nb.hpp"

using dsv2::Mat;

// Rounds a float to bfloat16 (round to nearest, ties to even) and back: the top 16 bits of the
// fp32 pattern. (NaN and Inf are not needed here.)
float bf16(float x) {
    uint32_t b;
    std::memcpy(&b, &x, 4);
    b += 0x7fffu + ((b >> 16) & 1u);
    b &= 0xffff0000u;
    float y;
    std::memcpy(&y, &b, 4);
    return y;
}

Mat<double> round_bf16(const Mat<double>& m) {
    return m.unaryExpr([](double v) { return double(bf16(float(v))); });
}

// Name-by-name comparison of two traces: prints each name's relative error and returns the first
// name above `tol` ("" when none is).
std::string first_divergence(const dsv2::Trace& ref, const dsv2::Trace& got, double tol, bool print) {
    std::string first;
    for (const std::string& name : ref.order()) {
        const double e = nb::rel_err(got.at(name).data, ref.at(name).data);
        const bool bad = e > tol;
        if (bad && first.empty()) first = name;
        if (print && (name.rfind("layers.0.", 0) == 0 || name == "logits" || bad))
            std::printf("  %-26s rel err %.2e  %s\n", name.c_str(), e, bad ? "DIVERGES" : "ok");
    }
    return first;
}

#if !defined(__CLING__) && !defined(__CLANG_REPL__)
int main() {
#endif

// %% [markdown]
// ## 1. The unit roundoff of bf16
//
// bf16 keeps fp32's 8 exponent bits and 7 of its 23 fraction bits: rounding to nearest makes a
// relative error of at most $u = 2^{-8} \approx 0.0039$ (fp32: $2^{-24} \approx 6 \cdot 10^{-8}$).

// %%
cell(1);
const double u = std::ldexp(1.0, -8);
std::mt19937 gen(1);
std::uniform_real_distribution<double> mant(-1.0, 1.0);
std::uniform_int_distribution<int> expo(-30, 30);
double worst_bf16 = 0;
for (int k = 0; k < 200000; ++k) {
    const float x = float(std::ldexp(mant(gen), expo(gen)));
    if (x != 0.0f) worst_bf16 = std::max(worst_bf16, std::abs(double(bf16(x)) - double(x)) / std::abs(double(x)));
}
std::printf("bf16(3.14159265) = %.8f;  max |bf16(x) - x| / |x| over 200000 values = %.6f;  u = 2^-8 = %.6f\n",
            double(bf16(3.14159265f)), worst_bf16, u);
check(worst_bf16 <= u, "|bf16(x) - x| <= u |x|");
check(worst_bf16 > 0.95 * u, "and the bound is attained (nearly): u is the right constant");

// %% [markdown]
// ## 2. RMSNorm with bf16 inputs: deriving the bound
//
// $y_k = w_k x_k / r(x)$ with $r(x) = \sqrt{\tfrac1n \sum x_j^2 + \epsilon}$. With
// $\hat x_k = x_k(1+\delta_k)$: each $\hat x_j^2 \in [(1-u)^2, (1+u)^2]\, x_j^2$, so
// $r(\hat x) \in [1-u, 1+u]\, r(x)$; and $\hat w_k \hat x_k \in [(1-u)^2, (1+u)^2]\, w_k x_k$.
// Hence, element by element,
//
// $$\frac{|\hat y_k - y_k|}{|y_k|} \le \frac{(1+u)^2}{1-u} - 1 \approx 3u = 0.0117 .$$
//
// The "kernel" below computes in double from bf16-rounded x and w, so the input rounding is the
// only error; a real kernel adds its fp32 arithmetic, about $n \cdot 2^{-24}$ at worst — far below.

// %%
cell(2);
const int64_t T2 = 64, n2 = 512;
const Mat<double> x2 = nb::randn(T2, n2, 2);
const dsv2::Vec<double> w2 = (Eigen::VectorXd::Ones(n2) + 0.1 * nb::randn(n2, 1, 3).col(0));
const Mat<double> y_ref = dsv2::rms_norm<double>(x2, w2, 1e-6);
const Mat<double> y_bf16 = dsv2::rms_norm<double>(round_bf16(x2), round_bf16(Mat<double>(w2)).col(0), 1e-6);
const double bound2 = (1 + u) * (1 + u) / (1 - u) - 1;
const double worst2 = ((y_bf16 - y_ref).array().abs() / y_ref.array().abs()).maxCoeff();
const double frob2 = nb::rel_err(y_bf16, y_ref);
std::printf("elementwise bound %.5f;  worst element %.5f;  Frobenius rel err %.5f\n", bound2, worst2, frob2);
check(worst2 <= bound2, "every element of the bf16-input RMSNorm is within (1+u)^2/(1-u) - 1 of the fp64 oracle");
check(frob2 <= bound2, "so is the Frobenius relative error (what the tests compare)");
check(frob2 > bound2 / 20, "the bound is not vacuous: the measured error is within a factor 20 of it");

// %% [markdown]
// ## 3. fp64 judging fp32: the RMSNorm check of the GPU test, on the CPU
//
// `tests/cuda/test_cuda_rmsnorm.cpp` runs `dsv2::cuda::rms_norm` (fp32) for shapes from 1 × 1 to
// 17 × 5120 and requires a relative error ≤ 1e-5 against `dsv2::rms_norm<double>`. The CPU's fp32
// oracle plays the kernel here: its error is ~1e-7, two orders inside the bound, while two fp64
// computations differ by ~1e-16 — the judge's own error is invisible.

// %%
cell(3);
bool rms_ok = true;
for (auto [T, n] : {std::pair<int, int>{1, 1}, {3, 64}, {17, 5120}, {64, 513}}) {
    const Mat<double> x = nb::randn(T, n, uint32_t(T * 7919 + n));
    const dsv2::Vec<double> w = Eigen::VectorXd::Ones(n) + 0.1 * nb::randn(n, 1, 5).col(0);
    const Mat<double> ref = dsv2::rms_norm<double>(x, w, 1e-6);
    const Mat<float> got = dsv2::rms_norm<float>(x.cast<float>(), w.cast<float>(), 1e-6);
    const double e = nb::rel_err(got, ref);
    std::printf("  rms_norm T=%-3d n=%-5d  fp32 vs fp64: rel err %.2e  %s\n", T, n, e, e <= 1e-5 ? "ok" : "FAIL");
    rms_ok = rms_ok && e <= 1e-5;
}
check(rms_ok, "the fp32 RMSNorm passes the GPU test's bound (1e-5) against the fp64 oracle");

// %% [markdown]
// ## 4. Attention logits from a bf16 cache
//
// An absorbed-MLA decode kernel (FlashMLA style) reads $\tilde q$, $q^R$ and the cached
// $[\hat c ; k^R]$ in bf16. Each product $\hat a \hat b = ab(1+\delta_a)(1+\delta_b)$ is off by at
// most $(2u + u^2)|ab|$, so the logit $s = \sigma(\tilde q \cdot \hat c + q^R \cdot k^R)$ obeys
//
// $$|\hat s - s| \le B = \sigma (2u + u^2) \Big(\sum_k |\tilde q_k \hat c_k| + \sum_k |q^R_k k^R_k|\Big).$$
//
// A row whose logits all move by at most $B_{\max}$ has probabilities that move by a factor
// within $e^{\pm 2 B_{\max}}$: $|\hat p_j - p_j| \le (e^{2 B_{\max}} - 1)\, p_j$. Checked on head 0 of
// layer 1 of the `tiny` model, from the traced tensors of a 12-token prefill.

// %%
cell(4);
const dsv2::Config cfg = dsv2::config_preset("tiny");
const dsv2::Model<double> m64(cfg, dsv2::random_weights<double>(cfg, 0));
const std::vector<int32_t> toks = {84, 104, 101, 32, 119, 111, 114, 100, 32, 119, 97, 115};
dsv2::LatentCache<double> c64(cfg);
dsv2::Trace tr64;
const Mat<double> logits64 = m64.forward(toks, c64, dsv2::AttentionForm::absorbed, &tr64);
const Mat<double> qa = tr64.at("layers.1.attn.q_absorbed").data.leftCols(cfg.d_c);   // head 0 [T, d_c]
const Mat<double> qp = tr64.at("layers.1.attn.q_pe").data.leftCols(cfg.d_R);         // head 0 [T, d_R]
const Mat<double>& ck = tr64.at("layers.1.attn.c_kv").data;                         // [T, d_c]
const Mat<double>& kp = tr64.at("layers.1.attn.k_pe").data;                         // [T, d_R]
const double sigma = dsv2::softmax_scale(cfg);
const Mat<double> s_ref = sigma * (qa * ck.transpose() + qp * kp.transpose());     // [T, T]
const Mat<double> s_bf = sigma * (round_bf16(qa) * round_bf16(ck).transpose() + round_bf16(qp) * round_bf16(kp).transpose());
const Mat<double> B = sigma * (2 * u + u * u) * (qa.cwiseAbs() * ck.cwiseAbs().transpose() + qp.cwiseAbs() * kp.cwiseAbs().transpose());
auto causal_softmax = [](Mat<double> s) {
    for (Eigen::Index t = 0; t < s.rows(); ++t) {
        s.row(t).tail(s.cols() - t - 1).setConstant(-INFINITY);
        s.row(t) = (s.row(t).array() - s.row(t).maxCoeff()).exp().matrix();
        s.row(t) /= s.row(t).sum();
    }
    return s;
};
const Mat<double> p_ref = causal_softmax(s_ref), p_bf = causal_softmax(s_bf);
bool logits_ok = true, probs_ok = true;
double used = 0;
for (Eigen::Index t = 0; t < s_ref.rows(); ++t) {
    const double Bmax = B.row(t).head(t + 1).maxCoeff();
    for (Eigen::Index j = 0; j <= t; ++j) {
        logits_ok = logits_ok && std::abs(s_bf(t, j) - s_ref(t, j)) <= B(t, j);
        probs_ok = probs_ok && std::abs(p_bf(t, j) - p_ref(t, j)) <= (std::exp(2 * Bmax) - 1) * p_ref(t, j);
        used = std::max(used, std::abs(s_bf(t, j) - s_ref(t, j)) / B(t, j));
    }
}
std::printf("logits: largest |s^ - s| / B = %.3f;  largest B = %.4f;  probabilities: rel err %.2e\n", used, B.maxCoeff(),
            nb::rel_err(p_bf, p_ref));
check(logits_ok, "every bf16 logit is within its bound B");
check(probs_ok, "every probability is within (e^{2 B_max} - 1) p of the oracle's");

// %% [markdown]
// ## 5. Layer by layer, by name: finding the first divergence
//
// The fp32 model against the fp64 oracle, every named intermediate in forward order (layer 0 and
// the logits shown): all within 1e-5. Then a "kernel" with a classic bug — the softmax scale
// without YaRN's $\mathrm{mscale}^2$ (spec §6, gotcha 2). Its logits are wrong, and the
// comparison names the first tensor that differs: the latent attention output of layer 0 —
// everything before it (norms, projections, RoPE, the cache rows, the absorbed query) still
// matches. `dsv2 compare --against FILE` prints this for any implementation's dump (docs/compare.md).

// %%
cell(5);
const dsv2::Model<float> m32(cfg, dsv2::random_weights<float>(cfg, 0));
dsv2::LatentCache<float> c32(cfg);
dsv2::Trace tr32;
m32.forward(toks, c32, dsv2::AttentionForm::absorbed, &tr32);
std::printf("fp32 oracle vs fp64 oracle:\n");
const std::string first_ok = first_divergence(tr64, tr32, 1e-5, true);
check(first_ok.empty(), "fp32: every named intermediate within 1e-5 of fp64");

dsv2::Config bug = cfg;
bug.yarn.mscale = 0.0, bug.yarn.mscale_all_dim = 0.0;                                // σ loses mscale²; RoPE unchanged
const dsv2::Model<float> m_bug(bug, dsv2::random_weights<float>(bug, 0));
dsv2::LatentCache<float> c_bug(bug);
dsv2::Trace tr_bug;
m_bug.forward(toks, c_bug, dsv2::AttentionForm::absorbed, &tr_bug);
std::printf("buggy kernel (sigma without mscale^2, %.4f instead of %.4f) vs fp64 oracle:\n", dsv2::softmax_scale(bug), sigma);
const std::string first_bad = first_divergence(tr64, tr_bug, 1e-5, false);
std::printf("  first divergence: %s (rel err %.2e); logits rel err %.2e\n", first_bad.c_str(),
            nb::rel_err(tr_bug.at(first_bad).data, tr64.at(first_bad).data), nb::rel_err(tr_bug.at("logits").data, logits64));
check(first_bad == "layers.0.attn.o_latent", "the comparison names layers.0.attn.o_latent as the first divergence");

// %% [markdown]
// ## 6. The kernel ladder
//
// For each layer of `cuda/`: a plain kernel first, checked by name against the oracle at several
// shapes (including 1 × 1, odd widths and empty inputs), then faster versions, each checked the
// same way before it replaces the last. The bounds above set the tolerance: fp32 kernels against
// fp64 with 1e-5; bf16 inputs with a multiple of $u$ derived for the layer, as in parts 2 and 4.

// %%
cell(6);
#if !defined(__CLING__) && !defined(__CLANG_REPL__)
return nb::finish();
}
#else
nb::finish();
#endif
