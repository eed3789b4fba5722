// GPU test (CTest label gpu): the CUDA MLA prefill kernel (cuda/src/mla_prefill.cu, non-absorbed
// multi-head form: causal, tiled, online softmax; QK over 192, V over 128) against the fp64
// oracle dsv2::mla_attend_naive. Without a device it prints why and exits 77, which CTest reports
// as skipped. NOT YET RUN ON A GPU: written and compiled on a machine without one.
//
//   fp32 storage: ‖o − o_ref‖/‖o_ref‖ ≤ 1e-5 over the whole output, lse within 1e-5 (relative to
//                 max(1, |lse|)); the CPU twin in fp32 reaches ≤ 4e-7 on the same kind of inputs,
//                 1.0e-6 at T = 1000 after a 3000-token prefix (tests/engine/test_cuda_prefill_host.cpp).
//   bf16 storage: (a) ≤ 1e-5 against the fp64 CPU twin (proved equal to the oracle to 1e-12) run
//                 on the same bf16-rounded inputs: only the kernel's fp32 arithmetic differs;
//                 (b) against the fp64 oracle on the unrounded inputs, every (query, head) row
//                 within the bound derived below.
//
// The bf16 bound (first order in the unit roundoff, worst case; test::prefill_bf16_bound). Inputs
// are rounded fp64 → fp32 → bf16, so each stored x̂ = x(1 + δ) with |δ| ≤ u = 2^-8 + 2^-23 (the
// bf16 roundoff 2^-8 plus the fp32 step). For one query row t and head h, over the visible keys
// j ≤ p0 + t, let S = max_j Σ_k |q_k k_jk| (k = [k_nope | k_pe], 192 wide) and V = max_j ‖v_j‖.
//   Scores: q̂_k k̂_jk = q_k k_jk (1 + δ)(1 + δ'), so the exact score on rounded inputs is off by at
//     most σ (2u + u²) S; the fp32 dot product of 192 terms adds at most σ γ_192 (1 + u)² S
//     (γ_m = m·2^-24 / (1 − m·2^-24), the classical bound for m-term sums). Call the total Δ.
//   Softmax: every score moves by at most Δ, so p̂_j / p_j ∈ [e^{−2Δ}, e^{2Δ}] (numerator and
//     normaliser each move by at most a factor e^{Δ}), hence Σ_j |p̂_j − p_j| ≤ e^{2Δ} − 1.
//   Output: ô − o = Σ_j (p̂_j − p_j) v̂_j + Σ_j p_j (v̂_j − v_j), with ‖v̂_j‖ ≤ (1 + u) V and
//     ‖v̂_j − v_j‖ ≤ u ‖v_j‖, Σ p_j = 1, so ‖ô − o‖ ≤ (e^{2Δ} − 1)(1 + u) V + u V.
//   fp32 sums of l and of the accumulator over at most n keys (the per-tile rescalings and expf's
//     ≤ 2 ulp included, first order): at most 2 γ_n V more (o is a convex combination, ‖o‖ ≤ V).
// The CPU test checks this bound on the CPU twin with fp64 and fp32 arithmetic on the same
// rounded inputs (worst error/bound there ≈ 0.03: it is a worst case, not an estimate, which is
// why (a) is the sharp check of the kernel's arithmetic).
//
// Adversarial: K/V rows past n are NaN in every case (rows allocated beyond n); lengths not a
// multiple of the tiles; T = 1, T = n (pure prefill) and T < n (after a cached prefix); 1, 5, 16
// and 128 heads; tiles from 1×1 to 64×64; long sequences (T = n = 2048; T = 1000 after a
// 3000-token prefix); the output and lse are poisoned with NaN before the run and every element
// must come back finite (every one written); a NaN planted in the last key (visible only to the
// last query) must reach exactly the outputs it should and no other (causally hidden keys in a
// loaded tile are never used); the launcher's argument checks.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <limits>
#include <stdexcept>
#include <string>

#include "dsv2/config.hpp"
#include "dsv2/cuda/mla.hpp"
#include "dsv2/cuda/ops.hpp"
#include "dsv2/engine/paged.hpp"
#include "dsv2/engine/prefill.hpp"
#include "dsv2/mla.hpp"
#include "dsv2/rope.hpp"
#include "mla_prefill_problem.hpp"

using namespace dsv2;
using dsv2::engine::PrefillDims;

namespace {

int failures = 0;
const float kNaNf = std::numeric_limits<float>::quiet_NaN();

void report(const std::string& what, double err, double bound) {
    const bool ok = err <= bound;  // false for NaN
    std::printf("%-78s %.2e  (bound %.1e)  %s\n", what.c_str(), err, bound, ok ? "ok" : "FAIL");
    failures += ok ? 0 : 1;
}

void check(const std::string& what, bool ok) {
    std::printf("%-78s %s\n", what.c_str(), ok ? "ok" : "FAIL");
    failures += ok ? 0 : 1;
}

std::vector<float> f32(const std::vector<double>& x) { return std::vector<float>(x.begin(), x.end()); }
std::vector<double> f64(const std::vector<float>& x) { return std::vector<double>(x.begin(), x.end()); }
std::vector<uint16_t> bf16(const std::vector<double>& x) { return dsv2::to_bf16(f32(x)); }

bool all_finite(const std::vector<float>& x) {
    return std::all_of(x.begin(), x.end(), [](float v) { return std::isfinite(v); });
}

double lse_err(const std::vector<float>& lse, const std::vector<double>& ref) {
    double worst = 0;
    for (size_t k = 0; k < ref.size(); ++k)
        worst = std::max(worst, std::abs(double(lse[k]) - ref[k]) / std::max(1.0, std::abs(ref[k])));
    return worst;
}

struct Case {
    int n_h, T, n, block_q, block_k;
};

std::string name_of(const char* kind, const Case& c) {
    return std::string(kind) + " n_h=" + std::to_string(c.n_h) + " T=" + std::to_string(c.T) + " n=" +
           std::to_string(c.n) + " tiles " + std::to_string(c.block_q) + "x" + std::to_string(c.block_k);
}

void test_fp32(const Case& c, uint32_t seed) {
    const test::PrefillProblem P = test::make_prefill_problem(c.n_h, c.T, c.n, 1 + (c.n * 7) % 61, seed);
    const Mat<double> ref = test::prefill_oracle(P);
    const std::vector<double> lse_ref = test::prefill_oracle_lse(P);
    std::vector<float> o(size_t(ref.size()), kNaNf), lse(lse_ref.size(), kNaNf);  // poisoned
    cuda::mla_prefill(P.d, f32(P.q), f32(P.k_nope), f32(P.kpe), f32(P.v), float(softmax_scale(P.cfg)), o, lse,
                      c.block_q, c.block_k);
    const std::string name = name_of("fp32", c);
    check(name + ": every output written (NaN poison gone)", all_finite(o) && all_finite(lse));
    report(name + ": o", test::prefill_rel_err(o, ref.data(), o.size()), 1e-5);
    report(name + ": lse", lse_err(lse, lse_ref), 1e-5);
}

void test_bf16(const Case& c, uint32_t seed) {
    const test::PrefillProblem P = test::make_prefill_problem(c.n_h, c.T, c.n, 1 + (c.n * 7) % 61, seed);
    const Mat<double> ref = test::prefill_oracle(P);
    const double sigma = softmax_scale(P.cfg), u = std::ldexp(1.0, -8) + std::ldexp(1.0, -23);
    const std::vector<uint16_t> q = bf16(P.q), kn = bf16(P.k_nope), kp = bf16(P.kpe), v = bf16(P.v);
    std::vector<float> o(size_t(ref.size()), kNaNf), lse(size_t(c.T) * size_t(c.n_h), kNaNf);
    cuda::mla_prefill(P.d, q, kn, kp, v, float(sigma), o, lse, c.block_q, c.block_k);
    const std::string name = name_of("bf16", c);
    check(name + ": every output written (NaN poison gone)", all_finite(o) && all_finite(lse));
    // (a) the fp64 twin on the same rounded inputs.
    const auto twin = engine::mla_prefill_tiled_reference<double>(
        P.d, f64(dsv2::from_bf16(q)), f64(dsv2::from_bf16(kn)), f64(dsv2::from_bf16(kp)), f64(dsv2::from_bf16(v)),
        sigma, c.block_q, c.block_k);
    report(name + ": o vs fp64 twin on rounded inputs", test::prefill_rel_err(o, twin.o.data(), o.size()), 1e-5);
    report(name + ": lse vs fp64 twin on rounded inputs", lse_err(lse, twin.lse), 1e-5);
    // (b) the fp64 oracle on the unrounded inputs, row by row within the derived bound.
    const std::vector<double> bound = test::prefill_bf16_bound(P, u);
    const size_t Dv = size_t(P.d.d_v);
    double worst_ratio = 0;
    for (size_t th = 0; th < bound.size(); ++th) {
        double e = 0;
        for (size_t k = 0; k < Dv; ++k) e += (o[th * Dv + k] - ref.data()[th * Dv + k]) * (o[th * Dv + k] - ref.data()[th * Dv + k]);
        worst_ratio = std::max(worst_ratio, std::isnan(e) ? INFINITY : std::sqrt(e) / bound[th]);
    }
    report(name + ": vs fp64 oracle, worst error / derived bf16 bound", worst_ratio, 1.0);
    std::printf("%-78s %.2e\n", (name + ": (vs fp64 oracle, relative error, for information)").c_str(),
                test::prefill_rel_err(o, ref.data(), o.size()));
}

// A NaN planted in the last key (n − 1), visible only to the last query: in k_nope of head 0 and
// in one value column of head 1. Exactly o[T−1, 0, :] (the whole row: one of its scores is NaN),
// lse[T−1, 0] and o[T−1, 1, 5] must be NaN; every other element must be finite and equal the
// fp64 twin run on the same inputs (its NaN pattern is proved on the CPU). The last query tile
// [48, 50) loads key tile [80, 96), which holds key 82, also for query 48 (position 81), which
// must not use it. Poisoned with a finite sentinel so that an unwritten element shows in either set.
template <bool kBf16>
void test_hidden_nan() {
    const Case c{3, 50, 83, 16, 16};
    const test::PrefillProblem P = test::make_prefill_problem(c.n_h, c.T, c.n, 13, 4242);
    std::vector<double> kn = P.k_nope, v = P.v;
    const size_t H = 3, Dn = 128, Dv = 128, last = size_t(c.n - 1);
    kn[(last * H + 0) * Dn + 3] = std::numeric_limits<double>::quiet_NaN();
    v[(last * H + 1) * Dv + 5] = std::numeric_limits<double>::quiet_NaN();
    // The inputs as the kernel stores them, and the fp64 twin on exactly those.
    const auto stored = [](const std::vector<double>& x) {
        return kBf16 ? f64(dsv2::from_bf16(bf16(x))) : f64(f32(x));
    };
    const double sigma = softmax_scale(P.cfg);
    const auto twin = engine::mla_prefill_tiled_reference<double>(P.d, stored(P.q), stored(kn), stored(P.kpe), stored(v),
                                                                double(float(sigma)), c.block_q, c.block_k);
    std::vector<float> o(twin.o.size(), 3e38f), lse(twin.lse.size(), 3e38f);
    if (kBf16) cuda::mla_prefill(P.d, bf16(P.q), bf16(kn), bf16(P.kpe), bf16(v), float(sigma), o, lse, c.block_q, c.block_k);
    else cuda::mla_prefill(P.d, f32(P.q), f32(kn), f32(P.kpe), f32(v), float(sigma), o, lse, c.block_q, c.block_k);
    bool pattern_ok = true;
    double num = 0, den = 0, lse_worst = 0;
    for (size_t t = 0; t < size_t(c.T); ++t)
        for (size_t h = 0; h < H; ++h) {
            const size_t th = t * H + h;
            const bool row_nan = t == size_t(c.T - 1) && h == 0;
            pattern_ok = pattern_ok && std::isnan(twin.lse[th]) == row_nan && std::isnan(lse[th]) == row_nan;
            if (!row_nan) lse_worst = std::max(lse_worst, std::abs(lse[th] - twin.lse[th]) / std::max(1.0, std::abs(twin.lse[th])));
            for (size_t k = 0; k < Dv; ++k) {
                const size_t i = th * Dv + k;
                const bool nan = row_nan || (t == size_t(c.T - 1) && h == 1 && k == 5);
                pattern_ok = pattern_ok && std::isnan(twin.o[i]) == nan && std::isnan(o[i]) == nan;
                if (nan) continue;
                pattern_ok = pattern_ok && std::isfinite(o[i]) && o[i] != 3e38f;
                num += (o[i] - twin.o[i]) * (o[i] - twin.o[i]);
                den += twin.o[i] * twin.o[i];
            }
        }
    const std::string name = std::string(kBf16 ? "bf16" : "fp32") + " NaN in the last key";
    check(name + ": reaches exactly the last query's outputs, all written", pattern_ok);
    report(name + ": the other outputs vs fp64 twin", std::sqrt(num / den), 1e-5);
    report(name + ": the other lse vs fp64 twin", lse_worst, 1e-5);
}

template <typename Fn>
void expect_invalid(const std::string& what, const std::string& needle, Fn fn) {
    try {
        fn();
    } catch (const std::invalid_argument& e) {
        const bool ok = std::string(e.what()).find(needle) != std::string::npos;
        check("launcher rejects " + what + " (\"" + e.what() + "\")", ok);
        return;
    }
    check("launcher rejects " + what + " (no exception)", false);
}

void test_arguments() {
    const PrefillDims d{4, 10, 2, 128, 64, 128};
    const std::vector<float> q(4 * 2 * 192, 0.f), kn(10 * 2 * 128, 0.f), kp(10 * 64, 0.f), v(10 * 2 * 128, 0.f);
    std::vector<float> o(4 * 2 * 128), lse(4 * 2);
    expect_invalid("block_q = 0", "block_q", [&] { cuda::mla_prefill(d, q, kn, kp, v, 0.1f, o, lse, 0, 32); });
    expect_invalid("block_k = 129", "block_k", [&] { cuda::mla_prefill(d, q, kn, kp, v, 0.1f, o, lse, 32, 129); });
    expect_invalid("sigma = NaN", "sigma", [&] { cuda::mla_prefill(d, q, kn, kp, v, kNaNf, o, lse); });
    expect_invalid("n < T", "n must", [&] {
        PrefillDims bad = d;
        bad.n = 3;
        cuda::mla_prefill(bad, q, kn, kp, v, 0.1f, o, lse);
    });
    expect_invalid("a short v", "v must", [&] {
        cuda::mla_prefill(d, q, kn, kp, std::vector<float>(v.size() - 1), 0.1f, o, lse);
    });
    expect_invalid("a wrong-sized o", "o must", [&] {
        std::vector<float> small(o.size() - 1);
        cuda::mla_prefill(d, q, kn, kp, v, 0.1f, small, lse);
    });
    expect_invalid("128x128 tiles (shared memory)", "shared memory",
                   [&] { cuda::mla_prefill(d, q, kn, kp, v, 0.1f, o, lse, 128, 128); });
    std::vector<float> none_o, none_lse;  // T = 0: nothing to do, nothing thrown
    cuda::mla_prefill(PrefillDims{0, 10, 2, 128, 64, 128}, std::vector<float>{}, kn, kp, v, 0.1f, none_o, none_lse);
    check("T = 0 runs nothing", none_o.empty());
}

}  // namespace

int main() {
    if (!cuda::announce_device()) return cuda::kSkipExitCode;
    try {
        test_arguments();
        const std::vector<Case> cases{
            {1, 1, 1, 32, 32},        // one token
            {1, 1, 77, 32, 32},       // T = 1 after a 76-token prefix (decode-like row)
            {1, 37, 37, 16, 16},      // pure prefill, not a multiple of the tiles
            {5, 200, 200, 1, 1},      // degenerate tiles
            {4, 130, 130, 7, 5},      // odd tiles
            {16, 100, 100, 32, 32},   // pure prefill, many heads
            {16, 29, 131, 64, 32},    // T < n: prefill after a cached prefix
            {8, 97, 300, 64, 64},     // T < n, largest tiles that fit
            {128, 65, 200, 32, 32},   // DeepSeek-V2 head count
            {2, 2048, 2048, 32, 32},  // long pure prefill
            {1, 1000, 4000, 64, 32},  // long prefill after a long prefix
        };
        uint32_t seed = 1;
        if (cuda::gpu_test_quick()) {
            // Quick list (compute-sanitizer): the cases with n_h ≤ 16 and n ≤ 300 in fp32 — every
            // tile shape above but the two long ones, the largest tiles among them — and one bf16 case.
            std::printf("DSV2_GPU_TEST_QUICK=1: cases with n_h <= 16 and n <= 300 (fp32), one bf16 case\n");
            for (const Case& c : cases)
                if (c.n_h <= 16 && c.n <= 300) test_fp32(c, seed++);
            test_bf16({16, 29, 131, 64, 32}, seed++);
            test_hidden_nan<false>();
        } else {
            for (const Case& c : cases) test_fp32(c, seed++);
            for (const Case& c : cases) test_bf16(c, seed++);
            test_hidden_nan<false>();
            test_hidden_nan<true>();
        }
    } catch (const std::exception& e) {
        std::printf("FAIL: %s\n", e.what());
        return 1;
    }
    std::printf("%s\n", failures ? "FAILED" : "all ok");
    return failures ? 1 : 0;
}
