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
// # 02 — MHA, GQA, MQA and MLA caches: the paper's Table 1
//
// Table 1 of the DeepSeek-V2 report compares the KV cache per token of four attention
// mechanisms, for $l$ layers:
//
// | mechanism | cache per token | capability |
// |---|---|---|
// | MHA — every head its own key and value | $2 n_h d_h l$ | strong |
// | GQA — $n_g$ groups of heads share a key and a value | $2 n_g d_h l$ | moderate |
// | MQA — all heads share one key and one value | $2 d_h l$ | weak |
// | MLA — one latent $c^{KV}$ and one RoPE key $k^R$ | $(d_c + d_h^R)\, l \approx \tfrac{9}{2} d_h l$ | stronger |
//
// `dsv2::cache_sizes(cfg, n_g)` computes these counts for a config; `dsv2 kv-cache` prints them.
// Here they are for DeepSeek-V2 and V2-Lite, then checked against the cache the oracle really
// fills (`dsv2::LatentCache`).

// %%
#include <cstdio>
#include <string>
#include <vector>

#include "dsv2/cache_sizes.hpp"
#include "dsv2/config.hpp"
#include "dsv2/mla.hpp"
#include "dsv2/model.hpp"
#include "dsv2/weights.hpp"
#include "nb.hpp"

// Prints the four rows of Table 1 (plus the decompressed cache of the Hugging Face code) for one
// config: elements per token and layer, per token, bytes at `context` tokens in bf16, share of MHA.
void print_table(const char* name, const dsv2::Config& c, const dsv2::CacheSizes& s, long long context) {
    struct Row {
        const char* what;
        const char* formula;
        long long elements;
    };
    const std::vector<Row> rows = {{"MHA", "2 n_h d_h L", (long long)s.mha},
                                   {"GQA (8 groups)", "2 n_g d_h L", (long long)s.gqa},
                                   {"MQA", "2 d_h L", (long long)s.mqa},
                                   {"MLA", "(d_c + d_R) L", (long long)s.mla},
                                   {"HF decompressed", "n_h (d_qk + d_v) L", (long long)s.decompressed}};
    std::printf("%s (L = %lld, n_h = %lld, d_h = %lld, d_c = %lld, d_R = %lld), bf16, %lld tokens:\n", name,
                (long long)c.L, (long long)c.n_h, (long long)c.d_h, (long long)c.d_c, (long long)c.d_R, context);
    std::printf("  %-16s %-19s %9s %11s %11s %8s\n", "", "per token", "per layer", "all layers", "at context", "of MHA");
    for (const Row& r : rows)
        std::printf("  %-16s %-19s %9lld %11lld %11s %7.2f%%  %s\n", r.what, r.formula, r.elements / (long long)c.L,
                    r.elements, nb::bytes(2.0 * double(r.elements) * double(context)).c_str(),
                    100.0 * double(r.elements) / double(s.mha), nb::bar(double(r.elements), double(s.mha), 30).c_str());
}

#if !defined(__CLING__) && !defined(__CLANG_REPL__)
int main() {
#endif

// %% [markdown]
// ## 1. Table 1 for DeepSeek-V2 (236B) and V2-Lite (16B)
//
// MLA caches $d_c + d_R = 512 + 64 = 576$ elements per token and layer. With $d_c = 4 d_h$ and
// $d_R = d_h / 2$ that is $\tfrac{9}{2} d_h$: the cache of a GQA with **2.25 groups**, for the
// capability of full MHA. The last row is what the Hugging Face modelling code caches: the
// decompressed per-head keys (192 wide) and values (128) — MLA's math without its memory saving.

// %%
cell(1);
const dsv2::Config v2 = dsv2::config_preset("deepseek-v2");
const dsv2::Config lite = dsv2::config_preset("deepseek-v2-lite");
const dsv2::CacheSizes s2 = dsv2::cache_sizes(v2, 8), sl = dsv2::cache_sizes(lite, 8);
print_table("DeepSeek-V2", v2, s2, 131072);
std::printf("\n");
print_table("DeepSeek-V2-Lite", lite, sl, 131072);
std::printf("\nMLA = GQA with %.2f groups; the HF cache is %.1fx the MLA cache\n", s2.gqa_equivalent_groups,
            double(s2.decompressed) / double(s2.mla));

check(s2.mla == 576 * 60 && sl.mla == 576 * 27, "MLA caches 576 elements per token and layer (34,560 per token for V2, 15,552 for Lite)");
check(2 * s2.mla == 9 * v2.d_h * v2.L, "d_c + d_R = (9/2) d_h: MLA = (9/2) d_h l, as in Table 1");
check(s2.gqa_equivalent_groups == 2.25, "MLA's cache equals GQA's with 2.25 groups");
check(s2.mqa < s2.mla && s2.mla < s2.gqa && s2.gqa < s2.mha, "MQA < MLA < GQA(8) < MHA per token");
check(std::abs(100.0 * double(s2.mla) / double(s2.mha) - 1.7578) < 1e-3, "MLA is 1.76% of V2's MHA cache");
check(s2.decompressed == 128 * (192 + 128) * 60, "the decompressed cache is n_h (d_qk + d_v) = 40,960 per token and layer");

// %% [markdown]
// ## 2. The paper's own numbers
//
// Table 9 of the report lists the KV cache per token of its MLA models as 34.6K (large) and
// 15.6K (small) elements; the counts above round to the same.

// %%
cell(2);
std::printf("V2:   %lld elements per token -> %.1fK\n", (long long)s2.mla, double(s2.mla) / 1000.0);
std::printf("Lite: %lld elements per token -> %.1fK\n", (long long)sl.mla, double(sl.mla) / 1000.0);
check(std::lround(double(s2.mla) / 100.0) == 346 && std::lround(double(sl.mla) / 100.0) == 156,
      "34.6K and 15.6K elements per token, as Table 9");

// %% [markdown]
// ## 3. The oracle's cache holds exactly that
//
// `dsv2::LatentCache` keeps, per layer and token, one row $[\hat c^{KV} \mid k^R]$ and nothing
// else. Run the `tiny` preset ($d_c = 32$, $d_R = 8$, 3 layers) over a 10-token prompt and
// 3 decode steps and count what the cache holds.

// %%
cell(3);
const dsv2::Config tiny = dsv2::config_preset("tiny");
const dsv2::Model<float> model(tiny, dsv2::random_weights<float>(tiny, 0));
dsv2::LatentCache<float> cache(tiny);
model.forward({72, 101, 108, 108, 111, 44, 32, 77, 76, 65}, cache);   // prefill: 10 tokens
for (int32_t tok : {33, 10, 32}) model.forward({tok}, cache);             // 3 decode steps
const dsv2::CacheSizes st = dsv2::cache_sizes(tiny, 2);
std::printf("tiny: %lld tokens cached, %lld elements (%lld per token = (d_c + d_R) L = (%lld + %lld)·%lld), %lld bytes in fp32\n",
            (long long)cache.length(), (long long)cache.elements(), (long long)st.mla, (long long)tiny.d_c,
            (long long)tiny.d_R, (long long)tiny.L, (long long)cache.bytes());
check(cache.length() == 13, "the cache holds the 13 tokens seen so far");
check(cache.elements() == st.mla * 13, "LatentCache holds cache_sizes().mla elements per token, nothing else");
check(cache.bytes() == 4 * cache.elements(), "4 bytes per element in fp32");

// %% [markdown]
// ## 4. Against the context length
//
// The cache grows linearly with the context; the slope is the per-token size above. A picture
// of the same numbers, from `dsv2 kv-cache --json`, is `docs/images/kv_cache_vs_context.png`
// (made by `tools/docs/make_figures.py`).

// %%
cell(4);
std::printf("DeepSeek-V2, bf16, one sequence:\n%10s %12s %12s %12s %12s\n", "context", "MHA", "GQA(8)", "MQA", "MLA");
for (long long ctx : {4096LL, 32768LL, 131072LL})
    std::printf("%10lld %12s %12s %12s %12s\n", ctx, nb::bytes(2.0 * double(s2.mha * ctx)).c_str(),
                nb::bytes(2.0 * double(s2.gqa * ctx)).c_str(), nb::bytes(2.0 * double(s2.mqa * ctx)).c_str(),
                nb::bytes(2.0 * double(s2.mla * ctx)).c_str());
check(2.0 * double(s2.mla) * 131072 < 10e9, "a 128K-token MLA cache of V2 fits in under 10 GB (bf16)");

// %%
cell(5);
#if !defined(__CLING__) && !defined(__CLANG_REPL__)
return nb::finish();
}
#else
nb::finish();
#endif
