// CudaBackend: the Backend interface (dsv2/engine/backend.hpp) on the GPU — device memory, the
// kernels of cuda/src and cuBLAS. NOT YET RUN ON A GPU. Each operation reproduces the HostBackend
// operation of the same name (engine/src/backend_host.cpp); tests/cuda/test_cuda_backend.cpp checks them
// one by one against it, and tests/cuda/test_cuda_engine.cpp the whole model against the fp64 oracle.
//
// Everything runs on the legacy default stream, and uploads and downloads are synchronous
// cudaMemcpy calls, so the engine's order of operations is the GPU's order, with no events.
// bf16 weights: each product first rounds its fp32 input into a bf16 work buffer
// (launch_to_bf16), then multiplies bf16 × bf16 with fp32 accumulation and fp32 output.
#include <cuda_bf16.h>

#include <algorithm>
#include <climits>
#include <map>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "dsv2/engine/backend.hpp"
#include "dsv2/cuda/backend_cuda.hpp"
#include "dsv2/cuda/check.cuh"
#include "dsv2/cuda/elementwise.cuh"
#include "dsv2/cuda/linear.cuh"
#include "dsv2/cuda/mla.cuh"
#include "dsv2/cuda/mla.hpp"
#include "dsv2/cuda/moe.cuh"
#include "dsv2/cuda/ops.hpp"

namespace dsv2::cuda {

using namespace dsv2::engine;  // the engine's types (layouts, plans, Backend) are the kernels' too

namespace {

constexpr cudaStream_t kStream = nullptr;  // the legacy default stream

class CudaBuffer final : public Buffer {
public:
    explicit CudaBuffer(size_t bytes) {
        bytes_ = bytes;
        if (bytes) CUDA_CHECK(cudaMalloc(&data_, bytes));
    }
    ~CudaBuffer() override {
        if (data_) cudaFree(data_);
    }
};

std::string checked_device_name() {
    std::string why;
    if (device_count(&why) == 0) throw std::runtime_error("no CUDA device (" + why + ")");
    return "cuda: " + device_name();
}

int as_int(int64_t v, const char* what) {
    if (v < 0 || v > int64_t(INT32_MAX)) throw std::invalid_argument(std::string("cuda backend: ") + what + " out of int range");
    return int(v);
}

class CudaBackend final : public Backend {
public:
    // name_ is initialised first (declaration order), so a machine without a device gets this
    // message rather than the cuBLAS handle's failure.
    CudaBackend() : name_(checked_device_name()) {
        int dev = 0;
        CUDA_CHECK(cudaGetDevice(&dev));
        CUDA_CHECK(cudaDeviceGetAttribute(&num_sm_, cudaDevAttrMultiProcessorCount, dev));
    }
    std::string name() const override { return name_; }

    std::unique_ptr<Buffer> alloc(size_t bytes) override { return std::make_unique<CudaBuffer>(bytes); }
    void upload(void* dst, const void* src, size_t bytes) override {
        if (bytes) CUDA_CHECK(cudaMemcpy(dst, src, bytes, cudaMemcpyHostToDevice));
    }
    void download(void* dst, const void* src, size_t bytes) override {
        if (bytes) CUDA_CHECK(cudaMemcpy(dst, src, bytes, cudaMemcpyDeviceToHost));
    }
    void sync() override { CUDA_CHECK(cudaDeviceSynchronize()); }
    int64_t free_bytes() const override {
        size_t free = 0, total = 0;
        CUDA_CHECK(cudaMemGetInfo(&free, &total));
        return int64_t(free);
    }

    void embed(const WeightRef& E, const int32_t* tokens, int64_t T, float* h) override {
        if (E.type == WeightType::bf16)
            launch_embed(static_cast<const __nv_bfloat16*>(E.data), tokens, T, E.cols, h, kStream);
        else
            launch_embed(static_cast<const float*>(E.data), tokens, T, E.cols, h, kStream);
    }

    void rms_norm(const float* x, const float* w, float* y, int64_t T, int64_t n, float eps) override {
        launch_rms_norm(x, w, y, T, n, eps, kStream);
    }

    void linear(const float* x, const WeightRef& W, float* y, int64_t T) override {
        if (W.count != 1) throw std::invalid_argument("cuda backend linear: expected one matrix");
        product(x, W, 0, y, T);
    }

    void linear_heads(const float* x, const WeightRef& W, float* y, int64_t T) override {
        const int n = as_int(W.count, "heads"), in = as_int(W.cols, "in"), out = as_int(W.rows, "out");
        const int rows = as_int(T, "T");
        if (W.type == WeightType::bf16) {
            const __nv_bfloat16* xb = to_bf16(x, T * W.count * W.cols);
            launch_linear_heads(cublas_.get(), xb, static_cast<const __nv_bfloat16*>(W.data), y, rows, n, in, out, kStream);
        } else {
            launch_linear_heads(cublas_.get(), x, static_cast<const float*>(W.data), y, rows, n, in, out, kStream);
        }
    }

    // One cuBLAS product per non-empty expert over its contiguous rows (the rows were grouped by
    // moe_dispatch). An expert with no rows costs nothing.
    void linear_grouped(const float* x, const WeightRef& W, const std::vector<int32_t>& offsets, float* y) override {
        if (int64_t(offsets.size()) != W.count + 1) throw std::invalid_argument("cuda backend linear_grouped: offsets must have count + 1 entries");
        const int64_t rows = offsets.back();
        const __nv_bfloat16* xb = W.type == WeightType::bf16 ? to_bf16(x, rows * W.cols) : nullptr;
        for (int64_t e = 0; e < W.count; ++e) {
            const int64_t r0 = offsets[size_t(e)], n = offsets[size_t(e) + 1] - r0;
            if (n <= 0) continue;
            const int in = as_int(W.cols, "in"), out = as_int(W.rows, "out");
            if (xb)
                launch_linear(cublas_.get(), xb + r0 * W.cols, static_cast<const __nv_bfloat16*>(W.data) + e * W.rows * W.cols,
                              y + r0 * W.rows, as_int(n, "rows"), in, out, kStream);
            else
                launch_linear(cublas_.get(), x + r0 * W.cols, static_cast<const float*>(W.data) + e * W.rows * W.cols,
                              y + r0 * W.rows, as_int(n, "rows"), in, out, kStream);
        }
    }

    void rope(float* x, const int64_t* positions, int64_t T, int64_t n, int64_t d_R, const double* inv_freq,
              double amplitude) override {
        launch_rope({x, positions, inv_freq, amplitude, as_int(T, "T"), as_int(n, "n"), as_int(d_R, "d_R")}, kStream);
    }

    void copy_cols(const float* src, int64_t src_ld, int64_t src_col, float* dst, int64_t dst_ld, int64_t dst_col,
                   int64_t rows, int64_t width) override {
        launch_copy_cols(src, src_ld, src_col, dst, dst_ld, dst_col, rows, width, kStream);
    }

    void add(const float* a, const float* b, float* out, int64_t n) override { launch_add(a, b, out, n, kStream); }

    void silu_mul(const float* gu, float* out, int64_t rows, int64_t inter) override {
        launch_silu_mul(gu, out, rows, inter, kStream);
    }

    void mla_prefill(const PrefillDims& d, const float* q, const float* k_nope, const float* k_pe, const float* v,
                     float sigma, float* o) override {
        MlaPrefillParams<float> p;
        p.q = q, p.k_nope = k_nope, p.k_pe = k_pe, p.v = v, p.o = o, p.lse = nullptr;
        p.T = d.T, p.n = d.n, p.n_h = d.n_h, p.d_nope = d.d_nope, p.d_R = d.d_R, p.d_v = d.d_v;
        p.sigma = sigma;
        launch_mla_prefill(p, kStream);
    }

    // The paged split-KV decode over the identity block table (the engine's cache is contiguous),
    // with the split plan for this device's SM count.
    void mla_decode(const float* cache, int64_t capacity, int64_t n, int64_t d_c, int64_t d_R, const float* q_abs,
                    const float* q_pe, int64_t n_h, float sigma, float* o_latent) override {
        if (n < 1 || n > capacity || capacity % kEngineBlockTokens != 0)
            throw std::invalid_argument("cuda backend mla_decode: need 1 <= n <= capacity, capacity a multiple of the block");
        const int max_blocks = int(capacity / kEngineBlockTokens);
        if (int(identity_.size()) < max_blocks) {
            std::vector<int32_t> table(static_cast<size_t>(max_blocks));
            for (int b = 0; b < max_blocks; ++b) table[size_t(b)] = b;
            identity_buf_ = alloc(table.size() * sizeof(int32_t));
            upload(identity_buf_->data(), table.data(), table.size() * sizeof(int32_t));
            identity_ = std::move(table);
        }
        // Every layer of a decode step has the same n and heads: the plan is made and uploaded
        // once per step, not once per layer.
        if (n != plan_n_ || n_h != plan_n_h_) {
            const int n_hg = int((n_h + kDecodeHeadsPerCta - 1) / kDecodeHeadsPerCta);
            plan_ = make_split_plan({int32_t(n)}, n_hg, num_sm_, kEngineBlockTokens);
            ints(Work::decode_num_splits, plan_.num_splits);
            ints(Work::decode_split_offset, plan_.split_offset);
            upload(work(Work::decode_items, plan_.items.size() * sizeof(WorkItem)), plan_.items.data(),
                   plan_.items.size() * sizeof(WorkItem));
            plan_n_ = n, plan_n_h_ = n_h;
        }
        const size_t splits = size_t(plan_.total_splits());
        auto* ns = static_cast<int32_t*>(work(Work::decode_num_splits, plan_.num_splits.size() * sizeof(int32_t)));
        auto* off = static_cast<int32_t*>(work(Work::decode_split_offset, plan_.split_offset.size() * sizeof(int32_t)));
        auto* items = static_cast<WorkItem*>(work(Work::decode_items, plan_.items.size() * sizeof(WorkItem)));
        auto* o_part = static_cast<float*>(work(Work::decode_o_part, splits * size_t(n_h * d_c) * sizeof(float)));
        auto* lse_part = static_cast<float*>(work(Work::decode_lse_part, splits * size_t(n_h) * sizeof(float)));
        auto* lse = static_cast<float*>(work(Work::decode_lse, size_t(n_h) * sizeof(float)));
        MlaDecodeParams<float> p{cache, identity_buf_->as<int32_t>(), q_abs, q_pe, items, ns, off, o_part, lse_part,
                                 o_latent, lse, 1, int(n_h), int(d_c), int(d_R), kEngineBlockTokens, max_blocks,
                                 int(plan_.items.size()), sigma};
        launch_mla_decode(p, kStream);
    }

    void moe_route(const RouterParams& p, const float* logits, int64_t T, int32_t* idx, float* w, float* scores) override {
        MoeRouteParams r{logits, idx, w, T, p};
        r.scores = scores;
        launch_moe_route(r, kStream);
    }

    std::vector<int32_t> moe_dispatch(const int32_t* idx, int64_t T, int64_t K, int64_t N_r, int32_t* slots,
                                      int32_t* row_of_slot) override {
        int32_t* counts = reinterpret_cast<int32_t*>(work(Work::dispatch_counts, size_t(N_r + 1) * sizeof(int32_t)));
        int32_t* offsets = reinterpret_cast<int32_t*>(work(Work::dispatch_offsets, size_t(N_r + 1) * sizeof(int32_t)));
        const size_t tb = std::max<size_t>(moe_dispatch_temp_bytes(N_r), 1);
        void* temp = work(Work::dispatch_temp, tb);
        launch_moe_dispatch({idx, counts, offsets, slots, row_of_slot, temp, tb, T, K, N_r}, kStream);
        std::vector<int32_t> host(static_cast<size_t>(N_r + 1));
        download(host.data(), offsets, host.size() * sizeof(int32_t));
        if (host.back() != T * K) {  // an index outside [0, N_r): name it
            std::vector<int32_t> h_idx(static_cast<size_t>(T * K));
            download(h_idx.data(), idx, h_idx.size() * sizeof(int32_t));
            make_dispatch_plan(h_idx.data(), T, K, N_r);  // throws, naming the token and rank
            throw std::logic_error("cuda backend moe_dispatch: rows placed != T·K");
        }
        return host;
    }

    void moe_gather(const float* x, const int32_t* slots, int64_t T, int64_t K, int64_t d, float* grouped) override {
        launch_moe_gather({x, slots, grouped, T, K, d}, kStream);
    }

    void moe_combine(const float* y, const float* w, const float* shared, const int32_t* row_of_slot, int64_t T,
                     int64_t K, int64_t d, float* out) override {
        launch_moe_combine({y, w, shared, row_of_slot, out, T, K, d}, kStream);
    }

private:
    // Product of one matrix m of a stack: y = x W_mᵀ.
    void product(const float* x, const WeightRef& W, int64_t m, float* y, int64_t T) {
        const int rows = as_int(T, "T"), in = as_int(W.cols, "in"), out = as_int(W.rows, "out");
        const int64_t base = m * W.rows * W.cols;
        if (W.type == WeightType::bf16)
            launch_linear(cublas_.get(), to_bf16(x, T * W.cols), static_cast<const __nv_bfloat16*>(W.data) + base, y, rows,
                          in, out, kStream);
        else
            launch_linear(cublas_.get(), x, static_cast<const float*>(W.data) + base, y, rows, in, out, kStream);
    }
    // x rounded to bf16 in a work buffer (valid until the next call).
    const __nv_bfloat16* to_bf16(const float* x, int64_t n) {
        auto* xb = reinterpret_cast<__nv_bfloat16*>(work(Work::bf16_input, size_t(n) * sizeof(__nv_bfloat16)));
        launch_to_bf16(x, xb, n, kStream);
        return xb;
    }
    // The work buffers, one slot each (indexed: no lookup by name on a decode step).
    enum class Work : int { decode_num_splits, decode_split_offset, decode_items, decode_o_part, decode_lse_part, decode_lse, dispatch_counts, dispatch_offsets, dispatch_temp, bf16_input, count };
    // A work buffer of at least `bytes` (grown on demand; the default stream orders reuse).
    void* work(Work w, size_t bytes) {
        std::unique_ptr<Buffer>& b = work_[size_t(w)];
        if (!b || b->bytes() < bytes) {
            b.reset();
            b = alloc(std::max<size_t>(bytes, 1));
        }
        return b->data();
    }
    int32_t* ints(Work w, const std::vector<int32_t>& host) {
        auto* p = reinterpret_cast<int32_t*>(work(w, host.size() * sizeof(int32_t)));
        upload(p, host.data(), host.size() * sizeof(int32_t));
        return p;
    }

    std::string name_;
    int num_sm_ = 0;
    CublasHandle cublas_;
    std::vector<std::unique_ptr<Buffer>> work_ = std::vector<std::unique_ptr<Buffer>>(size_t(Work::count));
    std::vector<int32_t> identity_;
    std::unique_ptr<Buffer> identity_buf_;
    SplitPlan plan_;                          // the decode plan on the device, for (plan_n_, plan_n_h_)
    int64_t plan_n_ = -1, plan_n_h_ = -1;
};

}  // namespace

std::unique_ptr<Backend> make_cuda_backend() { return std::make_unique<CudaBackend>(); }

}  // namespace dsv2::cuda
