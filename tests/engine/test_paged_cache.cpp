// The host logic of the CUDA MLA decode path (engine/include/dsv2/engine/paged.hpp), on the CPU:
// paged-cache addressing through shuffled block tables, the split-KV plan, the log-sum-exp
// combine (proved equal to one softmax over the whole range with the fp64 oracle
// dsv2::mla_attend_absorbed), and bf16 rounding.
#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <limits>
#include <random>
#include <set>

#include "dsv2/config.hpp"
#include "dsv2/engine/paged.hpp"
#include "dsv2/mla.hpp"
#include "dsv2/rope.hpp"
#include "dsv2/trace.hpp"

using namespace dsv2;
using dsv2::engine::BlockTable;
using dsv2::engine::PagedLayout;
using dsv2::engine::SplitPlan;

namespace {

const double kNaN = std::numeric_limits<double>::quiet_NaN();

// Rows [len, W] whose every element names its (sequence, token, column): exact checks of indexing.
std::vector<double> tagged_rows(int b, int len, int W) {
    std::vector<double> r(size_t(len) * size_t(W));
    for (int t = 0; t < len; ++t)
        for (int c = 0; c < W; ++c) r[size_t(t) * size_t(W) + size_t(c)] = 1e6 * b + 1e3 * t + c;
    return r;
}

}  // namespace

TEST_CASE("paged cache: shuffled block tables are permutations and address every token") {
    const std::vector<int32_t> lengths{1, 64, 65, 0, 200, 127, 0, 300};
    for (uint64_t seed : {uint64_t(0), uint64_t(1), uint64_t(12345)}) {
        PagedLayout layout;  // 64 tokens, 512 + 64
        layout.d_c = 40, layout.d_R = 8;  // narrow rows keep the test fast; the maths is width-agnostic
        const BlockTable bt = engine::allocate_block_table(lengths, layout, seed);
        int total = 0;
        for (int32_t len : lengths) total += (len + 63) / 64;
        REQUIRE(layout.num_blocks == total);
        REQUIRE(bt.max_blocks == 5);  // 300 tokens
        // Every physical block used exactly once; unused entries are −1.
        std::multiset<int32_t> used;
        for (int b = 0; b < bt.B; ++b)
            for (int k = 0; k < bt.max_blocks; ++k) {
                const int32_t e = bt.at(b, k);
                if (k < layout.blocks_for(lengths[size_t(b)])) used.insert(e);
                else REQUIRE(e == -1);
            }
        REQUIRE(int(used.size()) == total);
        for (int i = 0; i < total; ++i) REQUIRE(used.count(i) == 1);
        if (seed != 0) {  // a shuffle actually moves blocks (and is reproducible)
            PagedLayout l2 = layout;
            REQUIRE(engine::allocate_block_table(lengths, l2, seed).table == bt.table);
            PagedLayout l3 = layout;
            REQUIRE(engine::allocate_block_table(lengths, l3, 0).table != bt.table);
        }
        // (block, offset) follows the plain-loop formula; out-of-range tokens throw.
        for (int b = 0; b < bt.B; ++b) {
            for (int t = 0; t < lengths[size_t(b)]; ++t) {
                const engine::Slot s = engine::token_slot(layout, bt, b, t);
                REQUIRE(s.block == bt.table[size_t(b) * size_t(bt.max_blocks) + size_t(t / 64)]);
                REQUIRE(s.offset == t % 64);
                REQUIRE(engine::token_row_index(layout, bt, b, t) == (int64_t(s.block) * 64 + t % 64) * 48);
            }
            REQUIRE_THROWS_AS(engine::token_slot(layout, bt, b, lengths[size_t(b)]), std::out_of_range);
            REQUIRE_THROWS_AS(engine::token_slot(layout, bt, b, -1), std::out_of_range);
        }
        // Scatter every sequence into a NaN-poisoned pool, gather it back: the rows round-trip,
        // and exactly the slots past each length (and nothing else) keep their NaN.
        std::vector<double> pool(size_t(layout.elements()), kNaN);
        for (int b = 0; b < bt.B; ++b)
            engine::paged_scatter(layout, bt, pool, b, 0, tagged_rows(b, lengths[size_t(b)], layout.width()));
        for (int b = 0; b < bt.B; ++b)
            REQUIRE(engine::paged_gather(layout, bt, pool, b) == tagged_rows(b, lengths[size_t(b)], layout.width()));
        int64_t nan_rows = 0;
        for (int64_t r = 0; r < int64_t(layout.num_blocks) * 64; ++r) nan_rows += std::isnan(pool[size_t(r * 48)]);
        int64_t tokens = 0;
        for (int32_t len : lengths) tokens += len;
        REQUIRE(nan_rows == int64_t(layout.num_blocks) * 64 - tokens);
        REQUIRE(engine::paged_gather(layout, bt, pool, 3).empty());  // zero-length sequence
    }
}

TEST_CASE("paged cache: appending in steps equals one write") {
    PagedLayout layout;
    layout.d_c = 16, layout.d_R = 4, layout.block_tokens = 64;
    const std::vector<int32_t> lengths{130};
    const BlockTable bt = engine::allocate_block_table(lengths, layout, 7);
    const std::vector<double> all = tagged_rows(0, 130, 20);
    std::vector<double> a(size_t(layout.elements()), kNaN), b = a;
    engine::paged_scatter(layout, bt, a, 0, 0, all);
    int64_t first = 0;
    for (int64_t n : {63, 1, 1, 64, 1}) {  // prefill then decode steps, crossing block edges
        std::vector<double> part(all.begin() + first * 20, all.begin() + (first + n) * 20);
        engine::paged_scatter(layout, bt, b, 0, first, part);
        first += n;
    }
    REQUIRE(first == 130);
    REQUIRE(engine::paged_gather(layout, bt, a, 0) == engine::paged_gather(layout, bt, b, 0));
    REQUIRE_THROWS(engine::paged_scatter(layout, bt, b, 0, 130, std::vector<double>(20, 0.0)));
}

namespace {

// Every (batch, head group) covers [0, len) exactly once with in-bounds, non-empty items.
void check_plan(const SplitPlan& p, const std::vector<int32_t>& lengths, int n_hg, int block_tokens) {
    REQUIRE(p.B == int(lengths.size()));
    REQUIRE(p.kv_chunk % block_tokens == 0);
    REQUIRE(p.split_offset.size() == lengths.size() + 1);
    std::vector<std::vector<int>> cover(lengths.size());
    for (size_t b = 0; b < lengths.size(); ++b) cover[b].assign(size_t(lengths[b]) * size_t(n_hg), 0);
    std::set<std::pair<int, int>> split_group;
    for (const engine::WorkItem& w : p.items) {
        REQUIRE(w.batch >= 0);
        REQUIRE(w.batch < p.B);
        REQUIRE(w.head_group >= 0);
        REQUIRE(w.head_group < n_hg);
        REQUIRE(0 <= w.kv_begin);
        REQUIRE(w.kv_begin < w.kv_end);
        REQUIRE(w.kv_end <= lengths[size_t(w.batch)]);
        REQUIRE(w.kv_begin % block_tokens == 0);  // splits start on block edges
        REQUIRE(w.split >= p.split_offset[size_t(w.batch)]);
        REQUIRE(w.split < p.split_offset[size_t(w.batch) + 1]);
        REQUIRE(split_group.insert({w.split, w.head_group}).second);  // one CTA per (split, group)
        for (int t = w.kv_begin; t < w.kv_end; ++t) cover[size_t(w.batch)][size_t(t) * size_t(n_hg) + size_t(w.head_group)]++;
    }
    for (size_t b = 0; b < lengths.size(); ++b) {
        REQUIRE(p.num_splits[b] == p.split_offset[b + 1] - p.split_offset[b]);
        REQUIRE((lengths[b] == 0) == (p.num_splits[b] == 0));
        REQUIRE(std::all_of(cover[b].begin(), cover[b].end(), [](int c) { return c == 1; }));
    }
    REQUIRE(int(p.items.size()) == p.total_splits() * n_hg);
}

}  // namespace

TEST_CASE("split plan: exact cover, bounds, grid filling and determinism") {
    const int sms = 132;
    SECTION("one long sequence still gets at least one CTA per SM") {
        for (int len : {8192, 32768, 131072, 8191 + 64 * 132}) {
            for (int n_hg : {1, 2, 16}) {
                const std::vector<int32_t> lengths{len};
                const SplitPlan p = engine::make_split_plan(lengths, n_hg, sms, 64);
                check_plan(p, lengths, n_hg, 64);
                const int blocks = (len + 63) / 64;  // 8192 tokens, 1 group: 128 blocks < 132 SMs
                if (blocks * n_hg >= sms) REQUIRE(int(p.items.size()) >= sms);
                else REQUIRE(int(p.items.size()) == blocks * n_hg);
            }
        }
    }
    SECTION("short sequences: one block per item, as many items as there are blocks") {
        const std::vector<int32_t> lengths{1, 63, 64, 65};
        const SplitPlan p = engine::make_split_plan(lengths, 1, sms, 64);
        check_plan(p, lengths, 1, 64);
        REQUIRE(p.kv_chunk == 64);
        REQUIRE(p.items.size() == 5);
    }
    SECTION("zero-length sequences produce no work") {
        const std::vector<int32_t> lengths{0, 100, 0, 0};
        const SplitPlan p = engine::make_split_plan(lengths, 2, sms, 64);
        check_plan(p, lengths, 2, 64);
        REQUIRE(p.num_splits == std::vector<int32_t>{0, 2, 0, 0});
        const SplitPlan none = engine::make_split_plan({0, 0}, 4, sms, 64);
        check_plan(none, {0, 0}, 4, 64);
        REQUIRE(none.items.empty());
        REQUIRE(none.total_splits() == 0);
        REQUIRE(engine::make_split_plan({}, 1, sms, 64).items.empty());
    }
    SECTION("random batches: cover, fill and determinism") {
        std::mt19937 gen(2024);
        for (int trial = 0; trial < 60; ++trial) {
            const int B = 1 + int(gen() % 70);
            std::vector<int32_t> lengths(static_cast<size_t>(B));
            for (int32_t& len : lengths) len = gen() % 5 == 0 ? 0 : int32_t(gen() % 9000);
            const int n_hg = 1 + int(gen() % 16);
            const int bt = gen() % 2 ? 64 : 16;
            const SplitPlan p = engine::make_split_plan(lengths, n_hg, sms, bt);
            check_plan(p, lengths, n_hg, bt);
            int64_t blocks = 0;
            for (int32_t len : lengths) blocks += (len + bt - 1) / bt;
            if (blocks * n_hg >= sms) REQUIRE(int64_t(p.items.size()) >= sms);
            else REQUIRE(int64_t(p.items.size()) == blocks * n_hg);
            const SplitPlan q = engine::make_split_plan(lengths, n_hg, sms, bt);
            REQUIRE(q.kv_chunk == p.kv_chunk);
            REQUIRE(q.num_splits == p.num_splits);
            REQUIRE(q.items.size() == p.items.size());
            for (size_t i = 0; i < p.items.size(); ++i) {
                const engine::WorkItem &a = p.items[i], &b = q.items[i];
                REQUIRE((a.batch == b.batch && a.head_group == b.head_group && a.split == b.split &&
                         a.kv_begin == b.kv_begin && a.kv_end == b.kv_end));
            }
        }
    }
    SECTION("a cap on splits per sequence is respected") {
        const std::vector<int32_t> lengths{65536};
        const SplitPlan p = engine::make_split_plan(lengths, 1, sms, 64, 16);
        check_plan(p, lengths, 1, 64);
        REQUIRE(p.num_splits[0] <= 16);
    }
    REQUIRE_THROWS(engine::make_split_plan({-1}, 1, sms, 64));
    REQUIRE_THROWS(engine::make_split_plan({1}, 0, sms, 64));
}

namespace {

// σ-scaled absorbed scores of one decode query against rows [n, d_c + d_R], per head: log Σ exp.
double head_lse(const Config& cfg, const Mat<double>& q_abs, const MlaQuery<double>& q, const Mat<double>& rows,
                int64_t i) {
    const double sigma = softmax_scale(cfg);
    Vec<double> s = sigma * (rows.leftCols(cfg.d_c) * q_abs.row(0).segment(i * cfg.d_c, cfg.d_c).transpose() +
                             rows.rightCols(cfg.d_R) * q.q_pe.row(0).segment(i * cfg.d_R, cfg.d_R).transpose());
    const double m = s.maxCoeff();
    return m + std::log((s.array() - m).exp().sum());
}

struct OracleRun {
    Mat<double> q_abs;   // [1, n_h·d_c]
    Mat<double> o_lat;   // [1, n_h·d_c]
};

// The oracle's absorbed attention of one decode query (position n − 1) over rows [n, d_c + d_R].
OracleRun oracle(const Config& cfg, const MlaQuery<double>& q, const Mat<double>& rows, const Mat<double>& W_kv_b) {
    Trace trace;
    const int64_t n = rows.rows();
    mla_attend_absorbed<double>(cfg, q, rows.leftCols(cfg.d_c), rows.rightCols(cfg.d_R), W_kv_b, {n - 1}, 0, &trace);
    return {trace.at("layers.0.attn.q_absorbed").data, trace.at("layers.0.attn.o_latent").data};
}

Mat<double> randn(int64_t r, int64_t c, std::mt19937& gen, double scale) {
    std::normal_distribution<double> nd(0.0, scale);
    Mat<double> m(r, c);
    for (Eigen::Index k = 0; k < m.size(); ++k) m.data()[k] = nd(gen);
    return m;
}

}  // namespace

TEST_CASE("lse combine: empty and single split") {
    std::vector<double> o(3, 7.0);
    double lse = 0;
    engine::lse_combine<double>(nullptr, nullptr, 0, 3, o.data(), &lse);
    REQUIRE(o == std::vector<double>(3, 0.0));
    REQUIRE(std::isinf(lse));
    REQUIRE(lse < 0);
    const std::vector<double> part{1.5, -2.0, 0.25}, part_lse{3.75};
    engine::lse_combine<double>(part.data(), part_lse.data(), 1, 3, o.data(), &lse);
    REQUIRE(o == part);
    REQUIRE(lse == 3.75);
    // Large lse values do not overflow (the max is subtracted first).
    const std::vector<double> two{1, 2, 3, 3}, two_lse{1000.0, 1000.0};
    std::vector<double> o2(2);
    engine::lse_combine<double>(two.data(), two_lse.data(), 2, 2, o2.data(), &lse);
    REQUIRE(o2[0] == Approx(2.0));
    REQUIRE(o2[1] == Approx(2.5));
    REQUIRE(lse == Approx(1000.0 + std::log(2.0)));
}

TEST_CASE("lse combine of per-split oracle softmaxes equals one softmax over the whole range (fp64)") {
    Config cfg = config_preset("deepseek-v2");  // d_c 512, d_R 64, σ with YaRN mscale
    cfg.n_h = 3;
    const Rope rope(cfg);
    std::mt19937 gen(99);
    const std::vector<int32_t> lengths{1, 64, 100, 0, 333, 65};
    PagedLayout layout;
    layout.d_c = int(cfg.d_c), layout.d_R = int(cfg.d_R);
    const BlockTable bt = engine::allocate_block_table(lengths, layout, 4242);
    const int W = layout.width();
    std::vector<double> pool(size_t(layout.elements()), kNaN);
    std::vector<Mat<double>> seq_rows;
    for (int b = 0; b < bt.B; ++b) {
        Mat<double> rows = randn(lengths[size_t(b)], W, gen, 1.0);
        engine::paged_scatter(layout, bt, pool, b, 0, std::vector<double>(rows.data(), rows.data() + rows.size()));
        seq_rows.push_back(rows);
    }
    const Mat<double> W_kv_b = randn(cfg.n_h * (cfg.d_h + cfg.d_v), cfg.d_c, gen, 0.05);
    const SplitPlan plan = engine::make_split_plan(lengths, 1, 8, 64);  // "8 SMs": several splits per sequence
    REQUIRE(plan.kv_chunk == 64);
    int multi_split = 0;
    for (int b = 0; b < bt.B; ++b) {
        const int len = lengths[size_t(b)];
        const int S = plan.num_splits[size_t(b)];
        multi_split += S > 1;
        // The oracle reads the rows gathered back from the shuffled paged pool.
        const std::vector<double> g = engine::paged_gather(layout, bt, pool, b);
        const Mat<double> rows = Eigen::Map<const Mat<double>>(g.data(), len, W);
        REQUIRE(rows == seq_rows[size_t(b)]);
        MlaQuery<double> q{randn(1, cfg.n_h * cfg.d_h, gen, 1.0), randn(1, cfg.n_h * cfg.d_R, gen, 1.0)};
        std::vector<double> o(static_cast<size_t>(cfg.d_c)), o_parts(static_cast<size_t>(S * cfg.d_c)), lse_parts(static_cast<size_t>(S));
        double lse = 0;
        if (len == 0) {
            engine::lse_combine<double>(o_parts.data(), lse_parts.data(), 0, int(cfg.d_c), o.data(), &lse);
            REQUIRE(std::all_of(o.begin(), o.end(), [](double v) { return v == 0.0; }));
            REQUIRE(lse == -std::numeric_limits<double>::infinity());
            continue;
        }
        const OracleRun full = oracle(cfg, q, rows, W_kv_b);
        for (int64_t i = 0; i < cfg.n_h; ++i) {
            int s = 0;
            for (const engine::WorkItem& w : plan.items) {
                if (w.batch != b) continue;
                REQUIRE(w.split == plan.split_offset[size_t(b)] + s);
                const Mat<double> part_rows = rows.middleRows(w.kv_begin, w.kv_end - w.kv_begin);
                const OracleRun part = oracle(cfg, q, part_rows, W_kv_b);  // its own softmax over the split
                for (int64_t c = 0; c < cfg.d_c; ++c)
                    o_parts[size_t(s) * size_t(cfg.d_c) + size_t(c)] = part.o_lat(0, i * cfg.d_c + c);
                lse_parts[size_t(s)] = head_lse(cfg, part.q_abs, q, part_rows, i);
                ++s;
            }
            REQUIRE(s == S);
            engine::lse_combine<double>(o_parts.data(), lse_parts.data(), S, int(cfg.d_c), o.data(), &lse);
            const Vec<double> ref = full.o_lat.row(0).segment(i * cfg.d_c, cfg.d_c).transpose();
            const double rel = (Eigen::Map<const Vec<double>>(o.data(), cfg.d_c) - ref).norm() / ref.norm();
            INFO("sequence " << b << " (" << len << " tokens, " << S << " splits) head " << i << ": rel " << rel);
            REQUIRE(rel <= 1e-12);
            const double lse_full = head_lse(cfg, full.q_abs, q, rows, i);
            REQUIRE(std::abs(lse - lse_full) <= 1e-12 * std::max(1.0, std::abs(lse_full)));
        }
    }
    REQUIRE(multi_split >= 3);
}

TEST_CASE("CPU twin of the decode kernels (plan + tiled online softmax + combine) equals the oracle (fp64)") {
    Config cfg = config_preset("deepseek-v2");
    std::mt19937 gen(31);
    const std::vector<int32_t> lengths{1, 0, 64, 65, 130, 7, 0, 257};
    for (int n_h : {1, 5, 16}) {
        cfg.n_h = n_h;
        PagedLayout layout;
        const BlockTable bt = engine::allocate_block_table(lengths, layout, uint64_t(1000 + n_h));
        const int W = layout.width();
        // NaN everywhere but the written rows: a read past a length would poison the result.
        std::vector<double> pool(size_t(layout.elements()), kNaN);
        std::vector<Mat<double>> rows;
        for (int b = 0; b < bt.B; ++b) {
            rows.push_back(randn(lengths[size_t(b)], W, gen, 0.3));
            engine::paged_scatter(layout, bt, pool, b, 0,
                                std::vector<double>(rows.back().data(), rows.back().data() + rows.back().size()));
        }
        const Mat<double> W_kv_b = randn(n_h * (cfg.d_h + cfg.d_v), cfg.d_c, gen, 0.05);
        std::vector<MlaQuery<double>> qs;
        std::vector<OracleRun> full(lengths.size());
        std::vector<double> q_abs(size_t(bt.B) * size_t(n_h * cfg.d_c), 0.0), q_pe(size_t(bt.B) * size_t(n_h * cfg.d_R));
        for (int b = 0; b < bt.B; ++b) {
            qs.push_back({randn(1, n_h * cfg.d_h, gen, 1.0), randn(1, n_h * cfg.d_R, gen, 1.0)});
            std::copy_n(qs.back().q_pe.data(), n_h * cfg.d_R, q_pe.begin() + long(b) * n_h * cfg.d_R);
            if (lengths[size_t(b)] == 0) continue;
            full[size_t(b)] = oracle(cfg, qs.back(), rows[size_t(b)], W_kv_b);
            std::copy_n(full[size_t(b)].q_abs.data(), n_h * cfg.d_c, q_abs.begin() + long(b) * n_h * cfg.d_c);
        }
        for (int sms : {3, 132}) {
            const int hpg = 8, n_hg = (n_h + hpg - 1) / hpg;
            const SplitPlan plan = engine::make_split_plan(lengths, n_hg, sms, 64);
            for (int tile : {1, 8, 64}) {
                const engine::DecodeReference<double> r = engine::paged_decode_reference<double>(
                    layout, bt, pool, q_abs, q_pe, n_h, softmax_scale(cfg), plan, hpg, tile);
                for (int b = 0; b < bt.B; ++b)
                    for (int64_t i = 0; i < n_h; ++i) {
                        const double* o = r.o_latent.data() + (size_t(b) * size_t(n_h) + size_t(i)) * size_t(cfg.d_c);
                        const double lse = r.lse[size_t(b) * size_t(n_h) + size_t(i)];
                        if (lengths[size_t(b)] == 0) {
                            REQUIRE(std::all_of(o, o + cfg.d_c, [](double v) { return v == 0.0; }));
                            REQUIRE(lse == -std::numeric_limits<double>::infinity());
                            continue;
                        }
                        const Vec<double> ref = full[size_t(b)].o_lat.row(0).segment(i * cfg.d_c, cfg.d_c).transpose();
                        const double rel = (Eigen::Map<const Vec<double>>(o, cfg.d_c) - ref).norm() / ref.norm();
                        INFO("n_h " << n_h << " sms " << sms << " tile " << tile << " seq " << b << " head " << i);
                        REQUIRE(rel <= 1e-12);
                        const double lse_ref = head_lse(cfg, full[size_t(b)].q_abs, qs[size_t(b)], rows[size_t(b)], i);
                        REQUIRE(std::abs(lse - lse_ref) <= 1e-12 * std::max(1.0, std::abs(lse_ref)));
                    }
            }
        }
    }
}

TEST_CASE("bf16 rounding: nearest-even, specials, unit roundoff 2^-8") {
    REQUIRE(dsv2::float_to_bf16_bits(1.0f) == 0x3f80);
    REQUIRE(dsv2::float_to_bf16_bits(-2.0f) == 0xc000);
    // 1 + 2^-8 is halfway between 1 and 1 + 2^-7: ties to even → 1; 1 + 3·2^-8 → 1 + 2^-6.
    REQUIRE(dsv2::float_to_bf16_bits(1.0f + std::ldexp(1.0f, -8)) == 0x3f80);
    REQUIRE(dsv2::float_to_bf16_bits(1.0f + 3 * std::ldexp(1.0f, -8)) == 0x3f82);
    REQUIRE(dsv2::float_to_bf16_bits(std::numeric_limits<float>::infinity()) == 0x7f80);
    REQUIRE(std::isnan(dsv2::bf16_bits_to_float(dsv2::float_to_bf16_bits(std::nanf("")))));
    REQUIRE(std::isinf(dsv2::bf16_bits_to_float(dsv2::float_to_bf16_bits(std::numeric_limits<float>::max()))));
    std::mt19937 gen(5);
    std::normal_distribution<float> nd(0.f, 10.f);
    std::vector<float> x(10000);
    for (float& v : x) v = nd(gen);
    const std::vector<float> y = dsv2::from_bf16(dsv2::to_bf16(x));
    for (size_t k = 0; k < x.size(); ++k) REQUIRE(std::abs(y[k] - x[k]) <= std::ldexp(std::abs(x[k]), -8));
}
