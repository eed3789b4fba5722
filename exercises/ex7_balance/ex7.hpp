// ex7 — the balance statistics of DeepSeekMoE. Do not change this file.
#pragma once

#include <cstdint>
#include <vector>

#include "dsv2/tensor.hpp"

namespace ex7 {

struct Balance {
    std::vector<int64_t> load;  ///< [N_r] tokens sent to each expert
    double expert = 0;          ///< Σ_i f_i P_i      (L_ExpBal / α1)
    double device = 0;          ///< Σ_i f'_i P'_i    (L_DevBal / α2)
    double comm = 0;            ///< Σ_i f''_i P''_i  (L_CommBal / α3)
};

/// The balance sums of §2.2.3 for T routed tokens, the N_r experts split into D devices of
/// N_r/D contiguous experts, at most M devices per token (see README.md for f, P, f', P', f'').
///   topk_idx [T, K_r], scores [T, N_r] (softmax over the experts) → Balance
Balance balance(const dsv2::IdxMat& topk_idx, const dsv2::Mat<double>& scores, int64_t K_r, int64_t D, int64_t M);

}  // namespace ex7
