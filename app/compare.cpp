// dsv2 compare: the fp64 oracle against another implementation, by the names of
// docs/intermediates.md —
//   --against FILE.safetensors: the intermediates another implementation (PyTorch, someone's own
//     kernels, a dsv2 dump) wrote;
//   without --against: dsv2's own engine (dsv2/cuda/engine.hpp) run here on --device cuda (the
//     GPU) or host (its CPU twin), its trace turned into the same structure as a file.
// One line per intermediate, in the oracle's forward order: max |Δ|, ‖Δ‖/‖ref‖ (ref = the oracle)
// and PASS or FAIL at the bound of the dtype; expert indices must match exactly, or in bf16 differ
// only at near ties. The last line names the first divergence. See docs/compare.md.
#include "commands.hpp"

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

// Engine mode, no --prefill: the last this many tokens are decoded one call each (absorbed form).
constexpr int64_t kEngineDecodeCalls = 4;

double bound_of(const std::string& dtype) { return dtype == "bf16" ? kBoundBf16 : kBoundFp32; }

// Expert indices: exact in fp32. In bf16 an index may differ where the oracle scores the two
// experts within kTieBf16 of each other, relative to the token's top score: a near tie that the
// lower precision may order either way (the rule of tests/engine_support.hpp). The same value as
// the bound: bf16 router logits carry a relative error of that order.
constexpr double kTieBf16 = 2e-2;

double tie_tol_of(const std::string& dtype) { return dtype == "bf16" ? kTieBf16 : 0.0; }

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

// What a differing expert index may be: "near ties (score gap ≤ 2e-02 of the top score)".
std::string near_tie_rule(double tie_tol) { return "near ties (score gap ≤ " + sci(tie_tol, 0) + " of the top score)"; }
std::string index_rule(double tie_tol) {
    return tie_tol > 0 ? "expert indices exact or " + near_tie_rule(tie_tol) : "expert indices exact";
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
// (cuda::attention_form) instead of `form`.
Trace run_oracle(const ModelSource& src, const std::vector<int32_t>& tokens, int64_t prefill, AttentionForm form,
                 bool per_call) {
    const Model<double> model = load_model<double>(src);
    Trace trace;  // stores every intermediate, and notes the first NaN or Inf
    LatentCache<double> cache(model.config(), int64_t(tokens.size()));
    for_each_call(int64_t(tokens.size()), prefill, [&](int64_t first, int64_t n) {
        const std::vector<int32_t> part(tokens.begin() + first, tokens.begin() + first + n);
        model.forward(part, cache, per_call ? cuda::attention_form(n) : form, &trace);
    });
    check_oracle_finite(trace);
    return trace;
}

// The engine and, beside it, the oracle on the same weight values (rounded to bf16 for bf16
// weights, as the engine stores them), with the same schedule, each oracle call in the form the
// engine uses for a call of that many tokens (cuda::attention_form).
struct EngineTraces {
    Trace oracle, engine;
};

EngineTraces run_engine_and_oracle(const Config& cfg, const Weights<float>& w, cuda::Backend& backend,
                                   cuda::WeightType type, const std::vector<int32_t>& tokens, int64_t prefill) {
    EngineTraces r;
    const int64_t T = int64_t(tokens.size());
    auto part = [&](int64_t first, int64_t n) {
        return std::vector<int32_t>(tokens.begin() + first, tokens.begin() + first + n);
    };
    {
        cuda::Engine engine(cfg, w, backend, type, T);
        for_each_call(T, prefill, [&](int64_t first, int64_t n) { engine.forward(part(first, n), &r.engine); });
    }
    const Model<double> oracle(cfg, weights_as<double>(w, type));
    LatentCache<double> cache(cfg, T);
    for_each_call(T, prefill, [&](int64_t first, int64_t n) {
        oracle.forward(part(first, n), cache, cuda::attention_form(n), &r.oracle);
    });
    check_oracle_finite(r.oracle);
    return r;
}

// The engine's trace in the structure a file gives: every entry [T, width], indices marked.
AgainstFile as_file(const Trace& trace, const std::vector<int32_t>& tokens) {
    AgainstFile a;
    for (const auto& [name, e] : trace.entries()) {
        FileTensor t;
        t.shape = {e.data.rows(), e.data.cols()};
        t.data = e.data;
        t.integer = e.integer;
        a.tensors.emplace(name, std::move(t));
    }
    a.has_tokens = true;
    a.tokens = tokens;
    return a;
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
// The comparison: one row per intermediate that is in FILE and in the oracle's trace.

struct Row {
    std::string name;
    std::vector<int64_t> file_shape, oracle_shape;
    bool integer = false;      ///< an index tensor: compared exactly (or up to near ties)
    bool shape_ok = true;
    bool missing = false;      ///< the engine did not record it (engine comparisons only)
    double max_abs = 0, rel = 0;
    int64_t differing = 0, count = 0;  ///< integer tensors: entries that differ, of all
    int64_t near_ties = 0;     ///< of the differing ones, those at a near tie (bf16 only)
    double bound = 0;          ///< 0 for integer tensors (exact)
    bool pass = true;
    std::string why;           ///< for a failure: what is wrong, in words
    int64_t rows_compared = -1;  ///< < the entry's rows after a near-tie change of experts (see cut); -1: all
};

struct Comparison {
    std::vector<Row> rows;                 ///< in the oracle's forward order
    std::vector<std::string> not_oracle;   ///< in FILE, not an oracle intermediate
    std::vector<std::string> not_in_file;  ///< oracle intermediates FILE does not hold, in forward order
    int first_fail = -1;                   ///< index into rows; -1: all pass
    int worst = -1;                        ///< the float row with the largest ‖Δ‖/‖ref‖
    bool strict = false;                   ///< the engine: every oracle intermediate and nothing else
    int64_t indices = 0, differing = 0;    ///< expert indices compared, and those that differ (all near ties when passing)
    double tie_tol = 0;
    /// The first token whose *set* of experts a near tie changed, and where: from that
    /// intermediate on, only tokens before it are compared (-1: no such change).
    int64_t cut_token = -1;
    std::string cut_after;
    bool ok() const { return first_fail < 0 && !(strict && !not_oracle.empty()); }
};

// An index that differs from the oracle's at token t, rank k, is a near tie when the oracle
// scores the two experts within tie_tol of the token's top score.
bool near_tie(const Mat<double>& scores, int64_t t, double got, double want, double top_rank, double tie_tol) {
    const int64_t N = scores.cols();
    auto valid = [N](double e) { return std::isfinite(e) && e >= 0 && e < double(N) && e == std::floor(e); };
    if (tie_tol <= 0 || t >= scores.rows() || !valid(got) || !valid(want) || !valid(top_rank)) return false;
    return std::abs(scores(t, int64_t(got)) - scores(t, int64_t(want))) <= tie_tol * scores(t, int64_t(top_rank));
}

// The first row whose set of experts differs (a swap across the K-th place, not only of order),
// or the number of rows.
int64_t first_set_change(const Mat<double>& got, const Mat<double>& want) {
    for (int64_t t = 0; t < want.rows(); ++t) {
        std::vector<double> a(want.row(t).data(), want.row(t).data() + want.cols()),
            b(got.row(t).data(), got.row(t).data() + got.cols());
        std::sort(a.begin(), a.end());
        std::sort(b.begin(), b.end());
        if (a != b) return t;
    }
    return want.rows();
}

// `scores`: the oracle's moe.scores of the same layer, for the near-tie rule (tie_tol > 0).
// `rows`: compare only the first `rows` rows (the tokens before a near-tie change of experts).
Row compare_one(const std::string& name, const Trace::Entry& ref_all, const FileTensor& got_all, double bound,
                double tie_tol, const Mat<double>* scores, int64_t rows) {
    Row r;
    r.name = name;
    r.file_shape = got_all.shape;
    r.oracle_shape = {ref_all.data.rows(), ref_all.data.cols()};
    r.integer = ref_all.integer;
    r.bound = r.integer ? 0.0 : bound;
    r.count = ref_all.data.size();
    if (got_all.data.rows() != ref_all.data.rows() || got_all.data.cols() != ref_all.data.cols()) {
        r.shape_ok = r.pass = false;
        r.why = "shape " + shape_text(got_all.shape) + " in the file, oracle " + shape_text(r.oracle_shape);
        return r;
    }
    if (rows < ref_all.data.rows()) r.rows_compared = rows;
    struct Rows {
        Mat<double> data;
    };
    const Rows ref{ref_all.data.topRows(rows)}, got{got_all.data.topRows(rows)};
    r.count = ref.data.size();
    const Mat<double> delta = got.data - ref.data;
    r.max_abs = !delta.allFinite() ? NAN : delta.size() ? delta.cwiseAbs().maxCoeff() : 0.0;  // NaN fails below
    const double ref_norm = ref.data.norm();
    r.rel = ref_norm == 0.0 ? delta.norm() : delta.norm() / ref_norm;
    if (r.integer) {
        for (int64_t t = 0; t < ref.data.rows(); ++t)
            for (int64_t k = 0; k < ref.data.cols(); ++k) {
                if (got.data(t, k) == ref.data(t, k)) continue;
                ++r.differing;
                if (scores && near_tie(*scores, t, got.data(t, k), ref.data(t, k), ref.data(t, 0), tie_tol)) ++r.near_ties;
            }
        r.pass = r.differing == r.near_ties;
        if (!r.pass) {
            r.why = std::to_string(r.differing) + " of " + std::to_string(r.count) + " indices differ";
            if (tie_tol > 0) r.why += ", " + std::to_string(r.differing - r.near_ties) + " not at " + near_tie_rule(tie_tol);
        }
    } else {
        r.pass = r.rel <= bound;  // false for NaN
        if (!r.pass) r.why = "‖Δ‖/‖ref‖ " + sci(r.rel, 1) + " > " + sci(bound, 0);
    }
    return r;
}

// strict (the engine): an oracle intermediate missing from `file` fails where it is, and one the
// oracle does not produce fails the whole comparison.
//
// After a near tie changes token t's set of experts in one layer, that token's residual stream
// legitimately differs from there on, and through the latent cache so does every later token's
// in the later layers; no earlier token reads it (causality). So from that intermediate on, in
// the forward order, only tokens 0 … t − 1 are compared (an entry with fewer rows than tokens,
// attn.q_absorbed / attn.o_latent of the decode calls, holds the last tokens).
// Which intermediates a near-tie change of experts in layer l can reach: every one of a later
// layer, the final norm and logits, and in layer l those after the router (the routed sum, the
// MoE output, the layer output; the shared experts, which do not depend on the routing, are
// counted too, to keep the rule simple). The order of trace.order() is not enough: the decode
// calls' attn.q_absorbed / attn.o_latent of every layer come after the prefill's names there.
int64_t layer_of(const std::string& name) {
    if (name == "embed") return -1;
    if (name.rfind("layers.", 0) != 0) return std::numeric_limits<int64_t>::max();  // norm, logits
    return std::stoll(name.substr(7, name.find('.', 7) - 7));
}
bool reached_by_routing_change(const std::string& name, int64_t l) {
    const int64_t ln = layer_of(name);
    if (ln != l) return ln > l;
    const std::string p = "layers." + std::to_string(l) + ".";
    return name == p + "moe.routed" || name == p + "moe.shared" || name == p + "moe.out" || name == p + "out";
}

Comparison compare_all(const Trace& trace, const AgainstFile& file, double bound, double tie_tol, bool strict) {
    Comparison c;
    c.strict = strict;
    c.tie_tol = tie_tol;
    const int64_t tokens = trace.has("embed") ? trace.at("embed").data.rows() : 0;
    std::vector<std::pair<int64_t, int64_t>> changes;  // (layer, first token whose experts a near tie changed)
    for (const std::string& name : trace.order()) {
        int64_t cut = tokens;
        for (const auto& [l, t] : changes)
            if (reached_by_routing_change(name, l)) cut = std::min(cut, t);
        const auto it = file.tensors.find(name);
        if (it == file.tensors.end()) {
            if (!strict) {
                c.not_in_file.push_back(name);
                continue;
            }
            Row r;
            r.name = name;
            r.oracle_shape = {trace.at(name).data.rows(), trace.at(name).data.cols()};
            r.shape_ok = r.pass = false;
            r.missing = true;
            r.why = "not recorded by the engine";
            c.rows.push_back(r);
        } else {
            const Trace::Entry& ref = trace.at(name);
            const std::string scores_name =
                ref.integer && name.size() > 8 ? name.substr(0, name.size() - 8) + "scores" : std::string();  // "…topk_idx"
            const Mat<double>* scores = trace.has(scores_name) ? &trace.at(scores_name).data : nullptr;
            const int64_t first_token = tokens - ref.data.rows();  // the token of row 0
            const int64_t rows = std::clamp<int64_t>(cut - first_token, 0, ref.data.rows());
            c.rows.push_back(compare_one(name, ref, it->second, bound, tie_tol, scores, rows));
            const Row& r = c.rows.back();
            if (r.integer && r.pass && r.differing > 0) {
                const int64_t t = first_set_change(it->second.data.topRows(rows), ref.data.topRows(rows));
                if (t < rows) {
                    changes.emplace_back(layer_of(name), first_token + t);
                    if (c.cut_token < 0 || first_token + t < c.cut_token) c.cut_token = first_token + t, c.cut_after = name;
                }
            }
        }
        const Row& r = c.rows.back();
        if (r.integer && r.shape_ok) {
            c.indices += r.count;
            c.differing += r.differing;
        }
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
    if (!c.ok())
        return "the engine recorded " + std::to_string(c.not_oracle.size()) + " intermediates the oracle does not (first: " +
               c.not_oracle.front() + ")";
    std::string s = "all " + std::to_string(c.rows.size()) + " intermediates within " + sci(bound, 0);
    if (c.worst >= 0) s += " (worst ‖Δ‖/‖ref‖ " + sci(c.rows[size_t(c.worst)].rel, 1) + ", " + c.rows[size_t(c.worst)].name + ")";
    if (c.differing > 0)
        s += "; " + std::to_string(c.differing) + " of " + std::to_string(c.indices) + " expert indices differ, " +
             near_tie_rule(c.tie_tol);
    if (c.cut_token >= 0)
        s += "; a near tie changed token " + std::to_string(c.cut_token) + "'s experts at " + c.cut_after +
             ", so what that reaches (the rest of the layer, the later layers) was compared on tokens 0 … " +
             std::to_string(c.cut_token - 1);
    return s;
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

// One table line (w: the width of the name column).
std::string row_line(const Row& r, int w) {
    char buf[512];
    const char* mark = r.pass ? "PASS" : "FAIL";
    const std::string shape = r.missing ? "-" : shape_text(r.file_shape);
    if (!r.shape_ok)
        std::snprintf(buf, sizeof buf, "%-*s  %-12s  %-20s  %s  %s", w, r.name.c_str(), shape.c_str(), "", mark, r.why.c_str());
    else if (r.integer)  // indices: the count that differ, in place of the two errors
        std::snprintf(buf, sizeof buf, "%-*s  %-12s  %20s  %s%s", w, r.name.c_str(), shape.c_str(),
                      (std::to_string(r.differing) + " of " + std::to_string(r.count) + " differ").c_str(), mark,
                      r.pass && r.near_ties > 0 ? "  near ties" : "");
    else
        std::snprintf(buf, sizeof buf, "%-*s  %-12s  %9.2e  %9.2e  %s", w, r.name.c_str(), shape.c_str(), r.max_abs, r.rel, mark);
    std::string line = buf;
    if (r.rows_compared >= 0)  // after a near-tie change of experts: the rows of the earlier tokens
        line += "  (first " + std::to_string(r.rows_compared) + " rows)";
    return line;
}

void print_table(const Described& d, const Comparison& c, double bound) {
    std::printf("oracle   %s\n", d.oracle.c_str());
    std::printf("%-8s %s\n", d.other_label.c_str(), d.other.c_str());
    if (!d.tokens.empty()) std::printf("tokens   %s\n", d.tokens.c_str());
    int w = 12;
    for (const Row& r : c.rows) w = std::max(w, int(r.name.size()));
    // Columns: name, shape (12), max |Δ| (9), ‖Δ‖/‖ref‖ (9), verdict. The two headers with Δ and ‖
    // are written out: printf pads by bytes, and those are 2 and 3 bytes wide.
    std::printf("%-*s  %-12s    max |Δ|  ‖Δ‖/‖ref‖\n", w, "intermediate", "shape");
    for (const Row& r : c.rows) std::printf("%s\n", row_line(r, w).c_str());
    for (const std::string& n : c.not_oracle) std::printf("%s: not an oracle intermediate (in %s, not compared)\n", n.c_str(),
                                                          c.strict ? "the engine's trace" : "the file");
    if (!c.not_in_file.empty())
        std::printf("%zu oracle intermediates not in %s (first: %s)\n", c.not_in_file.size(), d.other_name.c_str(),
                    c.not_in_file.front().c_str());
    std::printf("%s\n", verdict(c, bound).c_str());
}

void print_json(const Described& d, const Comparison& c, double bound) {
    using nlohmann::json;
    auto number = [](double v) { return std::isfinite(v) ? json(v) : json(nullptr); };
    json j = d.json;
    j["bound"] = bound;
    j["tie_tol"] = c.tie_tol;
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
    j["summary"] = verdict(c, bound);
    j["ok"] = c.ok();
    std::cout << j.dump(2) << "\n";
}

// The table or (--json) the document; exit 0 when every row passes, else 1.
int report(bool json, const Described& d, const Comparison& c, double bound) {
    if (json) print_json(d, c, bound);
    else print_table(d, c, bound);
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
    const double bound = bound_of(o.dtype), tie_tol = tie_tol_of(o.dtype);
    const Comparison c = compare_all(trace, file, bound, tie_tol, /*strict=*/false);
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
    d.other = o.against + ", " + o.dtype + ": ‖Δ‖/‖ref‖ ≤ " + sci(bound, 0) + ", " + index_rule(tie_tol);
    d.other_name = o.against;
    d.json = {{"against", o.against},
              {"source", source_name(o.source)},
              {"oracle",
               {{"precision", "fp64"},
                {"attention", per_call ? "per call, as the engine" : o.attention},
                {"tokens", tokens},
                {"prefill", prefill}}},
              {"dtype", o.dtype}};
    return report(o.json, d, c, bound);
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
    const cuda::WeightType type = cuda::weight_type_from_string(o.dtype);
    // The fp32 weights, the oracle's fp64 copy and, on the host, the engine's.
    check_fits_in_memory(cfg, 4 + 8 + engine_host_bytes(o.device, type), source_name(o.source));
    check_run_fits(cfg, T, prefill, 8, /*dump=*/true, "--tokens");
    std::unique_ptr<cuda::Backend> backend = make_engine_backend(
        o.device, "; to compare without a GPU: --device host (the CUDA path's CPU twin), or --against FILE.safetensors");

    const Model<float> model = load_model<float>(o.source);
    const EngineTraces traces = run_engine_and_oracle(cfg, model.weights(), *backend, type, tokens, prefill);
    const double bound = bound_of(o.dtype), tie_tol = tie_tol_of(o.dtype);
    const Comparison c = compare_all(traces.oracle, as_file(traces.engine, tokens), bound, tie_tol, /*strict=*/true);

    const std::string label = engine_label(*backend);
    Described d;
    d.oracle = "fp64, " + source_name(o.source) + (type == cuda::WeightType::bf16 ? ", weights rounded to bf16" : "") + ", " +
               schedule_text(T, prefill) + ", each call in the engine's attention form (" + forms_used(T, prefill) + ")";
    d.other_label = "engine";
    d.other = label + ", " + o.dtype + " weights: ‖Δ‖/‖ref‖ ≤ " + sci(bound, 0) + ", " + index_rule(tie_tol);
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
                {"weights", type == cuda::WeightType::bf16 ? "rounded to bf16" : "as loaded"},
                {"tokens", tokens},
                {"default_tokens", o.tokens.empty()},
                {"prefill", prefill}}},
              {"dtype", o.dtype}};
    return report(o.json, d, c, bound);
}

}  // namespace

int run_compare(const CompareOptions& o) {
    if (o.against.empty()) return compare_engine(o);
    if (o.device_given)
        throw std::invalid_argument("--device " + o.device + ": runs dsv2's engine to compare with the oracle, and --against " +
                                    o.against + " compares a file with it; give one or the other");
    return compare_file(o);
}

EngineCheck check_engine(const Config& cfg, const Weights<float>& w, cuda::Backend& backend, cuda::WeightType type,
                         const std::vector<int32_t>& tokens, int64_t prefill) {
    const EngineTraces traces = run_engine_and_oracle(cfg, w, backend, type, tokens, prefill);
    const std::string dtype = cuda::to_string(type);
    const double bound = bound_of(dtype);
    const Comparison c = compare_all(traces.oracle, as_file(traces.engine, tokens), bound, tie_tol_of(dtype), /*strict=*/true);
    EngineCheck r;
    r.ok = c.ok();
    r.summary = verdict(c, bound);
    r.compared = int64_t(c.rows.size());
    const int shown = c.first_fail >= 0 ? c.first_fail : c.worst;
    if (shown >= 0) r.worst = row_line(c.rows[size_t(shown)], int(c.rows[size_t(shown)].name.size()));
    return r;
}

}  // namespace dsv2::app
