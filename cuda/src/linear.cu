// Projections through cuBLAS: y = x Wᵀ, the GPU twin of dsv2::linear (reference/src/layers.cpp).
// Proved by tests/cuda/test_cuda_linear.cpp (label gpu; NOT YET RUN ON A GPU): fp32 vs
// dsv2::linear<double>, bf16 vs the fp64 product of the bf16-rounded inputs and within a derived
// bound of the unrounded one, odd shapes, NaN-poisoned outputs that must all be written.
//
// Row-major → column-major mapping. cuBLAS is column-major: a row-major [r, c] array with row
// stride c is the same memory as a column-major [c, r] array with leading dimension c, i.e. its
// transpose. So, in column-major terms,
//   x (row-major [T, in])   is  xᵀ [in, T],   ld = in
//   W (row-major [out, in]) is  Wᵀ [in, out], ld = in
//   y (row-major [T, out])  is  yᵀ [out, T],  ld = out
// and y = x Wᵀ  ⇔  yᵀ = W xᵀ = op_T(Wᵀ-buffer) · op_N(xᵀ-buffer):
//   gemm(transa = T on W, transb = N on x, m = out, n = T, k = in,
//        A = W, lda = in, B = x, ldb = in, C = y, ldc = out).
// Plain loop it equals:  y[t·out + j] = Σ_k x[t·in + k] · W[j·in + k].
#include <cublas_v2.h>

#include <stdexcept>
#include <string>
#include <vector>

#include "dsv2/cuda/buffer.cuh"
#include "dsv2/cuda/check.cuh"
#include "dsv2/cuda/linear.cuh"
#include "dsv2/cuda/linear.hpp"

namespace dsv2::cuda {

void throw_cublas_error(cublasStatus_t st, const char* expr, const char* file, int line) {
    throw std::runtime_error(std::string(file) + ":" + std::to_string(line) + ": " + expr + " failed: " +
                             cublasGetStatusName(st) + " (" + cublasGetStatusString(st) + ")");
}

CublasHandle::CublasHandle() {
    CUBLAS_CHECK(cublasCreate(&h_));
    const cublasStatus_t st = cublasSetMathMode(
        h_, cublasMath_t(CUBLAS_DEFAULT_MATH | CUBLAS_MATH_DISALLOW_REDUCED_PRECISION_REDUCTION));
    if (st != CUBLAS_STATUS_SUCCESS) {  // the destructor does not run for a throwing constructor
        cublasDestroy(h_);
        h_ = nullptr;
        CUBLAS_CHECK(st);
    }
}

CublasHandle::~CublasHandle() {
    if (h_) cublasDestroy(h_);
}

namespace {

void require(bool ok, const char* what) {
    if (!ok) throw std::invalid_argument(std::string("dsv2::cuda linear: ") + what);
}

template <typename X, typename Y>
void gemm_impl(cublasHandle_t h, const X* x, const X* W, Y* y, int T, int in, int out, cudaStream_t stream,
               cudaDataType_t xtype, cudaDataType_t ytype) {
    require(T >= 0 && in >= 0 && out >= 0, "negative size");
    require(h != nullptr, "null cuBLAS handle");
    if (T == 0 || out == 0) return;
    require(y != nullptr, "null y");
    if (in == 0) {  // an empty sum: y = 0 (all-zero bits are +0 in fp32 and bf16)
        CUDA_CHECK(cudaMemsetAsync(y, 0, size_t(T) * size_t(out) * sizeof(Y), stream));
        return;
    }
    require(x != nullptr && W != nullptr, "null x or W");
    const float alpha = 1.f, beta = 0.f;  // β = 0: cuBLAS does not read y, so NaN there is overwritten
    CUBLAS_CHECK(cublasSetStream(h, stream));
    CUBLAS_CHECK(cublasGemmEx(h, CUBLAS_OP_T, CUBLAS_OP_N, out, T, in, &alpha, W, xtype, in, x, xtype, in, &beta, y,
                              ytype, out, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
    if (sync_after_launch()) CUDA_CHECK(cudaStreamSynchronize(stream));
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// Device-pointer level (dsv2/cuda/linear.cuh)

void launch_linear(cublasHandle_t h, const float* x, const float* W, float* y, int T, int in, int out,
                   cudaStream_t stream) {
    gemm_impl(h, x, W, y, T, in, out, stream, CUDA_R_32F, CUDA_R_32F);
}
void launch_linear(cublasHandle_t h, const __nv_bfloat16* x, const __nv_bfloat16* W, float* y, int T, int in, int out,
                   cudaStream_t stream) {
    gemm_impl(h, x, W, y, T, in, out, stream, CUDA_R_16BF, CUDA_R_32F);
}
void launch_linear(cublasHandle_t h, const __nv_bfloat16* x, const __nv_bfloat16* W, __nv_bfloat16* y, int T, int in,
                   int out, cudaStream_t stream) {
    gemm_impl(h, x, W, y, T, in, out, stream, CUDA_R_16BF, CUDA_R_16BF);
}

// Per head i (batch), in the column-major terms above with x_i, y_i the head's columns:
//   x_i is x_iᵀ [in, T] with ld = n·in (stride in between heads); y_i is y_iᵀ [out, T] with
//   ld = n·out (stride out); W_i is W_iᵀ [in, out] with ld = in (stride out·in); so
//   gemm(T, N, m = out, n = T, k = in, A = W_i, lda = in, B = x_i, ldb = n·in, C = y_i, ldc = n·out).
// Plain loop it equals:  y[(t·n + i)·out + j] = Σ_k x[(t·n + i)·in + k] · W[(i·out + j)·in + k].
template <typename X>
void heads_impl(cublasHandle_t h, const X* x, const X* W, float* y, int T, int n, int in, int out, cudaStream_t stream,
                cudaDataType_t xtype) {
    require(T >= 0 && n >= 0 && in >= 0 && out >= 0, "negative size");
    require(h != nullptr, "null cuBLAS handle");
    if (T == 0 || n == 0 || out == 0) return;
    require(y != nullptr, "null y");
    if (in == 0) {
        CUDA_CHECK(cudaMemsetAsync(y, 0, size_t(T) * size_t(n) * size_t(out) * sizeof(float), stream));
        return;
    }
    require(x != nullptr && W != nullptr, "null x or W");
    const float alpha = 1.f, beta = 0.f;
    CUBLAS_CHECK(cublasSetStream(h, stream));
    CUBLAS_CHECK(cublasGemmStridedBatchedEx(h, CUBLAS_OP_T, CUBLAS_OP_N, out, T, in, &alpha, W, xtype, in,
                                            (long long)out * in, x, xtype, n * in, (long long)in, &beta, y, CUDA_R_32F,
                                            n * out, (long long)out, n, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
    if (sync_after_launch()) CUDA_CHECK(cudaStreamSynchronize(stream));
}

void launch_linear_heads(cublasHandle_t h, const float* x, const float* W, float* y, int T, int n, int in, int out,
                         cudaStream_t stream) {
    heads_impl(h, x, W, y, T, n, in, out, stream, CUDA_R_32F);
}
void launch_linear_heads(cublasHandle_t h, const __nv_bfloat16* x, const __nv_bfloat16* W, float* y, int T, int n,
                         int in, int out, cudaStream_t stream) {
    heads_impl(h, x, W, y, T, n, in, out, stream, CUDA_R_16BF);
}

// ---------------------------------------------------------------------------------------------
// Host-array wrappers (dsv2/cuda/linear.hpp)

namespace {

template <typename E, typename H, typename YE, typename YH>
void host_impl(const std::vector<H>& x, const std::vector<H>& W, int T, int in, int out, std::vector<YH>& y) {
    static_assert(sizeof(E) == sizeof(H) && sizeof(YE) == sizeof(YH), "host and device types have the same bits");
    require(T >= 0 && in >= 0 && out >= 0, "negative size");
    require(x.size() == size_t(T) * size_t(in), "x size ≠ T·in");
    require(W.size() == size_t(out) * size_t(in), "W size ≠ out·in");
    require(y.size() == size_t(T) * size_t(out), "y size ≠ T·out");
    if (y.empty()) return;
    DeviceBuffer<H> dx(x), dW(W);
    DeviceBuffer<YH> dy(y);  // uploaded as given: every element must be overwritten
    CublasHandle h;
    launch_linear(h.get(), reinterpret_cast<const E*>(dx.data()), reinterpret_cast<const E*>(dW.data()),
                  reinterpret_cast<YE*>(dy.data()), T, in, out, nullptr);
    y = dy.download();
}

}  // namespace

std::vector<float> linear(const std::vector<float>& x, const std::vector<float>& W, int T, int in, int out) {
    std::vector<float> y(size_t(T > 0 ? T : 0) * size_t(out > 0 ? out : 0));
    linear(x, W, T, in, out, y);
    return y;
}
std::vector<float> linear(const std::vector<uint16_t>& x_bf16, const std::vector<uint16_t>& W_bf16, int T, int in,
                          int out) {
    std::vector<float> y(size_t(T > 0 ? T : 0) * size_t(out > 0 ? out : 0));
    linear(x_bf16, W_bf16, T, in, out, y);
    return y;
}
void linear(const std::vector<float>& x, const std::vector<float>& W, int T, int in, int out, std::vector<float>& y) {
    host_impl<float, float, float, float>(x, W, T, in, out, y);
}
void linear(const std::vector<uint16_t>& x_bf16, const std::vector<uint16_t>& W_bf16, int T, int in, int out,
            std::vector<float>& y) {
    host_impl<__nv_bfloat16, uint16_t, float, float>(x_bf16, W_bf16, T, in, out, y);
}
void linear(const std::vector<uint16_t>& x_bf16, const std::vector<uint16_t>& W_bf16, int T, int in, int out,
            std::vector<uint16_t>& y_bf16) {
    host_impl<__nv_bfloat16, uint16_t, __nv_bfloat16, uint16_t>(x_bf16, W_bf16, T, in, out, y_bf16);
}

}  // namespace dsv2::cuda
