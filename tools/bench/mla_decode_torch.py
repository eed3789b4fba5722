#!/usr/bin/env python3
"""The PyTorch peer of dsv2_gpu_bench: absorbed MLA decode at FlashMLA's shapes, in PyTorch eager,
on the same GPU, with the same definitions and the same JSON keys (bench/mla_decode_bench.cu).

The op, per sequence b (bf16 storage; the cache is paged, 64-token blocks, shuffled block table):
    kv     = cache[block_table[b]] -> [s_k, 576] = [c (512) | k_R (64)]     (gather by the table)
    scores = sigma * (q~ . c^T + q_R . k_R^T)  -> [n_h, s_k]                 (one bf16 matmul of
             [q~ | q_R] with kv^T, fp32 accumulation: the same sum)
    P      = softmax(scores) in fp32;  lse = logsumexp(scores)
    o      = P . c                     -> [n_h, 512]   (P cast to bf16, fp32 accumulation)
Timing: torch.cuda.Event around each call, `--warmup` untimed calls, median (and min) of
`--iters` calls rotating `--sets` input sets (each far larger than the 60 MB L2). Bytes, FLOPs and
floors are defined as in dsv2_gpu_bench (the bytes are the op's nominal traffic, not what this
PyTorch version moves: its gather alone writes and re-reads the whole cache once more).

    python3 tools/bench/mla_decode_torch.py --json torch.json [--against dsv2.json]
    python3 tools/bench/mla_decode_torch.py --dry-run      # CPU: the op vs a plain loop, tiny shape

--against FILE (dsv2_gpu_bench's JSON) prints a ratio table: PyTorch time / dsv2 time per shape,
and each beside its roofline floor. Without torch or without a CUDA device it prints
"SKIPPED: ..." and exits 77 (except --dry-run, which needs only torch).
"""
# The device copy, the event timing, the skip and the JSON/table plumbing it shares with
# moe_torch.py are in bench_common.py, beside it.
import argparse
import math
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench_common as common  # noqa: E402

D_C, D_R, BLOCK = 512, 64, 64
WIDTH = D_C + D_R
SIGMA = 1.0 / math.sqrt(192.0)


def nominal_bytes(B, s_k, n_h):
    """Cache rows once per sequence + queries (bf16) + o_latent and lse written (fp32)."""
    return B * s_k * WIDTH * 2 + B * n_h * WIDTH * 2 + B * n_h * (D_C + 1) * 4


def nominal_flops(B, s_k, n_h):
    return 2.0 * B * n_h * s_k * (WIDTH + D_C)


def make_inputs(torch, B, s_k, n_h, seed, device, dtype, block=BLOCK):
    g = torch.Generator(device=device)
    g.manual_seed(seed)
    nblk = (s_k + block - 1) // block
    num_blocks = B * nblk
    cache = torch.empty(num_blocks, block, WIDTH, device=device, dtype=dtype).uniform_(-0.1, 0.1, generator=g)
    table = torch.randperm(num_blocks, generator=g, device=device).to(torch.int32).view(B, nblk)
    q_abs = torch.empty(B, n_h, D_C, device=device, dtype=dtype).uniform_(-0.1, 0.1, generator=g)
    q_pe = torch.empty(B, n_h, D_R, device=device, dtype=dtype).uniform_(-0.1, 0.1, generator=g)
    return cache, table, q_abs, q_pe


def mla_decode(torch, cache, table, q_abs, q_pe, s_k, sigma=SIGMA):
    """o_latent [B, n_h, 512] fp32, lse [B, n_h] fp32 (natural log of the sigma-scaled scores)."""
    B = table.shape[0]
    kv = cache[table.long()].view(B, -1, cache.shape[-1])[:, :s_k]  # [B, s_k, 576], paged gather
    q = torch.cat([q_abs, q_pe], dim=-1)                              # [B, n_h, 576]
    scores = torch.bmm(q, kv.transpose(1, 2)).float() * sigma         # q~.c^T + q_R.k_R^T
    lse = torch.logsumexp(scores, dim=-1)
    p = torch.softmax(scores, dim=-1)
    o = torch.bmm(p.to(kv.dtype), kv[..., :q_abs.shape[-1]])          # [B, n_h, 512]
    return o.float(), lse


def plain_loop(cache, table, q_abs, q_pe, s_k, sigma=SIGMA, block=BLOCK):
    """The same op as plain Python loops in double, reading rows through the block table."""
    B, n_h = len(q_abs), len(q_abs[0])
    o, lse = [], []
    for b in range(B):
        rows = [cache[table[b][t // block]][t % block] for t in range(s_k)]
        ob, lb = [], []
        for h in range(n_h):
            x = [sigma * (sum(q_abs[b][h][c] * r[c] for c in range(D_C)) +
                          sum(q_pe[b][h][k] * r[D_C + k] for k in range(D_R))) for r in rows]
            m = max(x)
            w = [math.exp(v - m) for v in x]
            z = sum(w)
            ob.append([sum(w[j] * rows[j][c] for j in range(s_k)) / z for c in range(D_C)])
            lb.append(m + math.log(z))
        o.append(ob)
        lse.append(lb)
    return o, lse


def rel_err(a, b):
    num = sum((x - y) ** 2 for x, y in zip(a, b))
    den = sum(y * y for y in b)
    return math.sqrt(num / den) if den > 0 else math.sqrt(num)


def flat(x):
    if isinstance(x, list):
        return [v for e in x for v in flat(e)]
    return [x]


def result_row(B, s_k, n_h, times, hbm_bw, bf16_flops, extra=None):
    med, mn = statistics.median(times), min(times)
    by, fl = nominal_bytes(B, s_k, n_h), nominal_flops(B, s_k, n_h)
    hbm_floor, comp_floor = by / hbm_bw, fl / bf16_flops
    floor = max(hbm_floor, comp_floor)
    row = {"B": B, "s_k": s_k, "n_h": n_h, "d_c": D_C, "d_R": D_R, "block_tokens": BLOCK,
           "median_us": med * 1e6, "min_us": mn * 1e6, "bytes": by, "flops": fl,
           "gbs": by / med / 1e9, "tflops": fl / med / 1e12,
           "hbm_floor_us": hbm_floor * 1e6, "compute_floor_us": comp_floor * 1e6, "floor_us": floor * 1e6,
           "bound": "memory" if hbm_floor >= comp_floor else "compute", "percent_of_floor": 100.0 * floor / med}
    row.update(extra or {})
    return row


def print_table(doc):
    print(f"mla_decode_torch: MLA decode in PyTorch {doc.get('torch_version', '?')} eager ({doc['impl']}) "
          f"on {doc['device']}")
    common.print_copy(doc.get("copy"))
    print(f"  floors from: HBM {doc['hbm_bytes_per_s'] / 1e9:.0f} GB/s, bf16 {doc['bf16_flops_per_s'] / 1e12:.0f} "
          f"TFLOP/s; median of {doc['iters']} calls, {doc['sets']} rotated input sets")
    print(f"  {'B':>4} {'s_k':>6} {'n_h':>4} {'median µs':>11} {'min µs':>9} {'GB/s':>8} {'TFLOP/s':>8} "
          f"{'floor µs':>10} {'bound':>8} {'%floor':>6}")
    for r in doc["results"]:
        print(f"  {r['B']:4d} {r['s_k']:6d} {r['n_h']:4d} {r['median_us']:11.1f} {r['min_us']:9.1f} {r['gbs']:8.0f} "
              f"{r['tflops']:8.1f} {r['floor_us']:10.1f} {r['bound']:>8} {r['percent_of_floor']:5.1f}%")


def against(doc, path):
    """Ratio table vs dsv2_gpu_bench's JSON; returns the rows (also stored in doc['against'])."""
    ours = common.load_json(path)
    by_shape = {(r["B"], r["s_k"], r["n_h"]): r for r in ours.get("results", [])}
    rows = []
    print()
    print(f"ratio (same GPU, same run): dsv2 ({ours.get('impl', ours.get('tool', '?'))}) vs PyTorch; "
          f"torch/dsv2 > 1: dsv2 is faster")
    print(f"  {'B':>4} {'s_k':>6} {'n_h':>4} {'dsv2 µs':>10} {'torch µs':>10} {'torch/dsv2':>10} "
          f"{'floor µs':>10} {'dsv2 %floor':>11} {'torch %floor':>12}")
    for t in doc["results"]:
        key = (t["B"], t["s_k"], t["n_h"])
        d = by_shape.get(key)
        if d is None:
            print(f"  {key[0]:4d} {key[1]:6d} {key[2]:4d} {'—':>10} {t['median_us']:10.1f}   (no dsv2 result)")
            continue
        ratio = t["median_us"] / d["median_us"]
        rows.append({"B": key[0], "s_k": key[1], "n_h": key[2], "dsv2_median_us": d["median_us"],
                     "torch_median_us": t["median_us"], "torch_over_dsv2": ratio, "floor_us": t["floor_us"],
                     "dsv2_percent_of_floor": d["percent_of_floor"], "torch_percent_of_floor": t["percent_of_floor"]})
        print(f"  {key[0]:4d} {key[1]:6d} {key[2]:4d} {d['median_us']:10.1f} {t['median_us']:10.1f} {ratio:10.2f} "
              f"{t['floor_us']:10.1f} {d['percent_of_floor']:10.1f}% {t['percent_of_floor']:11.1f}%")
    common.print_copy_ratio(ours, doc, "dsv2_gpu_bench")
    doc["against"] = {"file": path, "rows": rows}
    return rows


def dry_run(torch, args):
    """CPU: the op (fp32) vs plain loops in double on a tiny shape, then the JSON/table logic."""
    B, s_k, n_h = 2, 100, 3  # s_k not a multiple of 64; shuffled table
    cache, table, q_abs, q_pe = make_inputs(torch, B, s_k, n_h, 7, "cpu", torch.float32)
    o, lse = mla_decode(torch, cache, table, q_abs, q_pe, s_k)
    ref_o, ref_lse = plain_loop(cache.double().tolist(), table.tolist(), q_abs.double().tolist(),
                                q_pe.double().tolist(), s_k)
    eo = rel_err(flat(o.double().tolist()), flat(ref_o))
    el = rel_err(flat(lse.double().tolist()), flat(ref_lse))
    ok = eo <= 1e-5 and el <= 1e-5
    print(f"dry run (CPU, fp32, B={B} s_k={s_k} n_h={n_h}, shuffled table): o rel err {eo:.2e}, "
          f"lse rel err {el:.2e} (bound 1e-5) {'ok' if ok else 'FAIL'}")
    # the bf16 path of the op on the CPU too (casts, the P·c matmul): close to the fp32 one
    cb, qb, pb = cache.to(torch.bfloat16), q_abs.to(torch.bfloat16), q_pe.to(torch.bfloat16)
    o16, _ = mla_decode(torch, cb, table, qb, pb, s_k)
    e16 = rel_err(flat(o16.double().tolist()), flat(ref_o))
    ok16 = e16 <= 2 ** -6
    print(f"dry run (CPU, bf16): o rel err {e16:.2e} vs the fp32 inputs' loop (bound 2^-6) {'ok' if ok16 else 'FAIL'}")
    times = []
    for _ in range(5):
        t0 = time.perf_counter()
        mla_decode(torch, cache, table, q_abs, q_pe, s_k)
        times.append(time.perf_counter() - t0)
    doc = {"tool": "mla_decode_torch", "op": "mla_decode_absorbed", "impl": "torch eager, dry run on the CPU (fp32)",
           "device": "cpu", "torch_version": torch.__version__, "hbm_bytes_per_s": args.hbm_bw,
           "bf16_flops_per_s": args.bf16_flops, "copy": dict(common.NO_COPY),
           "iters": len(times), "warmup": 0, "sets": 1,
           "results": [result_row(B, s_k, n_h, times, args.hbm_bw, args.bf16_flops)]}
    print_table(doc)
    return doc, ok and ok16


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--json", help="write the results here (dsv2_gpu_bench's keys)")
    ap.add_argument("--against", help="dsv2_gpu_bench's JSON: print the ratio table")
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--seq", default="4096,8192")
    ap.add_argument("--heads", default="16,128")
    ap.add_argument("--iters", type=int, default=20)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--sets", type=int, default=2)
    ap.add_argument("--hbm-bw", type=float, default=4.0e12, help="B/s for the HBM floor (default 4.0e12)")
    ap.add_argument("--bf16-flops", type=float, default=790e12, help="FLOP/s for the compute floor (default 790e12)")
    ap.add_argument("--copy-gib", type=float, default=2.0)
    ap.add_argument("--dry-run", action="store_true", help="CPU only: check the op against a plain loop")
    args = ap.parse_args()

    try:
        import torch
    except ImportError as e:
        print(f"SKIPPED: no torch ({e})")
        return common.SKIP_EXIT
    if args.dry_run:
        doc, ok = dry_run(torch, args)
    else:
        if common.cuda_missing(torch):
            return common.SKIP_EXIT
        doc, ok = run_gpu(torch, args), True
    common.finish(doc, args, against)
    return 0 if ok else 1


def run_gpu(torch, args):
    dev = "cuda"
    props = torch.cuda.get_device_properties(0)
    copy = common.measure_copy(torch, args.copy_gib, lambda n, fn: common.event_times(torch, n, fn), dev)
    results = []
    for s_k in common.ints(args.seq):
        for n_h in common.ints(args.heads):
            print(f"mla_decode_torch: B={args.batch} s_k={s_k} n_h={n_h}", file=sys.stderr)
            sets = [make_inputs(torch, args.batch, s_k, n_h, 1000 * s + n_h + s_k, dev, torch.bfloat16)
                    for s in range(args.sets)]
            call = lambda r: mla_decode(torch, *sets[r % len(sets)], s_k)  # noqa: E731
            for r in range(args.warmup):
                call(r)
            torch.cuda.synchronize()
            t = common.event_times(torch, args.iters, call)
            results.append(result_row(args.batch, s_k, n_h, t, args.hbm_bw, args.bf16_flops))
            del sets
            torch.cuda.empty_cache()
    doc = {"tool": "mla_decode_torch", "op": "mla_decode_absorbed",
           "impl": "torch eager: gather by block table, bmm, fp32 softmax, bmm (bf16)",
           "device": common.device_description(props),
           "num_sm": props.multi_processor_count, "torch_version": torch.__version__,
           "hbm_bytes_per_s": args.hbm_bw, "bf16_flops_per_s": args.bf16_flops, "copy": copy,
           "iters": args.iters, "warmup": args.warmup, "sets": args.sets, "results": results}
    print_table(doc)
    return doc


if __name__ == "__main__":
    sys.exit(main())
