// Shared by the engine tests (test_engine_host on HostBackend, test_cuda_engine on the GPU): the
// whole-model cases, each run through engine::check_engine — the oracle and the engine on the same
// tokens and schedule, every named intermediate judged by the agreement rule dsv2 compare applies
// (dsv2/engine/agreement.hpp, itself proved by tests/engine/test_agreement.cpp).
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
#include "dsv2/engine/agreement.hpp"
#include "dsv2/engine/engine.hpp"
#include "dsv2/engine/paged.hpp"
#include "dsv2/model.hpp"
#include "support.hpp"

namespace dsv2::test {

/// Requires that `c` holds (dsv2/engine/agreement.hpp: the rule dsv2 compare applies), naming the
/// first divergence otherwise; returns the worst relative error of the float intermediates.
inline double require_agreement(const engine::Comparison& c) {
    INFO(engine::verdict(c) + (c.first_fail >= 0 ? "\n" + engine::row_line(c.rows[size_t(c.first_fail)], 40) : ""));
    REQUIRE(c.ok());
    return c.worst_rel();
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

/// The fp64 oracle (on `w`, rounded to bf16 first when the engine's weights are bf16) against an
/// Engine on `backend` with weights stored as `type`, every intermediate, by the agreement rule
/// of dsv2 compare (engine::check_engine: bound and near ties of `type`). Returns the worst
/// relative error and prints it.
inline double check_model(engine::Backend& backend, const Config& cfg, const Weights<float>& w, engine::WeightType type,
                          const std::vector<int32_t>& tokens, size_t prefill) {
    const double worst = require_agreement(engine::check_engine(cfg, w, backend, type, tokens, int64_t(prefill)));
    std::printf("  engine on %s, %s weights, %zu tokens (%zu prefill): worst ‖Δ‖/‖ref‖ %.2e\n",
                backend.name().c_str(), engine::to_string(type), tokens.size(), prefill, worst);
    return worst;
}

/// One whole-model check of the engine against the fp64 oracle, for any backend.
struct ModelCase {
    std::string name;
    std::function<void(engine::Backend&)> run;
};

/// The whole-model checks both engine tests run (test_engine_host on HostBackend, test_cuda_engine
/// on the GPU), each within the bound of its weights' type (engine::kBoundFp32, kBoundBf16). Together: every V2 feature (tiny preset: q compression,
/// group-limited routing, YaRN, a dense layer), decode from an empty cache, a checkpoint made by
/// PyTorch, a trained BF16 checkpoint in fp32 and bf16, a long prefill, a skewed expert load
/// with empty experts. `with_long`: include the 1100-token prefill.
inline std::vector<ModelCase> model_cases(bool with_long) {
    using engine::WeightType;
    const std::string src = source_dir();
    std::vector<ModelCase> cases = {
        {"tiny preset, prefill then decode",
         [](engine::Backend& be) {
             const Config cfg = config_preset("tiny");
             const double worst = check_model(be, cfg, random_weights<float>(cfg, 7), WeightType::f32,
                                              some_tokens(11, cfg.V, 1), 7);
             CHECK(worst > 0);  // the two really computed separately
         }},
        {"decode from an empty cache (every call one token, absorbed form)",
         [](engine::Backend& be) {
             const Config cfg = tiny_lite();  // no q compression, greedy routing
             check_model(be, cfg, random_weights<float>(cfg, 3), WeightType::f32, some_tokens(6, cfg.V, 2), 0);
         }},
        {"the golden Lite-like checkpoint (made by PyTorch)",
         [src](engine::Backend& be) {
             const Config cfg = config_from_file(src + "/data/golden/lite");
             check_model(be, cfg, load_weights<float>(src + "/data/golden/lite", cfg), WeightType::f32,
                         some_tokens(9, cfg.V, 3), 5);
         }},
        {"the embedded BF16 model, fp32 and bf16 weights",
         [src](engine::Backend& be) {
             const Config cfg = config_from_file(src + "/data/models/kjv-tiny");
             const Weights<float> w = load_weights<float>(src + "/data/models/kjv-tiny", cfg);  // exactly bf16 values
             check_model(be, cfg, w, WeightType::f32, some_tokens(10, cfg.V, 4), 6);
             const double worst = check_model(be, cfg, w, WeightType::bf16, some_tokens(10, cfg.V, 4), 6);
             CHECK(worst > 1e-4);  // the bf16 products really rounded their inputs
         }},
        {"bf16 weights on a preset, against the oracle on the same rounded weights",
         [](engine::Backend& be) {
             const Config cfg = config_preset("tiny");
             check_model(be, cfg, random_weights<float>(cfg, 11), WeightType::bf16, some_tokens(8, cfg.V, 5), 5);
         }},
        {"skewed expert load (all router logits 0: by the tie rule experts 0 and 1 take every token, the rest none)",
         [](engine::Backend& be) {
             const Config cfg = config_preset("tiny");  // group-limited: groups of 2, keep 2 → groups 0, 1
             Weights<float> w = random_weights<float>(cfg, 9);
             for (int64_t l = 0; l < cfg.L; ++l)
                 if (cfg.is_moe_layer(l)) w.mutable_mat(layer_prefix(l) + "mlp.gate.weight").setZero();
             check_model(be, cfg, w, WeightType::f32, some_tokens(40, cfg.V, 7), 30);
         }},
    };
    if (with_long)
        cases.push_back({"a long prefill (1100 tokens) then decode", [](engine::Backend& be) {
                             const Config cfg = tiny_lite();
                             check_model(be, cfg, random_weights<float>(cfg, 5), WeightType::f32,
                                         some_tokens(1102, cfg.V, 6), 1100);
                         }});
    return cases;
}

}  // namespace dsv2::test
