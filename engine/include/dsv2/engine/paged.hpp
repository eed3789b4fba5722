// Host logic of the CUDA MLA decode path, in plain C++ (no CUDA headers), so that it is built and
// tested on machines without a GPU (tests/engine/test_paged_cache.cpp, label cpu):
//
//   - the paged latent cache: blocks of `block_tokens` (64) token rows, each row
//     [ĉ^KV (d_c, post-norm) | k^R (d_R, post-RoPE)] = d_c + d_R (576) elements, and a block table
//     per sequence (int32 [B, max_blocks]) mapping a sequence's logical block to a physical block;
//   - the split-KV plan of the decode kernel (which CTA attends to which KV range);
//   - the log-sum-exp combine of the per-split partial results (the CPU twin of the combine
//     kernel), and bf16 rounding helpers.
//
// Plain loop that the paged layout equals (token t of sequence b):
//   block  = block_table[b · max_blocks + t / block_tokens]
//   row    = cache + (block · block_tokens + t % block_tokens) · width
#pragma once

#include <cstddef>
#include <cstdint>
#include <limits>
#include <vector>

#include "dsv2/bf16.hpp"

namespace dsv2::engine {

// The absorbed decode kernel's shape (cuda/src/mla.cu), written once: the kernel and its CPU twin
// (paged_decode_reference, called by HostBackend) include these, so the twin reproduces the
// kernel's grouping of heads and its tiling of the cached tokens exactly.
/// Heads stacked as the rows of one decode CTA's tile (n_h = 128 → 16 head groups).
constexpr int kDecodeHeadsPerCta = 8;
/// Cached tokens per shared-memory tile of the decode kernel (its online softmax steps by these).
constexpr int kDecodeTile = 8;
/// Widest cache row (d_c + d_R) and latent (d_c) the decode kernel accepts.
constexpr int kDecodeMaxWidth = 576;
constexpr int kDecodeMaxLatent = 512;

/// Shape of a paged latent cache: num_blocks × block_tokens rows of `width` = d_c + d_R elements.
struct PagedLayout {
    int block_tokens = 64;  ///< tokens per block (FlashMLA: 64)
    int d_c = 512;          ///< latent width (kv_lora_rank)
    int d_R = 64;           ///< rope key width (qk_rope_head_dim)
    int num_blocks = 0;     ///< physical blocks in the pool

    int width() const { return d_c + d_R; }
    int64_t row_elements() const { return int64_t(width()); }
    int64_t elements() const { return int64_t(num_blocks) * block_tokens * width(); }
    /// Blocks needed to hold `len` tokens.
    int blocks_for(int64_t len) const { return int((len + block_tokens - 1) / block_tokens); }
    void validate() const;  ///< throws std::invalid_argument on a non-positive size
};

/// Block tables of B sequences: int32 [B, max_blocks], row-major; -1 marks an unused entry.
struct BlockTable {
    int B = 0;
    int max_blocks = 0;
    std::vector<int32_t> table;     ///< [B, max_blocks]
    std::vector<int32_t> lengths;   ///< [B] tokens per sequence

    int32_t at(int b, int logical_block) const { return table[size_t(b) * size_t(max_blocks) + size_t(logical_block)]; }
};

/// Allocates physical blocks for sequences of the given lengths. Blocks are numbered
/// 0 … Σ blocks_for(len) − 1; with shuffle_seed ≠ 0 the assignment is a random permutation
/// (seeded, deterministic), otherwise sequence-major in order. max_blocks = the largest need
/// (at least 1). Returns the table; `layout.num_blocks` is set to the blocks used.
BlockTable allocate_block_table(const std::vector<int32_t>& lengths, PagedLayout& layout, uint64_t shuffle_seed = 0);

/// Where token t of sequence b lives. Throws std::out_of_range when t ∉ [0, lengths[b]).
struct Slot {
    int32_t block;   ///< physical block
    int32_t offset;  ///< row within the block
};
Slot token_slot(const PagedLayout& layout, const BlockTable& bt, int b, int64_t t);

/// Element index of the first element of token t of sequence b in the paged buffer.
int64_t token_row_index(const PagedLayout& layout, const BlockTable& bt, int b, int64_t t);

/// Rebuilds sequence b's contiguous rows [lengths[b], width] from a paged buffer. CPU reference
/// of what the kernels read.
template <typename E>
std::vector<E> paged_gather(const PagedLayout& layout, const BlockTable& bt, const std::vector<E>& paged, int b);

/// Writes contiguous rows [n, width] of sequence b at positions [first, first + n) into the paged
/// buffer. CPU reference of the cache-append kernel. Positions must be < lengths[b].
template <typename E>
void paged_scatter(const PagedLayout& layout, const BlockTable& bt, std::vector<E>& paged, int b, int64_t first,
                   const std::vector<E>& rows);

// ---------------------------------------------------------------------------------------------
// Split-KV plan

/// One CTA of the split (partial) decode kernel: heads [head_group·heads_per_group, …) of
/// sequence `batch` over KV positions [kv_begin, kv_end); its partial results go to split slot
/// `split` (a global index: split_offset[batch] + local split number).
struct WorkItem {
    int32_t batch;
    int32_t head_group;
    int32_t split;
    int32_t kv_begin;
    int32_t kv_end;
};

/// The decode schedule. Work items are ordered (batch, local split, head group), a pure function
/// of the inputs (deterministic). A zero-length sequence has no split and no work item.
struct SplitPlan {
    int B = 0;
    int n_head_groups = 0;
    int kv_chunk = 0;                      ///< tokens per split (a multiple of block_tokens)
    std::vector<int32_t> num_splits;       ///< [B] splits per sequence (same for each of its heads)
    std::vector<int32_t> split_offset;     ///< [B + 1] prefix sum of num_splits
    std::vector<WorkItem> items;           ///< one per CTA
    int total_splits() const { return split_offset.empty() ? 0 : split_offset.back(); }
};

/// Splits each sequence's KV range [0, len) into chunks of kv_chunk tokens so that the grid
/// fills the GPU: with total_blocks = Σ blocks_for(len), kv_chunk = block_tokens ·
/// max(1, ⌊total_blocks · n_head_groups / num_sm⌋) (+ capped by max_splits per sequence), which
/// gives ≥ num_sm work items whenever total_blocks · n_head_groups ≥ num_sm (each item spans at
/// least one whole block). max_splits_per_seq ≤ 0 means no cap.
SplitPlan make_split_plan(const std::vector<int32_t>& lengths, int n_head_groups, int num_sm, int block_tokens,
                          int max_splits_per_seq = 0);

// ---------------------------------------------------------------------------------------------
// Log-sum-exp combine

/// Partial results of one (batch, head) over S splits: o_s (normalised within split s, d_c wide,
/// [S, d_c] row-major) and lse_s = log Σ_{j∈split s} exp(score_j) (natural log, of the σ-scaled
/// scores). The combine is
///   m = max_s lse_s,  w_s = exp(lse_s − m),  o = Σ_s w_s o_s / Σ_s w_s,  lse = m + log Σ_s w_s,
/// which equals one softmax over the union of the splits (p_j = exp(score_j − lse)).
/// S = 0 (a zero-length sequence) gives o = 0 and lse = −inf (the log of an empty sum; a later
/// merge then gives it weight exp(−inf) = 0). FlashMLA writes lse = +inf there instead; we do
/// not, so that a further log-sum-exp merge stays correct.
template <typename R>
void lse_combine(const R* o_parts, const R* lse_parts, int S, int d_c, R* o, R* lse);

/// CPU twin of the whole decode (split kernel + combine kernel of cuda/src/mla.cu): the same
/// schedule, the same online softmax over tiles of `tile` tokens read through the block table, the
/// same partial layout, then lse_combine. In R = double it is a second oracle for the GPU path
/// (tests/engine/test_paged_cache.cpp proves it equals dsv2::mla_attend_absorbed); its partials let a GPU
/// test localise a failure to one work item.
///   cache [num_blocks, block_tokens, d_c + d_R], q_abs [B, n_h, d_c], q_pe [B, n_h, d_R]
///   → o_part [total_splits, n_h, d_c], lse_part [total_splits, n_h], o_latent [B, n_h, d_c], lse [B, n_h]
template <typename R>
struct DecodeReference {
    std::vector<R> o_part, lse_part, o_latent, lse;
};
template <typename R>
DecodeReference<R> paged_decode_reference(const PagedLayout& layout, const BlockTable& bt, const std::vector<R>& cache,
                                          const std::vector<R>& q_abs, const std::vector<R>& q_pe, int n_h, R sigma,
                                          const SplitPlan& plan, int heads_per_group, int tile);

}  // namespace dsv2::engine
