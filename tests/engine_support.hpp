// Shared by the engine tests (test_engine_host on HostBackend, test_cuda_engine on the GPU): run
// the fp64 oracle and an Engine on the same tokens with the same schedule, and check every named
// intermediate of the oracle against the engine's.
#pragma once

#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <string>
#include <vector>

#include "dsv2/cuda/engine.hpp"
#include "dsv2/cuda/paged.hpp"
#include "dsv2/model.hpp"
#include "support.hpp"

namespace dsv2::test {

/// The first `prefill` tokens in one call (none when 0), then one token per call — the schedule
/// of `dsv2 forward --prefill` — on the oracle (each call in the engine's attention form) and on
/// the engine. Returns the two traces; the logits each call returned are recorded as "logits".
struct BothTraces {
    Trace oracle, engine;
};
inline BothTraces run_both(const Model<double>& model, cuda::Engine& engine, const std::vector<int32_t>& tokens,
                           size_t prefill) {
    BothTraces r;
    LatentCache<double> cache(model.config(), int64_t(tokens.size()));
    size_t done = 0;
    while (done < tokens.size()) {
        const size_t n = done == 0 && prefill > 0 ? std::min(prefill, tokens.size()) : 1;
        const std::vector<int32_t> part(tokens.begin() + long(done), tokens.begin() + long(done + n));
        model.forward(part, cache, cuda::attention_form(int64_t(n)), &r.oracle);
        engine.forward(part, &r.engine);
        done += n;
    }
    return r;
}

/// Expert choices of one MoE layer: equal, or (tie_tol > 0) different only where the oracle
/// scores the two experts within tie_tol of each other, relative to the token's top score — a
/// near tie that a lower precision may order either way (dsv2 compare's rule for bf16).
inline void check_expert_choices(const Trace& oracle, const std::string& idx_name, const Mat<double>& got,
                                 double tie_tol) {
    const Mat<double>& ref = oracle.at(idx_name).data;
    if (got == ref) return;
    REQUIRE(tie_tol > 0);  // fp32: exactly the oracle's choices
    const std::string scores_name = idx_name.substr(0, idx_name.size() - std::string("topk_idx").size()) + "scores";
    const Mat<double>& s = oracle.at(scores_name).data;  // [T, N_r]
    for (int64_t t = 0; t < ref.rows(); ++t)
        for (int64_t k = 0; k < ref.cols(); ++k) {
            if (got(t, k) == ref(t, k)) continue;
            const double gap = std::abs(s(t, int64_t(got(t, k))) - s(t, int64_t(ref(t, k))));
            INFO("token " << t << " rank " << k << ": expert " << got(t, k) << " for " << ref(t, k) << ", score gap " << gap);
            REQUIRE(gap <= tie_tol * s(t, int64_t(ref(t, 0))));
        }
}

/// Every intermediate of the oracle is in the engine's trace with the same shape, within `bound`
/// (‖Δ‖/‖ref‖), expert indices equal (or near ties within `tie_tol`, see check_expert_choices);
/// the engine records nothing the oracle does not. Returns the worst relative error. A failure
/// names the first divergence in the forward order.
inline double check_traces(const Trace& oracle, const Trace& engine, double bound, double tie_tol = 0) {
    double worst = 0;
    for (const std::string& name : oracle.order()) {
        INFO("intermediate " << name);
        REQUIRE(engine.has(name));
        const Trace::Entry& ref = oracle.at(name);
        const Trace::Entry& got = engine.at(name);
        REQUIRE(got.data.rows() == ref.data.rows());
        REQUIRE(got.data.cols() == ref.data.cols());
        REQUIRE(got.integer == ref.integer);
        if (ref.integer) {
            check_expert_choices(oracle, name, got.data, tie_tol);
            continue;
        }
        const double e = rel_err(got.data, ref.data);
        INFO("‖Δ‖/‖ref‖ = " << e);
        REQUIRE(e <= bound);
        worst = std::max(worst, e);
    }
    for (const std::string& name : engine.order()) {
        INFO("engine intermediate " << name);
        REQUIRE(oracle.has(name));
    }
    return worst;
}

/// n token ids in [0, V) from a fixed linear congruential sequence.
inline std::vector<int32_t> some_tokens(int64_t n, int64_t V, uint32_t seed) {
    std::vector<int32_t> t(static_cast<size_t>(n));
    uint32_t x = seed;
    for (auto& v : t) {
        x = x * 1664525u + 1013904223u;
        v = int32_t((x >> 8) % uint32_t(V));
    }
    return t;
}

template <typename S>
Weights<S> rounded_to_bf16(const Weights<S>& w);

/// The fp64 oracle (on `w`, rounded to bf16 first when the engine's weights are bf16) against an
/// Engine on `backend` with weights stored as `type`: run_both, then check_traces within `bound`
/// (expert indices exact in fp32, near ties allowed within `bound` in bf16). Returns the worst
/// relative error and prints it.
inline double check_model(cuda::Backend& backend, const Config& cfg, const Weights<float>& w, cuda::WeightType type,
                          const std::vector<int32_t>& tokens, size_t prefill, double bound) {
    Weights<double> wd;
    for (const auto& [name, m] : w.all()) wd.set(name, m.cast<double>());
    const bool bf16 = type == cuda::WeightType::bf16;
    const Model<double> oracle(cfg, bf16 ? rounded_to_bf16(wd) : wd);
    cuda::Engine engine(cfg, w, backend, type, int64_t(tokens.size()));
    const BothTraces r = run_both(oracle, engine, tokens, prefill);
    CHECK(engine.length() == int64_t(tokens.size()));
    const double worst = check_traces(r.oracle, r.engine, bound, bf16 ? bound : 0.0);
    std::printf("  engine on %s, %s weights, %zu tokens (%zu prefill): worst ‖Δ‖/‖ref‖ %.2e\n",
                backend.name().c_str(), cuda::to_string(type), tokens.size(), prefill, worst);
    return worst;
}

/// Weights rounded to bf16 (to nearest even), as a BF16 checkpoint stores them: what the engine
/// computes with when its weights are bf16.
template <typename S>
Weights<S> rounded_to_bf16(const Weights<S>& w) {
    Weights<S> r;
    for (const auto& [name, m] : w.all()) {
        Mat<S> q(m.rows(), m.cols());
        for (int64_t i = 0; i < m.size(); ++i)
            q.data()[i] = S(cuda::bf16_bits_to_float(cuda::float_to_bf16_bits(float(m.data()[i]))));
        r.set(name, std::move(q));
    }
    return r;
}

}  // namespace dsv2::test
