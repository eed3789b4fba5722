// ex10 — the learner's CUDA split-KV combine against one softmax over all keys (the oracle's
// dsv2::softmax_rows, fp64). Label gpu; exits 77 without a device (gpu_main.cpp).
#include <cmath>
#include <limits>
#include <vector>

#include "dsv2/layers.hpp"
#include "ex10.hpp"
#include "exercise_support.hpp"

using dsv2::Mat;

namespace {
constexpr double kNegInf = -std::numeric_limits<double>::infinity();

struct Case {
    int R, n, d_v;
    std::vector<int> chunks;
    double offset;       // added to every score
    bool mask_chunk;     // row r masks chunk (r mod C) entirely
    bool mask_row0;      // row 0 masks every key
};

void run(const Case& k) {
    const int C = int(k.chunks.size());
    Mat<double> s = (ex::randn(k.R, k.n, uint32_t(k.R * 31 + k.n)).array() * 2.0 + k.offset).matrix();  // scores [R, n]
    const Mat<double> V = ex::randn(k.n, k.d_v, uint32_t(k.n + 7));                                   // values [n, d_v]
    std::vector<int> start(size_t(C) + 1, 0);
    for (int c = 0; c < C; ++c) start[size_t(c) + 1] = start[size_t(c)] + k.chunks[size_t(c)];
    REQUIRE(start[size_t(C)] == k.n);
    for (int r = 0; r < k.R; ++r) {
        if (k.mask_chunk) {
            const int c = r % C;
            s.row(r).segment(start[size_t(c)], k.chunks[size_t(c)]).setConstant(kNegInf);
        }
        if (k.mask_row0 && r == 0) s.row(0).setConstant(kNegInf);
    }
    // Partials, chunk by chunk (the first kernel of a split-KV decode), in double, sent as float.
    std::vector<float> o_part(size_t(k.R) * C * k.d_v, 0.f), lse_part(size_t(k.R) * C);
    for (int r = 0; r < k.R; ++r)
        for (int c = 0; c < C; ++c) {
            Mat<double> p = s.row(r).segment(start[size_t(c)], k.chunks[size_t(c)]);
            const double m = p.maxCoeff();
            if (m == kNegInf) {
                lse_part[size_t(r) * C + c] = -INFINITY;
                continue;
            }
            lse_part[size_t(r) * C + c] = float(m + std::log((p.array() - m).unaryExpr([](double v) { return std::exp(v); }).sum()));
            dsv2::softmax_rows<double>(p);
            const Mat<double> oc = p * V.middleRows(start[size_t(c)], k.chunks[size_t(c)]);
            for (int j = 0; j < k.d_v; ++j) o_part[(size_t(r) * C + c) * k.d_v + j] = float(oc(0, j));
        }
    std::vector<float> o, lse;
    ex10::combine(o_part, lse_part, k.R, C, k.d_v, &o, &lse);
    REQUIRE(o.size() == size_t(k.R) * k.d_v);
    REQUIRE(lse.size() == size_t(k.R));
    for (int r = 0; r < k.R; ++r) {
        INFO("row " << r);
        const Eigen::Map<const Mat<float>> got(o.data() + size_t(r) * k.d_v, 1, k.d_v);
        if (k.mask_row0 && r == 0) {
            CHECK(got.isZero(0.0f));
            CHECK(lse[0] == -std::numeric_limits<float>::infinity());
            continue;
        }
        Mat<double> p = s.row(r);
        const double m = p.maxCoeff();
        const double want_lse = m + std::log((p.array() - m).unaryExpr([](double v) { return std::exp(v); }).sum());
        dsv2::softmax_rows<double>(p);
        CHECK(ex::rel_err(got, p * V) <= 1e-5);
        CHECK(lse[size_t(r)] == Approx(want_lse).epsilon(1e-5));
    }
}
}  // namespace

TEST_CASE("ex10: CUDA combine = one softmax over all keys", "[ex10]") {
    run({4, 40, 12, {10, 10, 10, 10}, 0.0, false, false});
    run({1, 9, 3, {1, 1, 7}, 0.0, false, false});
    run({512, 256, 512, {64, 64, 64, 64}, 0.0, false, false});
}

TEST_CASE("ex10: large scores, masked chunks and a fully masked row", "[ex10]") {
    run({8, 30, 16, {5, 11, 14}, 1000.0, false, false});
    run({9, 48, 40, {16, 16, 16}, 0.0, true, false});
    run({3, 20, 8, {10, 10}, 0.0, false, true});
}
