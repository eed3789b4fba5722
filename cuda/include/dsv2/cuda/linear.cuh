// Device-pointer level of the projections (cuda/src/linear.cu): y = x Wᵀ through cuBLAS, the
// GPU twin of dsv2::linear (reference/src/layers.cpp). Proved by tests/cuda/test_cuda_linear.cpp
// (NOT YET RUN ON A GPU). Host-array convenience: dsv2/cuda/linear.hpp.
//
// Layout (row-major, PyTorch's): x [T, in], W [out, in], y [T, out].
// Precision: fp32 storage with fp32 arithmetic (CUBLAS_COMPUTE_32F; no TF32, so the oracle's
// 1e-5 bound holds), or bf16 storage of x and W with fp32 accumulation (CUBLAS_COMPUTE_32F) and
// y in fp32 or bf16 (rounded to nearest even once, at the end).
#pragma once

#include <cublas_v2.h>
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <utility>

#include "dsv2/cuda/check.cuh"

namespace dsv2::cuda {

/// A cuBLAS handle, destroyed with its owner; move-only. Math mode CUBLAS_DEFAULT_MATH |
/// CUBLAS_MATH_DISALLOW_REDUCED_PRECISION_REDUCTION: at least the requested precision in every
/// phase (no TF32 for fp32 data, no bf16 partial sums in a split-K reduction).
class CublasHandle {
public:
    CublasHandle();
    ~CublasHandle();
    CublasHandle(CublasHandle&& o) noexcept : h_(o.h_) { o.h_ = nullptr; }
    CublasHandle& operator=(CublasHandle&& o) noexcept {
        std::swap(h_, o.h_);
        return *this;
    }
    CublasHandle(const CublasHandle&) = delete;
    CublasHandle& operator=(const CublasHandle&) = delete;
    cublasHandle_t get() const { return h_; }

private:
    cublasHandle_t h_ = nullptr;
};

/// y = x Wᵀ on `stream` (reproduces dsv2::linear). T, in, out ≥ 0; T = 0 or out = 0 does
/// nothing; in = 0 writes y = 0. Every element of y is written. Throws std::invalid_argument on
/// a negative size or a null pointer where elements exist.
///   x [T, in], W [out, in] (device, row-major) → y [T, out]
void launch_linear(cublasHandle_t h, const float* x, const float* W, float* y, int T, int in, int out,
                   cudaStream_t stream);
void launch_linear(cublasHandle_t h, const __nv_bfloat16* x, const __nv_bfloat16* W, float* y, int T, int in, int out,
                   cudaStream_t stream);
void launch_linear(cublasHandle_t h, const __nv_bfloat16* x, const __nv_bfloat16* W, __nv_bfloat16* y, int T, int in,
                   int out, cudaStream_t stream);

/// One product per head, heads side by side (the per-head products of the absorbed MLA form):
///   y[t, i, :] = x[t, i, :] W_iᵀ, i < n, W = n matrices [out, in] back to back
///   x [T, n, in], W [n, out, in] → y [T, n, out]   (one cublasGemmStridedBatchedEx, batch = n)
/// Precision as launch_linear. Reproduces HostBackend::linear_heads; tests/cuda/test_cuda_backend.cpp.
void launch_linear_heads(cublasHandle_t h, const float* x, const float* W, float* y, int T, int n, int in, int out,
                         cudaStream_t stream);
void launch_linear_heads(cublasHandle_t h, const __nv_bfloat16* x, const __nv_bfloat16* W, float* y, int T, int n,
                         int in, int out, cudaStream_t stream);

}  // namespace dsv2::cuda
