// GPU test (CTest label gpu): the cuBLAS projections (cuda/src/linear.cu) against the fp64 oracle
// dsv2::linear<double>. Without a device it prints why and exits 77, which CTest reports as
// skipped. NOT YET RUN ON A GPU: written and compiled on a machine without one.
//
//   fp32           vs dsv2::linear<double>(x, W)                       ‖Δ‖/‖ref‖ ≤ 1e-5
//   bf16 → fp32 y  vs dsv2::linear<double>(x̂, Ŵ) (x̂, Ŵ = bf16(x), bf16(W)): ≤ the accumulation
//                  bound derived below (the GEMM's own arithmetic: fp32 accumulation of exact
//                  bf16·bf16 products)
//                  vs dsv2::linear<double>(x, W) (unrounded): ≤ the rounding bound derived below
//   bf16 → bf16 y  vs dsv2::linear<double>(x̂, Ŵ): ≤ u (1 + A) + A, A the accumulation bound
//                  (one final rounding to bf16)
// Shapes: V2-Lite projections at T ∈ {1, 7, 512}: q_proj 3072×2048, kv_a 576×2048,
// o_proj 2048×2048; lm_head-like 102400×2048 at T = 1; odd shapes (out = 1, in = 3, in = 1,
// in = 0, T = 0). Every output starts NaN-poisoned, so an unwritten element fails the check.
// DSV2_GPU_TEST_QUICK=1 (set by tools/gpu/gpu_check.sh for its compute-sanitizer runs) leaves out
// T = 512 and the lm_head-like shape, and says so.
//
// The bf16 bound against the unrounded oracle. RNE to bf16 (8 significand bits) gives
// x̂ = x(1 + ε), |ε| ≤ u = 2^-8, likewise Ŵ. Each product then has x̂_k Ŵ_jk = x_k W_jk (1 + θ),
// |θ| ≤ 2u + u², so elementwise |ŷ − y| ≤ (2u + u²) (|x| |W|ᵀ) and, in the Frobenius norm,
//   ‖ŷ − y‖ / ‖y‖ ≤ (2u + u²) · ‖ |x| |W|ᵀ ‖ / ‖ x Wᵀ ‖,
// a worst case computed from the data here (with random signs the ratio is ≈ √in·2/π, so the
// bound is ≈ 0.2 at in = 2048, while the typical error — independent rounding errors of rms ≈ u/√3
// in x and in W — is near √2·u/√3 ≈ 3e-3, an estimate, not a bound);
// the GPU's fp32 summation adds at most the accumulation bound A below. The tight check is the one
// on the rounded inputs; this one proves the GPU result is the product of the inputs to bf16 precision.
//
// The accumulation bound A (bf16 inputs, fp32 accumulation, against the fp64 product of the same
// rounded inputs). A bf16·bf16 product has at most 8 + 8 = 16 significand bits, so every product is
// exact in fp32; the only errors are the n − 1 additions of each output's n = in terms (and the
// epilogue's α·acc with α = 1, exact). A tensor-core adder may align and truncate instead of
// rounding to nearest, so take the unit roundoff of one addition as u_acc = 2^-23 (a whole fp32
// ulp, twice RNE's 2^-24). For ANY summation order (blocked k-loops, split-K, a tree) the classical
// bound (Higham, Accuracy and Stability of Numerical Algorithms, §3.1 and eq. 3.5) gives
//   |ŷ_j − y_j| ≤ γ_n Σ_k |x̂_k Ŵ_jk|,   γ_n = n u_acc / (1 − n u_acc),
// and in the Frobenius norm over all outputs
//   ‖ŷ − y‖ / ‖y‖ ≤ A := γ_n ‖ |x̂| |Ŵ|ᵀ ‖ / ‖ x̂ Ŵᵀ ‖.
// At in = 2048 with these random inputs A ≈ 2.4e-4 · 34 ≈ 8e-3: a worst case, never reached by a
// correct GEMM; the error expected of one is near √(n/2) u_acc ≈ 4e-6 (random-sign partial sums),
// which is why a fixed 1e-5 had too little margin. A stays far below what a wrong accumulation
// type gives (bf16 accumulation ≈ √n 2^-9 ≈ 0.09, fp16 ≈ 2e-2 at in = 2048) or a dropped k-block.
// The fp32 path keeps 1e-5: cuBLAS's SGEMM rounds to nearest (no TF32: linear.cu sets the
// default math mode), expected ≈ √n 2^-24 ≈ 3e-6 at in = 2048 with the same random-sign argument.
#include <cmath>
#include <cstdlib>
#include <cstdio>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "dsv2/cuda/linear.hpp"
#include "dsv2/cuda/ops.hpp"
#include "dsv2/engine/paged.hpp"  // to_bf16 / from_bf16
#include "dsv2/layers.hpp"

using dsv2::Mat;

namespace {

int failures = 0;

void report(const std::string& what, double err, double bound) {
    const bool ok = err <= bound;  // false for NaN
    std::printf("%-64s rel err %.2e  (bound %.2e)  %s\n", what.c_str(), err, bound, ok ? "ok" : "FAIL");
    failures += ok ? 0 : 1;
}

/// ‖a − b‖ / ‖b‖ (‖a − b‖ when b = 0); NaN anywhere in a makes it NaN.
template <typename A>
double rel(const std::vector<A>& a, const Mat<double>& b) {
    if (a.size() != size_t(b.size())) return std::numeric_limits<double>::quiet_NaN();
    double num = 0, den = 0;
    for (size_t k = 0; k < a.size(); ++k) {
        const double d = double(a[k]) - b.data()[k];
        num += d * d;
        den += b.data()[k] * b.data()[k];
    }
    return den > 0 ? std::sqrt(num / den) : std::sqrt(num);
}

Mat<double> to_mat(const std::vector<float>& v, int r, int c) {
    Mat<double> m(r, c);
    for (size_t k = 0; k < v.size(); ++k) m.data()[k] = v[k];
    return m;
}

std::vector<float> rand_vec(size_t n, std::mt19937& gen, float scale) {
    std::uniform_real_distribution<float> ud(-1.f, 1.f);
    std::vector<float> v(n);
    for (float& e : v) e = scale * ud(gen);
    return v;
}

/// A = γ_n ‖|x̂||Ŵ|ᵀ‖ / ‖x̂Ŵᵀ‖ with n = in and u_acc = 2^-23 (derived in the header); the bound on an
/// empty sum (in = 0: y = 0 exactly) or an all-zero product is 0 beyond the 1e-30 floor.
double accumulation_bound(const Mat<double>& x, const Mat<double>& W, const Mat<double>& ref) {
    // + 2^-53: the fp64 reference's own sums (negligible, kept so that the bound is a bound)
    const double u_acc = std::ldexp(1.0, -23) + std::ldexp(1.0, -53), n = double(x.cols());
    const double gamma = n * u_acc / (1 - n * u_acc);
    const double ref_norm = ref.norm();
    if (ref_norm == 0) return 1e-30;
    return gamma * dsv2::linear<double>(x.cwiseAbs(), W.cwiseAbs()).norm() / ref_norm + 1e-30;
}

void check_shape(const std::string& name, int T, int in, int out) {
    std::mt19937 gen(uint32_t(T * 1000003 + in * 7919 + out));
    const float w_scale = in > 0 ? 1.f / std::sqrt(float(in)) : 1.f;
    const std::vector<float> x = rand_vec(size_t(T) * size_t(in), gen, 1.f);
    const std::vector<float> W = rand_vec(size_t(out) * size_t(in), gen, w_scale);
    const float nan = std::numeric_limits<float>::quiet_NaN();
    const std::string tag = name + " T=" + std::to_string(T) + " " + std::to_string(out) + "x" + std::to_string(in);

    Mat<double> xd = to_mat(x, T, in), Wd = to_mat(W, out, in);
    const Mat<double> ref = dsv2::linear<double>(xd, Wd);

    // fp32
    std::vector<float> y(size_t(T) * size_t(out), nan);
    dsv2::cuda::linear(x, W, T, in, out, y);
    report(tag + " fp32 vs oracle", rel(y, ref), 1e-5);

    // bf16 inputs
    const std::vector<uint16_t> xb = dsv2::to_bf16(x), Wb = dsv2::to_bf16(W);
    const Mat<double> ref_rounded =
        dsv2::linear<double>(to_mat(dsv2::from_bf16(xb), T, in), to_mat(dsv2::from_bf16(Wb), out, in));
    std::vector<float> yb(size_t(T) * size_t(out), nan);
    dsv2::cuda::linear(xb, Wb, T, in, out, yb);
    const double A = accumulation_bound(to_mat(dsv2::from_bf16(xb), T, in),
                                        to_mat(dsv2::from_bf16(Wb), out, in), ref_rounded);
    report(tag + " bf16→fp32 vs oracle(rounded inputs), accumulation bound", rel(yb, ref_rounded), A);

    // derived bound against the unrounded oracle: (2u + u²) ‖|x||W|ᵀ‖ / ‖xWᵀ‖ + 1e-5
    const double u = std::ldexp(1.0, -8);
    const double ref_norm = ref.norm();
    const Mat<double> abs_prod = dsv2::linear<double>(xd.cwiseAbs(), Wd.cwiseAbs());
    const double bound = ref_norm > 0 ? (2 * u + u * u) * abs_prod.norm() / ref_norm + 1e-5 : 1e-5;
    report(tag + " bf16→fp32 vs oracle(unrounded), derived bound", rel(yb, ref), bound);

    // bf16 output: one more rounding, |ε| ≤ u per element
    std::vector<uint16_t> ybb(size_t(T) * size_t(out), dsv2::float_to_bf16_bits(nan));
    dsv2::cuda::linear(xb, Wb, T, in, out, ybb);
    report(tag + " bf16→bf16 vs oracle(rounded inputs)", rel(dsv2::from_bf16(ybb), ref_rounded), u * (1 + A) + A);
}

}  // namespace

int main() {
    if (!dsv2::cuda::announce_device()) return dsv2::cuda::kSkipExitCode;
    try {
        // V2-Lite: hidden 2048, q_proj 16·192 = 3072 (no q LoRA), kv_a_proj_with_mqa 512 + 64 = 576,
        // o_proj 16·128 = 2048 → 2048.
        const bool quick = dsv2::cuda::gpu_test_quick();
        if (quick) std::printf("DSV2_GPU_TEST_QUICK=1: T = 512 and the lm_head-like shape left out\n");
        for (int T : {1, 7, 512}) {
            if (quick && T == 512) continue;
            check_shape("q_proj", T, 2048, 3072);
            check_shape("kv_a_proj", T, 2048, 576);
            check_shape("o_proj", T, 2048, 2048);
        }
        if (!quick) check_shape("lm_head-like", 1, 2048, 102400);
        // odd shapes: one output, a 3-wide inner dimension, a 1-wide one, an empty sum, no rows
        check_shape("odd", 5, 3, 1);
        check_shape("odd", 1, 3, 1);
        check_shape("odd", 3, 1, 7);
        check_shape("odd", 33, 3, 17);
        check_shape("empty sum", 4, 0, 6);   // y = 0, all written
        check_shape("no rows", 0, 16, 8);
        // a size mismatch is refused, naming it
        bool threw = false;
        try {
            std::vector<float> y(6);
            dsv2::cuda::linear(std::vector<float>(5), std::vector<float>(6), 2, 3, 2, y);
        } catch (const std::invalid_argument& e) {
            threw = std::string(e.what()).find("x size") != std::string::npos;
        }
        std::printf("%-64s %s\n", "size mismatch refused, naming x", threw ? "ok" : "FAIL");
        failures += threw ? 0 : 1;
    } catch (const std::exception& e) {
        std::printf("FAIL: exception: %s\n", e.what());
        return 1;
    }
    std::printf("%s\n", failures ? "FAILED" : "all ok");
    return failures ? 1 : 0;
}
