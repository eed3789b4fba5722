#include "dsv2/moe.hpp"

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>
#include <stdexcept>

#include "dsv2/layers.hpp"

namespace dsv2 {

std::vector<int64_t> topk_indices(const double* scores, int64_t n, int64_t k, const std::vector<bool>& allowed) {
    std::vector<int64_t> idx;
    idx.reserve(size_t(n));
    for (int64_t i = 0; i < n; ++i)
        if (allowed.empty() || allowed[size_t(i)]) idx.push_back(i);
    if (k > int64_t(idx.size())) throw std::logic_error("topk_indices: k exceeds the candidates");
    // Higher score first; equal scores: lower index first. A NaN ranks last (a strict weak order
    // even for poisoned inputs; the forward pass reports the NaN by name).
    auto key = [&](int64_t i) { return std::isnan(scores[i]) ? -std::numeric_limits<double>::infinity() : scores[i]; };
    auto better = [&](int64_t a, int64_t b) { return key(a) > key(b) || (key(a) == key(b) && a < b); };
    std::partial_sort(idx.begin(), idx.begin() + k, idx.end(), better);
    idx.resize(size_t(k));
    return idx;
}

template <typename S>
Routing<S> route(const Config& cfg, MatCRef<S> x, MatCRef<S> E) {
    const int64_t T = x.rows();
    Routing<S> r;
    r.logits = linear<S>(x, E);                                                 // [T, N_r]
    r.scores = r.logits;
    softmax_rows<S>(r.scores);                                                  // [T, N_r]
    r.topk_idx.resize(T, cfg.K_r);                                              // [T, K_r]
    r.topk_weight.resize(T, cfg.K_r);                                           // [T, K_r]
    const int64_t per_group = cfg.N_r / cfg.G;
#pragma omp parallel for if (T > 64)
    for (int64_t t = 0; t < T; ++t) {
        const std::vector<double> s(r.scores.row(t).data(), r.scores.row(t).data() + cfg.N_r);
        std::vector<bool> allowed;  // empty: every expert
        if (cfg.topk_method == TopkMethod::group_limited_greedy) {
            std::vector<double> group_score(static_cast<size_t>(cfg.G));
            for (int64_t g = 0; g < cfg.G; ++g)
                group_score[size_t(g)] = *std::max_element(s.begin() + g * per_group, s.begin() + (g + 1) * per_group);
            allowed.assign(size_t(cfg.N_r), false);
            for (int64_t g : topk_indices(group_score.data(), cfg.G, cfg.G_k))
                std::fill(allowed.begin() + g * per_group, allowed.begin() + (g + 1) * per_group, true);
        }
        const std::vector<int64_t> chosen = topk_indices(s.data(), cfg.N_r, cfg.K_r, allowed);
        S sum = 0;
        for (int64_t k = 0; k < cfg.K_r; ++k) {
            r.topk_idx(t, k) = int32_t(chosen[size_t(k)]);
            r.topk_weight(t, k) = r.scores(t, chosen[size_t(k)]);
            sum += r.topk_weight(t, k);
        }
        if (cfg.K_r > 1 && cfg.norm_topk_prob)
            r.topk_weight.row(t) /= (sum + S(1e-20));
        else
            r.topk_weight.row(t) *= S(cfg.routed_scaling_factor);
    }
    return r;
}

template <typename S>
Mat<S> moe_forward(const Config& cfg, const Weights<S>& w, int64_t l, MatCRef<S> x, Trace* trace) {
    const std::string p = layer_prefix(l) + "mlp.";
    const int64_t T = x.rows();
    const Routing<S> r = route<S>(cfg, x, w.mat(p + "gate.weight"));
    capture(trace, iname(l, "moe.router_logits"), r.logits);
    capture(trace, iname(l, "moe.scores"), r.scores);
    capture(trace, iname(l, "moe.topk_idx"), r.topk_idx, /*integer=*/true);
    capture(trace, iname(l, "moe.topk_weight"), r.topk_weight);

    // Dispatch: the (token, rank) slots each expert serves, in token order.
    std::vector<std::vector<int64_t>> slots(size_t(cfg.N_r));
    for (int64_t t = 0; t < T; ++t)
        for (int64_t k = 0; k < cfg.K_r; ++k) slots[size_t(r.topk_idx(t, k))].push_back(t * cfg.K_r + k);

    // The weights of the experts that serve a token, looked up by name once, before the loop.
    struct Expert {
        const Mat<S>*gate = nullptr, *up = nullptr, *down = nullptr;
    };
    std::vector<Expert> experts(size_t(cfg.N_r));
    for (int64_t e = 0; e < cfg.N_r; ++e)
        if (!slots[size_t(e)].empty()) {
            const std::string ep = p + "experts." + std::to_string(e) + ".";
            experts[size_t(e)] = {&w.mat(ep + "gate_proj.weight"), &w.mat(ep + "up_proj.weight"), &w.mat(ep + "down_proj.weight")};
        }

    // Experts: one SwiGLU over the gathered rows of each expert.
    Mat<S> y(T * cfg.K_r, cfg.d);                                               // [T·K_r, d], row = slot
#pragma omp parallel for schedule(dynamic)
    for (int64_t e = 0; e < cfg.N_r; ++e) {
        const std::vector<int64_t>& mine = slots[size_t(e)];
        if (mine.empty()) continue;
        Mat<S> xe(int64_t(mine.size()), cfg.d);                                 // [n_e, d]
        for (size_t j = 0; j < mine.size(); ++j) xe.row(int64_t(j)) = x.row(mine[j] / cfg.K_r);
        const Expert& ex = experts[size_t(e)];
        const Mat<S> ye = swiglu<S>(xe, *ex.gate, *ex.up, *ex.down);            // [n_e, d]
        for (size_t j = 0; j < mine.size(); ++j) y.row(mine[j]) = ye.row(int64_t(j));
    }
    // Combine: Σ_k g_{t,k} y_{t,k}, in rank order.
    Mat<S> routed = Mat<S>::Zero(T, cfg.d);                                     // [T, d]
    for (int64_t t = 0; t < T; ++t)
        for (int64_t k = 0; k < cfg.K_r; ++k) routed.row(t) += r.topk_weight(t, k) * y.row(t * cfg.K_r + k);
    capture(trace, iname(l, "moe.routed"), routed);

    Mat<S> out = routed;
    if (cfg.N_s > 0) {
        const std::string sp = p + "shared_experts.";
        const Mat<S> shared = swiglu<S>(x, w.mat(sp + "gate_proj.weight"), w.mat(sp + "up_proj.weight"),
                                        w.mat(sp + "down_proj.weight"));        // [T, d]
        capture(trace, iname(l, "moe.shared"), shared);
        out += shared;
    }
    capture(trace, iname(l, "moe.out"), out);
    return out;
}

template <typename S>
Mat<S> dense_mlp_forward(const Config&, const Weights<S>& w, int64_t l, MatCRef<S> x, Trace* trace) {
    const std::string p = layer_prefix(l) + "mlp.";
    Mat<S> out = swiglu<S>(x, w.mat(p + "gate_proj.weight"), w.mat(p + "up_proj.weight"),
                           w.mat(p + "down_proj.weight"));                      // [T, d]
    capture(trace, iname(l, "mlp.out"), out);
    return out;
}

RoutingStats routing_stats(const IdxMat& topk_idx, const Mat<double>& scores, int64_t K_r, int64_t D, int64_t M) {
    RoutingStats st;
    st.T = topk_idx.rows();
    st.N_r = scores.cols();
    st.K_r = K_r;
    st.D = D;
    st.M = M;
    if (D < 1 || st.N_r % D != 0) throw std::invalid_argument("routing_stats: D must divide N_r");
    if (M < 1 || M > D) throw std::invalid_argument("routing_stats: M must be in [1, D]");
    if (st.T == 0) return st;
    const int64_t per_dev = st.N_r / D;
    const double T = double(st.T);
    st.load.assign(size_t(st.N_r), 0);
    st.f.assign(size_t(st.N_r), 0.0);
    st.P.assign(size_t(st.N_r), 0.0);
    st.f_dev.assign(size_t(D), 0.0);
    st.P_dev.assign(size_t(D), 0.0);
    st.f_comm.assign(size_t(D), 0.0);
    for (int64_t t = 0; t < st.T; ++t) {
        std::vector<bool> sent(size_t(D), false);
        for (int64_t k = 0; k < topk_idx.cols(); ++k) {
            const int64_t e = topk_idx(t, k);
            st.load[size_t(e)] += 1;
            sent[size_t(e / per_dev)] = true;
        }
        for (int64_t i = 0; i < D; ++i) st.f_comm[size_t(i)] += sent[size_t(i)] ? 1.0 : 0.0;
    }
    for (int64_t e = 0; e < st.N_r; ++e) {
        st.f[size_t(e)] = double(st.N_r) / (double(K_r) * T) * double(st.load[size_t(e)]);
        st.P[size_t(e)] = scores.col(e).sum() / T;
        st.expert_balance += st.f[size_t(e)] * st.P[size_t(e)];
        st.f_dev[size_t(e / per_dev)] += st.f[size_t(e)] / double(per_dev);
        st.P_dev[size_t(e / per_dev)] += st.P[size_t(e)];
    }
    for (int64_t i = 0; i < D; ++i) {
        st.f_comm[size_t(i)] *= double(D) / (double(M) * T);
        st.device_balance += st.f_dev[size_t(i)] * st.P_dev[size_t(i)];
        st.comm_balance += st.f_comm[size_t(i)] * st.P_dev[size_t(i)];
    }
    return st;
}

#define DSV2_INSTANTIATE(S)                                                                         \
    template Routing<S> route<S>(const Config&, MatCRef<S>, MatCRef<S>);                            \
    template Mat<S> moe_forward<S>(const Config&, const Weights<S>&, int64_t, MatCRef<S>, Trace*);  \
    template Mat<S> dense_mlp_forward<S>(const Config&, const Weights<S>&, int64_t, MatCRef<S>, Trace*);
DSV2_INSTANTIATE(float)
DSV2_INSTANTIATE(double)

}  // namespace dsv2
