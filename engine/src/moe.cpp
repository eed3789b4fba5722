// Host logic of the CUDA MoE path: the router's CPU twin, the dispatch plan, and the CPU twins of
// the gather / combine kernels (see dsv2/engine/moe.hpp). Plain C++, tested on the CPU by
// tests/engine/test_cuda_moe_host.cpp; part of dsv2_engine, which the kernels of cuda/ link.
#include "dsv2/engine/moe.hpp"

#include <algorithm>
#include <cmath>
#include <limits>
#include <stdexcept>
#include <string>

namespace dsv2::engine {

RouterParams router_params(const Config& cfg) {
    RouterParams p;
    p.N_r = int(cfg.N_r), p.K = int(cfg.K_r), p.G = int(cfg.G), p.G_k = int(cfg.G_k);
    p.group_limited = cfg.topk_method == TopkMethod::group_limited_greedy;
    p.norm_topk_prob = cfg.norm_topk_prob;
    p.routed_scaling_factor = float(cfg.routed_scaling_factor);
    p.validate();
    return p;
}

namespace {

[[noreturn]] void bad(const std::string& what) { throw std::invalid_argument(what); }

// (key, index) order of the warp arg-max: higher key first, equal keys lower index first. The
// sentinel (−inf, INT32_MAX) loses to every real candidate, even one whose key is −inf.
constexpr int32_t kNoIndex = std::numeric_limits<int32_t>::max();
inline float rank_key(float s) { return std::isnan(s) ? -std::numeric_limits<float>::infinity() : s; }
inline bool better(float ka, int32_t ia, float kb, int32_t ib) { return ka > kb || (ka == kb && ia < ib); }

// The butterfly of a warp reduction: after the steps xor 16, 8, 4, 2, 1 every lane holds op over
// all 32 lanes, combined in this order (op is commutative, so lanes i and i^off agree).
template <typename T, typename Op>
T butterfly(T (&v)[kRouteWarp], Op op) {
    for (int off = kRouteWarp / 2; off >= 1; off /= 2) {
        T nv[kRouteWarp];
        for (int i = 0; i < kRouteWarp; ++i) nv[i] = op(v[i], v[i ^ off]);
        for (int i = 0; i < kRouteWarp; ++i) v[i] = nv[i];
    }
    return v[0];
}

struct Cand {
    float key;
    int32_t idx;
};
inline Cand pick(Cand a, Cand b) { return better(b.key, b.idx, a.key, a.idx) ? b : a; }

// One round of the warp arg-max over candidates e (lane e % 32 scans its own in ascending order).
template <typename IsCandidate>
Cand warp_argmax(const float* scores, int n, IsCandidate ok) {
    Cand lane[kRouteWarp];
    for (int l = 0; l < kRouteWarp; ++l) {
        Cand best{-std::numeric_limits<float>::infinity(), kNoIndex};
        for (int e = l; e < n; e += kRouteWarp)
            if (ok(e) && better(rank_key(scores[e]), e, best.key, best.idx)) best = {rank_key(scores[e]), e};
        lane[l] = best;
    }
    return butterfly(lane, pick);
}

}  // namespace

void RouterParams::validate() const {
    if (N_r < 1 || N_r > kRouteMaxExperts) bad("RouterParams: N_r must be in [1, 2048], got " + std::to_string(N_r));
    if (K < 1 || K > N_r || K > kRouteMaxTopk)
        bad("RouterParams: K must be in [1, min(N_r, 32)], got " + std::to_string(K));
    if (!std::isfinite(routed_scaling_factor)) bad("RouterParams: routed_scaling_factor must be finite");
    if (group_limited) {
        if (G < 1 || G > kRouteMaxGroups || N_r % G != 0)
            bad("RouterParams: G must be in [1, 32] and divide N_r = " + std::to_string(N_r) + ", got " + std::to_string(G));
        if (G_k < 1 || G_k > G) bad("RouterParams: G_k must be in [1, G], got " + std::to_string(G_k));
        if (K > G_k * (N_r / G)) bad("RouterParams: K exceeds the experts in G_k groups");
    }
}

std::vector<int32_t> warp_topk_reference(const float* scores, int n, int k, const std::vector<bool>& allowed) {
    if (n < 0 || k < 0) bad("warp_topk_reference: n and k must be >= 0");
    if (!allowed.empty() && int(allowed.size()) != n) bad("warp_topk_reference: allowed must have n entries");
    int candidates = 0;
    for (int e = 0; e < n; ++e) candidates += (allowed.empty() || allowed[size_t(e)]) ? 1 : 0;
    if (k > candidates) bad("warp_topk_reference: k exceeds the candidates");
    std::vector<bool> taken(size_t(n), false);
    std::vector<int32_t> out;
    for (int r = 0; r < k; ++r) {
        const Cand c = warp_argmax(scores, n, [&](int e) {
            return !taken[size_t(e)] && (allowed.empty() || allowed[size_t(e)]);
        });
        taken[size_t(c.idx)] = true;
        out.push_back(c.idx);
    }
    return out;
}

void route_reference(const RouterParams& p, const float* logits, int32_t* idx, float* w, float* scores) {
    const int n = p.N_r;
    // Softmax: max (NaN ignored, as fmaxf), e = exp(l − m), strided lane sums + butterfly, s = e / sum.
    float lane_max[kRouteWarp];
    for (int l = 0; l < kRouteWarp; ++l) {
        float m = -std::numeric_limits<float>::infinity();
        for (int e = l; e < n; e += kRouteWarp) m = std::fmax(m, logits[e]);
        lane_max[l] = m;
    }
    const float m = butterfly(lane_max, [](float a, float b) { return std::fmax(a, b); });
    std::vector<float> s(static_cast<size_t>(n));
    float lane_sum[kRouteWarp];
    for (int l = 0; l < kRouteWarp; ++l) {
        float acc = 0.f;
        for (int e = l; e < n; e += kRouteWarp) {
            s[size_t(e)] = std::exp(logits[e] - m);
            acc = acc + s[size_t(e)];
        }
        lane_sum[l] = acc;
    }
    const float sum = butterfly(lane_sum, [](float a, float b) { return a + b; });
    for (int e = 0; e < n; ++e) s[size_t(e)] = s[size_t(e)] / sum;
    if (scores)
        for (int e = 0; e < n; ++e) scores[e] = s[size_t(e)];

    // Group-limited: lane g < G holds the max of group g's scores (NaN ignored: a group of NaN
    // scores has −inf and ranks last, as NaN does in the oracle), G_k rounds of the warp arg-max.
    std::vector<bool> allowed;
    if (p.group_limited) {
        const int per = n / p.G;
        std::vector<float> gmax(static_cast<size_t>(p.G));
        for (int g = 0; g < p.G; ++g) {
            float v = -std::numeric_limits<float>::infinity();
            for (int e = g * per; e < (g + 1) * per; ++e) v = std::fmax(v, s[size_t(e)]);
            gmax[size_t(g)] = v;
        }
        allowed.assign(size_t(n), false);
        for (int32_t g : warp_topk_reference(gmax.data(), p.G, p.G_k))
            for (int e = g * per; e < (g + 1) * per; ++e) allowed[size_t(e)] = true;
    }
    const std::vector<int32_t> chosen = warp_topk_reference(s.data(), n, p.K, allowed);

    // Gates: lane k holds the k-th chosen score; Σ sequential in rank order on every lane.
    float gsum = 0.f;
    for (int k = 0; k < p.K; ++k) gsum = gsum + s[size_t(chosen[size_t(k)])];
    const bool norm = p.norm_topk_prob && p.K > 1;
    for (int k = 0; k < p.K; ++k) {
        const float v = s[size_t(chosen[size_t(k)])];
        idx[k] = chosen[size_t(k)];
        w[k] = norm ? v / (gsum + 1e-20f) : v * p.routed_scaling_factor;
    }
}

bool within_ulps(float a, float b, int ulps) {
    if (a == b) return true;
    if (std::isnan(a) || std::isnan(b) || std::isinf(a) || std::isinf(b)) return false;
    const float m = std::max(std::abs(a), std::abs(b));
    const float ulp = std::nextafter(m, std::numeric_limits<float>::infinity()) - m;
    return double(std::abs(a - b)) <= double(ulps) * double(ulp);
}

RouteAgreement compare_routes(const RouterParams& p, const float* scores, const int32_t* idx_ref, const float* w_ref,
                              const int32_t* idx_got, const float* w_got, int64_t T, int ulps) {
    RouteAgreement a;
    a.tokens = T;
    const int K = p.K, N = p.N_r;
    for (int64_t t = 0; t < T; ++t) {
        const int32_t* r = idx_ref + t * K;
        const int32_t* g = idx_got + t * K;
        const float* s = scores + t * N;
        std::string why;
        bool same = true;
        for (int k = 0; k < K && why.empty(); ++k) {
            if (g[k] < 0 || g[k] >= N) why = "rank " + std::to_string(k) + " holds " + std::to_string(g[k]) + ", outside [0, N_r)";
            for (int j = 0; j < k && why.empty(); ++j)
                if (g[j] == g[k]) why = "expert " + std::to_string(g[k]) + " chosen twice";
            if (!why.empty() || g[k] == r[k]) continue;
            same = false;
            if (!within_ulps(s[g[k]], s[r[k]], ulps))
                why = "rank " + std::to_string(k) + ": expert " + std::to_string(g[k]) + " (twin score " +
                      std::to_string(s[g[k]]) + ") for " + std::to_string(r[k]) + " (" + std::to_string(s[r[k]]) +
                      "), not within " + std::to_string(ulps) + " ulp";
        }
        if (!why.empty()) {
            if (a.wrong++ == 0) a.first_wrong = t, a.first_wrong_why = "token " + std::to_string(t) + ": " + why;
            continue;
        }
        if (!same) {
            ++a.near_tie;
            continue;
        }
        ++a.exact;
        for (int k = 0; k < K; ++k) {
            const double x = w_got[t * K + k], y = w_ref[t * K + k];
            if (std::isnan(x) != std::isnan(y)) a.max_gate_rel = std::numeric_limits<double>::infinity();
            else if (!std::isnan(y)) a.max_gate_rel = std::max(a.max_gate_rel, std::abs(x - y) / std::max(std::abs(y), 1e-30));
        }
    }
    return a;
}

DispatchPlan make_dispatch_plan(const int32_t* topk_idx, int64_t T, int64_t K, int64_t N_r) {
    if (T < 0) bad("make_dispatch_plan: T must be >= 0, got " + std::to_string(T));
    if (K < 1) bad("make_dispatch_plan: K must be >= 1, got " + std::to_string(K));
    if (N_r < 1 || N_r > std::numeric_limits<int32_t>::max())
        bad("make_dispatch_plan: N_r must be in [1, 2^31), got " + std::to_string(N_r));
    if (T * K > std::numeric_limits<int32_t>::max()) bad("make_dispatch_plan: T·K must fit in int32");
    if (T > 0 && !topk_idx) bad("make_dispatch_plan: topk_idx is null");
    DispatchPlan p;
    p.T = T, p.K = K, p.N_r = N_r;
    const int64_t n = T * K;
    p.counts.assign(size_t(N_r), 0);
    for (int64_t slot = 0; slot < n; ++slot) {
        const int32_t e = topk_idx[slot];
        if (e < 0 || e >= N_r)
            bad("make_dispatch_plan: topk_idx of token " + std::to_string(slot / K) + ", rank " + std::to_string(slot % K) +
                " is " + std::to_string(e) + ", outside [0, " + std::to_string(N_r) + ")");
        ++p.counts[size_t(e)];
    }
    p.offsets.assign(size_t(N_r) + 1, 0);
    for (int64_t e = 0; e < N_r; ++e) p.offsets[size_t(e) + 1] = p.offsets[size_t(e)] + p.counts[size_t(e)];
    // Counting sort: stable, so each expert's slots stay in ascending slot (token, rank) order.
    std::vector<int32_t> cursor(p.offsets.begin(), p.offsets.end() - 1);
    p.slots.assign(size_t(n), -1);
    p.row_of_slot.assign(size_t(n), -1);
    for (int64_t slot = 0; slot < n; ++slot) {
        const int32_t row = cursor[size_t(topk_idx[slot])]++;
        p.slots[size_t(row)] = int32_t(slot);
        p.row_of_slot[size_t(slot)] = row;
    }
    return p;
}

template <typename R>
std::vector<R> moe_gather_reference(const DispatchPlan& plan, const std::vector<R>& x, int64_t d) {
    if (d < 1) bad("moe_gather_reference: d must be >= 1");
    if (int64_t(x.size()) != plan.T * d) bad("moe_gather_reference: x must be [T, d]");
    const int64_t n = plan.T * plan.K;
    std::vector<R> g(size_t(n * d));
    for (int64_t r = 0; r < n; ++r) {
        const int64_t t = plan.slots[size_t(r)] / plan.K;
        for (int64_t c = 0; c < d; ++c) g[size_t(r * d + c)] = x[size_t(t * d + c)];
    }
    return g;
}

template <typename R>
std::vector<R> moe_combine_reference(const DispatchPlan& plan, const std::vector<R>& y, const std::vector<R>& w,
                                     const std::vector<R>& shared, int64_t d) {
    if (d < 1) bad("moe_combine_reference: d must be >= 1");
    const int64_t T = plan.T, K = plan.K;
    if (int64_t(y.size()) != T * K * d) bad("moe_combine_reference: y must be [T·K, d]");
    if (int64_t(w.size()) != T * K) bad("moe_combine_reference: w must be [T, K]");
    if (!shared.empty() && int64_t(shared.size()) != T * d) bad("moe_combine_reference: shared must be [T, d] or empty");
    std::vector<R> out(size_t(T * d));
    for (int64_t t = 0; t < T; ++t)
        for (int64_t c = 0; c < d; ++c) {
            R acc = 0;
            for (int64_t k = 0; k < K; ++k) {
                const int64_t row = plan.row_of_slot[size_t(t * K + k)];
                acc = std::fma(w[size_t(t * K + k)], y[size_t(row * d + c)], acc);
            }
            if (!shared.empty()) acc = acc + shared[size_t(t * d + c)];
            out[size_t(t * d + c)] = acc;
        }
    return out;
}

template std::vector<float> moe_gather_reference<float>(const DispatchPlan&, const std::vector<float>&, int64_t);
template std::vector<double> moe_gather_reference<double>(const DispatchPlan&, const std::vector<double>&, int64_t);
template std::vector<float> moe_combine_reference<float>(const DispatchPlan&, const std::vector<float>&,
                                                         const std::vector<float>&, const std::vector<float>&, int64_t);
template std::vector<double> moe_combine_reference<double>(const DispatchPlan&, const std::vector<double>&,
                                                           const std::vector<double>&, const std::vector<double>&, int64_t);

}  // namespace dsv2::engine
