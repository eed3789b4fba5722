// ---
// jupyter:
//   jupytext:
//     formats: cpp:percent
//     text_representation:
//       extension: .cpp
//       format_name: percent
//   kernelspec:
//     display_name: C++17
//     language: c++
//     name: xcpp17
// ---

// %% [markdown]
// # 03 — Low-rank joint compression of keys and values
//
// MLA (§2.1.2 of the paper) does not cache keys and values. It caches one short vector per
// token, the **latent** $c^{KV}_t = W^{DKV} h_t \in \mathbb{R}^{d_c}$, and recomputes keys and
// values from it with up-projections:
//
// $$k^C_t = W^{UK} c^{KV}_t, \qquad v^C_t = W^{UV} c^{KV}_t .$$
//
// So the map from $h_t$ to all $n_h$ keys, $W^{UK} W^{DKV}$, has rank at most $d_c$: keys and
// values are compressed **jointly** into one $d_c$-dimensional space. The released weights store
// $W^{DKV}$ as the first $d_c$ rows of `kv_a_proj_with_mqa` (the last $d_R$ rows are the RoPE key
// $W^{KR}$, notebook 04), and $[W^{UK}_i; W^{UV}_i]$ per head as blocks of $d_h + d_v$ rows of
// `kv_b_proj`. A RMSNorm (`kv_a_layernorm`) follows the down-projection; the cache holds the
// normalised latent $\hat c^{KV}$.
//
// This notebook uses the `tiny` preset: $d = 64$, $d_c = 32$, $n_h = 4$, $d_h = 16$, $d_v = 12$.

// %%
#include <cstdio>
#include <string>
#include <vector>

#include <Eigen/SVD>

#include "dsv2/config.hpp"
#include "dsv2/mla.hpp"
#include "dsv2/rope.hpp"
#include "dsv2/layers.hpp"
#include "dsv2/trace.hpp"
#include "dsv2/weights.hpp"
#include "nb.hpp"

using dsv2::Mat;

#if !defined(__CLING__) && !defined(__CLANG_REPL__)
int main() {
#endif

// %% [markdown]
// ## 1. The weights, split as the checkpoint stores them

// %%
cell(1);
const dsv2::Config cfg = dsv2::config_preset("tiny");
const dsv2::Weights<double> w = dsv2::random_weights<double>(cfg, 7);
const std::string attn = dsv2::layer_prefix(1) + "self_attn.";
const Mat<double>& W_kv_a = w.mat(attn + "kv_a_proj_with_mqa.weight");           // [d_c + d_R, d]
const Mat<double>& W_kv_b = w.mat(attn + "kv_b_proj.weight");                     // [n_h (d_h + d_v), d_c]
const Mat<double> W_DKV = W_kv_a.topRows(cfg.d_c);                                // [d_c, d]
Mat<double> W_UK(cfg.n_h * cfg.d_h, cfg.d_c), W_UV(cfg.n_h * cfg.d_v, cfg.d_c);  // heads stacked
for (int64_t i = 0; i < cfg.n_h; ++i) {
    const int64_t r = i * (cfg.d_h + cfg.d_v);                                    // head i's block
    W_UK.middleRows(i * cfg.d_h, cfg.d_h) = W_kv_b.middleRows(r, cfg.d_h);
    W_UV.middleRows(i * cfg.d_v, cfg.d_v) = W_kv_b.middleRows(r + cfg.d_h, cfg.d_v);
}
std::printf("kv_a_proj_with_mqa [%lld, %lld] = [W^DKV (%lld rows) ; W^KR (%lld rows)]\n", (long long)W_kv_a.rows(),
            (long long)W_kv_a.cols(), (long long)cfg.d_c, (long long)cfg.d_R);
std::printf("kv_b_proj [%lld, %lld] = per head [W^UK_i (%lld rows) ; W^UV_i (%lld rows)], %lld heads\n",
            (long long)W_kv_b.rows(), (long long)W_kv_b.cols(), (long long)cfg.d_h, (long long)cfg.d_v, (long long)cfg.n_h);
check(W_kv_a.rows() == cfg.d_c + cfg.d_R && W_kv_b.rows() == cfg.n_h * (cfg.d_h + cfg.d_v),
      "checkpoint shapes: [d_c + d_R, d] and [n_h (d_h + d_v), d_c]");

// %% [markdown]
// ## 2. rank $W^{UK} W^{DKV} \le d_c$
//
// The composite maps $h \in \mathbb{R}^{64}$ to all four heads' keys ($4 \cdot 16 = 64$ values):
// a 64 × 64 matrix, which could have rank 64. Its singular values drop to rounding noise after
// the 32nd: every key lives in a 32-dimensional space. The same holds for values, and for both
// together.

// %%
cell(2);
const Mat<double> K_of_h = W_UK * W_DKV;                                          // [n_h d_h, d]
Mat<double> KV_of_h(W_UK.rows() + W_UV.rows(), cfg.d);                            // keys and values of all heads
KV_of_h << K_of_h, W_UV * W_DKV;
const Eigen::VectorXd sv = Eigen::JacobiSVD<Eigen::MatrixXd>(K_of_h).singularValues();
const Eigen::VectorXd sv_kv = Eigen::JacobiSVD<Eigen::MatrixXd>(KV_of_h).singularValues();
auto rank_of = [](const Eigen::VectorXd& s) { return int((s.array() > 1e-10 * s(0)).count()); };
std::printf("singular values of W^UK W^DKV [%lld x %lld]:\n", (long long)K_of_h.rows(), (long long)K_of_h.cols());
for (int k : {0, 1, 15, 30, 31, 32, 33, 63}) std::printf("  s_%-2d = %.3e\n", k, sv(k));
std::printf("rank(W^UK W^DKV) = %d, rank([W^UK; W^UV] W^DKV) = %d  (d_c = %lld, d = %lld)\n", rank_of(sv),
            rank_of(sv_kv), (long long)cfg.d_c, (long long)cfg.d);
check(rank_of(sv) == cfg.d_c, "the keys of all heads span exactly d_c = 32 dimensions");
check(rank_of(sv_kv) == cfg.d_c, "keys and values together: still d_c dimensions (joint compression)");
check(sv(cfg.d_c) < 1e-12 * sv(0), "singular values past d_c are rounding noise");

// %% [markdown]
// ## 3. Keys and values come back from the cached latent
//
// `dsv2::mla_latent` computes what a token contributes to the cache: $\hat c^{KV}$ (post-norm)
// and $k^R$ (post-RoPE). From those rows alone, rebuild every head's key
// $[W^{UK}_i \hat c_j ; k^R_j]$ and value $W^{UV}_i \hat c_j$, run ordinary causal multi-head
// attention over them, and compare with the oracle's naive MLA (`dsv2::mla_attend_naive`).

// %%
cell(3);
const int64_t T = 6;
const Mat<double> x = nb::randn(T, cfg.d, 11);                                    // [T, d] = RMSNorm(h)
std::vector<int64_t> pos(static_cast<size_t>(T));
for (int64_t t = 0; t < T; ++t) pos[size_t(t)] = t;
const dsv2::Rope rope(cfg);
dsv2::Trace trace;
const dsv2::MlaQuery<double> q = dsv2::mla_query<double>(cfg, w, 1, x, pos, rope, &trace);
const dsv2::MlaLatent<double> lat = dsv2::mla_latent<double>(cfg, w, 1, x, pos, rope, &trace);
std::printf("cache rows: c_kv [%lld, %lld] + k_pe [%lld, %lld] = %lld values per token\n", (long long)lat.c_kv.rows(),
            (long long)lat.c_kv.cols(), (long long)lat.k_pe.rows(), (long long)lat.k_pe.cols(),
            (long long)(lat.c_kv.cols() + lat.k_pe.cols()));

const double sigma = dsv2::softmax_scale(cfg);
Mat<double> o_mine(T, cfg.n_h * cfg.d_v);
for (int64_t i = 0; i < cfg.n_h; ++i) {
    const Mat<double> k_C = lat.c_kv * W_UK.middleRows(i * cfg.d_h, cfg.d_h).transpose();   // [T, d_h]
    const Mat<double> v_C = lat.c_kv * W_UV.middleRows(i * cfg.d_v, cfg.d_v).transpose();   // [T, d_v]
    Mat<double> K(T, cfg.d_qk()), Q(T, cfg.d_qk());
    K << k_C, lat.k_pe;                                                            // k_{j,i} = [k^C ; k^R]
    Q << q.q_nope.middleCols(i * cfg.d_h, cfg.d_h), q.q_pe.middleCols(i * cfg.d_R, cfg.d_R);
    for (int64_t t = 0; t < T; ++t) {
        Eigen::VectorXd s = sigma * (K.topRows(t + 1) * Q.row(t).transpose());     // keys 0 … t
        s = (s.array() - s.maxCoeff()).exp();
        s /= s.sum();
        o_mine.block(t, i * cfg.d_v, 1, cfg.d_v) = s.transpose() * v_C.topRows(t + 1);
    }
}
const Mat<double> o_naive = dsv2::mla_attend_naive<double>(cfg, q, lat.c_kv, lat.k_pe, W_kv_b, pos);
nb::show("o (head 0)", o_mine.leftCols(cfg.d_v), 3, 6);
check(nb::rel_err(o_mine, o_naive) < 1e-13, "MHA over keys/values rebuilt from the cached latent = dsv2::mla_attend_naive");

// %% [markdown]
// ## 4. The cached latent is post-norm
//
// `kv_a_layernorm` normalises the $d_c$ latent (not $k^R$), and the cache keeps the result, so a
// decode step never touches $h$ of an earlier token again. Dividing out the norm weight, each
// cached row has unit root-mean-square.

// %%
cell(4);
const Eigen::Map<const dsv2::Vec<double>> g = w.vec(attn + "kv_a_layernorm.weight");
double worst = 0;
for (int64_t t = 0; t < T; ++t) {
    const Eigen::RowVectorXd u = lat.c_kv.row(t).cwiseQuotient(g.transpose());
    worst = std::max(worst, std::abs(std::sqrt(u.squaredNorm() / double(cfg.d_c)) - 1.0));
}
std::printf("max |rms(c_kv / g) - 1| over %lld tokens = %.2e\n", (long long)T, worst);
check(worst < 1e-5, "every cached latent row has unit RMS once the norm weight is divided out");
check(nb::rel_err(trace.at("layers.1.attn.c_kv").data, lat.c_kv) == 0.0, "the trace name layers.1.attn.c_kv holds exactly this latent");

// %% [markdown]
// ## 5. What the compression buys
//
// Per token and layer, MHA caches $2 n_h d_h$ values; MLA caches $d_c + d_R$. The query side
// has its own compression $c^Q = W^{DQ} h$ ($d_q$ = `q_lora_rank`, 1536 for V2, none in
// V2-Lite); it saves activation memory in training and does not touch the cache.

// %%
cell(5);
for (const char* name : {"tiny", "deepseek-v2", "deepseek-v2-lite"}) {
    const dsv2::Config c = dsv2::config_preset(name);
    std::printf("%-17s MHA %6lld  MLA %4lld  -> %5.1fx smaller;  d_q = %lld\n", name, (long long)(2 * c.n_h * c.d_h),
                (long long)c.cache_width(), double(2 * c.n_h * c.d_h) / double(c.cache_width()), (long long)c.d_q);
}
check(trace.at("layers.1.attn.c_q").data.cols() == cfg.d_q, "the query latent layers.1.attn.c_q is d_q wide");
check(double(2 * 128 * 128) / 576.0 > 56.8, "V2: 32,768 → 576 values per token and layer (57x)");

// %%
cell(6);
#if !defined(__CLING__) && !defined(__CLANG_REPL__)
return nb::finish();
}
#else
nb::finish();
#endif
