// MLA: both forms against a plain-loop coding of the paper's equations with the released split
// orders (fp64), against each other, and across prefill / decode / chunked calls.
#include <complex>

#include "dsv2/mla.hpp"
#include "support.hpp"

using namespace dsv2;
using dsv2::test::randn;
using dsv2::test::rel_err;

namespace {

// MLA of layer l for T tokens at positions 0 … T−1, one scalar at a time. Independent of
// reference/src: its own RMSNorm, RoPE (complex), YaRN frequencies, σ, splits and softmax.
Mat<double> mla_loops(const Config& c, const Weights<double>& w, int64_t l, const Mat<double>& x) {
    const std::string a = layer_prefix(l) + "self_attn.";
    const int64_t T = x.rows(), n_h = c.n_h, d_h = c.d_h, d_R = c.d_R, d_v = c.d_v, d_c = c.d_c;
    const int64_t d_qk = d_h + d_R;
    auto matvec = [](const Mat<double>& W, const std::vector<double>& v) {
        std::vector<double> y(size_t(W.rows()), 0.0);
        for (int64_t o = 0; o < W.rows(); ++o)
            for (int64_t i = 0; i < W.cols(); ++i) y[size_t(o)] += W(o, i) * v[size_t(i)];
        return y;
    };
    auto rmsnorm = [&](std::vector<double> v, const Mat<double>& g) {
        double ss = 0;
        for (double e : v) ss += e * e;
        const double r = 1.0 / std::sqrt(ss / double(v.size()) + c.rms_norm_eps);
        for (size_t i = 0; i < v.size(); ++i) v[i] *= r * g(0, int64_t(i));
        return v;
    };
    // Frequencies and σ from the spec, §2.4–2.5.
    const double pi = std::acos(-1.0);
    std::vector<double> freq;
    double sigma = 1.0 / std::sqrt(double(d_qk)), amp = 1.0;
    {
        auto D = [&](double r) { return d_R * std::log(c.yarn.L0 / (2 * pi * r)) / (2 * std::log(c.rope_theta)); };
        double low = std::max(std::floor(D(c.yarn.beta_fast)), 0.0);
        double high = std::min(std::ceil(D(c.yarn.beta_slow)), double(d_R - 1));
        if (low == high) high += 0.001;
        for (int64_t k = 0; k < d_R / 2; ++k) {
            const double th = std::pow(c.rope_theta, -2.0 * double(k) / double(d_R));
            const double r = c.has_yarn ? std::min(std::max((double(k) - low) / (high - low), 0.0), 1.0) : 0.0;
            freq.push_back(th * (1 - r) + th / (c.has_yarn ? c.yarn.s : 1.0) * r);
        }
        if (c.has_yarn) {
            const double m = 0.1 * c.yarn.mscale_all_dim * std::log(c.yarn.s) + 1.0;
            sigma *= m * m;
            amp = (0.1 * c.yarn.mscale * std::log(c.yarn.s) + 1.0) / m;
        }
    }
    auto rope = [&](const double* v, double* out, int64_t p) {
        for (int64_t k = 0; k < d_R / 2; ++k) {
            const std::complex<double> z = std::complex<double>(v[2 * k], v[2 * k + 1]) * std::polar(amp, double(p) * freq[size_t(k)]);
            out[2 * k] = z.real();
            out[2 * k + 1] = z.imag();
        }
    };

    // Per token: q_nope[t][i][·], q_pe[t][i][·], c[t][·], kpe[t][·], k_nope[t][i][·], v[t][i][·].
    std::vector<std::vector<double>> qn(static_cast<size_t>(T)), qp(qn), kp(qn), kn(qn), vv(qn);
    for (int64_t t = 0; t < T; ++t) {
        const std::vector<double> xt(x.row(t).data(), x.row(t).data() + x.cols());
        std::vector<double> q = c.d_q > 0 ? matvec(w.mat(a + "q_b_proj.weight"),
                                                   rmsnorm(matvec(w.mat(a + "q_a_proj.weight"), xt), w.mat(a + "q_a_layernorm.weight")))
                                          : matvec(w.mat(a + "q_proj.weight"), xt);
        qn[size_t(t)].resize(size_t(n_h * d_h));
        qp[size_t(t)].resize(size_t(n_h * d_R));
        for (int64_t i = 0; i < n_h; ++i) {
            for (int64_t k = 0; k < d_h; ++k) qn[size_t(t)][size_t(i * d_h + k)] = q[size_t(i * d_qk + k)];
            rope(&q[size_t(i * d_qk + d_h)], &qp[size_t(t)][size_t(i * d_R)], t);
        }
        const std::vector<double> kv = matvec(w.mat(a + "kv_a_proj_with_mqa.weight"), xt);
        const std::vector<double> lat = rmsnorm(std::vector<double>(kv.begin(), kv.begin() + d_c), w.mat(a + "kv_a_layernorm.weight"));
        kp[size_t(t)].resize(size_t(d_R));
        rope(&kv[size_t(d_c)], kp[size_t(t)].data(), t);
        const std::vector<double> kb = matvec(w.mat(a + "kv_b_proj.weight"), lat);
        kn[size_t(t)].resize(size_t(n_h * d_h));
        vv[size_t(t)].resize(size_t(n_h * d_v));
        for (int64_t i = 0; i < n_h; ++i) {
            for (int64_t k = 0; k < d_h; ++k) kn[size_t(t)][size_t(i * d_h + k)] = kb[size_t(i * (d_h + d_v) + k)];
            for (int64_t k = 0; k < d_v; ++k) vv[size_t(t)][size_t(i * d_v + k)] = kb[size_t(i * (d_h + d_v) + d_h + k)];
        }
    }
    Mat<double> u(T, c.d);
    for (int64_t t = 0; t < T; ++t) {
        std::vector<double> o(size_t(n_h * d_v), 0.0);
        for (int64_t i = 0; i < n_h; ++i) {
            std::vector<double> s(size_t(t + 1));
            double mx = -1e300, sum = 0;
            for (int64_t j = 0; j <= t; ++j) {
                double dot = 0;
                for (int64_t k = 0; k < d_h; ++k) dot += qn[size_t(t)][size_t(i * d_h + k)] * kn[size_t(j)][size_t(i * d_h + k)];
                for (int64_t k = 0; k < d_R; ++k) dot += qp[size_t(t)][size_t(i * d_R + k)] * kp[size_t(j)][size_t(k)];
                s[size_t(j)] = sigma * dot;
                mx = std::max(mx, s[size_t(j)]);
            }
            for (double& e : s) sum += (e = std::exp(e - mx));
            for (int64_t j = 0; j <= t; ++j)
                for (int64_t k = 0; k < d_v; ++k) o[size_t(i * d_v + k)] += s[size_t(j)] / sum * vv[size_t(j)][size_t(i * d_v + k)];
        }
        const std::vector<double> ut = matvec(w.mat(a + "o_proj.weight"), o);
        for (int64_t k = 0; k < c.d; ++k) u(t, k) = ut[size_t(k)];
    }
    return u;
}

template <typename S>
Mat<S> run_mla(const Config& c, const Weights<S>& w, int64_t l, const Mat<S>& x, AttentionForm form,
               const std::vector<int64_t>& chunks, Trace* trace = nullptr, LatentCache<S>* keep = nullptr) {
    const Rope rope(c);
    LatentCache<S> cache(c);
    Mat<S> u(x.rows(), c.d);
    int64_t done = 0;
    for (int64_t n : chunks) {
        std::vector<int64_t> pos;
        for (int64_t t = 0; t < n; ++t) pos.push_back(done + t);
        u.middleRows(done, n) = mla_forward<S>(c, w, l, x.middleRows(done, n), pos, rope, cache, form, trace);
        cache.commit(n);
        done += n;
    }
    if (keep) *keep = cache;
    return u;
}

}  // namespace

TEST_CASE("MLA naive and absorbed both equal the plain-loop paper equations (fp64), V2-like and Lite-like") {
    for (const Config& c : {config_preset("tiny"), dsv2::test::tiny_lite()}) {
        const Weights<double> w = random_weights<double>(c, 3);
        const Mat<double> x = randn<double>(7, c.d, 21);
        const Mat<double> ref = mla_loops(c, w, 1, x);
        INFO("q_lora_rank = " << c.d_q);
        CHECK(rel_err(run_mla<double>(c, w, 1, x, AttentionForm::naive, {7}), ref) < 1e-12);
        CHECK(rel_err(run_mla<double>(c, w, 1, x, AttentionForm::absorbed, {7}), ref) < 1e-12);
    }
}

TEST_CASE("MLA stacked absorbed form = per-head absorbed form = naive form, in any block split, same recorded names") {
    // mla_forward runs mla_attend_absorbed_stacked; the per-head loop is the form that reads beside
    // the paper. Both, and the naive form, on a decode-like call (3 queries at the end of 11 cached
    // rows) and a prefill-like call (11 queries), with the token blocks forced down to 1 and 3 tokens.
    for (const Config& c : {config_preset("tiny"), dsv2::test::tiny_lite()}) {
        const Weights<double> w = random_weights<double>(c, 6);
        const Rope rope(c);
        const int64_t n = 11;
        const Mat<double> c_kv = randn<double>(n, c.d_c, 24), k_pe = randn<double>(n, c.d_R, 25);
        const Mat<double>& W_kv_b = w.mat(layer_prefix(0) + "self_attn.kv_b_proj.weight");
        for (int64_t T : {int64_t(3), n}) {
            std::vector<int64_t> pos;
            for (int64_t t = 0; t < T; ++t) pos.push_back(n - T + t);
            const MlaQuery<double> q = mla_query<double>(c, w, 0, randn<double>(T, c.d, 26), pos, rope, nullptr);
            Trace per_head, stacked;
            const Mat<double> ref = mla_attend_naive<double>(c, q, c_kv, k_pe, W_kv_b, pos);
            const Mat<double> o_head = mla_attend_absorbed<double>(c, q, c_kv, k_pe, W_kv_b, pos, 0, &per_head);
            const Mat<double> o_stack = mla_attend_absorbed_stacked<double>(c, q, c_kv, k_pe, W_kv_b, pos, 0, &stacked);
            INFO("d_q = " << c.d_q << ", T = " << T);
            CHECK(rel_err(o_head, ref) < 1e-13);
            CHECK(rel_err(o_stack, ref) < 1e-13);
            for (const char* name : {"layers.0.attn.q_absorbed", "layers.0.attn.o_latent"}) {
                REQUIRE(stacked.has(name));
                CHECK(rel_err(stacked.at(name).data, per_head.at(name).data) < 1e-13);
            }
            for (int64_t tokens_per_block : {int64_t(1), int64_t(3)})
                CHECK(rel_err(mla_attend_absorbed_stacked<double>(c, q, c_kv, k_pe, W_kv_b, pos, 0, nullptr,
                                                                  tokens_per_block * n * c.n_h), ref) < 1e-13);
        }
    }
}

TEST_CASE("MLA fp32 is within 1e-5 of the fp64 oracle in both forms") {
    const Config c = config_preset("tiny");
    const Weights<double> wd = random_weights<double>(c, 4);
    const Weights<float> wf = random_weights<float>(c, 4);
    const Mat<double> x = randn<double>(9, c.d, 22);
    const Mat<double> ref = run_mla<double>(c, wd, 0, x, AttentionForm::naive, {9});
    for (AttentionForm f : {AttentionForm::naive, AttentionForm::absorbed})
        CHECK(rel_err(run_mla<float>(c, wf, 0, x.cast<float>(), f, {9}), ref) < 1e-5);
}

TEST_CASE("MLA: one prefill = prefill + one-token decode steps = uneven chunks, both forms") {
    const Config c = config_preset("tiny");
    const Weights<double> w = random_weights<double>(c, 5);
    const Mat<double> x = randn<double>(10, c.d, 23);
    for (AttentionForm f : {AttentionForm::naive, AttentionForm::absorbed}) {
        const Mat<double> one = run_mla<double>(c, w, 2, x, f, {10});
        CHECK(rel_err(run_mla<double>(c, w, 2, x, f, {4, 1, 1, 1, 1, 1, 1}), one) < 1e-13);
        CHECK(rel_err(run_mla<double>(c, w, 2, x, f, {1, 3, 2, 4}), one) < 1e-13);
        CHECK(rel_err(run_mla<double>(c, w, 2, x, f, {1, 1, 1, 1, 1, 1, 1, 1, 1, 1}), one) < 1e-13);
    }
}

TEST_CASE("the latent cache holds exactly the post-norm c_KV and post-RoPE k_R of each token") {
    const Config c = config_preset("tiny");
    const Weights<double> w = random_weights<double>(c, 6);
    const Mat<double> x = randn<double>(5, c.d, 24);
    Trace trace;
    LatentCache<double> cache(c);
    run_mla<double>(c, w, 1, x, AttentionForm::absorbed, {3, 2}, &trace, &cache);
    REQUIRE(cache.length() == 5);
    CHECK(cache.width() == c.d_c + c.d_R);
    CHECK(rel_err(cache.c_kv(1, 5), trace.at("layers.1.attn.c_kv").data) == 0.0);
    CHECK(rel_err(cache.k_pe(1, 5), trace.at("layers.1.attn.k_pe").data) == 0.0);
    CHECK(cache.elements() == c.L * 5 * 40);
    CHECK(cache.bytes() == cache.elements() * 8);
    // Post-norm: with the norm weights divided out, every latent row has unit RMS (up to the
    // eps = 1e-6 inside the root).
    const Eigen::Map<const Vec<double>> g = w.vec("model.layers.1.self_attn.kv_a_layernorm.weight");
    for (int t = 0; t < 5; ++t) {
        const RowVec<double> u = cache.c_kv(1, 5).row(t).cwiseQuotient(g.transpose());
        CHECK(std::sqrt(u.squaredNorm() / double(c.d_c)) == Approx(1.0).epsilon(1e-5));
    }
}

TEST_CASE("the MLA cache of DeepSeek-V2 and V2-Lite is 576 elements per token per layer") {
    for (const char* p : {"deepseek-v2", "deepseek-v2-lite"}) {
        const Config c = config_preset(p);
        const LatentCache<float> cache(c);
        CHECK(cache.width() == 576);
        CHECK(c.cache_width() == 576);
    }
}

TEST_CASE("the softmax scale reaches the logits: a missing mscale² changes multi-token attention") {
    Config c = config_preset("tiny");
    const Weights<double> w = random_weights<double>(c, 8);
    const Mat<double> x = randn<double>(6, c.d, 25);
    const Mat<double> with = run_mla<double>(c, w, 1, x, AttentionForm::absorbed, {6});
    c.yarn.mscale_all_dim = 0.0;  // σ without the YaRN factor; the RoPE amplitude stays 1/1
    c.yarn.mscale = 0.0;
    const Mat<double> without = run_mla<double>(c, w, 1, x, AttentionForm::absorbed, {6});
    CHECK(rel_err(without.topRows(1), with.topRows(1)) < 1e-13);  // one key: softmax ignores σ
    CHECK(rel_err(without, with) > 1e-4);
}
