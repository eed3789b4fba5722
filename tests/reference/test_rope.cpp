// RoPE, YaRN and the softmax scale against the spec's closed forms and independent codings.
#include <complex>

#include "dsv2/rope.hpp"
#include "support.hpp"

using namespace dsv2;
using dsv2::test::randn;
using dsv2::test::rel_err;

namespace {

// θ'_k straight from the spec (§2.4), written independently of rope.cpp.
std::vector<double> spec_inv_freq(int d_R, double base, double s, double L0, double b_fast, double b_slow) {
    const double pi = std::acos(-1.0);
    auto D = [&](double r) { return d_R * std::log(L0 / (2 * pi * r)) / (2 * std::log(base)); };
    double low = std::max(std::floor(D(b_fast)), 0.0), high = std::min(std::ceil(D(b_slow)), double(d_R - 1));
    if (low == high) high += 0.001;
    std::vector<double> f;
    for (int k = 0; k < d_R / 2; ++k) {
        const double theta = 1.0 / std::pow(base, 2.0 * k / d_R);
        const double r = std::min(std::max((k - low) / (high - low), 0.0), 1.0);
        f.push_back(theta * (1 - r) + theta / s * r);
    }
    return f;
}

// DeepSeek's complex formulation: pairs as complex numbers times e^{i p θ_k}.
std::vector<double> rope_complex(const std::vector<double>& x, int64_t p, const std::vector<double>& f) {
    std::vector<double> y(x.size());
    for (size_t k = 0; k < f.size(); ++k) {
        const std::complex<double> z(x[2 * k], x[2 * k + 1]);
        const std::complex<double> r = z * std::polar(1.0, double(p) * f[k]);
        y[2 * k] = r.real();
        y[2 * k + 1] = r.imag();
    }
    return y;
}

}  // namespace

TEST_CASE("YaRN correction range for d_R = 64, L0 = 4096, beta 32/1 is [10, 23]") {
    const YarnRange r = yarn_correction_range(64, 10000.0, 4096, 32.0, 1.0);
    CHECK(r.low == 10);
    CHECK(r.high == 23);
}

TEST_CASE("the softmax scale of DeepSeek-V2 (and Lite) is 0.114721") {
    CHECK(softmax_scale(config_preset("deepseek-v2")) == Approx(0.114721).margin(5e-7));
    CHECK(softmax_scale(config_preset("deepseek-v2-lite")) == Approx(0.114721).margin(5e-7));
    Config v3like = config_preset("deepseek-v2");
    v3like.yarn.mscale = v3like.yarn.mscale_all_dim = 1.0;
    CHECK(softmax_scale(v3like) == Approx(0.135234).margin(5e-7));
    Config plain = config_preset("deepseek-v2");
    plain.has_yarn = false;
    CHECK(softmax_scale(plain) == Approx(1.0 / std::sqrt(192.0)).epsilon(1e-15));
    CHECK(yarn_mscale(40.0, 0.707) == Approx(1.260804).margin(1e-6));
    CHECK(yarn_mscale(1.0, 0.707) == 1.0);
}

TEST_CASE("YaRN inverse frequencies: original below low, divided by s above high, blended between") {
    const Config c = config_preset("deepseek-v2");
    const std::vector<double> f = rope_inv_freq(c);
    const std::vector<double> ref = spec_inv_freq(64, 10000.0, 40.0, 4096.0, 32.0, 1.0);
    REQUIRE(f.size() == 32);
    for (int k = 0; k < 32; ++k) CHECK(f[size_t(k)] == Approx(ref[size_t(k)]).epsilon(1e-14));
    for (int k = 0; k <= 10; ++k) CHECK(f[size_t(k)] == Approx(std::pow(1e4, -k / 32.0)).epsilon(1e-14));
    for (int k = 23; k < 32; ++k) CHECK(f[size_t(k)] == Approx(std::pow(1e4, -k / 32.0) / 40.0).epsilon(1e-14));
    for (int k = 11; k < 23; ++k) {
        CHECK(f[size_t(k)] < std::pow(1e4, -k / 32.0));
        CHECK(f[size_t(k)] > std::pow(1e4, -k / 32.0) / 40.0);
    }
    // The tiny preset (d_R = 8) has all three regimes too.
    const Config t = config_preset("tiny");
    const YarnRange r = yarn_correction_range(t.d_R, t.rope_theta, t.yarn.L0, t.yarn.beta_fast, t.yarn.beta_slow);
    CHECK(r.low == 1);
    CHECK(r.high == 3);
    const std::vector<double> ft = rope_inv_freq(t), rt = spec_inv_freq(8, 1e4, 40.0, 4096.0, 32.0, 1.0);
    for (int k = 0; k < 4; ++k) CHECK(ft[size_t(k)] == Approx(rt[size_t(k)]).epsilon(1e-14));
    Config no_yarn = t;
    no_yarn.has_yarn = false;
    CHECK(rope_inv_freq(no_yarn)[3] == Approx(std::pow(1e4, -6.0 / 8.0)).epsilon(1e-14));
}

TEST_CASE("apply_rope is the interleaved (complex) rotation of every head chunk") {
    const Config c = config_preset("deepseek-v2");
    const Rope rope(c);
    const int heads = 3;
    Mat<double> x = randn<double>(4, heads * 64, 11);
    const Mat<double> x0 = x;
    const std::vector<int64_t> pos{0, 1, 4095, 150000};
    apply_rope<double>(x, pos, rope);
    for (int t = 0; t < 4; ++t)
        for (int h = 0; h < heads; ++h) {
            std::vector<double> v(64);
            for (int k = 0; k < 64; ++k) v[size_t(k)] = x0(t, h * 64 + k);
            const std::vector<double> ref = rope_complex(v, pos[size_t(t)], rope.inv_freq);
            for (int k = 0; k < 64; ++k) CHECK(x(t, h * 64 + k) == Approx(ref[size_t(k)]).margin(1e-12));
        }
    CHECK(rel_err(x.row(0), x0.row(0)) == 0.0);  // position 0 is the identity
}

TEST_CASE("RoPE keeps norms and q(m)·k(n) depends only on m − n") {
    const Config c = config_preset("deepseek-v2-lite");
    const Rope rope(c);
    const Mat<double> q0 = randn<double>(1, 64, 12), k0 = randn<double>(1, 64, 13);
    auto rot = [&](const Mat<double>& v, int64_t p) {
        Mat<double> r = v;
        apply_rope<double>(r, {p}, rope);
        return r;
    };
    CHECK(rot(q0, 777).norm() == Approx(q0.norm()).epsilon(1e-13));
    for (int64_t m : {5, 100, 5000}) {
        for (int64_t n : {0, 3, 4000}) {
            const double a = rot(q0, m).row(0).dot(rot(k0, n).row(0));
            const double b = rot(q0, m + 1234).row(0).dot(rot(k0, n + 1234).row(0));
            CHECK(a == Approx(b).margin(1e-9));
        }
    }
    // …and it does depend on m − n (the test can fail).
    CHECK(std::abs(rot(q0, 10).row(0).dot(rot(k0, 0).row(0)) - rot(q0, 11).row(0).dot(rot(k0, 0).row(0))) > 1e-6);
}

TEST_CASE("Hugging Face's permute + rotate_half gives the evens-then-odds reordering and the same q·k") {
    const Config c = config_preset("deepseek-v2");
    const Rope rope(c);
    const int64_t p = 321;
    auto hf = [&](const Mat<double>& x) {  // modeling_deepseek.apply_rotary_pos_emb
        Mat<double> perm(1, 64), out(1, 64);
        for (int k = 0; k < 32; ++k) perm(0, k) = x(0, 2 * k), perm(0, 32 + k) = x(0, 2 * k + 1);
        for (int j = 0; j < 64; ++j) {
            const double ang = double(p) * rope.inv_freq[size_t(j % 32)];
            const double rh = j < 32 ? -perm(0, j + 32) : perm(0, j - 32);  // rotate_half
            out(0, j) = perm(0, j) * std::cos(ang) + rh * std::sin(ang);
        }
        return out;
    };
    const Mat<double> q = randn<double>(1, 64, 14), k = randn<double>(1, 64, 15);
    Mat<double> ours_q = q, ours_k = k;
    apply_rope<double>(ours_q, {p}, rope);
    apply_rope<double>(ours_k, {p}, rope);
    const Mat<double> hf_q = hf(q), hf_k = hf(k);
    for (int kk = 0; kk < 32; ++kk) {
        CHECK(hf_q(0, kk) == Approx(ours_q(0, 2 * kk)).margin(1e-12));
        CHECK(hf_q(0, 32 + kk) == Approx(ours_q(0, 2 * kk + 1)).margin(1e-12));
    }
    CHECK(hf_q.row(0).dot(hf_k.row(0)) == Approx(ours_q.row(0).dot(ours_k.row(0))).margin(1e-10));
    // NeoX rotate_half on the raw (unpermuted) vector is a different rotation: the spec's gotcha 1.
    Mat<double> neox(1, 64);
    for (int j = 0; j < 64; ++j) {
        const double ang = double(p) * rope.inv_freq[size_t(j % 32)];
        neox(0, j) = q(0, j) * std::cos(ang) + (j < 32 ? -q(0, j + 32) : q(0, j - 32)) * std::sin(ang);
    }
    CHECK(rel_err(neox, ours_q) > 1e-3);
}

TEST_CASE("the cos/sin amplitude is mscale(s, mscale) / mscale(s, mscale_all_dim)") {
    Config c = config_preset("tiny");
    CHECK(rope_amplitude(c) == 1.0);  // equal for every released config
    c.yarn.mscale = 1.0;
    c.yarn.mscale_all_dim = 0.707;
    const double a = (0.1 * std::log(40.0) + 1.0) / (0.1 * 0.707 * std::log(40.0) + 1.0);
    CHECK(rope_amplitude(c) == Approx(a).epsilon(1e-14));
    const Rope rope(c);
    Mat<double> x = randn<double>(1, 8, 16);
    const double n0 = x.norm();
    apply_rope<double>(x, {9}, rope);
    CHECK(x.norm() == Approx(a * n0).epsilon(1e-13));
}
