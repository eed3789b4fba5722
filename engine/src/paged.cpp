// Host logic of the paged latent cache, the split-KV plan and the log-sum-exp combine (plain
// C++, built by the host compiler). Proved by tests/engine/test_paged_cache.cpp.
#include "dsv2/engine/paged.hpp"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <numeric>
#include <random>
#include <stdexcept>
#include <string>

namespace dsv2::engine {

void PagedLayout::validate() const {
    if (block_tokens <= 0 || d_c <= 0 || d_R < 0 || num_blocks < 0)
        throw std::invalid_argument("PagedLayout: non-positive size");
}

BlockTable allocate_block_table(const std::vector<int32_t>& lengths, PagedLayout& layout, uint64_t shuffle_seed) {
    layout.validate();
    BlockTable bt;
    bt.B = int(lengths.size());
    bt.lengths = lengths;
    int total = 0, most = 1;
    for (int32_t len : lengths) {
        if (len < 0) throw std::invalid_argument("allocate_block_table: negative length");
        const int nb = layout.blocks_for(len);
        total += nb;
        most = std::max(most, nb);
    }
    bt.max_blocks = most;
    bt.table.assign(size_t(bt.B) * size_t(most), -1);
    std::vector<int32_t> physical(static_cast<size_t>(total));
    std::iota(physical.begin(), physical.end(), 0);
    if (shuffle_seed != 0) {
        std::mt19937_64 gen(shuffle_seed);
        for (size_t i = physical.size(); i > 1; --i) {  // Fisher–Yates, independent of the std:: shuffle algorithm
            const size_t j = size_t(gen() % i);
            std::swap(physical[i - 1], physical[j]);
        }
    }
    size_t next = 0;
    for (int b = 0; b < bt.B; ++b)
        for (int k = 0; k < layout.blocks_for(lengths[size_t(b)]); ++k)
            bt.table[size_t(b) * size_t(most) + size_t(k)] = physical[next++];
    layout.num_blocks = total;
    return bt;
}

Slot token_slot(const PagedLayout& layout, const BlockTable& bt, int b, int64_t t) {
    if (b < 0 || b >= bt.B || t < 0 || t >= bt.lengths[size_t(b)])
        throw std::out_of_range("token_slot: sequence " + std::to_string(b) + " token " + std::to_string(t) +
                                " outside the cache");
    const int32_t block = bt.at(b, int(t / layout.block_tokens));
    if (block < 0 || block >= layout.num_blocks) throw std::out_of_range("token_slot: block table entry out of range");
    return {block, int32_t(t % layout.block_tokens)};
}

int64_t token_row_index(const PagedLayout& layout, const BlockTable& bt, int b, int64_t t) {
    const Slot s = token_slot(layout, bt, b, t);
    return (int64_t(s.block) * layout.block_tokens + s.offset) * layout.width();
}

template <typename E>
std::vector<E> paged_gather(const PagedLayout& layout, const BlockTable& bt, const std::vector<E>& paged, int b) {
    if (int64_t(paged.size()) != layout.elements()) throw std::invalid_argument("paged_gather: buffer size mismatch");
    const int64_t len = bt.lengths.at(size_t(b)), W = layout.width();
    std::vector<E> rows(size_t(len * W));
    for (int64_t t = 0; t < len; ++t) {
        const int64_t src = token_row_index(layout, bt, b, t);
        std::copy_n(paged.begin() + src, W, rows.begin() + t * W);
    }
    return rows;
}

template <typename E>
void paged_scatter(const PagedLayout& layout, const BlockTable& bt, std::vector<E>& paged, int b, int64_t first,
                   const std::vector<E>& rows) {
    const int64_t W = layout.width();
    if (int64_t(paged.size()) != layout.elements() || int64_t(rows.size()) % W != 0)
        throw std::invalid_argument("paged_scatter: size mismatch");
    const int64_t n = int64_t(rows.size()) / W;
    for (int64_t i = 0; i < n; ++i) {
        const int64_t dst = token_row_index(layout, bt, b, first + i);
        std::copy_n(rows.begin() + i * W, W, paged.begin() + dst);
    }
}

SplitPlan make_split_plan(const std::vector<int32_t>& lengths, int n_head_groups, int num_sm, int block_tokens,
                          int max_splits_per_seq) {
    if (n_head_groups <= 0 || num_sm <= 0 || block_tokens <= 0)
        throw std::invalid_argument("make_split_plan: non-positive size");
    SplitPlan p;
    p.B = int(lengths.size());
    p.n_head_groups = n_head_groups;
    int64_t total_blocks = 0;
    int64_t most_blocks = 0;
    for (int32_t len : lengths) {
        if (len < 0) throw std::invalid_argument("make_split_plan: negative length");
        const int64_t nb = (int64_t(len) + block_tokens - 1) / block_tokens;
        total_blocks += nb;
        most_blocks = std::max(most_blocks, nb);
    }
    int64_t blocks_per_split = std::max<int64_t>(1, total_blocks * n_head_groups / num_sm);
    if (max_splits_per_seq > 0)
        blocks_per_split = std::max(blocks_per_split, (most_blocks + max_splits_per_seq - 1) / max_splits_per_seq);
    p.kv_chunk = int(blocks_per_split * block_tokens);
    p.num_splits.resize(size_t(p.B));
    p.split_offset.assign(size_t(p.B) + 1, 0);
    for (int b = 0; b < p.B; ++b) {
        const int64_t len = lengths[size_t(b)];
        const int ns = int((len + p.kv_chunk - 1) / p.kv_chunk);
        p.num_splits[size_t(b)] = ns;
        p.split_offset[size_t(b) + 1] = p.split_offset[size_t(b)] + ns;
        for (int s = 0; s < ns; ++s) {
            const int32_t kb = int32_t(int64_t(s) * p.kv_chunk);
            const int32_t ke = int32_t(std::min<int64_t>(len, int64_t(kb) + p.kv_chunk));
            for (int g = 0; g < n_head_groups; ++g)
                p.items.push_back({int32_t(b), int32_t(g), p.split_offset[size_t(b)] + s, kb, ke});
        }
    }
    return p;
}

template <typename R>
void lse_combine(const R* o_parts, const R* lse_parts, int S, int d_c, R* o, R* lse) {
    if (S <= 0) {
        std::fill(o, o + d_c, R(0));
        *lse = -std::numeric_limits<R>::infinity();
        return;
    }
    R m = -std::numeric_limits<R>::infinity();
    for (int s = 0; s < S; ++s) m = std::max(m, lse_parts[s]);
    std::fill(o, o + d_c, R(0));
    R sum = 0;
    for (int s = 0; s < S; ++s) {
        const R w = std::exp(lse_parts[s] - m);
        sum += w;
        for (int c = 0; c < d_c; ++c) o[c] += w * o_parts[size_t(s) * size_t(d_c) + size_t(c)];
    }
    for (int c = 0; c < d_c; ++c) o[c] /= sum;
    *lse = m + std::log(sum);
}

template <typename R>
DecodeReference<R> paged_decode_reference(const PagedLayout& layout, const BlockTable& bt, const std::vector<R>& cache,
                                          const std::vector<R>& q_abs, const std::vector<R>& q_pe, int n_h, R sigma,
                                          const SplitPlan& plan, int heads_per_group, int tile) {
    const int B = bt.B, d_c = layout.d_c, d_R = layout.d_R;
    if (n_h <= 0 || heads_per_group <= 0 || tile <= 0 || plan.B != B ||
        q_abs.size() != size_t(B) * size_t(n_h) * size_t(d_c) || q_pe.size() != size_t(B) * size_t(n_h) * size_t(d_R) ||
        int64_t(cache.size()) != layout.elements())
        throw std::invalid_argument("paged_decode_reference: shape mismatch");
    const size_t S = size_t(plan.total_splits()), H = size_t(n_h), C = size_t(d_c);
    DecodeReference<R> r;
    r.o_part.assign(S * H * C, R(0));
    r.lse_part.assign(S * H, R(0));
    r.o_latent.assign(size_t(B) * H * C, R(0));
    r.lse.assign(size_t(B) * H, R(0));
    std::vector<R> acc(C), x(static_cast<size_t>(tile));
    for (const WorkItem& w : plan.items) {
        const int h0 = w.head_group * heads_per_group;
        for (int h = h0; h < std::min(n_h, h0 + heads_per_group); ++h) {
            const R* qa = q_abs.data() + (size_t(w.batch) * H + size_t(h)) * C;
            const R* qp = q_pe.data() + (size_t(w.batch) * H + size_t(h)) * size_t(d_R);
            R m = -std::numeric_limits<R>::infinity(), l = 0;
            std::fill(acc.begin(), acc.end(), R(0));
            for (int t0 = w.kv_begin; t0 < w.kv_end; t0 += tile) {
                const int n = std::min(tile, w.kv_end - t0);
                R m_new = m;
                for (int i = 0; i < n; ++i) {
                    const R* row = cache.data() + token_row_index(layout, bt, w.batch, t0 + i);
                    R dot = 0;
                    for (int c = 0; c < d_c; ++c) dot += qa[c] * row[c];
                    for (int c = 0; c < d_R; ++c) dot += qp[c] * row[d_c + c];
                    x[size_t(i)] = sigma * dot;
                    m_new = std::max(m_new, x[size_t(i)]);
                }
                const R scale = std::exp(m - m_new);  // 0 on the first tile
                l *= scale;
                for (R& a : acc) a *= scale;
                for (int i = 0; i < n; ++i) {
                    const R p = std::exp(x[size_t(i)] - m_new);
                    const R* row = cache.data() + token_row_index(layout, bt, w.batch, t0 + i);
                    l += p;
                    for (size_t c = 0; c < C; ++c) acc[c] += p * row[c];
                }
                m = m_new;
            }
            const size_t slot = size_t(w.split) * H + size_t(h);
            for (size_t c = 0; c < C; ++c) r.o_part[slot * C + c] = acc[c] / l;
            r.lse_part[slot] = m + std::log(l);
        }
    }
    std::vector<R> parts, lses;
    for (int b = 0; b < B; ++b)
        for (size_t h = 0; h < H; ++h) {
            const int ns = plan.num_splits[size_t(b)], first = plan.split_offset[size_t(b)];
            parts.assign(size_t(ns) * C, R(0));
            lses.assign(size_t(ns), R(0));
            for (int s = 0; s < ns; ++s) {
                const size_t slot = size_t(first + s) * H + h;
                std::copy_n(r.o_part.begin() + long(slot * C), C, parts.begin() + long(size_t(s) * C));
                lses[size_t(s)] = r.lse_part[slot];
            }
            lse_combine<R>(parts.data(), lses.data(), ns, d_c, r.o_latent.data() + (size_t(b) * H + h) * C,
                           &r.lse[size_t(b) * H + h]);
        }
    return r;
}

template std::vector<float> paged_gather(const PagedLayout&, const BlockTable&, const std::vector<float>&, int);
template std::vector<double> paged_gather(const PagedLayout&, const BlockTable&, const std::vector<double>&, int);
template std::vector<uint16_t> paged_gather(const PagedLayout&, const BlockTable&, const std::vector<uint16_t>&, int);
template void paged_scatter(const PagedLayout&, const BlockTable&, std::vector<float>&, int, int64_t, const std::vector<float>&);
template void paged_scatter(const PagedLayout&, const BlockTable&, std::vector<double>&, int, int64_t, const std::vector<double>&);
template void paged_scatter(const PagedLayout&, const BlockTable&, std::vector<uint16_t>&, int, int64_t, const std::vector<uint16_t>&);
template void lse_combine(const float*, const float*, int, int, float*, float*);
template void lse_combine(const double*, const double*, int, int, double*, double*);
template DecodeReference<float> paged_decode_reference(const PagedLayout&, const BlockTable&, const std::vector<float>&,
                                                       const std::vector<float>&, const std::vector<float>&, int, float,
                                                       const SplitPlan&, int, int);
template DecodeReference<double> paged_decode_reference(const PagedLayout&, const BlockTable&, const std::vector<double>&,
                                                        const std::vector<double>&, const std::vector<double>&, int,
                                                        double, const SplitPlan&, int, int);

}  // namespace dsv2::engine
