// The agreement rule (dsv2/engine/agreement.hpp): one definition for dsv2 compare, the engine
// tests and the demo. Proved by tests/engine/test_agreement.cpp on hand-made traces (a planted
// divergence is named, near ties and the causal cut behave as documented).
#include "dsv2/engine/agreement.hpp"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <limits>
#include <stdexcept>

#include "dsv2/bf16.hpp"

namespace dsv2::engine {

Tolerance tolerance_of(const std::string& dtype) {
    if (dtype == "fp32") return {"fp32", kBoundFp32, 0.0};
    if (dtype == "bf16") return {"bf16", kBoundBf16, kTieBf16};
    throw std::invalid_argument("precision \"" + dtype + "\": expected fp32 or bf16");
}

Tolerance tolerance_of(WeightType type) { return tolerance_of(std::string(to_string(type))); }

Tensors tensors_of(const Trace& trace) {
    Tensors t;
    for (const auto& [name, e] : trace.entries()) t.emplace(name, Tensor{{e.data.rows(), e.data.cols()}, e.data, e.integer});
    return t;
}

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

namespace {

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
Row compare_one(const std::string& name, const Trace::Entry& ref_all, const Tensor& got_all, const Tolerance& tol,
                const Mat<double>* scores, int64_t rows) {
    Row r;
    r.name = name;
    r.file_shape = got_all.shape;
    r.oracle_shape = {ref_all.data.rows(), ref_all.data.cols()};
    r.integer = ref_all.integer;
    r.bound = r.integer ? 0.0 : tol.bound;
    r.count = ref_all.data.size();
    if (got_all.data.rows() != ref_all.data.rows() || got_all.data.cols() != ref_all.data.cols()) {
        r.shape_ok = r.pass = false;
        r.why = "shape " + shape_text(got_all.shape) + " in the file, oracle " + shape_text(r.oracle_shape);
        return r;
    }
    if (got_all.integer != ref_all.integer) {  // a structural mismatch, like a shape
        r.shape_ok = r.pass = false;
        r.why = ref_all.integer ? "expert indices in the oracle, floating point on the other side"
                                : "floating point in the oracle, integers on the other side";
        return r;
    }
    if (rows < ref_all.data.rows()) r.rows_compared = rows;
    const Mat<double> ref = ref_all.data.topRows(rows), got = got_all.data.topRows(rows);
    r.count = ref.size();
    const Mat<double> delta = got - ref;
    r.max_abs = !delta.allFinite() ? NAN : delta.size() ? delta.cwiseAbs().maxCoeff() : 0.0;  // NaN fails below
    const double ref_norm = ref.norm();
    r.rel = ref_norm == 0.0 ? delta.norm() : delta.norm() / ref_norm;
    if (r.integer) {
        for (int64_t t = 0; t < ref.rows(); ++t)
            for (int64_t k = 0; k < ref.cols(); ++k) {
                if (got(t, k) == ref(t, k)) continue;
                ++r.differing;
                if (scores && near_tie(*scores, t, got(t, k), ref(t, k), ref(t, 0), tol.tie_tol)) ++r.near_ties;
            }
        r.pass = r.differing == r.near_ties;
        if (!r.pass) {
            r.why = std::to_string(r.differing) + " of " + std::to_string(r.count) + " indices differ";
            if (tol.tie_tol > 0) r.why += ", " + std::to_string(r.differing - r.near_ties) + " not at " + near_tie_rule(tol.tie_tol);
        }
    } else {
        r.pass = r.rel <= tol.bound;  // false for NaN
        if (!r.pass) r.why = "‖Δ‖/‖ref‖ " + sci(r.rel, 1) + " > " + sci(tol.bound, 0);
    }
    return r;
}

}  // namespace

std::string near_tie_rule(double tie_tol) { return "near ties (score gap ≤ " + sci(tie_tol, 0) + " of the top score)"; }
std::string index_rule(double tie_tol) {
    return tie_tol > 0 ? "expert indices exact or " + near_tie_rule(tie_tol) : "expert indices exact";
}

// The order of trace.order() is not enough for the cut: the decode calls' attn.q_absorbed /
// attn.o_latent of every layer come after the prefill's names there. In layer l the shared
// experts, which do not depend on the routing, are counted as reached too, to keep the rule simple.
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

Comparison compare(const Trace& trace, const Tensors& other, const Tolerance& tol, bool strict) {
    Comparison c;
    c.strict = strict;
    c.tol = tol;
    const int64_t tokens = trace.has("embed") ? trace.at("embed").data.rows() : 0;
    std::vector<std::pair<int64_t, int64_t>> changes;  // (layer, first token whose experts a near tie changed)
    for (const std::string& name : trace.order()) {
        int64_t cut = tokens;
        for (const auto& [l, t] : changes)
            if (reached_by_routing_change(name, l)) cut = std::min(cut, t);
        const auto it = other.find(name);
        if (it == other.end()) {
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
            c.rows.push_back(compare_one(name, ref, it->second, tol, scores, rows));
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
    for (const auto& [name, t] : other)
        if (!trace.has(name)) c.not_oracle.push_back(name);
    return c;
}

std::string verdict(const Comparison& c) {
    if (c.first_fail >= 0) {
        const Row& r = c.rows[size_t(c.first_fail)];
        return "first divergence: " + r.name + " (" + r.why + ")";
    }
    if (!c.ok())
        return "the engine recorded " + std::to_string(c.not_oracle.size()) + " intermediates the oracle does not (first: " +
               c.not_oracle.front() + ")";
    std::string s = "all " + std::to_string(c.rows.size()) + " intermediates within " + sci(c.tol.bound, 0);
    if (c.worst >= 0) s += " (worst ‖Δ‖/‖ref‖ " + sci(c.rows[size_t(c.worst)].rel, 1) + ", " + c.rows[size_t(c.worst)].name + ")";
    if (c.differing > 0)
        s += "; " + std::to_string(c.differing) + " of " + std::to_string(c.indices) + " expert indices differ, " +
             near_tie_rule(c.tol.tie_tol);
    if (c.cut_token >= 0)
        s += "; a near tie changed token " + std::to_string(c.cut_token) + "'s experts at " + c.cut_after +
             ", so what that reaches (the rest of the layer, the later layers) was compared on tokens 0 … " +
             std::to_string(c.cut_token - 1);
    return s;
}

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

Traces run_engine_and_oracle(const Config& cfg, const Weights<float>& w, Backend& backend, WeightType type,
                             const std::vector<int32_t>& tokens, int64_t prefill) {
    Traces r;
    const int64_t T = int64_t(tokens.size());
    auto part = [&](int64_t first, int64_t n) {
        return std::vector<int32_t>(tokens.begin() + first, tokens.begin() + first + n);
    };
    {
        Engine engine(cfg, w, backend, type, T);
        for_each_call(T, prefill, [&](int64_t first, int64_t n) { engine.forward(part(first, n), &r.engine); });
    }
    Weights<double> wd;
    if (type == WeightType::bf16) wd = rounded_to_bf16<double>(w);
    else
        for (const auto& [name, m] : w.all()) wd.set(name, m.cast<double>());
    const Model<double> oracle(cfg, std::move(wd));
    LatentCache<double> cache(cfg, T);
    for_each_call(T, prefill, [&](int64_t first, int64_t n) {
        oracle.forward(part(first, n), cache, attention_form(n), &r.oracle);
    });
    if (!r.oracle.first_nonfinite().empty())
        throw std::runtime_error("the oracle's non-finite values (NaN or Inf) first appear in " + r.oracle.first_nonfinite() +
                                 "; nothing compared");
    return r;
}

Comparison check_engine(const Config& cfg, const Weights<float>& w, Backend& backend, WeightType type,
                        const std::vector<int32_t>& tokens, int64_t prefill) {
    const Traces t = run_engine_and_oracle(cfg, w, backend, type, tokens, prefill);
    return compare(t.oracle, tensors_of(t.engine), tolerance_of(type), /*strict=*/true);
}

}  // namespace dsv2::engine
