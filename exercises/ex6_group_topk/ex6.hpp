// ex6 — group-limited (device-limited) top-k. Do not change this file.
#pragma once

#include <cstdint>
#include <vector>

namespace ex6 {

/// The experts a token chooses by group-limited greedy top-K: the N scores form G groups of
/// N/G contiguous experts; a group's score is its best expert's; keep the G_k best groups; take
/// the K best experts inside them. Ties, for groups and for experts: the lower index first.
/// Returns the K expert indices, best first.
std::vector<int64_t> group_limited_topk(const std::vector<double>& scores, int64_t G, int64_t G_k, int64_t K);

}  // namespace ex6
