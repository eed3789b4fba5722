// Device-pointer level of the CUDA MLA path (FlashMLA style: one parameter struct per kernel, a
// launcher that validates and launches on a stream). Element type E of the cache, queries and
// keys/values: float or __nv_bfloat16; accumulation is always fp32. NOT YET RUN ON A GPU.
#pragma once

#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cstdint>

#include "dsv2/engine/paged.hpp"
#include "dsv2/engine/prefill.hpp"

namespace dsv2::cuda {

using namespace dsv2::engine;  // the engine's types (layouts, plans, Backend) are the kernels' too

/// In-place interleaved RoPE on x [T, n·d_R] (row stride n·d_R).
struct RopeParams {
    float* x;                  ///< [T, n·d_R]
    const int64_t* positions;  ///< [T]
    const double* inv_freq;    ///< [d_R/2]
    double amplitude;
    int T, n, d_R;
};
void launch_rope(const RopeParams& p, cudaStream_t stream);

/// Row t of [c_kv | k_pe] → cache slot of (seq[t], pos[t]) through the block table.
template <typename E>
struct CacheAppendParams {
    E* cache;                    ///< [num_blocks, block_tokens, d_c + d_R]
    const float* c_kv;           ///< [T, d_c] post-norm
    const float* k_pe;           ///< [T, d_R] post-RoPE
    const int32_t* block_table;  ///< [B, max_blocks]
    const int32_t* seq;          ///< [T]
    const int32_t* pos;          ///< [T]
    int T, d_c, d_R, block_tokens, max_blocks, num_blocks;
};
template <typename E>
void launch_cache_append(const CacheAppendParams<E>& p, cudaStream_t stream);

/// Split-KV absorbed decode + log-sum-exp combine.
template <typename E>
struct MlaDecodeParams {
    const E* cache;               ///< [num_blocks, block_tokens, d_c + d_R]
    const int32_t* block_table;   ///< [B, max_blocks]
    const E* q_abs;               ///< [B, n_h, d_c]
    const E* q_pe;                ///< [B, n_h, d_R]
    const WorkItem* items;        ///< [n_items] (make_split_plan)
    const int32_t* num_splits;    ///< [B]
    const int32_t* split_offset;  ///< [B + 1]
    float* o_part;                ///< [total_splits, n_h, d_c] partial o, normalised within the split
    float* lse_part;              ///< [total_splits, n_h]
    float* o_latent;              ///< [B, n_h, d_c]
    float* lse;                   ///< [B, n_h]
    int B, n_h, d_c, d_R, block_tokens, max_blocks, n_items;
    float sigma;
};
template <typename E>
void launch_mla_decode(const MlaDecodeParams<E>& p, cudaStream_t stream);

/// MLA prefill in the non-absorbed multi-head form (cuda/src/mla_prefill.cu): causal, tiled,
/// online softmax; T new queries at positions n − T … n − 1 against n keys. Layout and the
/// algorithm: dsv2/engine/prefill.hpp (CPU twin mla_prefill_tiled_reference).
/// The launcher throws std::invalid_argument naming the argument (shapes, σ, tile sizes, null
/// pointers, shared memory beyond the device's opt-in limit).
template <typename E>
struct MlaPrefillParams {
    const E* q = nullptr;       ///< [T, n_h, d_nope + d_R] per head [q_nope | q_pe (post-RoPE)]
    const E* k_nope = nullptr;  ///< [≥ n, n_h, d_nope] (decompressed: ĉ W^UKᵀ per head)
    const E* k_pe = nullptr;    ///< [≥ n, d_R] post-RoPE, shared by all heads
    const E* v = nullptr;       ///< [≥ n, n_h, d_v] (decompressed: ĉ W^UVᵀ per head)
    float* o = nullptr;         ///< [T, n_h, d_v]
    float* lse = nullptr;       ///< [T, n_h] natural log-sum-exp of the σ-scaled scores; may be null
    int T = 0, n = 0, n_h = 0, d_nope = 128, d_R = 64, d_v = 128;
    int block_q = kPrefillDefaultBlockQ;  ///< Br: query rows per CTA
    int block_k = kPrefillDefaultBlockK;  ///< Bc: keys per shared-memory tile
    float sigma = 0.f;                    ///< softmax scale (dsv2::softmax_scale); 0 is refused
};
template <typename E>
void launch_mla_prefill(const MlaPrefillParams<E>& p, cudaStream_t stream);

}  // namespace dsv2::cuda
