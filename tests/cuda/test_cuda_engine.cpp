// GPU test (CTest label gpu): the whole model on the GPU — Engine (engine/src/engine.cpp) on
// CudaBackend — against the fp64 oracle, every named intermediate of every layer, with the
// checks of tests/engine/test_engine_host.cpp (which runs the same engine on HostBackend), plus two
// layers at V2-Lite's real shapes. Without a device it prints why and exits 77 (CTest:
// skipped). NOT YET RUN ON A GPU: written and compiled on a machine without one.
// DSV2_GPU_TEST_QUICK=1 (tools/gpu/gpu_check.sh's compute-sanitizer runs) leaves out the long
// prefill and the V2-Lite shapes.
#define CATCH_CONFIG_RUNNER
#include <catch2/catch.hpp>

#include <cstdlib>

#include "dsv2/cuda/ops.hpp"
#include "dsv2/cuda/backend_cuda.hpp"
#include "engine_support.hpp"

using namespace dsv2;
using dsv2::engine::Engine;
using dsv2::engine::WeightType;

namespace {

using engine::kBoundFp32;  // the agreement rule's (dsv2/engine/agreement.hpp)

bool quick() { return cuda::gpu_test_quick(); }

}  // namespace

TEST_CASE("gpu engine: the whole model against the fp64 oracle, every intermediate") {
    for (const test::ModelCase& c : test::model_cases(/*with_long=*/!quick()))
        DYNAMIC_SECTION(c.name) {
            auto backend = cuda::make_cuda_backend();
            c.run(*backend);
        }
}

TEST_CASE("gpu engine: two layers at V2-Lite's shapes (d 2048, 16 heads, d_c 512, 64 experts), fp32 and bf16") {
    if (quick()) return;
    Config cfg = config_preset("deepseek-v2-lite");
    cfg.L = 2;      // layer 0 dense, layer 1 MoE
    cfg.V = 1024;   // the vocabulary does not change the layers
    cfg.validate();
    const Weights<float> w = random_weights<float>(cfg, 21);
    auto backend = cuda::make_cuda_backend();
    test::check_model(*backend, cfg, w, WeightType::f32, test::some_tokens(12, cfg.V, 8), 9);
    test::check_model(*backend, cfg, w, WeightType::bf16, test::some_tokens(12, cfg.V, 8), 9);
}

TEST_CASE("gpu engine: the same logits as the engine on HostBackend") {
    const Config cfg = config_preset("tiny");
    const Weights<float> w = random_weights<float>(cfg, 17);
    auto host = engine::make_host_backend();
    auto gpu = cuda::make_cuda_backend();
    Engine eh(cfg, w, *host, WeightType::f32, 32), eg(cfg, w, *gpu, WeightType::f32, 32);
    const std::vector<int32_t> tokens = test::some_tokens(20, cfg.V, 9);
    const Mat<float> a = eh.forward(std::vector<int32_t>(tokens.begin(), tokens.begin() + 16));
    const Mat<float> b = eg.forward(std::vector<int32_t>(tokens.begin(), tokens.begin() + 16));
    CHECK(test::rel_err(b, a) <= kBoundFp32);
    for (size_t t = 16; t < tokens.size(); ++t)
        CHECK(test::rel_err(eg.forward({tokens[t]}), eh.forward({tokens[t]})) <= kBoundFp32);
}

int main(int argc, char** argv) {
    if (!cuda::announce_device()) return cuda::kSkipExitCode;
    return Catch::Session().run(argc, argv);
}
