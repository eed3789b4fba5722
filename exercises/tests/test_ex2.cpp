// ex2 — RoPE: the learner's frequencies against dsv2::rope_inv_freq, the rotation against
// dsv2::apply_rope.
#include "dsv2/rope.hpp"
#include "ex2.hpp"
#include "exercise_support.hpp"

using dsv2::Mat;

namespace {
dsv2::Config without_yarn() {
    dsv2::Config c = dsv2::config_preset("tiny");
    c.has_yarn = false;
    return c;
}
}  // namespace

TEST_CASE("ex2: inverse frequencies match the oracle, with and without YaRN", "[ex2]") {
    for (const dsv2::Config& c : {dsv2::config_preset("deepseek-v2"), dsv2::config_preset("deepseek-v2-lite"),
                                  dsv2::config_preset("tiny"), without_yarn()}) {
        INFO("d_R = " << c.d_R << ", yarn = " << c.has_yarn);
        const std::vector<double> got = ex2::inv_freq(c), want = dsv2::rope_inv_freq(c);
        REQUIRE(got.size() == want.size());
        for (size_t k = 0; k < want.size(); ++k) {
            INFO("k = " << k);
            CHECK(got[k] == Approx(want[k]).epsilon(1e-13));
        }
    }
}

TEST_CASE("ex2: interleaved rotation of every head matches dsv2::apply_rope", "[ex2]") {
    dsv2::Config c = dsv2::config_preset("deepseek-v2");
    c.yarn.mscale = 1.0;  // amplitude mscale(s, 1.0) / mscale(s, 0.707) ≠ 1
    const dsv2::Rope rope(c);
    REQUIRE(rope.amplitude != 1.0);
    const std::vector<int64_t> pos = {0, 1, 7, 4096, 100000};
    const Mat<double> x = ex::randn(5, 4 * c.d_R, 9);
    Mat<double> want = x;
    dsv2::apply_rope<double>(want, pos, rope);
    const Mat<double> got = ex2::apply_rope(x, pos, rope.inv_freq, rope.amplitude);
    REQUIRE(got.rows() == x.rows());
    REQUIRE(got.cols() == x.cols());
    CHECK(ex::rel_err(got, want) < 1e-12);
}

TEST_CASE("ex2: position 0 leaves a row unchanged (amplitude 1)", "[ex2]") {
    const dsv2::Config c = dsv2::config_preset("tiny");
    const dsv2::Rope rope(c);
    const Mat<double> x = ex::randn(1, 2 * c.d_R, 10);
    CHECK(ex::rel_err(ex2::apply_rope(x, {0}, rope.inv_freq, 1.0), x) < 1e-15);
}
