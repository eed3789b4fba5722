// Host-array API of the CUDA MoE kernels (cuda/src/moe.cu): upload, launch, download — for the
// per-kernel GPU test (tests/cuda/test_cuda_moe.cpp). The router's shape, its CPU twin and the
// dispatch plan are the engine's (dsv2/engine/moe.hpp). NOT YET RUN ON A GPU.
#pragma once

#include <cstdint>
#include <vector>

#include "dsv2/engine/moe.hpp"

namespace dsv2::cuda {

using engine::DispatchPlan;
using engine::RouterParams;

// uploaded first, so what a kernel does not write keeps its previous (e.g. NaN-poisoned) value.
// NOT YET RUN ON A GPU.

/// moe_route_kernel on T tokens.   logits [T, N_r] fp32 → idx [T, K], w [T, K] (sized by the caller)
void moe_route(const RouterParams& p, const std::vector<float>& logits, int64_t T, std::vector<int32_t>& idx,
               std::vector<float>& w);

/// moe_count_kernel + cub::DeviceScan::ExclusiveSum + moe_place_kernel (which also writes row_of_slot).
/// Throws std::invalid_argument (naming the token and rank) for an index outside [0, N_r).
DispatchPlan moe_dispatch(const std::vector<int32_t>& topk_idx, int64_t T, int64_t K, int64_t N_r);

/// moe_gather_kernel.   x [T, d] → grouped [T·K, d] (sized by the caller)
void moe_gather(const DispatchPlan& plan, const std::vector<float>& x, int64_t d, std::vector<float>& grouped);

/// moe_combine_kernel.   y [T·K, d], w [T, K], shared [T, d] or empty → out [T, d] (sized by the caller)
void moe_combine(const DispatchPlan& plan, const std::vector<float>& y, const std::vector<float>& w,
                 const std::vector<float>& shared, int64_t d, std::vector<float>& out);

}  // namespace dsv2::cuda
