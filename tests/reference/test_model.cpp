// The whole forward pass: fp32 judged by fp64, every named intermediate, prefill vs decode,
// the two attention forms, bad tokens.
#include <set>

#include "dsv2/model.hpp"
#include "support.hpp"

using namespace dsv2;
using dsv2::test::rel_err;

namespace {

const std::vector<int32_t> kTokens{72, 101, 108, 108, 111, 44, 32, 77, 76, 65, 33, 10, 0, 255};

template <typename S>
Trace run(const Model<S>& m, const std::vector<int32_t>& toks, const std::vector<int64_t>& chunks, AttentionForm f) {
    Trace trace;
    LatentCache<S> cache(m.config());
    size_t done = 0;
    for (int64_t n : chunks) {
        m.forward(std::vector<int32_t>(toks.begin() + long(done), toks.begin() + long(done) + n), cache, f, &trace);
        done += size_t(n);
    }
    REQUIRE(done == toks.size());
    REQUIRE(cache.length() == int64_t(toks.size()));
    return trace;
}

// Every intermediate of `a` within `tol` of `ref` (relative); names the first that is not.
void check_traces(const Trace& a, const Trace& ref, double tol) {
    for (const std::string& name : ref.order()) {
        if (!a.has(name)) continue;  // form-specific entries
        INFO("intermediate " << name);
        const Mat<double>& x = a.at(name).data;
        const Mat<double>& y = ref.at(name).data;
        REQUIRE(x.rows() == y.rows());
        REQUIRE(x.cols() == y.cols());
        if (ref.at(name).integer) REQUIRE(x == y);
        else REQUIRE(rel_err(x, y) <= tol);
    }
}

}  // namespace

TEST_CASE("every named intermediate is recorded, one row per token") {
    const Config c = config_preset("tiny");
    const Model<float> m(c, random_weights<float>(c, 1));
    const Trace t = run(m, kTokens, {14}, AttentionForm::absorbed);
    std::set<std::string> want{"embed", "norm", "logits"};
    for (int l = 0; l < 3; ++l) {
        for (const char* n : {"attn_norm", "attn.c_q", "attn.q_nope", "attn.q_pe", "attn.c_kv", "attn.k_pe",
                              "attn.q_absorbed", "attn.o_latent", "attn.o", "attn.out", "attn_residual", "ffn_norm", "out"})
            want.insert(iname(l, n));
        if (l == 0) want.insert(iname(l, "mlp.out"));
        else
            for (const char* n : {"moe.router_logits", "moe.scores", "moe.topk_idx", "moe.topk_weight", "moe.shared",
                                  "moe.routed", "moe.out"})
                want.insert(iname(l, n));
    }
    std::set<std::string> got;
    for (const auto& [name, e] : t.entries()) {
        got.insert(name);
        CHECK(e.data.rows() == 14);
    }
    CHECK(got == want);
    CHECK(t.order().front() == "embed");
    CHECK(t.order().back() == "logits");
    CHECK(t.at("layers.2.attn.q_pe").data.cols() == c.n_h * c.d_R);
    CHECK(t.at("layers.1.moe.topk_idx").data.cols() == c.K_r);
    // the residual structure of a decoder layer
    CHECK(rel_err(t.at("layers.1.out").data, t.at("layers.1.attn_residual").data + t.at("layers.1.moe.out").data) < 1e-6);
    CHECK(rel_err(t.at("layers.0.attn_residual").data, t.at("embed").data + t.at("layers.0.attn.out").data) < 1e-6);
}

TEST_CASE("fp32 oracle within 1e-5 of the fp64 oracle at every intermediate, both forms, V2- and Lite-like") {
    for (const Config& c : {config_preset("tiny"), dsv2::test::tiny_lite()}) {
        const Model<float> mf(c, random_weights<float>(c, 2));
        const Model<double> md(c, random_weights<double>(c, 2));
        for (AttentionForm f : {AttentionForm::naive, AttentionForm::absorbed}) {
            INFO("form " << to_string(f) << ", q_lora_rank " << c.d_q);
            check_traces(run(mf, kTokens, {14}, f), run(md, kTokens, {14}, f), 1e-5);
        }
    }
}

TEST_CASE("one prefill = prefill + decode = several chunks, at every intermediate") {
    const Config c = config_preset("tiny");
    const Model<double> m(c, random_weights<double>(c, 3));
    const Trace one = run(m, kTokens, {14}, AttentionForm::absorbed);
    std::vector<int64_t> decode{5};
    for (int i = 0; i < 9; ++i) decode.push_back(1);
    check_traces(run(m, kTokens, decode, AttentionForm::absorbed), one, 1e-12);
    check_traces(run(m, kTokens, {3, 4, 2, 5}, AttentionForm::absorbed), one, 1e-12);
    check_traces(run(m, kTokens, {1, 13}, AttentionForm::naive), one, 1e-12);
    // and in fp32, prefill vs decode agree to fp32 rounding
    const Model<float> mf(c, random_weights<float>(c, 3));
    check_traces(run(mf, kTokens, decode, AttentionForm::naive), run(mf, kTokens, {14}, AttentionForm::absorbed), 1e-5);
}

TEST_CASE("naive and absorbed attention give the same logits through the whole model") {
    const Config c = dsv2::test::tiny_lite();
    const Model<double> m(c, random_weights<double>(c, 4));
    const Trace a = run(m, kTokens, {14}, AttentionForm::naive);
    const Trace b = run(m, kTokens, {14}, AttentionForm::absorbed);
    CHECK(rel_err(a.at("logits").data, b.at("logits").data) < 1e-12);
    CHECK(!a.has("layers.0.attn.q_absorbed"));
    CHECK(b.has("layers.0.attn.q_absorbed"));
}

TEST_CASE("a token outside the vocabulary is refused with its index, and the cache is untouched") {
    const Config c = config_preset("tiny");
    const Model<float> m(c, random_weights<float>(c, 5));
    LatentCache<float> cache(c);
    m.forward({1, 2, 3}, cache);
    REQUIRE(cache.length() == 3);
    for (int32_t bad : {256, -1}) {
        try {
            m.forward({4, bad}, cache);
            FAIL("no exception");
        } catch (const std::invalid_argument& e) {
            CHECK(std::string(e.what()).find("index 1") != std::string::npos);
            CHECK(std::string(e.what()).find(std::to_string(bad)) != std::string::npos);
        }
    }
    CHECK(cache.length() == 3);
    // decoding continues correctly after the refusal
    const Mat<float> next = m.forward({4}, cache);
    LatentCache<float> fresh(c);
    const Mat<float> all = m.forward({1, 2, 3, 4}, fresh);
    CHECK(rel_err(next.row(0), all.row(3)) < 1e-5);
}

TEST_CASE("the model refuses weights that do not match the config, naming the tensor") {
    const Config c = config_preset("tiny");
    Weights<float> w = random_weights<float>(c, 6);
    w.set("model.layers.2.self_attn.kv_b_proj.weight", Mat<float>::Zero(3, 3));
    try {
        Model<float> m(c, w);
        FAIL("no exception");
    } catch (const std::invalid_argument& e) {
        CHECK(std::string(e.what()).find("model.layers.2.self_attn.kv_b_proj.weight") != std::string::npos);
    }
}

TEST_CASE("a NaN or Inf is reported at the first intermediate that holds it, even when nothing is stored") {
    const Config c = config_preset("tiny");
    Weights<float> w = random_weights<float>(c, 7);
    w.mutable_mat("model.layers.1.self_attn.kv_a_layernorm.weight")(0, 5) = std::numeric_limits<float>::quiet_NaN();
    const Model<float> m(c, w);
    for (bool store : {true, false}) {
        Trace guard(nullptr, store);
        LatentCache<float> cache(c);
        m.forward({1, 2, 3}, cache, AttentionForm::absorbed, &guard);
        CHECK(guard.first_nonfinite() == "layers.1.attn.c_kv (token 0)");
        CHECK(guard.entries().empty() == !store);
    }
    // Inf in the embedding of one token: named with that token's index, across decode steps.
    Weights<float> w2 = random_weights<float>(c, 7);
    w2.mutable_mat("model.embed_tokens.weight")(9, 0) = std::numeric_limits<float>::infinity();
    const Model<float> m2(c, w2);
    Trace guard(nullptr, false);
    LatentCache<float> cache(c);
    m2.forward({1, 2}, cache, AttentionForm::naive, &guard);
    CHECK(guard.first_nonfinite().empty());
    m2.forward({9}, cache, AttentionForm::naive, &guard);
    CHECK(guard.first_nonfinite() == "embed (token 2)");
}
