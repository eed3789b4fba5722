// ex5 — the router: a solution.
#include <algorithm>
#include <cmath>
#include <numeric>
#include <vector>

#include "ex5.hpp"

namespace ex5 {

Route route(const dsv2::Config& cfg, const dsv2::Mat<double>& x, const dsv2::Mat<double>& E) {
    const int64_t T = x.rows(), N = cfg.N_r, K = cfg.K_r;
    Route r;
    r.scores = x * E.transpose();                                                  // logits [T, N_r]
    r.topk_idx.resize(T, K);
    r.topk_weight.resize(T, K);
    for (int64_t t = 0; t < T; ++t) {
        const double m = r.scores.row(t).maxCoeff();
        r.scores.row(t) = (r.scores.row(t).array() - m).exp().matrix();
        r.scores.row(t) /= r.scores.row(t).sum();
        std::vector<int64_t> idx(static_cast<size_t>(N));
        std::iota(idx.begin(), idx.end(), 0);
        // Higher score first; equal scores: lower index first.
        std::stable_sort(idx.begin(), idx.end(), [&](int64_t a, int64_t b) { return r.scores(t, a) > r.scores(t, b); });
        double sum = 0;
        for (int64_t k = 0; k < K; ++k) {
            r.topk_idx(t, k) = int32_t(idx[size_t(k)]);
            r.topk_weight(t, k) = r.scores(t, idx[size_t(k)]);
            sum += r.topk_weight(t, k);
        }
        if (cfg.norm_topk_prob && K > 1)
            r.topk_weight.row(t) /= (sum + 1e-20);
        else
            r.topk_weight.row(t) *= cfg.routed_scaling_factor;
    }
    return r;
}

}  // namespace ex5
