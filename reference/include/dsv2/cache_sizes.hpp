// KV-cache sizes per token of MHA, GQA, MQA and MLA for a config — Table 1 of the paper.
#pragma once

#include <cstdint>

#include "dsv2/config.hpp"

namespace dsv2 {

/// Elements cached per token, summed over all L layers (d_h = qk_nope_head_dim as in Table 1).
struct CacheSizes {
    int64_t n_g = 8;             ///< GQA groups compared against
    int64_t mha = 0;             ///< 2 n_h d_h L
    int64_t gqa = 0;             ///< 2 n_g d_h L
    int64_t mqa = 0;             ///< 2 d_h L
    int64_t mla = 0;             ///< (d_c + d_R) L — what dsv2's LatentCache holds
    int64_t decompressed = 0;    ///< n_h (d_qk + d_v) L — what the Hugging Face code caches
    double gqa_equivalent_groups = 0;  ///< (d_c + d_R) / (2 d_h): MLA = GQA with this many groups
};
CacheSizes cache_sizes(const Config& cfg, int64_t n_g);

}  // namespace dsv2
