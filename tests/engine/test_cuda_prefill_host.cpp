// The host logic of the CUDA MLA prefill (engine/include/dsv2/engine/prefill.hpp), on the CPU: the CPU
// twin of the prefill kernel (query tiles × key tiles, FlashAttention-2 online softmax, causal
// mask by absolute position, key tiles above the diagonal skipped) against the fp64 oracle
// dsv2::mla_attend_naive, with K/V decompressed from the oracle's c_kv and W_kv_b as the oracle
// does; the argument checks shared with the kernel's launcher; the shared-memory size.
#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <limits>
#include <random>
#include <string>

#include "dsv2/config.hpp"
#include "dsv2/engine/paged.hpp"
#include "dsv2/engine/prefill.hpp"
#include "dsv2/mla.hpp"
#include "dsv2/rope.hpp"
#include "mla_prefill_problem.hpp"

using namespace dsv2;
using dsv2::engine::PrefillDims;

namespace {

const double kNaN = std::numeric_limits<double>::quiet_NaN();

using Problem = test::PrefillProblem;

// (head, query tile, key tile) steps the kernel runs: key tiles [j0, j0 + Bc) with j0 ≤ p0 + t1 − 1.
int64_t expected_steps(const PrefillDims& d, int Br, int Bc) {
    int64_t steps = 0;
    for (int t0 = 0; t0 < d.T; t0 += Br) {
        const int last_key = d.p0() + std::min(d.T, t0 + Br) - 1;
        for (int j0 = 0; j0 <= last_key; j0 += Bc) ++steps;
    }
    return steps * d.n_h;
}

struct Shape {
    int T, n;
};

}  // namespace

TEST_CASE("prefill twin: tiled online softmax equals mla_attend_naive (fp64), pure prefill and after a cached prefix") {
    // T = 1 (a decode-like row), T = n (pure prefill), T < n (prefill after a cached prefix);
    // lengths that are and are not multiples of the tiles.
    const std::vector<Shape> shapes{{1, 1}, {1, 77}, {37, 37}, {64, 64}, {100, 100}, {29, 131}, {65, 200}};
    const std::vector<std::pair<int, int>> tiles{{1, 1}, {7, 5}, {16, 16}, {32, 64}, {64, 32}, {128, 128}};
    uint32_t seed = 1;
    int skipped_somewhere = 0;
    for (int n_h : {1, 5, 16}) {
        for (const Shape& s : shapes) {
            const Problem P = test::make_prefill_problem(n_h, s.T, s.n, 1 + s.n % 7, seed++);
            const Mat<double> ref = test::prefill_oracle(P);
            const std::vector<double> lse_ref = test::prefill_oracle_lse(P);
            const double sigma = softmax_scale(P.cfg);
            for (const auto& [Br, Bc] : tiles) {
                const engine::PrefillReference<double> r =
                    engine::mla_prefill_tiled_reference<double>(P.d, P.q, P.k_nope, P.kpe, P.v, sigma, Br, Bc);
                INFO("n_h " << n_h << " T " << s.T << " n " << s.n << " tiles " << Br << "x" << Bc);
                REQUIRE(r.o.size() == size_t(ref.size()));
                REQUIRE(std::all_of(r.o.begin(), r.o.end(), [](double x) { return std::isfinite(x); }));
                const double err = test::prefill_rel_err(r.o, ref.data(), r.o.size());
                INFO("rel err " << err);
                REQUIRE(err <= 1e-12);
                for (size_t k = 0; k < lse_ref.size(); ++k)
                    REQUIRE(std::abs(r.lse[k] - lse_ref[k]) <= 1e-12 * std::max(1.0, std::abs(lse_ref[k])));
                REQUIRE(r.key_tile_steps == expected_steps(P.d, Br, Bc));
                // Tiles above the diagonal are skipped: fewer steps than every query tile × every key tile.
                const int64_t full = int64_t(n_h) * ((s.T + Br - 1) / Br) * ((s.n + Bc - 1) / Bc);
                REQUIRE(r.key_tile_steps <= full);
                skipped_somewhere += r.key_tile_steps < full;
            }
        }
    }
    REQUIRE(skipped_somewhere > 0);
}

TEST_CASE("prefill twin: NaN rows past n are never read, and a NaN in a visible row does reach the output") {
    const Problem P = test::make_prefill_problem(3, 50, 83, 45, 77);  // 45 NaN rows past n, across tile edges
    const double sigma = softmax_scale(P.cfg);
    const Mat<double> ref = test::prefill_oracle(P);
    for (const auto& [Br, Bc] : std::vector<std::pair<int, int>>{{16, 16}, {13, 64}, {50, 128}}) {
        const auto r = engine::mla_prefill_tiled_reference<double>(P.d, P.q, P.k_nope, P.kpe, P.v, sigma, Br, Bc);
        REQUIRE(std::all_of(r.o.begin(), r.o.end(), [](double x) { return std::isfinite(x); }));
        REQUIRE(test::prefill_rel_err(r.o, ref.data(), r.o.size()) <= 1e-12);
    }
    // The poisoning is a real test: NaN in key n − 1 (seen only by the last query) shows up there
    // and nowhere else, for every head whose value or key holds it.
    Problem Q = P;
    const size_t H = 3, Dv = 128, last = size_t(Q.d.n - 1);
    Q.v[(last * H + 1) * Dv + 5] = kNaN;  // head 1, value column 5
    const auto r = engine::mla_prefill_tiled_reference<double>(Q.d, Q.q, Q.k_nope, Q.kpe, Q.v, sigma, 16, 16);
    for (size_t t = 0; t < size_t(Q.d.T); ++t)
        for (size_t h = 0; h < H; ++h)
            for (size_t c = 0; c < Dv; ++c) {
                const bool poisoned = t == size_t(Q.d.T - 1) && h == 1 && c == 5;
                REQUIRE(std::isnan(r.o[(t * H + h) * Dv + c]) == poisoned);
            }
}

TEST_CASE("prefill twin in fp32 stays within 1e-5 of the fp64 oracle (the GPU test's fp32 bound)") {
    for (const Shape& s : std::vector<Shape>{{1, 300}, {200, 200}, {90, 257}, {1000, 4000}}) {  // last: measured 1.0e-6
        const Problem P = test::make_prefill_problem(s.n > 1000 ? 1 : 4, s.T, s.n, 3, uint32_t(500 + s.n));
        const auto f = [](const std::vector<double>& x) { return std::vector<float>(x.begin(), x.end()); };
        const Mat<double> ref = test::prefill_oracle(P);
        const auto r = engine::mla_prefill_tiled_reference<float>(P.d, f(P.q), f(P.k_nope), f(P.kpe), f(P.v),
                                                                float(softmax_scale(P.cfg)), 32, 32);
        INFO("T " << s.T << " n " << s.n);
        REQUIRE(test::prefill_rel_err(r.o, ref.data(), r.o.size()) <= 1e-5);
    }
}

TEST_CASE("prefill twin on bf16-rounded inputs stays within the derived bf16 bound (the GPU test's bf16 bound)") {
    // The bound of tests/cuda/test_cuda_mla_prefill.cpp (test::prefill_bf16_bound), checked here where
    // only the rounding of the inputs differs (fp64 arithmetic) and with the fp32 arithmetic of the
    // kernel's algorithm; the GPU test applies the same bound to the kernel.
    const double u = std::ldexp(1.0, -8) + std::ldexp(1.0, -23);  // fp64 → fp32 → bf16
    const auto bf16 = [](const std::vector<double>& x) {
        const std::vector<float> r = dsv2::from_bf16(dsv2::to_bf16(std::vector<float>(x.begin(), x.end())));
        return std::vector<double>(r.begin(), r.end());
    };
    const auto f32 = [](const std::vector<double>& x) { return std::vector<float>(x.begin(), x.end()); };
    for (const Shape& s : std::vector<Shape>{{1, 1}, {1, 300}, {150, 150}, {61, 257}}) {
        const Problem P = test::make_prefill_problem(3, s.T, s.n, 2, uint32_t(900 + s.n));
        const Mat<double> ref = test::prefill_oracle(P);
        const std::vector<double> bound = test::prefill_bf16_bound(P, u);
        const std::vector<double> q = bf16(P.q), kn = bf16(P.k_nope), kp = bf16(P.kpe), v = bf16(P.v);
        const double sigma = softmax_scale(P.cfg);
        const auto r64 = engine::mla_prefill_tiled_reference<double>(P.d, q, kn, kp, v, sigma, 32, 32);
        const auto r32 = engine::mla_prefill_tiled_reference<float>(P.d, f32(q), f32(kn), f32(kp), f32(v), float(sigma), 32, 32);
        double worst_ratio = 0;
        const size_t Dv = size_t(P.d.d_v);
        for (size_t th = 0; th < bound.size(); ++th) {
            double e64 = 0, e32 = 0;
            for (size_t c = 0; c < Dv; ++c) {
                const double o = ref.data()[th * Dv + c];
                e64 += (r64.o[th * Dv + c] - o) * (r64.o[th * Dv + c] - o);
                e32 += (double(r32.o[th * Dv + c]) - o) * (double(r32.o[th * Dv + c]) - o);
            }
            worst_ratio = std::max({worst_ratio, std::sqrt(e64) / bound[th], std::sqrt(e32) / bound[th]});
        }
        INFO("T " << s.T << " n " << s.n << ": worst error / bound " << worst_ratio);
        REQUIRE(worst_ratio <= 1.0);
        REQUIRE(worst_ratio > 0.0);  // the rounding is really there
    }
}

TEST_CASE("prefill twin: T = 0 gives nothing") {
    const PrefillDims d{0, 5, 2, 128, 64, 128};
    const std::vector<double> kn(size_t(5 * 2 * 128), 1.0), kp(size_t(5 * 64), 1.0), v(size_t(5 * 2 * 128), 1.0);
    const auto r = engine::mla_prefill_tiled_reference<double>(d, {}, kn, kp, v, 0.1, 32, 32);
    REQUIRE(r.o.empty());
    REQUIRE(r.lse.empty());
    REQUIRE(r.key_tile_steps == 0);
}

TEST_CASE("prefill argument checks name the bad argument") {
    using Catch::Matchers::Contains;
    const PrefillDims ok{4, 10, 2, 128, 64, 128};
    REQUIRE_NOTHROW(engine::check_prefill_args(ok, 0.1147, 32, 32));
    REQUIRE_NOTHROW(engine::check_prefill_args(ok, 0.1147, 1, engine::kPrefillMaxTile));
    auto with = [&](auto edit) {
        PrefillDims d = ok;
        edit(d);
        return d;
    };
    REQUIRE_THROWS_WITH(engine::check_prefill_args(with([](PrefillDims& d) { d.T = -1; }), 0.1, 32, 32), Contains("T must"));
    REQUIRE_THROWS_WITH(engine::check_prefill_args(with([](PrefillDims& d) { d.n = 3; }), 0.1, 32, 32), Contains("n must be >= T"));
    REQUIRE_THROWS_WITH(engine::check_prefill_args(with([](PrefillDims& d) { d.n_h = 0; }), 0.1, 32, 32), Contains("n_h"));
    REQUIRE_THROWS_WITH(engine::check_prefill_args(with([](PrefillDims& d) { d.d_nope = 0; }), 0.1, 32, 32), Contains("d_nope"));
    REQUIRE_THROWS_WITH(engine::check_prefill_args(with([](PrefillDims& d) { d.d_R = -1; }), 0.1, 32, 32), Contains("d_R"));
    REQUIRE_THROWS_WITH(engine::check_prefill_args(with([](PrefillDims& d) { d.d_v = 0; }), 0.1, 32, 32), Contains("d_v"));
    for (double bad : {0.0, -0.1, std::numeric_limits<double>::infinity(), kNaN})
        REQUIRE_THROWS_WITH(engine::check_prefill_args(ok, bad, 32, 32), Contains("sigma"));
    for (int bad : {0, -3, engine::kPrefillMaxTile + 1}) {
        REQUIRE_THROWS_WITH(engine::check_prefill_args(ok, 0.1, bad, 32), Contains("block_q"));
        REQUIRE_THROWS_WITH(engine::check_prefill_args(ok, 0.1, 32, bad), Contains("block_k"));
    }
    // All throw std::invalid_argument.
    REQUIRE_THROWS_AS(engine::check_prefill_args(ok, 0.1, 0, 32), std::invalid_argument);

    // Sizes: q exact; k_nope whole rows, ≥ n of them; v and k_pe the same rows.
    const size_t q = 4 * 2 * 192, kn = 10 * 2 * 128, kp = 10 * 64, v = 10 * 2 * 128;
    REQUIRE(engine::check_prefill_sizes(ok, q, kn, kp, v) == 10);
    REQUIRE(engine::check_prefill_sizes(ok, q, kn + 2 * 256, kp + 2 * 64, v + 2 * 256) == 12);  // spare rows allowed
    REQUIRE_THROWS_WITH(engine::check_prefill_sizes(ok, q + 1, kn, kp, v), Contains("q must"));
    REQUIRE_THROWS_WITH(engine::check_prefill_sizes(ok, q, kn + 1, kp, v), Contains("k_nope must"));
    REQUIRE_THROWS_WITH(engine::check_prefill_sizes(ok, q, kn - 256, kp - 64, v - 256), Contains("fewer than n"));
    REQUIRE_THROWS_WITH(engine::check_prefill_sizes(ok, q, kn, kp, v + 256), Contains("v must"));
    REQUIRE_THROWS_WITH(engine::check_prefill_sizes(ok, q, kn, kp - 1, v), Contains("k_pe must"));
    // The reference runs the same checks.
    const std::vector<double> Q(q), KN(kn), KP(kp), V(v);
    REQUIRE_THROWS_WITH(engine::mla_prefill_tiled_reference<double>(ok, Q, KN, KP, V, 0.1, 32, 0), Contains("block_k"));
    REQUIRE_THROWS_WITH(engine::mla_prefill_tiled_reference<double>(ok, Q, KN, KP, std::vector<double>(v - 1), 0.1, 32, 32),
                        Contains("v must"));
}

TEST_CASE("prefill shared memory: the default tiles fit a Hopper CTA at DeepSeek-V2 widths") {
    const PrefillDims d{1, 1, 128, 128, 64, 128};
    // q [32, 193] + k [32, 193] + v [32, 128] + scores [32, 32] + acc [32, 128] + 3 × [32], fp32.
    REQUIRE(engine::prefill_smem_bytes(d, 32, 32) == 4 * (32 * 193 * 2 + 32 * 128 + 32 * 32 + 32 * 128 + 3 * 32));
    const size_t hopper_optin = 227 * 1024;  // cudaDevAttrMaxSharedMemoryPerBlockOptin on H100/H200
    REQUIRE(engine::prefill_smem_bytes(d, engine::kPrefillDefaultBlockQ, engine::kPrefillDefaultBlockK) <= hopper_optin);
    REQUIRE(engine::prefill_smem_bytes(d, 64, 64) <= hopper_optin);
    REQUIRE(engine::prefill_smem_bytes(d, 128, 128) > hopper_optin);  // the launcher refuses these
}
