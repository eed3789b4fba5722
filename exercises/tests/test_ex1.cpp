// ex1 — RMSNorm: the learner's ex1::rms_norm against the oracle dsv2::rms_norm<double>.
#include "dsv2/layers.hpp"
#include "ex1.hpp"
#include "exercise_support.hpp"

using dsv2::Mat;
using dsv2::Vec;

TEST_CASE("ex1: rms_norm matches the oracle at many shapes", "[ex1]") {
    for (auto [T, n] : {std::pair<int, int>{1, 1}, {3, 64}, {17, 5120}, {5, 513}, {1, 7}}) {
        INFO("T = " << T << ", n = " << n);
        const Mat<double> x = ex::randn(T, n, uint32_t(T * 131 + n));
        const Vec<double> w = Vec<double>::Ones(n) + 0.1 * ex::randn(n, 1, 7).col(0);
        const Mat<double> y = ex1::rms_norm(x, w, 1e-6);
        REQUIRE(y.rows() == T);
        REQUIRE(y.cols() == n);
        CHECK(ex::rel_err(y, dsv2::rms_norm<double>(x, w, 1e-6)) < 1e-12);
    }
}

TEST_CASE("ex1: eps sits inside the root; a zero row stays zero", "[ex1]") {
    Mat<double> x = ex::randn(4, 32, 3);
    x.row(2).setZero();
    const Vec<double> w = Vec<double>::Ones(32) + 0.1 * ex::randn(32, 1, 4).col(0);
    for (double eps : {1e-6, 0.5}) {
        INFO("eps = " << eps);
        const Mat<double> y = ex1::rms_norm(x, w, eps);
        CHECK(y.allFinite());
        CHECK(y.row(2).isZero(0.0));
        CHECK(ex::rel_err(y, dsv2::rms_norm<double>(x, w, eps)) < 1e-12);
    }
}

TEST_CASE("ex1: computed in double (a row of 1e100 overflows in float)", "[ex1]") {
    const Mat<double> x = 1e100 * ex::randn(2, 16, 5);
    const Vec<double> w = Vec<double>::Ones(16);
    const Mat<double> y = ex1::rms_norm(x, w, 1e-6);
    CHECK(ex::rel_err(y, dsv2::rms_norm<double>(x, w, 1e-6)) < 1e-12);
}
