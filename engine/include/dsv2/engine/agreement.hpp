// When do two forward passes agree? The one rule behind `dsv2 compare`, the engine tests
// (tests/engine/test_engine_host.cpp, tests/cuda/test_cuda_engine.cpp) and the demo's GPU check:
// every named intermediate of the fp64 oracle (docs/intermediates.md) against another
// implementation's, in the oracle's forward order, within the bound of the precision the other one
// computed in; expert indices exact, or in bf16 different only at near ties; after a near tie
// changes a token's set of experts, what that change reaches is compared on the earlier tokens
// only (the causal cut). See docs/compare.md for the reasoning behind each constant.
#pragma once

#include <algorithm>
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "dsv2/config.hpp"
#include "dsv2/model.hpp"
#include "dsv2/tensor.hpp"
#include "dsv2/trace.hpp"
#include "dsv2/weights.hpp"
#include "dsv2/engine/backend.hpp"
#include "dsv2/engine/engine.hpp"

namespace dsv2::engine {

// Bounds on ‖Δ‖/‖ref‖ against the fp64 oracle, by the precision the other side computed in.
//
// fp32: 1e-5. fp32's unit roundoff is 2^-24 ≈ 6e-8; 1e-5 leaves two orders of magnitude for sums
// of length d, the softmax and a few layers, and still catches any wrong formula (those give 1e-3
// to 1).
constexpr double kBoundFp32 = 1e-5;
// bf16: 2e-2. bf16 keeps 8 significand bits, so rounding to nearest leaves a relative error of at
// most u = 2^-8 ≈ 3.9e-3 per element (about u/√3 ≈ 2.3e-3 over a whole tensor). An implementation
// that keeps its activations in bf16 rounds again at every stage — norms, projections, RoPE,
// attention, experts, residual adds: about ten per layer — and the residual stream carries those
// errors into every later layer, where independent roundings add roughly in quadrature:
// √k · u/√3 ≈ 1.3e-2 after k = 30 (three layers). 2e-2 ≈ 5u passes a correct bf16 pass of a few
// layers and fails a wrong formula. A deep model compounds more; this is the constant to change.
constexpr double kBoundBf16 = 2e-2;
// Expert indices: exact in fp32. In bf16 an index may differ where the oracle scores the two
// experts within kTieBf16 of each other, relative to the token's top score: a near tie that the
// lower precision may order either way. The same value as the bound: bf16 router logits carry a
// relative error of that order.
constexpr double kTieBf16 = 2e-2;

/// The bound and the near-tie tolerance (0: indices exact) of a precision.
struct Tolerance {
    std::string dtype;   ///< "fp32" or "bf16"
    double bound = kBoundFp32;
    double tie_tol = 0;
};
/// "fp32" or "bf16"; throws std::invalid_argument naming the text otherwise.
Tolerance tolerance_of(const std::string& dtype);
Tolerance tolerance_of(WeightType type);

/// One implementation's intermediates by name, each [rows, width] in double (dimensions after the
/// first flattened), index tensors marked: what a safetensors dump or a Trace holds.
struct Tensor {
    std::vector<int64_t> shape;  ///< as stored ([rows, width] for a trace)
    Mat<double> data;            ///< [shape[0], product of the rest]
    bool integer = false;        ///< expert indices (I32 / I64 in a file)
};
using Tensors = std::map<std::string, Tensor>;
Tensors tensors_of(const Trace& trace);

/// One compared intermediate.
struct Row {
    std::string name;
    std::vector<int64_t> file_shape, oracle_shape;
    bool integer = false;      ///< an index tensor: compared exactly (or up to near ties)
    bool shape_ok = true;
    bool missing = false;      ///< the other side did not record it (strict comparisons only)
    double max_abs = 0, rel = 0;
    int64_t differing = 0, count = 0;  ///< integer tensors: entries that differ, of all
    int64_t near_ties = 0;     ///< of the differing ones, those at a near tie (bf16 only)
    double bound = 0;          ///< 0 for integer tensors (exact)
    bool pass = true;
    std::string why;           ///< for a failure: what is wrong, in words
    int64_t rows_compared = -1;  ///< < the entry's rows after a near-tie change of experts (the cut); -1: all
};

/// Every row, and what the verdict needs.
struct Comparison {
    std::vector<Row> rows;                 ///< in the oracle's forward order
    std::vector<std::string> not_oracle;   ///< on the other side, not an oracle intermediate
    std::vector<std::string> not_in_file;  ///< oracle intermediates the other side lacks (not strict), forward order
    int first_fail = -1;                   ///< index into rows; -1: all pass
    int worst = -1;                        ///< the float row with the largest ‖Δ‖/‖ref‖
    bool strict = false;                   ///< every oracle intermediate required, nothing else allowed
    int64_t indices = 0, differing = 0;    ///< expert indices compared, and those that differ
    Tolerance tol;
    /// The first token whose *set* of experts a near tie changed, and where: from that
    /// intermediate on, what it reaches is compared on the tokens before it (-1: no such change).
    int64_t cut_token = -1;
    std::string cut_after;
    bool ok() const { return first_fail < 0 && !(strict && !not_oracle.empty()); }
    /// The largest ‖Δ‖/‖ref‖ over the float rows (0 when none).
    double worst_rel() const { return worst >= 0 ? rows[size_t(worst)].rel : 0.0; }
};

/// The oracle's trace against `other`, intermediate by intermediate in the oracle's forward order.
/// strict (an engine): an oracle intermediate `other` lacks fails where it is, and one the oracle
/// does not produce fails the whole comparison; otherwise (a file) both are listed, not failed.
/// Expert indices (integer rows): equal, or where tol.tie_tol > 0 different only where the oracle's
/// moe.scores of the same layer put the two experts within tie_tol of the token's top score.
/// The causal cut: after a near tie changes token t's set of experts in layer l, token t's
/// residual stream legitimately differs from there on, and through the latent cache so does every
/// later token's from layer l + 1; no earlier token reads it. So what such a change reaches —
/// layer l's moe.routed, moe.shared, moe.out, out, every later layer, norm, logits — is compared
/// on tokens 0 … t − 1 only (an entry with fewer rows than tokens, attn.q_absorbed / attn.o_latent
/// of the decode calls, holds the last tokens).
Comparison compare(const Trace& oracle, const Tensors& other, const Tolerance& tol, bool strict);

/// The last line of a comparison: "all N intermediates within …" or "first divergence: NAME (why)".
std::string verdict(const Comparison& c);
/// One table line of a row (w: the width of the name column).
std::string row_line(const Row& r, int w);
/// "expert indices exact" or "expert indices exact or near ties (score gap ≤ 2e-02 of the top score)".
std::string index_rule(double tie_tol);
std::string near_tie_rule(double tie_tol);
/// The table's formats: "[12, 2048]" and v in scientific notation with `digits` decimals.
std::string shape_text(const std::vector<int64_t>& shape);
std::string sci(double v, int digits);

/// Which intermediates a near-tie change of experts in layer l reaches (see compare).
int64_t layer_of(const std::string& name);
bool reached_by_routing_change(const std::string& name, int64_t l);

/// The schedule of dsv2 forward and compare and of the engine tests: the first `prefill` tokens
/// of T in one call (none when 0), then one token per call. Calls call(first, n) for each call.
template <typename Call>
void for_each_call(int64_t T, int64_t prefill, Call&& call) {
    int64_t done = 0;
    while (done < T) {
        const int64_t n = done == 0 && prefill > 0 ? std::min(prefill, T) : 1;
        call(done, n);
        done += n;
    }
}

/// The engine on `backend` with weights stored as `type`, and beside it the fp64 oracle on the same
/// weight values (rounded to bf16 for bf16 weights, as the engine stores them), on `tokens` with
/// for_each_call's schedule, each oracle call in the form the engine uses for a call of that many
/// tokens (attention_form). Throws std::runtime_error when the oracle itself is not finite.
struct Traces {
    Trace oracle, engine;
};
Traces run_engine_and_oracle(const Config& cfg, const Weights<float>& w, Backend& backend, WeightType type,
                             const std::vector<int32_t>& tokens, int64_t prefill);

/// run_engine_and_oracle, then compare strictly at the tolerance of `type`: the engine's check.
Comparison check_engine(const Config& cfg, const Weights<float>& w, Backend& backend, WeightType type,
                        const std::vector<int32_t>& tokens, int64_t prefill);

}  // namespace dsv2::engine
