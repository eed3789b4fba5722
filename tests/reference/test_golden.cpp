// Parity with PyTorch: the oracle against golden data made by transformers' DeepseekV2ForCausalLM
// (data/golden/{lite,v2}, written by tools/golden/make_golden.py after correcting transformers'
// deviations from DeepSeek's released semantics and checking it against an independent reference).
//
// Each checkpoint is read as dsv2 reads any Hugging Face directory (config_from_file, load_weights),
// run on the golden tokens with a Trace, and every golden intermediate is compared by name in the
// order the forward pass produced it: ‖Δ‖/‖ref‖ ≤ 1e-5, expert indices exactly. A failure names the
// first intermediate that diverges. No Python is needed: the files are checked in.
#include <algorithm>
#include <map>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "dsv2/checkpoint.hpp"
#include "dsv2/io.hpp"
#include "dsv2/model.hpp"
#include "support.hpp"

using namespace dsv2;
using dsv2::test::rel_err;

namespace {

const std::string kGoldenDir = std::string(DSV2_SOURCE_DIR) + "/data/golden/";
const std::vector<std::string> kCheckpoints{"lite", "v2"};
constexpr double kTol = 1e-5;

std::string dir_of(const std::string& name) { return kGoldenDir + name; }

// One golden file: every intermediate as [T, width] in double, the integer ones marked.
struct Golden {
    std::map<std::string, Mat<double>> tensors;
    std::set<std::string> integer;
    std::vector<int32_t> tokens;
    std::map<std::string, std::string> meta;
    bool has(const std::string& n) const { return tensors.count(n) != 0; }
};

Golden load_golden(const std::string& name) {
    Golden g;
    const std::string path = dir_of(name) + "/golden.safetensors";
    const auto raw = read_safetensors(path, &g.meta);
    const auto tok = raw.find("tokens");
    REQUIRE(tok != raw.end());
    REQUIRE(tok->second.dtype == DType::I32);
    REQUIRE(tok->second.shape.size() == 1);
    for (double v : tok->second.to_double()) g.tokens.push_back(int32_t(v));
    const int64_t T = int64_t(g.tokens.size());
    for (const auto& [n, t] : raw) {
        if (n == "tokens") continue;
        INFO(path << ": " << n);
        REQUIRE(t.shape.size() == 2);
        REQUIRE(t.shape[0] == T);
        REQUIRE((t.dtype == DType::F32 || t.dtype == DType::I32));
        const std::vector<double> v = t.to_double();
        g.tensors[n] = Eigen::Map<const Mat<double>>(v.data(), t.shape[0], t.shape[1]);
        if (t.dtype == DType::I32) g.integer.insert(n);
    }
    return g;
}

// The first intermediate, in forward order, where a trace leaves the golden data (empty name: none).
struct Comparison {
    std::string first;         ///< first diverging intermediate, "" if none
    std::string why;           ///< its error, in words
    double worst = 0.0;        ///< largest relative error over the float intermediates compared
    int compared = 0;          ///< intermediates compared
    std::vector<std::string> missing;  ///< golden intermediates the trace does not have
};

Comparison compare(const Trace& t, const Golden& g, double tol) {
    Comparison c;
    for (const std::string& name : t.order()) {
        if (!g.has(name)) continue;  // absorbed-form entries (attn.q_absorbed, attn.o_latent)
        ++c.compared;
        const Mat<double>& x = t.at(name).data;
        const Mat<double>& y = g.tensors.at(name);
        std::ostringstream why;
        bool bad = false;
        if (x.rows() != y.rows() || x.cols() != y.cols()) {
            why << "shape [" << x.rows() << ", " << x.cols() << "], golden [" << y.rows() << ", " << y.cols() << "]";
            bad = true;
        } else if (g.integer.count(name)) {
            const int64_t diff = (x.array() != y.array()).count();
            if (diff) {
                why << diff << " of " << y.size() << " indices differ";
                bad = true;
            }
        } else {
            const double e = rel_err(x, y);
            c.worst = std::max(c.worst, e);
            if (!(e <= tol)) {
                why << "|d|/|ref| = " << e << " > " << tol;
                bad = true;
            }
        }
        if (bad && c.first.empty()) {
            c.first = name;
            c.why = why.str();
        }
    }
    std::set<std::string> seen(t.order().begin(), t.order().end());
    for (const auto& [name, m] : g.tensors)
        if (!seen.count(name)) c.missing.push_back(name);
    return c;
}

std::string describe(const Comparison& c) {
    std::ostringstream s;
    if (c.first.empty()) s << "no divergence";
    else s << "first diverging intermediate: " << c.first << " (" << c.why << ")";
    s << "; " << c.compared << " compared, worst relative error " << c.worst;
    if (!c.missing.empty()) s << "; " << c.missing.size() << " golden intermediates not produced, e.g. " << c.missing.front();
    return s.str();
}

// Runs the tokens through `m`: the first `prefill` in one call, the rest one token per call.
template <typename S>
Trace run(const Model<S>& m, const std::vector<int32_t>& tokens, size_t prefill, AttentionForm form) {
    Trace trace;
    LatentCache<S> cache(m.config());
    m.forward(std::vector<int32_t>(tokens.begin(), tokens.begin() + long(prefill)), cache, form, &trace);
    for (size_t t = prefill; t < tokens.size(); ++t) m.forward({tokens[t]}, cache, form, &trace);
    REQUIRE(cache.length() == int64_t(tokens.size()));
    return trace;
}

template <typename S>
Model<S> load_model(const std::string& name, const Config* override_cfg = nullptr) {
    const Config cfg = override_cfg ? *override_cfg : config_from_file(dir_of(name));
    return Model<S>(cfg, load_weights<S>(dir_of(name), cfg));
}

// Every golden intermediate within kTol, indices exact, for one precision, form and schedule.
template <typename S>
void check_parity(const std::string& name, AttentionForm form, size_t prefill) {
    const Golden g = load_golden(name);
    const Model<S> m = load_model<S>(name);
    const Comparison c = compare(run(m, g.tokens, prefill, form), g, kTol);
    INFO("checkpoint " << name << ", " << (sizeof(S) == 4 ? "fp32" : "fp64") << ", form " << to_string(form)
                       << ", prefill " << prefill << " + " << (g.tokens.size() - prefill) << " decode steps");
    INFO(describe(c));
    CHECK(c.first.empty());
    CHECK(c.missing.empty());
    CHECK(c.compared == int(g.tensors.size()));
    CHECK(c.worst <= kTol);
}

}  // namespace

TEST_CASE("golden data: the checkpoints read as the configs they were made from, with every intermediate") {
    for (const std::string& name : kCheckpoints) {
        INFO("checkpoint " << name);
        const Config c = config_from_file(dir_of(name));
        // The YaRN block is read (settings that were missed would run plain RoPE without the mscale²
        // softmax factor, and the parity checks below would fail at layers.0.attn.q_pe).
        CHECK(c.has_yarn);
        CHECK(c.yarn.s == 40.0);
        CHECK(c.yarn.L0 == 4096);
        CHECK(c.yarn.mscale == 0.707);
        CHECK(c.yarn.mscale_all_dim == 0.707);
        CHECK(c.rope_theta == 10000.0);
        CHECK(c.d == 64);
        CHECK(c.L == 3);
        CHECK(c.first_k_dense_replace == 1);
        CHECK(!c.norm_topk_prob);
        if (name == "lite") {
            CHECK(c.d_q == 0);
            CHECK(c.topk_method == TopkMethod::greedy);
            CHECK(c.routed_scaling_factor == 1.0);
        } else {
            CHECK(c.d_q == 24);
            CHECK(c.topk_method == TopkMethod::group_limited_greedy);
            CHECK(c.G == 4);
            CHECK(c.G_k == 2);
            CHECK(c.routed_scaling_factor == 2.5);
            CHECK(c.d_v != c.d_h);
            CHECK(c.N_s == 2);
        }

        const Golden g = load_golden(name);
        CHECK(g.tokens.size() == 12);
        CHECK(g.meta.count("versions"));
        std::set<std::string> want{"embed", "norm", "logits"};
        for (int64_t l = 0; l < c.L; ++l) {
            for (const char* n : {"attn_norm", "attn.q_nope", "attn.q_pe", "attn.c_kv", "attn.k_pe", "attn.o",
                                  "attn.out", "attn_residual", "ffn_norm", "out"})
                want.insert(iname(l, n));
            if (c.has_q_lora()) want.insert(iname(l, "attn.c_q"));
            if (!c.is_moe_layer(l)) want.insert(iname(l, "mlp.out"));
            else
                for (const char* n : {"moe.router_logits", "moe.scores", "moe.topk_idx", "moe.topk_weight",
                                      "moe.shared", "moe.routed", "moe.out"})
                    want.insert(iname(l, n));
        }
        std::set<std::string> got;
        for (const auto& [n, m] : g.tensors) got.insert(n);
        CHECK(got == want);
        CHECK(g.integer == std::set<std::string>{"layers.1.moe.topk_idx", "layers.2.moe.topk_idx"});
        CHECK(g.tensors.at("layers.1.moe.topk_idx").cols() == c.K_r);
        CHECK(g.tensors.at("layers.0.attn.q_pe").cols() == c.n_h * c.d_R);
        CHECK(g.tensors.at("layers.0.attn.o").cols() == c.n_h * c.d_v);
        CHECK(g.tensors.at("logits").cols() == c.V);
    }
}

TEST_CASE("parity with PyTorch: fp32 oracle, one prefill, naive and absorbed, every intermediate within 1e-5") {
    for (const std::string& name : kCheckpoints)
        for (AttentionForm f : {AttentionForm::naive, AttentionForm::absorbed}) check_parity<float>(name, f, 12);
}

TEST_CASE("parity with PyTorch: fp64 oracle, one prefill, naive and absorbed, every intermediate within 1e-5") {
    for (const std::string& name : kCheckpoints)
        for (AttentionForm f : {AttentionForm::naive, AttentionForm::absorbed}) check_parity<double>(name, f, 12);
}

TEST_CASE("parity with PyTorch: prefill of 5 then one-token decode steps through the latent cache") {
    for (const std::string& name : kCheckpoints)
        for (AttentionForm f : {AttentionForm::naive, AttentionForm::absorbed}) {
            check_parity<float>(name, f, 5);
            check_parity<double>(name, f, 5);
        }
}

TEST_CASE("the comparison fails, naming the first diverging intermediate") {
    const Golden g = load_golden("v2");
    const Config cfg = config_from_file(dir_of("v2"));
    const auto first = [&](const Model<double>& m, AttentionForm f = AttentionForm::naive) {
        const Comparison c = compare(run(m, g.tokens, g.tokens.size(), f), g, kTol);
        INFO(describe(c));
        CHECK(!c.first.empty());
        return c.first;
    };

    SECTION("one weight perturbed by 1%: the latent norm of layer 1") {
        Weights<double> w = load_weights<double>(dir_of("v2"), cfg);
        w.mutable_mat("model.layers.1.self_attn.kv_a_layernorm.weight")(0, 3) *= 1.01;
        CHECK(first(Model<double>(cfg, w)) == "layers.1.attn.c_kv");
    }
    SECTION("the softmax scale without mscale(s, mscale_all_dim)² (both mscales 0: the RoPE amplitude stays 1)") {
        Config c = cfg;
        c.yarn.mscale = 0.0;
        c.yarn.mscale_all_dim = 0.0;
        CHECK(first(load_model<double>("v2", &c)) == "layers.0.attn.o");
        CHECK(first(load_model<double>("v2", &c), AttentionForm::absorbed) == "layers.0.attn.o");
    }
    SECTION("plain RoPE instead of YaRN") {
        Config c = cfg;
        c.has_yarn = false;
        CHECK(first(load_model<double>("v2", &c)) == "layers.0.attn.q_pe");
    }
    SECTION("renormalised gates instead of routed_scaling_factor") {
        Config c = cfg;
        c.norm_topk_prob = true;
        CHECK(first(load_model<double>("v2", &c)) == "layers.1.moe.topk_weight");
    }
    SECTION("greedy routing instead of group-limited: the chosen experts differ") {
        Config c = cfg;
        c.topk_method = TopkMethod::greedy;
        CHECK(first(load_model<double>("v2", &c)) == "layers.1.moe.topk_idx");
    }
    SECTION("golden q_pe in the evens-then-odds (rotate_half) order, or two experts swapped in rank") {
        const Model<double> m = load_model<double>("v2");
        const Trace t = run(m, g.tokens, g.tokens.size(), AttentionForm::naive);
        Golden bad = g;
        Mat<double>& q = bad.tensors.at("layers.0.attn.q_pe");
        const Mat<double> orig = q;
        for (int64_t h = 0; h < cfg.n_h; ++h)
            for (int64_t k = 0; k < cfg.d_R / 2; ++k) {
                q.col(h * cfg.d_R + k) = orig.col(h * cfg.d_R + 2 * k);
                q.col(h * cfg.d_R + cfg.d_R / 2 + k) = orig.col(h * cfg.d_R + 2 * k + 1);
            }
        CHECK(compare(t, bad, kTol).first == "layers.0.attn.q_pe");
        Golden swapped = g;
        Mat<double>& idx = swapped.tensors.at("layers.2.moe.topk_idx");
        std::swap(idx(7, 0), idx(7, 1));
        const Comparison c = compare(t, swapped, kTol);
        CHECK(c.first == "layers.2.moe.topk_idx");
        CHECK(c.why == "2 of 36 indices differ");
    }
}
