// Host-side API of the CUDA MLA path (decode and prefill) over host arrays, callable from plain
// C++ (no CUDA headers): each call uploads, launches (cuda/src/mla.cu, cuda/src/mla_prefill.cu),
// and downloads. The device-pointer level (parameter structs, launchers on a stream) is in
// dsv2/cuda/mla.cuh.
//
// NOT YET RUN ON A GPU: these compile and their tests (tests/cuda/test_cuda_mla.cpp,
// tests/cuda/test_cuda_mla_prefill.cpp) skip without a device; the host logic they use
// (dsv2/engine/paged.hpp, dsv2/engine/prefill.hpp) is tested on the CPU.
//
// bf16 data is passed as uint16_t bit patterns (dsv2::to_bf16 rounds to nearest even).
#pragma once

#include <cstdint>
#include <vector>

#include "dsv2/engine/paged.hpp"
#include "dsv2/engine/prefill.hpp"

namespace dsv2::cuda {

using namespace dsv2::engine;  // the engine's types (layouts, plans, Backend) are the kernels' too

// The decode kernel's shape (kDecodeHeadsPerCta, kDecodeTile, kDecodeMaxWidth, kDecodeMaxLatent)
// is in dsv2/engine/paged.hpp, beside its CPU twin.

/// Interleaved RoPE with YaRN (reproduces dsv2::apply_rope, reference/src/rope.cpp), fp32, with
/// the angle p·θ'_k and its cos/sin in double as in the oracle.
///   x [T, n·d_R] (n heads side by side), positions [T], inv_freq [d_R/2] (dsv2::rope_inv_freq),
///   amplitude (dsv2::rope_amplitude) → rotated copy of x
std::vector<float> rope(const std::vector<float>& x, int T, int n, const std::vector<int64_t>& positions,
                        const std::vector<double>& inv_freq, double amplitude);

/// Writes token rows into the paged cache (reproduces LatentCache::write, reference/src/mla.cpp,
/// on a paged layout; CPU twin: paged_scatter). Row t goes to sequence seq[t], position pos[t]
/// (< that sequence's allocated blocks · block_tokens).
///   cache [num_blocks, block_tokens, d_c + d_R], c_kv [T, d_c] post-norm, k_pe [T, d_R] post-RoPE
void cache_append(std::vector<float>& cache, const PagedLayout& layout, const BlockTable& bt,
                  const std::vector<float>& c_kv, const std::vector<float>& k_pe, const std::vector<int32_t>& seq,
                  const std::vector<int32_t>& pos);
void cache_append(std::vector<uint16_t>& cache_bf16, const PagedLayout& layout, const BlockTable& bt,
                  const std::vector<float>& c_kv, const std::vector<float>& k_pe, const std::vector<int32_t>& seq,
                  const std::vector<int32_t>& pos);

/// Result of a decode step: the attention-weighted latent per head, and its log-sum-exp.
struct DecodeResult {
    std::vector<float> o_latent;  ///< [B, n_h, d_c] = attn.o_latent of the decode token
    std::vector<float> lse;       ///< [B, n_h] natural log of Σ_j exp(σ·score_j); −inf for length 0
    SplitPlan plan;               ///< the schedule that was run
};

/// Absorbed MLA decode over the paged cache (reproduces the attention core of
/// dsv2::mla_attend_absorbed for one query per sequence at position lengths[b] − 1, i.e. over all
/// lengths[b] cached tokens): split kernel (one CTA per work item of make_split_plan) + combine.
/// Zero-length sequences give o = 0, lse = −inf. num_sm ≤ 0: the device's SM count.
///   cache [num_blocks, block_tokens, d_c + d_R], q_abs [B, n_h, d_c], q_pe [B, n_h, d_R]
DecodeResult mla_decode(const std::vector<float>& cache, const PagedLayout& layout, const BlockTable& bt,
                        const std::vector<float>& q_abs, const std::vector<float>& q_pe, int n_h, float sigma,
                        int num_sm = 0);
DecodeResult mla_decode(const std::vector<uint16_t>& cache_bf16, const PagedLayout& layout, const BlockTable& bt,
                        const std::vector<uint16_t>& q_abs_bf16, const std::vector<uint16_t>& q_pe_bf16, int n_h,
                        float sigma, int num_sm = 0);

/// MLA prefill in the non-absorbed multi-head form (cuda/src/mla_prefill.cu; reproduces
/// dsv2::mla_attend_naive for T queries at positions n − T … n − 1; CPU twin
/// mla_prefill_tiled_reference). Layout in dsv2/engine/prefill.hpp:
///   q [T, n_h, d_nope + d_R], k_nope [rows ≥ n, n_h, d_nope], k_pe [rows, d_R], v [rows, n_h, d_v]
///   → o [T, n_h, d_v], lse [T, n_h]
/// o and lse must be sized by the caller; their contents are uploaded as given (so a test can
/// poison them) and every element is overwritten. Rows past n are uploaded but never read.
/// Throws std::invalid_argument naming a bad argument.
void mla_prefill(const PrefillDims& d, const std::vector<float>& q, const std::vector<float>& k_nope,
                 const std::vector<float>& k_pe, const std::vector<float>& v, float sigma, std::vector<float>& o,
                 std::vector<float>& lse, int block_q = kPrefillDefaultBlockQ, int block_k = kPrefillDefaultBlockK);
void mla_prefill(const PrefillDims& d, const std::vector<uint16_t>& q_bf16, const std::vector<uint16_t>& k_nope_bf16,
                 const std::vector<uint16_t>& k_pe_bf16, const std::vector<uint16_t>& v_bf16, float sigma,
                 std::vector<float>& o, std::vector<float>& lse, int block_q = kPrefillDefaultBlockQ,
                 int block_k = kPrefillDefaultBlockK);

}  // namespace dsv2::cuda
