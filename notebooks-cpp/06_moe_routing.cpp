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
// # 06 — DeepSeekMoE: routing, shared experts, group-limited routing
//
// A DeepSeekMoE layer (§2.2.1 of the paper) replaces the FFN with many small experts:
//
// $$h'_t = u_t + \sum_{i=1}^{N_s} \mathrm{FFN}^{(s)}_i(u_t) + \sum_{i=1}^{N_r} g_{i,t}\, \mathrm{FFN}^{(r)}_i(u_t),$$
// $$g_{i,t} = \begin{cases} s_{i,t} & s_{i,t} \in \mathrm{Topk}(\{s_{j,t}\}, K_r) \\ 0 & \text{otherwise} \end{cases},
// \qquad s_{i,t} = \mathrm{Softmax}_i(u_t^\top e_i).$$
//
// $N_s$ shared experts see every token; each token picks $K_r$ of $N_r$ routed experts. In
// DeepSeek-V2 (236B): $N_s = 2$, $N_r = 160$, $K_r = 6$, and **device-limited** routing (§2.2.2):
// the 160 experts form $G = 8$ groups (devices) and a token may only use experts of its best
// $G_k = 3$ groups. The gates are the raw softmax scores, times `routed_scaling_factor` = 16
// (V2 does not renormalise them). `dsv2::route` is the router; `dsv2::moe_forward` the layer.

// %%
#include <algorithm>
#include <cstdio>
#include <set>
#include <string>
#include <vector>

#include "dsv2/config.hpp"
#include "dsv2/layers.hpp"
#include "dsv2/moe.hpp"
#include "dsv2/trace.hpp"
#include "dsv2/weights.hpp"
#include "nb.hpp"

using dsv2::Mat;

// Routes rows of hand-made router logits: with E = I the router's logits are x itself.
dsv2::Routing<double> route_logits(const dsv2::Config& c, const Mat<double>& logits) {
    return dsv2::route<double>(c, logits, Mat<double>::Identity(c.N_r, c.N_r));
}

void print_route(const dsv2::Routing<double>& r, int64_t t) {
    std::printf("  token %lld: experts", (long long)t);
    for (Eigen::Index k = 0; k < r.topk_idx.cols(); ++k) std::printf(" %3d", r.topk_idx(t, k));
    std::printf("   gates");
    for (Eigen::Index k = 0; k < r.topk_weight.cols(); ++k) std::printf(" %.4f", r.topk_weight(t, k));
    std::printf("   (sum %.4f)\n", r.topk_weight.row(t).sum());
}

#if !defined(__CLING__) && !defined(__CLANG_REPL__)
int main() {
#endif

// %% [markdown]
// ## 1. The router of the `tiny` preset
//
// 8 routed experts in 4 groups of 2, keep 2 groups, $K_r = 2$, `routed_scaling_factor` = 2 —
// every feature of V2's router, small. Router weights $e_i$ are the rows of `mlp.gate.weight`.

// %%
cell(1);
const dsv2::Config tiny = dsv2::config_preset("tiny");
const dsv2::Weights<double> w = dsv2::random_weights<double>(tiny, 5);
const std::string mlp = dsv2::layer_prefix(1) + "mlp.";
const Mat<double> u = nb::randn(6, tiny.d, 1);                                    // [T, d] = ffn_norm output
const dsv2::Routing<double> r = dsv2::route<double>(tiny, u, w.mat(mlp + "gate.weight"));
nb::show("scores s_{i,t} = softmax(u e)", r.scores, 3, 8);
for (int64_t t = 0; t < 6; ++t) print_route(r, t);
bool gates_ok = true, sums_ok = true;
for (int64_t t = 0; t < 6; ++t) {
    for (int64_t k = 0; k < tiny.K_r; ++k)
        gates_ok = gates_ok && std::abs(r.topk_weight(t, k) - 2.0 * r.scores(t, r.topk_idx(t, k))) < 1e-15;
    sums_ok = sums_ok && std::abs(r.scores.row(t).sum() - 1.0) < 1e-14 && r.topk_weight.row(t).sum() < 2.0;
}
check(gates_ok, "gate = softmax score of the chosen expert x routed_scaling_factor (2)");
check(sums_ok, "scores sum to 1 over all experts; the gates are not renormalised (sum < 2)");

// %% [markdown]
// ## 2. The tie rule
//
// Equal scores are ranked by expert index, lower first — the rule the CUDA router must share,
// or the two will pick different experts on ties (which do happen: bf16 scores, or identical
// tokens). Same rule for groups. `dsv2::topk_indices` is the ranking.

// %%
cell(2);
dsv2::Config greedy = tiny;
greedy.topk_method = dsv2::TopkMethod::greedy;
Mat<double> tie_logits(2, 8);
tie_logits << 0, 0, 0, 0, 0, 0, 0, 0,     // all equal
              1, 3, 3, 0, 3, 0, 0, 0;     // a three-way tie at the top
const dsv2::Routing<double> rt = route_logits(greedy, tie_logits);
print_route(rt, 0);
print_route(rt, 1);
const double s4[] = {0.2, 0.5, 0.5, 0.5};
const std::vector<int64_t> top2 = dsv2::topk_indices(s4, 4, 2);
std::printf("topk_indices({0.2, 0.5, 0.5, 0.5}, k = 2) = {%lld, %lld}\n", (long long)top2[0], (long long)top2[1]);
check(rt.topk_idx(0, 0) == 0 && rt.topk_idx(0, 1) == 1, "all scores equal: experts 0 and 1");
check(rt.topk_idx(1, 0) == 1 && rt.topk_idx(1, 1) == 2, "three-way tie for first: the two lowest indices, in order");
check(top2 == std::vector<int64_t>({1, 2}), "topk_indices breaks ties by the lower index");

// %% [markdown]
// ## 3. Group-limited (device-limited) routing
//
// First a hand-made token: expert 0 scores best, expert 2 second, expert 1 last but one. With
// one group kept, expert 2 (group 1) is out of reach and the token takes expert 1 from its best
// group. Then DeepSeek-V2's real shape, 160 experts in 8 groups, 3 kept, 6 chosen, on 400 random
// tokens: every token's experts lie in at most 3 groups, and some tokens lose an expert that
// plain top-6 would have picked. With $G = G_k = 1$ the restriction vanishes.

// %%
cell(3);
dsv2::Config one_group = tiny;
one_group.G_k = 1;
Mat<double> hand(1, 8);
hand << 5.0, 0.5, 4.9, 0.0, 0.0, 0.0, 0.0, 0.0;
const dsv2::Routing<double> rg = route_logits(greedy, hand), rl = route_logits(one_group, hand);
std::printf("greedy:            ");
print_route(rg, 0);
std::printf("group-limited G_k=1:");
print_route(rl, 0);
check(rg.topk_idx(0, 1) == 2 && rl.topk_idx(0, 1) == 1, "keeping one group replaces expert 2 (group 1) by expert 1 (group 0)");

const dsv2::Config v2 = dsv2::config_preset("deepseek-v2");
dsv2::Config v2_greedy = v2, v2_one = v2;
v2_greedy.topk_method = dsv2::TopkMethod::greedy;
v2_one.G = 1, v2_one.G_k = 1;
const Mat<double> logits_v2 = 2.0 * nb::randn(400, v2.N_r, 2);
const dsv2::Routing<double> a = route_logits(v2, logits_v2), b = route_logits(v2_greedy, logits_v2),
                            c1 = route_logits(v2_one, logits_v2);
int differ = 0, max_groups = 0;
for (int64_t t = 0; t < 400; ++t) {
    std::set<int> ga(a.topk_idx.row(t).data(), a.topk_idx.row(t).data() + v2.K_r);
    std::set<int> groups;
    for (int e : ga) groups.insert(e / int(v2.N_r / v2.G));
    max_groups = std::max(max_groups, int(groups.size()));
    differ += a.topk_idx.row(t) != b.topk_idx.row(t) ? 1 : 0;
}
std::printf("V2 router, 400 tokens: at most %d groups per token; %d tokens (%.0f%%) route differently from plain top-6\n",
            max_groups, differ, 100.0 * differ / 400.0);
check(max_groups <= 3, "V2: every token's 6 experts lie in at most G_k = 3 of the 8 groups");
check(differ > 0, "group-limited routing really restricts some tokens");
check(c1.topk_idx == b.topk_idx, "G = G_k = 1 is plain top-K");

// %% [markdown]
// ## 4. The MoE layer: shared + routed experts
//
// `dsv2::moe_forward` groups tokens by expert, runs each expert's SwiGLU once over its rows, and
// sums $g_{i,t} \mathrm{FFN}_i(u_t)$ back per token; the shared experts (stored as one SwiGLU of
// width $N_s d_e$) see every token. Below, token 0 is recomputed by hand from the weights.

// %%
cell(4);
dsv2::Trace trace;
const Mat<double> moe_out = dsv2::moe_forward<double>(tiny, w, 1, u, &trace);
const Mat<double>& shared = trace.at("layers.1.moe.shared").data;
const Mat<double>& routed = trace.at("layers.1.moe.routed").data;
Mat<double> by_hand = dsv2::swiglu<double>(u.topRows(1), w.mat(mlp + "shared_experts.gate_proj.weight"),
                                           w.mat(mlp + "shared_experts.up_proj.weight"),
                                           w.mat(mlp + "shared_experts.down_proj.weight"));
for (int64_t k = 0; k < tiny.K_r; ++k) {
    const std::string e = mlp + "experts." + std::to_string(r.topk_idx(0, k)) + ".";
    by_hand += r.topk_weight(0, k) * dsv2::swiglu<double>(u.topRows(1), w.mat(e + "gate_proj.weight"),
                                                          w.mat(e + "up_proj.weight"), w.mat(e + "down_proj.weight"));
}
std::printf("trace: moe.router_logits, moe.scores, moe.topk_idx, moe.topk_weight, moe.shared, moe.routed, moe.out\n");
std::printf("token 0: |shared| = %.4f, |routed| = %.4f, |out| = %.4f\n", shared.row(0).norm(), routed.row(0).norm(), moe_out.row(0).norm());
check(nb::rel_err(moe_out, shared + routed) < 1e-15, "moe.out = moe.shared + moe.routed");
check(nb::rel_err(moe_out.topRows(1), by_hand) < 1e-14, "token 0 = shared SwiGLU + sum_k g_k SwiGLU_{e_k}, by hand");
check((trace.at("layers.1.moe.topk_idx").data.cast<int>().array() == r.topk_idx.array()).all(),
      "moe.topk_idx is the router's choice");

// %% [markdown]
// ## 5. Sparse activation: total and activated parameters
//
// Each token uses its $N_s$ shared experts and $K_r$ of the $N_r$ routed ones.
// `dsv2::count_params` gives the paper's 236B total and 21B activated for V2 (20.85B without the
// embedding table, which is a lookup), and 15.7B / 2.4B for V2-Lite.

// %%
cell(5);
for (const char* name : {"deepseek-v2", "deepseek-v2-lite"}) {
    const dsv2::Config c = dsv2::config_preset(name);
    const dsv2::ParamCount pc = dsv2::count_params(c);
    std::printf("%-17s total %7.2fB  activated %6.2fB (%.1f%%)  experts per token: %lld shared + %lld of %lld routed\n", name,
                double(pc.total) / 1e9, double(pc.activated) / 1e9, 100.0 * double(pc.activated) / double(pc.total),
                (long long)c.N_s, (long long)c.K_r, (long long)c.N_r);
}
const dsv2::ParamCount p2 = dsv2::count_params(v2);
check(std::lround(double(p2.total) / 1e7) == 23574 && std::lround(double(p2.activated) / 1e7) == 2085,
      "V2: 235.74B total, 20.85B activated per token");

// %%
cell(6);
#if !defined(__CLING__) && !defined(__CLANG_REPL__)
return nb::finish();
}
#else
nb::finish();
#endif
