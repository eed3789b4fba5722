// MLA decode on the GPU: RoPE, paged cache append, split-KV absorbed attention + combine.
// NOT YET RUN ON A GPU — compiled only; proved (once a device runs them) by tests/cuda/test_cuda_mla.cpp.
//
//   rope_kernel              reproduces dsv2::apply_rope (reference/src/rope.cpp)
//   cache_append_kernel<E>   reproduces LatentCache::write (reference/src/mla.cpp) on a paged
//                            layout; CPU twin dsv2::engine::paged_scatter (engine/src/paged.cpp)
//   mla_decode_split_kernel<E> + mla_combine_kernel
//                            reproduce the attention core of dsv2::mla_attend_absorbed
//                            (reference/src/mla.cpp): attn.o_latent of one decode query per
//                            sequence; the combine is the GPU twin of dsv2::engine::lse_combine,
//                            and the pair the twin of dsv2::engine::paged_decode_reference (CPU,
//                            proved equal to the oracle by tests/engine/test_paged_cache.cpp).
//
// A reference kernel: simple and correct before fast (no WGMMA/TMA). Plain loop it equals, per
// work item (b, head group g, split s over KV [kb, ke)) and head h of the group:
//   for j in [kb, ke): row = cache[slot(b, j)] (576 wide); x_j = σ (q̃_h · row[:d_c] + q_pe_h · row[d_c:])
//   m = max_j x_j;  l = Σ_j exp(x_j − m);  o_part = Σ_j exp(x_j − m) row[:d_c] / l;  lse_part = m + log l
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
template <typename E>
__device__ __forceinline__ E from_f32(float x);
template <>
__device__ __forceinline__ float from_f32<float>(float x) { return x; }
template <>
__device__ __forceinline__ __nv_bfloat16 from_f32<__nv_bfloat16>(float x) { return __float2bfloat16_rn(x); }

// ---------------------------------------------------------------------------------------------
// RoPE: one thread per (token t, pair k); it rotates pair k of every head of row t.
__global__ void rope_kernel(RopeParams p) {
    const int half = p.d_R / 2;
    const int64_t idx = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
    if (idx >= int64_t(p.T) * half) return;
    const int t = int(idx / half), k = int(idx % half);
    const double angle = double(p.positions[t]) * p.inv_freq[k];  // in double, as the oracle
    double s, c;
    sincos(angle, &s, &c);
    const float cf = float(p.amplitude * c), sf = float(p.amplitude * s);
    float* row = p.x + int64_t(t) * p.n * p.d_R;
    for (int h = 0; h < p.n; ++h) {
        float* x = row + h * p.d_R + 2 * k;
        const float a = x[0], b = x[1];
        x[0] = a * cf - b * sf;
        x[1] = a * sf + b * cf;
    }
}

// ---------------------------------------------------------------------------------------------
// Cache append: one CTA per token row.
template <typename E>
__global__ void cache_append_kernel(CacheAppendParams<E> p) {
    const int t = blockIdx.x;
    const int b = p.seq[t], pos = p.pos[t];
    const int32_t block = p.block_table[int64_t(b) * p.max_blocks + pos / p.block_tokens];
    if (block < 0 || block >= p.num_blocks) return;  // the host wrapper rejects this before launch
    const int W = p.d_c + p.d_R;
    E* dst = p.cache + (int64_t(block) * p.block_tokens + pos % p.block_tokens) * W;
    for (int c = threadIdx.x; c < W; c += blockDim.x)
        dst[c] = from_f32<E>(c < p.d_c ? p.c_kv[int64_t(t) * p.d_c + c] : p.k_pe[int64_t(t) * p.d_R + (c - p.d_c)]);
}

// ---------------------------------------------------------------------------------------------
// Split decode: one CTA per work item; 8 warps; warp w scores head w of the group (heads are the
// rows of the query tile); kTile token rows (576 wide) are loaded once into shared memory and
// shared by all heads. Thread x owns output columns x and x + 256 of every head (fp32).
constexpr int kThreads = 256;
constexpr int kHG = kDecodeHeadsPerCta;  // == kThreads / 32: one warp per head
constexpr int kTile = kDecodeTile;       // tokens per shared-memory tile (dsv2/engine/paged.hpp)
constexpr int kColsPerThread = kDecodeMaxLatent / kThreads;
static_assert(kHG * 32 == kThreads, "one warp per head of the group");

template <typename E>
__global__ void __launch_bounds__(kThreads) mla_decode_split_kernel(MlaDecodeParams<E> p) {
    __shared__ float q_s[kHG][kDecodeMaxWidth];   // [heads, d_c + d_R]
    __shared__ float kv_s[kTile][kDecodeMaxWidth];  // [tokens, d_c + d_R]
    __shared__ float score_s[kHG][kTile];
    __shared__ float m_s[kHG], l_s[kHG], scale_s[kHG];

    const WorkItem w = p.items[blockIdx.x];
    const int W = p.d_c + p.d_R;
    const int h0 = w.head_group * kHG;
    const int nh = min(kHG, p.n_h - h0);
    const int tid = threadIdx.x, warp = tid / 32, lane = tid % 32;

    for (int i = tid; i < kHG * W; i += kThreads) {  // the query tile, fp32
        const int h = i / W, c = i % W;
        float v = 0.f;
        if (h < nh) {
            const int64_t qh = int64_t(w.batch) * p.n_h + h0 + h;
            v = c < p.d_c ? to_f32(p.q_abs[qh * p.d_c + c]) : to_f32(p.q_pe[qh * p.d_R + (c - p.d_c)]);
        }
        q_s[h][c] = v;
    }
    if (tid < kHG) m_s[tid] = -INFINITY, l_s[tid] = 0.f;
    float acc[kHG][kColsPerThread];
#pragma unroll
    for (int h = 0; h < kHG; ++h)
#pragma unroll
        for (int k = 0; k < kColsPerThread; ++k) acc[h][k] = 0.f;
    const int32_t* table = p.block_table + int64_t(w.batch) * p.max_blocks;

    for (int t0 = w.kv_begin; t0 < w.kv_end; t0 += kTile) {
        __syncthreads();  // previous tile fully consumed (and q_s, m_s ready on the first pass)
        for (int i = tid; i < kTile * W; i += kThreads) {  // rows past kv_end are never read
            const int r = i / W, c = i % W, tok = t0 + r;
            float v = 0.f;
            if (tok < w.kv_end) {
                const int32_t block = table[tok / p.block_tokens];
                v = to_f32(p.cache[(int64_t(block) * p.block_tokens + tok % p.block_tokens) * W + c]);
            }
            kv_s[r][c] = v;
        }
        __syncthreads();
        // Scores: warp `warp` = head of the group, one warp reduction per token row.
        for (int r = 0; r < kTile; ++r) {
            float dot = 0.f;
            for (int c = lane; c < W; c += 32) dot += q_s[warp][c] * kv_s[r][c];
#pragma unroll
            for (int off = 16; off > 0; off /= 2) dot += __shfl_xor_sync(0xffffffffu, dot, off);
            if (lane == 0) score_s[warp][r] = t0 + r < w.kv_end ? p.sigma * dot : -INFINITY;
        }
        __syncthreads();
        // Online softmax bookkeeping, one thread per head: scores become probabilities in place.
        if (tid < kHG) {
            float m_new = m_s[tid];
            for (int r = 0; r < kTile; ++r) m_new = fmaxf(m_new, score_s[tid][r]);  // finite: row t0 is valid
            const float scale = expf(m_s[tid] - m_new);  // exp(−inf) = 0 on the first tile
            float sum = 0.f;
            for (int r = 0; r < kTile; ++r) {
                const float e = expf(score_s[tid][r] - m_new);
                score_s[tid][r] = e;
                sum += e;
            }
            l_s[tid] = l_s[tid] * scale + sum;
            m_s[tid] = m_new;
            scale_s[tid] = scale;
        }
        __syncthreads();
#pragma unroll
        for (int h = 0; h < kHG; ++h) {
#pragma unroll
            for (int k = 0; k < kColsPerThread; ++k) {
                const int c = tid + k * kThreads;
                if (c >= p.d_c) continue;
                float a = acc[h][k] * scale_s[h];
                for (int r = 0; r < kTile; ++r) a += score_s[h][r] * kv_s[r][c];
                acc[h][k] = a;
            }
        }
    }
    __syncthreads();
    for (int h = 0; h < nh; ++h) {
        const int64_t slot = int64_t(w.split) * p.n_h + h0 + h;
        const float inv_l = 1.f / l_s[h];
#pragma unroll
        for (int k = 0; k < kColsPerThread; ++k) {
            const int c = tid + k * kThreads;
            if (c < p.d_c) p.o_part[slot * p.d_c + c] = acc[h][k] * inv_l;
        }
        if (tid == 0) p.lse_part[slot] = m_s[h] + logf(l_s[h]);
    }
}

// Combine: one CTA per (sequence, head); the GPU twin of lse_combine (o = 0, lse = −inf for a
// sequence without splits).
__global__ void mla_combine_kernel(const float* __restrict__ o_part, const float* __restrict__ lse_part,
                                   const int32_t* __restrict__ num_splits, const int32_t* __restrict__ split_offset,
                                   float* __restrict__ o_latent, float* __restrict__ lse, int n_h, int d_c) {
    const int b = blockIdx.x / n_h, h = blockIdx.x % n_h;
    const int S = num_splits[b], first = split_offset[b];
    float* o = o_latent + int64_t(blockIdx.x) * d_c;
    if (S == 0) {
        for (int c = threadIdx.x; c < d_c; c += blockDim.x) o[c] = 0.f;
        if (threadIdx.x == 0) lse[blockIdx.x] = -INFINITY;
        return;
    }
    float m = -INFINITY;
    for (int s = 0; s < S; ++s) m = fmaxf(m, lse_part[int64_t(first + s) * n_h + h]);
    float sum = 0.f;
    for (int s = 0; s < S; ++s) sum += expf(lse_part[int64_t(first + s) * n_h + h] - m);
    const float inv = 1.f / sum;
    for (int c = threadIdx.x; c < d_c; c += blockDim.x) {
        float a = 0.f;
        for (int s = 0; s < S; ++s) {
            const int64_t slot = int64_t(first + s) * n_h + h;
            a += expf(lse_part[slot] - m) * o_part[slot * d_c + c];
        }
        o[c] = a * inv;
    }
    if (threadIdx.x == 0) lse[blockIdx.x] = m + logf(sum);
}

void require(bool ok, const char* what) {
    if (!ok) throw std::invalid_argument(std::string("dsv2::cuda MLA: ") + what);
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// Launchers

void launch_rope(const RopeParams& p, cudaStream_t stream) {
    require(p.T >= 0 && p.n > 0 && p.d_R > 0 && p.d_R % 2 == 0, "rope: bad shape");
    const int64_t n = int64_t(p.T) * (p.d_R / 2);
    if (n == 0) return;
    const int threads = 256;
    rope_kernel<<<unsigned((n + threads - 1) / threads), threads, 0, stream>>>(p);
    DSV2_LAUNCH_CHECK(rope_kernel);
}

template <typename E>
void launch_cache_append(const CacheAppendParams<E>& p, cudaStream_t stream) {
    require(p.T >= 0 && p.d_c > 0 && p.d_R >= 0 && p.block_tokens > 0 && p.max_blocks > 0, "cache_append: bad shape");
    if (p.T == 0) return;
    cache_append_kernel<E><<<p.T, 128, 0, stream>>>(p);
    DSV2_LAUNCH_CHECK(cache_append_kernel);
}

template <typename E>
void launch_mla_decode(const MlaDecodeParams<E>& p, cudaStream_t stream) {
    require(p.B >= 0 && p.n_h > 0 && p.d_c > 0 && p.d_R >= 0, "decode: bad shape");
    require(p.d_c <= kDecodeMaxLatent && p.d_c + p.d_R <= kDecodeMaxWidth, "decode: d_c ≤ 512 and d_c + d_R ≤ 576");
    if (p.n_items > 0) {
        mla_decode_split_kernel<E><<<p.n_items, kThreads, 0, stream>>>(p);
        DSV2_LAUNCH_CHECK(mla_decode_split_kernel);
    }
    if (p.B > 0) {
        mla_combine_kernel<<<p.B * p.n_h, 128, 0, stream>>>(p.o_part, p.lse_part, p.num_splits, p.split_offset,
                                                            p.o_latent, p.lse, p.n_h, p.d_c);
        DSV2_LAUNCH_CHECK(mla_combine_kernel);
    }
}

template void launch_cache_append<float>(const CacheAppendParams<float>&, cudaStream_t);
template void launch_cache_append<__nv_bfloat16>(const CacheAppendParams<__nv_bfloat16>&, cudaStream_t);
template void launch_mla_decode<float>(const MlaDecodeParams<float>&, cudaStream_t);
template void launch_mla_decode<__nv_bfloat16>(const MlaDecodeParams<__nv_bfloat16>&, cudaStream_t);

// ---------------------------------------------------------------------------------------------
// Host-array wrappers (dsv2/cuda/mla.hpp)

std::vector<float> rope(const std::vector<float>& x, int T, int n, const std::vector<int64_t>& positions,
                        const std::vector<double>& inv_freq, double amplitude) {
    const int d_R = 2 * int(inv_freq.size());
    require(T >= 0 && n > 0 && d_R > 0, "rope: bad shape");
    require(x.size() == size_t(T) * size_t(n) * size_t(d_R) && positions.size() == size_t(T), "rope: size mismatch");
    if (T == 0) return {};
    DeviceBuffer<float> dx(x);
    DeviceBuffer<int64_t> dpos(positions);
    DeviceBuffer<double> dfreq(inv_freq);
    launch_rope({dx.data(), dpos.data(), dfreq.data(), amplitude, T, n, d_R}, nullptr);
    return dx.download();
}

namespace {

void check_append(const PagedLayout& layout, const BlockTable& bt, size_t cache_size, const std::vector<float>& c_kv,
                  const std::vector<float>& k_pe, const std::vector<int32_t>& seq, const std::vector<int32_t>& pos) {
    layout.validate();
    const size_t T = seq.size();
    require(cache_size == size_t(layout.elements()), "cache_append: cache size ≠ layout");
    require(pos.size() == T && c_kv.size() == T * size_t(layout.d_c) && k_pe.size() == T * size_t(layout.d_R),
            "cache_append: size mismatch");
    for (size_t t = 0; t < T; ++t) {
        require(seq[t] >= 0 && seq[t] < bt.B && pos[t] >= 0 && pos[t] / layout.block_tokens < bt.max_blocks,
                "cache_append: token outside the block table");
        const int32_t block = bt.at(seq[t], pos[t] / layout.block_tokens);
        require(block >= 0 && block < layout.num_blocks, "cache_append: position in an unallocated block");
    }
}

template <typename E, typename H>
void append_impl(std::vector<H>& cache, const PagedLayout& layout, const BlockTable& bt, const std::vector<float>& c_kv,
                 const std::vector<float>& k_pe, const std::vector<int32_t>& seq, const std::vector<int32_t>& pos) {
    static_assert(sizeof(E) == sizeof(H), "host and device element types have the same bits");
    check_append(layout, bt, cache.size(), c_kv, k_pe, seq, pos);
    if (seq.empty()) return;
    DeviceBuffer<H> dcache(cache);
    DeviceBuffer<float> dc(c_kv), dk(k_pe);
    DeviceBuffer<int32_t> dtable(bt.table), dseq(seq), dpos(pos);
    CacheAppendParams<E> p{reinterpret_cast<E*>(dcache.data()), dc.data(), dk.data(), dtable.data(), dseq.data(),
                           dpos.data(), int(seq.size()), layout.d_c, layout.d_R, layout.block_tokens, bt.max_blocks,
                           layout.num_blocks};
    launch_cache_append<E>(p, nullptr);
    cache = dcache.download();
}

int device_sm_count() {
    int dev = 0, sms = 0;
    CUDA_CHECK(cudaGetDevice(&dev));
    CUDA_CHECK(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, dev));
    return sms;
}

template <typename E, typename H>
DecodeResult decode_impl(const std::vector<H>& cache, const PagedLayout& layout, const BlockTable& bt,
                         const std::vector<H>& q_abs, const std::vector<H>& q_pe, int n_h, float sigma, int num_sm) {
    static_assert(sizeof(E) == sizeof(H), "host and device element types have the same bits");
    layout.validate();
    const int B = bt.B;
    require(n_h > 0 && cache.size() == size_t(layout.elements()), "decode: cache size ≠ layout");
    require(q_abs.size() == size_t(B) * size_t(n_h) * size_t(layout.d_c) &&
                q_pe.size() == size_t(B) * size_t(n_h) * size_t(layout.d_R) && bt.lengths.size() == size_t(B) &&
                bt.table.size() == size_t(B) * size_t(bt.max_blocks),
            "decode: size mismatch");
    for (int b = 0; b < B; ++b) {  // every block a sequence reads is allocated
        require(layout.blocks_for(bt.lengths[size_t(b)]) <= bt.max_blocks, "decode: sequence longer than its table");
        for (int k = 0; k < layout.blocks_for(bt.lengths[size_t(b)]); ++k)
            require(bt.at(b, k) >= 0 && bt.at(b, k) < layout.num_blocks, "decode: block table entry out of range");
    }
    const int n_hg = (n_h + kDecodeHeadsPerCta - 1) / kDecodeHeadsPerCta;
    DecodeResult r;
    r.plan = make_split_plan(bt.lengths, n_hg, num_sm > 0 ? num_sm : device_sm_count(), layout.block_tokens);
    if (B == 0) return r;
    DeviceBuffer<H> dcache(cache), dq(q_abs), dqpe(q_pe);
    DeviceBuffer<int32_t> dtable(bt.table), dns(r.plan.num_splits), doff(r.plan.split_offset);
    DeviceBuffer<WorkItem> ditems(r.plan.items);
    DeviceBuffer<float> dopart(size_t(r.plan.total_splits()) * n_h * layout.d_c), dlpart(size_t(r.plan.total_splits()) * n_h);
    DeviceBuffer<float> dout(size_t(B) * n_h * layout.d_c), dlse(size_t(B) * n_h);
    MlaDecodeParams<E> p{reinterpret_cast<const E*>(dcache.data()), dtable.data(), reinterpret_cast<const E*>(dq.data()),
                         reinterpret_cast<const E*>(dqpe.data()), ditems.data(), dns.data(), doff.data(), dopart.data(),
                         dlpart.data(), dout.data(), dlse.data(), B, n_h, layout.d_c, layout.d_R, layout.block_tokens,
                         bt.max_blocks, int(r.plan.items.size()), sigma};
    launch_mla_decode<E>(p, nullptr);
    r.o_latent = dout.download();
    r.lse = dlse.download();
    return r;
}

}  // namespace

void cache_append(std::vector<float>& cache, const PagedLayout& layout, const BlockTable& bt, const std::vector<float>& c_kv,
                  const std::vector<float>& k_pe, const std::vector<int32_t>& seq, const std::vector<int32_t>& pos) {
    append_impl<float>(cache, layout, bt, c_kv, k_pe, seq, pos);
}
void cache_append(std::vector<uint16_t>& cache_bf16, const PagedLayout& layout, const BlockTable& bt,
                  const std::vector<float>& c_kv, const std::vector<float>& k_pe, const std::vector<int32_t>& seq,
                  const std::vector<int32_t>& pos) {
    append_impl<__nv_bfloat16>(cache_bf16, layout, bt, c_kv, k_pe, seq, pos);
}

DecodeResult mla_decode(const std::vector<float>& cache, const PagedLayout& layout, const BlockTable& bt,
                        const std::vector<float>& q_abs, const std::vector<float>& q_pe, int n_h, float sigma, int num_sm) {
    return decode_impl<float>(cache, layout, bt, q_abs, q_pe, n_h, sigma, num_sm);
}
DecodeResult mla_decode(const std::vector<uint16_t>& cache_bf16, const PagedLayout& layout, const BlockTable& bt,
                        const std::vector<uint16_t>& q_abs_bf16, const std::vector<uint16_t>& q_pe_bf16, int n_h,
                        float sigma, int num_sm) {
    return decode_impl<__nv_bfloat16>(cache_bf16, layout, bt, q_abs_bf16, q_pe_bf16, n_h, sigma, num_sm);
}

}  // namespace dsv2::cuda
