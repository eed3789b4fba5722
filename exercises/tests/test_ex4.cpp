// ex4 — the learner's absorbed query and latent output against the oracle's absorbed attention
// (its trace) and, end to end, against the naive form.
#include <cmath>

#include "dsv2/layers.hpp"
#include "dsv2/mla.hpp"
#include "dsv2/rope.hpp"
#include "dsv2/trace.hpp"
#include "dsv2/weights.hpp"
#include "ex4.hpp"
#include "exercise_support.hpp"

using dsv2::Mat;

namespace {
struct Setup {
    dsv2::Config c;
    dsv2::Weights<double> w;
    dsv2::MlaQuery<double> q;
    dsv2::MlaLatent<double> lat;
    std::vector<int64_t> pos;
    Setup(const dsv2::Config& cfg, uint32_t seed) : c(cfg), w(dsv2::random_weights<double>(cfg, seed)) {
        const dsv2::Rope rope(c);
        const Mat<double> x = ex::randn(7, c.d, seed + 1);
        pos = ex::positions(7);
        q = dsv2::mla_query<double>(c, w, 1, x, pos, rope, nullptr);
        lat = dsv2::mla_latent<double>(c, w, 1, x, pos, rope, nullptr);
    }
    const Mat<double>& W_kv_b() const { return w.mat(dsv2::layer_prefix(1) + "self_attn.kv_b_proj.weight"); }
};
}  // namespace

TEST_CASE("ex4: absorbed_query = the oracle's attn.q_absorbed; latent_output(attn.o_latent) = its output", "[ex4]") {
    for (const dsv2::Config& c : {dsv2::config_preset("tiny"), ex::tiny_lite()}) {
        const Setup s(c, 40);
        dsv2::Trace trace;
        const Mat<double> o = dsv2::mla_attend_absorbed<double>(c, s.q, s.lat.c_kv, s.lat.k_pe, s.W_kv_b(), s.pos, 1, &trace);
        const Mat<double> q_abs = ex4::absorbed_query(c, s.q.q_nope, s.W_kv_b());
        REQUIRE(q_abs.rows() == 7);
        REQUIRE(q_abs.cols() == c.n_h * c.d_c);
        CHECK(ex::rel_err(q_abs, trace.at("layers.1.attn.q_absorbed").data) < 1e-13);
        const Mat<double> o_mine = ex4::latent_output(c, trace.at("layers.1.attn.o_latent").data, s.W_kv_b());
        REQUIRE(o_mine.cols() == c.n_h * c.d_v);
        CHECK(ex::rel_err(o_mine, o) < 1e-13);
    }
}

TEST_CASE("ex4: absorbed query, softmax over the latent, latent output = naive MLA", "[ex4]") {
    const dsv2::Config c = dsv2::config_preset("tiny");
    const Setup s(c, 41);
    const Mat<double> q_abs = ex4::absorbed_query(c, s.q.q_nope, s.W_kv_b());
    Mat<double> o_lat(7, c.n_h * c.d_c);
    for (int64_t i = 0; i < c.n_h; ++i) {
        Mat<double> scores = q_abs.middleCols(i * c.d_c, c.d_c) * s.lat.c_kv.transpose() +
                             s.q.q_pe.middleCols(i * c.d_R, c.d_R) * s.lat.k_pe.transpose();   // [T, T]
        scores *= dsv2::softmax_scale(c);
        for (int t = 0; t < 7; ++t) scores.row(t).tail(6 - t).setConstant(-INFINITY);
        dsv2::softmax_rows<double>(scores);
        o_lat.middleCols(i * c.d_c, c.d_c) = scores * s.lat.c_kv;
    }
    const Mat<double> naive = dsv2::mla_attend_naive<double>(c, s.q, s.lat.c_kv, s.lat.k_pe, s.W_kv_b(), s.pos);
    CHECK(ex::rel_err(ex4::latent_output(c, o_lat, s.W_kv_b()), naive) < 1e-13);
}
