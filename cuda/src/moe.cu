// DeepSeekMoE router and dispatch on the GPU (fp32). NOT YET RUN ON A GPU: written and compiled on
// a machine without one; tests/cuda/test_cuda_moe.cpp skips there. Each kernel has a CPU twin in
// engine/src/moe.cpp (tested against the oracle by tests/engine/test_cuda_moe_host.cpp, label cpu).
// The router logits (x · gate.weightᵀ) are an input: that GEMM is cuBLAS's job. The expert SwiGLU
// GEMMs over the grouped rows are not here yet (TODO: cuBLAS grouped GEMM, cuda/README.md).
#include <cub/device/device_scan.cuh>

#include <climits>
#include <cmath>
#include <stdexcept>
#include <string>

#include "dsv2/cuda/buffer.cuh"
#include "dsv2/cuda/moe.cuh"

namespace dsv2::cuda {

using namespace dsv2::engine;  // the engine's types (layouts, plans, Backend) are the kernels' too

namespace {

constexpr unsigned kFull = 0xffffffffu;
constexpr int kWarpsPerBlock = 4;  // router, count and place kernels: 4 warps (tokens / experts) per block
constexpr int kRowThreads = 256;   // gather and combine: one block per row, threads over d

[[noreturn]] void bad(const std::string& what) { throw std::invalid_argument(what); }

// The (key, index) order of dsv2::topk_indices: higher key first, equal keys lower index first;
// key = score with NaN → −inf. The sentinel (−inf, INT_MAX) loses to every real candidate.
__device__ __forceinline__ float rank_key(float s) { return isnan(s) ? -INFINITY : s; }
__device__ __forceinline__ bool better(float ka, int ia, float kb, int ib) { return ka > kb || (ka == kb && ia < ib); }

// Butterfly arg-max over the warp (xor 16, 8, 4, 2, 1); every lane ends with the winner.
__device__ __forceinline__ void warp_argmax(float& key, int& idx) {
    for (int off = 16; off >= 1; off >>= 1) {
        const float ok = __shfl_xor_sync(kFull, key, off);
        const int oi = __shfl_xor_sync(kFull, idx, off);
        if (better(ok, oi, key, idx)) key = ok, idx = oi;
    }
}

struct RouteArgs {
    const float* logits;
    int32_t* idx;
    float* w;
    float* scores;  // [T, N] or null
    int64_t T;
    int N, K, G, G_k;
    bool group_limited, norm;
    float scale;
};

// Reproduces dsv2::route (reference/src/moe.cpp) from its logits: softmax, group-limited greedy
// (group score = max, keep G_k groups), top-K with the tie rule, gates renormalised
// (norm_topk_prob, K > 1) or × routed_scaling_factor. One warp per token; the scores live in
// shared memory (N_r floats per warp). Line by line the arithmetic of route_reference (CPU twin,
// proved equal to dsv2::route<float> by tests/engine/test_cuda_moe_host.cpp); the kernel is checked
// against the twin by tests/cuda/test_cuda_moe.cpp (identical indices, gates ≤ 1e-6; not yet run).
__global__ void moe_route_kernel(RouteArgs a) {
    extern __shared__ float smem[];
    const int warp = int(threadIdx.x) / 32, lane = int(threadIdx.x) % 32;
    const int64_t t = int64_t(blockIdx.x) * kWarpsPerBlock + warp;
    if (t >= a.T) return;  // warp-uniform
    float* s = smem + size_t(warp) * size_t(a.N);
    const float* l = a.logits + t * a.N;
    const int N = a.N;

    // Softmax: max (fmaxf ignores NaN), e = exp(l − m), strided lane sums + butterfly, s = e / sum.
    float m = -INFINITY;
    for (int e = lane; e < N; e += 32) m = fmaxf(m, l[e]);
    for (int off = 16; off >= 1; off >>= 1) m = fmaxf(m, __shfl_xor_sync(kFull, m, off));
    float acc = 0.f;
    for (int e = lane; e < N; e += 32) {
        const float v = expf(l[e] - m);
        s[e] = v;
        acc = acc + v;
    }
    for (int off = 16; off >= 1; off >>= 1) acc = acc + __shfl_xor_sync(kFull, acc, off);
    for (int e = lane; e < N; e += 32) s[e] = s[e] / acc;
    if (a.scores)
        for (int e = lane; e < N; e += 32) a.scores[t * N + e] = s[e];
    __syncwarp();

    // Group-limited: lane g < G holds group g's max score (NaN ignored), G_k arg-max rounds.
    uint32_t allowed_groups = 0xffffffffu;
    const int per = a.group_limited ? N / a.G : N;
    if (a.group_limited) {
        float gk = -INFINITY;
        if (lane < a.G)
            for (int e = lane * per; e < (lane + 1) * per; ++e) gk = fmaxf(gk, s[e]);
        bool gtaken = false;
        allowed_groups = 0;
        for (int r = 0; r < a.G_k; ++r) {
            const bool cand = lane < a.G && !gtaken;
            float key = cand ? rank_key(gk) : -INFINITY;
            int idx = cand ? lane : INT_MAX;
            warp_argmax(key, idx);
            if (idx == lane) gtaken = true;
            allowed_groups |= 1u << idx;
        }
    }

    // Top-K: K arg-max rounds; lane e % 32 owns expert e (bit e / 32 of `taken`); lane k keeps choice k.
    uint64_t taken = 0;
    float my_score = 0.f;
    int my_idx = -1;
    for (int k = 0; k < a.K; ++k) {
        float key = -INFINITY;
        int idx = INT_MAX;
        for (int e = lane, j = 0; e < N; e += 32, ++j) {
            if ((taken >> j) & 1u) continue;
            if (!((allowed_groups >> (e / per)) & 1u)) continue;
            const float ke = rank_key(s[e]);
            if (better(ke, e, key, idx)) key = ke, idx = e;
        }
        warp_argmax(key, idx);  // K ≤ the candidates (validated), so idx is a real expert
        if ((idx & 31) == lane) taken |= uint64_t(1) << (idx >> 5);
        if (lane == k) my_idx = idx, my_score = s[idx];
    }
    // Gates: Σ in rank order on every lane, then renormalise or scale.
    float gsum = 0.f;
    for (int k = 0; k < a.K; ++k) gsum = gsum + __shfl_sync(kFull, my_score, k);
    if (lane < a.K) {
        const float g = (a.norm && a.K > 1) ? my_score / (gsum + 1e-20f) : my_score * a.scale;
        a.idx[t * a.K + lane] = my_idx;
        a.w[t * a.K + lane] = g;
    }
}

// First half of dsv2::moe_forward's dispatch ("the slots each expert serves"): counts[e] = number
// of slots with topk_idx == e. One warp per expert, ballot + popc over all T·K slots (no atomics).
// CPU twin: make_dispatch_plan (counts); test: tests/cuda/test_cuda_moe.cpp (not yet run).
__global__ void moe_count_kernel(const int32_t* __restrict__ idx, int64_t n, int64_t N_r, int32_t* __restrict__ counts) {
    const int64_t e = int64_t(blockIdx.x) * kWarpsPerBlock + threadIdx.x / 32;
    const int lane = int(threadIdx.x) % 32;
    if (e >= N_r) return;
    int c = 0;
    for (int64_t base = 0; base < n; base += 32) {
        const int64_t i = base + lane;
        c += __popc(__ballot_sync(kFull, i < n && idx[i] == e));
    }
    if (lane == 0) counts[e] = c;
}

// Second half: expert e's slots, in ascending slot order, into rows offsets[e] …, and the inverse
// map — the stable grouping of dsv2::moe_forward. One warp per expert; a ballot gives each hit its
// rank among the hits before it. CPU twin: make_dispatch_plan; test: tests/cuda/test_cuda_moe.cpp.
__global__ void moe_place_kernel(const int32_t* __restrict__ idx, int64_t n, int64_t N_r,
                                 const int32_t* __restrict__ offsets, int32_t* __restrict__ slots,
                                 int32_t* __restrict__ row_of_slot) {
    const int64_t e = int64_t(blockIdx.x) * kWarpsPerBlock + threadIdx.x / 32;
    const int lane = int(threadIdx.x) % 32;
    if (e >= N_r) return;
    int row = offsets[e];
    const unsigned below = (1u << lane) - 1u;
    for (int64_t base = 0; base < n; base += 32) {
        const int64_t i = base + lane;
        const bool hit = i < n && idx[i] == e;
        const unsigned b = __ballot_sync(kFull, hit);
        if (hit) {
            const int r = row + __popc(b & below);
            slots[r] = int32_t(i);
            row_of_slot[i] = r;
        }
        row += __popc(b);
    }
}

// dsv2::moe_forward's `xe.row(j) = x.row(mine[j] / K_r)`: grouped[r, :] = x[slots[r] / K, :].
// One block per grouped row. CPU twin: moe_gather_reference; test: tests/cuda/test_cuda_moe.cpp.
__global__ void moe_gather_kernel(MoeGatherParams p) {
    const int64_t r = blockIdx.x;
    const int64_t t = p.slots[r] / p.K;
    for (int64_t c = threadIdx.x; c < p.d; c += blockDim.x) p.grouped[r * p.d + c] = p.x[t * p.d + c];
}

// dsv2::moe_forward's combine, `routed.row(t) += w(t, k) · y.row(t·K + k)` for k = 0 … K − 1, then
// + the shared experts: deterministic (rank order, fma, no atomics). One block per token.
// CPU twin: moe_combine_reference (bit-exact: std::fma); test: tests/cuda/test_cuda_moe.cpp.
__global__ void moe_combine_kernel(MoeCombineParams p) {
    const int64_t t = blockIdx.x;
    for (int64_t c = threadIdx.x; c < p.d; c += blockDim.x) {
        float acc = 0.f;
        for (int64_t k = 0; k < p.K; ++k) {
            const int64_t row = p.row_of_slot[t * p.K + k];
            acc = __fmaf_rn(p.w[t * p.K + k], p.y[row * p.d + c], acc);
        }
        if (p.shared) acc = __fadd_rn(acc, p.shared[t * p.d + c]);
        p.out[t * p.d + c] = acc;
    }
}

void check_rows(int64_t rows, const char* who) {
    if (rows > int64_t(INT_MAX)) bad(std::string(who) + ": too many rows for one grid (" + std::to_string(rows) + ")");
}

}  // namespace

void launch_moe_route(const MoeRouteParams& p, cudaStream_t stream) {
    p.router.validate();
    if (p.T < 0) bad("launch_moe_route: T must be >= 0");
    if (p.T == 0) return;
    if (!p.logits) bad("launch_moe_route: logits is null");
    if (!p.topk_idx) bad("launch_moe_route: topk_idx is null");
    if (!p.topk_weight) bad("launch_moe_route: topk_weight is null");
    const int64_t blocks = (p.T + kWarpsPerBlock - 1) / kWarpsPerBlock;
    check_rows(blocks, "launch_moe_route");
    const RouterParams& r = p.router;
    RouteArgs a{p.logits, p.topk_idx, p.topk_weight, p.scores, p.T, r.N_r, r.K, r.G, r.G_k, r.group_limited,
                r.norm_topk_prob, r.routed_scaling_factor};
    const size_t smem = size_t(kWarpsPerBlock) * size_t(r.N_r) * sizeof(float);  // ≤ 32 KiB (N_r ≤ 2048)
    moe_route_kernel<<<unsigned(blocks), kWarpsPerBlock * 32, smem, stream>>>(a);
    DSV2_LAUNCH_CHECK(moe_route_kernel);
}

size_t moe_dispatch_temp_bytes(int64_t N_r) {
    size_t bytes = 0;
    CUDA_CHECK(cub::DeviceScan::ExclusiveSum(nullptr, bytes, static_cast<const int32_t*>(nullptr),
                                             static_cast<int32_t*>(nullptr), int(N_r + 1)));
    return bytes;
}

void launch_moe_dispatch(const MoeDispatchParams& p, cudaStream_t stream) {
    if (p.T < 0) bad("launch_moe_dispatch: T must be >= 0");
    if (p.K < 1) bad("launch_moe_dispatch: K must be >= 1");
    if (p.N_r < 1 || p.N_r >= int64_t(INT_MAX)) bad("launch_moe_dispatch: N_r must be in [1, 2^31 - 1)");
    if (p.T * p.K > int64_t(INT_MAX)) bad("launch_moe_dispatch: T·K must fit in int32");
    if (!p.counts) bad("launch_moe_dispatch: counts is null");
    if (!p.offsets) bad("launch_moe_dispatch: offsets is null");
    const int64_t n = p.T * p.K;
    if (n > 0 && !p.topk_idx) bad("launch_moe_dispatch: topk_idx is null");
    if (n > 0 && !p.slots) bad("launch_moe_dispatch: slots is null");
    if (n > 0 && !p.row_of_slot) bad("launch_moe_dispatch: row_of_slot is null");
    size_t need = moe_dispatch_temp_bytes(p.N_r);
    if (!p.temp || p.temp_bytes < need)
        bad("launch_moe_dispatch: temp must hold moe_dispatch_temp_bytes(N_r) = " + std::to_string(need) + " bytes");
    const int64_t blocks = (p.N_r + kWarpsPerBlock - 1) / kWarpsPerBlock;
    CUDA_CHECK(cudaMemsetAsync(p.counts + p.N_r, 0, sizeof(int32_t), stream));  // counts[N_r] = 0
    moe_count_kernel<<<unsigned(blocks), kWarpsPerBlock * 32, 0, stream>>>(p.topk_idx, n, p.N_r, p.counts);
    DSV2_LAUNCH_CHECK(moe_count_kernel);
    CUDA_CHECK(cub::DeviceScan::ExclusiveSum(p.temp, need, p.counts, p.offsets, int(p.N_r + 1), stream));
    DSV2_LAUNCH_CHECK(cub_exclusive_sum);
    moe_place_kernel<<<unsigned(blocks), kWarpsPerBlock * 32, 0, stream>>>(p.topk_idx, n, p.N_r, p.offsets, p.slots,
                                                                          p.row_of_slot);
    DSV2_LAUNCH_CHECK(moe_place_kernel);
}

void launch_moe_gather(const MoeGatherParams& p, cudaStream_t stream) {
    if (p.T < 0) bad("launch_moe_gather: T must be >= 0");
    if (p.K < 1) bad("launch_moe_gather: K must be >= 1");
    if (p.d < 1) bad("launch_moe_gather: d must be >= 1");
    const int64_t n = p.T * p.K;
    if (n == 0) return;
    if (!p.x) bad("launch_moe_gather: x is null");
    if (!p.slots) bad("launch_moe_gather: slots is null");
    if (!p.grouped) bad("launch_moe_gather: grouped is null");
    check_rows(n, "launch_moe_gather");
    moe_gather_kernel<<<unsigned(n), kRowThreads, 0, stream>>>(p);
    DSV2_LAUNCH_CHECK(moe_gather_kernel);
}

void launch_moe_combine(const MoeCombineParams& p, cudaStream_t stream) {
    if (p.T < 0) bad("launch_moe_combine: T must be >= 0");
    if (p.K < 1) bad("launch_moe_combine: K must be >= 1");
    if (p.d < 1) bad("launch_moe_combine: d must be >= 1");
    if (p.T == 0) return;
    if (!p.y) bad("launch_moe_combine: y is null");
    if (!p.w) bad("launch_moe_combine: w is null");
    if (!p.row_of_slot) bad("launch_moe_combine: row_of_slot is null");
    if (!p.out) bad("launch_moe_combine: out is null");
    check_rows(p.T, "launch_moe_combine");
    moe_combine_kernel<<<unsigned(p.T), kRowThreads, 0, stream>>>(p);
    DSV2_LAUNCH_CHECK(moe_combine_kernel);
}

// ---------------------------------------------------------------------------------------------
// Host-array API

void moe_route(const RouterParams& p, const std::vector<float>& logits, int64_t T, std::vector<int32_t>& idx,
               std::vector<float>& w) {
    p.validate();
    if (T < 0) bad("moe_route: T must be >= 0");
    if (int64_t(logits.size()) != T * p.N_r) bad("moe_route: logits must be [T, N_r]");
    if (int64_t(idx.size()) != T * p.K) bad("moe_route: idx must be [T, K]");
    if (int64_t(w.size()) != T * p.K) bad("moe_route: w must be [T, K]");
    if (T == 0) return;
    DeviceBuffer<float> dl(logits), dw(w);
    DeviceBuffer<int32_t> di(idx);
    Stream s;
    launch_moe_route({dl.data(), di.data(), dw.data(), T, p}, s.get());
    s.sync();
    idx = di.download();
    w = dw.download();
}

DispatchPlan moe_dispatch(const std::vector<int32_t>& topk_idx, int64_t T, int64_t K, int64_t N_r) {
    if (T < 0 || K < 1 || int64_t(topk_idx.size()) != T * K) bad("moe_dispatch: topk_idx must be [T, K], K >= 1");
    if (N_r < 1) bad("moe_dispatch: N_r must be >= 1");
    const int64_t n = T * K;
    DeviceBuffer<int32_t> di(topk_idx), counts(size_t(N_r) + 1), offsets(size_t(N_r) + 1);
    DeviceBuffer<int32_t> slots(std::vector<int32_t>(size_t(n), -1)), inv(std::vector<int32_t>(size_t(n), -1));
    const size_t tb = moe_dispatch_temp_bytes(N_r);
    DeviceBuffer<unsigned char> temp(tb > 0 ? tb : 1);
    Stream s;
    launch_moe_dispatch({di.data(), counts.data(), offsets.data(), slots.data(), inv.data(), temp.data(), temp.size(), T,
                         K, N_r},
                        s.get());
    s.sync();
    DispatchPlan p;
    p.T = T, p.K = K, p.N_r = N_r;
    p.counts = counts.download();
    p.counts.resize(size_t(N_r));
    p.offsets = offsets.download();
    p.slots = slots.download();
    p.row_of_slot = inv.download();
    if (p.offsets.back() != n) make_dispatch_plan(topk_idx.data(), T, K, N_r);  // throws, naming the token and rank
    if (p.offsets.back() != n) bad("moe_dispatch: rows placed != T·K");
    return p;
}

void moe_gather(const DispatchPlan& plan, const std::vector<float>& x, int64_t d, std::vector<float>& grouped) {
    if (d < 1) bad("moe_gather: d must be >= 1");
    if (int64_t(x.size()) != plan.T * d) bad("moe_gather: x must be [T, d]");
    if (int64_t(grouped.size()) != plan.T * plan.K * d) bad("moe_gather: grouped must be [T·K, d]");
    if (int64_t(plan.slots.size()) != plan.T * plan.K) bad("moe_gather: plan.slots must have T·K entries");
    if (plan.T == 0) return;
    DeviceBuffer<float> dx(x), dg(grouped);
    DeviceBuffer<int32_t> ds(plan.slots);
    Stream s;
    launch_moe_gather({dx.data(), ds.data(), dg.data(), plan.T, plan.K, d}, s.get());
    s.sync();
    grouped = dg.download();
}

void moe_combine(const DispatchPlan& plan, const std::vector<float>& y, const std::vector<float>& w,
                 const std::vector<float>& shared, int64_t d, std::vector<float>& out) {
    const int64_t T = plan.T, K = plan.K;
    if (d < 1) bad("moe_combine: d must be >= 1");
    if (int64_t(y.size()) != T * K * d) bad("moe_combine: y must be [T·K, d]");
    if (int64_t(w.size()) != T * K) bad("moe_combine: w must be [T, K]");
    if (!shared.empty() && int64_t(shared.size()) != T * d) bad("moe_combine: shared must be [T, d] or empty");
    if (int64_t(out.size()) != T * d) bad("moe_combine: out must be [T, d]");
    if (int64_t(plan.row_of_slot.size()) != T * K) bad("moe_combine: plan.row_of_slot must have T·K entries");
    if (T == 0) return;
    DeviceBuffer<float> dy(y), dw(w), dsh(shared), dout(out);
    DeviceBuffer<int32_t> dinv(plan.row_of_slot);
    Stream s;
    launch_moe_combine({dy.data(), dw.data(), shared.empty() ? nullptr : dsh.data(), dinv.data(), dout.data(), T, K, d},
                       s.get());
    s.sync();
    out = dout.download();
}

}  // namespace dsv2::cuda
