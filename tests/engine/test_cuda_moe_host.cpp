// The host logic of the CUDA MoE path (engine/include/dsv2/engine/moe.hpp), on the CPU: the router's
// CPU twin (route_reference, the arithmetic of moe_route_kernel) against dsv2::route<float>, the
// warp top-k against dsv2::topk_indices (ties, NaN), the dispatch plan against a brute-force
// grouping, and gather → experts → combine against dsv2::moe_forward's moe.routed / moe.out (fp64).
#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <limits>
#include <random>
#include <string>

#include "dsv2/config.hpp"
#include "dsv2/engine/moe.hpp"
#include "dsv2/layers.hpp"
#include "dsv2/moe.hpp"
#include "dsv2/trace.hpp"
#include "dsv2/weights.hpp"
#include "support.hpp"

using namespace dsv2;
using dsv2::engine::DispatchPlan;
using dsv2::engine::RouterParams;

namespace {

const float kNaNf = std::numeric_limits<float>::quiet_NaN();

RouterParams params_of(const Config& c) {
    RouterParams p;
    p.N_r = int(c.N_r), p.K = int(c.K_r), p.G = int(c.G), p.G_k = int(c.G_k);
    p.group_limited = c.topk_method == TopkMethod::group_limited_greedy;
    p.norm_topk_prob = c.norm_topk_prob;
    p.routed_scaling_factor = float(c.routed_scaling_factor);
    p.validate();
    return p;
}

// Router configurations: tiny (group-limited 4×2, keep 2, K 2, × 2), tiny-lite (greedy), a
// V2-Lite-like (64 experts, K 6, greedy) and a V2-like (160 experts, 8 groups, keep 3, K 6, × 16),
// each with norm_topk_prob off and on.
std::vector<std::pair<std::string, Config>> router_configs() {
    std::vector<std::pair<std::string, Config>> out;
    Config tiny = config_preset("tiny");
    Config lite = dsv2::test::tiny_lite();
    Config v2lite = config_preset("deepseek-v2-lite");
    Config v2 = config_preset("deepseek-v2");
    for (bool norm : {false, true}) {
        const std::string n = norm ? " norm" : "";
        for (auto [name, c] : {std::pair{"tiny", tiny}, {"tiny-lite", lite}, {"v2-lite", v2lite}, {"v2", v2}}) {
            c.norm_topk_prob = norm;
            out.push_back({std::string(name) + n, c});
        }
    }
    return out;
}

// The oracle on given logits: x = logits, E = I (x Eᵀ is then exactly the logits, or all-NaN in a
// row holding a NaN — what any NaN logit does to the oracle's softmax anyway).
Routing<float> oracle_route(const Config& c, const Mat<float>& logits) {
    const Mat<float> E = Mat<float>::Identity(c.N_r, c.N_r);
    return route<float>(c, logits, E);
}

struct TwinOut {
    std::vector<int32_t> idx;
    std::vector<float> w, s;
};
TwinOut twin_route(const RouterParams& p, const Mat<float>& logits) {
    const int64_t T = logits.rows();
    TwinOut o;
    o.idx.assign(size_t(T * p.K), -1);
    o.w.assign(size_t(T * p.K), kNaNf);
    o.s.assign(size_t(T * p.N_r), kNaNf);
    for (int64_t t = 0; t < T; ++t)
        engine::route_reference(p, logits.row(t).data(), &o.idx[size_t(t * p.K)], &o.w[size_t(t * p.K)],
                              &o.s[size_t(t * p.N_r)]);
    return o;
}

// Twin vs oracle: identical indices, weights and scores within `tol` relative (both NaN counts as equal).
void compare(const Routing<float>& r, const TwinOut& o, int K, int N_r, double tol, double* worst) {
    const int64_t T = r.topk_idx.rows();
    int64_t idx_mismatch = 0;
    double werr = 0, serr = 0;
    auto relerr = [](double a, double b) {
        if (std::isnan(a) && std::isnan(b)) return 0.0;
        return std::abs(a - b) / std::max(std::abs(b), 1e-30);
    };
    for (int64_t t = 0; t < T; ++t) {
        for (int k = 0; k < K; ++k) {
            idx_mismatch += r.topk_idx(t, k) != o.idx[size_t(t * K + k)];
            werr = std::max(werr, relerr(o.w[size_t(t * K + k)], r.topk_weight(t, k)));
        }
        for (int e = 0; e < N_r; ++e) serr = std::max(serr, relerr(o.s[size_t(t * N_r + e)], r.scores(t, e)));
    }
    CHECK(idx_mismatch == 0);
    CHECK(werr <= tol);
    CHECK(serr <= tol);
    if (worst) *worst = std::max(*worst, std::max(werr, serr));
}

}  // namespace

TEST_CASE("route_reference equals dsv2::route<float> on random logits (indices identical, gates <= 1e-6)") {
    double worst = 0;
    uint32_t seed = 1;
    for (const auto& [name, c] : router_configs()) {
        INFO(name);
        const RouterParams p = params_of(c);
        for (int64_t T : {int64_t(1), int64_t(257)}) {
            Mat<float> logits = dsv2::test::randn<float>(T, c.N_r, seed++) * 2.f;
            const Routing<float> r = oracle_route(c, logits);
            REQUIRE(r.logits == logits);
            compare(r, twin_route(p, logits), p.K, p.N_r, 1e-6, &worst);
        }
    }
    WARN("route_reference vs dsv2::route<float>: worst relative gate/score difference " << worst);
}

TEST_CASE("route_reference: ties go to the lower index, among experts and among groups") {
    for (const auto& [name, c] : router_configs()) {
        INFO(name);
        const RouterParams p = params_of(c);
        // All logits equal: experts 0 … K−1 (their groups are the first G_k).
        Mat<float> flat = Mat<float>::Constant(3, c.N_r, 0.25f);
        const TwinOut o = twin_route(p, flat);
        for (int k = 0; k < p.K; ++k) CHECK(o.idx[size_t(k)] == k);
        compare(oracle_route(c, flat), o, p.K, p.N_r, 1e-6, nullptr);
        // Logits from three values only: ties everywhere, group maxima tied too.
        std::mt19937 gen(7);
        std::uniform_int_distribution<int> pick(0, 2);
        Mat<float> few(200, c.N_r);
        for (int64_t t = 0; t < few.rows(); ++t)
            for (int64_t e = 0; e < c.N_r; ++e) few(t, e) = float(pick(gen));
        compare(oracle_route(c, few), twin_route(p, few), p.K, p.N_r, 1e-6, nullptr);
    }
    // Group ties by hand (tiny: 4 groups of 2, keep 2, K 2): groups 1 and 3 share the best score,
    // groups 0 and 2 the next; group 1 and 3 win (lower group first), then expert 2 (group 1) over 6.
    Config c = config_preset("tiny");
    const RouterParams p = params_of(c);
    Mat<float> l(1, 8);
    l << 0.f, 1.f, 3.f, 2.f, 1.f, 0.f, 3.f, 2.f;
    const TwinOut o = twin_route(p, l);
    CHECK(o.idx == std::vector<int32_t>{2, 6});
    compare(oracle_route(c, l), o, p.K, p.N_r, 1e-6, nullptr);
}

TEST_CASE("warp top-k: the tie rule and NaN-last of dsv2::topk_indices, with and without an allowed mask") {
    std::mt19937 gen(3);
    std::uniform_int_distribution<int> val(0, 4);
    std::bernoulli_distribution coin(0.5);
    for (int n : {1, 5, 31, 32, 33, 64, 160, 2048}) {
        for (int rep = 0; rep < 20; ++rep) {
            std::vector<float> s(static_cast<size_t>(n));
            for (float& v : s) {
                const int r = val(gen);
                v = r == 4 ? kNaNf : r == 3 ? -std::numeric_limits<float>::infinity() : 0.1f * float(r);
            }
            std::vector<bool> allowed;
            if (rep % 2) {
                allowed.resize(size_t(n));
                for (int e = 0; e < n; ++e) allowed[size_t(e)] = coin(gen);
                allowed[0] = true;
            }
            int cand = 0;
            for (int e = 0; e < n; ++e) cand += (allowed.empty() || allowed[size_t(e)]);
            const std::vector<double> sd(s.begin(), s.end());
            for (int k : {1, std::min(cand, 6), cand}) {
                const std::vector<int64_t> ref = topk_indices(sd.data(), n, k, allowed);
                const std::vector<int32_t> got = engine::warp_topk_reference(s.data(), n, k, allowed);
                REQUIRE(got == std::vector<int32_t>(ref.begin(), ref.end()));
            }
        }
    }
    // NaN ranks as −inf (the oracle's key), so it ties with −inf and the lower index wins; and k
    // above the candidates is refused.
    const std::vector<float> s{kNaNf, -std::numeric_limits<float>::infinity(), 0.f, kNaNf};
    CHECK(engine::warp_topk_reference(s.data(), 4, 4) == std::vector<int32_t>{2, 0, 1, 3});
    const std::vector<float> s2{kNaNf, -1.f, kNaNf, 0.5f};
    CHECK(engine::warp_topk_reference(s2.data(), 4, 4) == std::vector<int32_t>{3, 1, 0, 2});
    CHECK_THROWS_AS(engine::warp_topk_reference(s.data(), 4, 2, {true, false, false, false}), std::invalid_argument);
}

TEST_CASE("route_reference: NaN and infinite logits poison the row as in the oracle (NaN gates, lowest allowed experts)") {
    for (const auto& [name, c] : router_configs()) {
        INFO(name);
        const RouterParams p = params_of(c);
        Mat<float> l = dsv2::test::randn<float>(4, c.N_r, 5);
        l(0, 3) = kNaNf;
        l(1, c.N_r - 1) = kNaNf;
        l(2, 0) = std::numeric_limits<float>::infinity();
        l.row(3).setConstant(-std::numeric_limits<float>::infinity());
        const TwinOut o = twin_route(p, l);
        for (int t = 0; t < 4; ++t)
            for (int k = 0; k < p.K; ++k) {
                CHECK(o.idx[size_t(t * p.K + k)] == k);  // all scores NaN: the lowest indices
                CHECK(std::isnan(o.w[size_t(t * p.K + k)]));
            }
        // The oracle on the same rows (E = I spreads a NaN to the whole row, which is what its
        // softmax does anyway; the ±inf rows are given as logits directly).
        compare(oracle_route(c, l), o, p.K, p.N_r, 1e-6, nullptr);
    }
}

TEST_CASE("route_reference: greedy vs group-limited choose differently, and bad parameters are refused") {
    Config g = config_preset("tiny");  // 4 groups of 2, keep 2, K 2
    Config gr = g;
    gr.topk_method = TopkMethod::greedy;
    Mat<float> l(1, 8);
    l << 5.f, 4.9f, 0.f, 0.f, 4.8f, 0.f, 4.95f, 0.f;  // group maxima 5, 0, 4.8, 4.95
    const TwinOut a = twin_route(params_of(g), l), b = twin_route(params_of(gr), l);
    CHECK(a.idx == std::vector<int32_t>{0, 6});  // groups 0 and 3 kept: 5 (expert 0), 4.95 (expert 6)
    CHECK(b.idx == std::vector<int32_t>{0, 6});  // greedy: the same two
    compare(oracle_route(g, l), a, 2, 8, 1e-6, nullptr);
    compare(oracle_route(gr, l), b, 2, 8, 1e-6, nullptr);
    Config g1 = g;
    g1.G_k = 1;
    const TwinOut a1 = twin_route(params_of(g1), l);
    CHECK(a1.idx == std::vector<int32_t>{0, 1});  // one group kept: the rest of group 0 (4.9), not expert 6
    compare(oracle_route(g1, l), a1, 2, 8, 1e-6, nullptr);
    Config gr3 = gr;
    gr3.K_r = 3;
    const TwinOut b3 = twin_route(params_of(gr3), l);
    CHECK(b3.idx == std::vector<int32_t>{0, 6, 1});  // greedy K = 3 spans groups 0 and 3
    compare(oracle_route(gr3, l), b3, 3, 8, 1e-6, nullptr);

    RouterParams p = params_of(g);
    p.G = 3;
    CHECK_THROWS_WITH(p.validate(), Catch::Contains("G must"));
    p = params_of(g);
    p.K = 0;
    CHECK_THROWS_WITH(p.validate(), Catch::Contains("K must"));
    p = params_of(g);
    p.G_k = 5;
    CHECK_THROWS_WITH(p.validate(), Catch::Contains("G_k must"));
    p = params_of(g);
    p.N_r = 4096;
    CHECK_THROWS_WITH(p.validate(), Catch::Contains("N_r must"));
}

namespace {

DispatchPlan brute_plan(const std::vector<int32_t>& idx, int64_t T, int64_t K, int64_t N_r) {
    DispatchPlan p;
    p.T = T, p.K = K, p.N_r = N_r;
    p.offsets.push_back(0);
    p.row_of_slot.assign(size_t(T * K), -1);
    for (int64_t e = 0; e < N_r; ++e) {
        int32_t n = 0;
        for (int64_t t = 0; t < T; ++t)
            for (int64_t k = 0; k < K; ++k)
                if (idx[size_t(t * K + k)] == e) {
                    p.row_of_slot[size_t(t * K + k)] = int32_t(p.slots.size());
                    p.slots.push_back(int32_t(t * K + k));
                    ++n;
                }
        p.counts.push_back(n);
        p.offsets.push_back(p.offsets.back() + n);
    }
    return p;
}

// K distinct experts per token, as a router gives; `skew` forces rank 0 to expert 0 … or, with
// `used` < N_r, draws from the first `used` experts only (the rest stay empty).
std::vector<int32_t> random_topk(int64_t T, int64_t K, int64_t N_r, int64_t used, bool skew, uint32_t seed) {
    std::mt19937 gen(seed);
    std::vector<int32_t> idx(size_t(T * K));
    std::vector<int32_t> perm(static_cast<size_t>(used));
    for (int64_t t = 0; t < T; ++t) {
        for (int64_t e = 0; e < used; ++e) perm[size_t(e)] = int32_t(e);
        std::shuffle(perm.begin(), perm.end(), gen);
        if (skew) std::swap(perm[0], *std::find(perm.begin(), perm.end(), 0));
        for (int64_t k = 0; k < K; ++k) idx[size_t(t * K + k)] = perm[size_t(k)];
    }
    (void)N_r;
    return idx;
}

}  // namespace

TEST_CASE("make_dispatch_plan equals the brute-force grouping of dsv2::moe_forward") {
    struct Case {
        int64_t T, K, N_r, used;
        bool skew;
    };
    for (const Case& cs : {Case{1, 6, 64, 64, false}, Case{1, 1, 1, 1, false}, Case{37, 6, 64, 64, false},
                           Case{300, 6, 160, 160, true}, Case{300, 2, 64, 10, false}, Case{4096, 6, 160, 160, false},
                           Case{4096, 6, 64, 6, false}, Case{4096, 1, 8, 1, false}, Case{0, 6, 64, 64, false}}) {
        INFO("T=" << cs.T << " K=" << cs.K << " N_r=" << cs.N_r << " used=" << cs.used << " skew=" << cs.skew);
        const std::vector<int32_t> idx = random_topk(cs.T, cs.K, cs.N_r, cs.used, cs.skew, uint32_t(cs.T + cs.N_r));
        const DispatchPlan p = engine::make_dispatch_plan(idx.data(), cs.T, cs.K, cs.N_r);
        const DispatchPlan b = brute_plan(idx, cs.T, cs.K, cs.N_r);
        REQUIRE(p.counts == b.counts);
        REQUIRE(p.offsets == b.offsets);
        REQUIRE(p.slots == b.slots);
        REQUIRE(p.row_of_slot == b.row_of_slot);
        REQUIRE(p.offsets.back() == cs.T * cs.K);
        for (int64_t s = 0; s < cs.T * cs.K; ++s) REQUIRE(p.slots[size_t(p.row_of_slot[size_t(s)])] == s);
        if (cs.skew) CHECK(p.counts[0] == cs.T);
        if (cs.used < cs.N_r)
            for (int64_t e = cs.used; e < cs.N_r; ++e) CHECK(p.counts[size_t(e)] == 0);
    }
    const std::vector<int32_t> bad{0, 1, 2, 64, 3, 4};
    CHECK_THROWS_WITH(engine::make_dispatch_plan(bad.data(), 3, 2, 64), Catch::Contains("token 1, rank 1"));
    const std::vector<int32_t> neg{0, -1};
    CHECK_THROWS_AS(engine::make_dispatch_plan(neg.data(), 1, 2, 64), std::invalid_argument);
    CHECK_THROWS_AS(engine::make_dispatch_plan(neg.data(), 1, 0, 64), std::invalid_argument);
}

TEST_CASE("gather by the plan, experts per group, combine with the gates = moe_forward's moe.routed (fp64)") {
    for (const Config& c : {config_preset("tiny"), dsv2::test::tiny_lite()}) {
        for (int64_t T : {int64_t(1), int64_t(30)}) {
            const Weights<double> w = random_weights<double>(c, 9);
            const Mat<double> x = dsv2::test::randn<double>(T, c.d, 39);
            const std::string pre = "model.layers.1.mlp.";
            Trace trace;
            moe_forward<double>(c, w, 1, x, &trace);
            const Routing<double> r = route<double>(c, x, w.mat(pre + "gate.weight"));
            const std::vector<int32_t> idx(r.topk_idx.data(), r.topk_idx.data() + r.topk_idx.size());
            const DispatchPlan p = engine::make_dispatch_plan(idx.data(), T, c.K_r, c.N_r);
            const std::vector<double> xv(x.data(), x.data() + x.size());
            const std::vector<double> grouped = engine::moe_gather_reference(p, xv, c.d);
            std::vector<double> y(grouped.size(), std::numeric_limits<double>::quiet_NaN());
            for (int64_t e = 0; e < c.N_r; ++e) {
                const int64_t r0 = p.offsets[size_t(e)], n = p.counts[size_t(e)];
                if (n == 0) continue;
                const Eigen::Map<const Mat<double>> xe(grouped.data() + r0 * c.d, n, c.d);
                const std::string ep = pre + "experts." + std::to_string(e) + ".";
                const Mat<double> ye = swiglu<double>(xe, w.mat(ep + "gate_proj.weight"), w.mat(ep + "up_proj.weight"),
                                                      w.mat(ep + "down_proj.weight"));
                std::copy(ye.data(), ye.data() + ye.size(), y.begin() + r0 * c.d);
            }
            const std::vector<double> gates(r.topk_weight.data(), r.topk_weight.data() + r.topk_weight.size());
            const std::vector<double> routed = engine::moe_combine_reference(p, y, gates, {}, c.d);
            const Mat<double>& ref = trace.at("layers.1.moe.routed").data;
            const Eigen::Map<const Mat<double>> got(routed.data(), T, c.d);
            const double err = dsv2::test::rel_err(got, ref);
            CHECK(err <= 1e-12);
            const Mat<double>& sh = trace.at("layers.1.moe.shared").data;
            const std::vector<double> shv(sh.data(), sh.data() + sh.size());
            const std::vector<double> out = engine::moe_combine_reference(p, y, gates, shv, c.d);
            const double err_out = dsv2::test::rel_err(Eigen::Map<const Mat<double>>(out.data(), T, c.d),
                                                       trace.at("layers.1.moe.out").data);
            CHECK(err_out <= 1e-12);
            WARN("combine vs moe_forward (T=" << T << ", N_r=" << c.N_r << "): routed " << err << ", out " << err_out);
        }
    }
}

// The rule the GPU router tests judge by (test_cuda_moe, test_cuda_backend): indices equal, or
// swapped only where the twin's scores tie within kRouteTieUlps. Checked here against hand-made
// choices, so that the rule can be seen to fail.
TEST_CASE("compare_routes: exact, near-tie swaps within kRouteTieUlps, and everything else wrong") {
    RouterParams p;
    p.N_r = 6, p.K = 2;
    p.validate();
    const float a = 0.25f, a1 = std::nextafter(a, 1.f), a20 = a + 20 * (std::nextafter(a, 1.f) - a);
    // token 0: experts 1 and 2 tie within one ulp; token 1: 20 ulp apart (> kRouteTieUlps = 16)
    const std::vector<float> s{0.1f, a, a1, 0.05f, 0.3f, 0.0f,    // token 0
                               0.1f, a, a20, 0.05f, 0.3f, 0.0f};  // token 1
    const std::vector<int32_t> ref{4, 2, 4, 2};
    const std::vector<float> w{0.3f, a1, 0.3f, a20};
    SECTION("identical choices and gates") {
        const auto r = engine::compare_routes(p, s.data(), ref.data(), w.data(), ref.data(), w.data(), 2);
        CHECK(r.exact == 2);
        CHECK(r.near_tie == 0);
        CHECK(r.wrong == 0);
        CHECK(r.ok(0.0));
    }
    SECTION("a swap at a 1-ulp tie is a near tie; the same swap at 20 ulp is wrong, named") {
        const std::vector<int32_t> got{4, 1, 4, 1};
        const auto r = engine::compare_routes(p, s.data(), ref.data(), w.data(), got.data(), w.data(), 2);
        CHECK(r.near_tie == 1);
        CHECK(r.wrong == 1);
        CHECK(r.first_wrong == 1);
        CHECK(r.first_wrong_why.find("token 1") != std::string::npos);
        CHECK(r.first_wrong_why.find("not within 16 ulp") != std::string::npos);
        CHECK_FALSE(r.ok(1.0));
    }
    SECTION("a repeated expert, an index outside [0, N_r) and an unwritten (poisoned) one are wrong") {
        for (const std::vector<int32_t>& got : {std::vector<int32_t>{4, 4, 4, 2}, std::vector<int32_t>{4, 6, 4, 2},
                                                std::vector<int32_t>{-7, -7, 4, 2}}) {
            const auto r = engine::compare_routes(p, s.data(), ref.data(), w.data(), got.data(), w.data(), 2);
            CHECK(r.wrong == 1);
            CHECK(r.first_wrong == 0);
        }
    }
    SECTION("gates are compared on exact tokens: a wrong gate or a NaN shows in max_gate_rel") {
        std::vector<float> wg = w;
        wg[1] = a1 * (1 + 1e-5f);
        CHECK(engine::compare_routes(p, s.data(), ref.data(), w.data(), ref.data(), wg.data(), 2).max_gate_rel ==
              Approx(1e-5).epsilon(0.05));
        wg[1] = kNaNf;
        CHECK_FALSE(engine::compare_routes(p, s.data(), ref.data(), w.data(), ref.data(), wg.data(), 2).ok(1.0));
    }
    SECTION("within_ulps: the ulp of the larger magnitude; NaN and a lone infinity never tie") {
        CHECK(engine::within_ulps(a, a1, 1));
        CHECK_FALSE(engine::within_ulps(a, a20, 8));
        CHECK(engine::within_ulps(a, a20, 20));
        CHECK(engine::within_ulps(0.f, -0.f, 0));
        CHECK_FALSE(engine::within_ulps(kNaNf, kNaNf, 100));
        CHECK_FALSE(engine::within_ulps(std::numeric_limits<float>::infinity(), 1.f, 100));
    }
}
