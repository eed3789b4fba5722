#!/usr/bin/env python3
"""The PyTorch peer of `dsv2 bench`: transformers' DeepseekV2ForCausalLM, fp32, on the CPU.

    python3 tools/bench/bench_torch.py --model DIR --threads N [--prefill 512]
        [--contexts 128,1024,4096] [--steps 8] [--attn eager|sdpa]
        [--experts default|eager|grouped_mm|batched_mm] [--json OUT.json] [--check-logits FILE.npy]

Definitions (the same as dsv2's; tools/bench/README.md):
  token i = (1 + 7919·i) mod V, i = 0, 1, 2, …
  prefill  one forward of T = --prefill tokens (i = 0..T−1) from an empty cache, logits of the last
           token only (logits_to_keep=1); an untimed 16-token forward first.
  decode   at context c: a cache holding c tokens, filled with random values of the shapes this
           model caches (through the cache's own update()); one untimed step (token c at position c),
           the cache cropped back to c tokens, then --steps timed steps s = 0..steps−1, each one
           token (i = c+s) at position c+s, appended to the cache, logits of that token.
  gemm     best of 5 torch.mm of 2048×2048 by 2048×2048 fp32 at N threads, 2·2048³ flop.
Progress goes to stderr, a table to stdout, everything to --json.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import re
import resource
import sys
import time

import torch

T0 = time.perf_counter()


def log(msg: str) -> None:
    print(f"[{time.perf_counter() - T0:7.1f} s] {msg}", file=sys.stderr, flush=True)


def token_ids(start: int, n: int, vocab: int) -> torch.Tensor:
    return torch.tensor([[(1 + 7919 * i) % vocab for i in range(start, start + n)]], dtype=torch.long)


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def parallel_summary() -> dict:
    """The lines of torch.__config__.parallel_info() as key: value, and the BLAS of the build."""
    out: dict = {}
    for line in torch.__config__.parallel_info().splitlines():
        line = line.strip()
        if not line or set(line) <= set("-") or line.endswith(":"):   # blanks, rules, section headers
            continue
        if ":" in line:
            k, v = line.rsplit(":", 1)
            if k.strip() and v.strip():
                out[k.strip()] = v.strip()
                continue
        out.setdefault("notes", []).append(line)
    show = torch.__config__.show()
    for key in ("BLAS_INFO", "LAPACK_INFO"):
        m = re.search(rf"\b{key}=([^,\s]+)", show)
        if m:
            out[key] = m.group(1)
    try:
        out["cpu_capability"] = torch.backends.cpu.get_cpu_capability()
    except (AttributeError, RuntimeError):
        pass
    out["mkl_available"] = torch.backends.mkl.is_available()
    out["mkldnn_available"] = torch.backends.mkldnn.is_available()
    return out


def current_rss() -> int | None:
    """VmRSS of this process in bytes (Linux), None elsewhere."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def system_busy_seconds():
    """(busy CPU-seconds of the whole machine, CPU-seconds of this process, wall time), Linux only."""
    try:
        with open("/proc/stat") as f:
            v = [int(x) for x in f.readline().split()[1:]]
        idle = v[3] + (v[4] if len(v) > 4 else 0)         # idle + iowait
        busy = (sum(v[:8]) - idle) / os.sysconf("SC_CLK_TCK")  # user … steal, no guest (counted in user)
    except (OSError, ValueError, IndexError):
        return None
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return busy, ru.ru_utime + ru.ru_stime, time.perf_counter()


def gemm_gflops(n: int = 2048, reps: int = 5) -> float:
    g = torch.Generator().manual_seed(0)
    a = torch.randn(n, n, generator=g)
    b = torch.randn(n, n, generator=g)
    c = torch.empty(n, n)
    torch.mm(a, b, out=c)  # warm-up
    best = float("inf")
    for _ in range(reps):
        t = time.perf_counter()
        torch.mm(a, b, out=c)
        best = min(best, time.perf_counter() - t)
    return 2.0 * n ** 3 / best / 1e9


def numel(shape) -> int:
    n = 1
    for x in shape:
        n *= x
    return n


def forward(model, ids, cache, position: int, keep: int = 1):
    pos = torch.arange(position, position + ids.shape[1], dtype=torch.long)[None]
    return model(input_ids=ids, position_ids=pos, past_key_values=cache, use_cache=True,
                 logits_to_keep=keep).logits


def cache_shapes(model, DynamicCache, vocab: int):
    """What this model's cache holds per token: (keys shape, values shape) per layer, from a
    one-token forward on an empty cache (the sequence dimension is -2)."""
    probe = DynamicCache(config=model.config)
    forward(model, token_ids(0, 1, vocab), probe, 0)
    shapes = [(tuple(l.keys.shape), tuple(l.values.shape)) for l in probe.layers]
    for ks, vs in shapes:
        assert ks[-2] == 1 and vs[-2] == 1, shapes
    return shapes


def synthetic_cache(model, DynamicCache, shapes, context: int, seed: int):
    """A cache holding `context` tokens of random normal values, appended through update()."""
    g = torch.Generator().manual_seed(seed)
    cache = DynamicCache(config=model.config)
    for l, (ks, vs) in enumerate(shapes):
        k = torch.randn((*ks[:-2], context, ks[-1]), generator=g)
        v = torch.randn((*vs[:-2], context, vs[-1]), generator=g)
        cache.update(k, v, l)
    assert cache.get_seq_length() == context
    return cache


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    ap.add_argument("--model", required=True, help="Hugging Face DeepSeek-V2 checkpoint directory")
    ap.add_argument("--threads", type=int, required=True)
    ap.add_argument("--prefill", type=int, default=512, help="prompt length T (0: skip)")
    ap.add_argument("--contexts", default="128,1024,4096", help="decode contexts, comma-separated ('' : none)")
    ap.add_argument("--steps", type=int, default=8, help="timed decode steps per context")
    ap.add_argument("--attn", default="eager", choices=["eager", "sdpa"], help="attn_implementation")
    ap.add_argument("--experts", default="eager", choices=["default", "eager", "grouped_mm", "batched_mm"],
                    help="experts_implementation (default eager: the per-expert loop; 'default' lets "
                         "transformers choose, grouped_mm in 5.23)")
    ap.add_argument("--json", help="write the results here")
    ap.add_argument("--check-logits", metavar="NPY",
                    help="float32 logits [T, V] of tokens i = 0..T-1 (e.g. from `dsv2 forward`): compare")
    ap.add_argument("--check-tol", type=float, default=1e-4,
                    help="max |Δ logit| / max |logit| for --check-logits (default 1e-4)")
    args = ap.parse_args(argv)
    contexts = [int(c) for c in args.contexts.split(",") if c.strip()]
    if args.threads < 1 or args.steps < 1 or args.prefill < 0 or any(c < 1 for c in contexts):
        ap.error("--threads and --steps must be >= 1, --prefill >= 0, contexts >= 1")

    torch.set_num_threads(args.threads)
    torch.set_num_interop_threads(1)
    busy0 = system_busy_seconds()

    import transformers
    from transformers import DeepseekV2ForCausalLM
    from transformers.cache_utils import DynamicCache
    transformers.utils.logging.disable_progress_bar()

    log(f"loading {args.model} in fp32 (attn {args.attn}, experts {args.experts}) ...")
    kw = {} if args.experts == "default" else {"experts_implementation": args.experts}
    t = time.perf_counter()
    model = DeepseekV2ForCausalLM.from_pretrained(args.model, dtype=torch.float32,
                                                  attn_implementation=args.attn, **kw)
    model.eval()
    load_s = time.perf_counter() - t
    cfg = model.config
    V = cfg.vocab_size
    attn_impl = cfg._attn_implementation
    experts_impl = getattr(cfg, "_experts_implementation", None)
    nparams = sum(p.numel() for p in model.parameters())
    assert all(p.dtype == torch.float32 for p in model.parameters())
    log(f"loaded in {load_s:.1f} s: {nparams / 1e9:.3f} B parameters, {cfg.num_hidden_layers} layers, "
        f"V = {V}; attn_implementation={attn_impl}, experts_implementation={experts_impl}")

    res: dict = {
        "tool": "pytorch",
        "impl": f"transformers DeepseekV2ForCausalLM, attn_implementation={attn_impl}, "
                f"experts_implementation={experts_impl}",
        "model": args.model,
        "threads": args.threads,
        "precision": "fp32",
        "versions": {"torch": torch.__version__, "transformers": transformers.__version__,
                     "python": platform.python_version(), "parallel": parallel_summary()},
        "cpu": cpu_model(),
        "parameters": nparams,
        "layers": cfg.num_hidden_layers,
        "load_seconds": load_s,
        "rss_after_load_bytes": current_rss(),
    }
    failed = False

    with torch.inference_mode():
        # Sanity: 8 tokens, finite logits.
        logits = forward(model, token_ids(0, 8, V), DynamicCache(config=cfg), 0, keep=0)
        assert logits.shape == (1, 8, V), tuple(logits.shape)
        assert torch.isfinite(logits).all(), "non-finite logits on the 8-token sanity prompt"
        log(f"sanity: 8 tokens, logits finite, rms {logits.pow(2).mean().sqrt().item():.4f}")

        if args.check_logits:
            import numpy as np
            ref = torch.from_numpy(np.load(args.check_logits).astype(np.float32))
            ref = ref.reshape(-1, V)
            n = ref.shape[0]
            got = forward(model, token_ids(0, n, V), DynamicCache(config=cfg), 0, keep=0)[0]
            diff = (got - ref).abs().max().item()
            scale = ref.abs().max().item()
            rel = diff / scale if scale > 0 else float("inf")
            ok = rel <= args.check_tol
            failed |= not ok
            res["check_logits"] = {"file": args.check_logits, "tokens": n, "max_abs_diff": diff,
                                   "max_abs_ref": scale, "rel": rel, "tol": args.check_tol, "ok": ok}
            log(f"check-logits {args.check_logits}: {n} tokens, max |Δ| {diff:.3e}, max |ref| {scale:.3e}, "
                f"rel {rel:.2e} -> {'ok' if ok else 'MISMATCH'}")

        log("fp32 GEMM 2048³ ...")
        res["gemm_gflops"] = gemm_gflops()
        log(f"gemm: {res['gemm_gflops']:.1f} GFLOP/s")

        res["prefill"] = []
        if args.prefill > 0:
            forward(model, token_ids(0, 16, V), DynamicCache(config=cfg), 0)  # warm-up
            T = args.prefill
            ids = token_ids(0, T, V)
            cache = DynamicCache(config=cfg)
            log(f"prefill {T} tokens ...")
            t = time.perf_counter()
            logits = forward(model, ids, cache, 0, keep=1)
            s = time.perf_counter() - t
            assert logits.shape == (1, 1, V) and cache.get_seq_length() == T
            assert torch.isfinite(logits).all()
            res["prefill"].append({"tokens": T, "seconds": s, "tokens_per_s": T / s})
            log(f"prefill {T}: {s:.3f} s, {T / s:.1f} tokens/s")
            del cache, logits

        res["decode"] = []
        if contexts:
            shapes = cache_shapes(model, DynamicCache, V)
            per_token = sum(numel(k) // k[0] + numel(v) // v[0] for k, v in shapes)  # batch 1, one token
            res["cache_per_token"] = {"keys_shape": list(shapes[0][0]), "values_shape": list(shapes[0][1]),
                                      "floats_all_layers": per_token}
            log(f"cache per layer per token: keys {shapes[0][0]}, values {shapes[0][1]}; "
                f"{per_token} floats per token over all layers")
        for c in contexts:
            cache = synthetic_cache(model, DynamicCache, shapes, c, seed=c)
            forward(model, token_ids(c, 1, V), cache, c)  # warm-up at position c ...
            cache.crop(-1)                                 # ... and back to c tokens
            assert cache.get_seq_length() == c
            total = 0.0
            for s in range(args.steps):
                ids = token_ids(c + s, 1, V)
                t = time.perf_counter()
                logits = forward(model, ids, cache, c + s, keep=1)
                total += time.perf_counter() - t
                assert logits.shape == (1, 1, V) and cache.get_seq_length() == c + s + 1
            assert torch.isfinite(logits).all()
            spt = total / args.steps
            res["decode"].append({"context": c, "steps": args.steps, "seconds_per_token": spt,
                                  "tokens_per_s": 1.0 / spt})
            log(f"decode at {c}: {spt * 1e3:.1f} ms/token, {1.0 / spt:.2f} tokens/s")
            del cache, logits

    res["peak_rss_bytes"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # includes loading
    res["rss_end_bytes"] = current_rss()
    res["wall_seconds"] = time.perf_counter() - T0
    busy1 = system_busy_seconds()
    if busy0 is not None and busy1 is not None:
        # CPU time the rest of the machine used while this ran, in cores (0 on a quiet machine).
        other = max(0.0, (busy1[0] - busy0[0]) - (busy1[1] - busy0[1])) / max(busy1[2] - busy0[2], 1e-9)
        res["other_cpu_load"] = other
        if other > 0.2:
            log(f"warning: other processes kept {other:.2f} cores busy on average during this run; "
                "the figures may be low")

    print(f"PyTorch peer: {res['impl']}")
    print(f"  model {args.model} ({res['layers']} layers, {nparams / 1e9:.2f} B parameters), fp32, "
          f"{args.threads} threads, torch {torch.__version__}, transformers {transformers.__version__}")
    print(f"  cpu {res['cpu']}")
    print(f"  {'what':<24}{'seconds':>12}{'tokens/s':>12}")
    for p in res["prefill"]:
        print(f"  {'prefill ' + str(p['tokens']):<24}{p['seconds']:>12.3f}{p['tokens_per_s']:>12.2f}")
    for d in res["decode"]:
        print(f"  {'decode @ ' + str(d['context']):<24}{d['seconds_per_token']:>12.4f}{d['tokens_per_s']:>12.2f}"
              f"   (s/token, mean of {d['steps']})")
    rss = res["rss_after_load_bytes"]
    print(f"  fp32 GEMM 2048³: {res['gemm_gflops']:.1f} GFLOP/s; peak RSS {res['peak_rss_bytes'] / 2**30:.2f} GiB "
          f"(loading included; {'–' if rss is None else f'{rss / 2**30:.2f} GiB'} after loading); "
          f"load {load_s:.1f} s; wall {res['wall_seconds']:.1f} s")
    if "other_cpu_load" in res:
        print(f"  other processes on this machine during the run: {res['other_cpu_load']:.2f} cores on average")
    if "check_logits" in res:
        ch = res["check_logits"]
        print(f"  check-logits: rel {ch['rel']:.2e} ({'ok' if ch['ok'] else 'MISMATCH'}, tol {ch['tol']:g})")

    if args.json:
        d = os.path.dirname(args.json)
        if d:
            os.makedirs(d, exist_ok=True)
        with open(args.json, "w") as f:
            json.dump(res, f, indent=2)
            f.write("\n")
        log(f"wrote {args.json}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
