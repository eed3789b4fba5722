// ex2 — interleaved RoPE with YaRN frequencies: a solution.
#include <algorithm>
#include <cmath>

#include "ex2.hpp"

namespace ex2 {

std::vector<double> inv_freq(const dsv2::Config& cfg) {
    const int64_t d_R = cfg.d_R;
    const double base = cfg.rope_theta, pi = std::acos(-1.0);
    double low = 0, high = 0;
    if (cfg.has_yarn) {
        auto D = [&](double r) { return double(d_R) * std::log(double(cfg.yarn.L0) / (2 * pi * r)) / (2 * std::log(base)); };
        low = std::max(std::floor(D(cfg.yarn.beta_fast)), 0.0);
        high = std::min(std::ceil(D(cfg.yarn.beta_slow)), double(d_R - 1));
        if (low == high) high += 0.001;
    }
    std::vector<double> f;
    for (int64_t k = 0; k < d_R / 2; ++k) {
        const double theta = std::pow(base, -2.0 * double(k) / double(d_R));
        if (!cfg.has_yarn) {
            f.push_back(theta);
            continue;
        }
        const double r = std::clamp((double(k) - low) / (high - low), 0.0, 1.0);
        f.push_back(theta * (1 - r) + theta / cfg.yarn.s * r);
    }
    return f;
}

dsv2::Mat<double> apply_rope(const dsv2::Mat<double>& x, const std::vector<int64_t>& positions,
                             const std::vector<double>& inv_freq, double amplitude) {
    const int64_t half = int64_t(inv_freq.size()), d_R = 2 * half;
    dsv2::Mat<double> y(x.rows(), x.cols());
    for (Eigen::Index t = 0; t < x.rows(); ++t)
        for (Eigen::Index h = 0; h < x.cols() / d_R; ++h)
            for (int64_t k = 0; k < half; ++k) {
                const double a = double(positions[size_t(t)]) * inv_freq[size_t(k)];
                const double c = amplitude * std::cos(a), s = amplitude * std::sin(a);
                const Eigen::Index i = h * d_R + 2 * k;
                y(t, i) = x(t, i) * c - x(t, i + 1) * s;
                y(t, i + 1) = x(t, i) * s + x(t, i + 1) * c;
            }
    return y;
}

}  // namespace ex2
