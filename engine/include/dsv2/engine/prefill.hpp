// Host logic of the CUDA MLA prefill (non-absorbed multi-head form), in plain C++ (no CUDA
// headers), so that it is built and tested on machines without a GPU
// (tests/engine/test_cuda_prefill_host.cpp, label cpu):
//
//   - the shapes and argument checks shared by the CPU reference and the kernel's launcher;
//   - mla_prefill_tiled_reference: the CPU twin of the prefill kernel (cuda/src/mla_prefill.cu),
//     the same tiles, the same online softmax, the same causal tile skipping.
//
// The form (DeepSeek-V2 §2.1, spec §2.2 "naive" path; the oracle is dsv2::mla_attend_naive): per
// head i, with K/V decompressed from the latent by the caller (k_nope_i = W^UK_i ĉ,
// v_i = W^UV_i ĉ, one k_pe shared by all heads),
//   q_{t,i} = [q_nope_{t,i} | q_pe_{t,i}]   (d_nope + d_R = 192 for V2)
//   k_{j,i} = [k_nope_{j,i} | k_pe_j]        (192)
//   o_{t,i} = Σ_{j ≤ p0 + t} softmax_j(σ q_{t,i} · k_{j,i}) v_{j,i}   (d_v = 128)
// for T new queries at absolute positions p0 … p0 + T − 1, p0 = n − T (n keys: a cached prefix of
// n − T tokens followed by the T new ones).
//
// Layout (row-major, element type E of the kernel or R of the reference):
//   q      [T, n_h, d_nope + d_R]   per head [q_nope | q_pe] (q_b_proj's output, post-RoPE q_pe)
//   k_nope [rows, n_h, d_nope]      rows ≥ n; rows past n are never read
//   k_pe   [rows, d_R]              post-RoPE, shared by all heads
//   v      [rows, n_h, d_v]
//   o      [T, n_h, d_v]            (= the oracle's o [T, n_h·d_v])
//   lse    [T, n_h]                 natural log of Σ_j exp(σ q·k_j) over the visible keys
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

namespace dsv2::engine {

/// Tile sizes accepted by the kernel and the reference: 1 … kPrefillMaxTile rows/columns.
constexpr int kPrefillMaxTile = 128;
/// Default tiles of the kernel: Br query rows × Bc key columns per step.
constexpr int kPrefillDefaultBlockQ = 32;
constexpr int kPrefillDefaultBlockK = 32;
/// Threads per CTA of the prefill kernel (4 warps).
constexpr int kPrefillThreads = 128;

/// Shapes of one prefill call.
struct PrefillDims {
    int T = 0;         ///< new query tokens, at positions p0 … p0 + T − 1
    int n = 0;         ///< keys visible to the last query: cached prefix (n − T) + the T new tokens
    int n_h = 0;       ///< heads
    int d_nope = 128;  ///< qk_nope_head_dim (d_h)
    int d_R = 64;      ///< qk_rope_head_dim
    int d_v = 128;     ///< v_head_dim

    int d_qk() const { return d_nope + d_R; }
    int p0() const { return n - T; }  ///< absolute position of query 0
};

/// Throws std::invalid_argument naming the first bad argument: T ≥ 0, n ≥ T (and n ≥ 1 when
/// T ≥ 1), n_h ≥ 1, d_nope ≥ 1, d_R ≥ 0, d_v ≥ 1, σ finite and > 0,
/// block_q and block_k in [1, kPrefillMaxTile].
void check_prefill_args(const PrefillDims& d, double sigma, int block_q, int block_k);

/// Checks the buffer sizes (elements) against the layout above and returns the number of K/V
/// rows they hold (≥ n; rows past n are allowed and never read). Throws std::invalid_argument
/// naming the buffer. Sizes for q and o are exact; k_nope, k_pe and v must hold the same rows.
int64_t check_prefill_sizes(const PrefillDims& d, size_t q, size_t k_nope, size_t k_pe, size_t v);

/// Dynamic shared memory of one kernel CTA (bytes): the fp32 tiles q [Br, d_qk + 1],
/// k [Bc, d_qk + 1], v [Bc, d_v], scores [Br, Bc], accumulator [Br, d_v] and m, l, scale [Br].
size_t prefill_smem_bytes(const PrefillDims& d, int block_q, int block_k);

/// Key tiles a CTA of query tile [q_begin, q_end) visits: keys [0, p0 + q_end) in tiles of
/// block_k; tiles starting past the diagonal (key > p0 + q_end − 1) are skipped.
inline int prefill_key_tiles(const PrefillDims& d, int q_end, int block_k) {
    return (d.p0() + q_end + block_k - 1) / block_k;
}

/// Result of the reference: o [T, n_h, d_v], lse [T, n_h], and the number of (head, query tile,
/// key tile) steps it ran (the kernel runs the same ones).
template <typename R>
struct PrefillReference {
    std::vector<R> o, lse;
    int64_t key_tile_steps = 0;
};

/// CPU twin of the prefill kernel (cuda/src/mla_prefill.cu). For each head h and query tile
/// [t0, t1) of block_q rows (the kernel's CTA), running max m_t = −inf, running sum l_t = 0 and
/// accumulator a_t = 0 per row; for each key tile [j0, j1) of block_k columns with j0 < p0 + t1
/// (tiles entirely above the diagonal skipped), j1 ≤ n:
///   x_tj   = σ q_t · k_j            if j ≤ p0 + t, else −inf (causal)
///   m'_t   = max(m_t, max_j x_tj)   (finite: key 0 is in the first tile and visible to every row)
///   p_tj   = exp(x_tj − m'_t);  c_t = exp(m_t − m'_t)   (0 on the first tile)
///   l_t    = c_t l_t + Σ_j p_tj;  a_t = c_t a_t + Σ_j p_tj v_j;  m_t = m'_t
/// then o_t = a_t / l_t, lse_t = m_t + log l_t. Equals dsv2::mla_attend_naive in fp64 (proved by
/// tests/engine/test_cuda_prefill_host.cpp to ≤ 1e-12).
template <typename R>
PrefillReference<R> mla_prefill_tiled_reference(const PrefillDims& d, const std::vector<R>& q,
                                                const std::vector<R>& k_nope, const std::vector<R>& k_pe,
                                                const std::vector<R>& v, R sigma, int block_q, int block_k);

}  // namespace dsv2::engine
