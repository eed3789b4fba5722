// ex2 — interleaved RoPE with YaRN frequencies. Write your solution here, then: make exercise N=2
#include <stdexcept>

#include "ex2.hpp"

namespace ex2 {

std::vector<double> inv_freq(const dsv2::Config& cfg) {
    (void)cfg;
    throw std::runtime_error("TODO(ex2): inv_freq — theta_k = base^(-2k/d_R), YaRN-blended over [low, high]");
}

dsv2::Mat<double> apply_rope(const dsv2::Mat<double>& x, const std::vector<int64_t>& positions,
                             const std::vector<double>& inv_freq, double amplitude) {
    (void)x, (void)positions, (void)inv_freq, (void)amplitude;
    throw std::runtime_error("TODO(ex2): apply_rope — rotate the pairs (2k, 2k+1) of every d_R chunk");
}

}  // namespace ex2
