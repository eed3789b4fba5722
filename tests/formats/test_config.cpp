// Config presets against the released Hugging Face config.json files, the serialiser round trip,
// and the parser's errors: every rejected config names the file and the offending key.
#include "support.hpp"

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <functional>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

#include <unistd.h>

#include "dsv2/config_json.hpp"

#include <nlohmann/json.hpp>

namespace {

using dsv2::Config;
using json = nlohmann::json;

const std::string kConfigs = std::string(DSV2_SOURCE_DIR) + "/data/configs/";

using dsv2::test::read_existing;

// Every field of Config, exactly (doubles included: both sides come from the same literals).
// The Yarn fields are compared only when both configs use YaRN.
void require_same(const Config& a, const Config& b) {
    CHECK(a.V == b.V);
    CHECK(a.d == b.d);
    CHECK(a.L == b.L);
    CHECK(a.n_h == b.n_h);
    CHECK(a.d_h == b.d_h);
    CHECK(a.d_R == b.d_R);
    CHECK(a.d_v == b.d_v);
    CHECK(a.d_c == b.d_c);
    CHECK(a.d_q == b.d_q);
    CHECK(a.d_ff == b.d_ff);
    CHECK(a.d_e == b.d_e);
    CHECK(a.N_r == b.N_r);
    CHECK(a.N_s == b.N_s);
    CHECK(a.K_r == b.K_r);
    CHECK(a.G == b.G);
    CHECK(a.G_k == b.G_k);
    CHECK(a.topk_method == b.topk_method);
    CHECK(a.norm_topk_prob == b.norm_topk_prob);
    CHECK(a.routed_scaling_factor == b.routed_scaling_factor);
    CHECK(a.first_k_dense_replace == b.first_k_dense_replace);
    CHECK(a.moe_layer_freq == b.moe_layer_freq);
    CHECK(a.aux_loss_alpha == b.aux_loss_alpha);
    CHECK(a.rope_theta == b.rope_theta);
    CHECK(a.has_yarn == b.has_yarn);
    if (a.has_yarn && b.has_yarn) {  // without rope_scaling the Yarn fields mean nothing
        CHECK(a.yarn.s == b.yarn.s);
        CHECK(a.yarn.L0 == b.yarn.L0);
        CHECK(a.yarn.beta_fast == b.yarn.beta_fast);
        CHECK(a.yarn.beta_slow == b.yarn.beta_slow);
        CHECK(a.yarn.mscale == b.yarn.mscale);
        CHECK(a.yarn.mscale_all_dim == b.yarn.mscale_all_dim);
    }
    CHECK(a.max_position_embeddings == b.max_position_embeddings);
    CHECK(a.rms_norm_eps == b.rms_norm_eps);
    CHECK(a.bos_token_id == b.bos_token_id);
    CHECK(a.eos_token_id == b.eos_token_id);
}

// config_from_json_text(text, where) must throw std::invalid_argument whose message names
// `where` and every string in `parts`.
void require_rejected(const std::string& text, const std::string& where, const std::vector<std::string>& parts) {
    INFO("config text: " << text.substr(0, 300));
    try {
        (void)dsv2::config_from_json_text(text, where);
        FAIL("accepted a bad config; expected an error naming " << parts.front());
    } catch (const std::invalid_argument& e) {
        const std::string msg = e.what();
        INFO("message: " << msg);
        CHECK(msg.find(where) != std::string::npos);
        for (const std::string& p : parts) CHECK(msg.find(p) != std::string::npos);
    }
}

json lite_json() { return json::parse(read_existing(kConfigs + "deepseek-v2-lite/config.json")); }

}  // namespace

TEST_CASE("the released config.json files parse to exactly the presets", "[config]") {
    for (const std::string name : {"deepseek-v2", "deepseek-v2-lite", "tiny"}) {
        INFO("preset " << name);
        const Config parsed = dsv2::config_from_file(kConfigs + name + "/config.json");
        require_same(parsed, dsv2::config_preset(name));
    }
}

TEST_CASE("config_from_file accepts the checkpoint directory", "[config]") {
    for (const std::string name : {"deepseek-v2", "deepseek-v2-lite", "tiny"}) {
        INFO("preset " << name);
        require_same(dsv2::config_from_file(kConfigs + name), dsv2::config_preset(name));
        require_same(dsv2::config_from_file(kConfigs + name + "/"), dsv2::config_preset(name));
    }
}

TEST_CASE("config_from_file names a path that does not exist", "[config]") {
    const std::string path = kConfigs + "no-such-model";
    try {
        (void)dsv2::config_from_file(path);
        FAIL("no error for a missing path");
    } catch (const std::invalid_argument& e) {
        CHECK(std::string(e.what()).find(path) != std::string::npos);
    }
}

TEST_CASE("the preset values are the spec's section 4 table", "[config]") {
    const Config v2 = dsv2::config_preset("deepseek-v2");
    CHECK(v2.d == 5120);
    CHECK(v2.L == 60);
    CHECK(v2.n_h == 128);
    CHECK(v2.d_q == 1536);
    CHECK(v2.d_c == 512);
    CHECK(v2.d_qk() == 192);
    CHECK(v2.cache_width() == 576);
    CHECK(v2.d_ff == 12288);
    CHECK(v2.d_e == 1536);
    CHECK(v2.N_r == 160);
    CHECK(v2.N_s == 2);
    CHECK(v2.K_r == 6);
    CHECK(v2.G == 8);
    CHECK(v2.G_k == 3);
    CHECK(v2.topk_method == dsv2::TopkMethod::group_limited_greedy);
    CHECK(v2.routed_scaling_factor == 16.0);
    CHECK_FALSE(v2.norm_topk_prob);
    CHECK(v2.has_yarn);
    CHECK(v2.yarn.s == 40.0);
    CHECK(v2.yarn.mscale_all_dim == 0.707);
    CHECK_FALSE(v2.is_moe_layer(0));
    CHECK(v2.is_moe_layer(1));
    CHECK(v2.is_moe_layer(59));

    const Config lite = dsv2::config_preset("deepseek-v2-lite");
    CHECK(lite.d == 2048);
    CHECK(lite.L == 27);
    CHECK(lite.n_h == 16);
    CHECK(lite.d_q == 0);
    CHECK_FALSE(lite.has_q_lora());
    CHECK(lite.d_ff == 10944);
    CHECK(lite.d_e == 1408);
    CHECK(lite.N_r == 64);
    CHECK(lite.topk_method == dsv2::TopkMethod::greedy);
    CHECK(lite.routed_scaling_factor == 1.0);
    CHECK(lite.cache_width() == 576);
}

TEST_CASE("config_to_json_text round-trips every preset", "[config]") {
    for (const std::string& name : dsv2::preset_names()) {
        INFO("preset " << name);
        const Config c = dsv2::config_preset(name);
        const std::string text = dsv2::config_to_json_text(c);
        CHECK_NOTHROW(json::parse(text));
        require_same(dsv2::config_from_json_text(text, "roundtrip"), c);
    }
    // A config with the optional parts switched off round-trips too (null q_lora_rank,
    // null rope_scaling, no BOS/EOS, greedy routing).
    Config c = dsv2::test::tiny_lite();
    c.has_yarn = false;
    c.bos_token_id = -1;
    c.eos_token_id = -1;
    require_same(dsv2::config_from_json_text(dsv2::config_to_json_text(c), "roundtrip"), c);
}

TEST_CASE("the tiny data file is what the serialiser writes", "[config]") {
    const json file = json::parse(read_existing(kConfigs + "tiny/config.json"));
    const json ours = json::parse(dsv2::config_to_json_text(dsv2::config_preset("tiny")));
    CHECK(file == ours);
}

TEST_CASE("null q_lora_rank means no query compression and null rope_scaling plain RoPE", "[config]") {
    json j = lite_json();
    REQUIRE(j["q_lora_rank"].is_null());
    Config c = dsv2::config_from_json_text(j.dump(), "lite");
    CHECK(c.d_q == 0);
    CHECK_FALSE(c.has_q_lora());
    CHECK(c.has_yarn);

    j.erase("q_lora_rank");  // absent is the same as null
    c = dsv2::config_from_json_text(j.dump(), "lite");
    CHECK(c.d_q == 0);

    j["q_lora_rank"] = 1536;
    c = dsv2::config_from_json_text(j.dump(), "lite");
    CHECK(c.d_q == 1536);
    CHECK(c.has_q_lora());

    j["rope_scaling"] = nullptr;
    c = dsv2::config_from_json_text(j.dump(), "lite");
    CHECK_FALSE(c.has_yarn);
    j.erase("rope_scaling");
    c = dsv2::config_from_json_text(j.dump(), "lite");
    CHECK_FALSE(c.has_yarn);
}

TEST_CASE("config errors name the file and the key", "[config]") {
    const std::string where = "models/lite/config.json";
    struct Case {
        const char* what;
        std::function<void(json&)> mutate;
        std::vector<std::string> parts;  // strings the message must contain besides `where`
    };
    const std::vector<Case> cases = {
        {"missing hidden_size", [](json& j) { j.erase("hidden_size"); }, {"hidden_size", "missing"}},
        {"negative kv_lora_rank", [](json& j) { j["kv_lora_rank"] = -3; }, {"kv_lora_rank", "-3"}},
        {"odd qk_rope_head_dim", [](json& j) { j["qk_rope_head_dim"] = 63; }, {"qk_rope_head_dim", "63"}},
        {"zero q_lora_rank", [](json& j) { j["q_lora_rank"] = 0; }, {"q_lora_rank"}},
        {"negative q_lora_rank", [](json& j) { j["q_lora_rank"] = -1; }, {"q_lora_rank"}},
        {"K_r > N_r", [](json& j) { j["num_experts_per_tok"] = 100; }, {"num_experts_per_tok", "100"}},
        {"n_group does not divide N_r",
         [](json& j) {
             j["topk_method"] = "group_limited_greedy";
             j["n_group"] = 3;
         },
         {"n_group", "3"}},
        {"topk_group > n_group",
         [](json& j) {
             j["topk_method"] = "group_limited_greedy";
             j["n_group"] = 8;
             j["topk_group"] = 9;
         },
         {"topk_group", "9"}},
        {"K_r more than the kept groups hold",
         [](json& j) {
             j["topk_method"] = "group_limited_greedy";
             j["n_group"] = 16;
             j["topk_group"] = 1;  // 1 group of 4 experts < K_r = 6
         },
         {"num_experts_per_tok"}},
        {"misspelt topk_method", [](json& j) { j["topk_method"] = "gready"; }, {"topk_method", "gready"}},
        {"sigmoid scoring", [](json& j) { j["scoring_func"] = "sigmoid"; }, {"scoring_func", "sigmoid"}},
        {"gelu", [](json& j) { j["hidden_act"] = "gelu"; }, {"hidden_act", "gelu"}},
        {"linear rope scaling",
         [](json& j) { j["rope_scaling"] = {{"type", "linear"}, {"factor", 4.0}}; },
         {"rope_scaling", "linear"}},
        {"rope_scaling not an object", [](json& j) { j["rope_scaling"] = 40; }, {"rope_scaling"}},
        {"missing rope_scaling.factor", [](json& j) { j["rope_scaling"].erase("factor"); }, {"rope_scaling.factor"}},
        {"zero rope_scaling.factor", [](json& j) { j["rope_scaling"]["factor"] = 0; }, {"rope_scaling.factor"}},
        {"string vocab_size", [](json& j) { j["vocab_size"] = "big"; }, {"vocab_size", "big"}},
        {"fractional hidden_size", [](json& j) { j["hidden_size"] = 2.5; }, {"hidden_size", "2.5"}},
        {"boolean num_hidden_layers", [](json& j) { j["num_hidden_layers"] = true; }, {"num_hidden_layers"}},
        {"llama", [](json& j) { j["model_type"] = "llama"; }, {"model_type", "llama"}},
        {"huge hidden_size", [](json& j) { j["hidden_size"] = int64_t(1000000000000); }, {"hidden_size"}},
        {"huge hidden_size as a float", [](json& j) { j["hidden_size"] = 1e12; }, {"hidden_size"}},
        {"huge vocab_size", [](json& j) { j["vocab_size"] = int64_t(1) << 40; }, {"vocab_size"}},
        {"hidden_size beyond int64 (float)", [](json& j) { j["hidden_size"] = 1e300; }, {"hidden_size"}},
        {"hidden_size beyond int64 (unsigned)", [](json& j) { j["hidden_size"] = ~uint64_t(0); }, {"hidden_size"}},
        {"too many layers", [](json& j) { j["num_hidden_layers"] = 100000; }, {"num_hidden_layers"}},
        {"zero heads", [](json& j) { j["num_attention_heads"] = 0; }, {"num_attention_heads"}},
        {"missing max_position_embeddings", [](json& j) { j.erase("max_position_embeddings"); },
         {"max_position_embeddings"}},
        {"string norm_topk_prob", [](json& j) { j["norm_topk_prob"] = "no"; }, {"norm_topk_prob"}},
        {"negative rms_norm_eps", [](json& j) { j["rms_norm_eps"] = -1e-6; }, {"rms_norm_eps"}},
        {"attention bias", [](json& j) { j["attention_bias"] = true; }, {"attention_bias"}},
        {"tied embeddings", [](json& j) { j["tie_word_embeddings"] = true; }, {"tie_word_embeddings"}},
        {"MoE layers without an expert width", [](json& j) { j["moe_intermediate_size"] = nullptr; },
         {"moe_intermediate_size"}},
        {"dense layer 0 without intermediate_size", [](json& j) { j.erase("intermediate_size"); },
         {"intermediate_size"}},
    };
    for (const Case& c : cases) {
        INFO("mutation: " << c.what);
        json j = lite_json();
        c.mutate(j);
        require_rejected(j.dump(2), where, c.parts);
    }
}

TEST_CASE("config text that is not a JSON object is rejected naming the file", "[config]") {
    const std::string where = "broken/config.json";
    require_rejected("this is not JSON", where, {"JSON"});
    require_rejected("{\"hidden_size\": 2048,", where, {"JSON"});
    require_rejected("", where, {"JSON"});
    require_rejected("[1, 2, 3]", where, {"object"});
    require_rejected("\"deepseek_v2\"", where, {"object"});
    require_rejected("{}", where, {"missing"});
}

TEST_CASE("config_from_file reports errors with the file path", "[config]") {
    char tmpl[] = "/tmp/dsv2_test_config_XXXXXX";
    const char* dir = mkdtemp(tmpl);
    REQUIRE(dir != nullptr);
    const std::string path = std::string(dir) + "/config.json";
    json j = lite_json();
    j["kv_lora_rank"] = -3;
    {
        std::ofstream f(path);
        f << j.dump(2);
    }
    try {
        (void)dsv2::config_from_file(dir);
        FAIL("accepted a bad config file");
    } catch (const std::invalid_argument& e) {
        const std::string msg = e.what();
        CHECK(msg.find(path) != std::string::npos);
        CHECK(msg.find("kv_lora_rank") != std::string::npos);
    }
    std::remove(path.c_str());
    rmdir(dir);
}

TEST_CASE("validate names the inconsistent field of a hand-built config", "[config]") {
    Config c = dsv2::config_preset("tiny");
    c.K_r = c.N_r + 1;
    CHECK_THROWS_WITH(c.validate("mine"), Catch::Contains("mine") && Catch::Contains("num_experts_per_tok"));
    c = dsv2::config_preset("tiny");
    c.d_R = 7;
    CHECK_THROWS_WITH(c.validate("mine"), Catch::Contains("qk_rope_head_dim"));
    c = dsv2::config_preset("tiny");
    c.G = 3;
    CHECK_THROWS_WITH(c.validate("mine"), Catch::Contains("n_group"));
    c = dsv2::config_preset("tiny");
    c.has_yarn = true;
    c.yarn.beta_fast = 0.0;
    CHECK_THROWS_WITH(c.validate("mine"), Catch::Contains("rope_scaling.beta_fast"));
}

TEST_CASE("an unknown preset name lists the known presets", "[config]") {
    try {
        (void)dsv2::config_preset("deepseek-v3");
        FAIL("no error for an unknown preset");
    } catch (const std::invalid_argument& e) {
        const std::string msg = e.what();
        CHECK(msg.find("deepseek-v3") != std::string::npos);
        for (const std::string& name : dsv2::preset_names()) CHECK(msg.find(name) != std::string::npos);
    }
    const std::vector<std::string> names = dsv2::preset_names();
    CHECK(names == std::vector<std::string>{"deepseek-v2", "deepseek-v2-lite", "tiny"});
}

TEST_CASE("transformers 5's rope_parameters is read like rope_theta + rope_scaling", "[config]") {
    const dsv2::Config want = dsv2::config_preset("deepseek-v2-lite");
    json j = lite_json();
    json rp = j["rope_scaling"];
    rp.erase("type");
    rp["rope_type"] = "yarn";
    rp["rope_theta"] = j["rope_theta"];
    j["rope_parameters"] = rp;
    SECTION("alone") {
        j.erase("rope_scaling");
        j.erase("rope_theta");
        const dsv2::Config c = dsv2::config_from_json_text(j.dump(), "v5.json");
        CHECK(c.has_yarn);
        CHECK(c.yarn.s == want.yarn.s);
        CHECK(c.yarn.mscale_all_dim == want.yarn.mscale_all_dim);
        CHECK(c.rope_theta == want.rope_theta);
    }
    SECTION("beside the released keys, agreeing") {
        const dsv2::Config c = dsv2::config_from_json_text(j.dump(), "both.json");
        CHECK(c.yarn.L0 == want.yarn.L0);
    }
    SECTION("disagreeing with rope_scaling") {
        j["rope_parameters"]["factor"] = 4.0;
        CHECK_THROWS_WITH(dsv2::config_from_json_text(j.dump(), "x.json"), Catch::Contains("rope_parameters"));
    }
    SECTION("plain RoPE as rope_type default") {
        j.erase("rope_scaling");
        j["rope_parameters"] = {{"rope_type", "default"}, {"rope_theta", 50000.0}};
        j.erase("rope_theta");
        const dsv2::Config c = dsv2::config_from_json_text(j.dump(), "x.json");
        CHECK_FALSE(c.has_yarn);
        CHECK(c.rope_theta == 50000.0);
    }
    SECTION("an unsupported rope_type is named") {
        j.erase("rope_scaling");
        j["rope_parameters"]["rope_type"] = "longrope";
        CHECK_THROWS_WITH(dsv2::config_from_json_text(j.dump(), "x.json"), Catch::Contains("rope_parameters.type"));
    }
}
