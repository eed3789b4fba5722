// ex6 — group-limited top-k. Write your solution here, then: make exercise N=6
#include <stdexcept>

#include "ex6.hpp"

namespace ex6 {

std::vector<int64_t> group_limited_topk(const std::vector<double>& scores, int64_t G, int64_t G_k, int64_t K) {
    (void)scores, (void)G, (void)G_k, (void)K;
    throw std::runtime_error("TODO(ex6): group_limited_topk — keep the G_k best groups (by max), then top-K inside");
}

}  // namespace ex6
