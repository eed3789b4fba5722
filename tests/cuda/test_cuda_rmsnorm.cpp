// GPU test (CTest label gpu): the CUDA RMSNorm against the fp64 oracle. Without a device it
// prints why and exits 77, which CTest reports as skipped.
#include <cstdio>
#include <random>

#include "dsv2/cuda/ops.hpp"
#include "dsv2/layers.hpp"

int main() {
    if (!dsv2::cuda::announce_device()) return dsv2::cuda::kSkipExitCode;
    int failures = 0;
    for (auto [T, n] : {std::pair{1, 1}, {3, 64}, {17, 5120}, {64, 513}, {0, 8}}) {
        std::mt19937 gen(uint32_t(T * 7919 + n));
        std::normal_distribution<float> nd(0.f, 1.f);
        std::vector<float> x(static_cast<size_t>(T) * n), w(static_cast<size_t>(n));
        for (float& v : x) v = nd(gen);
        for (float& v : w) v = 1.f + 0.1f * nd(gen);
        const std::vector<float> y = dsv2::cuda::rms_norm(x, w, T, n, 1e-6f);
        const dsv2::Mat<double> ref = dsv2::rms_norm<double>(
            Eigen::Map<const dsv2::Mat<float>>(x.data(), T, n).cast<double>(),
            Eigen::Map<const dsv2::Vec<float>>(w.data(), n).cast<double>(), 1e-6);
        double num = 0, den = 0;
        for (int k = 0; k < T * n; ++k) {
            num += (y[size_t(k)] - ref.data()[k]) * (y[size_t(k)] - ref.data()[k]);
            den += ref.data()[k] * ref.data()[k];
        }
        const double rel = den > 0 ? std::sqrt(num / den) : std::sqrt(num);
        const bool ok = rel <= 1e-5 && y.size() == size_t(T) * size_t(n);
        std::printf("rms_norm T=%d n=%d  rel err %.2e  %s\n", T, n, rel, ok ? "ok" : "FAIL");
        failures += ok ? 0 : 1;
    }
    return failures ? 1 : 0;
}
