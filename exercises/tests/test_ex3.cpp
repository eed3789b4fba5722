// ex3 — the learner's latent (c_KV, k_R) against dsv2::mla_latent.
#include "dsv2/mla.hpp"
#include "dsv2/rope.hpp"
#include "dsv2/weights.hpp"
#include "ex3.hpp"
#include "exercise_support.hpp"

TEST_CASE("ex3: c_KV and k_R match dsv2::mla_latent (V2-like and Lite-like, several layers)", "[ex3]") {
    for (const dsv2::Config& c : {dsv2::config_preset("tiny"), ex::tiny_lite()}) {
        const dsv2::Weights<double> w = dsv2::random_weights<double>(c, 13);
        const dsv2::Rope rope(c);
        for (int64_t l = 0; l < c.L; ++l) {
            INFO("layer " << l << ", d_q = " << c.d_q);
            const dsv2::Mat<double> x = ex::randn(6, c.d, uint32_t(20 + l));
            const std::vector<int64_t> pos = ex::positions(6, 5);
            const ex3::Latent got = ex3::latent(c, w, l, x, pos);
            const dsv2::MlaLatent<double> want = dsv2::mla_latent<double>(c, w, l, x, pos, rope, nullptr);
            REQUIRE(got.c_kv.rows() == 6);
            REQUIRE(got.c_kv.cols() == c.d_c);
            REQUIRE(got.k_pe.rows() == 6);
            REQUIRE(got.k_pe.cols() == c.d_R);
            CHECK(ex::rel_err(got.c_kv, want.c_kv) < 1e-13);
            CHECK(ex::rel_err(got.k_pe, want.k_pe) < 1e-13);
        }
    }
}

TEST_CASE("ex3: a row of the latent does not depend on the position; k_R does", "[ex3]") {
    const dsv2::Config c = dsv2::config_preset("tiny");
    const dsv2::Weights<double> w = dsv2::random_weights<double>(c, 14);
    const dsv2::Mat<double> x = ex::randn(3, c.d, 30);
    const ex3::Latent a = ex3::latent(c, w, 1, x, ex::positions(3, 0)), b = ex3::latent(c, w, 1, x, ex::positions(3, 100));
    CHECK(ex::rel_err(a.c_kv, b.c_kv) == 0.0);
    CHECK(ex::rel_err(a.k_pe, b.k_pe) > 1e-3);
}
