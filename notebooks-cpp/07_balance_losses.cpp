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
// # 07 — Balance losses
//
// A router left alone collapses onto a few experts. DeepSeek-V2 trains with three auxiliary
// losses (§2.2.3 of the paper), over the $T$ tokens of a sequence, with the $N_r$ experts spread
// over $D$ devices $\mathcal{E}_1 … \mathcal{E}_D$ and at most $M$ devices per token:
//
// $$\mathcal{L}_{\mathrm{ExpBal}} = \alpha_1 \sum_{i=1}^{N_r} f_i P_i,\quad
//   f_i = \frac{N_r}{K_r T} \sum_t \mathbb{1}(\text{token } t \text{ selects expert } i),\quad
//   P_i = \frac{1}{T} \sum_t s_{i,t}$$
// $$\mathcal{L}_{\mathrm{DevBal}} = \alpha_2 \sum_{i=1}^{D} f'_i P'_i,\quad
//   f'_i = \frac{1}{|\mathcal{E}_i|} \sum_{j \in \mathcal{E}_i} f_j,\quad P'_i = \sum_{j \in \mathcal{E}_i} P_j$$
// $$\mathcal{L}_{\mathrm{CommBal}} = \alpha_3 \sum_{i=1}^{D} f''_i P''_i,\quad
//   f''_i = \frac{D}{M T} \sum_t \mathbb{1}(\text{token } t \text{ is sent to device } i),\quad P''_i = P'_i$$
//
// `dsv2::routing_stats` computes the loads and the three sums (without the α's). This notebook
// recomputes them with plain loops, then compares a balanced, a collapsed and a real routing.

// %%
#include <cstdio>
#include <vector>

#include "dsv2/config.hpp"
#include "dsv2/moe.hpp"
#include "nb.hpp"

using dsv2::IdxMat;
using dsv2::Mat;

// The three balance sums straight from the equations above, one loop each.
struct Sums {
    double exp_bal = 0, dev_bal = 0, comm_bal = 0;
};
Sums balance_by_hand(const IdxMat& idx, const Mat<double>& s, int64_t K_r, int64_t D, int64_t M) {
    const int64_t T = idx.rows(), N_r = s.cols(), per = N_r / D;
    std::vector<double> f(size_t(N_r), 0.0), P(size_t(N_r), 0.0), fd(size_t(D), 0.0), Pd(size_t(D), 0.0), fc(size_t(D), 0.0);
    for (int64_t t = 0; t < T; ++t) {
        std::vector<bool> sent(size_t(D), false);
        for (int64_t k = 0; k < idx.cols(); ++k) {
            f[size_t(idx(t, k))] += double(N_r) / double(K_r * T);
            sent[size_t(idx(t, k) / per)] = true;
        }
        for (int64_t i = 0; i < D; ++i) fc[size_t(i)] += sent[size_t(i)] ? double(D) / double(M * T) : 0.0;
        for (int64_t i = 0; i < N_r; ++i) P[size_t(i)] += s(t, i) / double(T);
    }
    Sums out;
    for (int64_t i = 0; i < N_r; ++i) {
        out.exp_bal += f[size_t(i)] * P[size_t(i)];
        fd[size_t(i / per)] += f[size_t(i)] / double(per);
        Pd[size_t(i / per)] += P[size_t(i)];
    }
    for (int64_t i = 0; i < D; ++i) out.dev_bal += fd[size_t(i)] * Pd[size_t(i)], out.comm_bal += fc[size_t(i)] * Pd[size_t(i)];
    return out;
}

bool same(const Sums& a, const dsv2::RoutingStats& b) {
    return std::abs(a.exp_bal - b.expert_balance) < 1e-12 && std::abs(a.dev_bal - b.device_balance) < 1e-12 &&
           std::abs(a.comm_bal - b.comm_balance) < 1e-12;
}

void print_stats(const char* what, const dsv2::RoutingStats& st) {
    std::printf("%-10s ExpBal %.4f  DevBal %.4f  CommBal %.4f   load:", what, st.expert_balance, st.device_balance, st.comm_balance);
    for (int64_t l : st.load) std::printf(" %lld", (long long)l);
    std::printf("\n");
}

#if !defined(__CLING__) && !defined(__CLANG_REPL__)
int main() {
#endif

// %% [markdown]
// ## 1. Balanced against collapsed
//
// 1024 tokens, 16 experts on 4 devices, $K_r = 2$, $M = 2$.
// **Balanced:** uniform scores, token $t$ takes experts $2t$ and $2t+1$ (mod 16), so every expert
// serves exactly 128 tokens: $f_i = 1$, $P_i = 1/16$ and $\sum f_i P_i = 1$. Each token's pair
// lies on one device, so $f''_i = 1/2$ and the communication sum is $1/2$.
// **Collapsed:** every token takes experts 0 and 1, with scores 0.45 each: $f_0 = f_1 = N_r/K_r
// = 8$ and $\sum f_i P_i = 8 \cdot 0.9 = 7.2$.

// %%
cell(1);
const int64_t T = 1024, N_r = 16, K_r = 2, D = 4, M = 2;
IdxMat idx_bal(T, K_r), idx_col(T, K_r);
Mat<double> s_bal = Mat<double>::Constant(T, N_r, 1.0 / double(N_r));
Mat<double> s_col = Mat<double>::Constant(T, N_r, 0.1 / double(N_r - 2));
s_col.leftCols(2).setConstant(0.45);
for (int64_t t = 0; t < T; ++t) {
    idx_bal(t, 0) = int32_t((2 * t) % N_r), idx_bal(t, 1) = int32_t((2 * t + 1) % N_r);
    idx_col(t, 0) = 0, idx_col(t, 1) = 1;
}
const dsv2::RoutingStats bal = dsv2::routing_stats(idx_bal, s_bal, K_r, D, M);
const dsv2::RoutingStats col = dsv2::routing_stats(idx_col, s_col, K_r, D, M);
print_stats("balanced", bal);
print_stats("collapsed", col);
check(same(balance_by_hand(idx_bal, s_bal, K_r, D, M), bal) && same(balance_by_hand(idx_col, s_col, K_r, D, M), col),
      "routing_stats = the paper's sums by plain loops");
check(std::abs(bal.expert_balance - 1.0) < 1e-12 && std::abs(bal.device_balance - 1.0) < 1e-12,
      "balanced: expert and device sums are 1");
check(std::abs(bal.comm_balance - 0.5) < 1e-12, "balanced, one device per token: communication sum 1/2");
check(std::abs(col.expert_balance - 7.2) < 1e-12, "collapsed: (N_r / K_r)(P_0 + P_1) = 8 x 0.9 = 7.2");
check(col.f[0] == 8.0 && col.f[2] == 0.0, "collapsed: f_0 = N_r / K_r = 8, f_i = 0 for unused experts");

// %% [markdown]
// ## 2. A real router, then a skewed one
//
// `dsv2::route` with random centroids $e_i$ and random tokens spreads the load (sum near 1).
// Adding the same direction $3 e_0$ to every token — a crude picture of a router that drifts to
// one expert — makes expert 0 and its device take most tokens, and all three sums grow: the
// gradient of $\alpha_1 \sum f_i P_i$ through $P_i$ pushes the scores back.

// %%
cell(2);
dsv2::Config c = dsv2::config_preset("tiny");
c.N_r = N_r, c.K_r = K_r, c.G = 1, c.G_k = 1, c.topk_method = dsv2::TopkMethod::greedy;
const Mat<double> E = 0.5 * nb::randn(N_r, c.d, 1);                                // centroids [N_r, d]
const Mat<double> u = nb::randn(T, c.d, 2) / std::sqrt(double(c.d)) * 4.0;         // tokens [T, d]
const dsv2::Routing<double> r_rand = dsv2::route<double>(c, u, E);
const Mat<double> u_skew = u.rowwise() + 3.0 * E.row(0) / E.row(0).norm();
const dsv2::Routing<double> r_skew = dsv2::route<double>(c, u_skew, E);
const dsv2::RoutingStats st_rand = dsv2::routing_stats(r_rand.topk_idx, r_rand.scores, K_r, D, M);
const dsv2::RoutingStats st_skew = dsv2::routing_stats(r_skew.topk_idx, r_skew.scores, K_r, D, M);
print_stats("random", st_rand);
print_stats("skewed", st_skew);
check(same(balance_by_hand(r_rand.topk_idx, r_rand.scores, K_r, D, M), st_rand), "routing_stats = plain loops on a real routing");
check(st_rand.expert_balance < 1.5, "random router: expert sum near 1");
check(st_skew.expert_balance > st_rand.expert_balance && st_skew.device_balance > st_rand.device_balance &&
      st_skew.comm_balance > st_rand.comm_balance, "skewed router: all three sums grow");
check(st_skew.load[0] > 2 * st_rand.load[0], "skewed router: expert 0 serves more than twice the tokens");

// %% [markdown]
// ## 3. The losses as trained
//
// The paper's DeepSeek-V2 uses $\alpha_1 = 0.003$, $\alpha_2 = 0.05$, $\alpha_3 = 0.02$ (§3.1.2); the
// released config carries only `aux_loss_alpha` = 0.001 (expert level). V2-Lite keeps one device,
// so only the expert-level loss applies (App. B). The α's are small: the losses steer the router
// without outweighing the language-model loss.

// %%
cell(3);
const double a1 = 0.003, a2 = 0.05, a3 = 0.02;
std::printf("%-10s L_ExpBal %.5f  L_DevBal %.5f  L_CommBal %.5f\n", "random", a1 * st_rand.expert_balance,
            a2 * st_rand.device_balance, a3 * st_rand.comm_balance);
std::printf("%-10s L_ExpBal %.5f  L_DevBal %.5f  L_CommBal %.5f\n", "skewed", a1 * st_skew.expert_balance,
            a2 * st_skew.device_balance, a3 * st_skew.comm_balance);
std::printf("config aux_loss_alpha (V2 and Lite): %.3f\n", dsv2::config_preset("deepseek-v2").aux_loss_alpha);
check(dsv2::config_preset("deepseek-v2").aux_loss_alpha == 0.001, "the released configs carry aux_loss_alpha = 0.001");

// %%
cell(4);
#if !defined(__CLING__) && !defined(__CLANG_REPL__)
return nb::finish();
}
#else
nb::finish();
#endif
