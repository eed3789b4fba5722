// Device-pointer level of the small kernels the whole-model engine needs besides attention, the
// router and cuBLAS (cuda/src/elementwise.cu, cuda/src/rmsnorm.cu). Each reproduces one
// HostBackend operation (engine/src/backend_host.cpp), which reproduces the oracle function named;
// tests/cuda/test_cuda_backend.cpp checks each against HostBackend (NOT YET RUN ON A GPU). Every
// launcher returns at once for an empty shape, launches on `stream`, and checks the launch.
#pragma once

#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cstdint>

namespace dsv2::cuda {

/// h[t, :] = float(table[tokens[t], :])  (the lookup of dsv2::Model::forward).
///   table [V, d] (E = float or __nv_bfloat16), tokens [T] → h [T, d]
template <typename E>
void launch_embed(const E* table, const int32_t* tokens, int64_t T, int64_t d, float* h, cudaStream_t stream);

/// dst[r, dst_col + j] = src[r, src_col + j], r < rows, j < width; row strides src_ld, dst_ld.
void launch_copy_cols(const float* src, int64_t src_ld, int64_t src_col, float* dst, int64_t dst_ld, int64_t dst_col,
                      int64_t rows, int64_t width, cudaStream_t stream);

/// out[i] = a[i] + b[i], i < n (out may alias a or b).
void launch_add(const float* a, const float* b, float* out, int64_t n, cudaStream_t stream);

/// out[r, j] = silu(gu[r, j]) · gu[r, inter + j]  (dsv2::swiglu's middle).   gu [rows, 2·inter] → out [rows, inter]
void launch_silu_mul(const float* gu, float* out, int64_t rows, int64_t inter, cudaStream_t stream);

/// y[i] = bf16(x[i]) rounded to nearest even (dsv2::float_to_bf16_bits on the host).
void launch_to_bf16(const float* x, __nv_bfloat16* y, int64_t n, cudaStream_t stream);

/// dsv2::rms_norm on device pointers (cuda/src/rmsnorm.cu).   x [T, n], w [n] → y [T, n]
void launch_rms_norm(const float* x, const float* w, float* y, int64_t T, int64_t n, float eps, cudaStream_t stream);

}  // namespace dsv2::cuda
