// ex9 — the learner's CUDA RMSNorm against the fp64 oracle (label gpu; exits 77 without a device,
// see gpu_main.cpp).
#include <random>
#include <vector>

#include "dsv2/layers.hpp"
#include "ex9.hpp"
#include "exercise_support.hpp"

TEST_CASE("ex9: CUDA rms_norm within 1e-5 of the fp64 oracle", "[ex9]") {
    for (auto [T, n] : {std::pair<int, int>{1, 1}, {3, 64}, {17, 5120}, {64, 513}, {1000, 7}, {0, 8}}) {
        INFO("T = " << T << ", n = " << n);
        std::mt19937 gen(uint32_t(T * 7919 + n));
        std::normal_distribution<float> nd(0.f, 1.f);
        std::vector<float> x(size_t(T) * size_t(n)), w(static_cast<size_t>(n));
        for (float& v : x) v = nd(gen);
        for (float& v : w) v = 1.f + 0.1f * nd(gen);
        const std::vector<float> y = ex9::rms_norm(x, w, T, n, 1e-6f);
        REQUIRE(y.size() == x.size());
        const dsv2::Mat<double> ref = dsv2::rms_norm<double>(
            Eigen::Map<const dsv2::Mat<float>>(x.data(), T, n).cast<double>(),
            Eigen::Map<const dsv2::Vec<float>>(w.data(), n).cast<double>(), 1e-6);
        CHECK(ex::rel_err(Eigen::Map<const dsv2::Mat<float>>(y.data(), T, n), ref) <= 1e-5);
    }
}
