// RMSNorm, Linear, SwiGLU and softmax against plain loops in double.
#include "dsv2/layers.hpp"
#include "support.hpp"

using namespace dsv2;
using dsv2::test::randn;
using dsv2::test::rel_err;

TEST_CASE("rms_norm equals the plain-loop formula w * x / sqrt(mean(x^2) + eps)") {
    const Mat<double> x = randn<double>(5, 7, 1);
    const Vec<double> w = randn<double>(7, 1, 2);
    const double eps = 1e-6;
    Mat<double> ref(5, 7);
    for (int t = 0; t < 5; ++t) {
        double ss = 0;
        for (int k = 0; k < 7; ++k) ss += x(t, k) * x(t, k);
        const double r = 1.0 / std::sqrt(ss / 7.0 + eps);
        for (int k = 0; k < 7; ++k) ref(t, k) = w(k) * x(t, k) * r;
    }
    CHECK(rel_err(rms_norm<double>(x, w, eps), ref) < 1e-14);
    CHECK(rel_err(rms_norm<float>(x.cast<float>(), w.cast<float>(), eps), ref) < 1e-6);
}

TEST_CASE("rms_norm: eps matters for small inputs and the output has unit RMS for unit weights") {
    const Mat<double> x = randn<double>(3, 16, 3) * 1e-4;
    const Vec<double> ones = Vec<double>::Ones(16);
    const Mat<double> y = rms_norm<double>(x, ones, 0.0 + 1e-30);
    for (int t = 0; t < 3; ++t) CHECK(std::sqrt(y.row(t).squaredNorm() / 16.0) == Approx(1.0).epsilon(1e-12));
    const Mat<double> y_eps = rms_norm<double>(x, ones, 1e-6);
    CHECK(std::sqrt(y_eps.row(0).squaredNorm() / 16.0) < 0.5);  // eps dominates mean(x²) ≈ 1e-8
}

TEST_CASE("linear is y = x W^T with W in PyTorch (out, in) layout") {
    const Mat<double> x = randn<double>(4, 6, 4);
    const Mat<double> W = randn<double>(3, 6, 5);  // out = 3, in = 6
    Mat<double> ref = Mat<double>::Zero(4, 3);
    for (int t = 0; t < 4; ++t)
        for (int o = 0; o < 3; ++o)
            for (int i = 0; i < 6; ++i) ref(t, o) += x(t, i) * W(o, i);
    const Mat<double> y = linear<double>(x, W);
    REQUIRE(y.rows() == 4);
    REQUIRE(y.cols() == 3);
    CHECK(rel_err(y, ref) < 1e-14);
}

TEST_CASE("linear forms: linear_rows and linear_gemm both equal a plain loop, at every batch size around the switch") {
    // linear() picks linear_rows up to kSmallBatch rows and linear_gemm above: both forms must be
    // the same product, including at the sizes where the choice flips and with odd shapes.
    const Mat<double> W = randn<double>(37, 29, 10);  // out = 37, in = 29
    for (int64_t T : {int64_t(1), int64_t(2), int64_t(7), kSmallBatch, kSmallBatch + 1, int64_t(40)}) {
        const Mat<double> x = randn<double>(T, 29, uint32_t(11 + T));
        Mat<double> ref = Mat<double>::Zero(T, 37);
        for (int64_t t = 0; t < T; ++t)
            for (int o = 0; o < 37; ++o)
                for (int i = 0; i < 29; ++i) ref(t, o) += x(t, i) * W(o, i);
        INFO("T = " << T);
        CHECK(rel_err(linear_rows<double>(x, W), ref) < 1e-14);
        CHECK(rel_err(linear_gemm<double>(x, W), ref) < 1e-14);
        CHECK(rel_err(linear<double>(x, W), ref) < 1e-14);
        CHECK(rel_err(linear_rows<float>(x.cast<float>(), W.cast<float>()), ref) < 1e-6);
        CHECK(rel_err(linear_gemm<float>(x.cast<float>(), W.cast<float>()), ref) < 1e-6);
    }
    // Zero tokens: an empty result of the right width, from either form.
    const Mat<double> none(0, 29);
    CHECK(linear_rows<double>(none, W).cols() == 37);
    CHECK(linear_gemm<double>(none, W).rows() == 0);
}

TEST_CASE("swiglu equals down(silu(gate x) * up x) in loops") {
    const int T = 3, d = 5, w = 4;
    const Mat<double> x = randn<double>(T, d, 6), Wg = randn<double>(w, d, 7), Wu = randn<double>(w, d, 8),
                      Wd = randn<double>(d, w, 9);
    Mat<double> ref = Mat<double>::Zero(T, d);
    for (int t = 0; t < T; ++t) {
        for (int j = 0; j < w; ++j) {
            double g = 0, u = 0;
            for (int i = 0; i < d; ++i) g += Wg(j, i) * x(t, i), u += Wu(j, i) * x(t, i);
            const double a = g / (1.0 + std::exp(-g)) * u;
            for (int o = 0; o < d; ++o) ref(t, o) += Wd(o, j) * a;
        }
    }
    CHECK(rel_err(swiglu<double>(x, Wg, Wu, Wd), ref) < 1e-13);
}

TEST_CASE("softmax_rows: rows sum to one, shift invariance, masked -inf entries get zero") {
    Mat<double> z = randn<double>(3, 5, 10) * 30.0;  // large logits: needs the max subtraction
    Mat<double> shifted = z.array() + 1000.0;
    softmax_rows<double>(z);
    softmax_rows<double>(shifted);
    for (int r = 0; r < 3; ++r) CHECK(z.row(r).sum() == Approx(1.0).epsilon(1e-14));
    CHECK(rel_err(shifted, z) < 1e-12);
    CHECK(z.allFinite());
    Mat<double> m(1, 3);
    m << 0.0, -std::numeric_limits<double>::infinity(), 0.0;
    softmax_rows<double>(m);
    CHECK(m(0, 0) == Approx(0.5));
    CHECK(m(0, 1) == 0.0);
}
