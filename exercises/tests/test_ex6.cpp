// ex6 — the learner's group-limited top-k against the experts dsv2::route chooses.
#include "dsv2/moe.hpp"
#include "ex6.hpp"
#include "exercise_support.hpp"

using dsv2::Mat;

namespace {
void check_rows(const dsv2::Config& c, const dsv2::Routing<double>& r) {
    for (Eigen::Index t = 0; t < r.scores.rows(); ++t) {
        const std::vector<double> s(r.scores.row(t).data(), r.scores.row(t).data() + c.N_r);
        const std::vector<int64_t> got = ex6::group_limited_topk(s, c.G, c.G_k, c.K_r);
        INFO("token " << t);
        REQUIRE(int64_t(got.size()) == c.K_r);
        for (int64_t k = 0; k < c.K_r; ++k) CHECK(got[size_t(k)] == r.topk_idx(t, k));
    }
}
}  // namespace

TEST_CASE("ex6: group-limited top-k = dsv2::route's choice (DeepSeek-V2 shape and tiny)", "[ex6]") {
    dsv2::Config v2 = dsv2::config_preset("deepseek-v2");
    v2.d = 48;  // only the router's shape matters here
    for (const dsv2::Config& c : {v2, dsv2::config_preset("tiny")}) {
        INFO("N_r = " << c.N_r << ", G = " << c.G << ", G_k = " << c.G_k << ", K_r = " << c.K_r);
        const Mat<double> E = ex::randn(c.N_r, c.d, 60), x = ex::randn(100, c.d, 61);
        check_rows(c, dsv2::route<double>(c, x, E));
    }
}

TEST_CASE("ex6: tied groups and tied experts go to the lower index", "[ex6]") {
    dsv2::Config c = dsv2::config_preset("tiny");  // 8 experts, 4 groups of 2, keep 2, K_r = 2
    Mat<double> logits(3, 8);
    logits << 1, 0, 0, 1, 1, 0, 0, 1,      // every group's max is equal: groups 0 and 1 are kept
              0, 0, 0, 0, 0, 0, 0, 0,      // all equal
              0, 3, 3, 0, 0, 3, 2, 2;      // groups 0, 1, 2 tie at the top
    for (int64_t G_k : {1, 2, 3}) {
        c.G_k = G_k;
        INFO("G_k = " << G_k);
        check_rows(c, dsv2::route<double>(c, logits, Mat<double>::Identity(8, 8)));
    }
}

TEST_CASE("ex6: one group is plain top-K", "[ex6]") {
    dsv2::Config c = dsv2::config_preset("deepseek-v2-lite");  // greedy: G = G_k = 1
    c.d = 16;
    const Mat<double> E = ex::randn(c.N_r, c.d, 62), x = ex::randn(50, c.d, 63);
    check_rows(c, dsv2::route<double>(c, x, E));
}
