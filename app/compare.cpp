// dsv2 compare: the fp64 oracle against another implementation, by the names of
// docs/intermediates.md —
//   --against FILE.safetensors: the intermediates another implementation (PyTorch, someone's own
//     kernels, a dsv2 dump) wrote;
//   without --against: dsv2's own engine (dsv2/engine/engine.hpp) run here on --device cuda (the
//     GPU) or host (its CPU twin), its trace turned into the same structure as a file.
// One line per intermediate, in the oracle's forward order: max |Δ|, ‖Δ‖/‖ref‖ (ref = the oracle)
// and PASS or FAIL at the bound of the dtype; expert indices must match exactly, or in bf16 differ
// only at near ties. The last line names the first divergence. See docs/compare.md.
#include "cli.hpp"
#include "dsv2/engine/runner.hpp"

#include <algorithm>
#include <climits>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <iostream>
#include <limits>
#include <map>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "dsv2/io.hpp"
#include "engine_source.hpp"
#include "model_source.hpp"

namespace dsv2::app {

namespace {

/// dsv2 compare: the fp64 oracle against another implementation, every named intermediate of
/// docs/intermediates.md, one line each, the first divergence named. The other implementation is
/// the intermediates a file holds (`--against`), or else dsv2's own engine run here on `device`
/// (app/engine_source.hpp). Exit 0 when every intermediate is within the dtype's bound, 1 otherwise.
struct CompareOptions {
    ModelSource source;
    std::string against;  ///< FILE.safetensors; empty: compare the engine on `device`
    std::string tokens;   ///< "3,14,15"; empty: the `tokens` tensor of FILE, or the default sequence
    int64_t prefill = -1;  ///< tokens in the first call; -1 = all
    std::string attention = "absorbed";  ///< the oracle's form against FILE (the engine chooses per call)
    bool attention_given = false;
    std::string dtype = "fp32";  ///< FILE's precision, or the engine's weights: fp32 or bf16 (sets the bound)
    std::string device = "cuda";  ///< the engine's device without --against: cuda or host
    bool device_given = false;
    bool json = false;
};


// The bounds, the near-tie rule and the causal cut are the agreement module's
// (dsv2/engine/agreement.hpp), shared with the engine tests and the demo.
using engine::Comparison;
using engine::Row;
using engine::Tensor;
using engine::Tensors;
using engine::Tolerance;

// Engine mode, no --prefill: the last this many tokens are decoded one call each (absorbed form).
constexpr int64_t kEngineDecodeCalls = 4;

// "--against FILE" for error messages.
std::string file_label(const std::string& path) { return "--against " + path; }

using engine::sci;
using engine::shape_text;

// ---------------------------------------------------------------------------------------------
// FILE: every tensor as [rows, width] in double (dimensions after the first flattened, so
// [T, n_h, d_R] reads as the heads side by side), the integer ones marked (engine::Tensor); its
// tokens, if any.

struct AgainstFile {
    Tensors tensors;  ///< every tensor but `tokens`
    bool has_tokens = false;
    std::vector<int32_t> tokens;  ///< the `tokens` tensor, when present
    /// A dump of dsv2's engine (dsv2 forward --device host|cuda --dump): its metadata says the
    /// attention form was chosen per call, and with which schedule (prefill, -1 when not said).
    bool per_call = false;
    int64_t prefill = -1;
};

AgainstFile load_against(const std::string& path) {
    std::unique_ptr<SafetensorsFile> f;
    try {
        f = std::make_unique<SafetensorsFile>(path);  // validates header, dtypes, shapes, offsets
    } catch (const std::exception& e) {
        throw std::runtime_error("--against " + std::string(e.what()));
    }
    AgainstFile a;
    for (const auto& [name, e] : f->tensors()) {
        const bool integer = e.dtype == DType::I32 || e.dtype == DType::I64;
        auto read_integers = [&, &e = e] {
            std::vector<int64_t> v(size_t(e.numel()));
            const uint8_t* p = f->bytes(e);
            for (size_t i = 0; i < v.size(); ++i) {
                if (e.dtype == DType::I32) {
                    int32_t x;
                    std::memcpy(&x, p + 4 * i, 4);
                    v[i] = x;
                } else {
                    std::memcpy(&v[i], p + 8 * i, 8);
                }
            }
            return v;
        };
        if (name == "tokens") {
            if (e.dtype != DType::I32 || e.shape.size() != 1)
                throw std::invalid_argument(file_label(path) + ": tensor \"tokens\" must be I32 [T] (the token ids), not " +
                                            to_string(e.dtype) + " " + shape_text(e.shape));
            if (e.shape[0] == 0) throw std::invalid_argument(file_label(path) + ": tensor \"tokens\" holds no tokens");
            for (int64_t t : read_integers()) a.tokens.push_back(int32_t(t));
            a.has_tokens = true;
            continue;
        }
        Tensor t;
        t.shape = e.shape;
        t.integer = integer;
        const int64_t rows = e.shape.empty() ? 1 : e.shape[0];
        const int64_t width = rows == 0 ? 0 : e.numel() / rows;
        t.data.resize(rows, width);
        if (integer) {
            const std::vector<int64_t> v = read_integers();
            for (size_t i = 0; i < v.size(); ++i) t.data.data()[i] = double(v[i]);
        } else {
            f->read_as<double>(name, t.data.data());
        }
        a.tensors.emplace(name, std::move(t));
    }
    const auto& meta = f->metadata();
    const auto format = meta.find("format"), attention = meta.find("attention"), prefill = meta.find("prefill");
    if (format != meta.end() && format->second == "dsv2-intermediates" && attention != meta.end() &&
        attention->second.rfind("per call", 0) == 0) {
        a.per_call = true;
        if (prefill != meta.end() && !prefill->second.empty() && prefill->second.size() < 19 &&
            prefill->second.find_first_not_of("0123456789") == std::string::npos)
            a.prefill = std::stoll(prefill->second);
    }
    return a;
}

// The tokens to run: FILE's `tokens` tensor, or --tokens; both must agree when both are given.
std::vector<int32_t> resolve_tokens(const CompareOptions& o, const AgainstFile& a) {
    if (o.tokens.empty()) {
        if (!a.has_tokens)
            throw std::invalid_argument(file_label(o.against) +
                                        ": has no \"tokens\" tensor (I32 [T]); give the token ids the intermediates were computed for with --tokens 3,14,15");
        return a.tokens;
    }
    const std::vector<int32_t> given = parse_tokens(o.tokens);
    if (a.has_tokens && given != a.tokens) {
        std::string file_tokens;
        for (int32_t t : a.tokens) file_tokens += (file_tokens.empty() ? "" : ",") + std::to_string(t);
        throw std::invalid_argument("--tokens " + o.tokens + ": differs from the \"tokens\" tensor of " + o.against + " (" +
                                    file_tokens + "); leave --tokens out to use the file's");
    }
    return given;
}

// ---------------------------------------------------------------------------------------------
// The oracle: fp64, one prefill of `prefill` tokens, then one token per call, as dsv2 forward.

void check_oracle_finite(const Trace& trace) {
    if (!trace.first_nonfinite().empty())
        throw std::runtime_error("the oracle's non-finite values (NaN or Inf) first appear in " + trace.first_nonfinite() +
                                 "; nothing compared");
}

// per_call: each call in the form the engine uses for a call of that many tokens
// (engine::attention_form) instead of `form`.
Trace run_oracle(const ModelSource& src, const std::vector<int32_t>& tokens, int64_t prefill, AttentionForm form,
                 bool per_call) {
    const std::unique_ptr<engine::Runner> oracle =
        engine::make_oracle_runner<double>(load_model<double>(src), {form, per_call}, int64_t(tokens.size()));
    Trace trace;  // stores every intermediate, and notes the first NaN or Inf
    for_each_call(int64_t(tokens.size()), prefill, [&](int64_t first, int64_t n) {
        oracle->forward(std::vector<int32_t>(tokens.begin() + first, tokens.begin() + first + n), &trace);
    });
    check_oracle_finite(trace);
    return trace;
}

// The engine's tokens when --tokens is not given: 12 ids spread over the vocabulary,
// token i = (1 + 7919 i) mod V (dsv2 bench's rule).
constexpr int64_t kDefaultTokens = 12;
std::vector<int32_t> default_tokens(int64_t V) {
    std::vector<int32_t> t;
    for (int64_t i = 0; i < kDefaultTokens; ++i) t.push_back(int32_t((1 + 7919 * i) % V));
    return t;
}

// ---------------------------------------------------------------------------------------------
// Output: a table, or (--json) one document.

// What was compared with what, for the table's head and the JSON document.
struct Described {
    std::string oracle;       ///< the "oracle   …" line, after the label
    std::string other_label;  ///< "against" or "engine"
    std::string other;        ///< that line, after the label
    std::string tokens;       ///< the "tokens   …" line after the label; empty: none
    std::string other_name;   ///< what "N oracle intermediates not in …" names
    nlohmann::json json;      ///< the fields that describe the run in --json
};

void print_table(const Described& d, const Comparison& c) {
    std::printf("oracle   %s\n", d.oracle.c_str());
    std::printf("%-8s %s\n", d.other_label.c_str(), d.other.c_str());
    if (!d.tokens.empty()) std::printf("tokens   %s\n", d.tokens.c_str());
    int w = 12;
    for (const Row& r : c.rows) w = std::max(w, int(r.name.size()));
    // Columns: name, shape (12), max |Δ| (9), ‖Δ‖/‖ref‖ (9), verdict. The two headers with Δ and ‖
    // are written out: printf pads by bytes, and those are 2 and 3 bytes wide.
    std::printf("%-*s  %-12s    max |Δ|  ‖Δ‖/‖ref‖\n", w, "intermediate", "shape");
    for (const Row& r : c.rows) std::printf("%s\n", engine::row_line(r, w).c_str());
    for (const std::string& n : c.not_oracle) std::printf("%s: not an oracle intermediate (in %s, not compared)\n", n.c_str(),
                                                          c.strict ? "the engine's trace" : "the file");
    if (!c.not_in_file.empty())
        std::printf("%zu oracle intermediates not in %s (first: %s)\n", c.not_in_file.size(), d.other_name.c_str(),
                    c.not_in_file.front().c_str());
    std::printf("%s\n", engine::verdict(c).c_str());
}

void print_json(const Described& d, const Comparison& c) {
    using nlohmann::json;
    auto number = [](double v) { return std::isfinite(v) ? json(v) : json(nullptr); };
    json j = d.json;
    j["bound"] = c.tol.bound;
    j["tie_tol"] = c.tol.tie_tol;
    j["near_tie_cut"] = c.cut_token >= 0 ? json{{"token", c.cut_token}, {"after", c.cut_after}} : json(nullptr);
    j["entries"] = json::array();
    for (const Row& r : c.rows) {
        json e = {{"name", r.name}, {"shape", r.missing ? json(nullptr) : json(r.file_shape)}, {"oracle_shape", r.oracle_shape},
                  {"integer", r.integer}, {"bound", r.bound}, {"pass", r.pass}};
        e["max_abs"] = r.shape_ok ? number(r.max_abs) : json(nullptr);
        e["rel"] = r.shape_ok ? number(r.rel) : json(nullptr);
        if (r.integer && r.shape_ok) {
            e["differing"] = r.differing;
            e["near_ties"] = r.near_ties;
        }
        if (r.rows_compared >= 0) e["rows_compared"] = r.rows_compared;
        if (!r.pass) e["why"] = r.why;
        j["entries"].push_back(e);
    }
    j["not_oracle_intermediates"] = c.not_oracle;
    j["oracle_intermediates_not_in_file"] = c.not_in_file;
    j["first_divergence"] = c.first_fail >= 0 ? json(c.rows[size_t(c.first_fail)].name) : json(nullptr);
    j["summary"] = engine::verdict(c);
    j["ok"] = c.ok();
    std::cout << j.dump(2) << "\n";
}

// The table or (--json) the document; exit 0 when every row passes, else 1.
int report(bool json, const Described& d, const Comparison& c) {
    if (json) print_json(d, c);
    else print_table(d, c);
    std::fflush(stdout);
    return c.ok() ? 0 : 1;
}

std::string tokens_text(const std::vector<int32_t>& tokens) {
    std::string s;
    for (int32_t t : tokens) s += (s.empty() ? "" : ",") + std::to_string(t);
    return s;
}

// "12 tokens (8 prefill + 4 decode)"
std::string schedule_text(int64_t T, int64_t prefill) {
    return std::to_string(T) + " tokens (" + std::to_string(prefill) + " prefill + " + std::to_string(T - prefill) + " decode)";
}

// ---------------------------------------------------------------------------------------------
// The two commands.

// --against FILE: the oracle in the --attention form against the file's intermediates.
int compare_file(const CompareOptions& o) {
    const AgainstFile file = load_against(o.against);
    const std::vector<int32_t> tokens = resolve_tokens(o, file);
    const int64_t T = int64_t(tokens.size());
    const std::string tokens_from = o.tokens.empty() ? file_label(o.against) + ": tensor \"tokens\"" : "--tokens";
    if (o.prefill < -1 || o.prefill > T)
        throw std::invalid_argument("--prefill " + std::to_string(o.prefill) + ": must be between 0 and the " +
                                    std::to_string(T) + " tokens of " + (o.tokens.empty() ? o.against : "--tokens"));
    // A dump of the engine: the oracle follows its forms per call and, unless told, its schedule.
    const bool per_call = file.per_call && !o.attention_given;
    const int64_t prefill = o.prefill >= 0 ? o.prefill : per_call && file.prefill >= 0 && file.prefill <= T ? file.prefill : T;
    const Config cfg = source_config(o.source);  // cheap: checks the tokens before loading weights
    for (size_t t = 0; t < tokens.size(); ++t)
        if (tokens[t] < 0 || tokens[t] >= cfg.V)
            throw std::invalid_argument(tokens_from + ": token " + std::to_string(tokens[t]) + " (item " + std::to_string(t) +
                                        ") is outside the vocabulary [0, " + std::to_string(cfg.V) + ")");
    check_fits_in_memory(cfg, 8, source_name(o.source));
    check_run_fits(cfg, T, prefill, 8, /*dump=*/true, tokens_from);

    const Trace trace = run_oracle(o.source, tokens, prefill, o.attention == "naive" ? AttentionForm::naive : AttentionForm::absorbed,
                                   per_call);
    const Tolerance tol = engine::tolerance_of(o.dtype);
    const Comparison c = engine::compare(trace, file.tensors, tol, /*strict=*/false);
    if (c.rows.empty())
        throw std::invalid_argument(file_label(o.against) +
                                    (file.tensors.empty() ? std::string(": holds no tensor but \"tokens\"")
                                                          : ": none of its tensors (first: " + file.tensors.begin()->first +
                                                                ") has the name of an oracle intermediate (see docs/intermediates.md)") +
                                    "; nothing compared");
    Described d;
    d.oracle = "fp64, " + source_name(o.source) + ", " +
               (per_call ? "each call in the engine's attention form, as the file records (" + forms_used(T, prefill) + ")"
                         : o.attention + " attention") +
               ", " + schedule_text(T, prefill);
    d.other_label = "against";
    d.other = o.against + ", " + o.dtype + ": ‖Δ‖/‖ref‖ ≤ " + sci(tol.bound, 0) + ", " + engine::index_rule(tol.tie_tol);
    d.other_name = o.against;
    d.json = {{"against", o.against},
              {"source", source_name(o.source)},
              {"oracle",
               {{"precision", "fp64"},
                {"attention", per_call ? "per call, as the engine" : o.attention},
                {"tokens", tokens},
                {"prefill", prefill}}},
              {"dtype", o.dtype}};
    return report(o.json, d, c);
}

// Without --against: the engine on --device against the oracle, every intermediate required.
int compare_engine(const CompareOptions& o) {
    if (o.attention_given)
        throw std::invalid_argument("--attention " + o.attention +
                                    ": without --against the oracle runs each call in the engine's form (naive for several "
                                    "tokens, absorbed for one-token decode); leave --attention out");
    const Config cfg = source_config(o.source);  // cheap: checks the arguments before loading weights
    const std::vector<int32_t> tokens = o.tokens.empty() ? default_tokens(cfg.V) : parse_tokens(o.tokens);
    const int64_t T = int64_t(tokens.size());
    for (size_t t = 0; t < tokens.size(); ++t)
        if (tokens[t] >= cfg.V)
            throw std::invalid_argument("--tokens: token " + std::to_string(tokens[t]) + " (item " + std::to_string(t) +
                                        ") is outside the vocabulary [0, " + std::to_string(cfg.V) + ")");
    if (o.prefill < -1 || o.prefill > T)
        throw std::invalid_argument("--prefill " + std::to_string(o.prefill) + ": must be between 0 and the " +
                                    std::to_string(T) + (o.tokens.empty() ? " default tokens" : " tokens of --tokens"));
    // Default schedule: all but the last kEngineDecodeCalls tokens in one call, those one at a
    // time, so both attention paths of the engine (naive prefill, absorbed decode) are compared.
    const int64_t prefill = o.prefill >= 0 ? o.prefill : std::max<int64_t>(T - kEngineDecodeCalls, std::min<int64_t>(T, 1));
    const engine::WeightType type = engine::weight_type_from_string(o.dtype);
    // The fp32 weights, the oracle's fp64 copy and, on the host, the engine's.
    check_fits_in_memory(cfg, 4 + 8 + engine_host_bytes(o.device, type), source_name(o.source));
    check_run_fits(cfg, T, prefill, 8, /*dump=*/true, "--tokens");
    std::unique_ptr<engine::Backend> backend = make_engine_backend(
        o.device, "; to compare without a GPU: --device host (the CUDA path's CPU twin), or --against FILE.safetensors");

    const Model<float> model = load_model<float>(o.source);
    const Comparison c = engine::check_engine(cfg, model.weights(), *backend, type, tokens, prefill);

    const std::string label = engine_label(*backend);
    Described d;
    d.oracle = "fp64, " + source_name(o.source) + (type == engine::WeightType::bf16 ? ", weights rounded to bf16" : "") + ", " +
               schedule_text(T, prefill) + ", each call in the engine's attention form (" + forms_used(T, prefill) + ")";
    d.other_label = "engine";
    d.other = label + ", " + o.dtype + " weights: ‖Δ‖/‖ref‖ ≤ " + sci(c.tol.bound, 0) + ", " + engine::index_rule(c.tol.tie_tol);
    d.tokens = tokens_text(tokens) + (o.tokens.empty() ? " (the default: token i = (1 + 7919 i) mod V, i < " +
                                                             std::to_string(kDefaultTokens) + "; --tokens to choose)"
                                                       : "");
    d.other_name = "the engine's trace";
    d.json = {{"against", nullptr},
              {"source", source_name(o.source)},
              {"engine",
               {{"device", o.device},
                {"name", label},
                {"weights", o.dtype},
                {"attention", "per call: naive for several tokens, absorbed for one"}}},
              {"oracle",
               {{"precision", "fp64"},
                {"attention", "per call, as the engine"},
                {"weights", type == engine::WeightType::bf16 ? "rounded to bf16" : "as loaded"},
                {"tokens", tokens},
                {"default_tokens", o.tokens.empty()},
                {"prefill", prefill}}},
              {"dtype", o.dtype}};
    return report(o.json, d, c);
}

int run_compare(const CompareOptions& o) {
    if (o.against.empty()) return compare_engine(o);
    if (o.device_given)
        throw std::invalid_argument("--device " + o.device + ": runs dsv2's engine to compare with the oracle, and --against " +
                                    o.against + " compares a file with it; give one or the other");
    return compare_file(o);
}

}  // namespace

Command add_compare(CLI::App& app) {
    auto o = std::make_shared<CompareOptions>();
    CLI::App* sub = app.add_subcommand("compare", "the fp64 oracle against the intermediates another implementation dumped (--against FILE.safetensors) or against dsv2's engine (--device cuda or host): every intermediate's error, PASS or FAIL at the dtype's bound, the first divergence");
    add_source(sub, o->source, true);
    sub->add_option("--against", o->against, "safetensors file of intermediates under the names of docs/intermediates.md (a dsv2 forward --dump, PyTorch, your kernels); without it, dsv2's engine runs on --device");
    sub->add_option("--device", o->device, "without --against: the engine's device, cuda (the GPU) or host (the CUDA path's CPU twin)")->check(CLI::IsMember({"cuda", "host"}))->capture_default_str();
    sub->add_option("--tokens", o->tokens, "token ids, comma-separated: 3,14,15 (default: the file's \"tokens\" tensor; for the engine, token i = (1 + 7919 i) mod V, i < 12)");
    sub->add_option("--prefill", o->prefill, "tokens in the first (prefill) call; the rest are decoded one at a time (default: all with --against; all but the last 4 with --device)");
    sub->add_option("--attention", o->attention, "the oracle's form against a file: naive or absorbed (the engine chooses per call)")->check(CLI::IsMember({"naive", "absorbed"}))->capture_default_str();
    sub->add_option("--dtype", o->dtype, "precision the file was computed in, or the engine's weights; sets the bound: fp32 (1e-5) or bf16 (2e-2, expert near ties allowed)")->check(CLI::IsMember({"fp32", "bf16"}))->capture_default_str();
    sub->add_flag("--json", o->json, "machine-readable output");
    return {sub, require_source(o->source, "compare"), [o, sub] {
                o->attention_given = sub->count("--attention") > 0;  // these change compare's mode only when given
                o->device_given = sub->count("--device") > 0;
                return run_compare(*o);
            }};
}

}  // namespace dsv2::app
