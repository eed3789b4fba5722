// dsv2 forward (on the oracle or the engine, --device), kv-cache and params.
#include "commands.hpp"

#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <climits>
#include <cstdio>
#include <cstring>
#include <functional>
#include <iostream>
#include <stdexcept>

#include <nlohmann/json.hpp>

#include "dsv2/cache_sizes.hpp"
#include "dsv2/checkpoint.hpp"
#include "dsv2/io.hpp"
#include "engine_source.hpp"
#include "model_source.hpp"

namespace dsv2::app {

std::vector<int32_t> parse_tokens(const std::string& text) {
    std::vector<int32_t> out;
    size_t i = 0;
    while (i <= text.size()) {
        size_t j = text.find(',', i);
        if (j == std::string::npos) j = text.size();
        const std::string item = text.substr(i, j - i);
        if (item.empty() || item.find_first_not_of("0123456789") != std::string::npos)
            throw std::invalid_argument("--tokens: \"" + item + "\" (item " + std::to_string(out.size()) +
                                        ") is not a non-negative integer; expected e.g. 3,14,15");
        if (item.size() > 10 || std::stoll(item) > INT32_MAX)
            throw std::invalid_argument("--tokens: " + item + " (item " + std::to_string(out.size()) + ") is too large");
        const long long v = std::stoll(item);
        out.push_back(int32_t(v));
        i = j + 1;
    }
    return out;
}

// The directory of `path` must exist and be writable; checked before any work is done.
void check_writable(const std::string& path, const char* option) {
    if (path.empty()) throw std::invalid_argument(std::string(option) + ": the path is empty");
    if (path.back() == '/') throw std::invalid_argument(std::string(option) + " " + path + ": names a directory, expected a file");
    const size_t slash = path.rfind('/');
    const std::string dir = slash == std::string::npos ? "." : (slash == 0 ? "/" : path.substr(0, slash));
    struct stat st {};
    if (stat(dir.c_str(), &st) != 0)
        throw std::invalid_argument(std::string(option) + " " + path + ": directory " + dir + " does not exist");
    if (!S_ISDIR(st.st_mode))
        throw std::invalid_argument(std::string(option) + " " + path + ": " + dir + " is not a directory");
    if (access(dir.c_str(), W_OK) != 0)
        throw std::invalid_argument(std::string(option) + " " + path + ": directory " + dir + " is not writable");
    if (stat(path.c_str(), &st) == 0 && S_ISDIR(st.st_mode))
        throw std::invalid_argument(std::string(option) + " " + path + ": is a directory");
}

namespace {

// Whether two output paths name the same file: their directories resolved, then the names.
bool same_path(const std::string& a, const std::string& b) {
    auto canonical = [](const std::string& p) {
        const size_t slash = p.rfind('/');
        const std::string dir = slash == std::string::npos ? "." : (slash == 0 ? "/" : p.substr(0, slash));
        char buf[PATH_MAX];
        const char* real = realpath(dir.c_str(), buf);
        return (real ? std::string(real) : dir) + "/" + (slash == std::string::npos ? p : p.substr(slash + 1));
    };
    return canonical(a) == canonical(b);
}

RawTensor to_raw(const Trace::Entry& e) {
    RawTensor t;
    t.shape = {e.data.rows(), e.data.cols()};
    t.dtype = e.integer ? DType::I32 : DType::F32;
    t.bytes.resize(size_t(e.data.size()) * 4);
    for (Eigen::Index k = 0; k < e.data.size(); ++k) {
        if (e.integer) {
            const int32_t v = int32_t(e.data.data()[k]);
            std::memcpy(t.bytes.data() + 4 * k, &v, 4);
        } else {
            const float v = float(e.data.data()[k]);
            std::memcpy(t.bytes.data() + 4 * k, &v, 4);
        }
    }
    return t;
}

void print_routing_stats(const Config& cfg, const Trace& trace, int64_t D, int64_t M) {
    std::printf("routing: D = %lld devices of %lld experts, M = %lld; terms before their α (L_ExpBal/α1, L_DevBal/α2, L_CommBal/α3)\n",
                (long long)D, (long long)(cfg.N_r / D), (long long)M);
    std::printf("layer  %-40s %10s %10s %10s\n", "tokens per expert", "expert", "device", "comm");
    for (int64_t l = 0; l < cfg.L; ++l) {
        if (!cfg.is_moe_layer(l)) continue;
        const RoutingStats st = routing_stats(trace.at(iname(l, "moe.topk_idx")).data.cast<int32_t>(),
                                              trace.at(iname(l, "moe.scores")).data, cfg.K_r, D, M);
        std::string loads;
        for (int64_t e : st.load) loads += std::to_string(e) + " ";
        std::printf("%5lld  %-40s %10.4f %10.4f %10.4f\n", (long long)l, loads.c_str(), st.expert_balance,
                    st.device_balance, st.comm_balance);
    }
    std::fflush(stdout);
}

// The trace every forward run keeps: a guard that names the first intermediate holding a NaN or
// an Inf, which also stores the intermediates --dump and --routing-stats need.
Trace forward_trace(const ForwardOptions& o) {
    const bool keep_routing = o.routing_stats && o.dump.empty();
    return Trace(keep_routing ? std::function<bool(const std::string&)>([](const std::string& n) {
                     return n.find("moe.topk_idx") != std::string::npos || n.find("moe.scores") != std::string::npos;
                 })
                              : nullptr,
                 /*store=*/!o.dump.empty() || o.routing_stats);
}

// What forward does with a run's logits and trace, whoever computed them: the .npy, the dump,
// the routing statistics and the summary line. `ran` says what computed them ("absorbed, fp32").
int finish_forward(const ForwardOptions& o, const Config& cfg, const std::vector<int32_t>& tokens, int64_t prefill,
                   const Mat<float>& logits, const Trace& trace, const std::string& ran,
                   const std::map<std::string, std::string>& run_meta) {
    const int64_t T = int64_t(tokens.size());
    if (!trace.first_nonfinite().empty())
        throw std::runtime_error("non-finite values (NaN or Inf) first appear in " + trace.first_nonfinite() +
                                 "; nothing written");
    write_npy_f32(o.out, logits.data(), {T, cfg.V});
    if (!o.dump.empty()) {
        std::map<std::string, RawTensor> tensors;
        for (const auto& [name, e] : trace.entries()) tensors.emplace(name, to_raw(e));
        // The tokens it ran, I32 [T]: a dump describes itself (dsv2 compare --against needs no --tokens).
        RawTensor tok;
        tok.dtype = DType::I32;
        tok.shape = {T};
        tok.bytes.resize(size_t(T) * 4);
        std::memcpy(tok.bytes.data(), tokens.data(), tok.bytes.size());
        tensors.emplace("tokens", std::move(tok));
        std::string toks;
        for (int32_t t : tokens) toks += (toks.empty() ? "" : ",") + std::to_string(t);
        std::map<std::string, std::string> meta = {{"format", "dsv2-intermediates"},
                                                   {"source", source_name(o.source)},
                                                   {"tokens", toks},
                                                   {"prefill", std::to_string(prefill)},
                                                   {"config", config_to_json_text(cfg)}};
        meta.insert(run_meta.begin(), run_meta.end());
        try {
            write_safetensors(o.dump, tensors, meta);
        } catch (...) {
            std::remove(o.out.c_str());  // all or nothing
            throw;
        }
    }
    if (o.routing_stats) print_routing_stats(cfg, trace, o.devices ? o.devices : cfg.G, o.device_limit ? o.device_limit : cfg.G_k);
    std::cerr << "dsv2 forward: " << T << " tokens (" << prefill << " prefill, " << (T - prefill) << " decode), " << ran
              << " → " << o.out << (o.dump.empty() ? "" : " and " + o.dump) << "\n";
    return 0;
}

// --device cpu: the oracle in S (--precision), one attention form for every call.
template <typename S>
int forward_in(const ForwardOptions& o, const std::vector<int32_t>& tokens) {
    const Model<S> model = load_model<S>(o.source);
    const Config& cfg = model.config();
    const int64_t T = int64_t(tokens.size());
    const int64_t prefill = o.prefill < 0 ? T : o.prefill;
    const AttentionForm form = o.attention == "naive" ? AttentionForm::naive : AttentionForm::absorbed;
    Trace trace = forward_trace(o);
    Mat<float> logits(T, cfg.V);                                                // [T, V]
    run_prefill_then_decode(model, tokens, prefill, form, &trace, [&](const Mat<S>& step, int64_t first) {
        logits.middleRows(first, step.rows()) = step.template cast<float>();
    });
    return finish_forward(o, cfg, tokens, prefill, logits, trace, o.attention + ", " + o.precision,
                          {{"attention", o.attention}, {"precision", o.precision}, {"device", "cpu"}});
}

// --device host or cuda: the engine (fp32, weights as --dtype), its attention form per call.
int forward_engine(const ForwardOptions& o, const std::vector<int32_t>& tokens) {
    std::unique_ptr<engine::Backend> backend = make_engine_backend(o.device);
    const engine::WeightType type = engine::weight_type_from_string(o.dtype);
    const int64_t T = int64_t(tokens.size());
    const int64_t prefill = o.prefill < 0 ? T : o.prefill;
    Config cfg;
    Mat<float> logits;
    Trace trace = forward_trace(o);
    {
        const Model<float> model = load_model<float>(o.source);  // the weights; the engine copies them
        cfg = model.config();
        engine::Engine engine(cfg, model.weights(), *backend, type, T);
        logits.resize(T, cfg.V);  // [T, V]
        for_each_call(T, prefill, [&](int64_t first, int64_t n) {
            const std::vector<int32_t> part(tokens.begin() + first, tokens.begin() + first + n);
            logits.middleRows(first, n) = engine.forward(part, &trace);
        });
    }
    const std::string label = engine_label(*backend);
    return finish_forward(o, cfg, tokens, prefill, logits, trace,
                          label + ", " + o.dtype + " weights, attention per call (" + forms_used(T, prefill) + ")",
                          {{"attention", "per call: naive for several tokens, absorbed for one"},
                           {"precision", "fp32"},
                           {"device", label},
                           {"dtype", o.dtype}});
}

std::string gb(double bytes) {
    char buf[64];
    if (bytes >= 1e9) std::snprintf(buf, sizeof buf, "%.2f GB", bytes / 1e9);
    else if (bytes >= 1e6) std::snprintf(buf, sizeof buf, "%.2f MB", bytes / 1e6);
    else std::snprintf(buf, sizeof buf, "%.1f KB", bytes / 1e3);
    return buf;
}

std::string billions(int64_t n) {
    char buf[64];
    if (n >= 100000000) std::snprintf(buf, sizeof buf, "%.2fB", double(n) / 1e9);
    else std::snprintf(buf, sizeof buf, "%.3fM", double(n) / 1e6);
    return buf;
}

}  // namespace

int run_forward(const ForwardOptions& o) {
    const std::vector<int32_t> tokens = parse_tokens(o.tokens);
    if (o.prefill < -1 || o.prefill > int64_t(tokens.size()))
        throw std::invalid_argument("--prefill " + std::to_string(o.prefill) + ": must be between 0 and the " +
                                    std::to_string(tokens.size()) + " tokens given");
    const Config cfg = source_config(o.source);  // cheap: checks tokens before loading weights
    for (size_t t = 0; t < tokens.size(); ++t)
        if (tokens[t] >= cfg.V)
            throw std::invalid_argument("--tokens: token " + std::to_string(tokens[t]) + " (item " + std::to_string(t) +
                                        ") is outside the vocabulary [0, " + std::to_string(cfg.V) + ")");
    const int64_t T = int64_t(tokens.size());
    if (o.routing_stats) {
        if (cfg.N_r == 0) throw std::invalid_argument("--routing-stats: the model has no MoE layers");
        const int64_t D = o.devices ? o.devices : cfg.G, M = o.device_limit ? o.device_limit : cfg.G_k;
        if (cfg.N_r % D != 0)
            throw std::invalid_argument("--devices " + std::to_string(D) + ": must divide the " + std::to_string(cfg.N_r) + " routed experts");
        if (M > D) throw std::invalid_argument("--device-limit " + std::to_string(M) + ": must be at most --devices " + std::to_string(D));
    }
    check_device_options(o.device, o.dtype, o.precision, o.attention_given, o.attention);
    const int64_t bytes = o.precision == "fp64" ? 8 : 4;
    // The weights alone (the engine on the host holds a second copy), then the whole run.
    check_fits_in_memory(cfg, bytes + engine_host_bytes(o.device, engine::weight_type_from_string(o.dtype)), source_name(o.source));
    check_run_fits(cfg, T, o.prefill < 0 ? T : o.prefill, bytes, !o.dump.empty(), "--tokens");
    check_writable(o.out, "--out");
    if (!o.dump.empty()) check_writable(o.dump, "--dump");
    if (!o.dump.empty() && same_path(o.dump, o.out)) throw std::invalid_argument("--dump " + o.dump + ": names the same file as --out");
    if (o.device != "cpu") return forward_engine(o, tokens);
    return o.precision == "fp64" ? forward_in<double>(o, tokens) : forward_in<float>(o, tokens);
}

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
}  // namespace

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

}  // namespace dsv2::app
