// dsv2 params: total and activated parameter counts.
#include <cstdio>
#include <iostream>
#include <memory>

#include <nlohmann/json.hpp>

#include "cli.hpp"
#include "dsv2/cache_sizes.hpp"
#include "model_source.hpp"

namespace dsv2::app {

namespace {

int run_params(const ModelSource& src, bool as_json) {
    const Config cfg = source_config(src);
    const ParamCount n = count_params(cfg);
    if (as_json) {
        nlohmann::json j = {{"source", source_name(src)}, {"total", n.total}, {"activated", n.activated},
                            {"embedding", n.embedding}, {"attention", n.attention}, {"dense_mlp", n.dense_mlp},
                            {"moe_routed", n.moe_routed}, {"moe_shared", n.moe_shared}, {"router", n.router},
                            {"norms", n.norms}, {"lm_head", n.lm_head}};
        std::cout << j.dump(2) << "\n";
        return 0;
    }
    std::printf("Parameters of %s\n", source_name(src).c_str());
    std::printf("  total       %s\n", billions(n.total).c_str());
    std::printf("  activated   %s per token (excludes the embedding table and the %lld unvisited routed experts of each MoE layer)\n",
                billions(n.activated).c_str(), (long long)(cfg.N_r - cfg.K_r));
    std::printf("  embedding   %s\n  attention   %s\n  dense MLP   %s\n  routed      %s\n  shared      %s\n"
                "  router      %s\n  norms       %s\n  lm_head     %s\n",
                billions(n.embedding).c_str(), billions(n.attention).c_str(), billions(n.dense_mlp).c_str(),
                billions(n.moe_routed).c_str(), billions(n.moe_shared).c_str(), billions(n.router).c_str(),
                billions(n.norms).c_str(), billions(n.lm_head).c_str());
    return 0;
}

}  // namespace

Command add_params(CLI::App& app) {
    auto src = std::make_shared<ModelSource>();
    auto as_json = std::make_shared<bool>(false);
    CLI::App* sub = app.add_subcommand("params", "total and activated parameter counts");
    add_source(sub, *src, true);
    sub->add_flag("--json", *as_json, "machine-readable output");
    return {sub, require_source(*src, "params"), [=] { return run_params(*src, *as_json); }};
}

}  // namespace dsv2::app
