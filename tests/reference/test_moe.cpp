// DeepSeekMoE: the router, the tie rule, group-limited routing, the expert combine and the
// balance statistics, against plain loops and closed forms.
#include <algorithm>
#include <numeric>

#include "dsv2/layers.hpp"
#include "dsv2/moe.hpp"
#include "support.hpp"

using namespace dsv2;
using dsv2::test::randn;
using dsv2::test::rel_err;

namespace {

// Router from the released gate, one token at a time (spec §3.2–3.3), by brute force: sort all
// experts, keep the allowed ones.
struct LoopRoute {
    std::vector<int> idx;
    std::vector<double> w;
};
LoopRoute route_loop(const Config& c, const Mat<double>& E, const RowVec<double>& x) {
    std::vector<double> s(size_t(c.N_r));
    double mx = -1e300, sum = 0;
    for (int64_t e = 0; e < c.N_r; ++e) {
        double z = 0;
        for (int64_t k = 0; k < c.d; ++k) z += E(e, k) * x(k);
        s[size_t(e)] = z;
        mx = std::max(mx, z);
    }
    for (double& v : s) sum += (v = std::exp(v - mx));
    for (double& v : s) v /= sum;
    std::vector<bool> allowed(size_t(c.N_r), true);
    if (c.topk_method == TopkMethod::group_limited_greedy) {
        const int64_t per = c.N_r / c.G;
        std::vector<std::pair<double, int64_t>> groups;  // (−max, g): ascending = best first
        for (int64_t g = 0; g < c.G; ++g)
            groups.push_back({-*std::max_element(s.begin() + g * per, s.begin() + (g + 1) * per), g});
        std::sort(groups.begin(), groups.end());
        std::fill(allowed.begin(), allowed.end(), false);
        for (int64_t j = 0; j < c.G_k; ++j)
            for (int64_t e = 0; e < per; ++e) allowed[size_t(groups[size_t(j)].second * per + e)] = true;
    }
    std::vector<std::pair<double, int>> ranked;
    for (int e = 0; e < int(c.N_r); ++e)
        if (allowed[size_t(e)]) ranked.push_back({-s[size_t(e)], e});
    std::sort(ranked.begin(), ranked.end());
    LoopRoute r;
    double tot = 0;
    for (int64_t k = 0; k < c.K_r; ++k) {
        r.idx.push_back(ranked[size_t(k)].second);
        r.w.push_back(s[size_t(ranked[size_t(k)].second)]);
        tot += r.w.back();
    }
    for (double& v : r.w) v = (c.norm_topk_prob && c.K_r > 1) ? v / (tot + 1e-20) : v * c.routed_scaling_factor;
    return r;
}

Mat<double> ffn_loop(const Mat<double>& Wg, const Mat<double>& Wu, const Mat<double>& Wd, const RowVec<double>& x) {
    Mat<double> y = Mat<double>::Zero(1, Wd.rows());
    for (int64_t j = 0; j < Wg.rows(); ++j) {
        double g = 0, u = 0;
        for (int64_t k = 0; k < x.size(); ++k) g += Wg(j, k) * x(k), u += Wu(j, k) * x(k);
        const double a = g / (1 + std::exp(-g)) * u;
        for (int64_t o = 0; o < Wd.rows(); ++o) y(0, o) += Wd(o, j) * a;
    }
    return y;
}

}  // namespace

TEST_CASE("router = softmax over all experts, then top-K (greedy and group-limited), gates as released") {
    Config lite = dsv2::test::tiny_lite();
    Config v2 = config_preset("tiny");  // group_limited_greedy, routed_scaling_factor 2
    Config normed = v2;
    normed.norm_topk_prob = true;
    for (const Config& c : {lite, v2, normed}) {
        const Mat<double> E = randn<double>(c.N_r, c.d, 31) * 0.5;
        const Mat<double> x = randn<double>(40, c.d, 32);
        const Routing<double> r = route<double>(c, x, E);
        for (int t = 0; t < 40; ++t) {
            const LoopRoute ref = route_loop(c, E, x.row(t));
            for (int64_t k = 0; k < c.K_r; ++k) {
                CHECK(r.topk_idx(t, k) == ref.idx[size_t(k)]);
                CHECK(r.topk_weight(t, k) == Approx(ref.w[size_t(k)]).epsilon(1e-12));
            }
            CHECK(r.scores.row(t).sum() == Approx(1.0).epsilon(1e-12));
        }
        if (c.norm_topk_prob)
            for (int t = 0; t < 40; ++t) CHECK(r.topk_weight.row(t).sum() == Approx(1.0).epsilon(1e-12));
    }
}

TEST_CASE("group-limited routing really restricts: some token's greedy choice falls outside its kept groups") {
    const Config c = config_preset("tiny");  // G = 4 groups of 2, keep G_k = 2, K_r = 2
    Config greedy = c;
    greedy.topk_method = TopkMethod::greedy;
    const Mat<double> E = randn<double>(c.N_r, c.d, 33);
    const Mat<double> x = randn<double>(200, c.d, 34);
    const Routing<double> a = route<double>(c, x, E), b = route<double>(greedy, x, E);
    int differ = 0;
    for (int t = 0; t < 200; ++t) {
        differ += (a.topk_idx.row(t) != b.topk_idx.row(t)) ? 1 : 0;
        // The chosen experts live in at most G_k groups.
        std::vector<int> groups;
        for (int k = 0; k < c.K_r; ++k) groups.push_back(a.topk_idx(t, k) / int(c.N_r / c.G));
        std::sort(groups.begin(), groups.end());
        CHECK(std::unique(groups.begin(), groups.end()) - groups.begin() <= c.G_k);
    }
    // With two groups kept and K_r = 2, greedy and group-limited agree on every token: both
    // best experts' groups are among the two best groups. Make G_k = 1 to force a difference.
    CHECK(differ == 0);
    Config one = c;
    one.G_k = 1;
    const Routing<double> d = route<double>(one, x, E);
    int differ1 = 0;
    for (int t = 0; t < 200; ++t) differ1 += (d.topk_idx.row(t) != b.topk_idx.row(t)) ? 1 : 0;
    CHECK(differ1 > 0);
}

TEST_CASE("group-limited routing with one group equals greedy") {
    Config g = dsv2::test::tiny_lite();
    g.N_r = 8;
    g.K_r = 3;
    Config gl = g;
    gl.topk_method = TopkMethod::group_limited_greedy;
    gl.G = 1;
    gl.G_k = 1;
    const Mat<double> E = randn<double>(8, g.d, 35), x = randn<double>(50, g.d, 36);
    const Routing<double> a = route<double>(g, x, E), b = route<double>(gl, x, E);
    CHECK(a.topk_idx == b.topk_idx);
    CHECK(a.topk_weight == b.topk_weight);
}

TEST_CASE("tie rule: equal scores rank by lower index, for experts and for groups") {
    const double s[] = {0.1, 0.3, 0.3, 0.05, 0.3, 0.0};
    CHECK(topk_indices(s, 6, 3) == std::vector<int64_t>{1, 2, 4});
    CHECK(topk_indices(s, 6, 2, {true, false, true, true, true, true}) == std::vector<int64_t>{2, 4});
    // Router-level: duplicate expert centroids tie exactly; the lower index wins.
    Config c = dsv2::test::tiny_lite();
    c.K_r = 1;
    Mat<double> E = randn<double>(c.N_r, c.d, 37);
    const Mat<double> x = randn<double>(20, c.d, 38);
    const Routing<double> r0 = route<double>(c, x, E);
    for (int t = 0; t < 20; ++t) {
        Mat<double> E2 = E;
        const int best = r0.topk_idx(t, 0);
        const int twin = best == 0 ? 1 : 0;  // copy the winner to a lower or higher index
        E2.row(twin) = E.row(best);
        const Routing<double> r = route<double>(c, x.middleRows(t, 1), E2);
        CHECK(r.topk_idx(0, 0) == std::min(best, twin));
    }
    // Groups: groups 1 and 2 tie on their max; the lower group is kept.
    Config g = config_preset("tiny");
    g.G_k = 1;
    g.K_r = 2;
    Mat<double> Ez = Mat<double>::Zero(g.N_r, g.d);
    Ez(2, 0) = Ez(4, 0) = 2.0;  // experts 2 (group 1) and 4 (group 2) tie as the best
    Ez(5, 0) = 1.0;             // group 2 has a strong second expert
    Mat<double> xt = Mat<double>::Zero(1, g.d);
    xt(0, 0) = 1.0;
    const Routing<double> rg = route<double>(g, xt, Ez);
    CHECK(rg.topk_idx(0, 0) == 2);
    CHECK(rg.topk_idx(0, 1) == 3);  // the rest of group 1, not expert 4 or 5
}

TEST_CASE("moe_forward equals the per-token loop over chosen experts plus shared experts") {
    for (const Config& c : {config_preset("tiny"), dsv2::test::tiny_lite()}) {
        const Weights<double> w = random_weights<double>(c, 9);
        const Mat<double> x = randn<double>(30, c.d, 39);
        const std::string p = "model.layers.1.mlp.";
        Trace trace;
        const Mat<double> y = moe_forward<double>(c, w, 1, x, &trace);
        Mat<double> ref(30, c.d);
        for (int t = 0; t < 30; ++t) {
            const LoopRoute r = route_loop(c, w.mat(p + "gate.weight"), x.row(t));
            Mat<double> acc = ffn_loop(w.mat(p + "shared_experts.gate_proj.weight"), w.mat(p + "shared_experts.up_proj.weight"),
                                       w.mat(p + "shared_experts.down_proj.weight"), x.row(t));
            for (int64_t k = 0; k < c.K_r; ++k) {
                const std::string e = p + "experts." + std::to_string(r.idx[size_t(k)]) + ".";
                acc += r.w[size_t(k)] * ffn_loop(w.mat(e + "gate_proj.weight"), w.mat(e + "up_proj.weight"),
                                                  w.mat(e + "down_proj.weight"), x.row(t));
            }
            ref.row(t) = acc;
        }
        CHECK(rel_err(y, ref) < 1e-12);
        CHECK(rel_err(trace.at("layers.1.moe.out").data, ref) < 1e-12);
        CHECK(rel_err(trace.at("layers.1.moe.shared").data + trace.at("layers.1.moe.routed").data, ref) < 1e-12);
    }
}

TEST_CASE("a router choosing all experts with equal gates equals one dense SwiGLU of all experts") {
    Config c = dsv2::test::tiny_lite();
    c.N_r = 4;
    c.K_r = 4;
    c.N_s = 0;
    c.routed_scaling_factor = 4.0;  // softmax of equal logits = 1/4; × 4 → every gate is 1
    c.validate();
    Weights<double> w = random_weights<double>(c, 10);
    const std::string p = "model.layers.1.mlp.";
    w.mutable_mat(p + "gate.weight").setZero();
    Mat<double> Wg(4 * c.d_e, c.d), Wu(4 * c.d_e, c.d), Wd(c.d, 4 * c.d_e);
    for (int e = 0; e < 4; ++e) {
        const std::string q = p + "experts." + std::to_string(e) + ".";
        Wg.middleRows(e * c.d_e, c.d_e) = w.mat(q + "gate_proj.weight");
        Wu.middleRows(e * c.d_e, c.d_e) = w.mat(q + "up_proj.weight");
        Wd.middleCols(e * c.d_e, c.d_e) = w.mat(q + "down_proj.weight");
    }
    const Mat<double> x = randn<double>(6, c.d, 40);
    CHECK(rel_err(moe_forward<double>(c, w, 1, x, nullptr), swiglu<double>(x, Wg, Wu, Wd)) < 1e-13);
}

TEST_CASE("moe_forward with skewed loads: every token to the same experts, and unused experts") {
    Config c = config_preset("tiny");
    Weights<double> w = random_weights<double>(c, 11);
    Mat<double>& E = w.mutable_mat("model.layers.1.mlp.gate.weight");
    E.setZero();
    E.col(0).setConstant(-1.0);
    E(5, 0) = 50.0;  // with x(·,0) > 0 every token picks expert 5 first
    Mat<double> x = randn<double>(25, c.d, 41);
    x.col(0) = x.col(0).cwiseAbs().array() + 1.0;
    Trace trace;
    moe_forward<double>(c, w, 1, x, &trace);
    const Mat<double>& idx = trace.at("layers.1.moe.topk_idx").data;
    CHECK((idx.col(0).array() == 5.0).all());
    CHECK(trace.at("layers.1.moe.topk_idx").integer);
    // the same result as the loop for one of them
    const LoopRoute r = route_loop(c, E, x.row(3));
    CHECK(r.idx[0] == 5);
    CHECK(idx(3, 1) == r.idx[1]);
}

TEST_CASE("routing statistics: loads, f_i, P_i and the three balance terms by hand") {
    // T = 2 tokens, N_r = 4 experts on D = 2 devices ({0,1}, {2,3}), K_r = 2, M = 1.
    IdxMat idx(2, 2);
    idx << 0, 1,
           0, 2;
    Mat<double> s(2, 4);
    s << 0.4, 0.3, 0.2, 0.1,
         0.5, 0.1, 0.3, 0.1;
    const RoutingStats st = routing_stats(idx, s, 2, 2, 1);
    CHECK(st.load == std::vector<int64_t>{2, 1, 1, 0});
    // f_i = N_r/(K_r T) · load = load
    CHECK(st.f == std::vector<double>{2, 1, 1, 0});
    CHECK(st.P[0] == Approx(0.45));
    CHECK(st.P[2] == Approx(0.25));
    CHECK(st.expert_balance == Approx(2 * 0.45 + 1 * 0.2 + 1 * 0.25 + 0));
    CHECK(st.f_dev[0] == Approx(1.5));
    CHECK(st.f_dev[1] == Approx(0.5));
    CHECK(st.P_dev[0] == Approx(0.65));
    CHECK(st.P_dev[1] == Approx(0.35));
    CHECK(st.device_balance == Approx(1.5 * 0.65 + 0.5 * 0.35));
    // device 0 receives both tokens, device 1 one: f'' = D/(M T) · [2, 1] = [2, 1]
    CHECK(st.f_comm[0] == Approx(2.0));
    CHECK(st.f_comm[1] == Approx(1.0));
    CHECK(st.comm_balance == Approx(2 * 0.65 + 1 * 0.35));
    // Perfect balance gives L_ExpBal / α1 = 1.
    IdxMat u(4, 1);
    u << 0, 1, 2, 3;
    const RoutingStats bal = routing_stats(u, Mat<double>::Constant(4, 4, 0.25), 1, 1, 1);
    CHECK(bal.expert_balance == Approx(1.0));
}
