// dsv2 compare --against FILE.safetensors: the fp64 oracle against the intermediates another
// implementation (PyTorch, someone's own kernels, a dsv2 dump) wrote under the names of
// docs/intermediates.md. One line per intermediate, in the oracle's forward order: max |Δ|,
// ‖Δ‖/‖ref‖ (ref = the oracle) and PASS or FAIL at the bound of FILE's dtype; expert indices
// must match exactly. The last line names the first divergence. See docs/compare.md.
#include "commands.hpp"

#include <algorithm>
#include <climits>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <iostream>
#include <map>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "dsv2/io.hpp"
#include "model_source.hpp"

namespace dsv2::app {

namespace {

// Bounds on ‖Δ‖/‖ref‖ against the fp64 oracle, by the precision FILE was computed in.
//
// fp32: 1e-5, the bound of the golden test (tests/test_golden.cpp). fp32's unit roundoff is
// 2^-24 ≈ 6e-8; 1e-5 leaves two orders of magnitude for sums of length d, the softmax and a few
// layers, and still catches any wrong formula (those give 1e-3 to 1).
constexpr double kBoundFp32 = 1e-5;
// bf16: 2e-2. bf16 keeps 8 significand bits, so rounding to nearest leaves a relative error of at
// most u = 2^-8 ≈ 3.9e-3 per element (about u/√3 ≈ 2.3e-3 over a whole tensor). An implementation
// that keeps its activations in bf16 rounds again at every stage — norms, projections, RoPE,
// attention, experts, residual adds: about ten per layer — and the residual stream carries those
// errors into every later layer, where independent roundings add roughly in quadrature:
// √k · u/√3 ≈ 1.3e-2 after k = 30 (three layers). 2e-2 ≈ 5u passes a correct bf16 pass of a few
// layers and fails a wrong formula. A deep model compounds more; this is the constant to change.
constexpr double kBoundBf16 = 2e-2;

double bound_of(const std::string& dtype) { return dtype == "bf16" ? kBoundBf16 : kBoundFp32; }

// "--against FILE" for error messages.
std::string file_label(const std::string& path) { return "--against " + path; }

std::string shape_text(const std::vector<int64_t>& shape) {
    std::string s = "[";
    for (size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
    return s + "]";
}

std::string sci(double v, int digits) {
    char buf[48];
    std::snprintf(buf, sizeof buf, "%.*e", digits, v);
    return buf;
}

// ---------------------------------------------------------------------------------------------
// FILE: every tensor as [rows, width] in double (dimensions after the first flattened, so
// [T, n_h, d_R] reads as the heads side by side), the integer ones marked; its tokens, if any.

struct FileTensor {
    std::vector<int64_t> shape;  ///< as stored in FILE
    Mat<double> data;            ///< [shape[0], product of the rest]
    bool integer = false;        ///< I32 or I64 in FILE
};

struct AgainstFile {
    std::map<std::string, FileTensor> tensors;  ///< every tensor but `tokens`
    bool has_tokens = false;
    std::vector<int32_t> tokens;  ///< the `tokens` tensor, when present
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
        FileTensor t;
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

Trace run_oracle(const ModelSource& src, const std::vector<int32_t>& tokens, int64_t prefill, AttentionForm form) {
    const Model<double> model = load_model<double>(src);
    Trace trace;  // stores every intermediate, and notes the first NaN or Inf
    run_prefill_then_decode(model, tokens, prefill, form, &trace, [](const Mat<double>&, int64_t) {});
    if (!trace.first_nonfinite().empty())
        throw std::runtime_error("the oracle's non-finite values (NaN or Inf) first appear in " + trace.first_nonfinite() +
                                 "; nothing compared");
    return trace;
}

// ---------------------------------------------------------------------------------------------
// The comparison: one row per intermediate that is in FILE and in the oracle's trace.

struct Row {
    std::string name;
    std::vector<int64_t> file_shape, oracle_shape;
    bool integer = false;      ///< an index tensor: compared exactly
    bool shape_ok = true;
    double max_abs = 0, rel = 0;
    int64_t differing = 0, count = 0;  ///< integer tensors: entries that differ, of all
    double bound = 0;          ///< 0 for integer tensors (exact)
    bool pass = true;
    std::string why;           ///< for a failure: what is wrong, in words
};

struct Comparison {
    std::vector<Row> rows;                 ///< in the oracle's forward order
    std::vector<std::string> not_oracle;   ///< in FILE, not an oracle intermediate
    std::vector<std::string> not_in_file;  ///< oracle intermediates FILE does not hold, in forward order
    int first_fail = -1;                   ///< index into rows; -1: all pass
    int worst = -1;                        ///< the float row with the largest ‖Δ‖/‖ref‖
};

Row compare_one(const std::string& name, const Trace::Entry& ref, const FileTensor& got, double bound) {
    Row r;
    r.name = name;
    r.file_shape = got.shape;
    r.oracle_shape = {ref.data.rows(), ref.data.cols()};
    r.integer = ref.integer;
    r.bound = ref.integer ? 0.0 : bound;
    r.count = ref.data.size();
    if (got.data.rows() != ref.data.rows() || got.data.cols() != ref.data.cols()) {
        r.shape_ok = r.pass = false;
        r.why = "shape " + shape_text(got.shape) + " in the file, oracle " + shape_text(r.oracle_shape);
        return r;
    }
    const Mat<double> delta = got.data - ref.data;
    r.max_abs = !delta.allFinite() ? NAN : delta.size() ? delta.cwiseAbs().maxCoeff() : 0.0;  // NaN fails below
    const double ref_norm = ref.data.norm();
    r.rel = ref_norm == 0.0 ? delta.norm() : delta.norm() / ref_norm;
    if (ref.integer) {
        r.differing = (got.data.array() != ref.data.array()).count();
        r.pass = r.differing == 0;
        if (!r.pass) r.why = std::to_string(r.differing) + " of " + std::to_string(r.count) + " indices differ";
    } else {
        r.pass = r.rel <= bound;  // false for NaN
        if (!r.pass) r.why = "‖Δ‖/‖ref‖ " + sci(r.rel, 1) + " > " + sci(bound, 0);
    }
    return r;
}

Comparison compare_all(const Trace& trace, const AgainstFile& file, double bound) {
    Comparison c;
    for (const std::string& name : trace.order()) {
        const auto it = file.tensors.find(name);
        if (it == file.tensors.end()) {
            c.not_in_file.push_back(name);
            continue;
        }
        c.rows.push_back(compare_one(name, trace.at(name), it->second, bound));
        const Row& r = c.rows.back();
        if (!r.pass && c.first_fail < 0) c.first_fail = int(c.rows.size()) - 1;
        if (r.shape_ok && !r.integer && (c.worst < 0 || !(r.rel <= c.rows[size_t(c.worst)].rel)))
            c.worst = int(c.rows.size()) - 1;
    }
    for (const auto& [name, t] : file.tensors)
        if (!trace.has(name)) c.not_oracle.push_back(name);
    return c;
}

std::string verdict(const Comparison& c, double bound) {
    if (c.first_fail >= 0) {
        const Row& r = c.rows[size_t(c.first_fail)];
        return "first divergence: " + r.name + " (" + r.why + ")";
    }
    std::string s = "all " + std::to_string(c.rows.size()) + " intermediates within " + sci(bound, 0);
    if (c.worst >= 0) s += " (worst ‖Δ‖/‖ref‖ " + sci(c.rows[size_t(c.worst)].rel, 1) + ", " + c.rows[size_t(c.worst)].name + ")";
    return s;
}

// ---------------------------------------------------------------------------------------------
// Output: a table, or (--json) one document.

void print_table(const CompareOptions& o, const std::vector<int32_t>& tokens, int64_t prefill, const Comparison& c,
                 double bound) {
    const int64_t T = int64_t(tokens.size());
    std::printf("oracle   fp64, %s, %s attention, %lld tokens (%lld prefill + %lld decode)\n", source_name(o.source).c_str(),
                o.attention.c_str(), (long long)T, (long long)prefill, (long long)(T - prefill));
    std::printf("against  %s, %s: ‖Δ‖/‖ref‖ ≤ %s, expert indices exact\n", o.against.c_str(), o.dtype.c_str(),
                sci(bound, 0).c_str());
    int w = 12;
    for (const Row& r : c.rows) w = std::max(w, int(r.name.size()));
    // Columns: name, shape (12), max |Δ| (9), ‖Δ‖/‖ref‖ (9), verdict. The two headers with Δ and ‖
    // are written out: printf pads by bytes, and those are 2 and 3 bytes wide.
    std::printf("%-*s  %-12s    max |Δ|  ‖Δ‖/‖ref‖\n", w, "intermediate", "shape");
    for (const Row& r : c.rows) {
        const char* mark = r.pass ? "PASS" : "FAIL";
        const std::string shape = shape_text(r.file_shape);
        if (!r.shape_ok)
            std::printf("%-*s  %-12s  %-20s  %s  %s\n", w, r.name.c_str(), shape.c_str(), "", mark, r.why.c_str());
        else if (r.integer)  // indices: the count that differ, in place of the two errors
            std::printf("%-*s  %-12s  %20s  %s\n", w, r.name.c_str(), shape.c_str(),
                        (std::to_string(r.differing) + " of " + std::to_string(r.count) + " differ").c_str(), mark);
        else
            std::printf("%-*s  %-12s  %9.2e  %9.2e  %s\n", w, r.name.c_str(), shape.c_str(), r.max_abs, r.rel, mark);
    }
    for (const std::string& n : c.not_oracle) std::printf("%s: not an oracle intermediate (in the file, not compared)\n", n.c_str());
    if (!c.not_in_file.empty())
        std::printf("%zu oracle intermediates not in %s (first: %s)\n", c.not_in_file.size(), o.against.c_str(),
                    c.not_in_file.front().c_str());
    std::printf("%s\n", verdict(c, bound).c_str());
}

void print_json(const CompareOptions& o, const std::vector<int32_t>& tokens, int64_t prefill, const Comparison& c,
                double bound) {
    using nlohmann::json;
    auto number = [](double v) { return std::isfinite(v) ? json(v) : json(nullptr); };
    json j;
    j["against"] = o.against;
    j["source"] = source_name(o.source);
    j["oracle"] = {{"precision", "fp64"}, {"attention", o.attention}, {"tokens", tokens}, {"prefill", prefill}};
    j["dtype"] = o.dtype;
    j["bound"] = bound;
    j["entries"] = json::array();
    for (const Row& r : c.rows) {
        json e = {{"name", r.name}, {"shape", r.file_shape}, {"oracle_shape", r.oracle_shape}, {"integer", r.integer},
                  {"bound", r.bound}, {"pass", r.pass}};
        e["max_abs"] = r.shape_ok ? number(r.max_abs) : json(nullptr);
        e["rel"] = r.shape_ok ? number(r.rel) : json(nullptr);
        if (r.integer && r.shape_ok) e["differing"] = r.differing;
        if (!r.pass) e["why"] = r.why;
        j["entries"].push_back(e);
    }
    j["not_oracle_intermediates"] = c.not_oracle;
    j["oracle_intermediates_not_in_file"] = c.not_in_file;
    j["first_divergence"] = c.first_fail >= 0 ? json(c.rows[size_t(c.first_fail)].name) : json(nullptr);
    j["summary"] = verdict(c, bound);
    j["ok"] = c.first_fail < 0;
    std::cout << j.dump(2) << "\n";
}

}  // namespace

int run_compare(const CompareOptions& o) {
    if (o.against.empty()) {
        std::cerr << "dsv2: error: compare: nothing to compare the oracle with: the CUDA whole-model path is not "
                     "implemented yet; give --against FILE.safetensors (intermediates dumped by another "
                     "implementation under the names of docs/intermediates.md)\n";
        return 2;
    }
    const AgainstFile file = load_against(o.against);
    const std::vector<int32_t> tokens = resolve_tokens(o, file);
    const int64_t T = int64_t(tokens.size());
    const std::string tokens_from = o.tokens.empty() ? file_label(o.against) + ": tensor \"tokens\"" : "--tokens";
    if (o.prefill < -1 || o.prefill > T)
        throw std::invalid_argument("--prefill " + std::to_string(o.prefill) + ": must be between 0 and the " +
                                    std::to_string(T) + " tokens of " + (o.tokens.empty() ? o.against : "--tokens"));
    const int64_t prefill = o.prefill < 0 ? T : o.prefill;
    const Config cfg = source_config(o.source);  // cheap: checks the tokens before loading weights
    for (size_t t = 0; t < tokens.size(); ++t)
        if (tokens[t] < 0 || tokens[t] >= cfg.V)
            throw std::invalid_argument(tokens_from + ": token " + std::to_string(tokens[t]) + " (item " + std::to_string(t) +
                                        ") is outside the vocabulary [0, " + std::to_string(cfg.V) + ")");
    check_fits_in_memory(cfg, 8, source_name(o.source));
    check_run_fits(cfg, T, prefill, 8, /*dump=*/true, tokens_from);

    const Trace trace = run_oracle(o.source, tokens, prefill, o.attention == "naive" ? AttentionForm::naive : AttentionForm::absorbed);
    const double bound = bound_of(o.dtype);
    const Comparison c = compare_all(trace, file, bound);
    if (c.rows.empty())
        throw std::invalid_argument(file_label(o.against) +
                                    (file.tensors.empty() ? std::string(": holds no tensor but \"tokens\"")
                                                          : ": none of its tensors (first: " + file.tensors.begin()->first +
                                                                ") has the name of an oracle intermediate (see docs/intermediates.md)") +
                                    "; nothing compared");
    if (o.json) print_json(o, tokens, prefill, c, bound);
    else print_table(o, tokens, prefill, c, bound);
    std::fflush(stdout);
    return c.first_fail < 0 ? 0 : 1;
}

}  // namespace dsv2::app
