// dsv2_gpu_bench: the absorbed MLA decode (cuda/src/mla.cu: mla_decode_split_kernel +
// mla_combine_kernel, launched by launch_mla_decode<__nv_bfloat16>) at FlashMLA's shapes —
// B = 128, s_k ∈ {4096, 8192}, n_h ∈ {16, 128}, d_c = 512, d_R = 64, bf16 paged cache with
// 64-token blocks — timed with CUDA events, beside the roofline floor computed from its bytes and
// FLOPs and beside a device-to-device copy measured in the same run. The PyTorch peer is
// tools/bench/mla_decode_torch.py (same shapes, same JSON keys, `--against` prints the ratios).
// The kernel's correctness is proved by tests/cuda/test_cuda_mla.cpp, not here.
//
// Definitions (the PyTorch peer uses the same ones):
//   inputs   per input set: a bf16 pool of B·s_k/64 blocks of 64 rows × 576, filled with
//            hash-generated uniform values in [−0.1, 0.1) (never zeros), a block table that is a
//            seeded random permutation, q̃ [B, n_h, 512] and q_R [B, n_h, 64] likewise random;
//            `--sets` (≥ 2) sets are rotated so that consecutive launches read different memory
//            (one set is 0.6–1.2 GB, far beyond the 60 MB L2)
//   time     median (and min) of `--iters` (≥ 20) launches of split + combine, each between two
//            CUDA events, after `--warmup` untimed launches; the split plan is made once per shape
//            (host work, not timed)
//   bytes    B·s_k·576·2 (each cached latent row read once per sequence) + B·n_h·576·2 (queries)
//            + B·n_h·(512 + 1)·4 (o_latent and lse written, fp32)
//   FLOPs    2·B·n_h·s_k·(576 + 512) (scores over 576, values over 512)
//   floors   HBM floor = bytes / --hbm-bw (default 4.0e12 B/s, the measured copy rate on the
//            lent H200), compute floor = FLOPs / --bf16-flops (default 790e12, a measured dense
//            bf16 GEMM), roofline floor = the larger; "% of floor" = floor / time
//   copy     cudaMemcpy device → device of --copy-gib GiB (default 2), median of 5 after one
//            warm-up; GB/s counts the bytes read plus the bytes written
// Without a CUDA device it prints "SKIPPED: …" and exits 77. The random fill, the event timing,
// the copy, the median and the option loop are shared with dsv2_gpu_moe_bench (bench_device.hpp,
// bench_common.hpp); the MLA shapes, bytes, FLOPs and floors are this file's.
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <stdexcept>
#include <string>
#include <vector>

#include "bench_common.hpp"
#include "bench_device.hpp"
#include "dsv2/cuda/buffer.cuh"
#include "dsv2/cuda/check.cuh"
#include "dsv2/cuda/mla.cuh"
#include "dsv2/cuda/mla.hpp"
#include "dsv2/cuda/ops.hpp"
#include "dsv2/engine/paged.hpp"

using namespace dsv2::cuda;
using namespace dsv2::engine;
namespace bench = dsv2::bench;

namespace {

// ---------------------------------------------------------------------------------------------
// Options

struct Options {
    std::string json;
    std::vector<int> seqs{4096, 8192};
    std::vector<int> heads{16, 128};
    int batch = 128;
    int iters = 20;
    int warmup = 3;
    int sets = 2;
    double hbm_bw = 4.0e12;       // B/s
    double bf16_flops = 790e12;   // FLOP/s
    double copy_gib = 2.0;
};

void usage() {
    std::printf(
        "usage: dsv2_gpu_bench [--json FILE] [--batch 128] [--seq 4096,8192] [--heads 16,128]\n"
        "                      [--iters 20] [--warmup 3] [--sets 2] [--hbm-bw 4.0e12] [--bf16-flops 790e12]\n"
        "                      [--copy-gib 2]\n"
        "MLA decode (absorbed, split-KV + combine, bf16 paged cache) at FlashMLA's shapes; see the\n"
        "header of bench/mla_decode_bench.cu and cuda/README.md for what is measured.\n");
}

Options parse(int argc, char** argv) {
    using bench::option;
    Options o;
    bench::parse_options(argc, argv,
                         {option("--json", o.json), option("--batch", o.batch), option("--seq", o.seqs),
                          option("--heads", o.heads), option("--iters", o.iters), option("--warmup", o.warmup),
                          option("--sets", o.sets), option("--hbm-bw", o.hbm_bw), option("--bf16-flops", o.bf16_flops),
                          option("--copy-gib", o.copy_gib)},
                         usage);
    if (o.batch < 1 || o.iters < 1 || o.warmup < 0 || o.sets < 1 || o.hbm_bw <= 0 || o.bf16_flops <= 0 || o.copy_gib < 0)
        throw std::invalid_argument("--batch, --iters, --sets must be ≥ 1, --warmup ≥ 0, rates > 0, --copy-gib ≥ 0");
    if (o.seqs.empty() || o.heads.empty()) throw std::invalid_argument("--seq and --heads need at least one value");
    for (int s : o.seqs) if (s < 1) throw std::invalid_argument("--seq values must be ≥ 1");
    for (int h : o.heads) if (h < 1) throw std::invalid_argument("--heads values must be ≥ 1");
    return o;
}

// ---------------------------------------------------------------------------------------------
// One shape

struct Result {
    int B, s_k, n_h, d_c, d_R, block_tokens, n_items, total_splits, iters, sets;
    double median_s, min_s, bytes, flops, hbm_floor_s, compute_floor_s;
};

struct InputSet {
    DeviceBuffer<__nv_bfloat16> cache, q_abs, q_pe;
    DeviceBuffer<int32_t> table;
};

Result bench_shape(const Options& o, int B, int s_k, int n_h, int num_sm) {
    PagedLayout layout;  // 64-token blocks, d_c = 512, d_R = 64
    const int d_c = layout.d_c, d_R = layout.d_R, width = layout.width();
    const std::vector<int32_t> lengths(size_t(B), s_k);
    const int n_hg = (n_h + kDecodeHeadsPerCta - 1) / kDecodeHeadsPerCta;
    const SplitPlan plan = make_split_plan(lengths, n_hg, num_sm, layout.block_tokens);

    std::vector<InputSet> sets;
    BlockTable bt;
    for (int s = 0; s < o.sets; ++s) {
        PagedLayout l = layout;
        bt = allocate_block_table(lengths, l, 0x9E37u + uint64_t(s) * 7919u);  // shuffled, one per set
        layout.num_blocks = l.num_blocks;
        InputSet in{DeviceBuffer<__nv_bfloat16>(size_t(l.elements())),
                    DeviceBuffer<__nv_bfloat16>(size_t(B) * n_h * d_c), DeviceBuffer<__nv_bfloat16>(size_t(B) * n_h * d_R),
                    DeviceBuffer<int32_t>(bt.table)};
        const uint32_t seed = uint32_t(1000 * s + n_h + s_k);
        // on the device by a counter hash (the host would need seconds for 1.2 GB)
        bench::device_fill_uniform(in.cache.data(), int64_t(in.cache.size()), true, seed * 3 + 1, 0.1f);
        bench::device_fill_uniform(in.q_abs.data(), int64_t(in.q_abs.size()), true, seed * 3 + 2, 0.1f);
        bench::device_fill_uniform(in.q_pe.data(), int64_t(in.q_pe.size()), true, seed * 3 + 3, 0.1f);
        sets.push_back(std::move(in));
    }
    DeviceBuffer<WorkItem> items(plan.items);
    DeviceBuffer<int32_t> num_splits(plan.num_splits), split_offset(plan.split_offset);
    DeviceBuffer<float> o_part(size_t(plan.total_splits()) * n_h * d_c), lse_part(size_t(plan.total_splits()) * n_h);
    DeviceBuffer<float> o_latent(size_t(B) * n_h * d_c), lse(size_t(B) * n_h);
    CUDA_CHECK(cudaDeviceSynchronize());

    auto launch = [&](int r) {
        const InputSet& in = sets[size_t(r % o.sets)];
        MlaDecodeParams<__nv_bfloat16> p{in.cache.data(), in.table.data(), in.q_abs.data(), in.q_pe.data(),
                                         items.data(), num_splits.data(), split_offset.data(), o_part.data(),
                                         lse_part.data(), o_latent.data(), lse.data(), B, n_h, d_c, d_R,
                                         layout.block_tokens, bt.max_blocks, int(plan.items.size()),
                                         1.f / std::sqrt(192.f)};
        launch_mla_decode<__nv_bfloat16>(p, nullptr);
    };
    for (int r = 0; r < o.warmup; ++r) launch(r);
    CUDA_CHECK(cudaDeviceSynchronize());
    const std::vector<double> t = bench::time_each(o.iters, launch);

    Result res{};
    res.B = B, res.s_k = s_k, res.n_h = n_h, res.d_c = d_c, res.d_R = d_R, res.block_tokens = layout.block_tokens;
    res.n_items = int(plan.items.size()), res.total_splits = plan.total_splits(), res.iters = o.iters, res.sets = o.sets;
    res.median_s = bench::median(t);
    res.min_s = *std::min_element(t.begin(), t.end());
    res.bytes = double(B) * s_k * width * 2 + double(B) * n_h * width * 2 + double(B) * n_h * (d_c + 1) * 4;
    res.flops = 2.0 * B * n_h * double(s_k) * (width + d_c);
    res.hbm_floor_s = res.bytes / o.hbm_bw;
    res.compute_floor_s = res.flops / o.bf16_flops;
    return res;
}

std::string json_escape(const std::string& s) {
    std::string r;
    for (char c : s) {
        if (c == '"' || c == '\\') r += '\\';
        if (static_cast<unsigned char>(c) >= 0x20) r += c;
    }
    return r;
}

}  // namespace

int main(int argc, char** argv) {
    Options o;
    if (!bench::parse_or_usage(o, parse, argc, argv, "dsv2_gpu_bench", usage)) return 2;
    if (!announce_device()) return kSkipExitCode;  // prints "SKIPPED: no CUDA device (why)"
    try {
        int dev = 0, num_sm = 0;
        CUDA_CHECK(cudaGetDevice(&dev));
        CUDA_CHECK(cudaDeviceGetAttribute(&num_sm, cudaDevAttrMultiProcessorCount, dev));
        const std::string device = device_name();

        std::fprintf(stderr, "dsv2_gpu_bench: device copy %.1f GiB\n", o.copy_gib);
        const bench::CopyResult copy = bench::measure_copy(o.copy_gib);

        std::vector<Result> results;
        for (int s_k : o.seqs)
            for (int n_h : o.heads) {
                std::fprintf(stderr, "dsv2_gpu_bench: B=%d s_k=%d n_h=%d\n", o.batch, s_k, n_h);
                results.push_back(bench_shape(o, o.batch, s_k, n_h, num_sm));
            }

        std::printf("dsv2_gpu_bench: MLA decode (absorbed, split-KV + combine; bf16 paged cache, 64-token blocks, "
                    "fp32 accumulation) on %s, %d SMs\n", device.c_str(), num_sm);
        if (copy.bytes > 0)
            std::printf("  device copy: %.1f GiB in %.3f ms = %.0f GB/s (read + write)\n", o.copy_gib,
                        copy.median_s * 1e3, copy.gbs);
        std::printf("  floors from: HBM %.0f GB/s (--hbm-bw), bf16 %.0f TFLOP/s (--bf16-flops); median of %d launches, "
                    "%d rotated input sets\n", o.hbm_bw / 1e9, o.bf16_flops / 1e12, o.iters, o.sets);
        std::printf("  %4s %6s %4s %6s %11s %9s %8s %8s %10s %8s %6s\n", "B", "s_k", "n_h", "CTAs", "median µs",
                    "min µs", "GB/s", "TFLOP/s", "floor µs", "bound", "%floor");
        for (const Result& r : results) {
            const double floor_s = std::max(r.hbm_floor_s, r.compute_floor_s);
            std::printf("  %4d %6d %4d %6d %11.1f %9.1f %8.0f %8.1f %10.1f %8s %5.1f%%\n", r.B, r.s_k, r.n_h, r.n_items,
                        r.median_s * 1e6, r.min_s * 1e6, r.bytes / r.median_s / 1e9, r.flops / r.median_s / 1e12,
                        floor_s * 1e6, r.hbm_floor_s >= r.compute_floor_s ? "memory" : "compute",
                        100.0 * floor_s / r.median_s);
        }

        if (!o.json.empty()) {
            FILE* f = std::fopen(o.json.c_str(), "w");
            if (!f) throw std::runtime_error("cannot write --json " + o.json);
            std::fprintf(f, "{\n  \"tool\": \"dsv2_gpu_bench\",\n  \"op\": \"mla_decode_absorbed\",\n");
            std::fprintf(f, "  \"impl\": \"dsv2 mla_decode_split_kernel + mla_combine_kernel (bf16)\",\n");
            std::fprintf(f, "  \"device\": \"%s\",\n  \"num_sm\": %d,\n", json_escape(device).c_str(), num_sm);
            std::fprintf(f, "  \"hbm_bytes_per_s\": %.6g,\n  \"bf16_flops_per_s\": %.6g,\n", o.hbm_bw, o.bf16_flops);
            std::fprintf(f, "  \"copy\": {\"bytes\": %.0f, \"median_s\": %.9g, \"gbs\": %.6g},\n", copy.bytes,
                         copy.median_s, copy.gbs);
            std::fprintf(f, "  \"iters\": %d,\n  \"warmup\": %d,\n  \"sets\": %d,\n  \"results\": [\n", o.iters, o.warmup,
                         o.sets);
            for (size_t i = 0; i < results.size(); ++i) {
                const Result& r = results[i];
                const double floor_s = std::max(r.hbm_floor_s, r.compute_floor_s);
                std::fprintf(f,
                             "    {\"B\": %d, \"s_k\": %d, \"n_h\": %d, \"d_c\": %d, \"d_R\": %d, \"block_tokens\": %d, "
                             "\"ctas\": %d, \"total_splits\": %d, \"median_us\": %.6g, \"min_us\": %.6g, "
                             "\"bytes\": %.0f, \"flops\": %.0f, \"gbs\": %.6g, \"tflops\": %.6g, "
                             "\"hbm_floor_us\": %.6g, \"compute_floor_us\": %.6g, \"floor_us\": %.6g, "
                             "\"bound\": \"%s\", \"percent_of_floor\": %.4g}%s\n",
                             r.B, r.s_k, r.n_h, r.d_c, r.d_R, r.block_tokens, r.n_items, r.total_splits,
                             r.median_s * 1e6, r.min_s * 1e6, r.bytes, r.flops, r.bytes / r.median_s / 1e9,
                             r.flops / r.median_s / 1e12, r.hbm_floor_s * 1e6, r.compute_floor_s * 1e6, floor_s * 1e6,
                             r.hbm_floor_s >= r.compute_floor_s ? "memory" : "compute", 100.0 * floor_s / r.median_s,
                             i + 1 < results.size() ? "," : "");
            }
            std::fprintf(f, "  ]\n}\n");
            if (std::fclose(f) != 0) throw std::runtime_error("cannot write --json " + o.json);
        }
    } catch (const std::exception& e) {
        std::fprintf(stderr, "dsv2_gpu_bench: FAILED: %s\n", e.what());
        return 1;
    }
    return 0;
}
