// ex4 — weight absorption. Write your solution here, then: make exercise N=4
#include <stdexcept>

#include "ex4.hpp"

namespace ex4 {

dsv2::Mat<double> absorbed_query(const dsv2::Config& cfg, const dsv2::Mat<double>& q_nope, const dsv2::Mat<double>& W_kv_b) {
    (void)cfg, (void)q_nope, (void)W_kv_b;
    throw std::runtime_error("TODO(ex4): absorbed_query — q~_i = W^UK_i^T q^C_i for every head");
}

dsv2::Mat<double> latent_output(const dsv2::Config& cfg, const dsv2::Mat<double>& o_latent, const dsv2::Mat<double>& W_kv_b) {
    (void)cfg, (void)o_latent, (void)W_kv_b;
    throw std::runtime_error("TODO(ex4): latent_output — o_i = W^UV_i o~_i for every head");
}

}  // namespace ex4
