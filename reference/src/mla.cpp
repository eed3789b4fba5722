#include "dsv2/mla.hpp"

#include <algorithm>
#include <limits>
#include <stdexcept>

#include "dsv2/layers.hpp"

namespace dsv2 {

const char* to_string(AttentionForm f) { return f == AttentionForm::naive ? "naive" : "absorbed"; }

// ---------------------------------------------------------------------------------------------
// LatentCache

template <typename S>
LatentCache<S>::LatentCache(const Config& cfg, int64_t reserve_tokens)
    : d_c_(cfg.d_c), d_R_(cfg.d_R), rows_(size_t(cfg.L)) {
    for (Mat<S>& r : rows_) r.resize(reserve_tokens, d_c_ + d_R_);
}

template <typename S>
void LatentCache<S>::write(int64_t l, MatCRef<S> c_kv, MatCRef<S> k_pe) {
    if (l < 0 || l >= layers() || c_kv.cols() != d_c_ || k_pe.cols() != d_R_ || c_kv.rows() != k_pe.rows())
        throw std::logic_error("LatentCache::write: shape mismatch");
    Mat<S>& r = rows_[size_t(l)];
    const int64_t need = len_ + c_kv.rows();
    if (need > r.rows()) {  // grow geometrically, keeping the rows already cached
        const int64_t cap = std::max<int64_t>(need, 2 * int64_t(r.rows()));
        Mat<S> grown(cap, d_c_ + d_R_);
        grown.topRows(len_) = r.topRows(len_);
        r.swap(grown);
    }
    r.block(len_, 0, c_kv.rows(), d_c_) = c_kv;
    r.block(len_, d_c_, k_pe.rows(), d_R_) = k_pe;
}

template <typename S>
void LatentCache<S>::commit(int64_t T) { len_ += T; }

// ---------------------------------------------------------------------------------------------
// Projections

template <typename S>
MlaQuery<S> mla_query(const Config& cfg, const Weights<S>& w, int64_t l, MatCRef<S> x,
                      const std::vector<int64_t>& positions, const Rope& rope, Trace* trace) {
    const std::string a = layer_prefix(l) + "self_attn.";
    const int64_t T = x.rows();
    Mat<S> q;                                                                   // [T, n_h·d_qk]
    if (cfg.has_q_lora()) {
        const Mat<S> c_q = rms_norm<S>(linear<S>(x, w.mat(a + "q_a_proj.weight")),   // [T, d_q]
                                       w.vec(a + "q_a_layernorm.weight"), cfg.rms_norm_eps);
        capture(trace, iname(l, "attn.c_q"), c_q);
        q = linear<S>(c_q, w.mat(a + "q_b_proj.weight"));
    } else {
        q = linear<S>(x, w.mat(a + "q_proj.weight"));
    }
    // Split every head's d_qk columns as [nope d_h | rope d_R].
    MlaQuery<S> out{Mat<S>(T, cfg.n_h * cfg.d_h), Mat<S>(T, cfg.n_h * cfg.d_R)};
    for (int64_t i = 0; i < cfg.n_h; ++i) {
        out.q_nope.middleCols(i * cfg.d_h, cfg.d_h) = q.middleCols(i * cfg.d_qk(), cfg.d_h);
        out.q_pe.middleCols(i * cfg.d_R, cfg.d_R) = q.middleCols(i * cfg.d_qk() + cfg.d_h, cfg.d_R);
    }
    apply_rope<S>(out.q_pe, positions, rope);
    capture(trace, iname(l, "attn.q_nope"), out.q_nope);
    capture(trace, iname(l, "attn.q_pe"), out.q_pe);
    return out;
}

template <typename S>
MlaLatent<S> mla_latent(const Config& cfg, const Weights<S>& w, int64_t l, MatCRef<S> x,
                        const std::vector<int64_t>& positions, const Rope& rope, Trace* trace) {
    const std::string a = layer_prefix(l) + "self_attn.";
    const Mat<S> kv_a = linear<S>(x, w.mat(a + "kv_a_proj_with_mqa.weight"));  // [T, d_c + d_R]
    MlaLatent<S> out;
    out.c_kv = rms_norm<S>(kv_a.leftCols(cfg.d_c), w.vec(a + "kv_a_layernorm.weight"), cfg.rms_norm_eps);
    out.k_pe = kv_a.rightCols(cfg.d_R);                                         // [T, d_R]
    apply_rope<S>(out.k_pe, positions, rope);
    capture(trace, iname(l, "attn.c_kv"), out.c_kv);
    capture(trace, iname(l, "attn.k_pe"), out.k_pe);
    return out;
}

// ---------------------------------------------------------------------------------------------
// Attention

namespace {

// σ·(raw scores), causal mask (key j visible to query t iff j ≤ p_t), row softmax.
template <typename S>
void scaled_causal_softmax(Mat<S>& scores, double sigma, const std::vector<int64_t>& positions) {
    scores *= S(sigma);
    const S neg_inf = -std::numeric_limits<S>::infinity();
    for (Eigen::Index t = 0; t < scores.rows(); ++t) {
        const int64_t first_hidden = positions[size_t(t)] + 1;
        if (first_hidden < scores.cols())
            scores.row(t).tail(scores.cols() - first_hidden).setConstant(neg_inf);
    }
    softmax_rows<S>(scores);
}

void check_attend_shapes(const Config& cfg, int64_t T, int64_t n, int64_t k_rows, int64_t W_rows,
                         const std::vector<int64_t>& positions) {
    if (int64_t(positions.size()) != T || k_rows != n || W_rows != cfg.n_h * (cfg.d_h + cfg.d_v))
        throw std::logic_error("mla attention: shape mismatch");
    for (int64_t p : positions)
        if (p < 0 || p >= n) throw std::logic_error("mla attention: query position outside the cache");
}

}  // namespace

template <typename S>
Mat<S> mla_attend_naive(const Config& cfg, const MlaQuery<S>& q, MatCRef<S> c_kv, MatCRef<S> k_pe,
                        MatCRef<S> W_kv_b, const std::vector<int64_t>& positions) {
    const int64_t T = q.q_nope.rows(), n = c_kv.rows();
    check_attend_shapes(cfg, T, n, k_pe.rows(), W_kv_b.rows(), positions);
    const double sigma = softmax_scale(cfg);
    Mat<S> o(T, cfg.n_h * cfg.d_v);                                             // [T, n_h·d_v]
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < cfg.n_h; ++i) {
        const int64_t r = i * (cfg.d_h + cfg.d_v);
        const auto W_UK = W_kv_b.middleRows(r, cfg.d_h);                        // [d_h, d_c]
        const auto W_UV = W_kv_b.middleRows(r + cfg.d_h, cfg.d_v);              // [d_v, d_c]
        Mat<S> k_nope(n, cfg.d_h);                                              // [n, d_h]
        k_nope.noalias() = c_kv * W_UK.transpose();
        Mat<S> v(n, cfg.d_v);                                                   // [n, d_v]
        v.noalias() = c_kv * W_UV.transpose();
        Mat<S> scores(T, n);                                                    // [T, n]
        scores.noalias() = q.q_nope.middleCols(i * cfg.d_h, cfg.d_h) * k_nope.transpose();
        scores.noalias() += q.q_pe.middleCols(i * cfg.d_R, cfg.d_R) * k_pe.transpose();
        scaled_causal_softmax<S>(scores, sigma, positions);
        o.middleCols(i * cfg.d_v, cfg.d_v).noalias() = scores * v;              // [T, d_v]
    }
    return o;
}

template <typename S>
Mat<S> mla_attend_absorbed(const Config& cfg, const MlaQuery<S>& q, MatCRef<S> c_kv, MatCRef<S> k_pe,
                           MatCRef<S> W_kv_b, const std::vector<int64_t>& positions, int64_t l,
                           Trace* trace) {
    const int64_t T = q.q_nope.rows(), n = c_kv.rows();
    check_attend_shapes(cfg, T, n, k_pe.rows(), W_kv_b.rows(), positions);
    const double sigma = softmax_scale(cfg);
    Mat<S> q_abs(T, cfg.n_h * cfg.d_c);                                         // [T, n_h·d_c]
    Mat<S> o_lat(T, cfg.n_h * cfg.d_c);                                         // [T, n_h·d_c]
    Mat<S> o(T, cfg.n_h * cfg.d_v);                                             // [T, n_h·d_v]
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < cfg.n_h; ++i) {
        const int64_t r = i * (cfg.d_h + cfg.d_v);
        const auto W_UK = W_kv_b.middleRows(r, cfg.d_h);                        // [d_h, d_c]
        const auto W_UV = W_kv_b.middleRows(r + cfg.d_h, cfg.d_v);              // [d_v, d_c]
        auto q_abs_i = q_abs.middleCols(i * cfg.d_c, cfg.d_c);                  // [T, d_c]
        q_abs_i.noalias() = q.q_nope.middleCols(i * cfg.d_h, cfg.d_h) * W_UK;
        Mat<S> scores(T, n);                                                    // [T, n]
        scores.noalias() = q_abs_i * c_kv.transpose();
        scores.noalias() += q.q_pe.middleCols(i * cfg.d_R, cfg.d_R) * k_pe.transpose();
        scaled_causal_softmax<S>(scores, sigma, positions);
        auto o_lat_i = o_lat.middleCols(i * cfg.d_c, cfg.d_c);                  // [T, d_c]
        o_lat_i.noalias() = scores * c_kv;
        o.middleCols(i * cfg.d_v, cfg.d_v).noalias() = o_lat_i * W_UV.transpose();  // [T, d_v]
    }
    capture(trace, iname(l, "attn.q_absorbed"), q_abs);
    capture(trace, iname(l, "attn.o_latent"), o_lat);
    return o;
}

template <typename S>
Mat<S> mla_attend_absorbed_stacked(const Config& cfg, const MlaQuery<S>& q, MatCRef<S> c_kv, MatCRef<S> k_pe,
                                   MatCRef<S> W_kv_b, const std::vector<int64_t>& positions, int64_t l,
                                   Trace* trace, int64_t score_budget) {
    const int64_t T = q.q_nope.rows(), n = c_kv.rows(), H = cfg.n_h;
    check_attend_shapes(cfg, T, n, k_pe.rows(), W_kv_b.rows(), positions);
    const double sigma = softmax_scale(cfg);
    Mat<S> q_abs(T, H * cfg.d_c);                                               // [T, n_h·d_c] ≡ [T·n_h, d_c]
    Mat<S> o_lat(T, H * cfg.d_c);                                               // [T, n_h·d_c] ≡ [T·n_h, d_c]
    Mat<S> o(T, H * cfg.d_v);                                                   // [T, n_h·d_v]
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < H; ++i) {  // q̃_i = q^C_i W^UK_i, every token at once
        const auto W_UK = W_kv_b.middleRows(i * (cfg.d_h + cfg.d_v), cfg.d_h); // [d_h, d_c]
        q_abs.middleCols(i * cfg.d_c, cfg.d_c).noalias() = q.q_nope.middleCols(i * cfg.d_h, cfg.d_h) * W_UK;
    }
    // Blocks of tokens; within a block, row r of the stacked matrices is (token t0 + r / n_h, head r % n_h).
    const int64_t block = std::max<int64_t>(1, score_budget / std::max<int64_t>(1, n * H));
    for (int64_t t0 = 0; t0 < T; t0 += block) {
        const int64_t tb = std::min(block, T - t0), R = tb * H;
        const MatMap<S> Q(q_abs.data() + t0 * H * cfg.d_c, R, cfg.d_c);        // [R, d_c]
        const MatMap<S> Q_pe(q.q_pe.data() + t0 * H * cfg.d_R, R, cfg.d_R);     // [R, d_R]
        Mat<S> scores = linear<S>(Q, c_kv);                                     // [R, n] = Q̃ ĉᵀ
        scores += linear<S>(Q_pe, k_pe);                                        //        + Q^R k^Rᵀ
        std::vector<int64_t> row_pos(static_cast<size_t>(R));
        for (int64_t r = 0; r < R; ++r) row_pos[size_t(r)] = positions[size_t(t0 + r / H)];
        scaled_causal_softmax<S>(scores, sigma, row_pos);
        Eigen::Map<Mat<S>> O(o_lat.data() + t0 * H * cfg.d_c, R, cfg.d_c);     // [R, d_c]
        O.noalias() = scores * c_kv;                                            // Õ = P ĉ
    }
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < H; ++i) {  // o_i = õ_i W^UV_iᵀ
        const auto W_UV = W_kv_b.middleRows(i * (cfg.d_h + cfg.d_v) + cfg.d_h, cfg.d_v);  // [d_v, d_c]
        o.middleCols(i * cfg.d_v, cfg.d_v).noalias() = o_lat.middleCols(i * cfg.d_c, cfg.d_c) * W_UV.transpose();
    }
    capture(trace, iname(l, "attn.q_absorbed"), q_abs);
    capture(trace, iname(l, "attn.o_latent"), o_lat);
    return o;
}

template <typename S>
Mat<S> mla_forward(const Config& cfg, const Weights<S>& w, int64_t l, MatCRef<S> x,
                   const std::vector<int64_t>& positions, const Rope& rope, LatentCache<S>& cache,
                   AttentionForm form, Trace* trace) {
    const std::string a = layer_prefix(l) + "self_attn.";
    const MlaQuery<S> q = mla_query<S>(cfg, w, l, x, positions, rope, trace);
    const MlaLatent<S> latent = mla_latent<S>(cfg, w, l, x, positions, rope, trace);
    cache.write(l, latent.c_kv, latent.k_pe);
    const int64_t n = cache.length() + x.rows();   // cached prefix plus this step's tokens
    const Mat<S>& W_kv_b = w.mat(a + "kv_b_proj.weight");
    const Mat<S> o = form == AttentionForm::naive
                         ? mla_attend_naive<S>(cfg, q, cache.c_kv(l, n), cache.k_pe(l, n), W_kv_b, positions)
                         : mla_attend_absorbed_stacked<S>(cfg, q, cache.c_kv(l, n), cache.k_pe(l, n), W_kv_b,
                                                          positions, l, trace);
    capture(trace, iname(l, "attn.o"), o);
    Mat<S> u = linear<S>(o, w.mat(a + "o_proj.weight"));                       // [T, d]
    capture(trace, iname(l, "attn.out"), u);
    return u;
}

#define DSV2_INSTANTIATE(S)                                                                            \
    template class LatentCache<S>;                                                                     \
    template MlaQuery<S> mla_query<S>(const Config&, const Weights<S>&, int64_t, MatCRef<S>,           \
                                      const std::vector<int64_t>&, const Rope&, Trace*);               \
    template MlaLatent<S> mla_latent<S>(const Config&, const Weights<S>&, int64_t, MatCRef<S>,         \
                                        const std::vector<int64_t>&, const Rope&, Trace*);             \
    template Mat<S> mla_attend_naive<S>(const Config&, const MlaQuery<S>&, MatCRef<S>, MatCRef<S>,     \
                                        MatCRef<S>, const std::vector<int64_t>&);                      \
    template Mat<S> mla_attend_absorbed<S>(const Config&, const MlaQuery<S>&, MatCRef<S>, MatCRef<S>,  \
                                           MatCRef<S>, const std::vector<int64_t>&, int64_t, Trace*);  \
    template Mat<S> mla_attend_absorbed_stacked<S>(const Config&, const MlaQuery<S>&, MatCRef<S>, MatCRef<S>, \
                                                   MatCRef<S>, const std::vector<int64_t>&, int64_t, Trace*,  \
                                                   int64_t);                                                  \
    template Mat<S> mla_forward<S>(const Config&, const Weights<S>&, int64_t, MatCRef<S>,              \
                                   const std::vector<int64_t>&, const Rope&, LatentCache<S>&,          \
                                   AttentionForm, Trace*);
DSV2_INSTANTIATE(float)
DSV2_INSTANTIATE(double)

}  // namespace dsv2
