// ex9 — RMSNorm as a CUDA kernel: a solution. One block of 256 threads per row; the sum of
// squares is reduced with warp shuffles, then across the block's 8 warps in shared memory.
#include <stdexcept>

#include "dsv2/cuda/buffer.cuh"
#include "dsv2/cuda/check.cuh"
#include "ex9.hpp"

namespace ex9 {

namespace {

constexpr int kThreads = 256;

__device__ float warp_sum(float v) {
    for (int offset = 16; offset > 0; offset /= 2) v += __shfl_xor_sync(0xffffffffu, v, offset);
    return v;
}

__global__ void rms_norm_kernel(const float* __restrict__ x, const float* __restrict__ w, float* __restrict__ y,
                                int n, float eps) {
    __shared__ float warp_part[kThreads / 32];
    const float* row = x + size_t(blockIdx.x) * n;
    float ss = 0.f;
    for (int k = threadIdx.x; k < n; k += blockDim.x) ss += row[k] * row[k];
    ss = warp_sum(ss);
    if (threadIdx.x % 32 == 0) warp_part[threadIdx.x / 32] = ss;
    __syncthreads();
    if (threadIdx.x < 32) {
        float v = threadIdx.x < kThreads / 32 ? warp_part[threadIdx.x] : 0.f;
        v = warp_sum(v);
        if (threadIdx.x == 0) warp_part[0] = v;
    }
    __syncthreads();
    const float inv_rms = rsqrtf(warp_part[0] / float(n) + eps);
    float* out = y + size_t(blockIdx.x) * n;
    for (int k = threadIdx.x; k < n; k += blockDim.x) out[k] = row[k] * inv_rms * w[k];
}

}  // namespace

std::vector<float> rms_norm(const std::vector<float>& x, const std::vector<float>& w, int T, int n, float eps) {
    if (T < 0 || n <= 0 || x.size() != size_t(T) * size_t(n) || w.size() != size_t(n))
        throw std::invalid_argument("ex9::rms_norm: shape mismatch");
    if (T == 0) return {};
    dsv2::cuda::DeviceBuffer<float> dx(x), dw(w), dy(x.size());
    rms_norm_kernel<<<T, kThreads>>>(dx.data(), dw.data(), dy.data(), n, eps);
    DSV2_LAUNCH_CHECK(rms_norm_kernel);
    return dy.download();
}

}  // namespace ex9
