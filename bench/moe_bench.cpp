// dsv2_gpu_moe_bench: the DeepSeekMoE layer and the whole model on the GPU backend
// (dsv2/engine/backend.hpp, make_cuda_backend; dsv2/engine/engine.hpp), at DeepSeek-V2-Lite's shapes
// (config_preset("deepseek-v2-lite"): d = 2048, N_r = 64 routed experts of width d_e = 1408,
// K = 6 per token by greedy top-K, N_s = 2 shared experts as one SwiGLU of width 2816). The
// PyTorch peer is tools/bench/moe_torch.py (same config, same definitions, same JSON keys;
// `--against` prints the ratio tables). Correctness is proved by tests/cuda/test_cuda_backend.cpp,
// tests/cuda/test_cuda_engine.cpp and `dsv2 compare --device cuda`, not here; this program only
// checks that what it timed came out finite.
//
// 1. One MoE layer, the Backend operations in the engine's order (engine/src/engine.cpp, ffn):
//      router linear (fp32 weights) → moe_route → moe_dispatch (offsets come back to the host)
//      → moe_gather → linear_grouped(experts' [gate; up]) → silu_mul → linear_grouped(down)
//      → moe_combine, then the shared experts' SwiGLU (linear → silu_mul → linear) and add.
//    Weights: random uniform of std 1/√in (a device-side hash, never zeros), expert weights in
//    bf16 (and fp32, a second row), the router in fp32 as the engine keeps it; `--sets` (default 2)
//    whole layers of weights rotated so that consecutive calls read different memory (one bf16
//    layer is 1.14 GB, far beyond the 60 MB L2); each set has its own input x, uniform in [−1, 1).
//    time     per call: Backend::sync, steady clock, the layer, Backend::sync (the engine's
//             host round trip for the offsets is part of the layer); median (and min) of
//             `--iters` calls after `--warmup` untimed ones.
//    decode   B ∈ --decode (default 1, 8, 64) tokens. Judged in GB/s of weights read:
//               bytes = E_hit·3·d·d_e·b + 3·d·(N_s·d_e)·b + N_r·d·4
//             E_hit = distinct experts the B tokens were routed to (counted from the offsets of
//             each call; expected N_r·(1 − (1 − K/N_r)^B)), b = bytes per weight element (2 for
//             bf16, 4 for fp32); activations (< 1% here) are not counted. GB/s is the median of
//             the per-call bytes/time, beside (i) the H200's HBM3e datasheet rate (--hbm-bw,
//             4.8e12 B/s) and (ii) a device-to-device copy measured in the same run (GB/s read +
//             written); floor = bytes / each.
//    prefill  T = --prefill (default 4096) tokens. Judged in TFLOP/s:
//               FLOPs = 2·T·K·3·d·d_e + 2·T·3·d·(N_s·d_e) + 2·T·d·N_r
//             beside (i) the dense equivalent of the expert products run as two plain cuBLAS
//             GEMMs in the same run (T·(K + N_s) rows through one [2·d_e, d] and one [d, d_e]
//             matrix, same storage type, fp32 output and accumulation; bench_device.hpp)
//             and (ii) the dense peak: --bf16-flops (790e12, the measured bf16 GEMM rate of
//             /work/shared/spec/performance.md; datasheet ~990e12) or --fp32-flops (67e12).
// 2. The whole model: an Engine on the same preset cut to its first --layers (default 4: the
//    dense layer 0 and three MoE layers; random_weights<float>, stored as --model-dtype, default
//    bf16), one sequence. At each context c of --contexts (default 512, 4096): one untimed
//    prefill of c tokens (token i = (1 + 7919·i) mod V) to grow the work buffers, reset, the
//    timed prefill of the same c tokens, --step-warmup (2) untimed one-token steps, then --steps
//    (32) timed one-token steps, each Engine::forward(token, Logits::last) on the steady clock
//    (it returns the logits on the host, so each step ends synchronised). tokens/s = 1 / the
//    median step. Floor: the bytes a step must read (every weight the token uses once, by the
//    engine's layout — attention with the per-head W^UK/W^UV, dense MLP or router + K experts +
//    shared, lm_head, norms, the fp32 latent cache of every layer at the mean context) over the
//    copy rate.
// `--json FILE` writes every figure. Without a CUDA device it prints "SKIPPED: …" and exits 77.
// `--dry-run` runs the same code on HostBackend (the CPU twins) at the tiny preset: it checks the
// bookkeeping on any machine, proves nothing about speed, and measures no copy and no GEMM.
// Its device helpers (random fills, the copy, the reference GEMMs: bench_device.hpp, built from
// bench_device.cu) and host ones (the hash, the median, the option loop: bench_common.hpp) are in
// files shared with dsv2_gpu_bench.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "dsv2/config.hpp"
#include "dsv2/engine/backend.hpp"
#include "dsv2/cuda/backend_cuda.hpp"
#include "dsv2/engine/engine.hpp"
#include "dsv2/cuda/ops.hpp"
#include "dsv2/engine/paged.hpp"
#include "dsv2/weights.hpp"
#include "bench_common.hpp"
#include "bench_device.hpp"

using namespace dsv2;
using namespace dsv2::cuda;
using namespace dsv2::engine;
using json = nlohmann::json;
using Clock = std::chrono::steady_clock;

namespace {

const char* kTool = "dsv2_gpu_moe_bench";

double since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

using bench::mean;
using bench::median;

// ---------------------------------------------------------------------------------------------
// Options

struct Options {
    std::string json;
    std::string preset = "deepseek-v2-lite";
    std::string backend = "cuda";  // cuda | host
    std::vector<int> decode{1, 8, 64};
    int prefill = 4096;
    std::vector<WeightType> dtypes{WeightType::bf16, WeightType::f32};
    int iters = 20, prefill_iters = 10, warmup = 3, sets = 2;
    int layers = 4;
    std::vector<int> contexts{512, 4096};
    int steps = 32, step_warmup = 2;
    WeightType model_dtype = WeightType::bf16;
    double hbm_bw = 4.8e12, bf16_flops = 790e12, fp32_flops = 67e12, copy_gib = 2.0;
    bool gemm = true;
    uint64_t seed = 1;
};

std::vector<WeightType> parse_types(const std::string& s) { return bench::parse_list(s, weight_type_from_string); }

void usage() {
    std::printf(
        "usage: dsv2_gpu_moe_bench [--json FILE] [--preset deepseek-v2-lite] [--decode 1,8,64] [--prefill 4096]\n"
        "                          [--dtypes bf16,fp32] [--iters 20] [--prefill-iters 10] [--warmup 3] [--sets 2]\n"
        "                          [--layers 4] [--contexts 512,4096] [--steps 32] [--step-warmup 2]\n"
        "                          [--model-dtype bf16] [--hbm-bw 4.8e12] [--bf16-flops 790e12] [--fp32-flops 67e12]\n"
        "                          [--copy-gib 2] [--no-gemm] [--seed 1] [--backend cuda|host] [--dry-run]\n"
        "One DeepSeekMoE layer (decode in GB/s of expert weights read, prefill in TFLOP/s) and whole-model\n"
        "decode tokens/s on the GPU backend; see the header of bench/moe_bench.cpp and cuda/README.md.\n"
        "--decode '' / --prefill 0 / --layers 0 leave that part out. --dry-run: HostBackend, tiny preset,\n"
        "small sizes (a check of the bookkeeping on any machine; no speed).\n");
}

Options parse(int argc, char** argv) {
    using bench::option;
    Options o;
    bench::parse_options(
        argc, argv,
        {option("--json", o.json), option("--preset", o.preset), option("--backend", o.backend),
         option("--decode", o.decode), option("--prefill", o.prefill), option("--dtypes", o.dtypes, parse_types),
         option("--iters", o.iters), option("--prefill-iters", o.prefill_iters), option("--warmup", o.warmup),
         option("--sets", o.sets), option("--layers", o.layers), option("--contexts", o.contexts),
         option("--steps", o.steps), option("--step-warmup", o.step_warmup),
         option("--model-dtype", o.model_dtype, weight_type_from_string), option("--hbm-bw", o.hbm_bw),
         option("--bf16-flops", o.bf16_flops), option("--fp32-flops", o.fp32_flops),
         option("--copy-gib", o.copy_gib), bench::flag("--no-gemm", [&o] { o.gemm = false; }),
         option("--seed", o.seed),
         bench::flag("--dry-run",
                     [&o] {
                         o.backend = "host", o.preset = "tiny", o.decode = {1, 8}, o.prefill = 64, o.iters = 3;
                         o.prefill_iters = 2, o.warmup = 1, o.layers = 3, o.contexts = {16, 64}, o.steps = 3;
                         o.step_warmup = 1, o.copy_gib = 0, o.gemm = false;
                     })},
        usage);
    if (o.backend != "cuda" && o.backend != "host") throw std::invalid_argument("--backend must be cuda or host");
    if (o.iters < 1 || o.prefill_iters < 1 || o.warmup < 0 || o.sets < 1 || o.layers < 0 || o.steps < 1 ||
        o.step_warmup < 0 || o.prefill < 0 || o.copy_gib < 0 || o.hbm_bw <= 0 || o.bf16_flops <= 0 || o.fp32_flops <= 0)
        throw std::invalid_argument("--iters, --prefill-iters, --sets, --steps must be ≥ 1; --warmup, --step-warmup, "
                                    "--layers, --prefill, --copy-gib ≥ 0; rates > 0");
    for (int b : o.decode) if (b < 1) throw std::invalid_argument("--decode values must be ≥ 1");
    for (int c : o.contexts) if (c < 1) throw std::invalid_argument("--contexts values must be ≥ 1");
    if (o.dtypes.empty() && (!o.decode.empty() || o.prefill > 0)) throw std::invalid_argument("--dtypes is empty");
    return o;
}

// ---------------------------------------------------------------------------------------------
// Random fills of backend memory: on the GPU by a kernel (gigabytes in milliseconds), on the
// host backend by the same hash on the CPU.

struct Filler {
    Backend& be;
    bool device;
    void operator()(void* p, int64_t n, WeightType t, uint32_t seed, float scale) const {
        if (device) {
            bench::device_fill_uniform(p, n, t == WeightType::bf16, seed, scale);
            return;
        }
        std::vector<float> v(static_cast<size_t>(n));
        for (int64_t i = 0; i < n; ++i)
            v[size_t(i)] = scale * bench::uniform_pm1(uint64_t(i), seed);
        if (t == WeightType::f32) {
            be.upload(p, v.data(), v.size() * sizeof(float));
            return;
        }
        std::vector<uint16_t> bits(v.size());
        for (size_t i = 0; i < v.size(); ++i) bits[i] = float_to_bf16_bits(v[i]);
        be.upload(p, bits.data(), bits.size() * sizeof(uint16_t));
    }
    void done() const {
        if (device) bench::device_synchronize();
        be.sync();
    }
};

// ---------------------------------------------------------------------------------------------
// 1. One MoE layer

/// One layer's weights on the backend, in the engine's layout (dsv2/engine/engine.hpp).
struct LayerSet {
    std::vector<std::unique_ptr<Buffer>> owned;
    WeightRef router, gate_up, down, shared_gate_up, shared_down;
};

WeightRef make_weight(Backend& be, const Filler& fill, std::vector<std::unique_ptr<Buffer>>& owned, int64_t rows,
                      int64_t cols, int64_t count, WeightType t, uint32_t seed) {
    const int64_t n = rows * cols * count;
    owned.push_back(be.alloc(size_t(n) * element_bytes(t)));
    // uniform in [−a, a) has std a/√3: std 1/√cols as random_weights gives a Linear
    fill(owned.back()->data(), n, t, seed, float(std::sqrt(3.0 / double(cols))));
    WeightRef w;
    w.data = owned.back()->data();
    w.type = t, w.rows = rows, w.cols = cols, w.count = count;
    return w;
}

LayerSet make_layer(Backend& be, const Filler& fill, const Config& c, WeightType t, uint32_t seed) {
    LayerSet s;
    const int64_t d = c.d, I = c.d_e, N = c.N_r;
    s.router = make_weight(be, fill, s.owned, N, d, 1, WeightType::f32, seed * 8 + 1);
    s.gate_up = make_weight(be, fill, s.owned, 2 * I, d, N, t, seed * 8 + 2);
    s.down = make_weight(be, fill, s.owned, d, I, N, t, seed * 8 + 3);
    if (c.N_s > 0) {
        s.shared_gate_up = make_weight(be, fill, s.owned, 2 * c.N_s * I, d, 1, t, seed * 8 + 4);
        s.shared_down = make_weight(be, fill, s.owned, d, c.N_s * I, 1, t, seed * 8 + 5);
    }
    return s;
}

/// Work buffers for T tokens.
struct LayerWork {
    std::vector<std::unique_ptr<Buffer>> owned;
    float *logits, *gate, *scores, *grouped, *gu, *act, *y, *out, *s_gu, *s_act, *s_out;
    int32_t *idx, *slots, *row_of_slot;
    LayerWork(Backend& be, const Config& c, int64_t T) {
        const int64_t N = c.N_r, K = c.K_r, d = c.d, I = c.d_e, S = c.N_s * c.d_e;
        auto f = [&](int64_t n) {
            owned.push_back(be.alloc(size_t(std::max<int64_t>(n, 1)) * sizeof(float)));
            return owned.back()->as<float>();
        };
        auto i32 = [&](int64_t n) {
            owned.push_back(be.alloc(size_t(std::max<int64_t>(n, 1)) * sizeof(int32_t)));
            return owned.back()->as<int32_t>();
        };
        logits = f(T * N), gate = f(T * K), scores = f(T * N), grouped = f(T * K * d), gu = f(T * K * 2 * I);
        act = f(T * K * I), y = f(T * K * d), out = f(T * d), s_gu = f(T * 2 * S), s_act = f(T * S), s_out = f(T * d);
        idx = i32(T * K), slots = i32(T * K), row_of_slot = i32(T * K);
    }
};


/// The engine's ffn for a MoE layer (engine/src/engine.cpp), call for call. Returns the distinct
/// experts the T tokens were routed to (from the dispatch offsets).
int run_layer(Backend& be, const Config& c, const RouterParams& rp, const LayerSet& s, LayerWork& w, const float* x,
              int64_t T) {
    const int64_t N = c.N_r, K = c.K_r, d = c.d, I = c.d_e;
    be.linear(x, s.router, w.logits, T);
    be.moe_route(rp, w.logits, T, w.idx, w.gate, w.scores);
    const std::vector<int32_t> offsets = be.moe_dispatch(w.idx, T, K, N, w.slots, w.row_of_slot);
    be.moe_gather(x, w.slots, T, K, d, w.grouped);
    be.linear_grouped(w.grouped, s.gate_up, offsets, w.gu);
    be.silu_mul(w.gu, w.act, T * K, I);
    be.linear_grouped(w.act, s.down, offsets, w.y);
    be.moe_combine(w.y, w.gate, nullptr, w.row_of_slot, T, K, d, w.out);
    if (c.N_s > 0) {
        const int64_t S = c.N_s * I;
        be.linear(x, s.shared_gate_up, w.s_gu, T);
        be.silu_mul(w.s_gu, w.s_act, T, S);
        be.linear(w.s_act, s.shared_down, w.s_out, T);
        be.add(w.out, w.s_out, w.out, T * d);
    }
    if (offsets.size() != size_t(N + 1) || offsets.back() != T * K)
        throw std::runtime_error("moe_dispatch returned " + std::to_string(offsets.size()) + " offsets ending at " +
                                 std::to_string(offsets.empty() ? -1 : offsets.back()) + "; expected " +
                                 std::to_string(N + 1) + " ending at T·K = " + std::to_string(T * K));
    int hit = 0;
    for (int64_t e = 0; e < N; ++e) hit += offsets[size_t(e + 1)] > offsets[size_t(e)] ? 1 : 0;
    return hit;
}

double layer_bytes(const Config& c, int experts_hit, WeightType t) {
    const double b = double(element_bytes(t)), d = double(c.d), I = double(c.d_e);
    return double(experts_hit) * 3.0 * d * I * b + 3.0 * d * double(c.N_s) * I * b + double(c.N_r) * d * 4.0;
}

double layer_flops(const Config& c, int64_t T) {
    const double d = double(c.d), I = double(c.d_e), Tt = double(T);
    return 2.0 * Tt * double(c.K_r) * 3.0 * d * I + 2.0 * Tt * 3.0 * d * double(c.N_s) * I + 2.0 * Tt * d * double(c.N_r);
}

bool all_finite(Backend& be, const float* p, int64_t n) {
    std::vector<float> h(static_cast<size_t>(n));
    be.download(h.data(), p, h.size() * sizeof(float));
    for (float v : h)
        if (!std::isfinite(v)) return false;
    return true;
}

struct LayerResult {
    std::string dtype, phase;
    int64_t T = 0;
    int iters = 0, sets = 0;
    double median_s = 0, min_s = 0;
    double experts_mean = 0, experts_expected = 0;
    int experts_min = 0, experts_max = 0;
    double bytes = 0, gbs = 0, flops = 0, tflops = 0;
    double hbm_floor_s = 0, copy_floor_s = 0, compute_floor_s = 0, peak_flops = 0;
    double gemm_median_s = 0, gemm_tflops = 0;
    bool finite = true;
};

LayerResult bench_layer(const Options& o, Backend& be, const Filler& fill, const Config& c, const std::vector<LayerSet>& sets,
                        WeightType t, int64_t T, bool prefill, double copy_gbs) {
    const RouterParams rp = router_params(c);
    LayerWork w(be, c, T);
    std::vector<std::unique_ptr<Buffer>> xs;
    for (size_t s = 0; s < sets.size(); ++s) {
        xs.push_back(be.alloc(size_t(T * c.d) * sizeof(float)));
        fill(xs.back()->data(), T * c.d, WeightType::f32, uint32_t(7001 + 31 * s + uint64_t(T)), 1.f);
    }
    fill.done();
    const int iters = prefill ? o.prefill_iters : o.iters;
    auto call = [&](int r) {
        const size_t s = size_t(r) % sets.size();
        return run_layer(be, c, rp, sets[s], w, xs[s]->as<float>(), T);
    };
    for (int r = 0; r < o.warmup; ++r) call(r);
    be.sync();
    std::vector<double> secs, gbs;
    std::vector<int> hit;
    for (int r = 0; r < iters; ++r) {
        be.sync();
        const auto t0 = Clock::now();
        const int h = call(r);
        be.sync();
        const double s = since(t0);
        secs.push_back(s);
        hit.push_back(h);
        gbs.push_back(layer_bytes(c, h, t) / s / 1e9);
    }
    LayerResult res;
    res.dtype = to_string(t), res.phase = prefill ? "prefill" : "decode", res.T = T, res.iters = iters;
    res.sets = int(sets.size());
    res.median_s = median(secs);
    res.min_s = *std::min_element(secs.begin(), secs.end());
    std::vector<double> hd(hit.begin(), hit.end());
    res.experts_mean = mean(hd);
    res.experts_min = *std::min_element(hit.begin(), hit.end());
    res.experts_max = *std::max_element(hit.begin(), hit.end());
    res.experts_expected = double(c.N_r) * (1.0 - std::pow(1.0 - double(c.K_r) / double(c.N_r), double(T)));
    res.bytes = layer_bytes(c, 0, t) + res.experts_mean * 3.0 * double(c.d) * double(c.d_e) * double(element_bytes(t));
    res.gbs = median(gbs);
    res.flops = layer_flops(c, T);
    res.tflops = res.flops / res.median_s / 1e12;
    res.hbm_floor_s = res.bytes / o.hbm_bw;
    res.copy_floor_s = copy_gbs > 0 ? res.bytes / (copy_gbs * 1e9) : 0;
    res.peak_flops = t == WeightType::bf16 ? o.bf16_flops : o.fp32_flops;
    res.compute_floor_s = res.flops / res.peak_flops;
    res.finite = all_finite(be, w.out, T * c.d);
    return res;
}

// ---------------------------------------------------------------------------------------------
// 2. The whole model

int32_t bench_token(int64_t i, int64_t V) { return int32_t((1 + 7919 * i) % V); }

std::vector<int32_t> tokens_from(int64_t start, int64_t n, int64_t V) {
    std::vector<int32_t> t(static_cast<size_t>(n));
    for (int64_t i = 0; i < n; ++i) t[size_t(i)] = bench_token(start + i, V);
    return t;
}

/// Bytes one decode step at context n must read, by the engine's layout (dsv2/engine/engine.hpp):
/// every weight the token uses once (b bytes per element; norms and the router in fp32), the
/// latent cache of every layer (n rows of d_c + d_R fp32), the embedding row and the lm_head.
double decode_step_bytes(const Config& c, WeightType t, double n) {
    const double b = double(element_bytes(t)), d = double(c.d), H = double(c.n_h);
    double bytes = d * b + d * 4.0 + double(c.V) * d * b;  // embedding row, final norm, lm_head
    for (int64_t l = 0; l < c.L; ++l) {
        double attn = c.has_q_lora() ? double(c.d_q) * d + H * double(c.d_qk()) * double(c.d_q) : H * double(c.d_qk()) * d;
        attn += double(c.cache_width()) * d + H * double(c.d_c) * double(c.d_h) + H * double(c.d_v) * double(c.d_c) +
                d * H * double(c.d_v);
        bytes += attn * b + (2.0 * d + double(c.d_c) + (c.has_q_lora() ? double(c.d_q) : 0.0)) * 4.0;
        if (c.is_moe_layer(l))
            bytes += double(c.N_r) * d * 4.0 + (double(c.K_r) + double(c.N_s)) * 3.0 * d * double(c.d_e) * b;
        else
            bytes += 3.0 * d * double(c.d_ff) * b;
        bytes += n * double(c.cache_width()) * 4.0;
    }
    return bytes;
}

struct ModelDecode {
    int64_t context = 0;
    int steps = 0;
    double prefill_s = 0, median_s = 0, mean_s = 0, min_s = 0, bytes = 0, floor_tps_copy = 0, floor_tps_hbm = 0;
    bool finite = true;
};

struct ModelResult {
    bool ran = false;
    int64_t layers = 0;
    std::string dtype;
    int64_t params_total = 0, params_activated = 0, weight_bytes = 0, cache_bytes = 0;
    double build_s = 0;
    std::vector<ModelDecode> decode;
};

ModelResult bench_model(const Options& o, Backend& be, Config c, double copy_gbs) {
    ModelResult m;
    if (o.layers == 0 || o.contexts.empty()) return m;
    c.L = std::min<int64_t>(c.L, o.layers);
    m.ran = true, m.layers = c.L, m.dtype = to_string(o.model_dtype);
    const ParamCount pc = count_params(c);
    m.params_total = pc.total, m.params_activated = pc.activated;
    const int64_t max_c = *std::max_element(o.contexts.begin(), o.contexts.end());
    const int64_t capacity = max_c + o.step_warmup + o.steps;
    std::fprintf(stderr, "%s: whole model: %lld layers, random weights (%.2f B parameters) → %s engine\n", kTool,
                 (long long)c.L, double(pc.total) / 1e9, m.dtype.c_str());
    const auto t0 = Clock::now();
    std::unique_ptr<Engine> engine;
    {
        const Weights<float> w = random_weights<float>(c, o.seed);
        engine = std::make_unique<Engine>(c, w, be, o.model_dtype, capacity);
    }  // the host copy of the weights is freed here
    be.sync();
    m.build_s = since(t0);
    m.weight_bytes = engine->weight_bytes(), m.cache_bytes = engine->cache_bytes();
    for (int64_t ctx : o.contexts) {
        std::fprintf(stderr, "%s: whole model: context %lld\n", kTool, (long long)ctx);
        ModelDecode r;
        r.context = ctx, r.steps = o.steps;
        const std::vector<int32_t> prompt = tokens_from(0, ctx, c.V);
        engine->reset();
        engine->forward(prompt, nullptr, Logits::last);  // untimed: grows the work buffers
        engine->reset();
        auto t1 = Clock::now();
        engine->forward(prompt, nullptr, Logits::last);
        r.prefill_s = since(t1);
        for (int s = 0; s < o.step_warmup; ++s) engine->forward({bench_token(ctx + s, c.V)}, nullptr, Logits::last);
        std::vector<double> secs;
        Mat<float> logits;
        for (int s = 0; s < o.steps; ++s) {
            const int32_t tok = bench_token(ctx + o.step_warmup + s, c.V);
            t1 = Clock::now();
            logits = engine->forward({tok}, nullptr, Logits::last);
            secs.push_back(since(t1));
        }
        r.finite = logits.allFinite();
        r.median_s = median(secs), r.mean_s = mean(secs), r.min_s = *std::min_element(secs.begin(), secs.end());
        r.bytes = decode_step_bytes(c, o.model_dtype, double(ctx + o.step_warmup) + double(o.steps - 1) / 2.0 + 1.0);
        r.floor_tps_copy = copy_gbs > 0 ? copy_gbs * 1e9 / r.bytes : 0;
        r.floor_tps_hbm = o.hbm_bw / r.bytes;
        m.decode.push_back(r);
    }
    return m;
}

// ---------------------------------------------------------------------------------------------
// Output

json config_json(const Config& c) {
    return {{"d", c.d},     {"N_r", c.N_r}, {"K_r", c.K_r}, {"d_e", c.d_e}, {"N_s", c.N_s},
            {"G", c.G},     {"G_k", c.G_k}, {"n_h", c.n_h}, {"d_c", c.d_c}, {"d_R", c.d_R},
            {"d_q", c.d_q}, {"d_ff", c.d_ff}, {"V", c.V},   {"L", c.L},
            {"topk_method", c.topk_method == TopkMethod::greedy ? "greedy" : "group_limited_greedy"}};
}

}  // namespace

int main(int argc, char** argv) {
    Options o;
    if (!bench::parse_or_usage(o, parse, argc, argv, kTool, usage)) return 2;
    const bool on_gpu = o.backend == "cuda";
    if (on_gpu && !announce_device()) return kSkipExitCode;  // prints "SKIPPED: no CUDA device (why)"
    try {
        const Config cfg = config_preset(o.preset);
        std::unique_ptr<Backend> be = on_gpu ? make_cuda_backend() : make_host_backend();
        const Filler fill{*be, on_gpu};
        const std::string device = on_gpu ? device_name() : "host (HostBackend, dry run: no speed)";

        bench::CopyResult copy;
        if (on_gpu && o.copy_gib > 0) {
            std::fprintf(stderr, "%s: device copy %.1f GiB\n", kTool, o.copy_gib);
            copy = bench::measure_copy(o.copy_gib);
        }

        // 1. the MoE layer, per weight type
        std::vector<LayerResult> layer;
        std::vector<json> gemms;
        for (WeightType t : o.dtypes) {
            if (o.decode.empty() && o.prefill == 0) break;
            std::fprintf(stderr, "%s: MoE layer, %s weights: %d sets\n", kTool, to_string(t), o.sets);
            std::vector<LayerSet> sets;
            for (int s = 0; s < o.sets; ++s) sets.push_back(make_layer(*be, fill, cfg, t, uint32_t(100 + s)));
            fill.done();
            for (int B : o.decode) {
                std::fprintf(stderr, "%s: MoE layer, %s, decode B=%d\n", kTool, to_string(t), B);
                layer.push_back(bench_layer(o, *be, fill, cfg, sets, t, B, false, copy.gbs));
            }
            if (o.prefill > 0) {
                std::fprintf(stderr, "%s: MoE layer, %s, prefill T=%d\n", kTool, to_string(t), o.prefill);
                LayerResult r = bench_layer(o, *be, fill, cfg, sets, t, o.prefill, true, copy.gbs);
                sets.clear();  // free the weights before the GEMM's operands
                if (on_gpu && o.gemm) {
                    std::fprintf(stderr, "%s: cuBLAS %s GEMMs of the same size\n", kTool, to_string(t));
                    const bench::GemmResult g = bench::measure_expert_gemm(
                        int64_t(o.prefill) * (cfg.K_r + cfg.N_s), cfg.d, cfg.d_e, t == WeightType::bf16,
                        o.prefill_iters, o.warmup);
                    r.gemm_median_s = g.median_s, r.gemm_tflops = g.tflops;
                    gemms.push_back({{"dtype", to_string(t)}, {"rows", g.rows}, {"d", g.d}, {"d_e", g.d_e},
                                     {"flops", g.flops}, {"median_us", g.median_s * 1e6}, {"min_us", g.min_s * 1e6},
                                     {"tflops", g.tflops}});
                }
                layer.push_back(r);
            }
        }

        // 2. the whole model
        const ModelResult model = bench_model(o, *be, cfg, copy.gbs);

        // ---- the table ----
        bool finite = true;
        std::printf("%s: DeepSeekMoE layer and whole-model decode at %s shapes (d=%lld, N_r=%lld, K=%lld, d_e=%lld, "
                    "N_s=%lld, %s) on %s\n", kTool, o.preset.c_str(), (long long)cfg.d, (long long)cfg.N_r,
                    (long long)cfg.K_r, (long long)cfg.d_e, (long long)cfg.N_s,
                    cfg.topk_method == TopkMethod::greedy ? "greedy" : "group-limited", device.c_str());
        std::printf("  backend: %s\n", be->name().c_str());
        if (copy.bytes > 0)
            std::printf("  device copy: %.1f GiB in %.3f ms = %.0f GB/s (read + write); HBM3e datasheet %.0f GB/s\n",
                        o.copy_gib, copy.median_s * 1e3, copy.gbs, o.hbm_bw / 1e9);
        bool head = false;
        for (const LayerResult& r : layer) {
            if (r.phase != "decode") continue;
            if (!head) {
                std::printf("  MoE layer, decode: GB/s of weights read (median of %d calls, %d rotated weight sets)\n",
                            o.iters, o.sets);
                std::printf("  %5s %4s %13s %11s %9s %10s %8s %7s %7s %12s\n", "dtype", "B", "experts(exp)",
                            "median µs", "min µs", "weight MB", "GB/s", "%HBM", "%copy", "floor µs");
                head = true;
            }
            finite = finite && r.finite;
            std::printf("  %5s %4lld %6.1f(%5.1f) %11.1f %9.1f %10.1f %8.0f %6.1f%% %6.1f%% %12.1f%s\n", r.dtype.c_str(),
                        (long long)r.T, r.experts_mean, r.experts_expected, r.median_s * 1e6, r.min_s * 1e6,
                        r.bytes / 1e6, r.gbs, 100.0 * r.gbs * 1e9 / o.hbm_bw,
                        copy.gbs > 0 ? 100.0 * r.gbs / copy.gbs : 0.0,
                        (r.copy_floor_s > 0 ? r.copy_floor_s : r.hbm_floor_s) * 1e6, r.finite ? "" : "  NOT FINITE");
        }
        if (head)
            std::printf("  (experts: distinct experts hit, mean over the calls (expected); weight MB: what they read; "
                        "%%HBM: of --hbm-bw %.0f GB/s; %%copy: of the device copy; floor: weight bytes / %s)\n",
                        o.hbm_bw / 1e9, copy.gbs > 0 ? "copy rate" : "--hbm-bw");
        head = false;
        for (const LayerResult& r : layer) {
            if (r.phase != "prefill") continue;
            if (!head) {
                std::printf("  MoE layer, prefill: TFLOP/s (median of %d calls)\n", o.prefill_iters);
                std::printf("  %5s %5s %10s %8s %9s %12s %6s %7s\n", "dtype", "T", "median ms", "GFLOP", "TFLOP/s",
                            "GEMM TFLOP/s", "%GEMM", "%peak");
                head = true;
            }
            finite = finite && r.finite;
            std::printf("  %5s %5lld %10.3f %8.1f %9.1f %12s %6s %6.1f%%%s\n", r.dtype.c_str(), (long long)r.T,
                        r.median_s * 1e3, r.flops / 1e9, r.tflops,
                        r.gemm_tflops > 0 ? std::to_string(int(std::lround(r.gemm_tflops))).c_str() : "—",
                        r.gemm_tflops > 0 ? (std::to_string(int(std::lround(100.0 * r.tflops / r.gemm_tflops))) + "%").c_str() : "—",
                        100.0 * r.tflops * 1e12 / r.peak_flops, r.finite ? "" : "  NOT FINITE");
        }
        if (head)
            std::printf("  (%%peak: of %.0f TFLOP/s bf16 / %.0f fp32, --bf16-flops / --fp32-flops; GEMM: the expert "
                        "products as two dense cuBLAS GEMMs, same run)\n", o.bf16_flops / 1e12, o.fp32_flops / 1e12);
        if (model.ran) {
            std::printf("  whole model: %lld layers, %s weights (%.2f GB on the device), %.2f B parameters; "
                        "one sequence, median of %d steps\n", (long long)model.layers, model.dtype.c_str(),
                        double(model.weight_bytes) / 1e9, double(model.params_total) / 1e9, o.steps);
            std::printf("  %7s %10s %10s %10s %10s %10s %12s %7s\n", "context", "prefill s", "step ms", "mean ms",
                        "tokens/s", "MB/token", "floor tok/s", "%floor");
            for (const ModelDecode& r : model.decode) {
                finite = finite && r.finite;
                const double floor_tps = r.floor_tps_copy > 0 ? r.floor_tps_copy : r.floor_tps_hbm;
                std::printf("  %7lld %10.3f %10.3f %10.3f %10.1f %10.1f %12.1f %6.1f%%%s\n", (long long)r.context,
                            r.prefill_s, r.median_s * 1e3, r.mean_s * 1e3, 1.0 / r.median_s, r.bytes / 1e6, floor_tps,
                            100.0 * (1.0 / r.median_s) / floor_tps, r.finite ? "" : "  NOT FINITE");
            }
            std::printf("  (floor: the bytes a step reads over the %s)\n",
                        copy.gbs > 0 ? "device copy rate" : "--hbm-bw rate");
        }

        if (!o.json.empty()) {
            json j;
            j["tool"] = kTool;
            j["op"] = "moe_layer_and_model_decode";
            j["impl"] = std::string("dsv2 Backend (") + (on_gpu ? "CudaBackend" : "HostBackend") +
                        "): router linear → moe_route → moe_dispatch → moe_gather → linear_grouped → silu_mul → "
                        "linear_grouped → moe_combine + shared SwiGLU; Engine for the whole model";
            j["backend"] = be->name();
            j["device"] = device;
            j["preset"] = o.preset;
            j["config"] = config_json(cfg);
            j["hbm_bytes_per_s"] = o.hbm_bw;
            j["bf16_flops_per_s"] = o.bf16_flops;
            j["fp32_flops_per_s"] = o.fp32_flops;
            j["copy"] = {{"bytes", copy.bytes}, {"median_s", copy.median_s}, {"gbs", copy.gbs}};
            j["iters"] = o.iters, j["prefill_iters"] = o.prefill_iters, j["warmup"] = o.warmup, j["sets"] = o.sets;
            j["timing"] = "Backend::sync + steady clock around each call; median";
            j["moe_layer"] = json::array();
            for (const LayerResult& r : layer) {
                json e = {{"dtype", r.dtype}, {"phase", r.phase}, {"T", r.T}, {"iters", r.iters}, {"sets", r.sets},
                          {"median_us", r.median_s * 1e6}, {"min_us", r.min_s * 1e6},
                          {"experts_hit_mean", r.experts_mean}, {"experts_hit_min", r.experts_min},
                          {"experts_hit_max", r.experts_max}, {"experts_hit_expected", r.experts_expected},
                          {"weight_bytes", r.bytes}, {"gbs", r.gbs}, {"flops", r.flops}, {"tflops", r.tflops},
                          {"hbm_floor_us", r.hbm_floor_s * 1e6}, {"copy_floor_us", r.copy_floor_s * 1e6},
                          {"compute_floor_us", r.compute_floor_s * 1e6}, {"peak_flops_per_s", r.peak_flops},
                          {"percent_of_hbm", 100.0 * r.gbs * 1e9 / o.hbm_bw},
                          {"percent_of_peak_flops", 100.0 * r.tflops * 1e12 / r.peak_flops}, {"finite", r.finite}};
                if (copy.gbs > 0) e["percent_of_copy"] = 100.0 * r.gbs / copy.gbs;
                if (r.gemm_tflops > 0) {
                    e["gemm_median_us"] = r.gemm_median_s * 1e6;
                    e["gemm_tflops"] = r.gemm_tflops;
                    e["percent_of_gemm"] = 100.0 * r.tflops / r.gemm_tflops;
                }
                j["moe_layer"].push_back(e);
            }
            j["gemm"] = gemms;
            if (model.ran) {
                json m = {{"layers", model.layers}, {"dtype", model.dtype}, {"params_total", model.params_total},
                          {"params_activated", model.params_activated}, {"weight_bytes", model.weight_bytes},
                          {"cache_bytes", model.cache_bytes}, {"build_s", model.build_s}, {"steps", o.steps},
                          {"step_warmup", o.step_warmup},
                          {"tokens", "token i = (1 + 7919 i) mod V"}, {"decode", json::array()}};
                for (const ModelDecode& r : model.decode)
                    m["decode"].push_back({{"context", r.context}, {"steps", r.steps}, {"prefill_s", r.prefill_s},
                                           {"prefill_tokens_per_s", double(r.context) / r.prefill_s},
                                           {"median_step_ms", r.median_s * 1e3}, {"mean_step_ms", r.mean_s * 1e3},
                                           {"min_step_ms", r.min_s * 1e3}, {"tokens_per_s", 1.0 / r.median_s},
                                           {"bytes_per_token", r.bytes}, {"floor_tokens_per_s_copy", r.floor_tps_copy},
                                           {"floor_tokens_per_s_hbm", r.floor_tps_hbm}, {"finite", r.finite}});
                j["model"] = m;
            }
            std::ofstream f(o.json);
            f << j.dump(2) << "\n";
            if (!f) throw std::runtime_error("cannot write --json " + o.json);
        }
        if (!finite) {
            std::fprintf(stderr, "%s: FAILED: a timed output was not finite (see NOT FINITE above)\n", kTool);
            return 1;
        }
    } catch (const std::exception& e) {
        std::fprintf(stderr, "%s: FAILED: %s\n", kTool, e.what());
        return 1;
    }
    return 0;
}
