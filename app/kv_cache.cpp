// dsv2 kv-cache: the cache per token of MHA, GQA, MQA and MLA (the paper's Table 1).
#include <algorithm>
#include <cstdio>
#include <iostream>
#include <memory>
#include <stdexcept>

#include <nlohmann/json.hpp>

#include "cli.hpp"
#include "dsv2/cache_sizes.hpp"
#include "model_source.hpp"

namespace dsv2::app {

namespace {

int run_kv_cache(const ModelSource& src, int64_t context, int64_t groups, int64_t bpe, bool as_json) {
    const Config cfg = source_config(src);
    const CacheSizes s = cache_sizes(cfg, groups);
    struct Row { const char* name; int64_t elems; const char* formula; };
    const Row rows[] = {{"MHA", s.mha, "2 n_h d_h L"},
                        {"GQA", s.gqa, "2 n_g d_h L"},
                        {"MQA", s.mqa, "2 d_h L"},
                        {"MLA", s.mla, "(d_c + d_R) L"},
                        {"HF-cache", s.decompressed, "n_h (d_h + d_R + d_v) L"}};
    int64_t largest = 0;
    for (const Row& r : rows) largest = std::max(largest, r.elems);
    if (double(largest) * double(bpe) * double(context) > 9.0e18)
        throw std::invalid_argument("--context " + std::to_string(context) + ": the cache totals would overflow 64-bit integers");
    if (as_json) {
        nlohmann::json j;
        j["source"] = source_name(src);
        j["layers"] = cfg.L;
        j["context"] = context;
        j["bytes_per_element"] = bpe;
        j["gqa_groups"] = groups;
        j["mla_gqa_equivalent_groups"] = s.gqa_equivalent_groups;
        for (const Row& r : rows)
            j["caches"][r.name] = {{"elements_per_token", r.elems},
                                   {"elements_per_token_per_layer", r.elems / cfg.L},
                                   {"bytes_per_token", r.elems * bpe},
                                   {"bytes_at_context", r.elems * bpe * context},
                                   {"formula", r.formula}};
        std::cout << j.dump(2) << "\n";
        return 0;
    }
    std::printf("KV cache per token, %s: L = %lld layers, n_h = %lld, d_h = %lld, d_c = %lld, d_R = %lld, %lld bytes/element\n",
                source_name(src).c_str(), (long long)cfg.L, (long long)cfg.n_h, (long long)cfg.d_h,
                (long long)cfg.d_c, (long long)cfg.d_R, (long long)bpe);
    std::printf("%-9s %-26s %14s %12s %14s %16s %9s\n", "cache", "elements/token", "per layer", "total", "bytes/token",
                ("at " + std::to_string(context)).c_str(), "vs MHA");
    for (const Row& r : rows)
        std::printf("%-9s %-26s %14lld %12lld %14lld %16s %8.2f%%\n", r.name, r.formula, (long long)(r.elems / cfg.L),
                    (long long)r.elems, (long long)(r.elems * bpe), gb(double(r.elems) * double(bpe) * double(context)).c_str(),
                    100.0 * double(r.elems) / double(s.mha));
    std::printf("MLA caches as much as GQA with %.2f groups (GQA row: %lld groups). HF-cache is what the Hugging Face "
                "code stores (decompressed K and V).\n",
                s.gqa_equivalent_groups, (long long)groups);
    return 0;
}

}  // namespace

Command add_kv_cache(CLI::App& app) {
    auto src = std::make_shared<ModelSource>();
    auto context = std::make_shared<int64_t>(4096), groups = std::make_shared<int64_t>(8), bpe = std::make_shared<int64_t>(2);
    auto as_json = std::make_shared<bool>(false);
    CLI::App* sub = app.add_subcommand("kv-cache", "KV-cache size per token of MHA, GQA, MQA and MLA (the paper's Table 1)");
    add_source(sub, *src, true);
    sub->add_option("--context", *context, "context length for the totals")->check(CLI::Range(int64_t(1), int64_t(1) << 40))->capture_default_str();
    sub->add_option("--groups", *groups, "GQA groups to compare with")->check(CLI::Range(int64_t(1), int64_t(1) << 20))->capture_default_str();
    sub->add_option("--bytes-per-element", *bpe, "bytes per cached element (2 = bf16)")->check(CLI::Range(int64_t(1), int64_t(8)))->capture_default_str();
    sub->add_flag("--json", *as_json, "machine-readable output");
    return {sub, require_source(*src, "kv-cache"),
            [=] { return run_kv_cache(*src, *context, *groups, *bpe, *as_json); }};
}

}  // namespace dsv2::app
