// MLA prefill on the GPU, non-absorbed multi-head form: causal attention of T new queries over n
// keys (a cached prefix of n − T tokens, then the T new ones), QK over d_nope + d_R = 192, V over
// d_v = 128, per head, with K/V already decompressed from the latent by the caller.
// NOT YET RUN ON A GPU — compiled only; proved (once a device runs it) by
// tests/cuda/test_cuda_mla_prefill.cpp.
//
//   mla_prefill_kernel<E>   reproduces dsv2::mla_attend_naive (reference/src/mla.cpp) for queries
//                           at positions n − T … n − 1; its CPU twin is
//                           dsv2::engine::mla_prefill_tiled_reference (engine/src/prefill.cpp, proved
//                           equal to the oracle in fp64 by tests/engine/test_cuda_prefill_host.cpp), which
//                           runs the same tiles, skips the same key tiles and does the same online
//                           softmax updates, so a GPU mismatch can be localised against it.
//
// Layout (dsv2/engine/prefill.hpp): q [T, n_h, d_nope + d_R], k_nope [≥ n, n_h, d_nope],
// k_pe [≥ n, d_R], v [≥ n, n_h, d_v] in E = float or __nv_bfloat16; o [T, n_h, d_v] and
// lse [T, n_h] in fp32. Every sum and the softmax are fp32.
//
// The plain loop it equals, for CTA (query tile [t0, t1), head h), p0 = n − T:
//   m_t = −inf, l_t = 0, a_t = 0                                     (t ∈ [t0, t1))
//   for each key tile [j0, j1) of Bc keys with j0 < p0 + t1 (tiles above the diagonal skipped):
//     x_tj = σ q_t·k_j  (j ≤ p0 + t),  −inf otherwise                 (scores over d_nope + d_R)
//     m'_t = max(m_t, max_j x_tj);  c_t = exp(m_t − m'_t);  p_tj = exp(x_tj − m'_t)
//     l_t = c_t l_t + Σ_j p_tj;  a_t = c_t a_t + Σ_j p_tj v_j;  m_t = m'_t
//   o_t = a_t / l_t;  lse_t = m_t + log l_t
//
// A reference kernel: simple and correct before fast. One CTA (4 warps) per (query tile, head);
// q, K and V tiles are converted to fp32 and staged in shared memory (rows padded to d_qk + 1
// floats so that the 32 keys read by a warp fall in distinct banks); scores one thread per
// (row, key), the online-softmax bookkeeping one warp per row, P·V one thread per (row, column)
// with the accumulator in shared memory. Query tiles are launched last-first, because the causal
// mask makes them the longest. Keys past n are never read (the tile loads zero-fill them);
// causally masked keys get score −inf (p = 0) and are left out of the P·V sum.
//
// What a fast Hopper (sm_90a) version would change, once this one is proved on a device:
//   - QKᵀ and PV on tensor cores with WGMMA (bf16 inputs, fp32 accumulators in registers), a
//     warpgroup owning 64 query rows, O kept in registers instead of shared memory;
//   - K/V tiles brought in by TMA into a multi-stage shared-memory ring with mbarriers, a producer
//     warp and consumer warpgroups (warp specialisation), and FA3-style ping-pong so that the
//     softmax of one tile overlaps the GEMMs of the next;
//   - the exp2 trick (σ·log2 e folded into the scores), masking only on the diagonal tile, and a
//     persistent, causal-aware tile scheduler;
//   - optionally no decompressed K/V in HBM at all: compute k_nope/v tiles from the latent ĉ and
//     W^UK/W^UV inside the kernel (n_h · 320 values per token would otherwise be written and read).
#include <cmath>
#include <stdexcept>
#include <string>

#include "dsv2/cuda/buffer.cuh"
#include "dsv2/cuda/mla.cuh"
#include "dsv2/cuda/mla.hpp"

namespace dsv2::cuda {

using namespace dsv2::engine;  // the engine's types (layouts, plans, Backend) are the kernels' too

namespace {

__device__ __forceinline__ float to_f32(float x) { return x; }
__device__ __forceinline__ float to_f32(__nv_bfloat16 x) { return __bfloat162float(x); }

constexpr int kWarps = kPrefillThreads / 32;
static_assert(kPrefillThreads % 32 == 0, "whole warps");

template <typename E>
__global__ void __launch_bounds__(kPrefillThreads) mla_prefill_kernel(MlaPrefillParams<E> p) {
    extern __shared__ float smem[];
    const int Br = p.block_q, Bc = p.block_k, Dn = p.d_nope, DR = p.d_R, Dqk = Dn + DR, Dv = p.d_v;
    const int ld = Dqk + 1;       // padded row of the q and k tiles
    float* q_s = smem;            // [Br, ld]
    float* k_s = q_s + Br * ld;   // [Bc, ld]
    float* v_s = k_s + Bc * ld;   // [Bc, Dv]
    float* s_s = v_s + Bc * Dv;   // [Br, Bc] scores, then probabilities
    float* o_s = s_s + Br * Bc;   // [Br, Dv] accumulator
    float* m_s = o_s + Br * Dv;   // [Br] running max
    float* l_s = m_s + Br;        // [Br] running sum
    float* c_s = l_s + Br;        // [Br] rescale factor of this tile
    // (prefill_smem_bytes in engine/src/prefill.cpp sizes exactly these arrays.)

    const int qt = int(gridDim.x) - 1 - int(blockIdx.x);  // longest query tiles first
    const int h = blockIdx.y;
    const int t0 = qt * Br, t1 = min(p.T, t0 + Br), rows = t1 - t0;
    const int p0 = p.n - p.T;
    const int64_t H = p.n_h;
    const int tid = threadIdx.x, warp = tid / 32, lane = tid % 32;

    for (int i = tid; i < Br * Dqk; i += kPrefillThreads) {
        const int r = i / Dqk, c = i % Dqk;
        q_s[r * ld + c] = r < rows ? to_f32(p.q[(int64_t(t0 + r) * H + h) * Dqk + c]) : 0.f;
    }
    for (int i = tid; i < Br * Dv; i += kPrefillThreads) o_s[i] = 0.f;
    for (int r = tid; r < Br; r += kPrefillThreads) m_s[r] = -INFINITY, l_s[r] = 0.f, c_s[r] = 0.f;

    const int tiles = (p0 + t1 + Bc - 1) / Bc;  // == prefill_key_tiles(d, t1, Bc)
    for (int kt = 0; kt < tiles; ++kt) {
        const int j0 = kt * Bc, j1 = min(p.n, j0 + Bc);
        __syncthreads();  // the previous tile is consumed (and the initialisation visible)
        for (int i = tid; i < Bc * Dqk; i += kPrefillThreads) {
            const int c = i / Dqk, k = i % Dqk, j = j0 + c;
            float x = 0.f;  // keys past n are not read
            if (j < j1)
                x = k < Dn ? to_f32(p.k_nope[(int64_t(j) * H + h) * Dn + k]) : to_f32(p.k_pe[int64_t(j) * DR + (k - Dn)]);
            k_s[c * ld + k] = x;
        }
        for (int i = tid; i < Bc * Dv; i += kPrefillThreads) {
            const int c = i / Dv, k = i % Dv, j = j0 + c;
            v_s[i] = j < j1 ? to_f32(p.v[(int64_t(j) * H + h) * Dv + k]) : 0.f;
        }
        __syncthreads();
        // Scores, one thread per (row, key); causal and past-n entries are −inf.
        for (int i = tid; i < Br * Bc; i += kPrefillThreads) {
            const int r = i / Bc, c = i % Bc, j = j0 + c;
            float s = -INFINITY;
            if (r < rows && j < j1 && j <= p0 + t0 + r) {
                const float* qr = q_s + r * ld;
                const float* kc = k_s + c * ld;
                float dot = 0.f;
                for (int k = 0; k < Dqk; ++k) dot = fmaf(qr[k], kc[k], dot);
                s = p.sigma * dot;
            }
            s_s[i] = s;
        }
        __syncthreads();
        // Online softmax, one warp per row: scores become probabilities in place.
        for (int r = warp; r < rows; r += kWarps) {
            float* sr = s_s + r * Bc;
            float mx = -INFINITY;
            for (int c = lane; c < Bc; c += 32) mx = fmaxf(mx, sr[c]);
#pragma unroll
            for (int off = 16; off > 0; off /= 2) mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, off));
            const float m_old = m_s[r];
            const float m_new = fmaxf(m_old, mx);  // finite: key 0 is in tile 0 and visible to every row
            float sum = 0.f;
            for (int c = lane; c < Bc; c += 32) {
                const float e = expf(sr[c] - m_new);  // exp(−inf) = 0 for masked keys
                sr[c] = e;
                sum += e;
            }
#pragma unroll
            for (int off = 16; off > 0; off /= 2) sum += __shfl_xor_sync(0xffffffffu, sum, off);
            __syncwarp();  // every lane has read m_s[r] before lane 0 writes it (racecheck-clean)
            if (lane == 0) {
                const float scale = expf(m_old - m_new);  // 0 on the first tile, 1 when all masked
                c_s[r] = scale;
                l_s[r] = l_s[r] * scale + sum;
                m_s[r] = m_new;
            }
        }
        __syncthreads();
        // a_t = c_t a_t + Σ_j p_tj v_j over the keys row t sees (j ≤ p0 + t, j < n), one thread per
        // (row, column): masked keys are skipped, not multiplied by 0, so not even a non-finite
        // value in a causally hidden row can reach the output.
        for (int i = tid; i < rows * Dv; i += kPrefillThreads) {
            const int r = i / Dv, k = i % Dv;
            const int visible = min(j1, p0 + t0 + r + 1) - j0;  // ≤ 0: none in this tile
            const float* pr = s_s + r * Bc;
            float a = o_s[i] * c_s[r];
            for (int c = 0; c < visible; ++c) a = fmaf(pr[c], v_s[c * Dv + k], a);
            o_s[i] = a;
        }
    }
    __syncthreads();
    for (int i = tid; i < rows * Dv; i += kPrefillThreads) {
        const int r = i / Dv, k = i % Dv;
        p.o[(int64_t(t0 + r) * H + h) * Dv + k] = o_s[i] / l_s[r];
    }
    if (p.lse != nullptr)
        for (int r = tid; r < rows; r += kPrefillThreads) p.lse[int64_t(t0 + r) * H + h] = m_s[r] + logf(l_s[r]);
}

void require_arg(bool ok, const std::string& what) {
    if (!ok) throw std::invalid_argument("mla_prefill: " + what);
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// Launcher

template <typename E>
void launch_mla_prefill(const MlaPrefillParams<E>& p, cudaStream_t stream) {
    const PrefillDims d{p.T, p.n, p.n_h, p.d_nope, p.d_R, p.d_v};
    check_prefill_args(d, double(p.sigma), p.block_q, p.block_k);
    require_arg(p.n_h <= 65535, "n_h must be <= 65535 (grid y), got " + std::to_string(p.n_h));
    if (p.T == 0) return;
    require_arg(p.q != nullptr, "q is null");
    require_arg(p.k_nope != nullptr, "k_nope is null");
    require_arg(p.k_pe != nullptr || p.d_R == 0, "k_pe is null");
    require_arg(p.v != nullptr, "v is null");
    require_arg(p.o != nullptr, "o is null");
    const size_t smem = prefill_smem_bytes(d, p.block_q, p.block_k);
    int dev = 0, optin = 0;
    CUDA_CHECK(cudaGetDevice(&dev));
    CUDA_CHECK(cudaDeviceGetAttribute(&optin, cudaDevAttrMaxSharedMemoryPerBlockOptin, dev));
    require_arg(smem <= size_t(optin), "block_q = " + std::to_string(p.block_q) + ", block_k = " +
                                           std::to_string(p.block_k) + " need " + std::to_string(smem) +
                                           " bytes of shared memory at d_qk = " + std::to_string(d.d_qk()) +
                                           ", d_v = " + std::to_string(p.d_v) + "; the device allows " +
                                           std::to_string(optin));
    CUDA_CHECK(cudaFuncSetAttribute(mla_prefill_kernel<E>, cudaFuncAttributeMaxDynamicSharedMemorySize, int(smem)));
    const dim3 grid(unsigned((p.T + p.block_q - 1) / p.block_q), unsigned(p.n_h));
    mla_prefill_kernel<E><<<grid, kPrefillThreads, smem, stream>>>(p);
    DSV2_LAUNCH_CHECK(mla_prefill_kernel);
}

template void launch_mla_prefill<float>(const MlaPrefillParams<float>&, cudaStream_t);
template void launch_mla_prefill<__nv_bfloat16>(const MlaPrefillParams<__nv_bfloat16>&, cudaStream_t);

// ---------------------------------------------------------------------------------------------
// Host-array wrappers (dsv2/cuda/mla.hpp)

namespace {

template <typename E, typename H>
void prefill_impl(const PrefillDims& d, const std::vector<H>& q, const std::vector<H>& k_nope,
                  const std::vector<H>& k_pe, const std::vector<H>& v, float sigma, std::vector<float>& o,
                  std::vector<float>& lse, int block_q, int block_k) {
    static_assert(sizeof(E) == sizeof(H), "host and device element types have the same bits");
    check_prefill_args(d, double(sigma), block_q, block_k);
    check_prefill_sizes(d, q.size(), k_nope.size(), k_pe.size(), v.size());
    require_arg(o.size() == size_t(d.T) * size_t(d.n_h) * size_t(d.d_v),
                "o must hold [T, n_h, d_v] = " + std::to_string(size_t(d.T) * size_t(d.n_h) * size_t(d.d_v)) +
                    " elements (got " + std::to_string(o.size()) + ")");
    require_arg(lse.size() == size_t(d.T) * size_t(d.n_h),
                "lse must hold [T, n_h] = " + std::to_string(size_t(d.T) * size_t(d.n_h)) + " elements (got " +
                    std::to_string(lse.size()) + ")");
    if (d.T == 0) return;
    DeviceBuffer<H> dq(q), dkn(k_nope), dkp(k_pe), dv(v);
    DeviceBuffer<float> dout(o), dlse(lse);  // uploaded as given: the kernel must overwrite every element
    MlaPrefillParams<E> p{};
    p.q = reinterpret_cast<const E*>(dq.data());
    p.k_nope = reinterpret_cast<const E*>(dkn.data());
    p.k_pe = reinterpret_cast<const E*>(dkp.data());
    p.v = reinterpret_cast<const E*>(dv.data());
    p.o = dout.data();
    p.lse = dlse.data();
    p.T = d.T, p.n = d.n, p.n_h = d.n_h, p.d_nope = d.d_nope, p.d_R = d.d_R, p.d_v = d.d_v;
    p.block_q = block_q, p.block_k = block_k;
    p.sigma = sigma;
    launch_mla_prefill<E>(p, nullptr);
    CUDA_CHECK(cudaDeviceSynchronize());
    o = dout.download();
    lse = dlse.download();
}

}  // namespace

void mla_prefill(const PrefillDims& d, const std::vector<float>& q, const std::vector<float>& k_nope,
                 const std::vector<float>& k_pe, const std::vector<float>& v, float sigma, std::vector<float>& o,
                 std::vector<float>& lse, int block_q, int block_k) {
    prefill_impl<float>(d, q, k_nope, k_pe, v, sigma, o, lse, block_q, block_k);
}
void mla_prefill(const PrefillDims& d, const std::vector<uint16_t>& q_bf16, const std::vector<uint16_t>& k_nope_bf16,
                 const std::vector<uint16_t>& k_pe_bf16, const std::vector<uint16_t>& v_bf16, float sigma,
                 std::vector<float>& o, std::vector<float>& lse, int block_q, int block_k) {
    prefill_impl<__nv_bfloat16>(d, q_bf16, k_nope_bf16, k_pe_bf16, v_bf16, sigma, o, lse, block_q, block_k);
}

}  // namespace dsv2::cuda
