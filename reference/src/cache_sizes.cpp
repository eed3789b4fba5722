#include "dsv2/cache_sizes.hpp"

#include <stdexcept>

namespace dsv2 {

CacheSizes cache_sizes(const Config& c, int64_t n_g) {
    if (n_g < 1) throw std::invalid_argument("cache_sizes: GQA groups must be >= 1");
    CacheSizes s;
    s.n_g = n_g;
    s.mha = 2 * c.n_h * c.d_h * c.L;
    s.gqa = 2 * n_g * c.d_h * c.L;
    s.mqa = 2 * c.d_h * c.L;
    s.mla = c.cache_width() * c.L;
    s.decompressed = c.n_h * (c.d_qk() + c.d_v) * c.L;
    s.gqa_equivalent_groups = double(c.cache_width()) / double(2 * c.d_h);
    return s;
}

}  // namespace dsv2
