// The two runners of dsv2/engine/runner.hpp: the oracle and the engine behind one interface.
#include "dsv2/engine/runner.hpp"

#include <stdexcept>

#include "dsv2/engine/engine.hpp"

namespace dsv2::engine {

namespace {

[[noreturn]] void throw_nonfinite(const std::string& where) {
    throw std::runtime_error("non-finite values (NaN or Inf) first appear in " + where);
}

template <typename S>
class OracleRunner final : public Runner {
public:
    OracleRunner(std::shared_ptr<const Model<S>> model, OracleAttention attention, int64_t capacity)
        : model_(std::move(model)), attention_(attention), capacity_(capacity), cache_(model_->config(), capacity) {}
    const Config& config() const override { return model_->config(); }
    int64_t length() const override { return cache_.length(); }
    void reset() override { cache_ = LatentCache<S>(model_->config(), capacity_); }
    Mat<float> forward(const std::vector<int32_t>& tokens, Trace* trace, Logits which) override {
        const AttentionForm form = attention_.per_call ? attention_form(int64_t(tokens.size())) : attention_.form;
        return model_->forward(tokens, cache_, form, trace, which).template cast<float>();
    }
    Mat<float> forward_checked(const std::vector<int32_t>& tokens, Logits which) override {
        Trace guard(nullptr, /*store=*/false);  // notes the first NaN or Inf, keeps nothing
        Mat<float> logits = forward(tokens, &guard, which);
        if (!guard.first_nonfinite().empty()) throw_nonfinite(guard.first_nonfinite());
        return logits;
    }
    std::string describe() const override {
        return std::string("the oracle, ") +
               (attention_.per_call ? "attention per call" : attention_.form == AttentionForm::naive ? "naive attention" : "absorbed attention") +
               ", " + (sizeof(S) == 8 ? "fp64" : "fp32");
    }
    std::string device() const override { return "cpu"; }

private:
    std::shared_ptr<const Model<S>> model_;  // owned, or borrowed (a no-op deleter)
    OracleAttention attention_;
    int64_t capacity_;
    LatentCache<S> cache_;
};

class EngineRunner final : public Runner {
public:
    EngineRunner(const Config& cfg, const Weights<float>& w, std::unique_ptr<Backend> backend, WeightType type, int64_t capacity)
        : backend_(std::move(backend)), engine_(cfg, w, *backend_, type, capacity) {}
    const Config& config() const override { return engine_.config(); }
    int64_t length() const override { return engine_.length(); }
    void reset() override {
        engine_.reset();
        calls_.clear();
    }
    Mat<float> forward(const std::vector<int32_t>& tokens, Trace* trace, Logits which) override {
        Mat<float> logits = engine_.forward(tokens, trace, which);
        calls_.push_back(tokens);
        return logits;
    }
    Mat<float> forward_checked(const std::vector<int32_t>& tokens, Logits which) override {
        Mat<float> logits = forward(tokens, nullptr, which);  // untraced: only the logits leave the backend
        if (logits.allFinite()) return logits;
        Trace guard(nullptr, /*store=*/false);
        const std::vector<std::vector<int32_t>> calls = calls_;
        reset();
        for (const std::vector<int32_t>& c : calls)
            if (guard.first_nonfinite().empty()) forward(c, &guard, Logits::all);
        throw_nonfinite(guard.first_nonfinite().empty() ? std::string("logits") : guard.first_nonfinite());
    }
    std::string describe() const override {
        return backend_label(*backend_) + ", " + to_string(engine_.weight_type()) + " weights, attention per call";
    }
    std::string device() const override { return backend_label(*backend_); }

private:
    std::unique_ptr<Backend> backend_;  // before engine_: destroyed after it
    Engine engine_;
    std::vector<std::vector<int32_t>> calls_;  // every call since the last reset, for the replay
};

}  // namespace

template <typename S>
std::unique_ptr<Runner> make_oracle_runner(Model<S> model, OracleAttention attention, int64_t capacity) {
    return std::make_unique<OracleRunner<S>>(std::make_shared<const Model<S>>(std::move(model)), attention, capacity);
}
template <typename S>
std::unique_ptr<Runner> borrow_oracle_runner(const Model<S>& model, OracleAttention attention, int64_t capacity) {
    return std::make_unique<OracleRunner<S>>(std::shared_ptr<const Model<S>>(&model, [](const Model<S>*) {}), attention,
                                             capacity);
}
template std::unique_ptr<Runner> make_oracle_runner<float>(Model<float>, OracleAttention, int64_t);
template std::unique_ptr<Runner> make_oracle_runner<double>(Model<double>, OracleAttention, int64_t);
template std::unique_ptr<Runner> borrow_oracle_runner<float>(const Model<float>&, OracleAttention, int64_t);
template std::unique_ptr<Runner> borrow_oracle_runner<double>(const Model<double>&, OracleAttention, int64_t);

std::unique_ptr<Runner> make_engine_runner(const Config& cfg, const Weights<float>& weights, std::unique_ptr<Backend> backend,
                                           WeightType type, int64_t capacity) {
    if (!backend) throw std::invalid_argument("make_engine_runner: no backend");
    return std::make_unique<EngineRunner>(cfg, weights, std::move(backend), type, capacity);
}

std::string backend_label(const Backend& be) {
    const std::string n = be.name();
    return n == "host" ? "host (CPU twin of the CUDA path)" : n;
}

}  // namespace dsv2::engine
