// Shared by the engine tests (test_engine_host on HostBackend, test_cuda_engine on the GPU): run
// the fp64 oracle and an Engine on the same tokens with the same schedule, and check every named
// intermediate of the oracle against the engine's.
#pragma once

#include <catch2/catch.hpp>

#include <algorithm>
#include <functional>
#include <limits>
#include <cmath>
#include <cstdio>
#include <string>
#include <vector>

#include "dsv2/checkpoint.hpp"
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
/// Returns the first token whose *set* of experts differs (a near-tie swap across the K-th
/// place), or the number of tokens when none does (a swap of order within the set changes
/// nothing but the order of a sum).
/// Only the first `rows` rows (tokens) are checked.
inline int64_t check_expert_choices(const Trace& oracle, const std::string& idx_name, const Mat<double>& got_all,
                                    double tie_tol, int64_t rows) {
    const Mat<double> ref = oracle.at(idx_name).data.topRows(rows), got = got_all.topRows(rows);
    if (got == ref) return got_all.rows();
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
    for (int64_t t = 0; t < ref.rows(); ++t) {
        std::vector<double> a(ref.row(t).data(), ref.row(t).data() + ref.cols()), b(got.row(t).data(), got.row(t).data() + got.cols());
        std::sort(a.begin(), a.end());
        std::sort(b.begin(), b.end());
        if (a != b) return t;
    }
    return got_all.rows();
}

/// Every intermediate of the oracle is in the engine's trace with the same shape, within `bound`
/// (‖Δ‖/‖ref‖), expert indices equal (or near ties within `tie_tol`, see check_expert_choices);
/// the engine records nothing the oracle does not. Returns the worst relative error. A failure
/// names the first divergence in the forward order.
///
/// After a near tie changes token t's set of experts in layer l, token t's residual stream
/// legitimately differs from there on, and through the latent cache so does every later token's
/// from layer l + 1: what that reaches — layer l's moe.routed, moe.shared, moe.out, out, every
/// later layer, norm, logits — is compared on tokens 0 … t − 1 only (causality: no earlier token
/// reads token t). An entry with fewer rows than tokens (attn.q_absorbed, attn.o_latent: decode
/// calls only) holds the last tokens.
inline int64_t layer_of(const std::string& name) {
    if (name == "embed") return -1;
    if (name.rfind("layers.", 0) != 0) return std::numeric_limits<int64_t>::max();  // norm, logits
    return std::stoll(name.substr(7, name.find('.', 7) - 7));
}
inline bool reached_by_routing_change(const std::string& name, int64_t l) {
    const std::string p = "layers." + std::to_string(l) + ".";
    return layer_of(name) > l || name == p + "moe.routed" || name == p + "moe.shared" || name == p + "moe.out" ||
           name == p + "out";
}
inline double check_traces(const Trace& oracle, const Trace& engine, double bound, double tie_tol = 0) {
    double worst = 0;
    const int64_t tokens = oracle.at("embed").data.rows();
    std::vector<std::pair<int64_t, int64_t>> changes;  // (layer, first token whose experts changed)
    for (const std::string& name : oracle.order()) {
        int64_t cut = tokens;  // tokens compared for this intermediate
        for (const auto& [l, t] : changes)
            if (reached_by_routing_change(name, l)) cut = std::min(cut, t);
        INFO("intermediate " << name);
        REQUIRE(engine.has(name));
        const Trace::Entry& ref = oracle.at(name);
        const Trace::Entry& got = engine.at(name);
        REQUIRE(got.data.rows() == ref.data.rows());
        REQUIRE(got.data.cols() == ref.data.cols());
        REQUIRE(got.integer == ref.integer);
        const int64_t first_token = tokens - ref.data.rows();  // of row 0
        const int64_t rows = std::clamp<int64_t>(cut - first_token, 0, ref.data.rows());
        if (ref.integer) {
            const int64_t changed = check_expert_choices(oracle, name, got.data, tie_tol, rows);
            if (changed < rows) changes.emplace_back(layer_of(name), first_token + changed);
            continue;
        }
        if (rows == 0) continue;
        const double e = rel_err(got.data.topRows(rows), ref.data.topRows(rows));
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

/// One whole-model check of the engine against the fp64 oracle, for any backend.
struct ModelCase {
    std::string name;
    std::function<void(cuda::Backend&)> run;
};

/// The whole-model checks both engine tests run (test_engine_host on HostBackend, test_cuda_engine
/// on the GPU), each within the bound of its weights' type: fp32 1e-5 (tests/test_golden.cpp),
/// bf16 2e-2 (app/compare.cpp). Together: every V2 feature (tiny preset: q compression,
/// group-limited routing, YaRN, a dense layer), decode from an empty cache, a checkpoint made by
/// PyTorch, a trained BF16 checkpoint in fp32 and bf16, a long prefill, a skewed expert load
/// with empty experts. `with_long`: include the 1100-token prefill.
inline std::vector<ModelCase> model_cases(bool with_long) {
    constexpr double fp32 = 1e-5, bf16 = 2e-2;
    using cuda::WeightType;
    const std::string src = source_dir();
    std::vector<ModelCase> cases = {
        {"tiny preset, prefill then decode",
         [](cuda::Backend& be) {
             const Config cfg = config_preset("tiny");
             const double worst = check_model(be, cfg, random_weights<float>(cfg, 7), WeightType::f32,
                                              some_tokens(11, cfg.V, 1), 7, fp32);
             CHECK(worst > 0);  // the two really computed separately
         }},
        {"decode from an empty cache (every call one token, absorbed form)",
         [](cuda::Backend& be) {
             const Config cfg = tiny_lite();  // no q compression, greedy routing
             check_model(be, cfg, random_weights<float>(cfg, 3), WeightType::f32, some_tokens(6, cfg.V, 2), 0, fp32);
         }},
        {"the golden Lite-like checkpoint (made by PyTorch)",
         [src](cuda::Backend& be) {
             const Config cfg = config_from_file(src + "/data/golden/lite");
             check_model(be, cfg, load_weights<float>(src + "/data/golden/lite", cfg), WeightType::f32,
                         some_tokens(9, cfg.V, 3), 5, fp32);
         }},
        {"the embedded BF16 model, fp32 and bf16 weights",
         [src](cuda::Backend& be) {
             const Config cfg = config_from_file(src + "/data/models/kjv-tiny");
             const Weights<float> w = load_weights<float>(src + "/data/models/kjv-tiny", cfg);  // exactly bf16 values
             check_model(be, cfg, w, WeightType::f32, some_tokens(10, cfg.V, 4), 6, fp32);
             const double worst = check_model(be, cfg, w, WeightType::bf16, some_tokens(10, cfg.V, 4), 6, bf16);
             CHECK(worst > 1e-4);  // the bf16 products really rounded their inputs
         }},
        {"bf16 weights on a preset, against the oracle on the same rounded weights",
         [](cuda::Backend& be) {
             const Config cfg = config_preset("tiny");
             check_model(be, cfg, random_weights<float>(cfg, 11), WeightType::bf16, some_tokens(8, cfg.V, 5), 5, bf16);
         }},
        {"skewed expert load (all router logits 0: by the tie rule experts 0 and 1 take every token, the rest none)",
         [](cuda::Backend& be) {
             const Config cfg = config_preset("tiny");  // group-limited: groups of 2, keep 2 → groups 0, 1
             Weights<float> w = random_weights<float>(cfg, 9);
             for (int64_t l = 0; l < cfg.L; ++l)
                 if (cfg.is_moe_layer(l)) w.mutable_mat(layer_prefix(l) + "mlp.gate.weight").setZero();
             check_model(be, cfg, w, WeightType::f32, some_tokens(40, cfg.V, 7), 30, fp32);
         }},
    };
    if (with_long)
        cases.push_back({"a long prefill (1100 tokens) then decode", [](cuda::Backend& be) {
                             const Config cfg = tiny_lite();
                             check_model(be, cfg, random_weights<float>(cfg, 5), WeightType::f32,
                                         some_tokens(1102, cfg.V, 6), 1100, fp32);
                         }});
    return cases;
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
