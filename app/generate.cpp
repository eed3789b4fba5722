// dsv2 generate: text in, text out, through the tokenizer, one prefill and decode steps over the
// latent cache. Greedy by default; seeded temperature / top-p sampling on request.
#include <chrono>
#include <cstdio>
#include <iostream>

#include "commands.hpp"
#include "dsv2/sampling.hpp"
#include "dsv2/tokenizer.hpp"
#include "model_source.hpp"

namespace dsv2::app {

namespace {
double seconds_since(std::chrono::steady_clock::time_point t0) {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}
}  // namespace

GenerateResult generate_text(const Model<float>& model, const Tokenizer& tok, const GenerateOptions& o, bool stream,
                             Trace* trace) {
    const Config& cfg = model.config();
    GenerateResult r;
    if (o.prompt.empty()) throw std::invalid_argument("--prompt: must not be empty");
    try {
        r.prompt_ids = tok.encode(o.prompt, /*add_special=*/true);
    } catch (const std::invalid_argument& e) {  // invalid UTF-8: the prompt's fault, not the tokenizer's
        const std::string what = e.what();
        const size_t at = what.find("not valid UTF-8");
        throw std::invalid_argument("--prompt: " + (at == std::string::npos ? what : "is " + what.substr(at)));
    }
    if (r.prompt_ids.empty()) throw std::invalid_argument("--prompt: encodes to no tokens");
    for (int32_t id : r.prompt_ids)
        if (id >= cfg.V)
            throw std::invalid_argument("the tokenizer gives id " + std::to_string(id) + ", outside the model's vocabulary of " +
                                        std::to_string(cfg.V));
    const int64_t total = int64_t(r.prompt_ids.size()) + o.max_new_tokens;
    if (total > cfg.max_position_embeddings)
        throw std::invalid_argument("prompt + --max-new-tokens = " + std::to_string(total) + " tokens exceeds max_position_embeddings " +
                                    std::to_string(cfg.max_position_embeddings));
    const AttentionForm form = o.attention == "naive" ? AttentionForm::naive : AttentionForm::absorbed;
    LatentCache<float> cache(cfg, total);
    SamplingRng rng(o.seed);
    const SamplingOptions sopt{o.temperature, o.top_p};

    auto t0 = std::chrono::steady_clock::now();
    auto check = [&] {  // stop at the first NaN or Inf, before sampling from it
        if (trace && !trace->first_nonfinite().empty())
            throw std::runtime_error("non-finite values (NaN or Inf) first appear in " + trace->first_nonfinite());
    };
    // Sampling needs the last position's logits only; a trace that records the logits gets them all.
    const Logits which = trace && trace->wants("logits") ? Logits::all : Logits::last;
    Mat<float> logits = model.forward(r.prompt_ids, cache, form, trace, which);
    check();
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
        if (i + 1 < o.max_new_tokens) {
            logits = model.forward({next}, cache, form, trace);
            check();
        }
    }
    r.decode_seconds = seconds_since(t0);
    r.text = tok.decode(r.new_ids, /*skip_special=*/true);
    if (stream) std::cout << r.text.substr(std::min(shown.size(), r.text.size())) << "\n";
    return r;
}

int run_generate(const GenerateOptions& o) {
    const auto [tok, model] = load_text_model(o.model_dir);
    Trace guard(nullptr, /*store=*/false);
    const GenerateResult r = generate_text(model, tok, o, /*stream=*/true, &guard);
    std::fprintf(stderr, "dsv2 generate: prompt %zu tokens in %.1f ms (%.0f tokens/s); %zu new tokens in %.1f ms (%.1f tokens/s), %s\n",
                 r.prompt_ids.size(), 1e3 * r.prefill_seconds, double(r.prompt_ids.size()) / r.prefill_seconds,
                 r.new_ids.size(), 1e3 * r.decode_seconds,
                 r.new_ids.empty() ? 0.0 : double(r.new_ids.size()) / r.decode_seconds,
                 o.temperature > 0 ? ("sampled, T = " + std::to_string(o.temperature) + ", top-p = " + std::to_string(o.top_p) +
                                      ", seed " + std::to_string(o.seed)).c_str()
                                   : "greedy");
    return 0;
}

}  // namespace dsv2::app
