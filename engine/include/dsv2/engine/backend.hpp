// The operations the whole-model engine (dsv2/engine/engine.hpp) is built from, behind one
// interface with two implementations:
//
//   CudaBackend  (cuda/src/backend_cuda.cu)  the GPU: the kernels of cuda/src and cuBLAS;
//   HostBackend  (engine/src/backend_host.cpp) plain C++ loops and the kernels' CPU twins.
//
// The engine's orchestration (weight layout, splits, head strides, the cache, the MoE dispatch)
// is one piece of code over this interface, so it is tested on any machine with HostBackend
// against the fp64 oracle (tests/engine/test_engine_host.cpp, label cpu); the GPU then only has to get
// each operation right, which tests/cuda/test_cuda_backend.cpp checks op by op against HostBackend
// (label gpu). Plain C++: no CUDA headers.
//
// Conventions. Every pointer is backend memory (device memory for CudaBackend), obtained from
// alloc(). Matrices are row-major; weights keep PyTorch's (out, in) layout. Activations are fp32;
// weights are fp32 or bf16 (WeightType). With bf16 weights a product rounds its activation input
// to bf16 too (to nearest even) and accumulates in fp32, as a bf16 PyTorch model does.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "dsv2/engine/moe.hpp"
#include "dsv2/engine/prefill.hpp"

namespace dsv2::engine {

/// Storage type of the weights on a backend ("fp32" or "bf16" on the command line).
enum class WeightType { f32, bf16 };
const char* to_string(WeightType t);
/// "fp32" → f32, "bf16" → bf16; throws std::invalid_argument naming the text otherwise.
WeightType weight_type_from_string(const std::string& s);
inline size_t element_bytes(WeightType t) { return t == WeightType::bf16 ? 2 : 4; }

/// Memory owned by a backend; freed with this object.
class Buffer {
public:
    virtual ~Buffer() = default;
    void* data() const { return data_; }
    size_t bytes() const { return bytes_; }
    template <typename T>
    T* as() const { return static_cast<T*>(data_); }

protected:
    void* data_ = nullptr;
    size_t bytes_ = 0;
};

/// A weight resident on a backend: `count` matrices [rows, cols] back to back (count = 1 for one
/// Linear; experts or heads stacked otherwise), each in PyTorch's (out, in) layout.
struct WeightRef {
    const void* data = nullptr;
    WeightType type = WeightType::f32;
    int64_t rows = 0;   ///< out
    int64_t cols = 0;   ///< in
    int64_t count = 1;  ///< stacked matrices
    int64_t elements() const { return rows * cols * count; }
};

class Backend {
public:
    virtual ~Backend() = default;
    /// "cuda: NVIDIA H200, sm_90, 139 GiB" or "host".
    virtual std::string name() const = 0;

    // ---- memory -------------------------------------------------------------------------------
    /// `bytes` of backend memory (contents undefined; 0 bytes gives a null data()).
    virtual std::unique_ptr<Buffer> alloc(size_t bytes) = 0;
    virtual void upload(void* dst, const void* host_src, size_t bytes) = 0;
    virtual void download(void* host_dst, const void* src, size_t bytes) = 0;
    /// Waits until every queued operation has finished (a no-op on the host).
    virtual void sync() = 0;
    /// Bytes that alloc() can still hand out, as far as the backend can tell (cudaMemGetInfo's
    /// free memory; on the host, the memory the system reports available).
    virtual int64_t free_bytes() const = 0;

    /// n fp32 host values stored as `type` (bf16: rounded to nearest even on the host, then
    /// uploaded). Not virtual: alloc + upload_converted.
    std::unique_ptr<Buffer> upload_as(const float* host, size_t n, WeightType type);
    /// The same into existing backend memory at dst (n · element_bytes(type) bytes).
    void upload_converted(void* dst, const float* host, size_t n, WeightType type);

    // ---- dense operations (oracle functions in brackets) --------------------------------------
    /// h[t, :] = E[tokens[t], :] as fp32 [the lookup of dsv2::Model::forward]. Tokens are checked
    /// by the caller.   E [V, d] (count 1), tokens [T] → h [T, d]
    virtual void embed(const WeightRef& E, const int32_t* tokens, int64_t T, float* h) = 0;
    /// y = x · rsqrt(mean(x²) + eps) ⊙ w [dsv2::rms_norm].   x [T, n], w [n] fp32 → y [T, n]
    virtual void rms_norm(const float* x, const float* w, float* y, int64_t T, int64_t n, float eps) = 0;
    /// y = x Wᵀ [dsv2::linear].   x [T, W.cols], W (count 1) → y [T, W.rows]
    virtual void linear(const float* x, const WeightRef& W, float* y, int64_t T) = 0;
    /// One product per head, heads side by side in x and y: y[t, i, :] = x[t, i, :] W_iᵀ
    /// [the per-head products of dsv2::mla_attend_absorbed].
    ///   x [T, n, W.cols], W = n = W.count stacked [W.rows, W.cols] → y [T, n, W.rows]
    virtual void linear_heads(const float* x, const WeightRef& W, float* y, int64_t T) = 0;
    /// One product per expert over its contiguous rows: y[r, :] = x[r, :] W_eᵀ for r in
    /// [offsets[e], offsets[e + 1]), e < W.count [the expert loop of dsv2::moe_forward].
    ///   x [offsets[count], W.cols], offsets (host) [W.count + 1] → y [offsets[count], W.rows]
    virtual void linear_grouped(const float* x, const WeightRef& W, const std::vector<int32_t>& offsets, float* y) = 0;
    /// Interleaved RoPE with YaRN, in place [dsv2::apply_rope].
    ///   x [T, n·d_R], positions [T], inv_freq [d_R/2] (backend memory) and amplitude
    virtual void rope(float* x, const int64_t* positions, int64_t T, int64_t n, int64_t d_R, const double* inv_freq,
                      double amplitude) = 0;
    /// dst[r, dst_col + j] = src[r, src_col + j] for r < rows, j < width; row strides src_ld and
    /// dst_ld (elements). Splits, concatenations and cache writes are all this copy.
    virtual void copy_cols(const float* src, int64_t src_ld, int64_t src_col, float* dst, int64_t dst_ld,
                           int64_t dst_col, int64_t rows, int64_t width) = 0;
    /// out = a + b over n elements (out may be a or b) [the residual adds].
    virtual void add(const float* a, const float* b, float* out, int64_t n) = 0;
    /// The middle of SwiGLU: out[r, j] = silu(gu[r, j]) · gu[r, inter + j], silu(z) = z / (1 + e^−z)
    /// [dsv2::swiglu with the gate and up products side by side].   gu [rows, 2·inter] → out [rows, inter]
    virtual void silu_mul(const float* gu, float* out, int64_t rows, int64_t inter) = 0;

    // ---- attention ----------------------------------------------------------------------------
    /// Non-absorbed causal attention, T queries at positions n − T … n − 1 over n keys
    /// [dsv2::mla_attend_naive]; layout of dsv2/engine/prefill.hpp (q [T, n_h, d_nope + d_R],
    /// k_nope [n, n_h, d_nope], k_pe [n, d_R], v [n, n_h, d_v]) → o [T, n_h, d_v].
    virtual void mla_prefill(const PrefillDims& d, const float* q, const float* k_nope, const float* k_pe,
                             const float* v, float sigma, float* o) = 0;
    /// Absorbed attention of one query at position n − 1 over the first n rows of a contiguous
    /// latent cache [the attention core of dsv2::mla_attend_absorbed]. The cache holds
    /// `capacity` rows (a multiple of kEngineBlockTokens; CudaBackend reads it as a paged cache
    /// whose block table is the identity).
    ///   cache [capacity, d_c + d_R], q_abs [n_h, d_c], q_pe [n_h, d_R] → o_latent [n_h, d_c]
    virtual void mla_decode(const float* cache, int64_t capacity, int64_t n, int64_t d_c, int64_t d_R,
                            const float* q_abs, const float* q_pe, int64_t n_h, float sigma, float* o_latent) = 0;

    // ---- DeepSeekMoE --------------------------------------------------------------------------
    /// Router from its logits [dsv2::route]: softmax, (group-limited) greedy top-K, gates.
    ///   logits [T, N_r] → idx [T, K], w [T, K], scores [T, N_r]
    virtual void moe_route(const RouterParams& p, const float* logits, int64_t T, int32_t* idx, float* w,
                           float* scores) = 0;
    /// Tokens grouped by expert [the dispatch of dsv2::moe_forward]: writes slots [T·K] (row →
    /// slot = t·K + k) and row_of_slot [T·K], returns offsets [N_r + 1] on the host. Throws
    /// std::invalid_argument for an index outside [0, N_r).
    virtual std::vector<int32_t> moe_dispatch(const int32_t* idx, int64_t T, int64_t K, int64_t N_r, int32_t* slots,
                                              int32_t* row_of_slot) = 0;
    /// grouped[r, :] = x[slots[r] / K, :].   x [T, d] → grouped [T·K, d]
    virtual void moe_gather(const float* x, const int32_t* slots, int64_t T, int64_t K, int64_t d, float* grouped) = 0;
    /// out[t, :] = Σ_k (rank order) w[t, k] · y[row_of_slot[t·K + k], :] (+ shared[t, :] when not null).
    virtual void moe_combine(const float* y, const float* w, const float* shared, const int32_t* row_of_slot,
                             int64_t T, int64_t K, int64_t d, float* out) = 0;
};

/// Rows per block of the engine's latent cache (the paged kernels' block; FlashMLA's 64).
constexpr int kEngineBlockTokens = 64;

/// Plain C++ loops and the CPU twins of the kernels (dsv2/engine/paged.hpp, prefill.hpp, moe.hpp).
/// `num_sm` only shapes the split-KV plan of mla_decode, as the GPU's SM count does.
std::unique_ptr<Backend> make_host_backend(int num_sm = 132);

}  // namespace dsv2::engine
