// Helpers shared by the exercise tests (the learner never edits these files).
#pragma once

#include <catch2/catch.hpp>

#include <cstdint>
#include <random>
#include <vector>

#include "dsv2/config.hpp"
#include "dsv2/tensor.hpp"

namespace ex {

/// ‖a − b‖ / ‖b‖ (Frobenius), b the reference; ‖a − b‖ when b is zero.
template <typename A, typename B>
double rel_err(const A& a, const B& b) {
    const double num = (a.template cast<double>() - b.template cast<double>()).norm();
    const double den = b.template cast<double>().norm();
    return den == 0.0 ? num : num / den;
}

/// A rows × cols matrix of N(0, 1) values from a fixed seed.
inline dsv2::Mat<double> randn(int64_t rows, int64_t cols, uint32_t seed) {
    std::mt19937 gen(seed);
    std::normal_distribution<double> n(0.0, 1.0);
    dsv2::Mat<double> m(rows, cols);
    for (int64_t k = 0; k < m.size(); ++k) m.data()[k] = n(gen);
    return m;
}

/// Positions 0 … T−1 shifted by `start`.
inline std::vector<int64_t> positions(int64_t T, int64_t start = 0) {
    std::vector<int64_t> p(static_cast<size_t>(T));
    for (int64_t t = 0; t < T; ++t) p[size_t(t)] = start + t;
    return p;
}

/// The tiny preset without query compression and with greedy routing (a V2-Lite-like shape).
inline dsv2::Config tiny_lite() {
    dsv2::Config c = dsv2::config_preset("tiny");
    c.d_q = 0;
    c.topk_method = dsv2::TopkMethod::greedy;
    c.G = 1;
    c.G_k = 1;
    c.routed_scaling_factor = 1.0;
    c.validate();
    return c;
}

}  // namespace ex
