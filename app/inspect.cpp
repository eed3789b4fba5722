// dsv2 inspect: what a checkpoint directory holds and whether it is loadable.
#include <cstdio>
#include <iostream>
#include <map>
#include <memory>

#include <nlohmann/json.hpp>

#include "cli.hpp"
#include "dsv2/cache_sizes.hpp"
#include "dsv2/checkpoint.hpp"

namespace dsv2::app {

namespace {

// 0 for a loadable checkpoint; else one error line on stderr (the report went to stdout) and 1.
int inspect_verdict(const std::string& dir, const CheckpointReport& r) {
    if (r.ok()) return 0;
    std::fflush(stdout);
    const std::string first = !r.missing.empty() ? "missing tensor \"" + r.missing.front() + "\""
                              : !r.misshaped.empty() ? "tensor " + r.misshaped.front()
                                                     : "tensor " + r.bad_dtype.front() + " is not F32, F16 or BF16";
    std::fprintf(stderr, "dsv2: error: %s: not loadable: %zu missing, %zu mis-shaped, %zu of a bad dtype (first: %s)\n",
                 dir.c_str(), r.missing.size(), r.misshaped.size(), r.bad_dtype.size(), first.c_str());
    return 1;
}
int run_inspect(const std::string& dir, bool list_tensors, bool as_json) {
    const Config cfg = config_from_file(dir);
    const CheckpointReport r = inspect_checkpoint(dir, cfg);
    const ParamCount n = count_params(cfg);
    int64_t stored = 0;
    std::map<std::string, int64_t> by_dtype;
    for (const auto& t : r.tensors) {
        int64_t k = 1;
        for (int64_t s : t.shape) k *= s;
        stored += k;
        by_dtype[to_string(t.dtype)] += 1;
    }
    const int64_t cache_per_token = cfg.cache_width() * cfg.L;
    if (as_json) {
        nlohmann::json j;
        j["dir"] = dir;
        j["files"] = r.files;
        j["bytes"] = r.bytes;
        j["config"] = nlohmann::json::parse(config_to_json_text(cfg));
        j["params"] = {{"total", n.total}, {"activated", n.activated}, {"stored", stored}};
        j["cache_elements_per_token"] = cache_per_token;
        j["dtypes"] = by_dtype;
        j["missing"] = r.missing;
        j["unexpected"] = r.unexpected;
        j["misshaped"] = r.misshaped;
        j["bad_dtype"] = r.bad_dtype;
        j["ok"] = r.ok();
        if (list_tensors)
            for (const auto& t : r.tensors)
                j["tensors"].push_back({{"name", t.name}, {"dtype", to_string(t.dtype)}, {"shape", t.shape}, {"file", t.file}});
        std::cout << j.dump(2) << "\n";
        return inspect_verdict(dir, r);
    }
    std::printf("checkpoint  %s: %zu file(s), %s\n", dir.c_str(), r.files.size(), gb(double(r.bytes)).c_str());
    std::printf("model       d = %lld, L = %lld, n_h = %lld, d_c = %lld, d_R = %lld, d_q = %lld, N_r = %lld, N_s = %lld, K_r = %lld, V = %lld\n",
                (long long)cfg.d, (long long)cfg.L, (long long)cfg.n_h, (long long)cfg.d_c, (long long)cfg.d_R,
                (long long)cfg.d_q, (long long)cfg.N_r, (long long)cfg.N_s, (long long)cfg.K_r, (long long)cfg.V);
    std::printf("params      %s total, %s activated per token (from the config); %s stored\n", billions(n.total).c_str(),
                billions(n.activated).c_str(), billions(stored).c_str());
    std::printf("cache       %lld elements per token (%lld layers × %lld)\n", (long long)cache_per_token, (long long)cfg.L,
                (long long)cfg.cache_width());
    std::string dts;
    for (const auto& [dt, k] : by_dtype) dts += (dts.empty() ? "" : ", ") + std::to_string(k) + " " + dt;
    std::printf("tensors     %zu (%s)\n", r.tensors.size(), dts.c_str());
    if (list_tensors)
        for (const auto& t : r.tensors) {
            std::string shape;
            for (int64_t s : t.shape) shape += (shape.empty() ? "" : ", ") + std::to_string(s);
            std::printf("  %-60s %-5s [%s]%s\n", t.name.c_str(), to_string(t.dtype), shape.c_str(),
                        t.expected_shape.empty() ? "  (unexpected)" : "");
        }
    auto list = [](const char* what, const std::vector<std::string>& v) {
        if (v.empty()) return;
        std::printf("%-11s %zu:", what, v.size());
        for (size_t i = 0; i < v.size() && i < 20; ++i) std::printf("\n  %s", v[i].c_str());
        if (v.size() > 20) std::printf("\n  … and %zu more", v.size() - 20);
        std::printf("\n");
    };
    list("missing", r.missing);
    list("misshaped", r.misshaped);
    list("bad dtype", r.bad_dtype);
    list("unexpected", r.unexpected);
    std::printf("%s\n", r.ok() ? "ok: every tensor the config expects is present with its shape"
                                : "NOT LOADABLE: see above");
    return inspect_verdict(dir, r);
}

}  // namespace

Command add_inspect(CLI::App& app) {
    auto dir = std::make_shared<std::string>();
    auto tensors = std::make_shared<bool>(false), as_json = std::make_shared<bool>(false);
    CLI::App* sub = app.add_subcommand("inspect", "what a checkpoint directory holds: tensors, shapes, dtypes, parameters, cache size, and what is missing or unexpected");
    sub->add_option("dir", *dir, "Hugging Face checkpoint directory")->required();
    sub->add_flag("--tensors", *tensors, "list every tensor");
    sub->add_flag("--json", *as_json, "machine-readable output");
    return {sub, nullptr, [=] { return run_inspect(*dir, *tensors, *as_json); }};
}

}  // namespace dsv2::app
