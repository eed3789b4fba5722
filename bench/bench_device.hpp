// Device helpers shared by the GPU benchmarks, dsv2_gpu_bench (bench/mla_decode_bench.cu) and
// dsv2_gpu_moe_bench (bench/moe_bench.cpp), in plain C++ so that a benchmark which includes Eigen
// through the reference headers (moe_bench.cpp, which drives the Backend and the Engine) stays a
// .cpp: random fills of device memory, CUDA-event timing, a device-to-device copy and the dense
// cuBLAS products the MoE layer is judged against. Implemented in bench_device.cu (no Eigen, no
// reference headers; the plain host helpers are in bench_common.hpp). Every function throws
// std::runtime_error (naming the CUDA or cuBLAS call) on failure.
#pragma once

#include <cstdint>
#include <functional>
#include <vector>

namespace dsv2::bench {

/// x[i] = scale · u_i, u_i uniform in [−1, 1) from a counter hash of (i, seed)
/// (bench_common.hpp: uniform_pm1) — never zeros. x is device memory: n floats, or n bf16
/// values (bf16 = true; rounded to nearest even). Asynchronous, on the legacy default stream.
void device_fill_uniform(void* x, int64_t n, bool bf16, uint32_t seed, float scale);

/// cudaDeviceSynchronize, checked.
void device_synchronize();

/// Seconds of each of `reps` calls of f(rep), each between two CUDA events recorded on the legacy
/// default stream (one pair per call; one cudaDeviceSynchronize after the last).
std::vector<double> time_each(int reps, const std::function<void(int)>& f);

/// A device-to-device cudaMemcpy of `gib` GiB: the median of 5 after one warm-up, each between
/// two CUDA events; bytes counts what was read plus what was written (2 × the size). All zeros
/// for gib = 0.
struct CopyResult {
    double bytes = 0, median_s = 0, gbs = 0;
};
CopyResult measure_copy(double gib);

/// The dense equivalent of a layer's expert products: rows = T·(K + N_s) token-expert rows, each
/// multiplied by one [2·d_e, d] gate|up matrix and one [d, d_e] down matrix (y = x Wᵀ) — two
/// plain cuBLAS GEMMs (cublasGemmEx, row-major as cuBLAS sees it transposed: W^T·x^T) with
/// the operands in bf16 (or fp32), fp32 output and CUBLAS_COMPUTE_32F (no TF32), the same
/// storage and accumulation as Backend::linear_grouped. Inputs: random, one set (the products
/// are compute-bound; their operands are reused from L2 by cuBLAS' tiling whatever we do).
/// FLOPs = 2·rows·3·d·d_e. The median of `iters` pairs of GEMMs after `warmup`, CUDA events.
/// (dsv2_gpu_moe_bench's prefill reference.)
struct GemmResult {
    int64_t rows = 0, d = 0, d_e = 0;
    double flops = 0, median_s = 0, min_s = 0, tflops = 0;
};
GemmResult measure_expert_gemm(int64_t rows, int64_t d, int64_t d_e, bool bf16, int iters, int warmup);

}  // namespace dsv2::bench
