// ex3 — latent compression (the KV side). Write your solution here, then: make exercise N=3
#include <stdexcept>

#include "ex3.hpp"

namespace ex3 {

Latent latent(const dsv2::Config& cfg, const dsv2::Weights<double>& w, int64_t l, const dsv2::Mat<double>& x,
              const std::vector<int64_t>& positions) {
    (void)cfg, (void)w, (void)l, (void)x, (void)positions;
    throw std::runtime_error("TODO(ex3): latent — down-project with kv_a_proj_with_mqa, split, norm c_KV, rotate k_R");
}

}  // namespace ex3
