// The embedded model, end to end: dsv2 demo, dsv2 generate (greedy and seeded sampling against
// the library's own loop, on the oracle and on the engine's CPU twin), dsv2 inspect and forward
// --routing-stats on a real checkpoint.
#include <nlohmann/json.hpp>

#include "dsv2/checkpoint.hpp"
#include "dsv2/model.hpp"
#include "dsv2/moe.hpp"
#include "dsv2/sampling.hpp"
#include "dsv2/tokenizer.hpp"
#include "support.hpp"

using namespace dsv2;
using dsv2::test::dsv2_run;
using dsv2::test::quote;
using dsv2::test::Run;
using dsv2::test::TempDir;

namespace {

const std::string kModel = std::string(DSV2_SOURCE_DIR) + "/data/models/kjv-tiny";

// Greedy or sampled continuation computed here with the library (the same loop dsv2 generate
// runs: prompt with BOS, prefill, then one token at a time through the cache).
std::string continuation(const std::string& prompt, int n, const SamplingOptions& opt, uint64_t seed) {
    const Tokenizer tok = Tokenizer::from_file(kModel);
    const Config cfg = config_from_file(kModel);
    const Model<float> model(cfg, load_weights<float>(kModel, cfg));
    LatentCache<float> cache(cfg);
    SamplingRng rng(seed);
    Mat<float> logits = model.forward(tok.encode(prompt, true), cache);
    std::vector<int32_t> out;
    for (int i = 0; i < n; ++i) {
        const int32_t next = sample_token(logits.row(logits.rows() - 1).data(), cfg.V, opt, rng);
        if (next == tok.eos_id()) break;
        out.push_back(next);
        if (i + 1 < n) logits = model.forward({next}, cache);
    }
    return tok.decode(out, true);
}

}  // namespace

TEST_CASE("the embedded model loads: every tensor present, bf16, 5.9M parameters") {
    const Config cfg = config_from_file(kModel);
    const CheckpointReport r = inspect_checkpoint(kModel, cfg);
    CHECK(r.ok());
    CHECK(r.unexpected.empty());
    CHECK(count_params(cfg).total == 5899136);
    CHECK(Tokenizer::from_file(kModel).vocab_size() <= cfg.V);
    TempDir tmp;
    const Run i = dsv2_run("inspect " + quote(kModel) + " --json", tmp.path, tmp.path);
    REQUIRE(i.rc == 0);
    const nlohmann::json j = nlohmann::json::parse(i.out);
    CHECK(j["ok"] == true);
    CHECK(j["dtypes"]["BF16"] == int64_t(r.tensors.size()));
    CHECK(j["cache_elements_per_token"] == cfg.L * (cfg.d_c + cfg.d_R));
}

TEST_CASE("dsv2 generate prints the prompt and the library's own continuation, greedy and sampled") {
    TempDir tmp;
    const std::string prompt = "And God said";
    const Run g = dsv2_run("generate --model " + quote(kModel) + " --prompt " + quote(prompt) + " --max-new-tokens 12",
                           tmp.path, tmp.path);
    REQUIRE(g.rc == 0);
    CHECK(g.out == prompt + continuation(prompt, 12, SamplingOptions{}, 0) + "\n");
    CHECK(g.err.find("tokens/s") != std::string::npos);
    CHECK(g.err.find("greedy") != std::string::npos);
    const std::string sampled = "generate --model " + quote(kModel) + " --prompt " + quote(prompt) +
                                " --max-new-tokens 12 --temperature 0.8 --top-p 0.9 --seed 5";
    const Run s1 = dsv2_run(sampled, tmp.path, tmp.path), s2 = dsv2_run(sampled, tmp.path, tmp.path);
    REQUIRE(s1.rc == 0);
    CHECK(s1.out == s2.out);  // seeded: reproducible
    CHECK(s1.out == prompt + continuation(prompt, 12, SamplingOptions{0.8, 0.9}, 5) + "\n");
    // the naive form picks the same greedy tokens
    const Run n = dsv2_run("generate --model " + quote(kModel) + " --prompt " + quote(prompt) +
                               " --max-new-tokens 12 --attention naive",
                           tmp.path, tmp.path);
    CHECK(n.out == g.out);
}

TEST_CASE("dsv2 generate --device host: the engine writes the oracle's greedy text") {
    TempDir tmp;
    const std::string prompt = "In the beginning";
    const std::string args = "generate --model " + quote(kModel) + " --prompt " + quote(prompt) + " --max-new-tokens 20";
    const Run cpu = dsv2_run(args, tmp.path, tmp.path), host = dsv2_run(args + " --device host", tmp.path, tmp.path);
    INFO(cpu.err << host.err);
    REQUIRE(cpu.rc == 0);
    REQUIRE(host.rc == 0);
    CHECK(host.out == cpu.out);
    CHECK(host.out == prompt + continuation(prompt, 20, SamplingOptions{}, 0) + "\n");
    CHECK(host.out.size() > prompt.size() + 20);  // it wrote something
    CHECK(host.err.find("greedy; host (CPU twin of the CUDA path), fp32 weights") != std::string::npos);
    CHECK(host.err.find("tokens/s") != std::string::npos);
    // bf16 weights run too, and say so.
    const Run bf16 = dsv2_run(args + " --device host --dtype bf16", tmp.path, tmp.path);
    REQUIRE(bf16.rc == 0);
    CHECK(bf16.out.rfind(prompt, 0) == 0);
    CHECK(bf16.err.find("bf16 weights") != std::string::npos);
}

TEST_CASE("the embedded model writes KJV-like text: its greedy continuations are mostly English words of the corpus") {
    // A claim the README makes, checked loosely: most words the model writes are common KJV words.
    const std::string text = continuation("In the beginning", 40, SamplingOptions{}, 0);
    const std::vector<std::string> common = {"the", "and", "of", "LORD", "God", "unto", "that", "he", "in", "his",
                                             "shall", "is", "be", "to", "a", "they", "I", "him", "not", "thou"};
    int hits = 0;
    for (const std::string& w : common) hits += text.find(" " + w + " ") != std::string::npos ? 1 : 0;
    INFO(text);
    CHECK(hits >= 5);
}

TEST_CASE("dsv2 demo runs the embedded model and checks both attention forms") {
    TempDir tmp;
    const Run d = dsv2_run("demo --max-new-tokens 16", tmp.path, tmp.path);
    INFO(d.err);
    REQUIRE(d.rc == 0);
    CHECK(d.out.find("text    And God said") != std::string::npos);
    CHECK(d.out.find("check   naive attention") != std::string::npos);
    CHECK(d.out.find("tokens per routed expert") != std::string::npos);
    // The GPU comparison: its verdict where a GPU is, else one line saying why it was skipped.
    const bool skipped = d.out.find("\ngpu     skipped: ") != std::string::npos;
    const bool ran = d.out.find("\ngpu     cuda: ") != std::string::npos;
    CHECK(skipped != ran);
    if (skipped) CHECK(d.out.find("dsv2 compare --model " + kModel + " --device cuda") != std::string::npos);
    if (ran) CHECK(d.out.find("        PASS all ") != std::string::npos);
    const Run n = dsv2_run("demo --max-new-tokens 8 --attention naive --temperature 0", tmp.path, tmp.path);
    REQUIRE(n.rc == 0);
    CHECK(n.out.find("check   absorbed attention") != std::string::npos);
    CHECK(n.out.find("greedy") != std::string::npos);
}

TEST_CASE("forward --routing-stats prints the balance terms that routing_stats computes") {
    TempDir tmp;
    const std::string toks = "0,400,500,600,700,800,900,1000";
    const Run r = dsv2_run("forward --model " + quote(kModel) + " --tokens " + toks +
                               " --out x.npy --routing-stats --devices 2 --device-limit 1",
                           tmp.path, tmp.path);
    REQUIRE(r.rc == 0);
    // The same from the library: layer 3's line.
    const Config cfg = config_from_file(kModel);
    const Model<float> model(cfg, load_weights<float>(kModel, cfg));
    LatentCache<float> cache(cfg);
    Trace trace;
    model.forward({0, 400, 500, 600, 700, 800, 900, 1000}, cache, AttentionForm::absorbed, &trace);
    const RoutingStats st = routing_stats(trace.at("layers.3.moe.topk_idx").data.cast<int32_t>(),
                                          trace.at("layers.3.moe.scores").data, cfg.K_r, 2, 1);
    char want[64];
    std::snprintf(want, sizeof want, "%10.4f %10.4f %10.4f", st.expert_balance, st.device_balance, st.comm_balance);
    INFO(r.out);
    CHECK(r.out.find(want) != std::string::npos);
    CHECK(r.out.find("D = 2 devices of 4 experts, M = 1") != std::string::npos);
}
