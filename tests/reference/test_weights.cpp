// Tensor names and shapes, parameter counts against the paper and an independent closed form,
// the seeded random weights, and check_weights.
#include "support.hpp"

#include <cmath>
#include <cstring>
#include <map>
#include <set>
#include <stdexcept>
#include <string>
#include <vector>

#include "dsv2/model.hpp"
#include "dsv2/weights.hpp"

namespace {

using dsv2::Config;

// ---------------------------------------------------------------------------------------------
// Closed forms written from the shapes of spec §2–§3 (not from tensor_specs).

// Linear weights of one MLA block: q path, kv_a (W^DKV; W^KR), kv_b (W^UK; W^UV), o_proj.
int64_t attention_linear_params(const Config& c) {
    const int64_t q = c.d_q > 0 ? c.d * c.d_q + c.d_q * c.n_h * (c.d_h + c.d_R)  // q_a_proj, q_b_proj
                                : c.d * c.n_h * (c.d_h + c.d_R);                 // q_proj
    const int64_t kv_a = c.d * (c.d_c + c.d_R);
    const int64_t kv_b = c.d_c * c.n_h * (c.d_h + c.d_v);
    const int64_t o = c.n_h * c.d_v * c.d;
    return q + kv_a + kv_b + o;
}

// Norm weights inside one MLA block: q_a_layernorm (with query compression) and kv_a_layernorm.
int64_t attention_norm_params(const Config& c) { return (c.d_q > 0 ? c.d_q : 0) + c.d_c; }

int64_t swiglu_params(const Config& c, int64_t width) { return 3 * c.d * width; }

int64_t moe_layer_params(const Config& c) {
    return c.N_r * swiglu_params(c, c.d_e)      // routed experts
           + swiglu_params(c, c.N_s * c.d_e)   // shared experts, one MLP of width N_s d_e
           + c.N_r * c.d;                      // router centroids
}

int64_t moe_layers(const Config& c) {
    int64_t n = 0;
    for (int64_t l = 0; l < c.L; ++l) n += (l >= c.first_k_dense_replace && l % c.moe_layer_freq == 0) ? 1 : 0;
    return n;
}

int64_t closed_form_total(const Config& c) {
    const int64_t per_layer_common = 2 * c.d                      // input / post-attention norms
                                     + attention_linear_params(c) + attention_norm_params(c);
    const int64_t n_moe = moe_layers(c);
    return c.V * c.d                                   // embed_tokens
           + c.L * per_layer_common                    //
           + (c.L - n_moe) * swiglu_params(c, c.d_ff)  // dense MLP layers
           + n_moe * moe_layer_params(c)               //
           + c.d                                       // final norm
           + c.V * c.d;                                // lm_head (untied)
}

int64_t closed_form_activated(const Config& c) {
    return closed_form_total(c) - c.V * c.d - moe_layers(c) * (c.N_r - c.K_r) * swiglu_params(c, c.d_e);
}

std::map<std::string, std::vector<int64_t>> spec_map(const Config& c) {
    std::map<std::string, std::vector<int64_t>> m;
    for (const dsv2::TensorSpec& s : dsv2::tensor_specs(c)) m[s.name] = s.shape;
    return m;
}

using Shape = std::vector<int64_t>;

// Weights equal bit for bit (the tensors compared are float or double).
template <typename S>
bool bit_equal(const dsv2::Mat<S>& a, const dsv2::Mat<S>& b) {
    return a.rows() == b.rows() && a.cols() == b.cols() &&
           std::memcmp(a.data(), b.data(), size_t(a.size()) * sizeof(S)) == 0;
}

}  // namespace

TEST_CASE("DeepSeek-V2 parameter counts match the paper and the spec", "[weights][params]") {
    const Config c = dsv2::config_preset("deepseek-v2");
    const dsv2::ParamCount n = dsv2::count_params(c);
    CHECK(std::abs(double(n.total) / 235.74e9 - 1.0) < 0.005);
    // Paper: 21B activated; ours excludes the input embedding (a lookup): 20.85B.
    CHECK(std::abs(double(n.activated) / 20.85e9 - 1.0) < 0.01);
    CHECK(std::abs(double(n.activated + n.embedding) / 21e9 - 1.0) < 0.03);
    CHECK(double(n.total) / 1e9 == Approx(236.0).epsilon(0.005));
}

TEST_CASE("DeepSeek-V2-Lite parameter counts match the paper and the spec", "[weights][params]") {
    const Config c = dsv2::config_preset("deepseek-v2-lite");
    const dsv2::ParamCount n = dsv2::count_params(c);
    CHECK(std::abs(double(n.total) / 15.71e9 - 1.0) < 0.005);
    CHECK(std::abs(double(n.activated) / 2.45e9 - 1.0) < 0.02);
    CHECK(std::abs(double(n.activated) / 2.4e9 - 1.0) < 0.05);  // the paper's 2.4B
}

TEST_CASE("count_params equals an independent closed form exactly", "[weights][params]") {
    for (const std::string& name : dsv2::preset_names()) {
        INFO("preset " << name);
        const Config c = dsv2::config_preset(name);
        const dsv2::ParamCount n = dsv2::count_params(c);
        CHECK(n.total == closed_form_total(c));
        CHECK(n.activated == closed_form_activated(c));
        // The breakdown sums to the total, and each part has its closed form.
        CHECK(n.embedding + n.attention + n.dense_mlp + n.moe_routed + n.moe_shared + n.router + n.norms + n.lm_head ==
              n.total);
        CHECK(n.embedding == c.V * c.d);
        CHECK(n.lm_head == c.V * c.d);
        CHECK(n.attention == c.L * attention_linear_params(c));
        CHECK(n.norms == c.L * (2 * c.d + attention_norm_params(c)) + c.d);
        CHECK(n.dense_mlp == (c.L - moe_layers(c)) * swiglu_params(c, c.d_ff));
        CHECK(n.moe_routed == moe_layers(c) * c.N_r * swiglu_params(c, c.d_e));
        CHECK(n.moe_shared == moe_layers(c) * swiglu_params(c, c.N_s * c.d_e));
        CHECK(n.router == moe_layers(c) * c.N_r * c.d);
        CHECK(dsv2::weight_bytes(c, 2) == 2 * n.total);
    }
    // The same with query compression off, greedy routing and two dense layers.
    Config c = dsv2::test::tiny_lite();
    c.first_k_dense_replace = 2;
    c.L = 4;
    c.validate();
    CHECK(dsv2::count_params(c).total == closed_form_total(c));
    CHECK(dsv2::count_params(c).activated == closed_form_activated(c));
}

TEST_CASE("closed-form totals reproduce the spec's numbers", "[weights][params]") {
    const Config v2 = dsv2::config_preset("deepseek-v2");
    const Config lite = dsv2::config_preset("deepseek-v2-lite");
    // Spec §4: attention 149.2M (V2) and 13.8M (Lite) per layer; MoE 3.823B and 0.571B per layer.
    CHECK(attention_linear_params(v2) == 149225472);
    CHECK(std::round(double(attention_linear_params(v2)) / 1e5) / 10 == 149.2);
    CHECK(attention_linear_params(lite) == 13762560);
    CHECK(std::round(double(attention_linear_params(lite)) / 1e5) / 10 == 13.8);
    CHECK(std::round(double(moe_layer_params(v2)) / 1e6) / 1e3 == 3.823);
    CHECK(std::round(double(moe_layer_params(lite)) / 1e6) / 1e3 == 0.571);
    CHECK(std::round(double(closed_form_total(v2)) / 1e7) / 1e2 == 235.74);
    CHECK(std::round(double(closed_form_total(lite)) / 1e7) / 1e2 == 15.71);
    CHECK(std::round(double(closed_form_activated(v2)) / 1e7) / 1e2 == 20.85);
    CHECK(std::round(double(closed_form_activated(lite)) / 1e7) / 1e2 == 2.45);
    // Per-layer attention through count_params.
    CHECK(dsv2::count_params(v2).attention / v2.L == 149225472);
    CHECK(dsv2::count_params(lite).attention / lite.L == 13762560);
}

TEST_CASE("DeepSeek-V2-Lite tensors have the Hugging Face names and shapes", "[weights][specs]") {
    const Config c = dsv2::config_preset("deepseek-v2-lite");
    const std::vector<dsv2::TensorSpec> specs = dsv2::tensor_specs(c);
    const auto m = spec_map(c);
    CHECK(m.size() == specs.size());  // names are unique
    // 3 global tensors; 7 per layer; dense layer 0: 3; each MoE layer: router + 64·3 + 3.
    CHECK(specs.size() == size_t(3 + 27 * 7 + 3 + 26 * (1 + 64 * 3 + 3)));

    CHECK(m.at("model.embed_tokens.weight") == Shape{102400, 2048});
    CHECK(m.at("lm_head.weight") == Shape{102400, 2048});
    CHECK(m.at("model.norm.weight") == Shape{2048});
    CHECK(m.at("model.layers.0.input_layernorm.weight") == Shape{2048});
    CHECK(m.at("model.layers.0.post_attention_layernorm.weight") == Shape{2048});
    CHECK(m.at("model.layers.0.self_attn.q_proj.weight") == Shape{3072, 2048});
    CHECK(m.at("model.layers.0.self_attn.kv_a_proj_with_mqa.weight") == Shape{576, 2048});
    CHECK(m.at("model.layers.0.self_attn.kv_a_layernorm.weight") == Shape{512});
    CHECK(m.at("model.layers.0.self_attn.kv_b_proj.weight") == Shape{4096, 512});
    CHECK(m.at("model.layers.0.self_attn.o_proj.weight") == Shape{2048, 2048});
    CHECK(m.at("model.layers.0.mlp.gate_proj.weight") == Shape{10944, 2048});
    CHECK(m.at("model.layers.0.mlp.up_proj.weight") == Shape{10944, 2048});
    CHECK(m.at("model.layers.0.mlp.down_proj.weight") == Shape{2048, 10944});
    CHECK(m.at("model.layers.1.mlp.gate.weight") == Shape{64, 2048});
    CHECK(m.at("model.layers.1.mlp.experts.0.gate_proj.weight") == Shape{1408, 2048});
    CHECK(m.at("model.layers.1.mlp.experts.63.down_proj.weight") == Shape{2048, 1408});
    CHECK(m.at("model.layers.26.mlp.experts.63.up_proj.weight") == Shape{1408, 2048});
    CHECK(m.at("model.layers.1.mlp.shared_experts.gate_proj.weight") == Shape{2816, 2048});
    CHECK(m.at("model.layers.1.mlp.shared_experts.down_proj.weight") == Shape{2048, 2816});

    CHECK(m.count("model.layers.1.mlp.experts.64.down_proj.weight") == 0);
    CHECK(m.count("model.layers.0.mlp.gate.weight") == 0);        // layer 0 is dense
    CHECK(m.count("model.layers.1.mlp.gate_proj.weight") == 0);   // layer 1 is MoE
    CHECK(m.count("model.layers.27.input_layernorm.weight") == 0);
    for (const auto& [name, shape] : m) {
        INFO(name);
        CHECK(name.find("q_a_proj") == std::string::npos);  // no query compression in Lite
        CHECK(name.find("q_a_layernorm") == std::string::npos);
        CHECK(name.find("q_b_proj") == std::string::npos);
        CHECK((name.rfind("model.", 0) == 0 || name == "lm_head.weight"));
        CHECK(name.size() > 7);
        CHECK(name.substr(name.size() - 7) == ".weight");
    }
    // numel of every spec is the product of its shape.
    for (const dsv2::TensorSpec& s : specs) {
        int64_t n = 1;
        for (int64_t k : s.shape) n *= k;
        CHECK(s.numel() == n);
    }
}

TEST_CASE("DeepSeek-V2 tensors have the Hugging Face names and shapes", "[weights][specs]") {
    const Config c = dsv2::config_preset("deepseek-v2");
    const auto m = spec_map(c);
    const std::string p = dsv2::layer_prefix(5);
    CHECK(p == "model.layers.5.");
    CHECK(m.at(p + "self_attn.q_a_proj.weight") == Shape{1536, 5120});
    CHECK(m.at(p + "self_attn.q_a_layernorm.weight") == Shape{1536});
    CHECK(m.at(p + "self_attn.q_b_proj.weight") == Shape{24576, 1536});
    CHECK(m.at(p + "self_attn.kv_a_proj_with_mqa.weight") == Shape{576, 5120});
    CHECK(m.at(p + "self_attn.kv_a_layernorm.weight") == Shape{512});
    CHECK(m.at(p + "self_attn.kv_b_proj.weight") == Shape{32768, 512});
    CHECK(m.at(p + "self_attn.o_proj.weight") == Shape{5120, 16384});
    CHECK(m.count(p + "self_attn.q_proj.weight") == 0);
    CHECK(m.at(p + "mlp.gate.weight") == Shape{160, 5120});
    CHECK(m.at(p + "mlp.experts.159.gate_proj.weight") == Shape{1536, 5120});
    CHECK(m.at(p + "mlp.shared_experts.up_proj.weight") == Shape{3072, 5120});
    CHECK(m.at("model.layers.0.mlp.gate_proj.weight") == Shape{12288, 5120});
    CHECK(m.at("model.layers.59.mlp.experts.0.down_proj.weight") == Shape{5120, 1536});
    CHECK(m.count("model.layers.60.input_layernorm.weight") == 0);
    CHECK(m.size() == size_t(3 + 60 * 9 + 3 + 59 * (1 + 160 * 3 + 3)));
}

TEST_CASE("tensor_specs follows is_moe_layer and n_shared_experts", "[weights][specs]") {
    Config c = dsv2::config_preset("tiny");
    c.L = 5;
    c.first_k_dense_replace = 1;
    c.moe_layer_freq = 2;  // MoE on layers 2 and 4
    c.N_s = 0;
    c.validate();
    const auto m = spec_map(c);
    for (int64_t l = 0; l < c.L; ++l) {
        INFO("layer " << l);
        const std::string p = dsv2::layer_prefix(l);
        const bool moe = l >= 1 && l % 2 == 0;
        CHECK(c.is_moe_layer(l) == moe);
        CHECK(m.count(p + "mlp.gate.weight") == (moe ? 1u : 0u));
        CHECK(m.count(p + "mlp.gate_proj.weight") == (moe ? 0u : 1u));
        CHECK(m.count(p + "mlp.shared_experts.gate_proj.weight") == 0);
    }
    CHECK(dsv2::count_params(c).total == closed_form_total(c));
}

TEST_CASE("random_weights is deterministic in the seed", "[weights][random]") {
    const Config c = dsv2::config_preset("tiny");
    const auto a = dsv2::random_weights<float>(c, 1);
    const auto b = dsv2::random_weights<float>(c, 1);
    const auto other = dsv2::random_weights<float>(c, 2);
    REQUIRE(a.all().size() == dsv2::tensor_specs(c).size());
    for (const auto& [name, m] : a.all()) {
        INFO(name);
        CHECK(bit_equal(m, b.mat(name)));
        CHECK_FALSE(bit_equal(m, other.mat(name)));
    }
    // Distinct tensors of equal shape get distinct values (the stream depends on the name).
    CHECK_FALSE(bit_equal(a.mat("model.layers.1.mlp.experts.0.gate_proj.weight"),
                          a.mat("model.layers.1.mlp.experts.1.gate_proj.weight")));
    CHECK_FALSE(bit_equal(a.mat("model.layers.1.mlp.experts.0.gate_proj.weight"),
                          a.mat("model.layers.2.mlp.experts.0.gate_proj.weight")));
}

TEST_CASE("random_weights in fp32 and fp64 are bit-identical after casting to float", "[weights][random]") {
    const Config c = dsv2::config_preset("tiny");
    const auto f = dsv2::random_weights<float>(c, 7);
    const auto d = dsv2::random_weights<double>(c, 7);
    REQUIRE(f.all().size() == d.all().size());
    for (const auto& [name, mf] : f.all()) {
        INFO(name);
        const dsv2::Mat<double>& md = d.mat(name);
        const dsv2::Mat<float> cast = md.cast<float>();
        CHECK(bit_equal(mf, cast));
        // The doubles are floats: the cast back is exact.
        CHECK(bit_equal(md, dsv2::Mat<double>(cast.cast<double>())));
    }
}

TEST_CASE("random_weights: a tensor's values do not depend on the other tensors", "[weights][random]") {
    const Config c3 = dsv2::config_preset("tiny");
    Config c2 = c3;
    c2.L = 2;
    c2.validate();
    Config wide = c3;  // more experts changes the MoE layers' tensors, not the others
    wide.N_r = 16;
    wide.validate();
    const auto w3 = dsv2::random_weights<float>(c3, 5);
    const auto w2 = dsv2::random_weights<float>(c2, 5);
    const auto ww = dsv2::random_weights<float>(wide, 5);
    CHECK(w2.all().size() < w3.all().size());
    for (const auto& [name, m] : w2.all()) {
        INFO(name);
        REQUIRE(w3.has(name));
        CHECK(bit_equal(m, w3.mat(name)));
    }
    for (const auto& [name, m] : w3.all()) {
        INFO(name);
        REQUIRE(ww.has(name));
        if (name.find(".mlp.gate.weight") == std::string::npos) CHECK(bit_equal(m, ww.mat(name)));
    }
    CHECK(ww.has("model.layers.1.mlp.experts.15.up_proj.weight"));
}

TEST_CASE("random_weights have the documented distributions", "[weights][random]") {
    Config c = dsv2::config_preset("tiny");
    c.d = 256;  // more samples per tensor than tiny's d = 64
    c.validate();
    const auto w = dsv2::random_weights<double>(c, 11);
    double norm_sum = 0, norm_sq = 0;
    int64_t norm_n = 0;
    double z_sum = 0, z_sq = 0;
    int64_t z_n = 0;
    for (const dsv2::TensorSpec& s : dsv2::tensor_specs(c)) {
        INFO(s.name);
        const dsv2::Mat<double>& m = w.mat(s.name);
        if (s.shape.size() == 1) {
            REQUIRE(m.rows() == 1);
            REQUIRE(m.cols() == s.shape[0]);
            norm_sum += m.sum();
            norm_sq += m.array().square().sum();
            norm_n += m.size();
            const double mean = m.mean();
            CHECK(std::abs(mean - 1.0) < 5 * 0.1 / std::sqrt(double(m.size())) + 1e-12);
            continue;
        }
        REQUIRE(m.rows() == s.shape[0]);
        REQUIRE(m.cols() == s.shape[1]);
        const double n = double(m.size());
        const double mean = m.mean();
        const double sd = std::sqrt((m.array() - mean).square().sum() / (n - 1));
        const double want = s.name == "model.embed_tokens.weight" ? 1.0 : 1.0 / std::sqrt(double(s.shape[1]));
        // Sample std of n normals: relative standard error ≈ 1/sqrt(2n); allow 6 of them.
        CHECK(std::abs(sd / want - 1.0) < 6.0 / std::sqrt(2.0 * n));
        CHECK(std::abs(mean) < 6.0 * want / std::sqrt(n));
        if (s.name != "model.embed_tokens.weight") {
            z_sum += m.sum() / want;
            z_sq += m.array().square().sum() / (want * want);
            z_n += m.size();
        }
    }
    const double norm_mean = norm_sum / double(norm_n);
    const double norm_sd = std::sqrt(norm_sq / double(norm_n) - norm_mean * norm_mean);
    CHECK(norm_mean == Approx(1.0).margin(0.01));
    CHECK(norm_sd == Approx(0.1).epsilon(0.05));
    const double z_mean = z_sum / double(z_n);
    const double z_sd = std::sqrt(z_sq / double(z_n) - z_mean * z_mean);
    CHECK(z_mean == Approx(0.0).margin(0.01));
    CHECK(z_sd == Approx(1.0).epsilon(0.01));
}

TEST_CASE("check_weights names a missing tensor", "[weights][check]") {
    const Config c = dsv2::config_preset("tiny");
    const auto full = dsv2::random_weights<float>(c, 3);
    CHECK_NOTHROW(dsv2::check_weights(c, full));
    for (const std::string missing : {"model.layers.2.mlp.experts.7.down_proj.weight",
                                      "model.layers.1.self_attn.q_a_layernorm.weight", "lm_head.weight"}) {
        INFO(missing);
        dsv2::Weights<float> w;
        for (const auto& [name, m] : full.all())
            if (name != missing) w.set(name, m);
        CHECK_THROWS_AS(dsv2::check_weights(c, w, "ckpt"), std::invalid_argument);
        CHECK_THROWS_WITH(dsv2::check_weights(c, w, "ckpt"),
                          Catch::Contains("ckpt") && Catch::Contains(missing) && Catch::Contains("missing"));
        CHECK_THROWS_WITH(dsv2::Model<float>(c, w), Catch::Contains(missing));
    }
}

TEST_CASE("check_weights names a mis-shaped tensor", "[weights][check]") {
    const Config c = dsv2::config_preset("tiny");
    const auto full = dsv2::random_weights<double>(c, 3);
    struct Case {
        std::string name;
        int64_t rows, cols;
    };
    const std::vector<Case> cases = {
        {"model.layers.0.self_attn.kv_b_proj.weight", c.d_c, c.n_h * (c.d_h + c.d_v)},  // transposed
        {"model.layers.1.mlp.gate.weight", c.N_r + 1, c.d},
        {"model.norm.weight", c.d, 1},                   // a column instead of a [1, n] row
        {"model.layers.2.input_layernorm.weight", 1, c.d - 1},
    };
    for (const Case& k : cases) {
        INFO(k.name);
        dsv2::Weights<double> w = full;
        w.set(k.name, dsv2::Mat<double>::Zero(k.rows, k.cols));
        CHECK_THROWS_AS(dsv2::check_weights(c, w, "ckpt"), std::invalid_argument);
        CHECK_THROWS_WITH(dsv2::check_weights(c, w, "ckpt"), Catch::Contains("ckpt") && Catch::Contains(k.name));
    }
}

TEST_CASE("Weights::mat names a tensor it does not have", "[weights]") {
    dsv2::Weights<float> w;
    CHECK_FALSE(w.has("model.norm.weight"));
    CHECK_THROWS_AS(w.mat("model.norm.weight"), std::out_of_range);
    CHECK_THROWS_WITH(w.mat("model.norm.weight"), Catch::Contains("model.norm.weight"));
    w.set("model.norm.weight", dsv2::Mat<float>::Ones(1, 4));
    CHECK(w.vec("model.norm.weight").size() == 4);
    w.mutable_mat("model.norm.weight")(0, 2) = 3.0f;
    CHECK(w.vec("model.norm.weight")(2) == 3.0f);
}
