// ex8 — the learner's chunked attention + log-sum-exp combine against one softmax over all keys
// (the oracle's dsv2::softmax_rows).
#include <cmath>
#include <limits>

#include "dsv2/layers.hpp"
#include "ex8.hpp"
#include "exercise_support.hpp"

using dsv2::Mat;

namespace {
// The reference: softmax over all keys, o = p V, lse = log Σ exp(s).
void reference(const Mat<double>& s, const Mat<double>& V, Mat<double>* o, double* lse) {
    Mat<double> p = s;
    dsv2::softmax_rows<double>(p);
    *o = p * V;
    const double m = s.maxCoeff();
    *lse = m + std::log((s.array() - m).unaryExpr([](double v) { return std::exp(v); }).sum());
}

ex8::Partial chunked(const Mat<double>& s, const Mat<double>& V, const std::vector<int64_t>& sizes) {
    std::vector<ex8::Partial> parts;
    int64_t at = 0;
    for (int64_t n : sizes) {
        parts.push_back(ex8::attend_chunk(s.middleCols(at, n), V.middleRows(at, n)));
        at += n;
    }
    REQUIRE(at == s.cols());
    return ex8::combine(parts);
}
}  // namespace

TEST_CASE("ex8: chunked attention + combine = one softmax over all keys", "[ex8]") {
    const Mat<double> s = 3.0 * ex::randn(1, 40, 80), V = ex::randn(40, 12, 81);
    Mat<double> o;
    double lse;
    reference(s, V, &o, &lse);
    for (const std::vector<int64_t>& sizes : {std::vector<int64_t>{40}, {1, 39}, {10, 10, 10, 10}, {7, 1, 13, 19}, {39, 1}}) {
        INFO("chunks: " << sizes.size());
        const ex8::Partial got = chunked(s, V, sizes);
        REQUIRE(got.o.size() == 12);
        CHECK(ex::rel_err(got.o, o) < 1e-13);
        CHECK(got.lse == Approx(lse).epsilon(1e-13));
    }
}

TEST_CASE("ex8: large scores do not overflow", "[ex8]") {
    const Mat<double> s = (1000.0 + ex::randn(1, 30, 82).array()).matrix(), V = ex::randn(30, 4, 83);
    Mat<double> o;
    double lse;
    reference(s, V, &o, &lse);
    const ex8::Partial got = chunked(s, V, {5, 11, 14});
    CHECK(got.o.allFinite());
    CHECK(ex::rel_err(got.o, o) < 1e-13);
    CHECK(got.lse == Approx(lse).epsilon(1e-13));
}

TEST_CASE("ex8: a fully masked chunk contributes nothing", "[ex8]") {
    Mat<double> s = ex::randn(1, 24, 84);
    s.middleCols(8, 8).setConstant(-std::numeric_limits<double>::infinity());   // keys 8 … 15 masked
    const Mat<double> V = ex::randn(24, 6, 85);
    Mat<double> o;
    double lse;
    reference(s, V, &o, &lse);
    const ex8::Partial got = chunked(s, V, {8, 8, 8});
    CHECK(got.o.allFinite());
    CHECK(ex::rel_err(got.o, o) < 1e-13);
    CHECK(got.lse == Approx(lse).epsilon(1e-13));
    const ex8::Partial masked = ex8::attend_chunk(s.middleCols(8, 8), V.middleRows(8, 8));
    CHECK(masked.lse == -std::numeric_limits<double>::infinity());
    CHECK(masked.o.allFinite());
}
