// dsv2 generate: text in, text out, through the tokenizer, one prefill and decode steps over the
// latent cache, on the oracle (--device cpu) or the engine (--device host or cuda). Greedy by
// default; seeded temperature / top-p sampling on request.
#include <chrono>
#include <cstdio>
#include <iostream>

#include "commands.hpp"
#include "dsv2/sampling.hpp"
#include "dsv2/tokenizer.hpp"
#include "engine_source.hpp"
#include "model_source.hpp"

namespace dsv2::app {

namespace {
double seconds_since(std::chrono::steady_clock::time_point t0) {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

// The prompt's ids (BOS added), checked against the model: not empty, inside the vocabulary, and
// with --max-new-tokens within max_position_embeddings.
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

// The loop shared by the oracle and the engine: `step(tokens, which)` runs the next tokens through
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

// generate on the engine: its cache holds the prompt and every new token. The calls run untraced,
// so that only the logits leave the device; those are checked for NaN and Inf, and when one
// appears the calls so far are replayed on a fresh cache under a guard that names the first
// intermediate holding it.
GenerateResult generate_on_engine(const Model<float>& model, engine::Backend& backend, engine::WeightType type,
                                  const Tokenizer& tok, const GenerateOptions& o) {
    const Config& cfg = model.config();
    std::vector<int32_t> ids = encode_prompt(cfg, tok, o);
    engine::Engine engine(cfg, model.weights(), backend, type, int64_t(ids.size()) + o.max_new_tokens);
    std::vector<std::vector<int32_t>> calls;  // every call so far, for the replay
    return sample_loop(cfg, tok, o, /*stream=*/true, std::move(ids), Logits::last,
                       [&](const std::vector<int32_t>& part, Logits which) {
                           Mat<float> logits = engine.forward(part, nullptr, which);
                           calls.push_back(part);
                           if (logits.allFinite()) return logits;
                           Trace guard(nullptr, /*store=*/false);
                           engine.reset();
                           for (const std::vector<int32_t>& c : calls)
                               if (guard.first_nonfinite().empty()) engine.forward(c, &guard, Logits::all);
                           throw std::runtime_error("non-finite values (NaN or Inf) first appear in " +
                                                    (guard.first_nonfinite().empty() ? std::string("logits")
                                                                                     : guard.first_nonfinite()));
                       });
}

}  // namespace

GenerateResult generate_text(const Model<float>& model, const Tokenizer& tok, const GenerateOptions& o, bool stream,
                             Trace* trace) {
    const Config& cfg = model.config();
    std::vector<int32_t> ids = encode_prompt(cfg, tok, o);
    const AttentionForm form = o.attention == "naive" ? AttentionForm::naive : AttentionForm::absorbed;
    LatentCache<float> cache(cfg, int64_t(ids.size()) + o.max_new_tokens);
    // Sampling needs the last position's logits only; a trace that records the logits gets them all.
    const Logits which = trace && trace->wants("logits") ? Logits::all : Logits::last;
    return sample_loop(cfg, tok, o, stream, std::move(ids), which, [&](const std::vector<int32_t>& part, Logits w) {
        Mat<float> logits = model.forward(part, cache, form, trace, w);
        if (trace && !trace->first_nonfinite().empty())  // stop at the first NaN or Inf, before sampling from it
            throw std::runtime_error("non-finite values (NaN or Inf) first appear in " + trace->first_nonfinite());
        return logits;
    });
}

int run_generate(const GenerateOptions& o) {
    check_device_options(o.device, o.dtype, "fp32", o.attention_given, o.attention);
    std::unique_ptr<engine::Backend> backend = o.device == "cpu" ? nullptr : make_engine_backend(o.device);
    const auto [tok, model] = load_text_model(o.model_dir);
    GenerateResult r;
    std::string ran;  // the engine, when it ran
    if (!backend) {
        Trace guard(nullptr, /*store=*/false);
        r = generate_text(model, tok, o, /*stream=*/true, &guard);
    } else {
        r = generate_on_engine(model, *backend, engine::weight_type_from_string(o.dtype), tok, o);
        ran = "; " + engine_label(*backend) + ", " + o.dtype + " weights";
    }
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

}  // namespace dsv2::app
