// GPU test (CTest label gpu): every operation of CudaBackend (cuda/src/backend_cuda.cu) against
// the same operation of HostBackend (engine/src/backend_host.cpp: plain loops and the kernels' CPU
// twins, which tests/engine/test_engine_host.cpp proves against the fp64 oracle through the whole
// model). Same inputs uploaded to both; every GPU output poisoned with NaN first, so an element a
// kernel forgets to write fails. Without a device it prints why and exits 77 (CTest: skipped).
// NOT YET RUN ON A GPU: written and compiled on a machine without one.
//
//   embed, copy_cols, add, moe_dispatch, moe_gather      bit-exact
//   moe_combine                                          bit-exact (fma in rank order on both)
//   moe_route                                            indices identical or swapped at near ties
//                                                        (compare_routes); gates ≤ 2e-6, scores ≤ 1e-6
//   rms_norm, rope, silu_mul                             ‖Δ‖/‖ref‖ ≤ 1e-6
//   linear, linear_heads, linear_grouped (fp32, bf16)    ≤ 1e-5 (cuBLAS fp32 sums vs double sums)
//   mla_prefill, mla_decode                              ≤ 1e-5
// Shapes: T = 1 and several hundred rows, V2-Lite head shapes (n_h = 16, d_c = 512, d_R = 64),
// experts with no rows and one expert with most of them.
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <limits>
#include <memory>
#include <random>
#include <stdexcept>
#include <string>
#include <vector>

#include "dsv2/config.hpp"
#include "dsv2/engine/backend.hpp"
#include "dsv2/cuda/backend_cuda.hpp"
#include "dsv2/engine/moe.hpp"
#include "dsv2/cuda/ops.hpp"
#include "dsv2/engine/paged.hpp"
#include "dsv2/rope.hpp"

using namespace dsv2;
using engine::Backend;
using engine::Buffer;
using engine::WeightRef;
using engine::WeightType;

namespace {

int failures = 0;
// Router gates: as in tests/cuda/test_cuda_moe.cpp (~8e-7 worst case against the CPU twin).
constexpr double kGateBound = 2e-6;

void check(const std::string& what, bool ok, const std::string& detail = "") {
    std::printf("%-78s %s%s\n", what.c_str(), ok ? "ok" : "FAIL", detail.empty() ? "" : ("  " + detail).c_str());
    failures += ok ? 0 : 1;
}

std::vector<float> randn(size_t n, uint32_t seed, float scale = 1.f) {
    std::mt19937 gen(seed);
    std::normal_distribution<float> nd(0.f, scale);
    std::vector<float> v(n);
    for (float& x : v) x = nd(gen);
    return v;
}

// The same array on both backends.
template <typename T>
struct Twin {
    std::unique_ptr<Buffer> h, g;
    size_t n = 0;
    T* hp() const { return h->as<T>(); }
    T* gp() const { return g->as<T>(); }
};

struct Both {
    std::unique_ptr<Backend> host = engine::make_host_backend(), gpu = cuda::make_cuda_backend();

    template <typename T>
    Twin<T> put(const std::vector<T>& v) {
        Twin<T> t;
        t.n = v.size();
        t.h = host->alloc(v.size() * sizeof(T));
        t.g = gpu->alloc(v.size() * sizeof(T));
        host->upload(t.h->data(), v.data(), v.size() * sizeof(T));
        gpu->upload(t.g->data(), v.data(), v.size() * sizeof(T));
        return t;
    }
    // An output: zeros on the host, NaN (or −1) on the GPU, so unwritten GPU elements show.
    template <typename T>
    Twin<T> out(size_t n) {
        Twin<T> t = put(std::vector<T>(n, T(0)));
        const std::vector<T> poison(n, std::numeric_limits<T>::has_quiet_NaN ? std::numeric_limits<T>::quiet_NaN() : T(-1));
        gpu->upload(t.g->data(), poison.data(), n * sizeof(T));
        return t;
    }
    template <typename T>
    std::pair<std::vector<T>, std::vector<T>> get(const Twin<T>& t) {
        std::vector<T> a(t.n), b(t.n);
        host->download(a.data(), t.h->data(), t.n * sizeof(T));
        gpu->download(b.data(), t.g->data(), t.n * sizeof(T));
        return {a, b};
    }
    // A weight stack on both backends, stored as `type`.
    struct Weight {
        std::unique_ptr<Buffer> hb, gb;
        WeightRef h, g;
    };
    Weight weight(const std::vector<float>& v, WeightType type, int64_t rows, int64_t cols, int64_t count) {
        Weight w;
        w.hb = host->upload_as(v.data(), v.size(), type);
        w.gb = gpu->upload_as(v.data(), v.size(), type);
        w.h = WeightRef{w.hb->data(), type, rows, cols, count};
        w.g = WeightRef{w.gb->data(), type, rows, cols, count};
        return w;
    }
};

// ‖gpu − host‖/‖host‖ (NaN anywhere → NaN, which fails every bound).
template <typename T>
double rel(const std::pair<std::vector<T>, std::vector<T>>& p) {
    double num = 0, den = 0;
    for (size_t i = 0; i < p.first.size(); ++i) {
        const double d = double(p.second[i]) - double(p.first[i]);
        num += d * d;
        den += double(p.first[i]) * double(p.first[i]);
    }
    return den == 0 ? std::sqrt(num) : std::sqrt(num / den);
}
template <typename T>
void check_rel(const std::string& what, const std::pair<std::vector<T>, std::vector<T>>& p, double bound) {
    const double e = rel(p);
    char buf[64];
    std::snprintf(buf, sizeof buf, "rel %.2e (bound %.0e)", e, bound);
    check(what, e <= bound, buf);  // false for NaN
}
// Runs one group of checks; an exception (a CUDA or cuBLAS error, a refused argument) counts as
// one failure and the later groups still run, so one device session sees every result.
template <typename F>
void guarded(const char* what, F&& f) {
    try {
        f();
    } catch (const std::exception& e) {
        check(std::string(what) + ": exception: " + e.what(), false);
    }
}

template <typename T>
void check_equal(const std::string& what, const std::pair<std::vector<T>, std::vector<T>>& p) {
    size_t diff = 0;
    for (size_t i = 0; i < p.first.size(); ++i) diff += !(p.first[i] == p.second[i]);
    check(what, diff == 0, diff ? std::to_string(diff) + " of " + std::to_string(p.first.size()) + " differ" : "");
}

void test_dense(Both& b, bool quick) {
    // embed, fp32 and bf16 tables
    guarded("embed", [&] {
        for (WeightType type : {WeightType::f32, WeightType::bf16}) {
            const int64_t V = 300, d = 70, T = 17;
            auto E = b.weight(randn(size_t(V * d), 1), type, V, d, 1);
            std::vector<int32_t> tok(static_cast<size_t>(T));
            for (int64_t t = 0; t < T; ++t) tok[size_t(t)] = int32_t((t * 37 + 5) % V);
            tok.back() = int32_t(V - 1);
            auto dt = b.put(tok);
            auto h = b.out<float>(size_t(T * d));
            b.host->embed(E.h, dt.hp(), T, h.hp());
            b.gpu->embed(E.g, dt.gp(), T, h.gp());
            check_equal(std::string("embed ") + engine::to_string(type), b.get(h));
        }
    });
    // rms_norm
    guarded("rms_norm", [&] {
        for (int64_t n : {int64_t(33), int64_t(2048)}) {
            const int64_t T = 5;
            auto x = b.put(randn(size_t(T * n), 2, 3.f));
            auto w = b.put(randn(size_t(n), 3));
            auto y = b.out<float>(size_t(T * n));
            b.host->rms_norm(x.hp(), w.hp(), y.hp(), T, n, 1e-6f);
            b.gpu->rms_norm(x.gp(), w.gp(), y.gp(), T, n, 1e-6f);
            check_rel("rms_norm n=" + std::to_string(n), b.get(y), 1e-6);
        }
    });
    // linear, fp32 and bf16, one row to hundreds
    guarded("linear", [&] {
        for (WeightType type : {WeightType::f32, WeightType::bf16})
            for (int64_t T : {int64_t(1), int64_t(7), int64_t(quick ? 64 : 300)}) {
                const int64_t in = 257, out = 129;
                auto W = b.weight(randn(size_t(out * in), 4, 0.1f), type, out, in, 1);
                auto x = b.put(randn(size_t(T * in), 5));
                auto y = b.out<float>(size_t(T * out));
                b.host->linear(x.hp(), W.h, y.hp(), T);
                b.gpu->linear(x.gp(), W.g, y.gp(), T);
                check_rel(std::string("linear ") + engine::to_string(type) + " T=" + std::to_string(T), b.get(y), 1e-5);
            }
    });
    // linear_heads at the absorbed MLA's V2-Lite shapes: W^UKᵀ [512, 128] and W^UV [128, 512] per head
    guarded("linear_heads", [&] {
        for (WeightType type : {WeightType::f32, WeightType::bf16})
            for (auto [in, out] : {std::pair<int64_t, int64_t>{128, 512}, {512, 128}})
                for (int64_t T : {int64_t(1), int64_t(5)}) {
                    const int64_t n = 16;
                    auto W = b.weight(randn(size_t(n * out * in), 6, 0.05f), type, out, in, n);
                    auto x = b.put(randn(size_t(T * n * in), 7));
                    auto y = b.out<float>(size_t(T * n * out));
                    b.host->linear_heads(x.hp(), W.h, y.hp(), T);
                    b.gpu->linear_heads(x.gp(), W.g, y.gp(), T);
                    check_rel(std::string("linear_heads ") + engine::to_string(type) + " in=" + std::to_string(in) +
                                  " out=" + std::to_string(out) + " T=" + std::to_string(T),
                              b.get(y), 1e-5);
                }
    });
    // linear_grouped: empty experts, one expert with most rows, one with a single row
    guarded("linear_grouped", [&] {
        for (WeightType type : {WeightType::f32, WeightType::bf16})
            for (const std::vector<int32_t>& counts :
                 {std::vector<int32_t>{0, 100, 0, 1, 0, 0, 3, 0}, std::vector<int32_t>{0, 0, 0, 0, 0, 0, 0, 1},
                  std::vector<int32_t>{5, 5, 5, 5, 5, 5, 5, 5}}) {
                const int64_t N = 8, in = 96, out = 48;
                std::vector<int32_t> offsets{0};
                for (int32_t c : counts) offsets.push_back(offsets.back() + c);
                const int64_t rows = offsets.back();
                auto W = b.weight(randn(size_t(N * out * in), 8, 0.1f), type, out, in, N);
                auto x = b.put(randn(size_t(rows * in), 9));
                auto y = b.out<float>(size_t(rows * out));
                b.host->linear_grouped(x.hp(), W.h, offsets, y.hp());
                b.gpu->linear_grouped(x.gp(), W.g, offsets, y.gp());
                check_rel(std::string("linear_grouped ") + engine::to_string(type) + " rows=" + std::to_string(rows), b.get(y), 1e-5);
            }
    });
    // rope with YaRN at V2's d_R = 64, far positions
    guarded("rope", [&] {
        const Config cfg = config_preset("deepseek-v2");
        const std::vector<double> inv = rope_inv_freq(cfg);
        const int64_t T = 9, n = 4, d_R = cfg.d_R;
        std::vector<int64_t> pos(static_cast<size_t>(T));
        for (int64_t t = 0; t < T; ++t) pos[size_t(t)] = t * 12345 + 1;
        auto dp = b.put(pos);
        auto df = b.put(inv);
        auto x = b.put(randn(size_t(T * n * d_R), 10));
        b.host->rope(x.hp(), dp.hp(), T, n, d_R, df.hp(), rope_amplitude(cfg));
        b.gpu->rope(x.gp(), dp.gp(), T, n, d_R, df.gp(), rope_amplitude(cfg));
        check_rel("rope (YaRN, d_R = 64, positions to 98761)", b.get(x), 1e-6);
    });
    // copy_cols, add, silu_mul
    guarded("copy_cols, add, silu_mul", [&] {
        const int64_t rows = 33, src_ld = 40, dst_ld = 50;
        auto src = b.put(randn(size_t(rows * src_ld), 11));
        auto dst = b.put(randn(size_t(rows * dst_ld), 12));  // columns not copied must stay as they were
        b.host->copy_cols(src.hp(), src_ld, 7, dst.hp(), dst_ld, 20, rows, 25);
        b.gpu->copy_cols(src.gp(), src_ld, 7, dst.gp(), dst_ld, 20, rows, 25);
        check_equal("copy_cols (other columns untouched)", b.get(dst));
        const int64_t n = 1000;
        auto a = b.put(randn(size_t(n), 13));
        auto c = b.put(randn(size_t(n), 14));
        b.host->add(a.hp(), c.hp(), a.hp(), n);
        b.gpu->add(a.gp(), c.gp(), a.gp(), n);
        check_equal("add (in place)", b.get(a));
        const int64_t r = 17, inter = 45;
        auto gu = b.put(randn(size_t(r * 2 * inter), 15, 4.f));
        auto o = b.out<float>(size_t(r * inter));
        b.host->silu_mul(gu.hp(), o.hp(), r, inter);
        b.gpu->silu_mul(gu.gp(), o.gp(), r, inter);
        check_rel("silu_mul", b.get(o), 1e-6);
    });
}

void test_attention(Both& b) {
    guarded("mla_prefill", [&] {
        engine::PrefillDims d;
        d.T = 37, d.n = 50, d.n_h = 3, d.d_nope = 16, d.d_R = 8, d.d_v = 12;  // 13 cached keys before the queries
        auto q = b.put(randn(size_t(d.T * d.n_h * d.d_qk()), 16));
        auto k = b.put(randn(size_t(d.n * d.n_h * d.d_nope), 17));
        auto kpe = b.put(randn(size_t(d.n * d.d_R), 18));
        auto v = b.put(randn(size_t(d.n * d.n_h * d.d_v), 19));
        auto o = b.out<float>(size_t(d.T * d.n_h * d.d_v));
        b.host->mla_prefill(d, q.hp(), k.hp(), kpe.hp(), v.hp(), 0.2f, o.hp());
        b.gpu->mla_prefill(d, q.gp(), k.gp(), kpe.gp(), v.gp(), 0.2f, o.gp());
        check_rel("mla_prefill T=37 n=50", b.get(o), 1e-5);
    });
    guarded("mla_decode", [&] {
        for (int64_t n : {int64_t(1), int64_t(200), int64_t(1000)}) {
            const int64_t cap = 1024, d_c = 512, d_R = 64, n_h = 16;
            auto cache = b.put(randn(size_t(cap * (d_c + d_R)), 20));
            auto qa = b.put(randn(size_t(n_h * d_c), 21, 0.05f));
            auto qp = b.put(randn(size_t(n_h * d_R), 22, 0.05f));
            auto o = b.out<float>(size_t(n_h * d_c));
            b.host->mla_decode(cache.hp(), cap, n, d_c, d_R, qa.hp(), qp.hp(), n_h, 0.1f, o.hp());
            b.gpu->mla_decode(cache.gp(), cap, n, d_c, d_R, qa.gp(), qp.gp(), n_h, 0.1f, o.gp());
            check_rel("mla_decode V2-Lite heads, n=" + std::to_string(n), b.get(o), 1e-5);
        }
    });
}

void test_moe(Both& b) {
    guarded("moe route/dispatch/gather/combine", [&] {
        for (const char* preset : {"tiny", "deepseek-v2-lite", "deepseek-v2"})
            for (int64_t T : {int64_t(1), int64_t(300)}) {
                const Config c = config_preset(preset);
                const engine::RouterParams p = engine::router_params(c);
                const int64_t N = c.N_r, K = c.K_r, d = 40;
                const std::string tag = std::string(preset) + " T=" + std::to_string(T);
                auto logits = b.put(randn(size_t(T * N), 23, 2.f));
                auto idx = b.out<int32_t>(size_t(T * K));
                auto w = b.out<float>(size_t(T * K));
                auto s = b.out<float>(size_t(T * N));
                b.host->moe_route(p, logits.hp(), T, idx.hp(), w.hp(), s.hp());
                b.gpu->moe_route(p, logits.gp(), T, idx.gp(), w.gp(), s.gp());
                {  // indices equal, or swapped only at near ties of the host's scores (expf vs glibc's exp)
                    const auto [ih, ig] = b.get(idx);
                    const auto [wh_, wg] = b.get(w);
                    const std::vector<float> sh = b.get(s).first;
                    const engine::RouteAgreement a =
                        engine::compare_routes(p, sh.data(), ih.data(), wh_.data(), ig.data(), wg.data(), T);
                    check("moe_route " + tag + " indices and gates", a.ok(kGateBound),
                          std::to_string(a.exact) + " exact, " + std::to_string(a.near_tie) + " near-tie swaps, " +
                              std::to_string(a.wrong) + " wrong" + (a.wrong ? " (" + a.first_wrong_why + ")" : "") +
                              ", gate rel " + std::to_string(a.max_gate_rel));
                }
                check_rel("moe_route " + tag + " scores", b.get(s), 1e-6);
                // dispatch the host's choices on both, then gather and combine
                std::vector<int32_t> chosen = b.get(idx).first;
                auto di = b.put(chosen);
                auto slots = b.out<int32_t>(size_t(T * K));
                auto inv = b.out<int32_t>(size_t(T * K));
                const std::vector<int32_t> oh = b.host->moe_dispatch(di.hp(), T, K, N, slots.hp(), inv.hp());
                const std::vector<int32_t> og = b.gpu->moe_dispatch(di.gp(), T, K, N, slots.gp(), inv.gp());
                check("moe_dispatch " + tag + " offsets", oh == og);
                check_equal("moe_dispatch " + tag + " slots", b.get(slots));
                check_equal("moe_dispatch " + tag + " row_of_slot", b.get(inv));
                auto x = b.put(randn(size_t(T * d), 24));
                auto grouped = b.out<float>(size_t(T * K * d));
                b.host->moe_gather(x.hp(), slots.hp(), T, K, d, grouped.hp());
                b.gpu->moe_gather(x.gp(), slots.gp(), T, K, d, grouped.gp());
                check_equal("moe_gather " + tag, b.get(grouped));
                auto y = b.put(randn(size_t(T * K * d), 25));
                auto shared = b.put(randn(size_t(T * d), 26));
                auto out = b.out<float>(size_t(T * d));
                auto wh = b.put(b.get(w).first);  // the host's gates on both, so the sums must agree bit for bit
                b.host->moe_combine(y.hp(), wh.hp(), shared.hp(), inv.hp(), T, K, d, out.hp());
                b.gpu->moe_combine(y.gp(), wh.gp(), shared.gp(), inv.gp(), T, K, d, out.gp());
                check_equal("moe_combine " + tag + " (+ shared)", b.get(out));
            }
    });
    // An expert index outside [0, N_r) is named, not placed.
    guarded("moe_dispatch bad index", [&] {
        auto di = b.put(std::vector<int32_t>{0, 1, 2, 9});
        auto slots = b.out<int32_t>(4);
        auto inv = b.out<int32_t>(4);
        std::string msg;
        try {
            b.gpu->moe_dispatch(di.gp(), 2, 2, 8, slots.gp(), inv.gp());
        } catch (const std::invalid_argument& e) {
            msg = e.what();
        }
        check("moe_dispatch names a bad index (token 1, rank 1)", msg.find("token 1") != std::string::npos, msg);
    });
}

}  // namespace

int main() {
    if (!cuda::announce_device()) return cuda::kSkipExitCode;
    const bool quick = cuda::gpu_test_quick();
    try {
        Both b;
        std::printf("backends: %s | %s\n", b.host->name().c_str(), b.gpu->name().c_str());
        test_dense(b, quick);
        test_attention(b);
        test_moe(b);
    } catch (const std::exception& e) {
        std::printf("FAIL: exception: %s\n", e.what());
        return 1;
    }
    std::printf("%s: %d failure(s)\n", failures ? "FAILED" : "PASSED", failures);
    return failures ? 1 : 0;
}
