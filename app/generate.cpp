// dsv2 generate: text in, text out, through the tokenizer, one prefill and decode steps over the
// latent cache, on the oracle (--device cpu) or the engine (--device host or cuda). Greedy by
// default; seeded temperature / top-p sampling on request.
#include <chrono>
#include <cstdio>
#include <iostream>

#include "cli.hpp"
#include "dsv2/engine/runner.hpp"
#include "dsv2/sampling.hpp"
#include "dsv2/tokenizer.hpp"
#include "engine_source.hpp"
#include "model_source.hpp"

namespace dsv2::app {

namespace {
double seconds_since(std::chrono::steady_clock::time_point t0) {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

}  // namespace

std::vector<int32_t> encode_prompt(const Config& cfg, const Tokenizer& tok, const GenerateOptions& o) {
    if (o.prompt.empty()) throw std::invalid_argument("--prompt: must not be empty");
    std::vector<int32_t> ids;
    try {
        ids = tok.encode(o.prompt, /*add_special=*/true);
    } catch (const std::invalid_argument& e) {  // invalid UTF-8: the prompt's fault, not the tokenizer's
        const std::string what = e.what();
        const size_t at = what.find("not valid UTF-8");
        throw std::invalid_argument("--prompt: " + (at == std::string::npos ? what : "is " + what.substr(at)));
    }
    if (ids.empty()) throw std::invalid_argument("--prompt: encodes to no tokens");
    for (int32_t id : ids)
        if (id >= cfg.V)
            throw std::invalid_argument("the tokenizer gives id " + std::to_string(id) + ", outside the model's vocabulary of " +
                                        std::to_string(cfg.V));
    const int64_t total = int64_t(ids.size()) + o.max_new_tokens;
    if (total > cfg.max_position_embeddings)
        throw std::invalid_argument("prompt + --max-new-tokens = " + std::to_string(total) + " tokens exceeds max_position_embeddings " +
                                    std::to_string(cfg.max_position_embeddings));
    return ids;
}

namespace {

// The loop: `step(tokens, which)` runs the next tokens through
// the model, whose cache holds the earlier ones, and returns their logits ([1, V] or, with
// Logits::all, [T, V]). The prompt in one call, then sampling and one token per call.
template <typename Step>
GenerateResult sample_loop(const Config& cfg, const Tokenizer& tok, const GenerateOptions& o, bool stream,
                           std::vector<int32_t> prompt_ids, Logits prompt_logits, Step&& step) {
    GenerateResult r;
    r.prompt_ids = std::move(prompt_ids);
    SamplingRng rng(o.seed);
    const SamplingOptions sopt{o.temperature, o.top_p};

    auto t0 = std::chrono::steady_clock::now();
    Mat<float> logits = step(r.prompt_ids, prompt_logits);
    r.prefill_seconds = seconds_since(t0);
    if (stream) {
        std::cout << o.prompt << std::flush;
    }
    std::string shown;  // decoded text so far: print only what a new token adds
    t0 = std::chrono::steady_clock::now();
    for (int64_t i = 0; i < o.max_new_tokens; ++i) {
        const int32_t next = sample_token(logits.row(logits.rows() - 1).data(), cfg.V, sopt, rng);
        if (next == tok.eos_id()) break;
        r.new_ids.push_back(next);
        if (stream) {
            const std::string text = tok.decode(r.new_ids, /*skip_special=*/true);
            // A token may end inside a multi-byte character: wait for the rest before printing.
            if (text.size() > shown.size() && (text.back() & 0xC0) != 0x80 && (unsigned char)text.back() < 0xC0) {
                std::cout << text.substr(shown.size()) << std::flush;
                shown = text;
            }
        }
        if (i + 1 < o.max_new_tokens) logits = step({next}, Logits::all);
    }
    r.decode_seconds = seconds_since(t0);
    r.text = tok.decode(r.new_ids, /*skip_special=*/true);
    if (stream) std::cout << r.text.substr(std::min(shown.size(), r.text.size())) << "\n";
    return r;
}

}  // namespace

GenerateResult generate(engine::Runner& runner, const Tokenizer& tok, const GenerateOptions& o, std::vector<int32_t> prompt_ids,
                        bool stream, Trace* trace) {
    // Sampling needs the last position's logits only; a trace that records the logits gets them all.
    const Logits which = trace && trace->wants("logits") ? Logits::all : Logits::last;
    return sample_loop(runner.config(), tok, o, stream, std::move(prompt_ids), which, [&](const std::vector<int32_t>& part, Logits w) {
        if (!trace) return runner.forward_checked(part, w);
        Mat<float> logits = runner.forward(part, trace, w);
        if (!trace->first_nonfinite().empty())  // stop at the first NaN or Inf, before sampling from it
            throw std::runtime_error("non-finite values (NaN or Inf) first appear in " + trace->first_nonfinite());
        return logits;
    });
}

namespace {

int run_generate(const GenerateOptions& o) {
    check_device_options(o.device, o.dtype, "fp32", o.attention_given, o.attention);
    std::unique_ptr<engine::Backend> backend = o.device == "cpu" ? nullptr : make_engine_backend(o.device);  // fails fast
    auto [tok, loaded] = load_text_model(o.model_dir);
    std::vector<int32_t> ids = encode_prompt(loaded.config(), tok, o);
    const int64_t capacity = int64_t(ids.size()) + o.max_new_tokens;
    const AttentionForm form = o.attention == "naive" ? AttentionForm::naive : AttentionForm::absorbed;
    // The model moves into the runner: the oracle keeps it; for the engine the host copy of the
    // weights is freed once they are uploaded.
    std::unique_ptr<engine::Runner> runner = [&, &loaded = loaded] {
        Model<float> model = std::move(loaded);
        return backend ? engine::make_engine_runner(model.config(), model.weights(), std::move(backend),
                                                    engine::weight_type_from_string(o.dtype), capacity)
                       : engine::make_oracle_runner<float>(std::move(model), {form, false}, capacity);
    }();
    const GenerateResult r = generate(*runner, tok, o, std::move(ids), /*stream=*/true);
    const std::string ran = o.device == "cpu" ? "" : "; " + runner->device() + ", " + o.dtype + " weights";  // the engine, when it ran
    std::fprintf(stderr, "dsv2 generate: prompt %zu tokens in %.1f ms (%.0f tokens/s); %zu new tokens in %.1f ms (%.1f tokens/s), %s%s\n",
                 r.prompt_ids.size(), 1e3 * r.prefill_seconds, double(r.prompt_ids.size()) / r.prefill_seconds,
                 r.new_ids.size(), 1e3 * r.decode_seconds,
                 r.new_ids.empty() ? 0.0 : double(r.new_ids.size()) / r.decode_seconds,
                 o.temperature > 0 ? ("sampled, T = " + std::to_string(o.temperature) + ", top-p = " + std::to_string(o.top_p) +
                                      ", seed " + std::to_string(o.seed)).c_str()
                                   : "greedy",
                 ran.c_str());
    return 0;
}

}  // namespace

Command add_generate(CLI::App& app) {
    auto o = std::make_shared<GenerateOptions>();
    CLI::App* sub = app.add_subcommand("generate", "text generation from a checkpoint directory with its tokenizer.json");
    sub->add_option("--model", o->model_dir, "Hugging Face checkpoint directory (config.json, safetensors, tokenizer.json)")->required();
    sub->add_option("--prompt", o->prompt, "prompt text")->required();
    sub->add_option("--max-new-tokens", o->max_new_tokens, "tokens to generate at most")->check(CLI::Range(int64_t(1), int64_t(1) << 20))->capture_default_str();
    sub->add_option("--temperature", o->temperature, "0 = greedy; > 0 samples")->check(finite() & CLI::Range(0.0, 100.0))->capture_default_str();
    sub->add_option("--top-p", o->top_p, "nucleus sampling mass, in (0, 1]")->check(finite() & CLI::Range(1e-9, 1.0))->capture_default_str();
    sub->add_option("--seed", o->seed, "seed of the sampler")->check(unsigned64())->capture_default_str();
    sub->add_option("--attention", o->attention, "naive or absorbed (the oracle's; the engine chooses per call)")->check(CLI::IsMember({"naive", "absorbed"}))->capture_default_str();
    sub->add_option("--device", o->device, "cpu (the oracle), host (the CUDA path's engine on its CPU twins) or cuda (the engine on the GPU)")->check(CLI::IsMember({"cpu", "host", "cuda"}))->capture_default_str();
    sub->add_option("--dtype", o->dtype, "the engine's weights (--device host or cuda): fp32 or bf16")->check(CLI::IsMember({"fp32", "bf16"}))->capture_default_str();
    return {sub, nullptr, [o, sub] {
                o->attention_given = sub->count("--attention") > 0;  // refused with an engine device
                return run_generate(*o);
            }};
}

}  // namespace dsv2::app
