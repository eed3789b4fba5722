// The whole DeepSeek-V2 model on a Backend (dsv2/engine/backend.hpp): embedding, L decoder layers
// (MLA, dense SwiGLU or DeepSeekMoE), final norm, lm_head, with a latent cache on the backend.
// It reproduces dsv2::Model<S>::forward (reference/src/model.cpp) call for call, and records the
// same named intermediates (dsv2/trace.hpp) so `dsv2 compare` can name the first divergence.
//
// Attention form per call, as `dsv2 compare` runs the oracle:
//   T > 1 tokens (a prefill, or several tokens after a cached prefix): the non-absorbed form
//     (k_nope, v decompressed from the whole cached latent; Backend::mla_prefill), as
//     dsv2::mla_attend_naive — no attn.q_absorbed / attn.o_latent;
//   T = 1 (decode): the absorbed form over the latent cache (Backend::mla_decode), as
//     dsv2::mla_attend_absorbed — attn.q_absorbed and attn.o_latent recorded.
// attention_form(T) says which.
//
// Weight layout on the backend (built once from the PyTorch tensors; see engine.cpp):
//   every Linear as is (fp32 or bf16), except
//   gate_proj and up_proj side by side as one [2·I, d] matrix per MLP / expert (one product,
//     then Backend::silu_mul); experts stacked [N_r][2·d_e, d] and [N_r][d, d_e];
//   kv_b_proj kept whole for the prefill, plus per head W^UK_iᵀ [d_c, d_h] (stacked n_h) and
//     W^UV_i [d_v, d_c] (stacked n_h) for the absorbed decode;
//   norm weights, the router's gate.weight (the router runs in fp32 whatever the weights'
//     type, spec §"Router precision") and the rotary frequencies in fp32 / fp64.
// One sequence; the cache holds `capacity` tokens per layer (rounded up to whole blocks of
// kEngineBlockTokens), allocated at construction.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "dsv2/config.hpp"
#include "dsv2/mla.hpp"
#include "dsv2/model.hpp"
#include "dsv2/tensor.hpp"
#include "dsv2/trace.hpp"
#include "dsv2/weights.hpp"
#include "dsv2/engine/backend.hpp"

namespace dsv2::engine {

/// The attention form the engine uses for a call of T tokens (and the oracle must use to match).
inline AttentionForm attention_form(int64_t T) { return T == 1 ? AttentionForm::absorbed : AttentionForm::naive; }

class Engine {
public:
    /// Uploads the weights (checked with dsv2::check_weights) as `type` and allocates a cache of
    /// `capacity` ≥ 1 tokens. The backend must outlive the engine. Throws std::invalid_argument
    /// for a bad config, weights or capacity, and std::runtime_error, before allocating, when the
    /// backend's free memory cannot hold the weights and the cache (naming both sizes).
    Engine(const Config& cfg, const Weights<float>& weights, Backend& backend, WeightType type, int64_t capacity);
    ~Engine();
    Engine(const Engine&) = delete;
    Engine& operator=(const Engine&) = delete;

    /// Runs `tokens` at positions length() … length() + T − 1 through every layer, appends their
    /// latent rows to the cache and returns the logits [T, V] (Logits::last: [1, V]). Records the
    /// intermediates in `trace` when given. Throws std::invalid_argument for a token outside
    /// [0, V) (naming it and its index) or a call that would overflow the cache.
    Mat<float> forward(const std::vector<int32_t>& tokens, Trace* trace = nullptr, Logits which = Logits::all);

    int64_t length() const { return length_; }      ///< tokens in the cache
    int64_t capacity() const { return capacity_; }  ///< tokens the cache can hold
    void reset() { length_ = 0; }                   ///< forget the cached tokens
    const Config& config() const { return cfg_; }
    WeightType weight_type() const { return type_; }
    Backend& backend() { return be_; }
    /// Bytes of backend memory held for weights and for the cache.
    int64_t weight_bytes() const { return weight_bytes_; }
    int64_t cache_bytes() const;

private:
    struct LayerWeights;
    struct Scratch;
    enum class Work : int;  // the work buffers' slots (engine.cpp)
    float* scratch(Work w, int64_t elements);  // grows a work buffer
    template <typename T>
    T* scratch_as(Work w, int64_t elements);
    WeightRef upload(const Mat<float>& m, int64_t count, WeightType type);
    // The parts' rows back to back as one stack of `count` matrices.
    WeightRef upload_rows(const std::vector<const Mat<float>*>& parts, int64_t count, WeightType type);
    const float* upload_f32(const Mat<float>& m);
    void check_fits() const;  // the backend's free memory against weights + cache + work
    void record(Trace* trace, int64_t l, const char* what, const float* x, int64_t rows, int64_t cols);
    void record_int(Trace* trace, int64_t l, const char* what, const int32_t* x, int64_t rows, int64_t cols);

    void attention(int64_t l, const float* x, float* out, int64_t T, const int64_t* positions, Trace* trace);
    void ffn(int64_t l, const float* x, float* out, int64_t T, Trace* trace);
    void swiglu(const WeightRef& gate_up, const WeightRef& down, const float* x, float* out, int64_t T,
                Work gate_up_slot, Work act_slot);

    Config cfg_;
    Backend& be_;
    WeightType type_;
    int64_t capacity_ = 0, length_ = 0, weight_bytes_ = 0;
    double sigma_ = 0, amplitude_ = 1;
    std::vector<std::unique_ptr<Buffer>> owned_;  // every weight, the rotary table and the caches
    WeightRef embed_, lm_head_;
    const float* final_norm_ = nullptr;
    const double* inv_freq_ = nullptr;
    std::vector<LayerWeights> layers_;
    std::vector<float*> cache_;  // [L] → [capacity, d_c + d_R]
    std::unique_ptr<Scratch> scratch_;
};

}  // namespace dsv2::engine
