// HostBackend: every Backend operation (dsv2/engine/backend.hpp) as plain C++ on host memory —
// plain loops (or the oracle's own function, for RMSNorm) for the dense operations, and the
// kernels' own CPU twins (paged.hpp, prefill.hpp, moe.hpp) for attention and the MoE router,
// dispatch, gather and combine, so that the engine on this backend
// runs the GPU's algorithms (tiles, online softmax, split-KV plan, warp top-k) in C++.
// Proved by tests/engine/test_engine_host.cpp: the engine on this backend against the fp64 oracle.
#include <unistd.h>

#include <cmath>
#include <cstring>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "dsv2/engine/backend.hpp"
#include "dsv2/engine/paged.hpp"
#include "dsv2/layers.hpp"

namespace dsv2::engine {

const char* to_string(WeightType t) { return t == WeightType::bf16 ? "bf16" : "fp32"; }

WeightType weight_type_from_string(const std::string& s) {
    if (s == "fp32") return WeightType::f32;
    if (s == "bf16") return WeightType::bf16;
    throw std::invalid_argument("weight type \"" + s + "\": expected fp32 or bf16");
}

std::unique_ptr<Buffer> Backend::upload_as(const float* host, size_t n, WeightType type) {
    std::unique_ptr<Buffer> b = alloc(n * element_bytes(type));
    upload_converted(b->data(), host, n, type);
    return b;
}

void Backend::upload_converted(void* dst, const float* host, size_t n, WeightType type) {
    if (type == WeightType::f32) {
        upload(dst, host, n * sizeof(float));
        return;
    }
    std::vector<uint16_t> bits(n);
    for (size_t i = 0; i < n; ++i) bits[i] = float_to_bf16_bits(host[i]);
    upload(dst, bits.data(), n * sizeof(uint16_t));
}

namespace {

class HostBuffer final : public Buffer {
public:
    // 8-byte aligned (int64, double); left uninitialised, as cudaMalloc leaves device memory.
    explicit HostBuffer(size_t bytes) : words_(bytes ? new uint64_t[(bytes + 7) / 8] : nullptr) {
        bytes_ = bytes;
        data_ = words_.get();
    }

private:
    std::unique_ptr<uint64_t[]> words_;
};

// Element i of a weight, as fp32.
inline float weight_at(const WeightRef& W, int64_t i) {
    return W.type == WeightType::bf16 ? bf16_bits_to_float(static_cast<const uint16_t*>(W.data)[i])
                                      : static_cast<const float*>(W.data)[i];
}
// An activation as a product sees it: rounded to bf16 when the weights are bf16.
inline float activation(float v, WeightType t) { return t == WeightType::bf16 ? bf16_bits_to_float(float_to_bf16_bits(v)) : v; }

// y[r, :] = x[r, :] W_mᵀ for r < rows, matrix m of the stack; the dot products in double, rounded
// once to fp32 (the exact product of the operands as stored, up to that rounding).
//   x [rows, ·] with row stride x_ld, y [rows, ·] with row stride y_ld
void product(const float* x, int64_t x_ld, const WeightRef& W, int64_t m, float* y, int64_t y_ld, int64_t rows) {
    const int64_t in = W.cols, out = W.rows, base = m * out * in;
#pragma omp parallel for schedule(static) if (rows * out * in > (1 << 16))
    for (int64_t j = 0; j < out; ++j)
        for (int64_t r = 0; r < rows; ++r) {
            double acc = 0;
            for (int64_t k = 0; k < in; ++k)
                acc += double(activation(x[r * x_ld + k], W.type)) * double(weight_at(W, base + j * in + k));
            y[r * y_ld + j] = float(acc);
        }
}

class HostBackend final : public Backend {
public:
    explicit HostBackend(int num_sm) : num_sm_(num_sm) {
        if (num_sm < 1) throw std::invalid_argument("host backend: num_sm must be >= 1");
    }
    std::string name() const override { return "host"; }

    std::unique_ptr<Buffer> alloc(size_t bytes) override { return std::make_unique<HostBuffer>(bytes); }
    void upload(void* dst, const void* src, size_t bytes) override {
        if (bytes) std::memcpy(dst, src, bytes);
    }
    void download(void* dst, const void* src, size_t bytes) override {
        if (bytes) std::memcpy(dst, src, bytes);
    }
    void sync() override {}
    int64_t free_bytes() const override {
        return int64_t(sysconf(_SC_AVPHYS_PAGES)) * int64_t(sysconf(_SC_PAGE_SIZE));
    }

    void embed(const WeightRef& E, const int32_t* tokens, int64_t T, float* h) override {
        for (int64_t t = 0; t < T; ++t)
            for (int64_t c = 0; c < E.cols; ++c) h[t * E.cols + c] = weight_at(E, int64_t(tokens[t]) * E.cols + c);
    }

    // The oracle's own dsv2::rms_norm<float>.
    void rms_norm(const float* x, const float* w, float* y, int64_t T, int64_t n, float eps) override {
        Eigen::Map<Mat<float>>(y, T, n) = dsv2::rms_norm<float>(MatMap<float>(x, T, n), Eigen::Map<const Vec<float>>(w, n), eps);
    }

    void linear(const float* x, const WeightRef& W, float* y, int64_t T) override {
        require_count(W, 1, "linear");
        product(x, W.cols, W, 0, y, W.rows, T);
    }

    void linear_heads(const float* x, const WeightRef& W, float* y, int64_t T) override {
        const int64_t n = W.count;
        for (int64_t i = 0; i < n; ++i) product(x + i * W.cols, n * W.cols, W, i, y + i * W.rows, n * W.rows, T);
    }

    void linear_grouped(const float* x, const WeightRef& W, const std::vector<int32_t>& offsets, float* y) override {
        if (int64_t(offsets.size()) != W.count + 1) throw std::invalid_argument("linear_grouped: offsets must have count + 1 entries");
        for (int64_t e = 0; e < W.count; ++e) {
            const int64_t r0 = offsets[size_t(e)], rows = offsets[size_t(e) + 1] - r0;
            if (rows > 0) product(x + r0 * W.cols, W.cols, W, e, y + r0 * W.rows, W.rows, rows);
        }
    }

    // dsv2::apply_rope: angle p·θ'_k and its cos/sin in double, the rotation in fp32.
    void rope(float* x, const int64_t* positions, int64_t T, int64_t n, int64_t d_R, const double* inv_freq,
              double amplitude) override {
        for (int64_t t = 0; t < T; ++t)
            for (int64_t k = 0; k < d_R / 2; ++k) {
                const double angle = double(positions[t]) * inv_freq[k];
                const float c = float(amplitude * std::cos(angle)), s = float(amplitude * std::sin(angle));
                for (int64_t h = 0; h < n; ++h) {
                    float* p = x + t * n * d_R + h * d_R + 2 * k;
                    const float a0 = p[0], b0 = p[1];
                    p[0] = a0 * c - b0 * s;
                    p[1] = a0 * s + b0 * c;
                }
            }
    }

    void copy_cols(const float* src, int64_t src_ld, int64_t src_col, float* dst, int64_t dst_ld, int64_t dst_col,
                   int64_t rows, int64_t width) override {
        for (int64_t r = 0; r < rows; ++r)
            for (int64_t j = 0; j < width; ++j) dst[r * dst_ld + dst_col + j] = src[r * src_ld + src_col + j];
    }

    void add(const float* a, const float* b, float* out, int64_t n) override {
        for (int64_t i = 0; i < n; ++i) out[i] = a[i] + b[i];
    }

    void silu_mul(const float* gu, float* out, int64_t rows, int64_t inter) override {
        for (int64_t r = 0; r < rows; ++r)
            for (int64_t j = 0; j < inter; ++j) {
                const float g = gu[r * 2 * inter + j], u = gu[r * 2 * inter + inter + j];
                out[r * inter + j] = g / (1.f + std::exp(-g)) * u;
            }
    }

    // The prefill kernel's CPU twin (same tiles, online softmax, causal tile skipping).
    void mla_prefill(const PrefillDims& d, const float* q, const float* k_nope, const float* k_pe, const float* v,
                     float sigma, float* o) override {
        const int64_t T = d.T, n = d.n, H = d.n_h;
        const std::vector<float> vq(q, q + T * H * d.d_qk()), vk(k_nope, k_nope + n * H * d.d_nope),
            vpe(k_pe, k_pe + n * d.d_R), vv(v, v + n * H * d.d_v);
        const PrefillReference<float> r = mla_prefill_tiled_reference<float>(
            d, vq, vk, vpe, vv, sigma, kPrefillDefaultBlockQ, kPrefillDefaultBlockK);
        std::memcpy(o, r.o.data(), r.o.size() * sizeof(float));
    }

    // The decode kernels' CPU twin over the identity block table, with the split plan the GPU
    // would use on num_sm SMs.
    void mla_decode(const float* cache, int64_t capacity, int64_t n, int64_t d_c, int64_t d_R, const float* q_abs,
                    const float* q_pe, int64_t n_h, float sigma, float* o_latent) override {
        if (n < 1 || n > capacity || capacity % kEngineBlockTokens != 0)
            throw std::invalid_argument("mla_decode: need 1 <= n <= capacity, capacity a multiple of the block");
        PagedLayout layout;
        layout.block_tokens = kEngineBlockTokens;
        layout.d_c = int(d_c);
        layout.d_R = int(d_R);
        layout.num_blocks = layout.blocks_for(n);
        BlockTable bt;
        bt.B = 1;
        bt.max_blocks = layout.num_blocks;
        bt.lengths = {int32_t(n)};
        for (int b = 0; b < layout.num_blocks; ++b) bt.table.push_back(b);
        const std::vector<float> rows(cache, cache + layout.elements());
        const int n_hg = int((n_h + kDecodeHeadsPerCta - 1) / kDecodeHeadsPerCta);
        const SplitPlan plan = make_split_plan(bt.lengths, n_hg, num_sm_, kEngineBlockTokens);
        const std::vector<float> qa(q_abs, q_abs + n_h * d_c), qp(q_pe, q_pe + n_h * d_R);
        const DecodeReference<float> r = paged_decode_reference<float>(layout, bt, rows, qa, qp, int(n_h), sigma, plan,
                                                                       kDecodeHeadsPerCta, kDecodeTile);
        std::memcpy(o_latent, r.o_latent.data(), r.o_latent.size() * sizeof(float));
    }

    void moe_route(const RouterParams& p, const float* logits, int64_t T, int32_t* idx, float* w, float* scores) override {
        p.validate();
        for (int64_t t = 0; t < T; ++t)
            route_reference(p, logits + t * p.N_r, idx + t * p.K, w + t * p.K, scores + t * p.N_r);
    }

    std::vector<int32_t> moe_dispatch(const int32_t* idx, int64_t T, int64_t K, int64_t N_r, int32_t* slots,
                                      int32_t* row_of_slot) override {
        const DispatchPlan plan = make_dispatch_plan(idx, T, K, N_r);
        std::memcpy(slots, plan.slots.data(), plan.slots.size() * sizeof(int32_t));
        std::memcpy(row_of_slot, plan.row_of_slot.data(), plan.row_of_slot.size() * sizeof(int32_t));
        return plan.offsets;
    }

    // The kernels' CPU twins moe_gather_reference / moe_combine_reference, on a plan made of the
    // slots and inverse map moe_dispatch wrote.
    void moe_gather(const float* x, const int32_t* slots, int64_t T, int64_t K, int64_t d, float* grouped) override {
        const DispatchPlan plan = plan_of(slots, nullptr, T, K);
        const std::vector<float> g = moe_gather_reference<float>(plan, std::vector<float>(x, x + T * d), d);
        std::memcpy(grouped, g.data(), g.size() * sizeof(float));
    }
    void moe_combine(const float* y, const float* w, const float* shared, const int32_t* row_of_slot, int64_t T,
                     int64_t K, int64_t d, float* out) override {
        const DispatchPlan plan = plan_of(nullptr, row_of_slot, T, K);
        const std::vector<float> o = moe_combine_reference<float>(
            plan, std::vector<float>(y, y + T * K * d), std::vector<float>(w, w + T * K),
            shared ? std::vector<float>(shared, shared + T * d) : std::vector<float>(), d);
        std::memcpy(out, o.data(), o.size() * sizeof(float));
    }

private:
    // The parts of a DispatchPlan the gather (slots) and combine (row_of_slot) twins read.
    static DispatchPlan plan_of(const int32_t* slots, const int32_t* row_of_slot, int64_t T, int64_t K) {
        DispatchPlan p;
        p.T = T, p.K = K;
        if (slots) p.slots.assign(slots, slots + T * K);
        if (row_of_slot) p.row_of_slot.assign(row_of_slot, row_of_slot + T * K);
        return p;
    }
    static void require_count(const WeightRef& W, int64_t count, const char* op) {
        if (W.count != count) throw std::invalid_argument(std::string(op) + ": expected a weight stack of " + std::to_string(count));
    }
    int num_sm_;
};

}  // namespace

std::unique_ptr<Backend> make_host_backend(int num_sm) { return std::make_unique<HostBackend>(num_sm); }

}  // namespace dsv2::engine
