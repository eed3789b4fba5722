// ex10 — the split-KV log-sum-exp combine as a CUDA kernel (the twin of ex8). Plain C++
// interface. Do not change this file.
#pragma once

#include <vector>

namespace ex10 {

/// For each of R rows (a query and head), combines the partial results of C chunks of keys:
///   lse_r = log Σ_c exp(lse_{r,c}),   o_r = Σ_c exp(lse_{r,c} − lse_r) o_{r,c}.
/// A chunk with lse = −inf (all keys masked) contributes nothing; a row whose chunks are all
/// −inf gets o = 0 and lse = −inf. fp32 on the GPU.
///   o_part [R, C, d_v] and lse_part [R, C], row-major → *o [R, d_v], *lse [R]
void combine(const std::vector<float>& o_part, const std::vector<float>& lse_part, int R, int C, int d_v,
             std::vector<float>* o, std::vector<float>* lse);

}  // namespace ex10
