// dsv2 demo: the main job on the embedded default model (data/models/kjv-tiny, a small
// DeepSeek-V2 trained on the King James Bible by tools/train/): prompt → prefill → decode
// through the latent cache, printing the text as it comes, then a per-layer summary with the
// expert loads, the cache against an MHA cache, timings, a check that the naive and absorbed
// attention forms give the same logits and, when a GPU is present, the CUDA path's engine against
// the fp64 oracle on the same tokens (dsv2 compare's comparison).
#include <cmath>
#include <cstdio>
#include <iostream>
#include <string>

#include "cli.hpp"
#include "dsv2/engine/runner.hpp"
#include "dsv2/cache_sizes.hpp"
#include "dsv2/model.hpp"
#include "dsv2/tokenizer.hpp"
#include "engine_source.hpp"
#include "model_source.hpp"

#ifndef DSV2_DATA_DIR
#define DSV2_DATA_DIR "data"
#endif

namespace dsv2::app {

std::string default_model_dir() {
    const char* env = std::getenv("DSV2_DEFAULT_MODEL");
    return env && *env ? env : std::string(DSV2_DATA_DIR) + "/models/kjv-tiny";
}

namespace {

struct DemoOptions {
    std::string model_dir;  ///< empty: the embedded default
    std::string prompt = "And God said";
    int64_t max_new_tokens = 48;
    double temperature = 0.8;  ///< a greedy small model loops; light sampling, seeded, reads better
    double top_p = 0.9;
    uint64_t seed = 1;
    std::string attention = "absorbed";
};

std::string fmt(double v) {
    char buf[32];
    std::snprintf(buf, sizeof buf, "%g", v);
    return buf;
}
double rms(const Mat<double>& m) { return m.size() ? std::sqrt(m.squaredNorm() / double(m.size())) : 0.0; }

int run_demo(const DemoOptions& o) {
    const std::string dir = o.model_dir.empty() ? default_model_dir() : o.model_dir;
    const auto [tok, model] = load_text_model(dir);
    const Config& cfg = model.config();
    const ParamCount pc = count_params(cfg);
    std::printf("dsv2 demo — %s\n", dir.c_str());
    std::printf("model   DeepSeek-V2 architecture: d = %lld, L = %lld (%lld dense + %lld MoE), n_h = %lld, d_h = %lld, "
                "d_R = %lld, d_v = %lld, d_c = %lld, d_q = %lld\n"
                "        N_r = %lld routed + N_s = %lld shared experts, K_r = %lld, %s (G = %lld, G_k = %lld), "
                "σ = %.6f, %.2fM parameters (%.2fM activated), vocabulary %lld\n\n",
                (long long)cfg.d, (long long)cfg.L, (long long)cfg.first_k_dense_replace,
                (long long)(cfg.L - cfg.first_k_dense_replace), (long long)cfg.n_h, (long long)cfg.d_h,
                (long long)cfg.d_R, (long long)cfg.d_v, (long long)cfg.d_c, (long long)cfg.d_q, (long long)cfg.N_r,
                (long long)cfg.N_s, (long long)cfg.K_r, to_string(cfg.topk_method), (long long)cfg.G, (long long)cfg.G_k,
                softmax_scale(cfg), double(pc.total) / 1e6, double(pc.activated) / 1e6, (long long)cfg.V);

    GenerateOptions g;
    g.prompt = o.prompt;
    g.max_new_tokens = o.max_new_tokens;
    g.temperature = o.temperature;
    g.top_p = o.top_p;
    g.seed = o.seed;
    g.attention = o.attention;
    Trace trace([](const std::string& n) {
        return n.find("moe.topk_idx") != std::string::npos || n.find("moe.scores") != std::string::npos ||
               n.find("attn.out") != std::string::npos || n.find(".out") != std::string::npos || n == "logits";
    });
    std::printf("text    ");
    // The oracle borrows the model: the GPU check below needs its weights again.
    std::vector<int32_t> ids = encode_prompt(cfg, tok, g);
    const std::unique_ptr<engine::Runner> oracle = engine::borrow_oracle_runner<float>(
        model, {g.attention == "naive" ? AttentionForm::naive : AttentionForm::absorbed, false},
        int64_t(ids.size()) + g.max_new_tokens);
    const GenerateResult r = generate(*oracle, tok, g, std::move(ids), /*stream=*/true, &trace);
    const int64_t n_dec = int64_t(r.new_ids.size()) - 1;  // the first new token comes from the prefill
    std::printf("\n        (%zu prompt tokens, %zu generated, %s)\n", r.prompt_ids.size(), r.new_ids.size(),
                o.temperature > 0 ? ("sampled: temperature " + fmt(o.temperature) + ", top-p " + fmt(o.top_p) + ", seed " +
                                     std::to_string(o.seed)).c_str()
                                  : "greedy");
    std::printf("timing  prefill %zu tokens in %.2f ms (%.0f tokens/s); decode %lld tokens one at a time in %.2f ms "
                "(%.0f tokens/s), %s attention\n",
                r.prompt_ids.size(), 1e3 * r.prefill_seconds, double(r.prompt_ids.size()) / r.prefill_seconds,
                (long long)std::max<int64_t>(n_dec, 0), 1e3 * r.decode_seconds,
                n_dec > 0 ? double(n_dec) / r.decode_seconds : 0.0, o.attention.c_str());

    const int64_t seen = trace.at("logits").data.rows();  // tokens fed through the model (and cached)
    std::printf("\nlayer  ffn    rms(attn.out)  rms(out)   tokens per routed expert (%lld tokens × K_r = %lld)   Σ f_i·P_i\n",
                (long long)seen, (long long)cfg.K_r);
    for (int64_t l = 0; l < cfg.L; ++l) {
        std::printf("%5lld  %-5s  %13.4f  %8.4f   ", (long long)l, cfg.is_moe_layer(l) ? "MoE" : "dense",
                    rms(trace.at(iname(l, "attn.out")).data), rms(trace.at(iname(l, "out")).data));
        if (cfg.is_moe_layer(l)) {
            const RoutingStats st = routing_stats(trace.at(iname(l, "moe.topk_idx")).data.cast<int32_t>(),
                                                  trace.at(iname(l, "moe.scores")).data, cfg.K_r, 1, 1);
            std::string loads;
            for (int64_t e : st.load) loads += std::to_string(e) + " ";
            std::printf("%-50s %.4f\n", loads.c_str(), st.expert_balance);
        } else {
            std::printf("%-50s %s\n", "(dense SwiGLU)", "-");
        }
    }
    std::printf("        Σ f_i·P_i is the expert-balance loss before α (1 when perfectly balanced)\n");

    const CacheSizes cs = cache_sizes(cfg, std::max<int64_t>(1, cfg.n_h / 2));
    const int64_t cached = seen;
    std::printf("\ncache   %lld tokens × %lld layers × %lld (d_c + d_R) = %lld elements = %lld bytes in fp32\n"
                "        per token: MLA %lld elements; MHA would need %lld (%.1f×), GQA with %lld groups %lld, MQA %lld\n",
                (long long)cached, (long long)cfg.L, (long long)cfg.cache_width(), (long long)(cs.mla * cached),
                (long long)(cs.mla * cached * 4), (long long)cs.mla, (long long)cs.mha, double(cs.mha) / double(cs.mla),
                (long long)cs.n_g, (long long)cs.gqa, (long long)cs.mqa);

    // The other attention form, in one prefill of the same tokens, must give the same logits.
    std::vector<int32_t> all = r.prompt_ids;
    all.insert(all.end(), r.new_ids.begin(), r.new_ids.end());
    all.resize(size_t(seen));
    LatentCache<float> cache2(cfg, int64_t(all.size()));
    const AttentionForm other = o.attention == "naive" ? AttentionForm::absorbed : AttentionForm::naive;
    const Mat<float> check = model.forward(all, cache2, other);
    const Mat<double>& ran = trace.at("logits").data;
    const double diff = (check.cast<double>() - ran).cwiseAbs().maxCoeff();
    const double scale = ran.cwiseAbs().maxCoeff();
    std::printf("\ncheck   %s attention, one prefill of all %zu tokens, vs %s prefill + decode: max |Δ logit| = %.2e "
                "(max |logit| %.2f)\n",
                to_string(other), all.size(), o.attention.c_str(), diff, scale);
    if (!(diff <= 1e-4 * std::max(1.0, scale))) {
        std::fprintf(stderr, "dsv2: error: the two attention forms disagree\n");
        return 1;
    }

    // The GPU: the CUDA path's engine on the same tokens and schedule (the prompt in one call,
    // then one token per call) against the fp64 oracle, every named intermediate.
    std::string why;
    if (!cuda_available(&why)) {
        std::printf("\ngpu     skipped: %s; on a GPU: dsv2 compare --model %s --device cuda\n", why.c_str(), dir.c_str());
        return 0;
    }
    std::fflush(stdout);
    std::unique_ptr<engine::Backend> gpu = make_engine_backend("cuda");
    const engine::Comparison gc = engine::check_engine(cfg, model.weights(), *gpu, engine::WeightType::f32, all,
                                                       int64_t(r.prompt_ids.size()));
    const int shown = gc.first_fail >= 0 ? gc.first_fail : gc.worst;  // the first failure, or the largest float error
    const std::string summary = engine::verdict(gc),
                      worst = shown >= 0 ? engine::row_line(gc.rows[size_t(shown)], int(gc.rows[size_t(shown)].name.size())) : "";
    std::printf("\ngpu     %s, fp32 weights, vs the fp64 oracle on these %zu tokens (%zu prefill + %zu decode, %s):\n"
                "        %s %s\n        %s\n",
                engine_label(*gpu).c_str(), all.size(), r.prompt_ids.size(), all.size() - r.prompt_ids.size(),
                forms_used(int64_t(all.size()), int64_t(r.prompt_ids.size())).c_str(), gc.ok() ? "PASS" : "FAIL",
                summary.c_str(), worst.c_str());
    if (!gc.ok()) {
        std::fflush(stdout);
        std::fprintf(stderr, "dsv2: error: the GPU engine diverges from the oracle (%s)\n", summary.c_str());
        return 1;
    }
    return 0;
}

}  // namespace

Command add_demo(CLI::App& app) {
    auto o = std::make_shared<DemoOptions>();
    CLI::App* sub = app.add_subcommand("demo", "the main job: prompt → prefill → decode through the latent cache, on the embedded default model");
    sub->add_option("--model", o->model_dir, "checkpoint directory with tokenizer.json (default: the embedded data/models/kjv-tiny)");
    sub->add_option("--prompt", o->prompt, "prompt text")->capture_default_str();
    sub->add_option("--max-new-tokens", o->max_new_tokens, "tokens to generate")->check(CLI::Range(int64_t(1), int64_t(4096)))->capture_default_str();
    sub->add_option("--temperature", o->temperature, "0 = greedy; > 0 samples")->check(finite() & CLI::Range(0.0, 100.0))->capture_default_str();
    sub->add_option("--top-p", o->top_p, "nucleus sampling mass, in (0, 1]")->check(finite() & CLI::Range(1e-9, 1.0))->capture_default_str();
    sub->add_option("--seed", o->seed, "seed of the sampler")->check(unsigned64())->capture_default_str();
    sub->add_option("--attention", o->attention, "naive or absorbed")->check(CLI::IsMember({"naive", "absorbed"}))->capture_default_str();
    return {sub, nullptr, [o] { return run_demo(*o); }};
}

}  // namespace dsv2::app
