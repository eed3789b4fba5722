// The small kernels of the whole-model engine (declared in dsv2/cuda/elementwise.cuh). NOT YET
// RUN ON A GPU; tests/cuda/test_cuda_backend.cpp checks each against its HostBackend twin
// (engine/src/backend_host.cpp). Grid-stride loops, one element per thread per step.
#include <stdexcept>
#include <string>

#include "dsv2/cuda/check.cuh"
#include "dsv2/cuda/elementwise.cuh"

namespace dsv2::cuda {

namespace {

constexpr int kThreads = 256;
constexpr int64_t kMaxBlocks = int64_t(1) << 20;

unsigned blocks_for(int64_t n) { return unsigned(std::min<int64_t>((n + kThreads - 1) / kThreads, kMaxBlocks)); }

void require(bool ok, const std::string& what) {
    if (!ok) throw std::invalid_argument("dsv2::cuda elementwise: " + what);
}

__device__ __forceinline__ float to_f32(float x) { return x; }
__device__ __forceinline__ float to_f32(__nv_bfloat16 x) { return __bfloat162float(x); }

// Reproduces HostBackend::embed (the lookup of dsv2::Model::forward).
template <typename E>
__global__ void embed_kernel(const E* __restrict__ table, const int32_t* __restrict__ tokens, int64_t n, int64_t d,
                             float* __restrict__ h) {
    for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x) {
        const int64_t t = i / d, c = i % d;
        h[i] = to_f32(table[int64_t(tokens[t]) * d + c]);
    }
}

// Reproduces HostBackend::copy_cols.
__global__ void copy_cols_kernel(const float* __restrict__ src, int64_t src_ld, int64_t src_col, float* __restrict__ dst,
                                 int64_t dst_ld, int64_t dst_col, int64_t n, int64_t width) {
    for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x) {
        const int64_t r = i / width, j = i % width;
        dst[r * dst_ld + dst_col + j] = src[r * src_ld + src_col + j];
    }
}

// Reproduces HostBackend::add (the residual adds of dsv2::Model::decoder_layer).
__global__ void add_kernel(const float* a, const float* b, float* out, int64_t n) {
    for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x)
        out[i] = a[i] + b[i];
}

// Reproduces HostBackend::silu_mul (dsv2::silu(g) ⊙ u of dsv2::swiglu).
__global__ void silu_mul_kernel(const float* __restrict__ gu, float* __restrict__ out, int64_t n, int64_t inter) {
    for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x) {
        const int64_t r = i / inter, j = i % inter;
        const float g = gu[r * 2 * inter + j], u = gu[r * 2 * inter + inter + j];
        out[i] = g / (1.f + expf(-g)) * u;
    }
}

// The bf16 input of a product (HostBackend rounds the same way: to nearest even).
__global__ void to_bf16_kernel(const float* __restrict__ x, __nv_bfloat16* __restrict__ y, int64_t n) {
    for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x)
        y[i] = __float2bfloat16_rn(x[i]);
}

}  // namespace

template <typename E>
void launch_embed(const E* table, const int32_t* tokens, int64_t T, int64_t d, float* h, cudaStream_t stream) {
    require(T >= 0 && d >= 1, "embed: bad shape");
    if (T == 0) return;
    require(table && tokens && h, "embed: null pointer");
    embed_kernel<E><<<blocks_for(T * d), kThreads, 0, stream>>>(table, tokens, T * d, d, h);
    DSV2_LAUNCH_CHECK(embed_kernel);
}
template void launch_embed<float>(const float*, const int32_t*, int64_t, int64_t, float*, cudaStream_t);
template void launch_embed<__nv_bfloat16>(const __nv_bfloat16*, const int32_t*, int64_t, int64_t, float*, cudaStream_t);

void launch_copy_cols(const float* src, int64_t src_ld, int64_t src_col, float* dst, int64_t dst_ld, int64_t dst_col,
                      int64_t rows, int64_t width, cudaStream_t stream) {
    require(rows >= 0 && width >= 0 && src_col >= 0 && dst_col >= 0 && src_col + width <= src_ld &&
                dst_col + width <= dst_ld,
            "copy_cols: columns outside the rows");
    if (rows == 0 || width == 0) return;
    require(src && dst, "copy_cols: null pointer");
    copy_cols_kernel<<<blocks_for(rows * width), kThreads, 0, stream>>>(src, src_ld, src_col, dst, dst_ld, dst_col,
                                                                       rows * width, width);
    DSV2_LAUNCH_CHECK(copy_cols_kernel);
}

void launch_add(const float* a, const float* b, float* out, int64_t n, cudaStream_t stream) {
    require(n >= 0, "add: bad size");
    if (n == 0) return;
    require(a && b && out, "add: null pointer");
    add_kernel<<<blocks_for(n), kThreads, 0, stream>>>(a, b, out, n);
    DSV2_LAUNCH_CHECK(add_kernel);
}

void launch_silu_mul(const float* gu, float* out, int64_t rows, int64_t inter, cudaStream_t stream) {
    require(rows >= 0 && inter >= 1, "silu_mul: bad shape");
    if (rows == 0) return;
    require(gu && out, "silu_mul: null pointer");
    silu_mul_kernel<<<blocks_for(rows * inter), kThreads, 0, stream>>>(gu, out, rows * inter, inter);
    DSV2_LAUNCH_CHECK(silu_mul_kernel);
}

void launch_to_bf16(const float* x, __nv_bfloat16* y, int64_t n, cudaStream_t stream) {
    require(n >= 0, "to_bf16: bad size");
    if (n == 0) return;
    require(x && y, "to_bf16: null pointer");
    to_bf16_kernel<<<blocks_for(n), kThreads, 0, stream>>>(x, y, n);
    DSV2_LAUNCH_CHECK(to_bf16_kernel);
}

}  // namespace dsv2::cuda
