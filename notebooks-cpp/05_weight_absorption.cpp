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
// # 05 — Weight absorption: the same attention, computed on the latent
//
// The naive form of MLA up-projects every cached latent to per-head keys and values and runs
// ordinary multi-head attention. Two re-associations of matrix products remove the
// up-projections from the per-token work (§2.1.2, App. C of the paper; spec §2.3):
//
// $$q^C_{t,i} \cdot (W^{UK}_i \hat c_j) = (W^{UK\top}_i q^C_{t,i}) \cdot \hat c_j = \tilde q_{t,i} \cdot \hat c_j,
// \qquad \sum_j p_{t,i,j}\, W^{UV}_i \hat c_j = W^{UV}_i \Big(\sum_j p_{t,i,j}\, \hat c_j\Big).$$
//
// The absorbed attention is an MQA with one 576-wide key $[\hat c_j; k^R_j]$ shared by all heads,
// the value being its first 512 entries. The softmax scale stays $\sigma$ of $d_{qk} = 192$.
// `dsv2::mla_attend_naive` and `dsv2::mla_attend_absorbed` are the two forms, side by side.

// %%
#include <cstdio>
#include <string>
#include <vector>

#include "dsv2/config.hpp"
#include "dsv2/mla.hpp"
#include "dsv2/rope.hpp"
#include "dsv2/trace.hpp"
#include "dsv2/weights.hpp"
#include "nb.hpp"

using dsv2::Mat;

#if !defined(__CLING__) && !defined(__CLANG_REPL__)
int main() {
#endif

// %% [markdown]
// ## 1. The two identities, on one head
//
// Head 0 of layer 1 of the `tiny` preset, fp64: a content query, five cached latents, softmax
// weights.

// %%
cell(1);
const dsv2::Config cfg = dsv2::config_preset("tiny");
const dsv2::Weights<double> w = dsv2::random_weights<double>(cfg, 11);
const Mat<double>& W_kv_b = w.mat(dsv2::layer_prefix(1) + "self_attn.kv_b_proj.weight");  // [n_h (d_h + d_v), d_c]
const Mat<double> W_UK = W_kv_b.topRows(cfg.d_h);                                 // head 0 [d_h, d_c]
const Mat<double> W_UV = W_kv_b.middleRows(cfg.d_h, cfg.d_v);                     // head 0 [d_v, d_c]
const Mat<double> qC = nb::randn(1, cfg.d_h, 1);                                  // [1, d_h]
const Mat<double> C = nb::randn(5, cfg.d_c, 2);                                   // 5 cached latents [5, d_c]
const Mat<double> scores_naive = qC * (C * W_UK.transpose()).transpose();         // q·(W^UK ĉ_j)  [1, 5]
const Mat<double> q_tilde = qC * W_UK;                                            // W^UKᵀ q       [1, d_c]
const Mat<double> scores_abs = q_tilde * C.transpose();                           // q̃·ĉ_j        [1, 5]
Mat<double> p = (scores_naive.array() - scores_naive.maxCoeff()).exp().matrix();
p /= p.sum();
const Mat<double> o_naive1 = p * (C * W_UV.transpose());                          // Σ p (W^UV ĉ)  [1, d_v]
const Mat<double> o_abs1 = (p * C) * W_UV.transpose();                            // W^UV Σ p ĉ    [1, d_v]
nb::show("scores, naive   ", scores_naive, 1, 5);
nb::show("scores, absorbed", scores_abs, 1, 5);
check(nb::rel_err(scores_abs, scores_naive) < 1e-14, "q.(W^UK c) = (W^UK^T q).c");
check(nb::rel_err(o_abs1, o_naive1) < 1e-14, "sum_j p_j W^UV c_j = W^UV sum_j p_j c_j");

// %% [markdown]
// ## 2. The oracle's two forms agree
//
// A whole attention step of layer 1: `mla_query` and `mla_latent` compute the query and the
// cache rows for 9 tokens; both forms attend over the same rows. In fp64 they agree to rounding;
// in fp32 both stay within $10^{-5}$ of the fp64 result. The absorbed form records its two extra
// intermediates, `attn.q_absorbed` ($\tilde q$, $n_h d_c$ wide) and `attn.o_latent`
// ($\sum_j p_j \hat c_j$).

// %%
cell(2);
const int64_t T = 9;
const Mat<double> x = nb::randn(T, cfg.d, 3);
std::vector<int64_t> pos(static_cast<size_t>(T));
for (int64_t t = 0; t < T; ++t) pos[size_t(t)] = t;
const dsv2::Rope rope(cfg);
dsv2::Trace trace;
const dsv2::MlaQuery<double> q = dsv2::mla_query<double>(cfg, w, 1, x, pos, rope, &trace);
const dsv2::MlaLatent<double> lat = dsv2::mla_latent<double>(cfg, w, 1, x, pos, rope, &trace);
const Mat<double> o_naive = dsv2::mla_attend_naive<double>(cfg, q, lat.c_kv, lat.k_pe, W_kv_b, pos);
const Mat<double> o_abs = dsv2::mla_attend_absorbed<double>(cfg, q, lat.c_kv, lat.k_pe, W_kv_b, pos, 1, &trace);
std::printf("fp64: rel err naive vs absorbed = %.2e\n", nb::rel_err(o_abs, o_naive));
check(nb::rel_err(o_abs, o_naive) < 1e-13, "mla_attend_absorbed = mla_attend_naive (fp64)");

const dsv2::Weights<float> wf = dsv2::random_weights<float>(cfg, 11);             // the same values, rounded to float
const Mat<float> xf = x.cast<float>();
const dsv2::MlaQuery<float> qf = dsv2::mla_query<float>(cfg, wf, 1, xf, pos, rope, nullptr);
const dsv2::MlaLatent<float> latf = dsv2::mla_latent<float>(cfg, wf, 1, xf, pos, rope, nullptr);
const Mat<float>& W_kv_bf = wf.mat(dsv2::layer_prefix(1) + "self_attn.kv_b_proj.weight");
const double e_naive32 = nb::rel_err(dsv2::mla_attend_naive<float>(cfg, qf, latf.c_kv, latf.k_pe, W_kv_bf, pos), o_naive);
const double e_abs32 = nb::rel_err(dsv2::mla_attend_absorbed<float>(cfg, qf, latf.c_kv, latf.k_pe, W_kv_bf, pos, 1, nullptr), o_naive);
std::printf("fp32 vs fp64: naive %.2e, absorbed %.2e\n", e_naive32, e_abs32);
check(e_naive32 < 1e-5 && e_abs32 < 1e-5, "both fp32 forms within 1e-5 of fp64");

const Mat<double>& q_abs_tr = trace.at("layers.1.attn.q_absorbed").data;           // [T, n_h d_c]
const Mat<double>& o_lat_tr = trace.at("layers.1.attn.o_latent").data;             // [T, n_h d_c]
std::printf("trace: attn.q_absorbed [%lld, %lld], attn.o_latent [%lld, %lld]\n", (long long)q_abs_tr.rows(),
            (long long)q_abs_tr.cols(), (long long)o_lat_tr.rows(), (long long)o_lat_tr.cols());
check(nb::rel_err(q_abs_tr.leftCols(cfg.d_c), q.q_nope.leftCols(cfg.d_h) * W_UK) < 1e-15,
      "attn.q_absorbed of head 0 = q_nope_0 W^UK_0");
check(nb::rel_err(o_lat_tr.leftCols(cfg.d_c) * W_UV.transpose(), o_abs.leftCols(cfg.d_v)) < 1e-14,
      "W^UV_0 applied to attn.o_latent of head 0 = the head's output");

// %% [markdown]
// ## 3. What each form costs per cached token
//
// Per layer, for every cached token a decode step attends to:
//
// | form | reads (bf16) | multiply-adds |
// |---|---|---|
// | naive, K/V cached decompressed (the HF code) | $n_h (d_{qk} + d_v) \cdot 2$ B | $n_h (d_{qk} + d_v)$ |
// | naive, K/V up-projected from the latent each step | $(d_c + d_R) \cdot 2$ B | $n_h (d_h + d_v) d_c + n_h (d_{qk} + d_v)$ |
// | absorbed | $(d_c + d_R) \cdot 2$ B | $n_h (d_c + d_R + d_c)$ |
//
// plus, per query token and independent of the context, $n_h (d_h + d_v) d_c$ multiply-adds for
// $W^{UK\top} q$ and $W^{UV} \tilde o$ in the absorbed form. The absorbed form does about 3.4x the
// arithmetic of the decompressed cache, on 71x fewer bytes: it turns a memory-bound step into a
// compute-bound one (FlashMLA's "MQA mode", 576/512).

// %%
cell(3);
const dsv2::Config v2 = dsv2::config_preset("deepseek-v2");
const double n_h = double(v2.n_h), d_c = double(v2.d_c), d_R = double(v2.d_R), d_h = double(v2.d_h),
             d_v = double(v2.d_v), d_qk = double(v2.d_qk());
struct Cost {
    const char* form;
    double bytes, macs;
};
const Cost costs[] = {{"naive, decompressed cache", n_h * (d_qk + d_v) * 2, n_h * (d_qk + d_v)},
                      {"naive, up-project each step", (d_c + d_R) * 2, n_h * (d_h + d_v) * d_c + n_h * (d_qk + d_v)},
                      {"absorbed", (d_c + d_R) * 2, n_h * (d_c + d_R + d_c)}};
std::printf("DeepSeek-V2, per cached token and layer:\n  %-28s %10s %12s %10s\n", "form", "bytes", "MACs", "FLOP/byte");
for (const Cost& c : costs) std::printf("  %-28s %10.0f %12.0f %10.1f\n", c.form, c.bytes, c.macs, 2 * c.macs / c.bytes);
std::printf("absorbed per query token (context-independent): %.0f MACs\n", n_h * (d_h + d_v) * d_c);
check(costs[2].macs / costs[0].macs > 3.39 && costs[2].macs / costs[0].macs < 3.41, "absorbed: (576 + 512) / (192 + 128) = 3.4x the MACs");
check(costs[0].bytes / costs[2].bytes > 71 && costs[0].bytes / costs[2].bytes < 71.2, "... on 71x fewer bytes read");
check(2 * costs[2].macs / costs[2].bytes > 200, "absorbed decode: > 200 FLOPs per byte of cache");

// %% [markdown]
// **Which form when.** Prefill has as many queries as keys and is compute-bound: serving engines
// run the naive form there (fewer FLOPs per pair). Decode has one query per sequence and reads
// the whole cache: the absorbed form. `dsv2 demo` and `dsv2 forward --attention naive|absorbed`
// run either; notebook 08 shows that the logits agree.

// %%
cell(4);
#if !defined(__CLING__) && !defined(__CLANG_REPL__)
return nb::finish();
}
#else
nb::finish();
#endif
