#include "dsv2/rope.hpp"

#include <algorithm>
#include <cmath>
#include <stdexcept>

namespace dsv2 {

namespace {
const double kPi = 3.14159265358979323846;

double correction_dim(double rotations, int64_t d_R, double base, int64_t L0) {
    return double(d_R) * std::log(double(L0) / (rotations * 2.0 * kPi)) / (2.0 * std::log(base));
}
}  // namespace

YarnRange yarn_correction_range(int64_t d_R, double base, int64_t L0, double beta_fast, double beta_slow) {
    const int64_t low = int64_t(std::floor(correction_dim(beta_fast, d_R, base, L0)));
    const int64_t high = int64_t(std::ceil(correction_dim(beta_slow, d_R, base, L0)));
    return {std::max<int64_t>(low, 0), std::min<int64_t>(high, d_R - 1)};
}

double yarn_mscale(double s, double m) { return s <= 1.0 ? 1.0 : 0.1 * m * std::log(s) + 1.0; }

std::vector<double> rope_inv_freq(const Config& cfg) {
    const int64_t half = cfg.d_R / 2;
    std::vector<double> theta(static_cast<size_t>(half));
    for (int64_t k = 0; k < half; ++k) theta[size_t(k)] = std::pow(cfg.rope_theta, -2.0 * double(k) / double(cfg.d_R));
    if (!cfg.has_yarn) return theta;

    const Yarn& y = cfg.yarn;
    const YarnRange r = yarn_correction_range(cfg.d_R, cfg.rope_theta, y.L0, y.beta_fast, y.beta_slow);
    const double low = double(r.low);
    const double high = r.low == r.high ? double(r.high) + 0.001 : double(r.high);
    for (int64_t k = 0; k < half; ++k) {
        const double ramp = std::clamp((double(k) - low) / (high - low), 0.0, 1.0);
        theta[size_t(k)] = theta[size_t(k)] * (1.0 - ramp) + (theta[size_t(k)] / y.s) * ramp;
    }
    return theta;
}

double rope_amplitude(const Config& cfg) {
    if (!cfg.has_yarn) return 1.0;
    return yarn_mscale(cfg.yarn.s, cfg.yarn.mscale) / yarn_mscale(cfg.yarn.s, cfg.yarn.mscale_all_dim);
}

double softmax_scale(const Config& cfg) {
    double sigma = 1.0 / std::sqrt(double(cfg.d_qk()));
    if (cfg.has_yarn && cfg.yarn.mscale_all_dim != 0.0) {
        const double m = yarn_mscale(cfg.yarn.s, cfg.yarn.mscale_all_dim);
        sigma *= m * m;
    }
    return sigma;
}

template <typename S>
void apply_rope(Mat<S>& x, const std::vector<int64_t>& positions, const Rope& rope) {
    const int64_t half = int64_t(rope.inv_freq.size());
    const int64_t d_R = 2 * half;
    if (x.cols() % d_R != 0 || int64_t(positions.size()) != x.rows())
        throw std::logic_error("apply_rope: shape mismatch");
    const int64_t chunks = x.cols() / d_R;
#pragma omp parallel for if (x.rows() > 64)
    for (Eigen::Index t = 0; t < x.rows(); ++t) {
        for (int64_t k = 0; k < half; ++k) {
            const double angle = double(positions[size_t(t)]) * rope.inv_freq[size_t(k)];
            const S c = S(rope.amplitude * std::cos(angle));
            const S s = S(rope.amplitude * std::sin(angle));
            for (int64_t h = 0; h < chunks; ++h) {
                S& a = x(t, h * d_R + 2 * k);
                S& b = x(t, h * d_R + 2 * k + 1);
                const S a0 = a, b0 = b;
                a = a0 * c - b0 * s;
                b = a0 * s + b0 * c;
            }
        }
    }
}

template void apply_rope<float>(Mat<float>&, const std::vector<int64_t>&, const Rope&);
template void apply_rope<double>(Mat<double>&, const std::vector<int64_t>&, const Rope&);

}  // namespace dsv2
