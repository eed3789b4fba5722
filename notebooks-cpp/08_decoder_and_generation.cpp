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
// # 08 — A whole decoder, and generation through the latent cache
//
// A DeepSeek-V2 decoder layer is
//
// $$h' = h + \mathrm{MLA}(\mathrm{RMSNorm}(h)), \qquad \mathrm{out} = h' + \mathrm{FFN}(\mathrm{RMSNorm}(h')),$$
//
// where the FFN is a dense SwiGLU in the first `first_k_dense_replace` layers and DeepSeekMoE in
// the rest. `dsv2::Model` runs the embedding, the $L$ layers, the final norm and `lm_head`; every
// intermediate goes into a `dsv2::Trace` under a stable name (docs/intermediates.md). Generation
// is one **prefill** call with the prompt, then **decode** calls of one token each; all of them
// append their latent rows to one `dsv2::LatentCache`. The `tiny` preset has random weights, so
// the text it generates is noise — the point is that every path agrees.

// %%
#include <cstdio>
#include <string>
#include <vector>

#include "dsv2/config.hpp"
#include "dsv2/layers.hpp"
#include "dsv2/mla.hpp"
#include "dsv2/model.hpp"
#include "dsv2/trace.hpp"
#include "dsv2/weights.hpp"
#include "nb.hpp"

using dsv2::Mat;

// Greedy generation: prefill `prompt`, then `n` decode steps, each feeding back the argmax token.
// `last_logits` gets the logits after the last token fed.
template <typename S>
std::vector<int32_t> generate(const dsv2::Model<S>& m, const std::vector<int32_t>& prompt, int n, dsv2::AttentionForm form,
                              dsv2::LatentCache<S>& cache, Mat<S>* last_logits = nullptr) {
    Mat<S> logits = m.forward(prompt, cache, form);                                 // [T, V]
    std::vector<int32_t> out;
    for (int i = 0; i < n; ++i) {
        Eigen::Index next;
        logits.row(logits.rows() - 1).maxCoeff(&next);
        out.push_back(int32_t(next));
        logits = m.forward({int32_t(next)}, cache, form);                           // [1, V]
    }
    if (last_logits) *last_logits = logits;
    return out;
}

#if !defined(__CLING__) && !defined(__CLANG_REPL__)
int main() {
#endif

// %% [markdown]
// ## 1. One prefill, and the names of what it computed
//
// The `tiny` preset: 3 layers (layer 0 dense, layers 1–2 MoE), byte-level vocabulary of 256.

// %%
cell(1);
const dsv2::Config cfg = dsv2::config_preset("tiny");
const dsv2::Model<double> model(cfg, dsv2::random_weights<double>(cfg, 0));
const std::string text = "In the beginning";
const std::vector<int32_t> prompt(text.begin(), text.end());                      // bytes as tokens
dsv2::LatentCache<double> cache(cfg);
dsv2::Trace trace;
const Mat<double> logits = model.forward(prompt, cache, dsv2::AttentionForm::absorbed, &trace);   // [T, V]
std::printf("prompt: %zu tokens -> logits [%lld, %lld]; %zu named intermediates\n", prompt.size(),
            (long long)logits.rows(), (long long)logits.cols(), trace.order().size());
for (const std::string& name : trace.order())
    if (name.rfind("layers.2.", 0) != 0)                                          // layer 2 repeats layer 1
        std::printf("  %-28s [%lld, %lld]\n", name.c_str(), (long long)trace.at(name).data.rows(), (long long)trace.at(name).data.cols());
bool names_ok = trace.has("embed") && trace.has("norm") && trace.has("logits") && trace.has("layers.0.mlp.out");
for (int64_t l = 0; l < cfg.L; ++l)
    for (const char* what : {"attn_norm", "attn.c_q", "attn.q_nope", "attn.q_pe", "attn.c_kv", "attn.k_pe", "attn.q_absorbed",
                             "attn.o_latent", "attn.o", "attn.out", "attn_residual", "ffn_norm", "out"})
        names_ok = names_ok && trace.has(dsv2::iname(l, what));
for (int64_t l = 1; l < cfg.L; ++l)
    for (const char* what : {"moe.router_logits", "moe.scores", "moe.topk_idx", "moe.topk_weight", "moe.shared", "moe.routed", "moe.out"})
        names_ok = names_ok && trace.has(dsv2::iname(l, what));
check(names_ok, "every layer records the names of docs/intermediates.md (dense layer 0, MoE layers 1-2)");
check(cache.length() == int64_t(prompt.size()), "the prefill cached one latent row per prompt token");

// %% [markdown]
// ## 2. The block equations hold between the named tensors

// %%
cell(2);
auto T_ = [&](const std::string& n) -> const Mat<double>& { return trace.at(n).data; };
double worst_block = 0;
for (int64_t l = 0; l < cfg.L; ++l) {
    const Mat<double>& h = l == 0 ? T_("embed") : T_(dsv2::iname(l - 1, "out"));
    const Mat<double>& ffn = cfg.is_moe_layer(l) ? T_(dsv2::iname(l, "moe.out")) : T_(dsv2::iname(l, "mlp.out"));
    worst_block = std::max(worst_block, nb::rel_err(T_(dsv2::iname(l, "attn_residual")), h + T_(dsv2::iname(l, "attn.out"))));
    worst_block = std::max(worst_block, nb::rel_err(T_(dsv2::iname(l, "out")), T_(dsv2::iname(l, "attn_residual")) + ffn));
}
const Mat<double> logits_again = dsv2::linear<double>(T_("norm"), model.weights().mat("lm_head.weight"));
std::printf("worst rel err of h' = h + attn.out and out = h' + ffn over the layers: %.1e\n", worst_block);
check(worst_block < 1e-15, "h' = h + attn.out and out = h' + FFN(h') in every layer");
check(nb::rel_err(logits_again, logits) < 1e-15, "logits = norm x lm_head^T");

// %% [markdown]
// ## 3. Generation: prefill, then decode through the cache — naive = absorbed
//
// Greedy decoding of 8 tokens, once with each attention form. Both read the same 40-wide cache
// rows ($d_c + d_R$); the naive form up-projects keys and values from them at every step.
// Then the whole sequence (prompt + generated tokens) in a single prefill: its last logits are
// the last decode step's.

// %%
cell(3);
dsv2::LatentCache<double> cache_abs(cfg), cache_naive(cfg), cache_once(cfg);
Mat<double> last_abs, last_naive;
const std::vector<int32_t> gen_abs = generate(model, prompt, 8, dsv2::AttentionForm::absorbed, cache_abs, &last_abs);
const std::vector<int32_t> gen_naive = generate(model, prompt, 8, dsv2::AttentionForm::naive, cache_naive, &last_naive);
std::printf("generated (absorbed):");
for (int32_t t : gen_abs) std::printf(" %d", t);
std::printf("\ngenerated (naive):   ");
for (int32_t t : gen_naive) std::printf(" %d", t);
std::vector<int32_t> all = prompt;
all.insert(all.end(), gen_abs.begin(), gen_abs.end());                               // every generated token was fed back
const Mat<double> once = model.forward(all, cache_once);
std::printf("\ncache: %lld tokens, %lld elements, %lld bytes (fp64)\n", (long long)cache_abs.length(),
            (long long)cache_abs.elements(), (long long)cache_abs.bytes());
std::printf("rel err: naive vs absorbed %.1e;  decode vs one prefill %.1e\n", nb::rel_err(last_naive, last_abs),
            nb::rel_err(once.bottomRows(1), last_abs));
check(gen_abs == gen_naive, "naive and absorbed generate the same tokens");
check(nb::rel_err(last_naive, last_abs) < 1e-12, "and the same logits (fp64, rel err < 1e-12)");
check(nb::rel_err(once.bottomRows(1), last_abs) < 1e-12, "prefill + 8 decode steps = one prefill of the whole sequence");
check(cache_abs.length() == int64_t(prompt.size()) + 8 && cache_abs.elements() == cfg.L * cache_abs.length() * 40,
      "the cache holds L x tokens rows of d_c + d_R = 40");

// %% [markdown]
// ## 4. fp32 against the fp64 oracle
//
// The default oracle computes in fp32; the fp64 one judges it (the weights are the same values,
// rounded to float). Over the whole model the logits stay within $10^{-5}$.

// %%
cell(4);
const dsv2::Model<float> model32(cfg, dsv2::random_weights<float>(cfg, 0));
dsv2::LatentCache<float> cache32(cfg);
const Mat<float> logits32 = model32.forward(prompt, cache32);
std::printf("fp32 vs fp64 logits: rel err %.2e\n", nb::rel_err(logits32, logits));
check(nb::rel_err(logits32, logits) < 1e-5, "fp32 logits within 1e-5 of fp64");

// %%
cell(5);
#if !defined(__CLING__) && !defined(__CLANG_REPL__)
return nb::finish();
}
#else
nb::finish();
#endif
