// dsv2: the command-line front of the oracle and of the CUDA path's engine. Every error is one
// line on stderr and a non-zero exit; no command leaves a partial output file.
#include <CLI/CLI.hpp>

#include <cmath>
#include <exception>
#include <iostream>

#include "commands.hpp"

namespace {

// CLI11 reads "-1" into an unsigned as 2^64 − 1 and NaN passes its Range checks (every comparison
// with NaN is false): these validators refuse what the conversions would silently change.
const CLI::Validator kUnsigned64(
    [](std::string& s) -> std::string {
        if (s.empty() || s.find_first_not_of("0123456789") != std::string::npos)
            return "must be a non-negative integer, got \"" + s + "\"";
        if (s.size() > 20 || (s.size() == 20 && s > "18446744073709551615")) return "is larger than 2^64 - 1: " + s;
        return {};
    },
    "UINT64");
const CLI::Validator kFinite(
    [](std::string& s) -> std::string {
        try {
            size_t used = 0;
            const double v = std::stod(s, &used);
            if (used != s.size() || !std::isfinite(v)) return "must be a finite number, got \"" + s + "\"";
        } catch (const std::exception&) {
            return "must be a finite number, got \"" + s + "\"";
        }
        return {};
    },
    "FINITE");

void add_source(CLI::App* cmd, dsv2::app::ModelSource& src, bool model_too) {
    auto* p = cmd->add_option("--preset", src.preset, "deepseek-v2, deepseek-v2-lite or tiny");
    cmd->add_option("--seed", src.seed, "seed of a preset's random weights")->check(kUnsigned64)->capture_default_str();
    if (model_too) {
        auto* m = cmd->add_option("--model", src.model_dir, "Hugging Face checkpoint directory (config.json + safetensors)");
        p->excludes(m);
    }
}

void require_source(const dsv2::app::ModelSource& src, const char* cmd) {
    if (src.preset.empty() && src.model_dir.empty())
        throw CLI::ValidationError(std::string(cmd) + ": give --preset NAME or --model DIR");
}

}  // namespace

int main(int argc, char** argv) {
    CLI::App app{"dsv2 — DeepSeek-V2 (MLA + DeepSeekMoE) reference implementation"};
    app.require_subcommand(1);
    app.set_version_flag("--version", "dsv2 0.1.0");

    dsv2::app::DemoOptions demo;
    auto* c_demo = app.add_subcommand("demo", "the main job: prompt → prefill → decode through the latent cache, on the embedded default model");
    c_demo->add_option("--model", demo.model_dir, "checkpoint directory with tokenizer.json (default: the embedded data/models/kjv-tiny)");
    c_demo->add_option("--prompt", demo.prompt, "prompt text")->capture_default_str();
    c_demo->add_option("--max-new-tokens", demo.max_new_tokens, "tokens to generate")->check(CLI::Range(int64_t(1), int64_t(4096)))->capture_default_str();
    c_demo->add_option("--temperature", demo.temperature, "0 = greedy; > 0 samples")->check(kFinite & CLI::Range(0.0, 100.0))->capture_default_str();
    c_demo->add_option("--top-p", demo.top_p, "nucleus sampling mass, in (0, 1]")->check(kFinite & CLI::Range(1e-9, 1.0))->capture_default_str();
    c_demo->add_option("--seed", demo.seed, "seed of the sampler")->check(kUnsigned64)->capture_default_str();
    c_demo->add_option("--attention", demo.attention, "naive or absorbed")->check(CLI::IsMember({"naive", "absorbed"}))->capture_default_str();

    dsv2::app::ForwardOptions fwd;
    auto* c_fwd = app.add_subcommand("forward", "run tokens through the model (prefill, then decode one at a time) and write the logits as .npy");
    add_source(c_fwd, fwd.source, true);
    c_fwd->add_option("--tokens", fwd.tokens, "token ids, comma-separated: 3,14,15")->required();
    c_fwd->add_option("--prefill", fwd.prefill, "tokens in the first (prefill) call; the rest are decoded one at a time (default: all)");
    c_fwd->add_option("--attention", fwd.attention, "naive or absorbed")->check(CLI::IsMember({"naive", "absorbed"}))->capture_default_str();
    c_fwd->add_option("--precision", fwd.precision, "fp32 or fp64 (the oracle's; the engine computes in fp32)")->check(CLI::IsMember({"fp32", "fp64"}))->capture_default_str();
    c_fwd->add_option("--device", fwd.device, "cpu (the oracle), host (the CUDA path's engine on its CPU twins) or cuda (the engine on the GPU)")->check(CLI::IsMember({"cpu", "host", "cuda"}))->capture_default_str();
    c_fwd->add_option("--dtype", fwd.dtype, "the engine's weights (--device host or cuda): fp32 or bf16")->check(CLI::IsMember({"fp32", "bf16"}))->capture_default_str();
    c_fwd->add_option("--out", fwd.out, "logits of every position, float32 [tokens, vocab], NumPy .npy")->required();
    c_fwd->add_option("--dump", fwd.dump, "also write every named intermediate (fp32; indices I32) as .safetensors");
    auto* rs_flag = c_fwd->add_flag("--routing-stats", fwd.routing_stats, "print, per MoE layer, the tokens per expert and the paper's expert-, device- and communication-balance terms");
    c_fwd->add_option("--devices", fwd.devices, "D, devices the experts are split over (default: n_group)")->check(CLI::Range(int64_t(1), int64_t(1) << 20))->needs(rs_flag);
    c_fwd->add_option("--device-limit", fwd.device_limit, "M, devices a token may reach (default: topk_group)")->check(CLI::Range(int64_t(1), int64_t(1) << 20))->needs(rs_flag);

    dsv2::app::CompareOptions cmp;
    auto* c_cmp = app.add_subcommand("compare", "the fp64 oracle against the intermediates another implementation dumped (--against FILE.safetensors) or against dsv2's engine (--device cuda or host): every intermediate's error, PASS or FAIL at the dtype's bound, the first divergence");
    add_source(c_cmp, cmp.source, true);
    c_cmp->add_option("--against", cmp.against, "safetensors file of intermediates under the names of docs/intermediates.md (a dsv2 forward --dump, PyTorch, your kernels); without it, dsv2's engine runs on --device");
    c_cmp->add_option("--device", cmp.device, "without --against: the engine's device, cuda (the GPU) or host (the CUDA path's CPU twin)")->check(CLI::IsMember({"cuda", "host"}))->capture_default_str();
    c_cmp->add_option("--tokens", cmp.tokens, "token ids, comma-separated: 3,14,15 (default: the file's \"tokens\" tensor; for the engine, token i = (1 + 7919 i) mod V, i < 12)");
    c_cmp->add_option("--prefill", cmp.prefill, "tokens in the first (prefill) call; the rest are decoded one at a time (default: all with --against; all but the last 4 with --device)");
    c_cmp->add_option("--attention", cmp.attention, "the oracle's form against a file: naive or absorbed (the engine chooses per call)")->check(CLI::IsMember({"naive", "absorbed"}))->capture_default_str();
    c_cmp->add_option("--dtype", cmp.dtype, "precision the file was computed in, or the engine's weights; sets the bound: fp32 (1e-5) or bf16 (2e-2, expert near ties allowed)")->check(CLI::IsMember({"fp32", "bf16"}))->capture_default_str();
    c_cmp->add_flag("--json", cmp.json, "machine-readable output");

    dsv2::app::ModelSource kv_src;
    int64_t context = 4096, groups = 8, bpe = 2;
    bool kv_json = false;
    auto* c_kv = app.add_subcommand("kv-cache", "KV-cache size per token of MHA, GQA, MQA and MLA (the paper's Table 1)");
    add_source(c_kv, kv_src, true);
    c_kv->add_option("--context", context, "context length for the totals")->check(CLI::Range(int64_t(1), int64_t(1) << 40))->capture_default_str();
    c_kv->add_option("--groups", groups, "GQA groups to compare with")->check(CLI::Range(int64_t(1), int64_t(1) << 20))->capture_default_str();
    c_kv->add_option("--bytes-per-element", bpe, "bytes per cached element (2 = bf16)")->check(CLI::Range(int64_t(1), int64_t(8)))->capture_default_str();
    c_kv->add_flag("--json", kv_json, "machine-readable output");

    dsv2::app::ModelSource p_src;
    bool p_json = false;
    auto* c_params = app.add_subcommand("params", "total and activated parameter counts");
    add_source(c_params, p_src, true);
    c_params->add_flag("--json", p_json, "machine-readable output");

    dsv2::app::GenerateOptions gen;
    auto* c_gen = app.add_subcommand("generate", "text generation from a checkpoint directory with its tokenizer.json");
    c_gen->add_option("--model", gen.model_dir, "Hugging Face checkpoint directory (config.json, safetensors, tokenizer.json)")->required();
    c_gen->add_option("--prompt", gen.prompt, "prompt text")->required();
    c_gen->add_option("--max-new-tokens", gen.max_new_tokens, "tokens to generate at most")->check(CLI::Range(int64_t(1), int64_t(1) << 20))->capture_default_str();
    c_gen->add_option("--temperature", gen.temperature, "0 = greedy; > 0 samples")->check(kFinite & CLI::Range(0.0, 100.0))->capture_default_str();
    c_gen->add_option("--top-p", gen.top_p, "nucleus sampling mass, in (0, 1]")->check(kFinite & CLI::Range(1e-9, 1.0))->capture_default_str();
    c_gen->add_option("--seed", gen.seed, "seed of the sampler")->check(kUnsigned64)->capture_default_str();
    c_gen->add_option("--attention", gen.attention, "naive or absorbed (the oracle's; the engine chooses per call)")->check(CLI::IsMember({"naive", "absorbed"}))->capture_default_str();
    c_gen->add_option("--device", gen.device, "cpu (the oracle), host (the CUDA path's engine on its CPU twins) or cuda (the engine on the GPU)")->check(CLI::IsMember({"cpu", "host", "cuda"}))->capture_default_str();
    c_gen->add_option("--dtype", gen.dtype, "the engine's weights (--device host or cuda): fp32 or bf16")->check(CLI::IsMember({"fp32", "bf16"}))->capture_default_str();

    dsv2::app::BenchOptions bench;
    auto* c_bench = app.add_subcommand("bench", "speed of the oracle on this CPU: prefill and decode tokens/s, GFLOP/s of projections, attention and experts, cache bytes, peak memory, beside the machine's GEMM rate and memory bandwidth");
    add_source(c_bench, bench.source, true);
    c_bench->add_option("--layers", bench.layers, "run only the first N layers (a real config reduced to a few layers)")->check(CLI::Range(int64_t(1), int64_t(1) << 20));
    c_bench->add_option("--prefill", bench.prefill, "prompt tokens of the prefill measurement")->check(CLI::Range(int64_t(1), int64_t(1) << 20))->capture_default_str();
    c_bench->add_option("--contexts", bench.contexts, "decode context lengths, comma-separated")->capture_default_str();
    c_bench->add_option("--steps", bench.steps, "timed decode steps per context")->check(CLI::Range(int64_t(1), int64_t(1) << 20))->capture_default_str();
    c_bench->add_option("--attention", bench.attention, "absorbed, naive or both")->check(CLI::IsMember({"naive", "absorbed", "both"}))->capture_default_str();
    c_bench->add_option("--precision", bench.precision, "fp32 or fp64")->check(CLI::IsMember({"fp32", "fp64"}))->capture_default_str();
    c_bench->add_option("--threads", bench.threads, "OpenMP threads (default: OMP_NUM_THREADS or all cores)")->check(CLI::Range(1, 4096));
    auto* no_floors = c_bench->add_flag("!--no-floors", bench.floors, "skip measuring the GEMM rate and the memory bandwidth");
    c_bench->add_flag("!--no-parts", bench.parts, "skip timing the parts alone");
    (void)no_floors;
    c_bench->add_option("--json", bench.json, "also write every figure to this JSON file");

    std::string inspect_dir;
    bool inspect_tensors = false, inspect_json = false;
    auto* c_inspect = app.add_subcommand("inspect", "what a checkpoint directory holds: tensors, shapes, dtypes, parameters, cache size, and what is missing or unexpected");
    c_inspect->add_option("dir", inspect_dir, "Hugging Face checkpoint directory")->required();
    c_inspect->add_flag("--tensors", inspect_tensors, "list every tensor");
    c_inspect->add_flag("--json", inspect_json, "machine-readable output");

    try {
        app.parse(argc, argv);
        if (*c_fwd) require_source(fwd.source, "forward");
        if (*c_cmp) require_source(cmp.source, "compare");
        if (*c_kv) require_source(kv_src, "kv-cache");
        if (*c_params) require_source(p_src, "params");
        if (*c_bench) require_source(bench.source, "bench");
        // Options the engine refuses or that change compare's mode only when given explicitly.
        fwd.attention_given = c_fwd->count("--attention") > 0;
        gen.attention_given = c_gen->count("--attention") > 0;
        cmp.attention_given = c_cmp->count("--attention") > 0;
        cmp.device_given = c_cmp->count("--device") > 0;
    } catch (const CLI::CallForHelp& e) {
        return app.exit(e);
    } catch (const CLI::CallForAllHelp& e) {
        return app.exit(e);
    } catch (const CLI::CallForVersion& e) {
        return app.exit(e);
    } catch (const CLI::ParseError& e) {
        if (app.get_subcommands().empty() && argc > 1 && argv[1][0] != '-') {
            std::cerr << "dsv2: error: unknown command \"" << argv[1] << "\" (commands: bench, compare, demo, forward, generate, inspect, kv-cache, params)\n";
            return 2;
        }
        std::cerr << "dsv2: error: " << e.what() << " (see dsv2 --help)\n";
        return e.get_exit_code() != 0 ? e.get_exit_code() : 2;
    }

    try {
        if (*c_demo) return dsv2::app::run_demo(demo);
        if (*c_fwd) return dsv2::app::run_forward(fwd);
        if (*c_cmp) return dsv2::app::run_compare(cmp);
        if (*c_kv) return dsv2::app::run_kv_cache(kv_src, context, groups, bpe, kv_json);
        if (*c_params) return dsv2::app::run_params(p_src, p_json);
        if (*c_gen) return dsv2::app::run_generate(gen);
        if (*c_bench) return dsv2::app::run_bench(bench);
        if (*c_inspect) return dsv2::app::run_inspect(inspect_dir, inspect_tensors, inspect_json);
    } catch (const std::exception& e) {
        std::cerr << "dsv2: error: " << e.what() << "\n";
        return 1;
    }
    return 0;
}
