// Host-array API of the projections (cuda/src/linear.cu), callable from plain C++ (no CUDA
// headers): upload, y = x Wᵀ through cuBLAS, download. Reproduces dsv2::linear
// (reference/src/layers.cpp); proved by tests/cuda/test_cuda_linear.cpp (NOT YET RUN ON A GPU).
// Device-pointer level: dsv2/cuda/linear.cuh. bf16 data is passed as uint16_t bit patterns
// (dsv2::to_bf16 rounds to nearest even).
//
//   x [T, in], W [out, in] (row-major, PyTorch layout) → y [T, out]
#pragma once

#include <cstdint>
#include <vector>

namespace dsv2::cuda {

/// fp32: CUBLAS_COMPUTE_32F, no TF32.
std::vector<float> linear(const std::vector<float>& x, const std::vector<float>& W, int T, int in, int out);
/// bf16 x and W, fp32 accumulation, fp32 y.
std::vector<float> linear(const std::vector<uint16_t>& x_bf16, const std::vector<uint16_t>& W_bf16, int T, int in,
                          int out);

/// The same with y supplied by the caller (size T·out): its contents are uploaded as given (so a
/// test can poison them) and every element is overwritten.
void linear(const std::vector<float>& x, const std::vector<float>& W, int T, int in, int out, std::vector<float>& y);
void linear(const std::vector<uint16_t>& x_bf16, const std::vector<uint16_t>& W_bf16, int T, int in, int out,
            std::vector<float>& y);
/// bf16 y (fp32 accumulation, one rounding to nearest even at the end).
void linear(const std::vector<uint16_t>& x_bf16, const std::vector<uint16_t>& W_bf16, int T, int in, int out,
            std::vector<uint16_t>& y_bf16);

}  // namespace dsv2::cuda
