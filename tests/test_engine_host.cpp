// The whole-model engine (cuda/src/engine.cpp) on HostBackend against the fp64 oracle, every
// named intermediate of every layer: the engine's orchestration (weight stacking, per-head
// splits, the latent cache, the attention form per call, the MoE dispatch) is the code the GPU
// runs, here on plain loops and the kernels' CPU twins. The same checks run on the GPU in
// tests/test_cuda_engine.cpp.
#include <catch2/catch.hpp>

#include "dsv2/checkpoint.hpp"
#include "engine_support.hpp"

using namespace dsv2;
using dsv2::cuda::Engine;
using dsv2::cuda::WeightType;

namespace {

// fp32: the golden test's bound (tests/test_golden.cpp); bf16: dsv2 compare's (app/compare.cpp).
constexpr double kBoundFp32 = 1e-5;
constexpr double kBoundBf16 = 2e-2;

// The engine on a fresh HostBackend against the fp64 oracle (tests/engine_support.hpp).
double check_model(const Config& cfg, const Weights<float>& w, WeightType type, const std::vector<int32_t>& tokens,
                   size_t prefill, double bound) {
    auto backend = cuda::make_host_backend();
    return test::check_model(*backend, cfg, w, type, tokens, prefill, bound);
}

}  // namespace

TEST_CASE("engine on the host: tiny preset, prefill then decode, every intermediate within 1e-5 of the fp64 oracle") {
    const Config cfg = config_preset("tiny");  // q compression, group-limited routing, YaRN, a dense layer
    const Weights<float> w = random_weights<float>(cfg, 7);
    const double worst = check_model(cfg, w, WeightType::f32, test::some_tokens(11, cfg.V, 1), 7, kBoundFp32);
    CHECK(worst > 0);  // the two really computed separately
}

TEST_CASE("engine on the host: decode from an empty cache (every call one token, absorbed form)") {
    const Config cfg = test::tiny_lite();  // no q compression, greedy routing
    check_model(cfg, random_weights<float>(cfg, 3), WeightType::f32, test::some_tokens(6, cfg.V, 2), 0, kBoundFp32);
}

TEST_CASE("engine on the host: the golden Lite-like checkpoint") {
    const std::string dir = std::string(DSV2_SOURCE_DIR) + "/data/golden/lite";
    const Config cfg = config_from_file(dir);
    check_model(cfg, load_weights<float>(dir, cfg), WeightType::f32, test::some_tokens(9, cfg.V, 3), 5, kBoundFp32);
}

TEST_CASE("engine on the host: the embedded BF16 model, fp32 and bf16 weights") {
    const std::string dir = std::string(DSV2_SOURCE_DIR) + "/data/models/kjv-tiny";
    const Config cfg = config_from_file(dir);
    const Weights<float> w = load_weights<float>(dir, cfg);  // exactly bf16 values
    check_model(cfg, w, WeightType::f32, test::some_tokens(10, cfg.V, 4), 6, kBoundFp32);
    const double worst = check_model(cfg, w, WeightType::bf16, test::some_tokens(10, cfg.V, 4), 6, kBoundBf16);
    CHECK(worst > 1e-4);  // bf16 products really rounded their inputs
}

TEST_CASE("engine on the host: bf16 weights on a preset, against the oracle on the same rounded weights") {
    const Config cfg = config_preset("tiny");
    check_model(cfg, random_weights<float>(cfg, 11), WeightType::bf16, test::some_tokens(8, cfg.V, 5), 5, kBoundBf16);
}

TEST_CASE("engine on the host: a long prefill (1100 tokens) then decode") {
    const Config cfg = test::tiny_lite();
    check_model(cfg, random_weights<float>(cfg, 5), WeightType::f32, test::some_tokens(1102, cfg.V, 6), 1100, kBoundFp32);
}

TEST_CASE("engine on the host: skewed expert load (every token ties on all experts: experts 0 and 1 take all, the rest empty)") {
    const Config cfg = config_preset("tiny");  // group-limited: groups of 2, keep 2 → groups 0, 1 by the tie rule
    Weights<float> w = random_weights<float>(cfg, 9);
    for (int64_t l = 0; l < cfg.L; ++l)
        if (cfg.is_moe_layer(l)) w.mutable_mat(layer_prefix(l) + "mlp.gate.weight").setZero();
    const std::vector<int32_t> tokens = test::some_tokens(40, cfg.V, 7);
    Weights<double> wd;
    for (const auto& [name, m] : w.all()) wd.set(name, m.cast<double>());
    const Model<double> oracle(cfg, wd);
    auto backend = cuda::make_host_backend();
    Engine engine(cfg, w, *backend, WeightType::f32, int64_t(tokens.size()));
    const test::BothTraces r = test::run_both(oracle, engine, tokens, 30);
    test::check_traces(r.oracle, r.engine, kBoundFp32);
    const Mat<double>& idx = r.engine.at(iname(1, "moe.topk_idx")).data;  // an independent expectation
    for (int64_t t = 0; t < idx.rows(); ++t) {
        CHECK(idx(t, 0) == 0);
        CHECK(idx(t, 1) == 1);
    }
}

TEST_CASE("engine on the host: Logits::last is the last row of Logits::all; reset starts over") {
    const Config cfg = config_preset("tiny");
    const Weights<float> w = random_weights<float>(cfg, 13);
    auto backend = cuda::make_host_backend();
    Engine engine(cfg, w, *backend, WeightType::f32, 16);
    const std::vector<int32_t> tokens = test::some_tokens(5, cfg.V, 8);
    const Mat<float> all = engine.forward(tokens);
    CHECK(engine.length() == 5);
    engine.reset();
    const Mat<float> last = engine.forward(tokens, nullptr, Logits::last);
    REQUIRE(last.rows() == 1);
    CHECK(last.row(0) == all.row(4));
    CHECK(engine.capacity() == 64);  // rounded up to whole cache blocks
}

TEST_CASE("engine on the host: bad tokens, a full cache and a bad capacity are refused with a message") {
    const Config cfg = config_preset("tiny");
    const Weights<float> w = random_weights<float>(cfg, 13);
    auto backend = cuda::make_host_backend();
    Engine engine(cfg, w, *backend, WeightType::f32, 64);
    CHECK_THROWS_WITH(engine.forward({1, 256}), "token 256 at index 1 is outside the vocabulary [0, 256)");
    CHECK_THROWS_WITH(engine.forward({-1}), "token -1 at index 0 is outside the vocabulary [0, 256)");
    CHECK(engine.length() == 0);
    engine.forward(test::some_tokens(60, cfg.V, 9));
    CHECK_THROWS_WITH(engine.forward(test::some_tokens(5, cfg.V, 10)),
                      "engine: 5 more tokens would overflow the cache of 64 tokens (60 held)");
    CHECK(engine.length() == 60);
    CHECK_THROWS_WITH(Engine(cfg, w, *backend, WeightType::f32, 0), Catch::Contains("capacity must be at least 1"));
    Weights<float> broken = w;
    broken.set("model.norm.weight", Mat<float>(1, 3));
    CHECK_THROWS_WITH(Engine(cfg, broken, *backend, WeightType::f32, 8), Catch::Contains("model.norm.weight"));
}
