// ex3 — latent compression (the KV side): a solution, built from the oracle's RMSNorm and RoPE
// (ex1 and ex2 are the same building blocks).
#include "dsv2/layers.hpp"
#include "dsv2/rope.hpp"
#include "ex3.hpp"

namespace ex3 {

Latent latent(const dsv2::Config& cfg, const dsv2::Weights<double>& w, int64_t l, const dsv2::Mat<double>& x,
              const std::vector<int64_t>& positions) {
    const std::string a = dsv2::layer_prefix(l) + "self_attn.";
    const dsv2::Mat<double> kv_a = x * w.mat(a + "kv_a_proj_with_mqa.weight").transpose();   // [T, d_c + d_R]
    Latent out;
    out.c_kv = dsv2::rms_norm<double>(kv_a.leftCols(cfg.d_c), w.vec(a + "kv_a_layernorm.weight"), cfg.rms_norm_eps);
    out.k_pe = kv_a.rightCols(cfg.d_R);                                           // [T, d_R]
    dsv2::apply_rope<double>(out.k_pe, positions, dsv2::Rope(cfg));
    return out;
}

}  // namespace ex3
