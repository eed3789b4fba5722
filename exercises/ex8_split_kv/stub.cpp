// ex8 — split-KV log-sum-exp combine. Write your solution here, then: make exercise N=8
#include <stdexcept>

#include "ex8.hpp"

namespace ex8 {

Partial attend_chunk(const dsv2::RowVec<double>& s, const dsv2::Mat<double>& V) {
    (void)s, (void)V;
    throw std::runtime_error("TODO(ex8): attend_chunk — a stable softmax over the chunk, its output and its log-sum-exp");
}

Partial combine(const std::vector<Partial>& parts) {
    (void)parts;
    throw std::runtime_error("TODO(ex8): combine — weight each chunk by exp(lse_c - lse)");
}

}  // namespace ex8
