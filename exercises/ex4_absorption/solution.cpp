// ex4 — weight absorption: a solution.
#include "ex4.hpp"

namespace ex4 {

dsv2::Mat<double> absorbed_query(const dsv2::Config& cfg, const dsv2::Mat<double>& q_nope, const dsv2::Mat<double>& W_kv_b) {
    dsv2::Mat<double> q_abs(q_nope.rows(), cfg.n_h * cfg.d_c);                  // [T, n_h·d_c]
    for (int64_t i = 0; i < cfg.n_h; ++i) {
        const auto W_UK = W_kv_b.middleRows(i * (cfg.d_h + cfg.d_v), cfg.d_h);   // [d_h, d_c]
        q_abs.middleCols(i * cfg.d_c, cfg.d_c) = q_nope.middleCols(i * cfg.d_h, cfg.d_h) * W_UK;
    }
    return q_abs;
}

dsv2::Mat<double> latent_output(const dsv2::Config& cfg, const dsv2::Mat<double>& o_latent, const dsv2::Mat<double>& W_kv_b) {
    dsv2::Mat<double> o(o_latent.rows(), cfg.n_h * cfg.d_v);                     // [T, n_h·d_v]
    for (int64_t i = 0; i < cfg.n_h; ++i) {
        const auto W_UV = W_kv_b.middleRows(i * (cfg.d_h + cfg.d_v) + cfg.d_h, cfg.d_v);   // [d_v, d_c]
        o.middleCols(i * cfg.d_v, cfg.d_v) = o_latent.middleCols(i * cfg.d_c, cfg.d_c) * W_UV.transpose();
    }
    return o;
}

}  // namespace ex4
