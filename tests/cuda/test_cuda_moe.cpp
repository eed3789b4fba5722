// GPU test (CTest label gpu): the CUDA MoE router and dispatch (cuda/src/moe.cu) against their CPU
// twins (engine/src/moe.cpp, themselves proved against the oracle dsv2::route / moe_forward by
// tests/engine/test_cuda_moe_host.cpp). Without a device it prints why and exits 77 (CTest: skipped).
// NOT YET RUN ON A GPU: written and compiled on a machine without one.
//
//   moe_route_kernel     vs route_reference      identical indices, or swapped only at near ties of
//                                                the twin's scores (≤ kRouteTieUlps, counted and
//                                                printed); gates ≤ 2e-6 relative
//   dispatch (count + scan + place) vs make_dispatch_plan   identical counts/offsets/slots/inverse
//   moe_gather_kernel    vs moe_gather_reference   bit-exact
//   moe_combine_kernel   vs moe_combine_reference  bit-exact (both fma in rank order)
// Adversarial: ties (logits from three values, all equal), NaN / ±inf logits, skewed loads (every
// token to expert 0), empty experts, T = 1 and T = 4096, V2 (160 experts, 8 groups) and V2-Lite
// shapes, norm_topk_prob on and off; every output poisoned first and checked written.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <limits>
#include <random>
#include <stdexcept>
#include <string>

#include "dsv2/config.hpp"
#include "dsv2/cuda/moe.hpp"
#include "dsv2/cuda/ops.hpp"

using namespace dsv2;
using dsv2::engine::DispatchPlan;
using dsv2::engine::RouterParams;

namespace {

int failures = 0;
// Gates on the tokens whose experts agree: s / Σ_k s_k with each s within ~3u of the twin's
// (kRouteTieUlps' derivation, u = 2^-23), so ~6u + ½ ulp ≈ 8e-7 relative in the worst case;
// 2e-6 leaves margin.
constexpr double kGateBound = 2e-6;
const float kNaNf = std::numeric_limits<float>::quiet_NaN();

void check(const std::string& what, bool ok) {
    std::printf("%-70s %s\n", what.c_str(), ok ? "ok" : "FAIL");
    failures += ok ? 0 : 1;
}

RouterParams params_of(const Config& c, bool norm) {
    RouterParams p;
    p.N_r = int(c.N_r), p.K = int(c.K_r), p.G = int(c.G), p.G_k = int(c.G_k);
    p.group_limited = c.topk_method == TopkMethod::group_limited_greedy;
    p.norm_topk_prob = norm;
    p.routed_scaling_factor = float(c.routed_scaling_factor);
    p.validate();
    return p;
}

enum class Logits { random, ties, flat, poisoned };

std::vector<float> make_logits(int64_t T, int N, Logits kind, uint32_t seed) {
    std::mt19937 gen(seed);
    std::normal_distribution<float> nd(0.f, 2.f);
    std::uniform_int_distribution<int> three(0, 2);
    std::vector<float> l(size_t(T) * size_t(N));
    for (int64_t t = 0; t < T; ++t)
        for (int e = 0; e < N; ++e) {
            float& v = l[size_t(t * N + e)];
            switch (kind) {
                case Logits::random: v = nd(gen); break;
                case Logits::ties: v = float(three(gen)); break;
                case Logits::flat: v = 0.5f; break;
                case Logits::poisoned:
                    v = nd(gen);
                    if (t % 4 == 0 && e == int(t % N)) v = kNaNf;
                    if (t % 4 == 1 && e == 0) v = std::numeric_limits<float>::infinity();
                    if (t % 4 == 2) v = -std::numeric_limits<float>::infinity();
                    break;
            }
        }
    return l;
}

struct Routed {
    std::vector<int32_t> idx;
    std::vector<float> w;
};

Routed test_route(const std::string& name, const RouterParams& p, int64_t T, Logits kind, uint32_t seed) {
    const std::vector<float> logits = make_logits(T, p.N_r, kind, seed);
    Routed ref{std::vector<int32_t>(size_t(T * p.K)), std::vector<float>(size_t(T * p.K))};
    std::vector<float> scores(size_t(T * p.N_r));
    for (int64_t t = 0; t < T; ++t)
        engine::route_reference(p, &logits[size_t(t * p.N_r)], &ref.idx[size_t(t * p.K)], &ref.w[size_t(t * p.K)],
                              &scores[size_t(t * p.N_r)]);
    Routed got{std::vector<int32_t>(size_t(T * p.K), -7), std::vector<float>(size_t(T * p.K), kNaNf)};  // poison
    cuda::moe_route(p, logits, T, got.idx, got.w);
    // Indices equal, or swapped only at near ties of the twin's scores (CUDA's expf vs glibc's);
    // an unwritten index (−7) is outside [0, N_r) and counts as wrong.
    const engine::RouteAgreement a =
        engine::compare_routes(p, scores.data(), ref.idx.data(), ref.w.data(), got.idx.data(), got.w.data(), T);
    std::printf("  %s: %lld tokens, %lld exact, %lld near-tie swaps (<= %d ulp), %lld wrong%s%s, max gate rel err %.2e\n",
                name.c_str(), (long long)a.tokens, (long long)a.exact, (long long)a.near_tie, engine::kRouteTieUlps,
                (long long)a.wrong, a.wrong ? " — first: " : "", a.first_wrong_why.c_str(), a.max_gate_rel);
    check("route " + name, a.ok(kGateBound));
    return got;
}

void test_dispatch(const std::string& name, const std::vector<int32_t>& idx, int64_t T, int64_t K, int64_t N_r, int64_t d,
                   uint32_t seed) {
    const DispatchPlan ref = engine::make_dispatch_plan(idx.data(), T, K, N_r);
    const DispatchPlan got = cuda::moe_dispatch(idx, T, K, N_r);
    check("dispatch " + name + ": counts, offsets, slots, inverse identical",
          got.counts == ref.counts && got.offsets == ref.offsets && got.slots == ref.slots &&
              got.row_of_slot == ref.row_of_slot);
    // Gather and combine on the reference plan, outputs NaN-poisoned, inputs finite.
    std::mt19937 gen(seed);
    std::normal_distribution<float> nd(0.f, 1.f);
    std::vector<float> x(size_t(T * d)), y(size_t(T * K * d)), w(size_t(T * K)), sh(size_t(T * d));
    for (float& v : x) v = nd(gen);
    for (float& v : y) v = nd(gen);
    for (float& v : w) v = std::abs(nd(gen));
    for (float& v : sh) v = nd(gen);
    std::vector<float> g(size_t(T * K * d), kNaNf);
    cuda::moe_gather(ref, x, d, g);
    check("gather " + name + ": bit-exact, every row written", g == engine::moe_gather_reference(ref, x, d));
    for (bool with_shared : {false, true}) {
        const std::vector<float> s = with_shared ? sh : std::vector<float>{};
        std::vector<float> out(size_t(T * d), kNaNf);
        cuda::moe_combine(ref, y, w, s, d, out);
        const std::vector<float> exp = engine::moe_combine_reference(ref, y, w, s, d);
        double maxdiff = 0;
        bool written = true;
        for (size_t i = 0; i < out.size(); ++i) {
            written = written && !std::isnan(out[i]);
            maxdiff = std::max(maxdiff, double(std::abs(out[i] - exp[i])));
        }
        std::printf("  combine %s%s: max |diff| %.3g\n", name.c_str(), with_shared ? " + shared" : "", maxdiff);
        check("combine " + name + (with_shared ? " + shared" : "") + ": bit-exact, every element written",
              written && out == exp);
    }
}

}  // namespace

int main() {
    if (!cuda::announce_device()) return cuda::kSkipExitCode;
    try {
        const Config tiny = config_preset("tiny"), v2 = config_preset("deepseek-v2"),
                     lite = config_preset("deepseek-v2-lite");
        uint32_t seed = 1;
        Routed big;
        for (const auto& [cname, c] : {std::pair{"tiny", tiny}, {"v2", v2}, {"v2-lite", lite}})
            for (bool norm : {false, true}) {
                const RouterParams p = params_of(c, norm);
                const std::string n = std::string(cname) + (norm ? " norm" : "");
                for (int64_t T : {int64_t(1), int64_t(4096)}) {
                    Routed r = test_route(n + " T=" + std::to_string(T) + " random", p, T, Logits::random, seed++);
                    if (T == 4096 && std::string(cname) == "v2" && !norm) big = r;
                }
                test_route(n + " T=300 ties", p, 300, Logits::ties, seed++);
                test_route(n + " T=5 flat", p, 5, Logits::flat, seed++);
                test_route(n + " T=64 NaN/inf", p, 64, Logits::poisoned, seed++);
            }
        // Dispatch: the V2 router's choice for 4096 tokens, T = 1, skewed loads, empty experts.
        test_dispatch("v2 routed T=4096", big.idx, 4096, 6, 160, 512, 11);
        test_dispatch("T=1", std::vector<int32_t>{5, 0, 159, 7, 3, 100}, 1, 6, 160, 5120, 12);
        std::vector<int32_t> skew(4096 * 6), empty(4096 * 6);
        for (int t = 0; t < 4096; ++t)
            for (int k = 0; k < 6; ++k) {
                skew[size_t(t * 6 + k)] = k == 0 ? 0 : 1 + (t * 7 + k * 13) % 159;  // rank 0 always expert 0
                empty[size_t(t * 6 + k)] = (t + k) % 6;                              // experts 6 … 63 empty
            }
        test_dispatch("skewed (all tokens to expert 0)", skew, 4096, 6, 160, 256, 13);
        test_dispatch("empty experts (6 of 64 used)", empty, 4096, 6, 64, 256, 14);
        test_dispatch("T=0", {}, 0, 6, 64, 16, 15);
        bool threw = false;
        try {
            cuda::moe_dispatch({0, 1, 2, 64}, 2, 2, 64);
        } catch (const std::invalid_argument& e) {
            threw = std::string(e.what()).find("token 1, rank 1") != std::string::npos;
        }
        check("dispatch: an index outside [0, N_r) throws, naming token and rank", threw);
    } catch (const std::exception& e) {
        std::printf("FAIL: %s\n", e.what());
        return 1;
    }
    return failures ? 1 : 0;
}
