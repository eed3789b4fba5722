// The Hugging Face config.json reader and writer (formats/include/dsv2/config_json.hpp).
#include "dsv2/config_json.hpp"
#include "dsv2/io.hpp"

#include <algorithm>
#include <climits>
#include <cmath>
#include <fstream>
#include <sstream>
#include <stdexcept>
#include <sys/stat.h>

#include <nlohmann/json.hpp>

namespace dsv2 {

namespace {

using json = nlohmann::json;

[[noreturn]] void fail(const std::string& where, const std::string& key, const std::string& what) {
    throw std::invalid_argument(where + ": \"" + key + "\" " + what);
}

struct Reader {
    const json& j;
    std::string where;
    std::string prefix;  // "rope_scaling." inside the nested object

    const json* find(const char* key) const {
        auto it = j.find(key);
        return it == j.end() ? nullptr : &*it;
    }
    std::string name(const char* key) const { return prefix + key; }

    int64_t integer(const char* key, bool required, int64_t fallback) const {
        const json* v = find(key);
        if (!v) {
            if (required) fail(where, name(key), "is missing");
            return fallback;
        }
        if (v->is_number_unsigned() && v->get<uint64_t>() > uint64_t(INT64_MAX))
            fail(where, name(key), "is too large, got " + v->dump());
        if (v->is_number_integer()) return v->get<int64_t>();
        if (v->is_number_float()) {
            const double x = v->get<double>();
            if (std::isfinite(x) && std::abs(x) < 0x1p62 && x == std::trunc(x)) return int64_t(x);
        }
        fail(where, name(key), "must be an integer, got " + v->dump());
    }
    // Keys whose value may be null (HF uses null for "absent"): null and missing give `fallback`.
    int64_t nullable_integer(const char* key, int64_t fallback) const {
        const json* v = find(key);
        if (!v || v->is_null()) return fallback;
        return integer(key, true, fallback);
    }
    double number(const char* key, bool required, double fallback) const {
        const json* v = find(key);
        if (!v) {
            if (required) fail(where, name(key), "is missing");
            return fallback;
        }
        if (!v->is_number()) fail(where, name(key), "must be a number, got " + v->dump());
        return v->get<double>();
    }
    bool boolean(const char* key, bool fallback) const {
        const json* v = find(key);
        if (!v) return fallback;
        if (!v->is_boolean()) fail(where, name(key), "must be true or false, got " + v->dump());
        return v->get<bool>();
    }
    std::string string(const char* key, const std::string& fallback) const {
        const json* v = find(key);
        if (!v) return fallback;
        if (!v->is_string()) fail(where, name(key), "must be a string, got " + v->dump());
        return v->get<std::string>();
    }
};

}  // namespace

Config config_from_json_text(const std::string& text, const std::string& where) {
    json j;
    try {
        j = json::parse(text);
    } catch (const json::exception& e) {
        throw std::invalid_argument(where + ": not valid JSON (" + e.what() + ")");
    }
    if (!j.is_object()) throw std::invalid_argument(where + ": the top level must be a JSON object");
    Reader r{j, where, ""};

    if (j.contains("model_type")) {
        std::string mt = r.string("model_type", "");
        if (mt != "deepseek_v2")
            fail(where, "model_type", "is \"" + mt + "\"; dsv2 reads DeepSeek-V2 configs (\"deepseek_v2\")");
    }
    Config c;
    c.V = r.integer("vocab_size", true, 0);
    c.d = r.integer("hidden_size", true, 0);
    c.L = r.integer("num_hidden_layers", true, 0);
    c.n_h = r.integer("num_attention_heads", true, 0);
    c.d_h = r.integer("qk_nope_head_dim", true, 0);
    c.d_R = r.integer("qk_rope_head_dim", true, 0);
    c.d_v = r.integer("v_head_dim", true, 0);
    c.d_c = r.integer("kv_lora_rank", true, 0);
    c.d_q = r.nullable_integer("q_lora_rank", 0);
    if (j.contains("q_lora_rank") && !j["q_lora_rank"].is_null() && c.d_q <= 0)
        fail(where, "q_lora_rank", "must be null or a positive integer, got " + j["q_lora_rank"].dump());
    c.d_ff = r.integer("intermediate_size", false, 0);
    c.d_e = r.nullable_integer("moe_intermediate_size", 0);
    c.N_r = r.nullable_integer("n_routed_experts", 0);
    c.N_s = r.nullable_integer("n_shared_experts", 0);
    c.K_r = r.nullable_integer("num_experts_per_tok", 0);
    c.G = r.nullable_integer("n_group", 1);
    c.G_k = r.nullable_integer("topk_group", 1);
    c.first_k_dense_replace = r.integer("first_k_dense_replace", false, 0);
    c.moe_layer_freq = r.integer("moe_layer_freq", false, 1);
    c.norm_topk_prob = r.boolean("norm_topk_prob", false);
    c.routed_scaling_factor = r.number("routed_scaling_factor", false, 1.0);
    c.aux_loss_alpha = r.number("aux_loss_alpha", false, 0.0);
    if (c.N_r > 0) {
        std::string m = r.string("topk_method", "greedy");
        if (m == "greedy") c.topk_method = TopkMethod::greedy;
        else if (m == "group_limited_greedy") c.topk_method = TopkMethod::group_limited_greedy;
        else fail(where, "topk_method", "is \"" + m + "\"; DeepSeek-V2 uses \"greedy\" or \"group_limited_greedy\"");
        std::string sf = r.string("scoring_func", "softmax");
        if (sf != "softmax") fail(where, "scoring_func", "is \"" + sf + "\"; DeepSeek-V2 routes with \"softmax\"");
    }
    std::string act = r.string("hidden_act", "silu");
    if (act != "silu") fail(where, "hidden_act", "is \"" + act + "\"; DeepSeek-V2 uses \"silu\"");
    if (r.boolean("attention_bias", false)) fail(where, "attention_bias", "is true; DeepSeek-V2 projections have no bias");
    if (r.boolean("tie_word_embeddings", false)) fail(where, "tie_word_embeddings", "is true; DeepSeek-V2 keeps lm_head separate");

    c.rms_norm_eps = r.number("rms_norm_eps", false, 1e-6);
    c.max_position_embeddings = r.integer("max_position_embeddings", true, 0);
    c.bos_token_id = r.nullable_integer("bos_token_id", -1);
    c.eos_token_id = r.nullable_integer("eos_token_id", -1);

    // RoPE settings: the released configs carry "rope_theta" and "rope_scaling"; transformers 5
    // writes them as one "rope_parameters" object instead (rope_type "default" or "yarn", with
    // rope_theta inside). Both are read; when both are present they must agree.
    auto read_rope = [&](const json& obj, const std::string& key, double* theta, bool* yarn, Yarn* y) {
        if (!obj.is_object()) fail(where, key, "must be null or an object, got " + obj.dump());
        Reader q{obj, where, key + "."};
        std::string type = q.string("type", q.string("rope_type", ""));
        if (type.empty() && key == "rope_parameters") type = "default";
        if (type == "default") {
            *yarn = false;
        } else if (type == "yarn") {
            *yarn = true;
            // Defaults as in DeepSeek's DeepseekV2YarnRotaryEmbedding.
            y->s = q.number("factor", true, 1.0);
            y->L0 = q.integer("original_max_position_embeddings", false, 4096);
            y->beta_fast = q.number("beta_fast", false, 32.0);
            y->beta_slow = q.number("beta_slow", false, 1.0);
            y->mscale = q.number("mscale", false, 1.0);
            y->mscale_all_dim = q.number("mscale_all_dim", false, 0.0);
        } else {
            fail(where, key + ".type", "is \"" + type + "\"; dsv2 supports \"yarn\" or no scaling");
        }
        if (theta) *theta = q.number("rope_theta", false, *theta);
    };
    c.rope_theta = r.number("rope_theta", false, 10000.0);
    const json* rs = r.find("rope_scaling");
    if (rs && !rs->is_null()) {
        read_rope(*rs, "rope_scaling", nullptr, &c.has_yarn, &c.yarn);
        if (!c.has_yarn) fail(where, "rope_scaling.type", "is \"default\"; use null for no scaling");
    }
    const json* rp = r.find("rope_parameters");
    if (rp && !rp->is_null()) {
        double theta = c.rope_theta;
        bool yarn = false;
        Yarn y;
        read_rope(*rp, "rope_parameters", &theta, &yarn, &y);
        const bool has_scaling = rs && !rs->is_null();
        if (has_scaling && (yarn != c.has_yarn || y.s != c.yarn.s || y.L0 != c.yarn.L0 || y.beta_fast != c.yarn.beta_fast ||
                            y.beta_slow != c.yarn.beta_slow || y.mscale != c.yarn.mscale ||
                            y.mscale_all_dim != c.yarn.mscale_all_dim))
            fail(where, "rope_parameters", "disagrees with \"rope_scaling\"");
        if (r.find("rope_theta") && theta != c.rope_theta) fail(where, "rope_parameters.rope_theta", "disagrees with \"rope_theta\"");
        c.rope_theta = theta;
        c.has_yarn = yarn;
        c.yarn = yarn ? y : c.yarn;
    }
    c.validate(where);
    return c;
}

Config config_from_file(const std::string& path_in) {
    std::string path;
    const std::string text = read_text_file(path_in, "config.json", &path);
    return config_from_json_text(text, path);
}

std::string config_to_json_text(const Config& c) {
    json j;
    j["model_type"] = "deepseek_v2";
    j["architectures"] = {"DeepseekV2ForCausalLM"};
    j["vocab_size"] = c.V;
    j["hidden_size"] = c.d;
    j["num_hidden_layers"] = c.L;
    j["num_attention_heads"] = c.n_h;
    j["num_key_value_heads"] = c.n_h;
    j["qk_nope_head_dim"] = c.d_h;
    j["qk_rope_head_dim"] = c.d_R;
    j["v_head_dim"] = c.d_v;
    j["kv_lora_rank"] = c.d_c;
    j["q_lora_rank"] = c.d_q > 0 ? json(c.d_q) : json(nullptr);
    j["intermediate_size"] = c.d_ff;
    j["moe_intermediate_size"] = c.d_e;
    j["n_routed_experts"] = c.N_r > 0 ? json(c.N_r) : json(nullptr);
    j["n_shared_experts"] = c.N_s > 0 ? json(c.N_s) : json(nullptr);
    j["num_experts_per_tok"] = c.N_r > 0 ? json(c.K_r) : json(nullptr);
    j["n_group"] = c.G;
    j["topk_group"] = c.G_k;
    j["topk_method"] = to_string(c.topk_method);
    j["scoring_func"] = "softmax";
    j["norm_topk_prob"] = c.norm_topk_prob;
    j["routed_scaling_factor"] = c.routed_scaling_factor;
    j["first_k_dense_replace"] = c.first_k_dense_replace;
    j["moe_layer_freq"] = c.moe_layer_freq;
    j["aux_loss_alpha"] = c.aux_loss_alpha;
    j["seq_aux"] = true;
    j["hidden_act"] = "silu";
    j["attention_bias"] = false;
    j["tie_word_embeddings"] = false;
    j["rope_theta"] = c.rope_theta;
    j["rms_norm_eps"] = c.rms_norm_eps;
    j["max_position_embeddings"] = c.max_position_embeddings;
    j["bos_token_id"] = c.bos_token_id >= 0 ? json(c.bos_token_id) : json(nullptr);
    j["eos_token_id"] = c.eos_token_id >= 0 ? json(c.eos_token_id) : json(nullptr);
    if (c.has_yarn) {
        j["rope_scaling"] = {{"type", "yarn"},
                             {"factor", c.yarn.s},
                             {"original_max_position_embeddings", c.yarn.L0},
                             {"beta_fast", c.yarn.beta_fast},
                             {"beta_slow", c.yarn.beta_slow},
                             {"mscale", c.yarn.mscale},
                             {"mscale_all_dim", c.yarn.mscale_all_dim}};
    } else {
        j["rope_scaling"] = nullptr;
    }
    return j.dump(2) + "\n";
}

}  // namespace dsv2
