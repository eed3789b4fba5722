// A test problem for the MLA prefill (tests/engine/test_cuda_prefill_host.cpp on the CPU,
// tests/cuda/test_cuda_mla_prefill.cpp on a GPU): the fp64 oracle's inputs (dsv2::mla_attend_naive),
// and the same data in the kernel's layout (dsv2/engine/prefill.hpp), K/V decompressed per head
// from c_kv and W_kv_b exactly as the oracle does. K/V rows [n, rows) exist in the buffers and
// are NaN: a read of any of them would poison the output.
#pragma once

#include <algorithm>
#include <cmath>
#include <limits>
#include <random>
#include <vector>

#include "dsv2/config.hpp"
#include "dsv2/engine/prefill.hpp"
#include "dsv2/mla.hpp"
#include "dsv2/rope.hpp"

namespace dsv2::test {

struct PrefillProblem {
    Config cfg;
    engine::PrefillDims d;
    Mat<double> c_kv, k_pe, W_kv_b, q_nope, q_pe;  ///< oracle inputs
    std::vector<double> q, k_nope, kpe, v;          ///< kernel layout (rows = n + extra_rows)
    std::vector<int64_t> positions;                 ///< p0 … p0 + T − 1, p0 = n − T
};

inline Mat<double> prefill_randn(int64_t r, int64_t c, std::mt19937& gen, double scale) {
    std::normal_distribution<double> nd(0.0, scale);
    Mat<double> m(r, c);
    for (Eigen::Index k = 0; k < m.size(); ++k) m.data()[k] = nd(gen);
    return m;
}

/// DeepSeek-V2 widths (d_h 128, d_R 64, d_v 128, d_c 512, σ with the YaRN mscale) with n_h heads.
/// Scales: ĉ ~ N(0, 0.3²), W_kv_b ~ N(0, 0.05²), q_nope ~ N(0, 1), q_pe and k_pe ~ N(0, 0.3²) and
/// N(0, 1): scores σ q·k of standard deviation ≈ 0.5, a softmax neither flat nor one-hot.
inline PrefillProblem make_prefill_problem(int n_h, int T, int n, int extra_rows, uint32_t seed) {
    PrefillProblem P;
    P.cfg = config_preset("deepseek-v2");
    P.cfg.n_h = n_h;
    const Config& c = P.cfg;
    P.d = engine::PrefillDims{T, n, n_h, int(c.d_h), int(c.d_R), int(c.d_v)};
    std::mt19937 gen(seed);
    P.c_kv = prefill_randn(n, c.d_c, gen, 0.3);
    P.k_pe = prefill_randn(n, c.d_R, gen, 1.0);
    P.W_kv_b = prefill_randn(n_h * (c.d_h + c.d_v), c.d_c, gen, 0.05);
    P.q_nope = prefill_randn(T, n_h * c.d_h, gen, 1.0);
    P.q_pe = prefill_randn(T, n_h * c.d_R, gen, 0.3);
    for (int t = 0; t < T; ++t) P.positions.push_back(int64_t(n - T + t));
    const double nan = std::numeric_limits<double>::quiet_NaN();
    const size_t H = size_t(n_h), Dn = size_t(c.d_h), DR = size_t(c.d_R), Dv = size_t(c.d_v),
                 rows = size_t(n + extra_rows);
    P.q.resize(size_t(T) * H * (Dn + DR));
    for (size_t t = 0; t < size_t(T); ++t)
        for (size_t h = 0; h < H; ++h) {
            double* dst = P.q.data() + (t * H + h) * (Dn + DR);
            for (size_t k = 0; k < Dn; ++k) dst[k] = P.q_nope(long(t), long(h * Dn + k));
            for (size_t k = 0; k < DR; ++k) dst[Dn + k] = P.q_pe(long(t), long(h * DR + k));
        }
    P.k_nope.assign(rows * H * Dn, nan);
    P.v.assign(rows * H * Dv, nan);
    P.kpe.assign(rows * DR, nan);
    for (size_t h = 0; h < H; ++h) {  // the decompression the oracle does: ĉ W^UKᵀ, ĉ W^UVᵀ per head
        const int64_t r0 = int64_t(h) * (c.d_h + c.d_v);
        const Mat<double> kn = P.c_kv * P.W_kv_b.middleRows(r0, c.d_h).transpose();          // [n, d_h]
        const Mat<double> vv = P.c_kv * P.W_kv_b.middleRows(r0 + c.d_h, c.d_v).transpose();  // [n, d_v]
        for (size_t j = 0; j < size_t(n); ++j) {
            for (size_t k = 0; k < Dn; ++k) P.k_nope[(j * H + h) * Dn + k] = kn(long(j), long(k));
            for (size_t k = 0; k < Dv; ++k) P.v[(j * H + h) * Dv + k] = vv(long(j), long(k));
        }
    }
    for (size_t j = 0; j < size_t(n); ++j)
        for (size_t k = 0; k < DR; ++k) P.kpe[j * DR + k] = P.k_pe(long(j), long(k));
    return P;
}

/// The oracle: o [T, n_h·d_v] (= the kernel's [T, n_h, d_v]).
inline Mat<double> prefill_oracle(const PrefillProblem& P) {
    const MlaQuery<double> q{P.q_nope, P.q_pe};
    return mla_attend_naive<double>(P.cfg, q, P.c_kv, P.k_pe, P.W_kv_b, P.positions);
}

/// lse [T, n_h] straight from its definition over the visible keys j ≤ p0 + t (no tiles), in fp64,
/// from the kernel-layout buffers.
inline std::vector<double> prefill_oracle_lse(const PrefillProblem& P) {
    const engine::PrefillDims& d = P.d;
    const size_t H = size_t(d.n_h), Dn = size_t(d.d_nope), DR = size_t(d.d_R);
    const double sigma = softmax_scale(P.cfg);
    std::vector<double> lse(size_t(d.T) * H), s;
    for (size_t t = 0; t < size_t(d.T); ++t)
        for (size_t h = 0; h < H; ++h) {
            const double* q = P.q.data() + (t * H + h) * (Dn + DR);
            s.clear();
            for (size_t j = 0; j <= size_t(d.p0()) + t; ++j) {
                double dot = 0;
                for (size_t k = 0; k < Dn; ++k) dot += q[k] * P.k_nope[(j * H + h) * Dn + k];
                for (size_t k = 0; k < DR; ++k) dot += q[Dn + k] * P.kpe[j * DR + k];
                s.push_back(sigma * dot);
            }
            const double m = *std::max_element(s.begin(), s.end());
            double sum = 0;
            for (double x : s) sum += std::exp(x - m);
            lse[t * H + h] = m + std::log(sum);
        }
    return lse;
}

/// Upper bound on ‖ô_{t,h} − o_{t,h}‖ per (query t, head h), [T, n_h], where o is the exact output on
/// the problem's inputs and ô the output of the kernel's algorithm run in fp32 on inputs rounded to
/// a format of unit roundoff u (bf16 via fp32: u = 2^-8 + 2^-23). Derived in the header comment of
/// tests/cuda/test_cuda_mla_prefill.cpp: with S = max_j Σ_k |q_k k_jk| and V = max_j ‖v_j‖ over the
/// visible keys j ≤ p0 + t, and γ_m = m·2^-24 / (1 − m·2^-24),
///   Δ = σ ((2u + u²) + γ_{d_qk} (1 + u)²) S
///   ‖ô − o‖ ≤ (e^{2Δ} − 1)(1 + u) V + u V + 2 γ_{n} V
inline std::vector<double> prefill_bf16_bound(const PrefillProblem& P, double u) {
    const engine::PrefillDims& d = P.d;
    const size_t H = size_t(d.n_h), Dn = size_t(d.d_nope), DR = size_t(d.d_R), Dv = size_t(d.d_v);
    const double sigma = softmax_scale(P.cfg), e32 = std::ldexp(1.0, -24);
    const auto gamma = [&](double m) { return m * e32 / (1 - m * e32); };
    const double g_qk = gamma(double(Dn + DR)), g_n = gamma(double(d.n));
    std::vector<double> bound(size_t(d.T) * H);
    for (size_t h = 0; h < H; ++h) {
        double V = 0;
        size_t seen = 0;  // keys folded into V so far (the visible sets are nested prefixes)
        for (size_t t = 0; t < size_t(d.T); ++t) {
            const size_t last = size_t(d.p0()) + t;
            for (; seen <= last; ++seen) {
                double vv = 0;
                for (size_t k = 0; k < Dv; ++k) vv += P.v[(seen * H + h) * Dv + k] * P.v[(seen * H + h) * Dv + k];
                V = std::max(V, std::sqrt(vv));
            }
            const double* q = P.q.data() + (t * H + h) * (Dn + DR);
            double S = 0;
            for (size_t j = 0; j <= last; ++j) {
                double a = 0;
                for (size_t k = 0; k < Dn; ++k) a += std::abs(q[k] * P.k_nope[(j * H + h) * Dn + k]);
                for (size_t k = 0; k < DR; ++k) a += std::abs(q[Dn + k] * P.kpe[j * DR + k]);
                S = std::max(S, a);
            }
            const double delta = sigma * ((2 * u + u * u) + g_qk * (1 + u) * (1 + u)) * S;
            bound[t * H + h] = std::expm1(2 * delta) * (1 + u) * V + u * V + 2 * g_n * V;
        }
    }
    return bound;
}

/// ‖a − ref‖ / ‖ref‖ over n elements (‖a − ref‖ when ref = 0); NaN in a gives NaN.
template <typename V>
double prefill_rel_err(const V& a, const double* ref, size_t n) {
    double num = 0, den = 0;
    for (size_t k = 0; k < n; ++k) {
        num += (double(a[k]) - ref[k]) * (double(a[k]) - ref[k]);
        den += ref[k] * ref[k];
    }
    return den > 0 ? std::sqrt(num / den) : std::sqrt(num);
}

}  // namespace dsv2::test
