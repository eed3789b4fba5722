// Error checking for the CUDA path: every runtime call goes through CUDA_CHECK, every kernel
// launch is followed by DSV2_LAUNCH_CHECK. Set DSV2_CUDA_SYNC=1 in the environment to
// synchronise after each launch, so an asynchronous fault is reported at the launch that made it.
// Every cuBLAS call goes through CUBLAS_CHECK.
#pragma once

#include <cublas_v2.h>
#include <cuda_runtime.h>

#include <stdexcept>
#include <string>

namespace dsv2::cuda {

[[noreturn]] void throw_cuda_error(cudaError_t err, const char* expr, const char* file, int line);
[[noreturn]] void throw_cublas_error(cublasStatus_t st, const char* expr, const char* file, int line);
bool sync_after_launch();  ///< DSV2_CUDA_SYNC=1

}  // namespace dsv2::cuda

/// Throws std::runtime_error naming the expression, file, line and CUDA error.
#define CUDA_CHECK(expr)                                                                   \
    do {                                                                                   \
        const cudaError_t dsv2_err_ = (expr);                                              \
        if (dsv2_err_ != cudaSuccess) ::dsv2::cuda::throw_cuda_error(dsv2_err_, #expr, __FILE__, __LINE__); \
    } while (0)

/// Throws std::runtime_error naming the cuBLAS call, file, line and status (name and text).
#define CUBLAS_CHECK(expr)                                                                 \
    do {                                                                                   \
        const cublasStatus_t dsv2_st_ = (expr);                                            \
        if (dsv2_st_ != CUBLAS_STATUS_SUCCESS) ::dsv2::cuda::throw_cublas_error(dsv2_st_, #expr, __FILE__, __LINE__); \
    } while (0)

/// After a kernel launch: the launch error, and in debug mode the kernel's own.
#define DSV2_LAUNCH_CHECK(kernel_name)                                                     \
    do {                                                                                   \
        CUDA_CHECK(cudaGetLastError());                                                    \
        if (::dsv2::cuda::sync_after_launch()) CUDA_CHECK(cudaDeviceSynchronize());        \
    } while (0)
