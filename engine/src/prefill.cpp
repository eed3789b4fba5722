// Host logic of the MLA prefill kernel: argument checks shared with the launcher, and the CPU twin
// of the kernel (plain C++, built by the host compiler). Proved by
// tests/engine/test_cuda_prefill_host.cpp (CPU, label cpu) against dsv2::mla_attend_naive.
#include "dsv2/engine/prefill.hpp"

#include <algorithm>
#include <cmath>
#include <limits>
#include <stdexcept>
#include <string>

namespace dsv2::engine {

namespace {

[[noreturn]] void bad(const std::string& what) { throw std::invalid_argument("mla_prefill: " + what); }

}  // namespace

void check_prefill_args(const PrefillDims& d, double sigma, int block_q, int block_k) {
    if (d.T < 0) bad("T must be >= 0 (got " + std::to_string(d.T) + ")");
    if (d.n < d.T) bad("n must be >= T (got n = " + std::to_string(d.n) + ", T = " + std::to_string(d.T) + ")");
    if (d.n_h < 1) bad("n_h must be >= 1 (got " + std::to_string(d.n_h) + ")");
    if (d.d_nope < 1) bad("d_nope must be >= 1 (got " + std::to_string(d.d_nope) + ")");
    if (d.d_R < 0) bad("d_R must be >= 0 (got " + std::to_string(d.d_R) + ")");
    if (d.d_v < 1) bad("d_v must be >= 1 (got " + std::to_string(d.d_v) + ")");
    if (!std::isfinite(sigma) || sigma <= 0) bad("sigma must be finite and > 0 (got " + std::to_string(sigma) + ")");
    if (block_q < 1 || block_q > kPrefillMaxTile)
        bad("block_q must be in [1, " + std::to_string(kPrefillMaxTile) + "] (got " + std::to_string(block_q) + ")");
    if (block_k < 1 || block_k > kPrefillMaxTile)
        bad("block_k must be in [1, " + std::to_string(kPrefillMaxTile) + "] (got " + std::to_string(block_k) + ")");
}

int64_t check_prefill_sizes(const PrefillDims& d, size_t q, size_t k_nope, size_t k_pe, size_t v) {
    const size_t T = size_t(d.T), H = size_t(d.n_h);
    if (q != T * H * size_t(d.d_qk()))
        bad("q must hold [T, n_h, d_nope + d_R] = " + std::to_string(T * H * size_t(d.d_qk())) + " elements (got " +
            std::to_string(q) + ")");
    const size_t kn_row = H * size_t(d.d_nope), v_row = H * size_t(d.d_v);
    if (k_nope % kn_row != 0) bad("k_nope must hold whole rows of n_h * d_nope (got " + std::to_string(k_nope) + ")");
    const size_t rows = k_nope / kn_row;
    if (rows < size_t(d.n))
        bad("k_nope holds " + std::to_string(rows) + " rows, fewer than n = " + std::to_string(d.n));
    if (v != rows * v_row) bad("v must hold the same rows as k_nope: " + std::to_string(rows * v_row) + " elements (got " +
                               std::to_string(v) + ")");
    if (k_pe != rows * size_t(d.d_R))
        bad("k_pe must hold the same rows as k_nope: " + std::to_string(rows * size_t(d.d_R)) + " elements (got " +
            std::to_string(k_pe) + ")");
    return int64_t(rows);
}

size_t prefill_smem_bytes(const PrefillDims& d, int block_q, int block_k) {
    const size_t Br = size_t(block_q), Bc = size_t(block_k), ld = size_t(d.d_qk()) + 1, dv = size_t(d.d_v);
    return sizeof(float) * (Br * ld + Bc * ld + Bc * dv + Br * Bc + Br * dv + 3 * Br);
}

template <typename R>
PrefillReference<R> mla_prefill_tiled_reference(const PrefillDims& d, const std::vector<R>& q,
                                                const std::vector<R>& k_nope, const std::vector<R>& k_pe,
                                                const std::vector<R>& v, R sigma, int block_q, int block_k) {
    check_prefill_args(d, double(sigma), block_q, block_k);
    check_prefill_sizes(d, q.size(), k_nope.size(), k_pe.size(), v.size());
    const size_t H = size_t(d.n_h), Dn = size_t(d.d_nope), DR = size_t(d.d_R), Dqk = size_t(d.d_qk()),
                 Dv = size_t(d.d_v);
    const int p0 = d.p0();
    PrefillReference<R> r;
    r.o.assign(size_t(d.T) * H * Dv, R(0));
    r.lse.assign(size_t(d.T) * H, R(0));
    const R neg_inf = -std::numeric_limits<R>::infinity();
    std::vector<R> m(static_cast<size_t>(block_q)), l(static_cast<size_t>(block_q)),
        acc(size_t(block_q) * Dv), x(size_t(block_q) * size_t(block_k));
    for (size_t h = 0; h < H; ++h) {
        for (int t0 = 0; t0 < d.T; t0 += block_q) {  // one CTA of the kernel
            const int t1 = std::min(d.T, t0 + block_q), rows = t1 - t0;
            std::fill(m.begin(), m.end(), neg_inf);
            std::fill(l.begin(), l.end(), R(0));
            std::fill(acc.begin(), acc.end(), R(0));
            const int tiles = prefill_key_tiles(d, t1, block_k);
            for (int kt = 0; kt < tiles; ++kt) {
                const int j0 = kt * block_k, j1 = std::min(d.n, j0 + block_k);
                ++r.key_tile_steps;
                for (int rr = 0; rr < rows; ++rr) {
                    const int t = t0 + rr;
                    const R* qt = q.data() + (size_t(t) * H + h) * Dqk;
                    R* xr = x.data() + size_t(rr) * size_t(block_k);
                    R m_new = m[size_t(rr)];
                    for (int j = j0; j < j1; ++j) {
                        R s = neg_inf;
                        if (j <= p0 + t) {  // causal: keys past the query's position are never read
                            const R* kn = k_nope.data() + (size_t(j) * H + h) * Dn;
                            const R* kp = k_pe.data() + size_t(j) * DR;
                            R dot = 0;
                            for (size_t c = 0; c < Dn; ++c) dot += qt[c] * kn[c];
                            for (size_t c = 0; c < DR; ++c) dot += qt[Dn + c] * kp[c];
                            s = sigma * dot;
                        }
                        xr[j - j0] = s;
                        m_new = std::max(m_new, s);
                    }
                    const R scale = std::exp(m[size_t(rr)] - m_new);  // 0 on the first tile, 1 if all masked
                    R* a = acc.data() + size_t(rr) * Dv;
                    R sum = 0;
                    for (size_t c = 0; c < Dv; ++c) a[c] *= scale;
                    for (int j = j0; j < j1; ++j) {
                        if (j > p0 + t) continue;  // hidden keys are left out (as in the kernel), not × 0
                        const R p = std::exp(xr[j - j0] - m_new);
                        const R* vj = v.data() + (size_t(j) * H + h) * Dv;
                        sum += p;
                        for (size_t c = 0; c < Dv; ++c) a[c] += p * vj[c];
                    }
                    l[size_t(rr)] = l[size_t(rr)] * scale + sum;
                    m[size_t(rr)] = m_new;
                }
            }
            for (int rr = 0; rr < rows; ++rr) {
                const size_t t = size_t(t0 + rr);
                const R* a = acc.data() + size_t(rr) * Dv;
                for (size_t c = 0; c < Dv; ++c) r.o[(t * H + h) * Dv + c] = a[c] / l[size_t(rr)];
                r.lse[t * H + h] = m[size_t(rr)] + std::log(l[size_t(rr)]);
            }
        }
    }
    return r;
}

template PrefillReference<float> mla_prefill_tiled_reference(const PrefillDims&, const std::vector<float>&,
                                                             const std::vector<float>&, const std::vector<float>&,
                                                             const std::vector<float>&, float, int, int);
template PrefillReference<double> mla_prefill_tiled_reference(const PrefillDims&, const std::vector<double>&,
                                                              const std::vector<double>&, const std::vector<double>&,
                                                              const std::vector<double>&, double, int, int);

}  // namespace dsv2::engine
