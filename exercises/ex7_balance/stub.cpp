// ex7 — the balance statistics. Write your solution here, then: make exercise N=7
#include <stdexcept>

#include "ex7.hpp"

namespace ex7 {

Balance balance(const dsv2::IdxMat& topk_idx, const dsv2::Mat<double>& scores, int64_t K_r, int64_t D, int64_t M) {
    (void)topk_idx, (void)scores, (void)K_r, (void)D, (void)M;
    throw std::runtime_error("TODO(ex7): balance — loads, f_i and P_i, then the expert, device and communication sums");
}

}  // namespace ex7
