// ex6 — group-limited top-k: a solution.
#include <algorithm>
#include <numeric>

#include "ex6.hpp"

namespace ex6 {

namespace {
// Indices of `v` restricted to `candidates`, best first (ties: lower index), the first k.
std::vector<int64_t> best(const std::vector<double>& v, std::vector<int64_t> candidates, int64_t k) {
    std::stable_sort(candidates.begin(), candidates.end(), [&](int64_t a, int64_t b) { return v[size_t(a)] > v[size_t(b)]; });
    candidates.resize(size_t(k));
    return candidates;
}
}  // namespace

std::vector<int64_t> group_limited_topk(const std::vector<double>& scores, int64_t G, int64_t G_k, int64_t K) {
    const int64_t N = int64_t(scores.size()), per = N / G;
    std::vector<double> group_score(static_cast<size_t>(G));
    for (int64_t g = 0; g < G; ++g)
        group_score[size_t(g)] = *std::max_element(scores.begin() + g * per, scores.begin() + (g + 1) * per);
    std::vector<int64_t> groups(static_cast<size_t>(G));
    std::iota(groups.begin(), groups.end(), 0);
    std::vector<int64_t> allowed;
    for (int64_t g : best(group_score, groups, G_k))
        for (int64_t e = g * per; e < (g + 1) * per; ++e) allowed.push_back(e);
    std::sort(allowed.begin(), allowed.end());                                     // index order for the ties
    return best(scores, allowed, K);
}

}  // namespace ex6
