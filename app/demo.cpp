// dsv2 demo: the main job on the embedded default model — prompt → prefill → greedy decode
// through the latent cache, with a per-layer summary, expert loads, cache sizes and timings,
// and a check that the two attention forms agree.
#include <chrono>
#include <cmath>
#include <cstdio>
#include <string>

#include "commands.hpp"
#include "dsv2/cache_sizes.hpp"
#include "dsv2/model.hpp"
#include "model_source.hpp"

namespace dsv2::app {

namespace {

double seconds_since(std::chrono::steady_clock::time_point t0) {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

// Bytes as text, with anything unprintable escaped.
std::string show_bytes(const std::vector<int32_t>& toks) {
    std::string s;
    for (int32_t t : toks) {
        if (t >= 32 && t < 127 && t != '\\') s.push_back(char(t));
        else if (t == '\n') s += "\\n";
        else {
            char buf[8];
            std::snprintf(buf, sizeof buf, "\\x%02x", unsigned(t) & 0xffu);
            s += buf;
        }
    }
    return s;
}

double rms(const Mat<double>& m) { return m.size() ? std::sqrt(m.squaredNorm() / double(m.size())) : 0.0; }

}  // namespace

int run_demo(const DemoOptions& o) {
    const ModelSource src{"tiny", 0, ""};
    const Model<float> model = load_model<float>(src);
    const Config& cfg = model.config();
    const AttentionForm form = o.attention == "naive" ? AttentionForm::naive : AttentionForm::absorbed;

    std::printf("dsv2 demo — embedded default model: %s, random weights (the text below is noise;\n"
                "           point `dsv2 forward --model DIR` at a trained checkpoint for words)\n",
                source_name(src).c_str());
    const ParamCount pc = count_params(cfg);
    std::printf("model   d = %lld, L = %lld (%lld dense + %lld MoE), n_h = %lld, d_h = %lld, d_R = %lld, d_v = %lld, "
                "d_c = %lld, d_q = %lld\n        N_r = %lld routed + N_s = %lld shared experts, K_r = %lld, %s "
                "(G = %lld, G_k = %lld), σ = %.6f, %lld parameters (%lld activated)\n",
                (long long)cfg.d, (long long)cfg.L, (long long)cfg.first_k_dense_replace,
                (long long)(cfg.L - cfg.first_k_dense_replace), (long long)cfg.n_h, (long long)cfg.d_h,
                (long long)cfg.d_R, (long long)cfg.d_v, (long long)cfg.d_c, (long long)cfg.d_q, (long long)cfg.N_r,
                (long long)cfg.N_s, (long long)cfg.K_r, to_string(cfg.topk_method), (long long)cfg.G,
                (long long)cfg.G_k, softmax_scale(cfg), (long long)pc.total, (long long)pc.activated);

    // The embedded model's vocabulary is the 256 byte values: the prompt is its UTF-8 bytes.
    std::vector<int32_t> prompt;
    for (unsigned char ch : o.prompt) prompt.push_back(int32_t(ch));
    if (prompt.empty()) throw std::invalid_argument("--prompt: must not be empty");

    Trace trace([](const std::string& n) {
        return n.find("moe.topk_idx") != std::string::npos || n.find("moe.scores") != std::string::npos ||
               n.find("attn.out") != std::string::npos || n.find(".out") != std::string::npos;
    });
    LatentCache<float> cache(cfg, int64_t(prompt.size()) + o.max_new_tokens);
    auto argmax = [](const Mat<float>& logits) {
        Eigen::Index k;
        logits.row(logits.rows() - 1).maxCoeff(&k);
        return int32_t(k);
    };

    auto t0 = std::chrono::steady_clock::now();
    Mat<float> logits = model.forward(prompt, cache, form, &trace);
    const double t_prefill = seconds_since(t0);
    std::vector<int32_t> generated{argmax(logits)};
    Mat<float> all_logits(int64_t(prompt.size()) + o.max_new_tokens - 1, cfg.V);   // [T, V]
    all_logits.topRows(logits.rows()) = logits;
    t0 = std::chrono::steady_clock::now();
    for (int64_t i = 1; i < o.max_new_tokens; ++i) {
        logits = model.forward({generated.back()}, cache, form, &trace);
        all_logits.row(int64_t(prompt.size()) + i - 1) = logits.row(0);
        generated.push_back(argmax(logits));
    }
    const double t_decode = seconds_since(t0);
    const int64_t n_dec = o.max_new_tokens - 1;

    std::printf("\nprompt  \"%s\" (%zu tokens)\n", show_bytes(prompt).c_str(), prompt.size());
    std::printf("output  \"%s\" (%zu tokens, greedy)\n", show_bytes(generated).c_str(), generated.size());
    std::printf("\ntiming  prefill %zu tokens in %.2f ms (%.0f tokens/s); decode %lld tokens one at a time in %.2f ms "
                "(%.0f tokens/s), %s attention\n",
                prompt.size(), 1e3 * t_prefill, double(prompt.size()) / t_prefill, (long long)n_dec, 1e3 * t_decode,
                n_dec > 0 ? double(n_dec) / t_decode : 0.0, to_string(form));

    std::printf("\nlayer  ffn    rms(attn.out)  rms(out)   expert loads over %lld tokens (tokens per routed expert)   Σ f_i·P_i\n",
                (long long)cache.length());
    for (int64_t l = 0; l < cfg.L; ++l) {
        std::printf("%5lld  %-5s  %13.4f  %8.4f   ", (long long)l, cfg.is_moe_layer(l) ? "MoE" : "dense",
                    rms(trace.at(iname(l, "attn.out")).data), rms(trace.at(iname(l, "out")).data));
        if (cfg.is_moe_layer(l)) {
            const Mat<double>& idx = trace.at(iname(l, "moe.topk_idx")).data;
            const RoutingStats st = routing_stats(idx.cast<int32_t>(), trace.at(iname(l, "moe.scores")).data, cfg.K_r, cfg.G,
                                                  cfg.G_k);
            std::string loads;
            for (int64_t e : st.load) loads += std::to_string(e) + " ";
            std::printf("%-58s %.4f\n", loads.c_str(), st.expert_balance);
        } else {
            std::printf("%-58s %s\n", "(dense SwiGLU)", "-");
        }
    }

    const CacheSizes cs = cache_sizes(cfg, 8);
    std::printf("\ncache   %lld tokens × %lld layers × %lld (d_c + d_R) = %lld elements = %lld bytes in fp32\n"
                "        an MHA cache of the same heads would hold %lld elements (%.1f× more); HF's decompressed cache %lld\n",
                (long long)cache.length(), (long long)cfg.L, (long long)cfg.cache_width(), (long long)cache.elements(),
                (long long)cache.bytes(), (long long)(cs.mha * cache.length()), double(cs.mha) / double(cs.mla),
                (long long)(cs.decompressed * cache.length()));

    // The other attention form, one prefill of the whole sequence, must give the same logits.
    std::vector<int32_t> all = prompt;
    all.insert(all.end(), generated.begin(), generated.end() - 1);
    LatentCache<float> cache2(cfg, int64_t(all.size()));
    const AttentionForm other = form == AttentionForm::naive ? AttentionForm::absorbed : AttentionForm::naive;
    const Mat<float> check = model.forward(all, cache2, other);
    const double diff = (check - all_logits).cwiseAbs().maxCoeff();
    const double scale = all_logits.cwiseAbs().maxCoeff();
    std::printf("\ncheck   %s prefill of all %zu tokens vs %s prefill + decode: max |Δ logit| = %.2e (max |logit| %.2f)\n",
                to_string(other), all.size(), to_string(form), diff, scale);
    if (!(diff <= 1e-4 * std::max(1.0, scale))) {
        std::fprintf(stderr, "dsv2: error: the two attention forms disagree\n");
        return 1;
    }
    return 0;
}

}  // namespace dsv2::app
