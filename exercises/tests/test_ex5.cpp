// ex5 — the learner's greedy router against dsv2::route.
#include "dsv2/moe.hpp"
#include "ex5.hpp"
#include "exercise_support.hpp"

using dsv2::Mat;

namespace {
void check_same(const ex5::Route& got, const dsv2::Routing<double>& want) {
    REQUIRE(got.topk_idx.rows() == want.topk_idx.rows());
    REQUIRE(got.topk_idx.cols() == want.topk_idx.cols());
    CHECK(ex::rel_err(got.scores, want.scores) < 1e-13);
    for (Eigen::Index t = 0; t < want.topk_idx.rows(); ++t) {
        INFO("token " << t);
        for (Eigen::Index k = 0; k < want.topk_idx.cols(); ++k) {
            CHECK(got.topk_idx(t, k) == want.topk_idx(t, k));
            CHECK(got.topk_weight(t, k) == Approx(want.topk_weight(t, k)).epsilon(1e-12));
        }
    }
}
}  // namespace

TEST_CASE("ex5: router matches dsv2::route (scaled, unscaled and renormalised gates)", "[ex5]") {
    dsv2::Config scaled = ex::tiny_lite();
    scaled.routed_scaling_factor = 2.0;
    dsv2::Config normed = ex::tiny_lite();
    normed.norm_topk_prob = true;
    dsv2::Config lite64 = dsv2::config_preset("deepseek-v2-lite");   // 64 experts, K_r = 6
    lite64.d = 32;
    for (const dsv2::Config& c : {ex::tiny_lite(), scaled, normed, lite64}) {
        INFO("N_r = " << c.N_r << ", K_r = " << c.K_r << ", norm_topk_prob = " << c.norm_topk_prob
                      << ", routed_scaling_factor = " << c.routed_scaling_factor);
        const Mat<double> E = 0.5 * ex::randn(c.N_r, c.d, 50), x = ex::randn(40, c.d, 51);
        check_same(ex5::route(c, x, E), dsv2::route<double>(c, x, E));
    }
}

TEST_CASE("ex5: ties go to the lower expert index", "[ex5]") {
    const dsv2::Config c = ex::tiny_lite();   // 8 experts, K_r = 2
    Mat<double> logits(4, 8);                 // with E = I the logits are x itself
    logits << 0, 0, 0, 0, 0, 0, 0, 0,
              1, 3, 3, 0, 3, 0, 0, 0,
              0, 0, 0, 0, 0, 0, 5, 5,
              2, 1, 2, 1, 2, 1, 2, 1;
    const Mat<double> E = Mat<double>::Identity(8, 8);
    check_same(ex5::route(c, logits, E), dsv2::route<double>(c, logits, E));
}
