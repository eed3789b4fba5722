#!/usr/bin/env python3
"""dsv2 against PyTorch: one table from `dsv2 bench --json` and `bench_torch.py --json`.

    python3 tools/bench/report.py DSV2.json TORCH.json [DSV2_2.json TORCH_2.json ...] [--markdown]

With several runs (pairs of files, each pair measured back to back), the table gives the median
tokens/s of each side, the median of the per-run ratios and their range; floors and parts come
from the first pair.

Prefill and decode throughput side by side, the ratio dsv2/PyTorch against its target
(prefill ≥ 1.5×, decode ≥ 3×), the machine floors (GEMM rate, memory bandwidth) and dsv2's
per-part rates. Missing figures print as "–". Exits non-zero only when an input cannot be read;
a missed target is reported as "below target", not as a failure.
"""
from __future__ import annotations

import argparse
import json
import math
import sys

DASH = "–"
TARGETS = {"prefill": 1.5, "decode": 3.0}


def num(x):
    """x as a finite float, or None."""
    if isinstance(x, bool) or not isinstance(x, (int, float)):
        return None
    x = float(x)
    return x if math.isfinite(x) else None


def fmt(x, spec: str = ".2f", suffix: str = "") -> str:
    x = num(x)
    return DASH if x is None else f"{x:{spec}}{suffix}"


def rows_of(doc: dict, key: str) -> list[dict]:
    v = doc.get(key)
    return [r for r in v if isinstance(r, dict)] if isinstance(v, list) else []


def tps(r: dict):
    """tokens/s of a row: its tokens_per_s, else tokens/seconds (prefill) or 1/seconds_per_token (decode)."""
    x = num(r.get("tokens_per_s"))
    if x is not None:
        return x
    t, s, spt = num(r.get("tokens")), num(r.get("seconds")), num(r.get("seconds_per_token"))
    if t is not None and s is not None and s > 0:
        return t / s
    if spt is not None and spt > 0:
        return 1.0 / spt
    return None


def comparison_values(dsv2: dict, torch: dict) -> list[tuple]:
    """(label, dsv2 tokens/s, PyTorch tokens/s, target) for each row of one run; None where missing."""
    out = []
    # Prefill: pair by prompt length.
    tp = {r.get("tokens"): r for r in rows_of(torch, "prefill")}
    seen = set()
    for r in rows_of(dsv2, "prefill"):
        t = r.get("tokens")
        p = tp.get(t, {})
        seen.add(t)
        form = r.get("attention")
        out.append((f"prefill {t if t is not None else DASH}" + (f" ({form})" if form else ""), tps(r), tps(p),
                    TARGETS["prefill"]))
    for t, p in tp.items():
        if t not in seen:
            out.append((f"prefill {t}", None, tps(p), TARGETS["prefill"]))
    # Decode: every dsv2 row (one per context and attention form) against PyTorch's row of that context.
    td = {r.get("context"): r for r in rows_of(torch, "decode")}
    dd = rows_of(dsv2, "decode")
    contexts = []
    for r in dd + rows_of(torch, "decode"):
        c = r.get("context")
        if c not in contexts:
            contexts.append(c)
    contexts.sort(key=lambda c: (num(c) is None, num(c) or 0))
    for c in contexts:
        p = td.get(c, {})
        mine = [r for r in dd if r.get("context") == c]
        for r in mine or [{}]:
            form = r.get("attention")
            label = f"decode @ {c if c is not None else DASH}" + (f" ({form})" if form else "")
            out.append((label, tps(r), tps(p), TARGETS["decode"]))
    return out


def median(xs: list):
    xs = sorted(x for x in xs if x is not None)
    if not xs:
        return None
    m = len(xs) // 2
    return xs[m] if len(xs) % 2 else 0.5 * (xs[m - 1] + xs[m])


def comparison_rows(runs: list[tuple[dict, dict]]) -> list[list[str]]:
    """One row per measurement: median dsv2 and PyTorch tokens/s over the runs, the median of the
    per-run ratios (each ratio taken within one run, the two sides measured back to back), and
    with several runs the lowest and highest ratio."""
    by_label: dict[str, list[tuple]] = {}
    for d, t in runs:
        for label, ours, theirs, target in comparison_values(d, t):
            by_label.setdefault(label, []).append((ours, theirs, target))
    out = []
    for label, vals in by_label.items():
        ratios = [a / b for a, b, _ in vals if num(a) is not None and num(b) is not None and b > 0]
        r, target = median(ratios), vals[0][2]
        row = [label, fmt(median([v[0] for v in vals])), fmt(median([v[1] for v in vals])),
               DASH if r is None else f"{r:.2f}×"]
        if len(runs) > 1:
            row.append(f"{min(ratios):.2f}–{max(ratios):.2f}×" if ratios else DASH)
        row += [DASH if r is None else ("ok" if r >= target else "below target"), f"≥ {target:g}×"]
        out.append(row)
    return out


def floor_rows(dsv2: dict, torch: dict) -> list[list[str]]:
    return [["fp32 GEMM 2048³ (GFLOP/s)", fmt(dsv2.get("gemm_gflops"), ".1f"), fmt(torch.get("gemm_gflops"), ".1f")],
            ["memory bandwidth (GB/s)", fmt(dsv2.get("bandwidth_gbs"), ".1f"), fmt(torch.get("bandwidth_gbs"), ".1f")],
            ["peak RSS (GiB)",
             fmt(None if num(dsv2.get("peak_rss_bytes")) is None else dsv2["peak_rss_bytes"] / 2**30),
             fmt(None if num(torch.get("peak_rss_bytes")) is None else torch["peak_rss_bytes"] / 2**30)]]


def part_rows(dsv2: dict, torch: dict) -> list[list[str]]:
    peaks = [g for g in (num(dsv2.get("gemm_gflops")), num(torch.get("gemm_gflops"))) if g is not None and g > 0]
    peak = max(peaks) if peaks else None
    out = []
    for r in rows_of(dsv2, "parts"):
        g = num(r.get("gflops"))
        pct = DASH if g is None or peak is None else f"{100.0 * g / peak:.0f}%"
        name = str(r.get("name", DASH)) + (f" ({r['attention']})" if r.get("attention") else "")
        out.append([name, fmt(r.get("T"), "g"), fmt(r.get("context"), "g"),
                    fmt(g, ".1f"), pct, fmt(r.get("seconds"), ".4f")])
    return out


def text_table(header: list[str], rows: list[list[str]]) -> str:
    w = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(header)]
    line = lambda cells: "  ".join((c.ljust(w[i]) if i == 0 else c.rjust(w[i])) for i, c in enumerate(cells))
    return "\n".join([line(header), "  ".join("-" * x for x in w)] + [line(r).rstrip() for r in rows])


def md_table(header: list[str], rows: list[list[str]]) -> str:
    esc = lambda s: s.replace("|", "\\|")
    out = ["| " + " | ".join(esc(h) for h in header) + " |",
           "|" + "|".join(["---"] + ["---:"] * (len(header) - 1)) + "|"]
    out += ["| " + " | ".join(esc(c) for c in r) + " |" for r in rows]
    return "\n".join(out)


def describe(doc: dict, name: str) -> str:
    bits = [str(doc.get("impl") or doc.get("tool") or name)]
    v = doc.get("versions")
    if isinstance(v, dict):
        vs = ", ".join(f"{k} {v[k]}" for k in ("dsv2", "eigen", "compiler", "simd", "torch", "transformers", "python")
                       if isinstance(v.get(k), (str, int, float)))
        if vs:
            bits.append(vs)
    return "; ".join(bits)


def load(path: str) -> dict:
    with open(path) as f:
        doc = json.load(f)
    if not isinstance(doc, dict):
        raise ValueError("the top level is not a JSON object")
    return doc


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("files", nargs="+", metavar="DSV2.json TORCH.json",
                    help="pairs of files: dsv2 bench --json, then bench_torch.py --json, one pair per run")
    ap.add_argument("--markdown", action="store_true", help="GitHub tables (for docs/benchmarks.md)")
    args = ap.parse_args(argv)
    if len(args.files) % 2:
        print("report.py: give pairs of files: DSV2.json TORCH.json [DSV2_2.json TORCH_2.json ...]", file=sys.stderr)
        return 2
    docs = []
    for p in args.files:
        try:
            docs.append(load(p))
        except (OSError, ValueError) as e:
            print(f"report.py: cannot read {p}: {e}", file=sys.stderr)
            return 2
    runs = list(zip(docs[0::2], docs[1::2]))
    dsv2, torch = runs[0]

    table = md_table if args.markdown else text_table
    notes = []
    for key in ("model", "threads", "precision"):
        a, b = dsv2.get(key), torch.get(key)
        if a is not None and b is not None and a != b:
            notes.append(f"{key} differs: dsv2 {a}, PyTorch {b}")
    cpu = dsv2.get("cpu") or torch.get("cpu")

    lines = []
    head = "dsv2 against PyTorch (CPU)"
    lines.append(f"## {head}" if args.markdown else head)
    lines.append("")
    meta = [f"model: {dsv2.get('model', torch.get('model', DASH))}",
            f"threads: {dsv2.get('threads', torch.get('threads', DASH))}",
            f"precision: {dsv2.get('precision', torch.get('precision', DASH))}",
            f"cpu: {cpu or DASH}",
            f"dsv2: {describe(dsv2, 'dsv2')}",
            f"PyTorch: {describe(torch, 'pytorch')}"]
    loads = [num(d.get("other_cpu_load")) for pair in runs for d in pair]
    loads = [x for x in loads if x is not None]
    meta.append(f"runs: {len(runs)}" + (f" (other processes' CPU load at most {max(loads):.2f} cores)" if loads else ""))
    meta += [f"note: {n}" for n in notes]
    lines += [f"- {m}" if args.markdown else f"  {m}" for m in meta]
    lines.append("")
    header = ["", "dsv2 tokens/s", "PyTorch tokens/s", "dsv2/PyTorch"] + (["range"] if len(runs) > 1 else [])
    lines.append(table(header + ["status", "target"], comparison_rows(runs)))
    lines.append("")
    lines.append("### Floors" if args.markdown else "floors")
    lines.append("")
    lines.append(table(["", "dsv2", "PyTorch"], floor_rows(dsv2, torch)))
    parts = part_rows(dsv2, torch)
    if parts:
        lines.append("")
        lines.append("### dsv2 parts" if args.markdown else "dsv2 parts (GFLOP/s as % of the faster GEMM floor)")
        if args.markdown:
            lines.append("")
            lines.append("GFLOP/s as a percentage of the faster of the two fp32 GEMM floors.")
        lines.append("")
        lines.append(table(["part", "T", "context", "GFLOP/s", "% of GEMM", "seconds"], parts))
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
