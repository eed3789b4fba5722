// dsv2 bench: the oracle's speed on the CPU — prefill and decode tokens/s, GFLOP/s of the parts,
// cache bytes, peak memory — beside this machine's floors (fp32 GEMM rate, memory bandwidth).
//
// Definitions (the PyTorch peer in tools/bench/bench_torch.py uses the same ones):
//   tokens      token i = (1 + 7919·i) mod V, i = 0, 1, 2, …
//   prefill     one forward of T tokens from an empty cache, logits of the last position only
//               (as generation does), after an untimed warm-up of 16 tokens
//   decode @ c  a latent cache already holding c tokens, filled synthetically (seeded normal
//               values: a decode step's cost does not depend on them), one untimed warm-up step,
//               then `steps` timed one-token forwards; mean seconds per token
//   parts       the oracle's own functions timed alone on layer shapes: the MLA projections, the
//               attention core, the MoE layer; executed FLOPs / time
//   floors      fp32 GEMM rate: best of 3 Eigen products 2048×2048×2048 on all threads;
//               memory bandwidth: the better of a parallel sum and a parallel matrix-vector
//               product over 1 GiB, best of 3 each; the decode floor is the
//               bytes a decode step must read (weights it touches + its cache) / bandwidth
#include <omp.h>
#include <sys/resource.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <cstdio>
#include <functional>
#include <random>
#include <sstream>
#include <stdexcept>

#include <nlohmann/json.hpp>

#include "cli.hpp"
#include "dsv2/checkpoint.hpp"
#include "dsv2/io.hpp"
#include "dsv2/layers.hpp"
#include "model_source.hpp"

namespace dsv2::app {

namespace {

/// dsv2 bench: prefill and decode speed, the parts' GFLOP/s and this machine's floors.
struct BenchOptions {
    ModelSource source;
    int64_t layers = 0;                       ///< > 0: only the first `layers` layers
    int64_t prefill = 512;                    ///< prompt tokens of the prefill measurement
    std::string contexts = "128,1024,4096";   ///< decode contexts
    int64_t steps = 8;                        ///< timed decode steps per context
    std::string attention = "both";           ///< absorbed, naive or both
    std::string precision = "fp32";
    int threads = 0;                          ///< 0: OpenMP's default
    bool floors = true;                       ///< measure the GEMM rate and the memory bandwidth
    bool parts = true;                        ///< time projections, attention and experts alone
    std::string json;                         ///< also write the figures here
};


using Clock = std::chrono::steady_clock;
double since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

int32_t bench_token(int64_t i, int64_t V) { return int32_t((1 + 7919 * i) % V); }

std::vector<int32_t> bench_tokens(int64_t first, int64_t n, int64_t V) {
    std::vector<int32_t> t(static_cast<size_t>(n));
    for (int64_t i = 0; i < n; ++i) t[size_t(i)] = bench_token(first + i, V);
    return t;
}

/// Best time of `reps` runs of f (after none: the callers warm up where it matters).
double best_of(int reps, const std::function<void()>& f) {
    double best = 1e300;
    for (int r = 0; r < reps; ++r) {
        const auto t0 = Clock::now();
        f();
        best = std::min(best, since(t0));
    }
    return best;
}

/// Repeats f until at least `min_seconds` have passed (and at least once); mean seconds per call.
double mean_time(double min_seconds, const std::function<void()>& f) {
    f();  // warm-up
    int64_t n = 0;
    const auto t0 = Clock::now();
    do {
        f();
        ++n;
    } while (since(t0) < min_seconds);
    return since(t0) / double(n);
}

template <typename S>
Mat<S> randn(int64_t rows, int64_t cols, uint64_t seed, double scale = 1.0) {
    std::mt19937_64 g(seed);
    std::normal_distribution<double> nd(0.0, scale);
    Mat<S> m(rows, cols);
    for (Eigen::Index i = 0; i < m.size(); ++i) m.data()[i] = S(nd(g));
    return m;
}

/// CPU seconds spent so far by every process (/proc/stat) and by this one (getrusage).
std::pair<double, double> cpu_seconds() {
    double all = 0;
    if (FILE* f = std::fopen("/proc/stat", "r")) {
        unsigned long long v[8] = {};
        if (std::fscanf(f, "cpu %llu %llu %llu %llu %llu %llu %llu %llu", &v[0], &v[1], &v[2], &v[3], &v[4], &v[5],
                        &v[6], &v[7]) == 8)
            all = double(v[0] + v[1] + v[2] + v[5] + v[6] + v[7]) / double(sysconf(_SC_CLK_TCK));  // all but idle, iowait
        std::fclose(f);
    }
    rusage ru{};
    getrusage(RUSAGE_SELF, &ru);
    const double self = double(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) + 1e-6 * double(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec);
    return {all, self};
}

std::string cpu_model() {
    std::string name = "unknown";
    if (FILE* f = std::fopen("/proc/cpuinfo", "r")) {
        char line[512];
        while (std::fgets(line, sizeof line, f))
            if (std::strncmp(line, "model name", 10) == 0) {
                const char* colon = std::strchr(line, ':');
                if (colon) name = std::string(colon + 2, std::strcspn(colon + 2, "\n"));
                break;
            }
        std::fclose(f);
    }
    return name;
}

double peak_rss_bytes() {
    rusage ru{};
    getrusage(RUSAGE_SELF, &ru);
    return double(ru.ru_maxrss) * 1024.0;  // kilobytes on Linux
}

std::vector<int64_t> parse_contexts(const std::string& text) {
    std::vector<int64_t> out;
    std::stringstream ss(text);
    std::string item;
    while (std::getline(ss, item, ',')) {
        if (item.empty() || item.find_first_not_of("0123456789") != std::string::npos || item.size() > 9)
            throw std::invalid_argument("--contexts: \"" + item + "\" is not a context length; expected e.g. 128,1024,4096");
        out.push_back(std::stoll(item));
    }
    if (out.empty()) throw std::invalid_argument("--contexts: empty; expected e.g. 128,1024,4096");
    for (int64_t n : out)
        if (n < 1) throw std::invalid_argument("--contexts: a context must hold at least 1 token, got 0");
    return out;
}

// --- floors ------------------------------------------------------------------------------------

double gemm_gflops() {
    const int64_t n = 2048;
    const Mat<float> a = randn<float>(n, n, 1), b = randn<float>(n, n, 2);
    Mat<float> c(n, n);
    c.noalias() = a * b;  // warm-up
    const double t = best_of(3, [&] { c.noalias() = a * b; });
    return 2.0 * double(n) * double(n) * double(n) / t / 1e9;
}

/// Memory read bandwidth: the better of two read-only passes over 1 GiB, on all threads, best
/// of 3 each — a sum (Eigen's vectorised redux over 256 KiB chunks) and a matrix-vector product
/// (rows of 4096 floats against one vector, the access pattern of a decode step).
double bandwidth_gbs() {
    const int64_t n = int64_t(1) << 28, chunk = int64_t(1) << 16, width = 4096;  // 1 GiB of float
    std::vector<float> v(static_cast<size_t>(n));
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < n; ++i) v[size_t(i)] = float(i & 1023);  // first touch by the reading thread
    volatile double sink = 0;
    const double t_sum = best_of(3, [&] {
        double s = 0;
#pragma omp parallel for schedule(static) reduction(+ : s)
        for (int64_t k = 0; k < n / chunk; ++k)
            s += double(Eigen::Map<const Eigen::VectorXf>(v.data() + k * chunk, chunk).sum());
        sink = sink + s;
    });
    const Eigen::VectorXf x = Eigen::VectorXf::Ones(width);
    const int64_t rows = n / width, block = 64;
    std::vector<float> y(static_cast<size_t>(rows));
    const double t_gemv = best_of(3, [&] {
#pragma omp parallel for schedule(static)
        for (int64_t r = 0; r < rows; r += block) {
            const Eigen::Map<const Mat<float>> W(v.data() + r * width, block, width);
            Eigen::Map<Eigen::VectorXf>(y.data() + r, block).noalias() = W * x;
        }
        sink = sink + y[0];
    });
    return double(n) * 4.0 / std::min(t_sum, t_gemv) / 1e9;
}

// --- FLOP and byte counts ----------------------------------------------------------------------

/// MLA projections for T tokens: q (direct or through the q LoRA), kv_a, o_proj.
double projection_flops(const Config& c, int64_t T) {
    const double q = c.has_q_lora() ? double(c.d) * c.d_q + double(c.d_q) * c.n_h * c.d_qk() : double(c.d) * c.n_h * c.d_qk();
    return 2.0 * double(T) * (q + double(c.d) * (c.d_c + c.d_R) + double(c.n_h) * c.d_v * c.d);
}

/// The attention core as the oracle executes it: T queries against n cached rows, every head,
/// the full T × n score block (the causal mask zeroes part of it after the product).
double attention_flops(const Config& c, int64_t T, int64_t n, AttentionForm form) {
    const double Td = double(T), nd = double(n), h = double(c.n_h);
    if (form == AttentionForm::absorbed)
        return 2.0 * h * (Td * c.d_h * c.d_c + Td * nd * (c.d_c + c.d_R) + Td * nd * c.d_c + Td * c.d_c * c.d_v);
    return 2.0 * h * (nd * c.d_c * (c.d_h + c.d_v) + Td * nd * (c.d_h + c.d_R) + Td * nd * c.d_v);
}

/// A MoE layer for T tokens: router, K_r routed and N_s shared SwiGLU experts per token.
double moe_flops(const Config& c, int64_t T) {
    return 2.0 * double(T) * (double(c.d) * c.N_r + double(c.K_r + c.N_s) * 3.0 * c.d * c.d_e);
}

/// Bytes one decode step must read when attending over n cached rows: every weight a token
/// activates, once (count_params' activated set: all but the embedding table and the routed
/// experts it does not visit), its one embedding row, and the latent cache of every layer.
double decode_bytes(const Config& c, double n, int64_t S) {
    const double elems = double(count_params(c).activated) + double(c.d) + double(c.L) * n * double(c.cache_width());
    return elems * double(S);
}

// --- the run -------------------------------------------------------------------------------------

template <typename S>
void fill_cache(LatentCache<S>& cache, const Config& c, int64_t n) {
    for (int64_t l = 0; l < c.L; ++l)
        cache.write(l, randn<S>(n, c.d_c, 100 + uint64_t(l)), randn<S>(n, c.d_R, 200 + uint64_t(l)));
    cache.commit(n);
}

struct Row {
    std::string what, detail;
    double value = 0;
    std::string unit;
};

template <typename S>
nlohmann::json bench_model(const Model<S>& model, const BenchOptions& o, const std::vector<AttentionForm>& forms,
                           const std::vector<int64_t>& contexts, double gflops_peak, double gbs_peak) {
    const Config& c = model.config();
    nlohmann::json j;
    auto progress = [&](const std::string& s) { std::fprintf(stderr, "dsv2 bench: %s\n", s.c_str()); };

    // Prefill: the whole prompt in one forward, logits of the last position.
    for (AttentionForm form : forms) {
        progress("prefill " + std::to_string(o.prefill) + " tokens, " + to_string(form) + " attention");
        {
            LatentCache<S> warm(c, 16);
            model.forward(bench_tokens(0, 16, c.V), warm, form, nullptr, Logits::last);
        }
        const std::vector<int32_t> prompt = bench_tokens(0, o.prefill, c.V);
        LatentCache<S> cache(c, o.prefill);
        const auto t0 = Clock::now();
        model.forward(prompt, cache, form, nullptr, Logits::last);
        const double s = since(t0);
        j["prefill"].push_back({{"tokens", o.prefill}, {"attention", to_string(form)}, {"seconds", s},
                                {"tokens_per_s", double(o.prefill) / s}});
    }

    // Decode at each context: synthetic cache of n tokens, 1 warm-up step, `steps` timed steps.
    for (int64_t n : contexts) {
        for (AttentionForm form : forms) {
            progress("decode at context " + std::to_string(n) + ", " + to_string(form) + " attention, " +
                     std::to_string(o.steps) + " steps");
            // n − 1 synthetic rows, then the warm-up step at position n − 1: the timed steps run at
            // positions n … n + steps − 1 and step i attends over n + i + 1 rows.
            LatentCache<S> cache(c, n + o.steps);
            fill_cache(cache, c, n - 1);
            model.forward({bench_token(n - 1, c.V)}, cache, form, nullptr, Logits::last);
            const auto t0 = Clock::now();
            for (int64_t i = 0; i < o.steps; ++i)
                model.forward({bench_token(n + i, c.V)}, cache, form, nullptr, Logits::last);
            const double s = since(t0) / double(o.steps);
            const double bytes = decode_bytes(c, double(n) + double(o.steps - 1) / 2.0 + 1.0, int64_t(sizeof(S)));
            j["decode"].push_back({{"context", n}, {"attention", to_string(form)}, {"steps", o.steps},
                                   {"seconds_per_token", s}, {"tokens_per_s", 1.0 / s},
                                   {"bytes_per_token", bytes}, {"effective_gbs", bytes / s / 1e9},
                                   {"floor_tokens_per_s", gbs_peak > 0 ? gbs_peak * 1e9 / bytes : 0.0}});
            if (gbs_peak <= 0) j["decode"].back().erase("floor_tokens_per_s");
        }
    }

    // Parts: the oracle's functions alone, on the shapes of layer 0 (attention) and the first MoE layer.
    if (o.parts) {
        progress("parts: projections, attention, experts");
        const Weights<S>& w = model.weights();
        const Rope rope(c);
        int64_t l_moe = -1;
        for (int64_t l = 0; l < c.L && l_moe < 0; ++l)
            if (c.is_moe_layer(l)) l_moe = l;
        auto part = [&](const std::string& name, int64_t T, int64_t ctx, const std::string& form, double flops,
                        double bytes, double secs) {
            nlohmann::json p = {{"name", name}, {"T", T}, {"context", ctx}, {"seconds", secs}, {"gflops", flops / secs / 1e9}};
            if (!form.empty()) p["attention"] = form;
            if (gflops_peak > 0) p["percent_of_gemm_peak"] = 100.0 * flops / secs / 1e9 / gflops_peak;
            if (bytes > 0) p["gbs"] = bytes / secs / 1e9;
            j["parts"].push_back(p);
        };
        const std::string a = layer_prefix(0) + "self_attn.";
        for (int64_t T : {o.prefill, int64_t(1)}) {
            const Mat<S> x = randn<S>(T, c.d, 7);
            const Mat<S> o_in = randn<S>(T, c.n_h * c.d_v, 8);
            std::vector<int64_t> pos(static_cast<size_t>(T));
            for (int64_t t = 0; t < T; ++t) pos[size_t(t)] = t;
            const double secs = mean_time(0.3, [&] {
                mla_query<S>(c, w, 0, x, pos, rope, nullptr);
                mla_latent<S>(c, w, 0, x, pos, rope, nullptr);
                linear<S>(o_in, w.mat(a + "o_proj.weight"));
            });
            const double wbytes = (projection_flops(c, 1) / 2.0) * double(sizeof(S));
            part("projections", T, 0, "", projection_flops(c, T), T == 1 ? wbytes : 0.0, secs);
            if (l_moe >= 0) {
                const double mb = (double(c.d) * c.N_r + double(std::min(T * c.K_r, c.N_r) + c.N_s) * 3.0 * c.d * c.d_e) *
                                  double(sizeof(S));
                part("experts", T, 0, "", moe_flops(c, T), T == 1 ? mb : 0.0,
                     mean_time(0.3, [&] { moe_forward<S>(c, w, l_moe, x, nullptr); }));
            }
        }
        const Mat<S>& W_kv_b = w.mat(a + "kv_b_proj.weight");
        std::vector<std::pair<int64_t, int64_t>> shapes = {{o.prefill, o.prefill}};
        for (int64_t n : contexts) shapes.push_back({1, n});
        for (auto [T, n] : shapes) {
            const Mat<S> c_kv = randn<S>(n, c.d_c, 9), k_pe = randn<S>(n, c.d_R, 10);
            const Mat<S> x = randn<S>(T, c.d, 11);
            std::vector<int64_t> pos(static_cast<size_t>(T));
            for (int64_t t = 0; t < T; ++t) pos[size_t(t)] = n - T + t;
            const MlaQuery<S> q = mla_query<S>(c, w, 0, x, pos, rope, nullptr);
            for (AttentionForm form : forms) {
                const double secs = mean_time(0.3, [&] {
                    if (form == AttentionForm::naive)
                        mla_attend_naive<S>(c, q, c_kv, k_pe, W_kv_b, pos);
                    else
                        mla_attend_absorbed_stacked<S>(c, q, c_kv, k_pe, W_kv_b, pos, 0, nullptr);
                });
                const double cache_bytes = T == 1 ? double(n) * double(c.cache_width()) * double(sizeof(S)) : 0.0;
                part("attention", T, n, to_string(form), attention_flops(c, T, n, form), cache_bytes, secs);
            }
        }
    }
    return j;
}

int run_bench(const BenchOptions& o) {
    if (!o.json.empty()) check_writable(o.json, "--json");
    const std::vector<int64_t> contexts = parse_contexts(o.contexts);
    Config cfg = source_config(o.source);
    if (o.layers > 0) {
        if (o.layers > cfg.L)
            throw std::invalid_argument("--layers " + std::to_string(o.layers) + ": the model has only " + std::to_string(cfg.L) + " layers");
        cfg.L = o.layers;
    }
    cfg.validate();
    const int64_t longest = std::max(o.prefill, *std::max_element(contexts.begin(), contexts.end()) + o.steps + 1);
    if (longest > cfg.max_position_embeddings)
        throw std::invalid_argument("bench: " + std::to_string(longest) + " positions exceed max_position_embeddings " +
                                    std::to_string(cfg.max_position_embeddings));
    const int64_t S = o.precision == "fp64" ? 8 : 4;
    check_run_fits(cfg, longest, o.prefill, S, false, "bench");
    if (o.threads > 0) omp_set_num_threads(o.threads);
    const int threads = omp_get_max_threads();

    std::vector<AttentionForm> forms;
    if (o.attention != "naive") forms.push_back(AttentionForm::absorbed);
    if (o.attention != "absorbed") forms.push_back(AttentionForm::naive);

    nlohmann::json j = {{"tool", "dsv2"}, {"version", "0.1.0"}, {"model", source_name(o.source)}, {"threads", threads},
                        {"precision", o.precision}, {"layers", cfg.L}, {"tokens", "token i = (1 + 7919 i) mod V"}};
    j["impl"] = "dsv2 oracle (Eigen + OpenMP)";
    j["versions"] = {{"dsv2", "0.1.0"},
                     {"compiler", std::string(__VERSION__)},
                     {"eigen", std::to_string(EIGEN_WORLD_VERSION) + "." + std::to_string(EIGEN_MAJOR_VERSION) + "." +
                                   std::to_string(EIGEN_MINOR_VERSION)},
#if defined(__AVX512F__)
                     {"simd", "AVX-512"}
#elif defined(__AVX2__)
                     {"simd", "AVX2"}
#else
                     {"simd", "SSE2 (build with DSV2_NATIVE=ON for this CPU's vector units)"}
#endif
    };
    j["cpu"] = cpu_model();
    j["config"] = {{"d", cfg.d}, {"n_h", cfg.n_h}, {"d_c", cfg.d_c}, {"d_R", cfg.d_R}, {"N_r", cfg.N_r}, {"K_r", cfg.K_r},
                   {"N_s", cfg.N_s}, {"d_e", cfg.d_e}, {"V", cfg.V}, {"L", cfg.L}};
    const ParamCount pc = count_params(cfg);
    j["params"] = {{"total", pc.total}, {"activated", pc.activated}};
    const int64_t cache_width = cfg.cache_width();
    j["cache_bytes_per_token"] = double(cfg.L * cache_width * S);

    const auto cpu0 = cpu_seconds();
    const auto wall0 = Clock::now();
    double gflops = 0, gbs = 0;
    if (o.floors) {
        std::fprintf(stderr, "dsv2 bench: floors: fp32 GEMM rate, memory bandwidth\n");
        gflops = gemm_gflops();
        gbs = bandwidth_gbs();
        j["gemm_gflops"] = gflops;
        j["bandwidth_gbs"] = gbs;
    }

    std::fprintf(stderr, "dsv2 bench: loading %s (%lld layers)\n", source_name(o.source).c_str(), (long long)cfg.L);
    auto load = [&](auto tag) {
        using T = decltype(tag);
        check_fits_in_memory(cfg, int64_t(sizeof(T)), source_name(o.source));
        Weights<T> w = o.source.model_dir.empty() ? random_weights<T>(cfg, o.source.seed)
                                                  : load_weights<T>(o.source.model_dir, cfg, /*progress=*/true, nullptr);
        return Model<T>(cfg, std::move(w));
    };
    nlohmann::json r = S == 8 ? bench_model(load(double{}), o, forms, contexts, gflops, gbs)
                              : bench_model(load(float{}), o, forms, contexts, gflops, gbs);
    j.update(r);
    j["peak_rss_bytes"] = peak_rss_bytes();
    // Other processes' CPU use during the run, in cores: with every core busy in OpenMP, anything
    // else running slows the figures far more than its share.
    const auto cpu1 = cpu_seconds();
    const double other = std::max(0.0, ((cpu1.first - cpu0.first) - (cpu1.second - cpu0.second)) / since(wall0));
    j["other_cpu_load"] = other;
    j["wall_seconds"] = since(wall0);

    // The table.
    std::printf("dsv2 bench: %s, %lld layers, %s, %d threads, %s, %s\n", source_name(o.source).c_str(), (long long)cfg.L,
                o.precision.c_str(), threads, j["cpu"].get<std::string>().c_str(), j["versions"]["simd"].get<std::string>().c_str());
    if (o.floors) std::printf("  floors: fp32 GEMM %.1f GFLOP/s, memory bandwidth %.1f GB/s\n", gflops, gbs);
    for (const auto& p : j["prefill"])
        std::printf("  prefill %5lld tokens  %-8s  %8.3f s  %9.1f tokens/s\n", (long long)p["tokens"].get<int64_t>(),
                    p["attention"].get<std::string>().c_str(), p["seconds"].get<double>(), p["tokens_per_s"].get<double>());
    for (const auto& p : j["decode"]) {
        char floor[64] = "";
        if (p.contains("floor_tokens_per_s"))
            std::snprintf(floor, sizeof floor, "; bandwidth floor %.2f tokens/s", p["floor_tokens_per_s"].get<double>());
        std::printf("  decode  ctx %6lld  %-8s  %8.2f ms/token  %7.2f tokens/s  (reads %.1f GB/s%s)\n",
                    (long long)p["context"].get<int64_t>(), p["attention"].get<std::string>().c_str(),
                    1e3 * p["seconds_per_token"].get<double>(), p["tokens_per_s"].get<double>(),
                    p["effective_gbs"].get<double>(), floor);
    }
    if (j.contains("parts"))
        for (const auto& p : j["parts"]) {
            std::printf("  part %-11s T %5lld ctx %6lld %-8s %9.3f ms  %7.1f GFLOP/s", p["name"].get<std::string>().c_str(),
                        (long long)p["T"].get<int64_t>(), (long long)p["context"].get<int64_t>(),
                        p.value("attention", std::string()).c_str(), 1e3 * p["seconds"].get<double>(), p["gflops"].get<double>());
            if (p.contains("percent_of_gemm_peak")) std::printf(" (%3.0f%% of GEMM)", p["percent_of_gemm_peak"].get<double>());
            if (p.contains("gbs")) std::printf("  %.1f GB/s", p["gbs"].get<double>());
            std::printf("\n");
        }
    std::printf("  cache %.0f bytes/token (all layers), peak memory %.2f GB\n", j["cache_bytes_per_token"].get<double>(),
                j["peak_rss_bytes"].get<double>() / 1e9);
    if (other > 0.2)
        std::printf("  WARNING: other processes used %.2f cores during the run; the figures above are not those of a quiet machine\n", other);
    if (!o.json.empty()) write_file_atomic(o.json, j.dump(2) + "\n");
    return 0;
}

}  // namespace

Command add_bench(CLI::App& app) {
    auto o = std::make_shared<BenchOptions>();
    CLI::App* sub = app.add_subcommand("bench", "speed of the oracle on this CPU: prefill and decode tokens/s, GFLOP/s of projections, attention and experts, cache bytes, peak memory, beside the machine's GEMM rate and memory bandwidth");
    add_source(sub, o->source, true);
    sub->add_option("--layers", o->layers, "run only the first N layers (a real config reduced to a few layers)")->check(CLI::Range(int64_t(1), int64_t(1) << 20));
    sub->add_option("--prefill", o->prefill, "prompt tokens of the prefill measurement")->check(CLI::Range(int64_t(1), int64_t(1) << 20))->capture_default_str();
    sub->add_option("--contexts", o->contexts, "decode context lengths, comma-separated")->capture_default_str();
    sub->add_option("--steps", o->steps, "timed decode steps per context")->check(CLI::Range(int64_t(1), int64_t(1) << 20))->capture_default_str();
    sub->add_option("--attention", o->attention, "absorbed, naive or both")->check(CLI::IsMember({"naive", "absorbed", "both"}))->capture_default_str();
    sub->add_option("--precision", o->precision, "fp32 or fp64")->check(CLI::IsMember({"fp32", "fp64"}))->capture_default_str();
    sub->add_option("--threads", o->threads, "OpenMP threads (default: OMP_NUM_THREADS or all cores)")->check(CLI::Range(1, 4096));
    auto* no_floors = sub->add_flag("!--no-floors", o->floors, "skip measuring the GEMM rate and the memory bandwidth");
    sub->add_flag("!--no-parts", o->parts, "skip timing the parts alone");
    (void)no_floors;
    sub->add_option("--json", o->json, "also write every figure to this JSON file");
    return {sub, require_source(o->source, "bench"), [o] { return run_bench(*o); }};
}

}  // namespace dsv2::app
