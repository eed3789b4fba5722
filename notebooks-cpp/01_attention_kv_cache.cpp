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
// # 01 — Attention, and why the KV cache dominates
//
// A decoder generates one token at a time. The new token's query attends to the keys and
// values of **every** earlier token, and those never change, so an inference engine keeps them:
// the KV cache. This notebook
//
// 1. writes one causal attention head by hand and shows that decoding through a cache gives
//    exactly the same outputs as attending over the whole sequence at once;
// 2. measures the cache of a plain multi-head attention (MHA) with DeepSeek-V2's shape
//    (60 layers, 128 heads of 128): bytes per token, and bytes against the context length;
// 3. shows why those bytes, not FLOPs, set the speed of decoding.
//
// The rest of the series shrinks this cache: notebook 02 compares MHA, GQA, MQA and MLA
// (the paper's Table 1), notebooks 03–05 build MLA.

// %%
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <limits>
#include <vector>

#include "dsv2/cache_sizes.hpp"
#include "dsv2/config.hpp"
#include "dsv2/tensor.hpp"
#include "dsv2/weights.hpp"
#include "nb.hpp"

using dsv2::Mat;

// One query over n keys and values: softmax(K q / √d)ᵀ V.
//   q [d], K [n, d], V [n, d_v] → [d_v]
Eigen::RowVectorXd attend(const Eigen::RowVectorXd& q, const Mat<double>& K, const Mat<double>& V) {
    Eigen::VectorXd s = (K * q.transpose()) / std::sqrt(double(q.size()));        // [n]
    s = (s.array() - s.maxCoeff()).exp();
    s /= s.sum();
    return s.transpose() * V;
}

// One causal attention head over T tokens: o_t = Σ_{j ≤ t} softmax_j(q_t·k_j / √d) v_j.
//   Q, K, V [T, d] → O [T, d]
Mat<double> causal_attention(const Mat<double>& Q, const Mat<double>& K, const Mat<double>& V) {
    Mat<double> O(Q.rows(), V.cols());
    for (Eigen::Index t = 0; t < Q.rows(); ++t) O.row(t) = attend(Q.row(t), K.topRows(t + 1), V.topRows(t + 1));
    return O;
}

#if !defined(__CLING__) && !defined(__CLANG_REPL__)
int main() {
#endif

// %% [markdown]
// ## 1. Decoding through a cache is exact
//
// Eight tokens with a head width of 16. First all at once (the causal mask hides the future),
// then one token at a time: each step computes only the new token's q, k, v, **appends** k and
// v to the cache, and attends over the cache. The outputs agree to the last bits — the cache
// loses nothing — but step t reads t + 1 cached keys and values.

// %%
cell(1);
const int T1 = 8, d1 = 16;
const Mat<double> Q1 = nb::randn(T1, d1, 1), K1 = nb::randn(T1, d1, 2), V1 = nb::randn(T1, d1, 3);
const Mat<double> O_all = causal_attention(Q1, K1, V1);                           // [T, d]

Mat<double> k_cache(0, d1), v_cache(0, d1), O_step(T1, d1);
long long cached_reads = 0;
for (int t = 0; t < T1; ++t) {
    k_cache.conservativeResize(t + 1, Eigen::NoChange);                           // append k_t
    v_cache.conservativeResize(t + 1, Eigen::NoChange);                           // append v_t
    k_cache.row(t) = K1.row(t);
    v_cache.row(t) = V1.row(t);
    O_step.row(t) = attend(Q1.row(t), k_cache, v_cache);                         // q_t over the cache
    cached_reads += 2LL * (t + 1) * d1;
}
nb::show("O (all at once)", O_all, 3, 6);
std::printf("decode: %d steps read %lld cached values in all (2·d·Σ(t+1))\n", T1, cached_reads);
check(nb::rel_err(O_step, O_all) < 1e-14, "one token at a time through the cache = all at once (rel err < 1e-14)");
check(cached_reads == 2LL * d1 * T1 * (T1 + 1) / 2, "decoding T tokens reads d·T(T+1) cached values: quadratic in T");

// %% [markdown]
// ## 2. The MHA cache of a DeepSeek-V2-sized model
//
// With plain multi-head attention every layer caches, per token, one key and one value per head:
// $2 n_h d_h$ elements per layer, $2 n_h d_h L$ per token (Table 1 of the paper). For
// DeepSeek-V2's shape ($n_h = 128$, $d_h = 128$, $L = 60$) in bf16 (2 bytes):

// %%
cell(2);
const dsv2::Config v2 = dsv2::config_preset("deepseek-v2");
const dsv2::CacheSizes sizes = dsv2::cache_sizes(v2, 8);
const double mha_bytes_per_token = 2.0 * double(sizes.mha);                    // bf16
const double weight_bytes = double(dsv2::weight_bytes(v2, 2));                  // all 236B parameters, bf16
std::printf("MHA cache: 2 n_h d_h L = 2·%lld·%lld·%lld = %lld elements = %s per token\n", (long long)v2.n_h,
            (long long)v2.d_h, (long long)v2.L, (long long)sizes.mha, nb::bytes(mha_bytes_per_token).c_str());
std::printf("weights:   %s (bf16)\n\n", nb::bytes(weight_bytes).c_str());
const double top = mha_bytes_per_token * 131072.0;
std::printf("%10s  %12s\n", "context", "MHA cache");
for (long long ctx : {1024LL, 4096LL, 16384LL, 32768LL, 65536LL, 131072LL}) {
    const double b = mha_bytes_per_token * double(ctx);
    std::printf("%10lld  %12s  %s\n", ctx, nb::bytes(b).c_str(), nb::bar(b, top, 40).c_str());
}
std::printf("%10s  %12s  %s\n", "weights", nb::bytes(weight_bytes).c_str(), nb::bar(weight_bytes, top, 40).c_str());
const double crossover = weight_bytes / mha_bytes_per_token;
std::printf("\none sequence's MHA cache outgrows all the weights at %.0f tokens\n", crossover);
check(sizes.mha == 2 * 128 * 128 * 60, "MHA caches 2·128·128·60 = 1,966,080 elements per token");
check(mha_bytes_per_token * 131072 > weight_bytes, "at 128K tokens one sequence's MHA cache is larger than the 236B weights");
check(crossover > 100000 && crossover < 131072, "the crossover lies between 100K and 128K tokens");

// %% [markdown]
// ## 3. Decoding is bound by memory traffic
//
// Per decode step and layer, attention reads every cached key and value once and does two
// multiply-adds with each element (q·k and p·v): per cached token
// $4 n_h d_h$ FLOPs against $2 n_h d_h \cdot 2$ bytes — **one FLOP per byte**. A Hopper GPU
// does a few hundred bf16 FLOPs in the time it reads one byte of HBM, so the attention of a
// decode step waits on memory. Batching does not help it: every sequence has its own cache,
// while the weights are read once per step for the whole batch.

// %%
cell(3);
const double flops_per_cached_token = 4.0 * double(v2.n_h * v2.d_h);             // per layer
const double bytes_per_cached_token = 2.0 * double(v2.n_h * v2.d_h) * 2.0;       // per layer, bf16
const double intensity = flops_per_cached_token / bytes_per_cached_token;
std::printf("MHA decode attention: %.0f FLOPs / %.0f bytes per cached token and layer = %.2f FLOP/byte\n",
            flops_per_cached_token, bytes_per_cached_token, intensity);
const dsv2::ParamCount pc = dsv2::count_params(v2);
const double activated_bytes = 2.0 * double(pc.activated);                       // read once per step (bf16)
const long long batch = 64, ctx = 32768;
const double cache_traffic = double(batch) * double(ctx) * mha_bytes_per_token;
std::printf("one decode step, batch %lld at %lld tokens: weights %s, MHA cache %s\n", batch, ctx,
            nb::bytes(activated_bytes).c_str(), nb::bytes(cache_traffic).c_str());
check(intensity == 1.0, "MHA decode attention does exactly 1 FLOP per byte of bf16 cache read");
check(cache_traffic > 100 * activated_bytes, "at batch 64 and 32K context the cache traffic is > 100x the weight traffic");

// %% [markdown]
// **Next:** notebook 02 puts MHA beside GQA, MQA and MLA.

// %%
cell(4);
#if !defined(__CLING__) && !defined(__CLANG_REPL__)
return nb::finish();
}
#else
nb::finish();
#endif
