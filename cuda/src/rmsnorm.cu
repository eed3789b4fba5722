// RMSNorm — reproduces dsv2::rms_norm (reference/src/layers.cpp); proved by
// tests/cuda/test_cuda_rmsnorm.cpp against the fp64 oracle.
// One block per token row; each thread accumulates a strided part of Σx², the block reduces it
// in shared memory (fp32), then every thread scales its elements.
#include "dsv2/cuda/buffer.cuh"
#include "dsv2/cuda/elementwise.cuh"
#include "dsv2/cuda/ops.hpp"

#include <cstdint>
#include <stdexcept>

namespace dsv2::cuda {

namespace {

constexpr int kThreads = 256;

__global__ void rms_norm_kernel(const float* __restrict__ x, const float* __restrict__ w, float* __restrict__ y,
                                int n, float eps) {
    __shared__ float partial[kThreads];
    const float* row = x + size_t(blockIdx.x) * n;
    float ss = 0.f;
    for (int k = threadIdx.x; k < n; k += blockDim.x) ss += row[k] * row[k];
    partial[threadIdx.x] = ss;
    __syncthreads();
    for (int stride = blockDim.x / 2; stride > 0; stride /= 2) {
        if (threadIdx.x < stride) partial[threadIdx.x] += partial[threadIdx.x + stride];
        __syncthreads();
    }
    const float inv_rms = rsqrtf(partial[0] / float(n) + eps);
    float* out = y + size_t(blockIdx.x) * n;
    for (int k = threadIdx.x; k < n; k += blockDim.x) out[k] = row[k] * inv_rms * w[k];
}

}  // namespace

void launch_rms_norm(const float* x, const float* w, float* y, int64_t T, int64_t n, float eps, cudaStream_t stream) {
    if (T < 0 || n <= 0 || T > int64_t(INT32_MAX) || n > int64_t(INT32_MAX))
        throw std::invalid_argument("dsv2::cuda rms_norm: bad shape");
    if (T == 0) return;
    if (!x || !w || !y) throw std::invalid_argument("dsv2::cuda rms_norm: null pointer");
    rms_norm_kernel<<<unsigned(T), kThreads, 0, stream>>>(x, w, y, int(n), eps);
    DSV2_LAUNCH_CHECK(rms_norm_kernel);
}

std::vector<float> rms_norm(const std::vector<float>& x, const std::vector<float>& w, int T, int n, float eps) {
    if (T < 0 || n <= 0 || x.size() != size_t(T) * size_t(n) || w.size() != size_t(n))
        throw std::invalid_argument("cuda::rms_norm: shape mismatch");
    if (T == 0) return {};
    DeviceBuffer<float> dx(x), dw(w), dy(x.size());
    rms_norm_kernel<<<T, kThreads>>>(dx.data(), dw.data(), dy.data(), n, eps);
    DSV2_LAUNCH_CHECK(rms_norm_kernel);
    return dy.download();
}

}  // namespace dsv2::cuda
