// ex8 — split-KV attention: partial softmax results of chunks, combined by log-sum-exp.
// Do not change this file.
#pragma once

#include <vector>

#include "dsv2/tensor.hpp"

namespace ex8 {

/// Attention of one query over one chunk of keys.
struct Partial {
    dsv2::RowVec<double> o;  ///< [d_v] Σ_j softmax(s)_j v_j over the chunk (zeros if every s_j = −inf)
    double lse = 0;          ///< log Σ_j exp(s_j) over the chunk (−inf if every s_j = −inf)
};

/// One chunk: scores s [n] (already scaled; −inf = masked), values V [n, d_v] → Partial.
Partial attend_chunk(const dsv2::RowVec<double>& s, const dsv2::Mat<double>& V);

/// Combines the partial results of consecutive chunks into the result over all keys:
/// lse = log Σ_c exp(lse_c), o = Σ_c exp(lse_c − lse) o_c. Every part has the same d_v.
Partial combine(const std::vector<Partial>& parts);

}  // namespace ex8
