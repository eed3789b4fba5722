// Device helpers shared by the GPU benchmarks: random fills, CUDA-event timing, a device copy,
// the dense cuBLAS reference of the expert products (bench/bench_device.hpp says what each
// measures). No Eigen and no reference headers here.
#include <cublas_v2.h>
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>
#include <functional>
#include <vector>

#include "bench_common.hpp"
#include "bench_device.hpp"
#include "dsv2/cuda/buffer.cuh"
#include "dsv2/cuda/check.cuh"

using dsv2::cuda::DeviceBuffer;

namespace dsv2::bench {
namespace {

template <typename T>
__device__ __forceinline__ T from_float(float v);
template <>
__device__ __forceinline__ float from_float<float>(float v) { return v; }
template <>
__device__ __forceinline__ __nv_bfloat16 from_float<__nv_bfloat16>(float v) { return __float2bfloat16_rn(v); }

template <typename T>
__global__ void fill_uniform_kernel(T* x, int64_t n, uint32_t seed, float scale) {
    for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x)
        x[i] = from_float<T>(scale * uniform_pm1(uint64_t(i), seed));
}

/// CUDA events, destroyed with their owner.
struct EventPair {
    cudaEvent_t a = nullptr, b = nullptr;
    EventPair() {
        CUDA_CHECK(cudaEventCreate(&a));
        CUDA_CHECK(cudaEventCreate(&b));
    }
    ~EventPair() {
        if (a) cudaEventDestroy(a);
        if (b) cudaEventDestroy(b);
    }
    EventPair(const EventPair&) = delete;
    EventPair& operator=(const EventPair&) = delete;
};

/// A cuBLAS handle on the legacy default stream, default math mode (no TF32 with COMPUTE_32F).
struct Handle {
    cublasHandle_t h = nullptr;
    Handle() { CUBLAS_CHECK(cublasCreate(&h)); }
    ~Handle() {
        if (h) cublasDestroy(h);
    }
    Handle(const Handle&) = delete;
    Handle& operator=(const Handle&) = delete;
};

/// y [rows, out] (fp32) = x [rows, in] · W [out, in]ᵀ, row-major; in cuBLAS' column-major view
/// yᵀ [out, rows] = W [out, in] (stored as [in, out] column-major, hence OP_T) · xᵀ [in, rows].
void gemm(cublasHandle_t h, const void* x, const void* W, float* y, int64_t rows, int64_t in, int64_t out, bool bf16) {
    const float one = 1.f, zero = 0.f;
    const cudaDataType_t t = bf16 ? CUDA_R_16BF : CUDA_R_32F;
    CUBLAS_CHECK(cublasGemmEx(h, CUBLAS_OP_T, CUBLAS_OP_N, int(out), int(rows), int(in), &one, W, t, int(in), x, t,
                              int(in), &zero, y, CUDA_R_32F, int(out), CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
}

}  // namespace

void device_fill_uniform(void* x, int64_t n, bool bf16, uint32_t seed, float scale) {
    if (n <= 0) return;
    if (bf16) {
        fill_uniform_kernel<__nv_bfloat16><<<1024, 256>>>(static_cast<__nv_bfloat16*>(x), n, seed, scale);
        DSV2_LAUNCH_CHECK(fill_uniform_kernel);
    } else {
        fill_uniform_kernel<float><<<1024, 256>>>(static_cast<float*>(x), n, seed, scale);
        DSV2_LAUNCH_CHECK(fill_uniform_kernel);
    }
}

void device_synchronize() { CUDA_CHECK(cudaDeviceSynchronize()); }

std::vector<double> time_each(int reps, const std::function<void(int)>& f) {
    std::vector<EventPair> ev(static_cast<size_t>(reps));
    for (int r = 0; r < reps; ++r) {
        CUDA_CHECK(cudaEventRecord(ev[size_t(r)].a, nullptr));
        f(r);
        CUDA_CHECK(cudaEventRecord(ev[size_t(r)].b, nullptr));
    }
    CUDA_CHECK(cudaDeviceSynchronize());
    std::vector<double> s(static_cast<size_t>(reps));
    for (int r = 0; r < reps; ++r) {
        float ms = 0;
        CUDA_CHECK(cudaEventElapsedTime(&ms, ev[size_t(r)].a, ev[size_t(r)].b));
        s[size_t(r)] = ms * 1e-3;
    }
    return s;
}

CopyResult measure_copy(double gib) {
    CopyResult c;
    const size_t n = size_t(gib * 1073741824.0);
    if (n == 0) return c;
    DeviceBuffer<unsigned char> src(n), dst(n);
    CUDA_CHECK(cudaMemset(src.data(), 0x5A, n));
    CUDA_CHECK(cudaMemcpy(dst.data(), src.data(), n, cudaMemcpyDeviceToDevice));  // warm-up
    const std::vector<double> t = time_each(5, [&](int) {
        CUDA_CHECK(cudaMemcpyAsync(dst.data(), src.data(), n, cudaMemcpyDeviceToDevice, nullptr));
    });
    c.bytes = 2.0 * double(n);
    c.median_s = median(t);
    c.gbs = c.bytes / c.median_s / 1e9;
    return c;
}

GemmResult measure_expert_gemm(int64_t rows, int64_t d, int64_t d_e, bool bf16, int iters, int warmup) {
    GemmResult g;
    g.rows = rows, g.d = d, g.d_e = d_e;
    g.flops = 2.0 * double(rows) * 3.0 * double(d) * double(d_e);
    if (rows <= 0 || iters <= 0) return g;
    const size_t eb = bf16 ? 2 : 4;
    DeviceBuffer<unsigned char> x(size_t(rows * d) * eb), w1(size_t(2 * d_e * d) * eb), a(size_t(rows * d_e) * eb),
        w2(size_t(d * d_e) * eb);
    DeviceBuffer<float> y1(size_t(rows * 2 * d_e)), y2(size_t(rows * d));
    device_fill_uniform(x.data(), rows * d, bf16, 11, 1.f);
    device_fill_uniform(w1.data(), 2 * d_e * d, bf16, 12, 0.03f);
    device_fill_uniform(a.data(), rows * d_e, bf16, 13, 1.f);
    device_fill_uniform(w2.data(), d * d_e, bf16, 14, 0.04f);
    Handle h;
    auto pair = [&](int) {
        gemm(h.h, x.data(), w1.data(), y1.data(), rows, d, 2 * d_e, bf16);  // gate|up: [rows, d] → [rows, 2·d_e]
        gemm(h.h, a.data(), w2.data(), y2.data(), rows, d_e, d, bf16);      // down:    [rows, d_e] → [rows, d]
    };
    for (int r = 0; r < warmup; ++r) pair(r);
    CUDA_CHECK(cudaDeviceSynchronize());
    const std::vector<double> t = time_each(iters, pair);
    g.median_s = median(t);
    g.min_s = *std::min_element(t.begin(), t.end());
    g.tflops = g.flops / g.median_s / 1e12;
    return g;
}

}  // namespace dsv2::bench
