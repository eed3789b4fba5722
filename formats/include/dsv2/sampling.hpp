// Choosing the next token from logits: greedy, or seeded temperature + nucleus (top-p) sampling.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <numeric>
#include <random>
#include <stdexcept>
#include <string>
#include <vector>

namespace dsv2 {

struct SamplingOptions {
    double temperature = 0.0;  ///< 0: greedy (argmax; ties → lowest id)
    double top_p = 1.0;        ///< keep the smallest set of most likely tokens whose mass reaches top_p
};

/// A seeded stream of uniform numbers in [0, 1), the same on every platform (std::mt19937_64 is
/// specified exactly; the standard distributions are not).
class SamplingRng {
public:
    explicit SamplingRng(uint64_t seed) : gen_(seed) {}
    double uniform() { return double(gen_() >> 11) * 0x1.0p-53; }

private:
    std::mt19937_64 gen_;
};

/// The next token from one row of logits [V].
template <typename S>
int32_t sample_token(const S* logits, int64_t V, const SamplingOptions& opt, SamplingRng& rng) {
    if (V <= 0) throw std::invalid_argument("sample_token: empty logits");
    for (int64_t i = 0; i < V; ++i)
        if (std::isnan(double(logits[i]))) throw std::invalid_argument("sample_token: the logits hold a NaN (token " + std::to_string(i) + ")");
    if (opt.temperature <= 0.0) return int32_t(std::max_element(logits, logits + V) - logits);
    if (!(opt.top_p > 0.0 && opt.top_p <= 1.0)) throw std::invalid_argument("sample_token: top_p must be in (0, 1]");
    // p_i ∝ exp((z_i − max z) / T), most likely first (ties → lower id).
    const double zmax = double(*std::max_element(logits, logits + V));
    std::vector<int32_t> order(static_cast<size_t>(V));
    std::iota(order.begin(), order.end(), 0);
    std::stable_sort(order.begin(), order.end(), [&](int32_t a, int32_t b) { return logits[a] > logits[b]; });
    std::vector<double> p(static_cast<size_t>(V));
    double total = 0;
    for (int64_t i = 0; i < V; ++i) total += (p[size_t(i)] = std::exp((double(logits[order[size_t(i)]]) - zmax) / opt.temperature));
    // Nucleus: the shortest prefix whose probability reaches top_p.
    int64_t keep = 0;
    double mass = 0;
    do mass += p[size_t(keep++)];
    while (keep < V && mass < opt.top_p * total);
    double u = rng.uniform() * mass;
    for (int64_t i = 0; i < keep; ++i) {
        if (u < p[size_t(i)]) return order[size_t(i)];
        u -= p[size_t(i)];
    }
    return order[size_t(keep - 1)];
}

}  // namespace dsv2
