// Device-pointer level of the CUDA MoE router and dispatch (cuda/src/moe.cu): one parameter
// struct per kernel and a launcher that validates (std::invalid_argument naming the argument) and
// launches on a stream. fp32 throughout. NOT YET RUN ON A GPU. Host logic and CPU twins:
// dsv2/cuda/moe.hpp.
#pragma once

#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>

#include "dsv2/engine/moe.hpp"

namespace dsv2::cuda {

using namespace dsv2::engine;  // the engine's types (layouts, plans, Backend) are the kernels' too

/// moe_route_kernel: one warp per token.   logits [T, N_r] → topk_idx [T, K], topk_weight [T, K]
/// and, when not null, scores [T, N_r] (the softmax, attn's moe.scores).
struct MoeRouteParams {
    const float* logits;
    int32_t* topk_idx;
    float* topk_weight;
    int64_t T;
    RouterParams router;
    float* scores = nullptr;
};
void launch_moe_route(const MoeRouteParams& p, cudaStream_t stream);

/// moe_count_kernel → cub::DeviceScan::ExclusiveSum → moe_place_kernel. counts and offsets have
/// N_r + 1 entries (counts[N_r] = 0, so offsets[N_r] = the rows placed). Indices outside [0, N_r)
/// are counted nowhere and placed nowhere: the caller checks offsets[N_r] == T·K (the host-array
/// moe_dispatch does, and names the bad token and rank). temp: moe_dispatch_temp_bytes(N_r).
struct MoeDispatchParams {
    const int32_t* topk_idx;  ///< [T, K]
    int32_t* counts;          ///< [N_r + 1]
    int32_t* offsets;         ///< [N_r + 1]
    int32_t* slots;           ///< [T·K] row → slot
    int32_t* row_of_slot;     ///< [T·K] slot → row
    void* temp;
    size_t temp_bytes;
    int64_t T, K, N_r;
};
size_t moe_dispatch_temp_bytes(int64_t N_r);
void launch_moe_dispatch(const MoeDispatchParams& p, cudaStream_t stream);

/// moe_gather_kernel: grouped[r, :] = x[slots[r] / K, :].
struct MoeGatherParams {
    const float* x;        ///< [T, d]
    const int32_t* slots;  ///< [T·K]
    float* grouped;        ///< [T·K, d]
    int64_t T, K, d;
};
void launch_moe_gather(const MoeGatherParams& p, cudaStream_t stream);

/// moe_combine_kernel: out[t, :] = Σ_{k in rank order} w[t, k] · y[row_of_slot[t·K + k], :] (+ shared[t, :]).
struct MoeCombineParams {
    const float* y;                ///< [T·K, d] grouped expert outputs
    const float* w;                ///< [T, K] gates
    const float* shared;           ///< [T, d] shared-expert output, or null
    const int32_t* row_of_slot;    ///< [T·K]
    float* out;                    ///< [T, d]
    int64_t T, K, d;
};
void launch_moe_combine(const MoeCombineParams& p, cudaStream_t stream);

}  // namespace dsv2::cuda
