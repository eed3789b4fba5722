// Host logic of the CUDA MoE path (DeepSeekMoE router + dispatch), in plain C++ (no CUDA headers),
// so that it is built and tested on machines without a GPU (tests/engine/test_cuda_moe_host.cpp, label
// cpu), plus the host-array API of the kernels in cuda/src/moe.cu (tests/cuda/test_cuda_moe.cpp, label
// gpu; NOT YET RUN ON A GPU).
//
//   - RouterParams: the router's shape and gate rule (from dsv2::Config: N_r, K_r, G, G_k,
//     topk_method, norm_topk_prob, routed_scaling_factor);
//   - route_reference: the CPU twin of moe_route_kernel (one warp per token), in the kernel's
//     own fp32 arithmetic and reduction order; equals dsv2::route<float> given its logits;
//   - make_dispatch_plan: tokens grouped by expert exactly as dsv2::moe_forward groups them
//     (CPU twin of moe_count_kernel + scan + moe_place_kernel);
//   - moe_gather_reference / moe_combine_reference: CPU twins of moe_gather_kernel and
//     moe_combine_kernel.
//
// Plain loops the dispatch equals (slot = t·K + k, row = a row of the grouped buffer):
//   for e: for t ascending: for k: if topk_idx[t·K + k] == e: slots.push_back(t·K + k)
//   grouped[r]  = x[slots[r] / K]                                        (gather)
//   out[t]      = Σ_{k = 0..K−1} w[t·K + k] · y[row_of_slot[t·K + k]]  (+ shared[t])   (combine)
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "dsv2/config.hpp"

namespace dsv2::engine {

/// Widths of the warp router (one warp per token): groups and K are held one per lane.
constexpr int kRouteWarp = 32;
constexpr int kRouteMaxGroups = 32;   ///< G ≤ 32 (V2: 8)
constexpr int kRouteMaxTopk = 32;     ///< K ≤ 32 (V2: 6)
constexpr int kRouteMaxExperts = 2048;  ///< N_r ≤ 2048 (V2: 160): 64 experts per lane

/// The router's shape and gate rule (dsv2::Config fields in brackets).
struct RouterParams {
    int N_r = 0;                        ///< experts [N_r]
    int K = 0;                          ///< experts per token [K_r]
    int G = 1;                          ///< groups of N_r/G contiguous experts [G]
    int G_k = 1;                        ///< groups kept [G_k]
    bool group_limited = false;         ///< topk_method == group_limited_greedy
    bool norm_topk_prob = false;        ///< renormalise the K gates (only when K > 1)
    float routed_scaling_factor = 1.f;  ///< otherwise gates × this
    /// Throws std::invalid_argument naming the bad field.
    void validate() const;
};

/// The router of `cfg` (N_r, K_r, G, G_k, topk_method, norm_topk_prob, routed_scaling_factor),
/// validated.
RouterParams router_params(const Config& cfg);

/// Top-k of one row of scores as one warp finds it: k rounds of a warp arg-max, each lane scanning
/// its experts e = lane, lane + 32, … then a butterfly (xor 16, 8, 4, 2, 1) on (key, index), where
/// key = score, NaN → −inf (so NaN ranks last, tied with −inf), and (key, index) beats another when its key is higher or the keys are
/// equal and its index lower — the tie rule of dsv2::topk_indices. `allowed` (n entries, or empty
/// for all) restricts the candidates. Throws std::invalid_argument when k exceeds them.
std::vector<int32_t> warp_topk_reference(const float* scores, int n, int k, const std::vector<bool>& allowed = {});

/// CPU twin of moe_route_kernel for one token: fp32 softmax over the N_r logits (max by a lane
/// max + butterfly, NaN ignored; e = exp(l − m); sum by per-lane strided partial sums + butterfly;
/// s = e / sum), group score = max of the group's scores (NaN ignored; a group of NaN scores ranks
/// last), top-G_k groups and top-K experts by warp_topk_reference, then gates s of the chosen
/// experts in rank order, either / (Σ_k s_k + 1e-20) (norm_topk_prob and K > 1; Σ sequential in
/// k) or × routed_scaling_factor.
///   logits [N_r] → idx [K], w [K], scores [N_r] (optional)
void route_reference(const RouterParams& p, const float* logits, int32_t* idx, float* w, float* scores = nullptr);

/// Within how many fp32 ulps two router scores count as a near tie when a GPU router is compared
/// with its CPU twin. In relative terms (u = 2^-23, one ulp of a number at the bottom of its
/// binade): CUDA's expf and glibc's differ by up to 2 ulp of e = exp(l − m), i.e. 2u relative; the
/// sums differ by a few u; the division by it adds ½ ulp on each side. So one score s = e / Σ moves
/// by ε ≲ 3u relative — up to 6 ulp of s when s sits at the top of its binade (there an ulp is u/2
/// relative). The k-th largest of a vector moves by at most the largest move of an element, so the
/// experts the two routers put at the same rank have twin scores within 2ε ≲ 12 ulp. 16 leaves
/// margin; a wrong router is off by far more (a wrong expert, or a score of another token).
constexpr int kRouteTieUlps = 16;

/// Whether the twin scores a, b are within `ulps` units in the last place of the larger magnitude
/// (equal values, including two infinities of one sign, always are; NaN never is).
bool within_ulps(float a, float b, int ulps);

/// How a router's choices compare with the CPU twin's on the same logits, token by token.
struct RouteAgreement {
    int64_t tokens = 0;
    int64_t exact = 0;           ///< the same experts at every rank
    int64_t near_tie = 0;        ///< ranks differ only between experts whose twin scores are within ulps
    int64_t wrong = 0;           ///< anything else: an index outside [0, N_r), a repeat, a swap past a near tie
    int64_t first_wrong = -1;    ///< the first such token (−1: none)
    std::string first_wrong_why; ///< what is wrong there
    double max_gate_rel = 0;     ///< gates of the exact tokens, |got − ref| / |ref| (NaN on one side only: inf)
    bool ok(double gate_bound) const { return wrong == 0 && max_gate_rel <= gate_bound; }
};

/// Compares T tokens of router output (idx_got, w_got) with the twin's (idx_ref, w_ref) using the
/// twin's scores [T, N_r]: rank k of token t may hold another expert than the twin's only where
/// the twin scores the two within `ulps` (within_ulps) — a near tie that a 1-ulp difference in exp
/// may order either way; such a token is counted in near_tie and its gates are not compared (they
/// belong to another choice). Under group-limited routing a near tie between two groups' maxima
/// shows as such a swap too, and is counted wrong unless the swapped experts also tie (rare: the
/// test data would need two group maxima within a few ulp).
RouteAgreement compare_routes(const RouterParams& p, const float* scores, const int32_t* idx_ref, const float* w_ref,
                              const int32_t* idx_got, const float* w_got, int64_t T, int ulps = kRouteTieUlps);

/// Tokens grouped by expert. slot = t·K + k names the k-th choice of token t; row = a row of the
/// grouped buffer [T·K, ·]. Expert e owns rows [offsets[e], offsets[e + 1]), its slots in
/// ascending slot (token, then rank) order — the grouping of dsv2::moe_forward.
struct DispatchPlan {
    int64_t T = 0, K = 0, N_r = 0;
    std::vector<int32_t> counts;       ///< [N_r] rows per expert
    std::vector<int32_t> offsets;      ///< [N_r + 1] exclusive prefix sum of counts
    std::vector<int32_t> slots;        ///< [T·K] row → slot
    std::vector<int32_t> row_of_slot;  ///< [T·K] slot → row (the inverse permutation)
};

/// Builds the plan. Throws std::invalid_argument for a bad shape or an index outside [0, N_r)
/// (naming the token and rank).   topk_idx [T, K]
DispatchPlan make_dispatch_plan(const int32_t* topk_idx, int64_t T, int64_t K, int64_t N_r);

/// CPU twin of moe_gather_kernel: grouped[r, :] = x[slots[r] / K, :].   x [T, d] → [T·K, d]
template <typename R>
std::vector<R> moe_gather_reference(const DispatchPlan& plan, const std::vector<R>& x, int64_t d);

/// CPU twin of moe_combine_kernel: out[t, c] = fma-accumulated Σ_k w[t, k] · y[row_of_slot[t·K + k], c]
/// in rank order k = 0 … K − 1 from 0, then + shared[t, c] (shared empty: none).
///   y [T·K, d] grouped rows, w [T, K], shared [T, d] or empty → [T, d]
template <typename R>
std::vector<R> moe_combine_reference(const DispatchPlan& plan, const std::vector<R>& y, const std::vector<R>& w,
                                     const std::vector<R>& shared, int64_t d);

}  // namespace dsv2::engine
