// One interface over the two runnable models — the oracle (dsv2::Model with its latent cache) and
// the engine (Engine on a Backend) — so that every command runs a model one way: forward the next
// tokens, reset, read the logits, record the named intermediates. `dsv2 forward`, `generate` and
// `demo` run whichever --device asks for through it; the engine tests and `dsv2 compare` judge
// the two by the agreement rule (dsv2/engine/agreement.hpp).
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "dsv2/config.hpp"
#include "dsv2/model.hpp"
#include "dsv2/engine/backend.hpp"

namespace dsv2::engine {

class Runner {
public:
    virtual ~Runner() = default;
    virtual const Config& config() const = 0;
    /// Tokens in the cache (the position of the next token).
    virtual int64_t length() const = 0;
    /// Forgets the cached tokens.
    virtual void reset() = 0;
    /// Runs `tokens` at positions length() … length() + T − 1, appends them to the cache and
    /// returns their logits [T, V] (which = Logits::last: [1, V]); records the intermediates in
    /// `trace` when given. Throws std::invalid_argument for a token outside [0, V) or past the
    /// cache's capacity.
    virtual Mat<float> forward(const std::vector<int32_t>& tokens, Trace* trace = nullptr, Logits which = Logits::all) = 0;
    /// forward without a trace, but refusing NaN and Inf: throws std::runtime_error naming the
    /// first intermediate that holds one ("non-finite values (NaN or Inf) first appear in …"). The
    /// oracle watches every intermediate of every call; the engine, whose intermediates stay on
    /// its backend, checks the logits and, when one is not finite, replays the calls so far on
    /// a fresh cache under a guard that names where it began.
    virtual Mat<float> forward_checked(const std::vector<int32_t>& tokens, Logits which = Logits::last) = 0;
    /// What runs, for summaries: "the oracle, absorbed attention, fp32" or
    /// "host (CPU twin of the CUDA path), bf16 weights, attention per call".
    virtual std::string describe() const = 0;
    /// "cpu" for the oracle, the backend's label (backend_label) for the engine.
    virtual std::string device() const = 0;
};

/// How the oracle chooses its attention form: one form for every call, or per call as the engine
/// does (attention_form: naive for several tokens, absorbed for one).
struct OracleAttention {
    AttentionForm form = AttentionForm::absorbed;
    bool per_call = false;
};

/// The oracle in S (float or double), owning its model and a cache of `capacity` tokens.
template <typename S>
std::unique_ptr<Runner> make_oracle_runner(Model<S> model, OracleAttention attention, int64_t capacity);
/// The same on a model the caller keeps (it must outlive the runner): no copy of the weights.
template <typename S>
std::unique_ptr<Runner> borrow_oracle_runner(const Model<S>& model, OracleAttention attention, int64_t capacity);

/// The engine on `backend` (owned by the runner) with `weights` uploaded as `type` and a cache of
/// `capacity` tokens; the host copy of the weights may be freed once this returns.
std::unique_ptr<Runner> make_engine_runner(const Config& cfg, const Weights<float>& weights,
                                           std::unique_ptr<Backend> backend, WeightType type, int64_t capacity);

/// "host (CPU twin of the CUDA path)" or the GPU's "cuda: NVIDIA H100 …": what a backend is, in words.
std::string backend_label(const Backend& be);

}  // namespace dsv2::engine
