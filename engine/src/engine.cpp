// The whole model over a Backend — reproduces dsv2::Model<S>::forward (reference/src/model.cpp)
// and records the same named intermediates. Proved on the CPU with HostBackend by
// tests/engine/test_engine_host.cpp (against the fp64 oracle), and on the GPU with CudaBackend by
// tests/cuda/test_cuda_engine.cpp and `dsv2 compare` (NOT YET RUN ON A GPU).
//
// Every step names the oracle function it reproduces. Shapes in the vocabulary of docs/
// (T tokens this call, n = cached + T keys, n_h heads, d_qk = d_h + d_R, W = d_c + d_R).
#include "dsv2/engine/engine.hpp"

#include <cstdio>
#include <map>
#include <stdexcept>
#include <string>

#include "dsv2/rope.hpp"

namespace dsv2::engine {

/// Layer l's weights on the backend (layout: dsv2/engine/engine.hpp).
struct Engine::LayerWeights {
    const float* attn_norm = nullptr;  // input_layernorm [d]
    const float* ffn_norm = nullptr;   // post_attention_layernorm [d]
    WeightRef q_a, q_b, q_proj;        // q_a_proj [d_q, d], q_b_proj [n_h·d_qk, d_q] | q_proj [n_h·d_qk, d]
    const float* q_a_norm = nullptr;   // q_a_layernorm [d_q]
    WeightRef kv_a;                    // kv_a_proj_with_mqa [d_c + d_R, d]
    const float* kv_a_norm = nullptr;  // kv_a_layernorm [d_c]
    WeightRef kv_b;                    // kv_b_proj [n_h·(d_h + d_v), d_c], per head [W^UK_i; W^UV_i]
    WeightRef w_uk_t;                  // n_h × W^UK_iᵀ [d_c, d_h]
    WeightRef w_uv;                    // n_h × W^UV_i [d_v, d_c]
    WeightRef o_proj;                  // [d, n_h·d_v]
    bool moe = false;
    WeightRef gate_up, down;                 // dense MLP: [2·d_ff, d], [d, d_ff]
    WeightRef router;                        // gate.weight [N_r, d], always fp32
    WeightRef experts_gate_up, experts_down; // N_r × [2·d_e, d], N_r × [d, d_e]
    WeightRef shared_gate_up, shared_down;   // [2·N_s·d_e, d], [d, N_s·d_e] (N_s > 0)
};

// The engine's work buffers, one slot each, grown on demand (Engine::scratch): indexed, so that a
// decode step looks nothing up by name.
enum class Engine::Work : int {
    attn_c_all,
    attn_c_kv,
    attn_c_kv_raw,
    attn_c_q,
    attn_c_q_raw,
    attn_k_nope,
    attn_k_pe,
    attn_k_pe_all,
    attn_kv,
    attn_kv_a,
    attn_o,
    attn_o_latent,
    attn_q,
    attn_q_absorbed,
    attn_q_full,
    attn_q_nope,
    attn_q_pe,
    attn_v,
    h,
    logits,
    mlp_act,
    mlp_gate_up,
    moe_grouped,
    moe_router_logits,
    moe_row_of_slot,
    moe_scores,
    moe_shared,
    moe_shared_mlp_act,
    moe_shared_mlp_gate_up,
    moe_slots,
    moe_topk_idx,
    moe_topk_weight,
    moe_y,
    positions,
    tokens,
    u,
    x,
    moe_gate_up,
    moe_act,
    count
};

struct Engine::Scratch {
    std::vector<std::unique_ptr<Buffer>> buffers = std::vector<std::unique_ptr<Buffer>>(size_t(Work::count));
};


Engine::Engine(const Config& cfg, const Weights<float>& w, Backend& backend, WeightType type, int64_t capacity)
    : cfg_(cfg), be_(backend), type_(type), scratch_(std::make_unique<Scratch>()) {
    cfg_.validate();
    check_weights(cfg_, w);
    if (capacity < 1) throw std::invalid_argument("engine: the cache capacity must be at least 1 token, got " + std::to_string(capacity));
    if (capacity > (int64_t(1) << 40)) throw std::invalid_argument("engine: a cache of " + std::to_string(capacity) + " tokens is beyond any memory");
    capacity_ = (capacity + kEngineBlockTokens - 1) / kEngineBlockTokens * kEngineBlockTokens;
    check_fits();
    sigma_ = softmax_scale(cfg_);
    amplitude_ = rope_amplitude(cfg_);
    const std::vector<double> inv_freq = rope_inv_freq(cfg_);  // [d_R/2]
    owned_.push_back(be_.alloc(inv_freq.size() * sizeof(double)));
    be_.upload(owned_.back()->data(), inv_freq.data(), inv_freq.size() * sizeof(double));
    inv_freq_ = owned_.back()->as<double>();

    embed_ = upload(w.mat("model.embed_tokens.weight"), 1, type_);
    lm_head_ = upload(w.mat("lm_head.weight"), 1, type_);
    final_norm_ = upload_f32(w.mat("model.norm.weight"));

    const int64_t H = cfg_.n_h, d_h = cfg_.d_h, d_v = cfg_.d_v, d_c = cfg_.d_c;
    layers_.resize(size_t(cfg_.L));
    for (int64_t l = 0; l < cfg_.L; ++l) {
        LayerWeights& L = layers_[size_t(l)];
        const std::string p = layer_prefix(l), a = p + "self_attn.", m = p + "mlp.";
        L.attn_norm = upload_f32(w.mat(p + "input_layernorm.weight"));
        L.ffn_norm = upload_f32(w.mat(p + "post_attention_layernorm.weight"));
        if (cfg_.has_q_lora()) {
            L.q_a = upload(w.mat(a + "q_a_proj.weight"), 1, type_);
            L.q_a_norm = upload_f32(w.mat(a + "q_a_layernorm.weight"));
            L.q_b = upload(w.mat(a + "q_b_proj.weight"), 1, type_);
        } else {
            L.q_proj = upload(w.mat(a + "q_proj.weight"), 1, type_);
        }
        L.kv_a = upload(w.mat(a + "kv_a_proj_with_mqa.weight"), 1, type_);
        L.kv_a_norm = upload_f32(w.mat(a + "kv_a_layernorm.weight"));
        const Mat<float>& kv_b = w.mat(a + "kv_b_proj.weight");  // [n_h·(d_h + d_v), d_c]
        L.kv_b = upload(kv_b, 1, type_);
        Mat<float> uk_t(H * d_c, d_h), uv(H * d_v, d_c);
        for (int64_t i = 0; i < H; ++i) {
            uk_t.middleRows(i * d_c, d_c) = kv_b.middleRows(i * (d_h + d_v), d_h).transpose();  // W^UK_iᵀ
            uv.middleRows(i * d_v, d_v) = kv_b.middleRows(i * (d_h + d_v) + d_h, d_v);          // W^UV_i
        }
        L.w_uk_t = upload(uk_t, H, type_);
        L.w_uv = upload(uv, H, type_);
        L.o_proj = upload(w.mat(a + "o_proj.weight"), 1, type_);

        L.moe = cfg_.is_moe_layer(l);
        if (!L.moe) {
            L.gate_up = upload_rows({&w.mat(m + "gate_proj.weight"), &w.mat(m + "up_proj.weight")}, 1, type_);
            L.down = upload(w.mat(m + "down_proj.weight"), 1, type_);
            continue;
        }
        L.router = upload(w.mat(m + "gate.weight"), 1, WeightType::f32);
        std::vector<const Mat<float>*> gate_up, down;  // expert e: [gate_e; up_e], down_e
        for (int64_t e = 0; e < cfg_.N_r; ++e) {
            const std::string ep = m + "experts." + std::to_string(e) + ".";
            gate_up.push_back(&w.mat(ep + "gate_proj.weight"));
            gate_up.push_back(&w.mat(ep + "up_proj.weight"));
            down.push_back(&w.mat(ep + "down_proj.weight"));
        }
        L.experts_gate_up = upload_rows(gate_up, cfg_.N_r, type_);
        L.experts_down = upload_rows(down, cfg_.N_r, type_);
        if (cfg_.N_s > 0) {
            const std::string sp = m + "shared_experts.";
            L.shared_gate_up = upload_rows({&w.mat(sp + "gate_proj.weight"), &w.mat(sp + "up_proj.weight")}, 1, type_);
            L.shared_down = upload(w.mat(sp + "down_proj.weight"), 1, type_);
        }
    }
    for (int64_t l = 0; l < cfg_.L; ++l) {  // the latent cache: [capacity, d_c + d_R] per layer
        owned_.push_back(be_.alloc(size_t(capacity_) * size_t(cfg_.cache_width()) * sizeof(float)));
        cache_.push_back(owned_.back()->as<float>());
    }
}

Engine::~Engine() = default;

// Refuses, before allocating anything, an engine the backend's memory cannot hold: the weights
// as stored (kv_b_proj twice: whole and split per head), the cache, and the larger work buffers
// of a call (a tenth more, at least 256 MiB).
void Engine::check_fits() const {
    const double gb = 1e9;
    const double weights = double(dsv2::weight_bytes(cfg_, int64_t(element_bytes(type_)))) +
                           double(cfg_.L) * double(cfg_.n_h) * double(cfg_.d_h + cfg_.d_v) * double(cfg_.d_c) *
                               double(element_bytes(type_));
    const double cache = double(cache_bytes());
    const double need = (weights + cache) * 1.1 + double(int64_t(256) << 20);
    const double have = double(be_.free_bytes());
    if (need > have) {
        char buf[256];
        std::snprintf(buf, sizeof buf, "engine: needs about %.1f GB on %s (weights as %s %.1f GB, latent cache of %lld tokens %.1f GB); it has %.1f GB free",
                      need / gb, be_.name().c_str(), to_string(type_), weights / gb, (long long)capacity_, cache / gb, have / gb);
        throw std::runtime_error(buf);
    }
}

int64_t Engine::cache_bytes() const { return cfg_.L * capacity_ * cfg_.cache_width() * int64_t(sizeof(float)); }

WeightRef Engine::upload(const Mat<float>& m, int64_t count, WeightType type) { return upload_rows({&m}, count, type); }

WeightRef Engine::upload_rows(const std::vector<const Mat<float>*>& parts, int64_t count, WeightType type) {
    // One backend buffer; each part converted and uploaded into its rows, so no host copy of the
    // whole stack is made (the routed experts of a V2-Lite layer are 1.7 GB in fp32).
    int64_t rows = 0;
    const int64_t cols = parts.front()->cols();
    for (const Mat<float>* p : parts) {
        if (p->cols() != cols) throw std::logic_error("engine: stacked weights of different widths");
        rows += p->rows();
    }
    const size_t esize = element_bytes(type);
    owned_.push_back(be_.alloc(size_t(rows * cols) * esize));
    weight_bytes_ += int64_t(owned_.back()->bytes());
    char* dst = static_cast<char*>(owned_.back()->data());
    for (const Mat<float>* p : parts) {
        be_.upload_converted(dst, p->data(), size_t(p->size()), type);
        dst += size_t(p->size()) * esize;
    }
    WeightRef r;
    r.data = owned_.back()->data();
    r.type = type;
    r.count = count;
    r.rows = rows / count;
    r.cols = cols;
    return r;
}

const float* Engine::upload_f32(const Mat<float>& m) { return static_cast<const float*>(upload(m, 1, WeightType::f32).data); }

float* Engine::scratch(Work w, int64_t elements) { return scratch_as<float>(w, elements); }

template <typename T>
T* Engine::scratch_as(Work w, int64_t elements) {
    const size_t bytes = size_t(std::max<int64_t>(elements, 1)) * sizeof(T);
    std::unique_ptr<Buffer>& b = scratch_->buffers[size_t(w)];
    if (!b || b->bytes() < bytes) {
        b.reset();  // free before allocating the larger one
        b = be_.alloc(bytes);
    }
    return b->as<T>();
}

// The name is built only when a trace is attached: the untraced calls (generate, benchmarks)
// make no strings. l < 0: a name outside the layers ("embed", "norm").
void Engine::record(Trace* trace, int64_t l, const char* what, const float* x, int64_t rows, int64_t cols) {
    if (!trace) return;
    const std::string name = l < 0 ? std::string(what) : iname(l, what);
    Mat<float> m(rows, cols);
    be_.download(m.data(), x, size_t(rows * cols) * sizeof(float));
    trace->record(name, m);
}

void Engine::record_int(Trace* trace, int64_t l, const char* what, const int32_t* x, int64_t rows, int64_t cols) {
    if (!trace) return;
    const std::string name = iname(l, what);
    IdxMat m(rows, cols);
    be_.download(m.data(), x, size_t(rows * cols) * sizeof(int32_t));
    trace->record(name, m, /*integer=*/true);
}

// dsv2::Model::forward: embedding, L × decoder_layer, final RMSNorm, lm_head.
Mat<float> Engine::forward(const std::vector<int32_t>& tokens, Trace* trace, Logits which) {
    const int64_t T = int64_t(tokens.size()), d = cfg_.d, V = cfg_.V;
    if (T == 0) return Mat<float>(0, V);
    for (int64_t t = 0; t < T; ++t) {
        const int32_t tok = tokens[size_t(t)];
        if (tok < 0 || tok >= V)
            throw std::invalid_argument("token " + std::to_string(tok) + " at index " + std::to_string(t) +
                                        " is outside the vocabulary [0, " + std::to_string(V) + ")");
    }
    if (length_ + T > capacity_)
        throw std::invalid_argument("engine: " + std::to_string(T) + " more tokens would overflow the cache of " +
                                    std::to_string(capacity_) + " tokens (" + std::to_string(length_) + " held)");
    int32_t* d_tokens = scratch_as<int32_t>(Work::tokens, T);
    be_.upload(d_tokens, tokens.data(), size_t(T) * sizeof(int32_t));
    std::vector<int64_t> positions(static_cast<size_t>(T));
    for (int64_t t = 0; t < T; ++t) positions[size_t(t)] = length_ + t;
    int64_t* d_positions = scratch_as<int64_t>(Work::positions, T);
    be_.upload(d_positions, positions.data(), size_t(T) * sizeof(int64_t));

    float* h = scratch(Work::h, T * d);    // [T, d] the residual stream
    float* x = scratch(Work::x, T * d);    // [T, d] normed input of a sublayer
    float* u = scratch(Work::u, T * d);    // [T, d] a sublayer's output
    be_.embed(embed_, d_tokens, T, h);
    record(trace, -1, "embed", h, T, d);
    for (int64_t l = 0; l < cfg_.L; ++l) {  // dsv2::Model::decoder_layer
        const LayerWeights& L = layers_[size_t(l)];
        be_.rms_norm(h, L.attn_norm, x, T, d, float(cfg_.rms_norm_eps));
        record(trace, l, "attn_norm", x, T, d);
        attention(l, x, u, T, d_positions, trace);
        be_.add(h, u, h, T * d);
        record(trace, l, "attn_residual", h, T, d);
        be_.rms_norm(h, L.ffn_norm, x, T, d, float(cfg_.rms_norm_eps));
        record(trace, l, "ffn_norm", x, T, d);
        ffn(l, x, u, T, trace);
        be_.add(h, u, h, T * d);
        record(trace, l, "out", h, T, d);
    }
    length_ += T;
    const int64_t rows = which == Logits::last ? 1 : T;
    const float* h_last = h + (T - rows) * d;
    be_.rms_norm(h_last, final_norm_, x, rows, d, float(cfg_.rms_norm_eps));
    record(trace, -1, "norm", x, rows, d);
    float* logits = scratch(Work::logits, rows * V);
    be_.linear(x, lm_head_, logits, rows);
    Mat<float> out(rows, V);  // [T or 1, V]
    be_.download(out.data(), logits, size_t(rows * V) * sizeof(float));
    if (trace) trace->record("logits", out);
    return out;
}

// dsv2::mla_forward: mla_query, mla_latent, cache write, attention (naive for T > 1, absorbed for
// T = 1), W^O.   x [T, d] → out [T, d]
void Engine::attention(int64_t l, const float* x, float* out, int64_t T, const int64_t* positions, Trace* trace) {
    const LayerWeights& L = layers_[size_t(l)];
    const int64_t H = cfg_.n_h, d_h = cfg_.d_h, d_R = cfg_.d_R, d_v = cfg_.d_v, d_c = cfg_.d_c, d_qk = cfg_.d_qk();
    const int64_t W = cfg_.cache_width(), p0 = length_, n = p0 + T;
    const float eps = float(cfg_.rms_norm_eps);

    // mla_query: q = W^UQ RMSNorm(W^DQ x) (or W^Q x), split per head as [nope d_h | rope d_R], RoPE.
    float* q = scratch(Work::attn_q, T * H * d_qk);  // [T, n_h, d_qk]
    if (cfg_.has_q_lora()) {
        float* c_q_raw = scratch(Work::attn_c_q_raw, T * cfg_.d_q);
        be_.linear(x, L.q_a, c_q_raw, T);
        float* c_q = scratch(Work::attn_c_q, T * cfg_.d_q);  // [T, d_q]
        be_.rms_norm(c_q_raw, L.q_a_norm, c_q, T, cfg_.d_q, eps);
        record(trace, l, "attn.c_q", c_q, T, cfg_.d_q);
        be_.linear(c_q, L.q_b, q, T);
    } else {
        be_.linear(x, L.q_proj, q, T);
    }
    float* q_nope = scratch(Work::attn_q_nope, T * H * d_h);  // [T, n_h, d_h]
    float* q_pe = scratch(Work::attn_q_pe, T * H * d_R);      // [T, n_h, d_R]
    be_.copy_cols(q, d_qk, 0, q_nope, d_h, 0, T * H, d_h);
    be_.copy_cols(q, d_qk, d_h, q_pe, d_R, 0, T * H, d_R);
    be_.rope(q_pe, positions, T, H, d_R, inv_freq_, amplitude_);
    record(trace, l, "attn.q_nope", q_nope, T, H * d_h);
    record(trace, l, "attn.q_pe", q_pe, T, H * d_R);

    // mla_latent: [c_kv | k_pe] = W^DKV x; c_kv normed, k_pe rotated.
    float* kv_a = scratch(Work::attn_kv_a, T * W);  // [T, d_c + d_R]
    be_.linear(x, L.kv_a, kv_a, T);
    float* c_raw = scratch(Work::attn_c_kv_raw, T * d_c);
    be_.copy_cols(kv_a, W, 0, c_raw, d_c, 0, T, d_c);
    float* c_kv = scratch(Work::attn_c_kv, T * d_c);  // [T, d_c]
    be_.rms_norm(c_raw, L.kv_a_norm, c_kv, T, d_c, eps);
    float* k_pe = scratch(Work::attn_k_pe, T * d_R);  // [T, d_R]
    be_.copy_cols(kv_a, W, d_c, k_pe, d_R, 0, T, d_R);
    be_.rope(k_pe, positions, T, 1, d_R, inv_freq_, amplitude_);
    record(trace, l, "attn.c_kv", c_kv, T, d_c);
    record(trace, l, "attn.k_pe", k_pe, T, d_R);

    // LatentCache::write: rows p0 … p0 + T − 1 of this layer's cache.
    float* cache = cache_[size_t(l)];  // [capacity, W]
    be_.copy_cols(c_kv, d_c, 0, cache + p0 * W, W, 0, T, d_c);
    be_.copy_cols(k_pe, d_R, 0, cache + p0 * W, W, d_c, T, d_R);

    float* o = scratch(Work::attn_o, T * H * d_v);  // [T, n_h, d_v]
    if (attention_form(T) == AttentionForm::absorbed) {
        // mla_attend_absorbed for one query: q̃_i = q^C_i W^UK_i, õ_i = Σ_j p_j ĉ_j, o_i = õ_i W^UV_iᵀ.
        float* q_abs = scratch(Work::attn_q_absorbed, H * d_c);  // [1, n_h, d_c]
        be_.linear_heads(q_nope, L.w_uk_t, q_abs, 1);
        record(trace, l, "attn.q_absorbed", q_abs, 1, H * d_c);
        float* o_lat = scratch(Work::attn_o_latent, H * d_c);  // [1, n_h, d_c]
        be_.mla_decode(cache, capacity_, n, d_c, d_R, q_abs, q_pe, H, float(sigma_), o_lat);
        record(trace, l, "attn.o_latent", o_lat, 1, H * d_c);
        be_.linear_heads(o_lat, L.w_uv, o, 1);
    } else {
        // mla_attend_naive: k_nope_i = ĉ W^UK_iᵀ, v_i = ĉ W^UV_iᵀ for all n cached rows, then
        // causal softmax(σ q_i · k_i) v_i per head.
        float* c_all = scratch(Work::attn_c_all, n * d_c);  // [n, d_c]
        float* k_pe_all = scratch(Work::attn_k_pe_all, n * d_R);  // [n, d_R]
        be_.copy_cols(cache, W, 0, c_all, d_c, 0, n, d_c);
        be_.copy_cols(cache, W, d_c, k_pe_all, d_R, 0, n, d_R);
        float* kv = scratch(Work::attn_kv, n * H * (d_h + d_v));  // [n, n_h, d_h + d_v]
        be_.linear(c_all, L.kv_b, kv, n);
        float* k_nope = scratch(Work::attn_k_nope, n * H * d_h);  // [n, n_h, d_h]
        float* v = scratch(Work::attn_v, n * H * d_v);            // [n, n_h, d_v]
        be_.copy_cols(kv, d_h + d_v, 0, k_nope, d_h, 0, n * H, d_h);
        be_.copy_cols(kv, d_h + d_v, d_h, v, d_v, 0, n * H, d_v);
        float* q_full = scratch(Work::attn_q_full, T * H * d_qk);  // [T, n_h, d_h + d_R], q_pe rotated
        be_.copy_cols(q_nope, d_h, 0, q_full, d_qk, 0, T * H, d_h);
        be_.copy_cols(q_pe, d_R, 0, q_full, d_qk, d_h, T * H, d_R);
        PrefillDims dims;
        dims.T = int(T), dims.n = int(n), dims.n_h = int(H), dims.d_nope = int(d_h), dims.d_R = int(d_R), dims.d_v = int(d_v);
        be_.mla_prefill(dims, q_full, k_nope, k_pe_all, v, float(sigma_), o);
    }
    record(trace, l, "attn.o", o, T, H * d_v);
    be_.linear(o, L.o_proj, out, T);
    record(trace, l, "attn.out", out, T, cfg_.d);
}

// dsv2::swiglu with [gate; up] as one product: out = W_down (silu(x W_gateᵀ) ⊙ x W_upᵀ).
void Engine::swiglu(const WeightRef& gate_up, const WeightRef& down, const float* x, float* out, int64_t T,
                    Work gate_up_slot, Work act_slot) {
    const int64_t I = gate_up.rows / 2;
    float* gu = scratch(gate_up_slot, T * 2 * I);  // [T, 2·I]
    be_.linear(x, gate_up, gu, T);
    float* act = scratch(act_slot, T * I);  // [T, I]
    be_.silu_mul(gu, act, T, I);
    be_.linear(act, down, out, T);
}

// dsv2::dense_mlp_forward or dsv2::moe_forward.   x [T, d] → out [T, d]
void Engine::ffn(int64_t l, const float* x, float* out, int64_t T, Trace* trace) {
    const LayerWeights& L = layers_[size_t(l)];
    const int64_t d = cfg_.d;
    if (!L.moe) {
        swiglu(L.gate_up, L.down, x, out, T, Work::mlp_gate_up, Work::mlp_act);
        record(trace, l, "mlp.out", out, T, d);
        return;
    }
    const int64_t N = cfg_.N_r, K = cfg_.K_r, I = cfg_.d_e;
    // dsv2::route: fp32 logits, softmax, top-K, gates.
    const RouterParams rp = router_params(cfg_);
    float* logits = scratch(Work::moe_router_logits, T * N);  // [T, N_r]
    be_.linear(x, L.router, logits, T);
    record(trace, l, "moe.router_logits", logits, T, N);
    int32_t* idx = scratch_as<int32_t>(Work::moe_topk_idx, T * K);  // [T, K]
    float* gate = scratch(Work::moe_topk_weight, T * K);            // [T, K]
    float* scores = scratch(Work::moe_scores, T * N);               // [T, N_r]
    be_.moe_route(rp, logits, T, idx, gate, scores);
    record(trace, l, "moe.scores", scores, T, N);
    record_int(trace, l, "moe.topk_idx", idx, T, K);
    record(trace, l, "moe.topk_weight", gate, T, K);

    // Dispatch, experts over their contiguous rows, combine in rank order.
    int32_t* slots = scratch_as<int32_t>(Work::moe_slots, T * K);
    int32_t* row_of_slot = scratch_as<int32_t>(Work::moe_row_of_slot, T * K);
    const std::vector<int32_t> offsets = be_.moe_dispatch(idx, T, K, N, slots, row_of_slot);
    float* grouped = scratch(Work::moe_grouped, T * K * d);  // [T·K, d]
    be_.moe_gather(x, slots, T, K, d, grouped);
    float* gu = scratch(Work::moe_gate_up, T * K * 2 * I);  // [T·K, 2·d_e]
    be_.linear_grouped(grouped, L.experts_gate_up, offsets, gu);
    float* act = scratch(Work::moe_act, T * K * I);  // [T·K, d_e]
    be_.silu_mul(gu, act, T * K, I);
    float* y = scratch(Work::moe_y, T * K * d);  // [T·K, d]
    be_.linear_grouped(act, L.experts_down, offsets, y);
    be_.moe_combine(y, gate, nullptr, row_of_slot, T, K, d, out);
    record(trace, l, "moe.routed", out, T, d);
    if (cfg_.N_s > 0) {
        float* shared = scratch(Work::moe_shared, T * d);  // [T, d]
        swiglu(L.shared_gate_up, L.shared_down, x, shared, T, Work::moe_shared_mlp_gate_up, Work::moe_shared_mlp_act);
        record(trace, l, "moe.shared", shared, T, d);
        be_.add(out, shared, out, T * d);
    }
    record(trace, l, "moe.out", out, T, d);
}

}  // namespace dsv2::engine
