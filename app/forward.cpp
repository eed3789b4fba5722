// dsv2 forward: tokens through the oracle or the engine (--device), prefill then one token per
// call; the logits as .npy, optionally every named intermediate as .safetensors (--dump) and the
// routing statistics.
#include <limits.h>
#include <stdlib.h>

#include <cstdio>
#include <cstring>
#include <functional>
#include <iostream>
#include <memory>
#include <stdexcept>

#include "cli.hpp"
#include "dsv2/io.hpp"
#include "engine_source.hpp"
#include "model_source.hpp"

namespace dsv2::app {

namespace {

struct ForwardOptions {
    ModelSource source;
    std::string tokens;        ///< "3,14,15"
    int64_t prefill = -1;      ///< tokens in the first call; -1 = all
    std::string attention = "absorbed";
    bool attention_given = false;  ///< --attention on the command line (refused with an engine device)
    std::string precision = "fp32";
    std::string device = "cpu";    ///< cpu (the oracle), host or cuda (the engine; app/engine_source.hpp)
    std::string dtype = "fp32";    ///< the engine's weights: fp32 or bf16
    std::string out;           ///< logits .npy
    std::string dump;          ///< optional intermediates .safetensors
    bool routing_stats = false;  ///< print expert loads and balance terms per MoE layer
    int64_t devices = 0;       ///< D for the device / communication terms (0: the config's n_group)
    int64_t device_limit = 0;  ///< M (0: the config's topk_group)
};

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

// The oracle (--device cpu, in --precision, one attention form for every call) or the engine
// (--device host or cuda: fp32 arithmetic, --dtype weights, its attention form per call), through
// one Runner: the same schedule, the same trace, the same outputs.
int forward_with(const ForwardOptions& o, const std::vector<int32_t>& tokens) {
    const int64_t T = int64_t(tokens.size());
    const int64_t prefill = o.prefill < 0 ? T : o.prefill;
    const AttentionForm form = o.attention == "naive" ? AttentionForm::naive : AttentionForm::absorbed;
    std::unique_ptr<engine::Runner> runner = make_runner(o.device, o.source, o.precision, o.dtype, form, T);
    const Config cfg = runner->config();
    Trace trace = forward_trace(o);
    Mat<float> logits(T, cfg.V);  // [T, V]
    for_each_call(T, prefill, [&](int64_t first, int64_t n) {
        const std::vector<int32_t> part(tokens.begin() + first, tokens.begin() + first + n);
        logits.middleRows(first, n) = runner->forward(part, &trace);
    });
    if (o.device == "cpu")
        return finish_forward(o, cfg, tokens, prefill, logits, trace, o.attention + ", " + o.precision,
                              {{"attention", o.attention}, {"precision", o.precision}, {"device", "cpu"}});
    const std::string label = runner->device();
    return finish_forward(o, cfg, tokens, prefill, logits, trace,
                          label + ", " + o.dtype + " weights, attention per call (" + forms_used(T, prefill) + ")",
                          {{"attention", "per call: naive for several tokens, absorbed for one"},
                           {"precision", "fp32"},
                           {"device", label},
                           {"dtype", o.dtype}});
}

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
    return forward_with(o, tokens);
}

}  // namespace

Command add_forward(CLI::App& app) {
    auto o = std::make_shared<ForwardOptions>();
    CLI::App* sub = app.add_subcommand("forward", "run tokens through the model (prefill, then decode one at a time) and write the logits as .npy");
    add_source(sub, o->source, true);
    sub->add_option("--tokens", o->tokens, "token ids, comma-separated: 3,14,15")->required();
    sub->add_option("--prefill", o->prefill, "tokens in the first (prefill) call; the rest are decoded one at a time (default: all)");
    sub->add_option("--attention", o->attention, "naive or absorbed")->check(CLI::IsMember({"naive", "absorbed"}))->capture_default_str();
    sub->add_option("--precision", o->precision, "fp32 or fp64 (the oracle's; the engine computes in fp32)")->check(CLI::IsMember({"fp32", "fp64"}))->capture_default_str();
    sub->add_option("--device", o->device, "cpu (the oracle), host (the CUDA path's engine on its CPU twins) or cuda (the engine on the GPU)")->check(CLI::IsMember({"cpu", "host", "cuda"}))->capture_default_str();
    sub->add_option("--dtype", o->dtype, "the engine's weights (--device host or cuda): fp32 or bf16")->check(CLI::IsMember({"fp32", "bf16"}))->capture_default_str();
    sub->add_option("--out", o->out, "logits of every position, float32 [tokens, vocab], NumPy .npy")->required();
    sub->add_option("--dump", o->dump, "also write every named intermediate (fp32; indices I32) as .safetensors");
    auto* rs_flag = sub->add_flag("--routing-stats", o->routing_stats, "print, per MoE layer, the tokens per expert and the paper's expert-, device- and communication-balance terms");
    sub->add_option("--devices", o->devices, "D, devices the experts are split over (default: n_group)")->check(CLI::Range(int64_t(1), int64_t(1) << 20))->needs(rs_flag);
    sub->add_option("--device-limit", o->device_limit, "M, devices a token may reach (default: topk_group)")->check(CLI::Range(int64_t(1), int64_t(1) << 20))->needs(rs_flag);
    return {sub, require_source(o->source, "forward"), [o, sub] {
                o->attention_given = sub->count("--attention") > 0;  // refused with an engine device
                return run_forward(*o);
            }};
}

}  // namespace dsv2::app
