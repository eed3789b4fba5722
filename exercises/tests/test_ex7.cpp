// ex7 — the learner's balance statistics against dsv2::routing_stats.
#include "dsv2/moe.hpp"
#include "ex7.hpp"
#include "exercise_support.hpp"

using dsv2::Mat;

namespace {
void check_same(const ex7::Balance& got, const dsv2::RoutingStats& want) {
    REQUIRE(got.load.size() == want.load.size());
    for (size_t i = 0; i < want.load.size(); ++i) CHECK(got.load[i] == want.load[i]);
    CHECK(got.expert == Approx(want.expert_balance).epsilon(1e-12));
    CHECK(got.device == Approx(want.device_balance).epsilon(1e-12));
    CHECK(got.comm == Approx(want.comm_balance).epsilon(1e-12));
}
}  // namespace

TEST_CASE("ex7: balance sums match dsv2::routing_stats on a real routing, several D and M", "[ex7]") {
    dsv2::Config c = dsv2::config_preset("deepseek-v2-lite");  // 64 experts, K_r = 6
    c.d = 24;
    const Mat<double> E = ex::randn(c.N_r, c.d, 70), x = ex::randn(300, c.d, 71);
    const dsv2::Routing<double> r = dsv2::route<double>(c, x, E);
    for (auto [D, M] : {std::pair<int64_t, int64_t>{1, 1}, {8, 3}, {4, 4}, {16, 2}, {64, 6}}) {
        INFO("D = " << D << ", M = " << M);
        check_same(ex7::balance(r.topk_idx, r.scores, c.K_r, D, M), dsv2::routing_stats(r.topk_idx, r.scores, c.K_r, D, M));
    }
}

TEST_CASE("ex7: a collapsed routing", "[ex7]") {
    dsv2::IdxMat idx(50, 2);
    idx.col(0).setConstant(0);
    idx.col(1).setConstant(3);
    Mat<double> s = Mat<double>::Constant(50, 8, 0.05);
    s.col(0).setConstant(0.4);
    s.col(3).setConstant(0.3);
    check_same(ex7::balance(idx, s, 2, 4, 2), dsv2::routing_stats(idx, s, 2, 4, 2));
}
