// The commands' --device option in one place: which implementation runs a forward pass.
//
//   cpu   the oracle (dsv2::Model, reference/): the commands' own code path, not handled here;
//   host  the whole-model engine of the CUDA path (dsv2/engine/engine.hpp) on HostBackend — the
//         GPU path's orchestration on plain loops and the kernels' CPU twins, for learning and
//         testing without a GPU;
//   cuda  the same engine on CudaBackend (the GPU), in builds with the CUDA path only
//         (DSV2_HAVE_CUDA: CMake found a CUDA compiler).
//
// The engine computes in fp32 with fp32 or bf16 weights (--dtype) and chooses the attention form
// per call: naive for calls of several tokens, absorbed for one-token decode (attention_form).
#pragma once

#include <algorithm>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "dsv2/engine/agreement.hpp"
#include "dsv2/engine/backend.hpp"
#include "dsv2/engine/engine.hpp"
#include "dsv2/engine/paged.hpp"
#include "dsv2/engine/runner.hpp"
#include "dsv2/weights.hpp"
#include "model_source.hpp"
#ifdef DSV2_HAVE_CUDA
#include "dsv2/cuda/backend_cuda.hpp"
#include "dsv2/cuda/ops.hpp"
#endif

namespace dsv2::app {

/// Whether `--device cuda` can run here: a build with the CUDA path and at least one device.
/// Otherwise false, and `why` says why in the words of the --device cuda errors.
inline bool cuda_available(std::string* why) {
#ifdef DSV2_HAVE_CUDA
    std::string reason;
    if (cuda::device_count(&reason) > 0) return true;
    if (why) *why = "no CUDA device (" + (reason.empty() || reason == "no CUDA device" ? "none found" : reason) + ")";
    return false;
#else
    if (why) *why = "this dsv2 was built without the CUDA path (no CUDA compiler at configure time)";
    return false;
#endif
}

/// The backend of `--device host` or `--device cuda`. Without a usable GPU, throws
/// std::runtime_error: "--device cuda: WHY" followed by `advice` (e.g. "; use --device host").
inline std::unique_ptr<engine::Backend> make_engine_backend(const std::string& device, const std::string& advice = "") {
    if (device == "host") return engine::make_host_backend();
    if (device != "cuda") throw std::invalid_argument("--device " + device + ": not an engine device (host or cuda)");
    std::string why;
    if (!cuda_available(&why)) throw std::runtime_error("--device cuda: " + why + advice);
#ifdef DSV2_HAVE_CUDA
    try {
        return cuda::make_cuda_backend();
    } catch (const std::exception& e) {
        throw std::runtime_error("--device cuda: " + std::string(e.what()) + advice);
    }
#else
    return nullptr;  // not reached: cuda_available is false without the CUDA path
#endif
}

/// What ran, for headers and summaries (engine::backend_label).
inline std::string engine_label(const engine::Backend& be) { return engine::backend_label(be); }

/// The options of forward and generate that the engine cannot honour, refused before any work:
/// --dtype bf16 on the oracle; --precision fp64 and an explicit --attention on the engine.
inline void check_device_options(const std::string& device, const std::string& dtype, const std::string& precision,
                                 bool attention_given, const std::string& attention) {
    if (device == "cpu") {
        if (dtype != "fp32")
            throw std::invalid_argument("--dtype " + dtype + ": the engine's weight type, for --device host or cuda; "
                                        "--device cpu (the oracle) computes in --precision fp32 or fp64");
        return;
    }
    if (precision == "fp64")
        throw std::invalid_argument("--precision fp64: --device " + device +
                                    " runs the engine, which computes in fp32 (weights: --dtype fp32 or bf16); "
                                    "fp64 is the oracle's, --device cpu");
    if (attention_given)
        throw std::invalid_argument("--attention " + attention + ": --device " + device +
                                    " chooses the form per call (naive for several tokens, absorbed for one-token "
                                    "decode); leave --attention out, or use --device cpu");
}

/// Host bytes per weight that the engine's own copy of the weights takes: the weight type's size
/// for --device host (a second copy beside the fp32 weights loaded from the source), 0 for cuda
/// (device memory) and cpu (no engine).
inline int64_t engine_host_bytes(const std::string& device, engine::WeightType type) {
    return device == "host" ? int64_t(engine::element_bytes(type)) : 0;
}

/// What the engine's schedule ran, in words: "naive for the 8-token prefill, absorbed for 4 one-token calls".
inline std::string forms_used(int64_t T, int64_t prefill) {
    std::string s;
    if (prefill > 1) s = "naive for the " + std::to_string(std::min(prefill, T)) + "-token prefill";
    const int64_t decode = T - (prefill > 1 ? std::min(prefill, T) : 0);
    if (decode > 0)
        s += (s.empty() ? "" : ", ") + std::string("absorbed for ") + std::to_string(decode) + " one-token call" +
             (decode == 1 ? "" : "s");
    return s;
}

/// The runner --device asks for, with a cache of `capacity` tokens: cpu → the oracle in
/// `precision` (fp32 or fp64) with `form` for every call; host or cuda → the engine with `dtype`
/// weights (the backend is made first, so a missing GPU is reported before any weights load; the
/// host copy of the weights is freed once uploaded).
inline std::unique_ptr<engine::Runner> make_runner(const std::string& device, const ModelSource& src, const std::string& precision,
                                                   const std::string& dtype, AttentionForm form, int64_t capacity) {
    if (device == "cpu") {
        if (precision == "fp64") return engine::make_oracle_runner<double>(load_model<double>(src), {form, false}, capacity);
        return engine::make_oracle_runner<float>(load_model<float>(src), {form, false}, capacity);
    }
    std::unique_ptr<engine::Backend> backend = make_engine_backend(device);
    const Model<float> model = load_model<float>(src);  // the weights; the engine copies them
    return engine::make_engine_runner(model.config(), model.weights(), std::move(backend), engine::weight_type_from_string(dtype),
                                      capacity);
}

}  // namespace dsv2::app
