#!/usr/bin/env python3
"""The PyTorch peer of dsv2_gpu_moe_bench: one DeepSeekMoE layer and whole-model decode in
transformers' DeepseekV2 (PyTorch eager, bf16) on the same GPU, with the same config, the same
definitions and the same JSON keys (bench/moe_bench.cpp), for a ratio measured in one run.

    python3 tools/bench/moe_torch.py --json torch.json [--against dsv2.json]
    python3 tools/bench/moe_torch.py --dry-run [--against dsv2-dry.json]   # CPU, tiny config

What runs (transformers' modeling_deepseek_v2, as installed):
  MoE layer   its DeepSeekMoE module (DeepseekV2Moe: router in fp32, top-K, the experts, the
              shared SwiGLU) built from the config, weights uniform of std 1/sqrt(in), --sets
              copies rotated, input x [B, 1, d] (decode) or [1, T, d] (prefill), uniform in [-1, 1).
              One row per experts implementation of --experts (transformers' per-expert loop
              "eager", and "grouped_mm" where this version has it), per --dtypes.
  model       DeepseekV2ForCausalLM from the config cut to --layers layers, random init,
              bf16, attn_implementation "eager" (the experts as above).
Definitions, identical to dsv2_gpu_moe_bench's:
  time        torch.cuda.synchronize, perf_counter, the call, synchronize (the eager experts loop
              synchronises inside too); median (and min) of --iters calls after --warmup.
  bytes       E_hit*3*d*d_e*b + 3*d*(N_s*d_e)*b + N_r*d*b_router (E_hit counted per input set
              from the router's choices; b = 2 for bf16, 4 for fp32; here the router weight has
              the model's dtype, transformers casts it to fp32 for the product)
  FLOPs       2*T*K*3*d*d_e + 2*T*3*d*(N_s*d_e) + 2*T*d*N_r
  decode      at context c: an untimed prefill of c tokens (token i = (1 + 7919*i) mod V), a
              fresh cache, the timed prefill, --step-warmup untimed steps, then --steps timed
              one-token steps, each returning the last logits on the host as fp32 (as dsv2's
              Engine::forward does); tokens/s = 1 / median step.
For timing only: transformers' known deviations from the released model (tools/golden/make_golden.py
audits them: the softmax scale before PR #47435, norm_topk_prob ignored, moe_layer_freq ignored)
change numbers, not the work done, and are left as installed. Its decode caches per-head K/V
decompressed from the latent (spec §6.13) and recomputes through kv_b_proj; that is the peer a
user would reach for, not an MLA-sized one.

--against FILE (dsv2_gpu_moe_bench's JSON) prints the ratio tables (PyTorch time / dsv2 time:
> 1 means dsv2 is faster) and stores them in this JSON. Without torch or transformers, or without a
CUDA device, it prints "SKIPPED: ..." and exits 77 (except --dry-run, which runs on the CPU).
"""
# The device copy, the skip and the JSON/table plumbing it shares with mla_decode_torch.py are in
# bench_common.py, beside it.
import argparse
import math
import os
import statistics
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import bench_common as common  # noqa: E402
from bench_common import ints, words  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(HERE))
DEFAULT_CONFIG = os.path.join(ROOT, "data", "configs", "deepseek-v2-lite", "config.json")
TINY_CONFIG = os.path.join(ROOT, "data", "configs", "tiny", "config.json")


def log(msg):
    print(f"moe_torch: {msg}", file=sys.stderr, flush=True)


def bench_token(i, V):
    return (1 + 7919 * i) % V


# ------------------------------------------------------------------------------------------------
# config and modules

def load_config(path, layers, DeepseekV2Config):
    d = common.load_json(path)
    if layers:
        d["num_hidden_layers"] = min(int(d["num_hidden_layers"]), layers)
    d.pop("auto_map", None)
    return DeepseekV2Config(**d), d


def config_summary(d):
    """The fields dsv2_gpu_moe_bench writes under "config", from a HF config dict."""
    return {"d": d["hidden_size"], "N_r": d["n_routed_experts"], "K_r": d["num_experts_per_tok"],
            "d_e": d["moe_intermediate_size"], "N_s": d["n_shared_experts"], "G": d.get("n_group") or 1,
            "G_k": d.get("topk_group") or 1, "n_h": d["num_attention_heads"], "d_c": d["kv_lora_rank"],
            "d_R": d["qk_rope_head_dim"], "d_q": d.get("q_lora_rank") or 0, "d_ff": d["intermediate_size"],
            "V": d["vocab_size"], "L": d["num_hidden_layers"], "topk_method": d.get("topk_method", "greedy")}


def hf_module():
    import transformers.models.deepseek_v2.modeling_deepseek_v2 as hf
    return hf


def moe_class(hf):
    for name in ("DeepseekV2Moe", "DeepseekV2MoE"):
        if hasattr(hf, name):
            return getattr(hf, name)
    raise RuntimeError("no DeepseekV2Moe / DeepseekV2MoE class in this transformers")


def set_experts_impl(root, impl):
    """Points every experts module below root (and its config) at `impl`; False if this
    transformers has no switchable experts implementation (then only its own forward runs)."""
    done = False
    for m in root.modules():
        cfg = getattr(m, "config", None)
        if cfg is not None and "Experts" in type(m).__name__ and hasattr(type(cfg), "_experts_implementation"):
            cfg._experts_implementation = impl
            done = True
    return done


def available_experts_impls():
    try:
        from transformers.integrations.moe import ALL_EXPERTS_FUNCTIONS
        return ["eager"] + list(ALL_EXPERTS_FUNCTIONS.keys())
    except ImportError:
        return []


def uniform_init_(torch, module, seed):
    """Every parameter uniform with std 1/sqrt(in) (its last dimension), as dsv2's random weights."""
    g = torch.Generator(device=next(module.parameters()).device)
    g.manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            a = math.sqrt(3.0 / p.shape[-1])
            p.uniform_(-a, a, generator=g)


class Timer:
    def __init__(self, torch, cuda):
        self.torch, self.cuda = torch, cuda

    def sync(self):
        if self.cuda:
            self.torch.cuda.synchronize()

    def time(self, fn):
        self.sync()
        t0 = time.perf_counter()
        out = fn()
        self.sync()
        return time.perf_counter() - t0, out

    def each(self, n, fn):
        """Seconds of each of n calls fn(r), each timed as by time()."""
        return [self.time(lambda: fn(r))[0] for r in range(n)]


# ------------------------------------------------------------------------------------------------
# 1. the MoE layer

def layer_bytes(c, hit, eb, router_eb):
    d, I = c["d"], c["d_e"]
    return hit * 3.0 * d * I * eb + 3.0 * d * c["N_s"] * I * eb + c["N_r"] * d * router_eb


def layer_flops(c, T):
    d, I = c["d"], c["d_e"]
    return 2.0 * T * c["K_r"] * 3.0 * d * I + 2.0 * T * 3.0 * d * c["N_s"] * I + 2.0 * T * d * c["N_r"]


def experts_hit(torch, moe, x):
    """Distinct experts the router of `moe` sends the tokens of x to (its integer output: the top-K
    indices, wherever this version puts them in the tuple)."""
    out = moe.gate(x)
    idx = next(o for o in (out if isinstance(out, tuple) else (out,))
               if torch.is_tensor(o) and not o.dtype.is_floating_point)
    return int(torch.unique(idx.reshape(-1)).numel())


def bench_layer(torch, args, timer, hf, cfg, c, dtype, dev, impl):
    name = {torch.bfloat16: "bf16", torch.float32: "fp32"}[dtype]
    cls = moe_class(hf)
    with torch.device(dev):
        sets = []
        for s in range(args.sets):
            m = cls(cfg).to(dtype=dtype).eval()
            uniform_init_(torch, m, 100 + s)
            sets.append(m)
    switchable = all(set_experts_impl(m, impl) for m in sets) if impl != "installed" else False
    if impl != "installed" and not switchable:
        raise RuntimeError(f"this transformers cannot switch its experts implementation to {impl}")
    eb = 2 if dtype == torch.bfloat16 else 4
    router_eb = sets[0].gate.weight.element_size()
    rows = []
    shapes = [(B, False) for B in args.decode] + ([(args.prefill, True)] if args.prefill > 0 else [])
    with torch.inference_mode():
        for T, prefill in shapes:
            log(f"MoE layer, {name}, experts {impl}, {'prefill T' if prefill else 'decode B'}={T}")
            g = torch.Generator(device=dev)
            g.manual_seed(7001 + T)
            shape = (1, T, c["d"]) if prefill else (T, 1, c["d"])
            xs = [torch.empty(shape, device=dev, dtype=dtype).uniform_(-1, 1, generator=g) for _ in sets]
            hits = [experts_hit(torch, m, x) for m, x in zip(sets, xs)]
            iters = args.prefill_iters if prefill else args.iters
            for r in range(args.warmup):
                sets[r % len(sets)](xs[r % len(sets)])
            secs, gbs, out = [], [], None
            for r in range(iters):
                k = r % len(sets)
                t, out = timer.time(lambda: sets[k](xs[k]))
                secs.append(t)
                gbs.append(layer_bytes(c, hits[k], eb, router_eb) / t / 1e9)
            med = statistics.median(secs)
            hit_mean = sum(hits[r % len(sets)] for r in range(iters)) / iters
            by = layer_bytes(c, hit_mean, eb, router_eb)
            fl = layer_flops(c, T)
            peak = args.bf16_flops if dtype == torch.bfloat16 else args.fp32_flops
            ntok = T
            rows.append({"dtype": name, "phase": "prefill" if prefill else "decode", "T": ntok, "experts": impl,
                         "iters": iters, "sets": len(sets), "median_us": med * 1e6, "min_us": min(secs) * 1e6,
                         "experts_hit_mean": hit_mean,
                         "experts_hit_expected": c["N_r"] * (1 - (1 - c["K_r"] / c["N_r"]) ** ntok),
                         "weight_bytes": by, "gbs": statistics.median(gbs), "flops": fl, "tflops": fl / med / 1e12,
                         "hbm_floor_us": by / args.hbm_bw * 1e6, "compute_floor_us": fl / peak * 1e6,
                         "peak_flops_per_s": peak, "percent_of_hbm": 100.0 * statistics.median(gbs) * 1e9 / args.hbm_bw,
                         "percent_of_peak_flops": 100.0 * fl / med / peak,
                         "finite": bool(torch.isfinite(out).all().item())})
            del xs
    del sets
    if timer.cuda:
        torch.cuda.empty_cache()
    return rows


# ------------------------------------------------------------------------------------------------
# 2. the whole model

def bench_model(torch, args, timer, cfg, dev, impls, DynamicCache, errors):
    """One model, built once; the decode timed once per experts implementation in impls."""
    from transformers import DeepseekV2ForCausalLM
    dtype = torch.bfloat16 if args.model_dtype == "bf16" else torch.float32
    t0 = time.perf_counter()
    with torch.device(dev):
        try:
            model = DeepseekV2ForCausalLM._from_config(cfg, dtype=dtype, attn_implementation=args.attn)
        except TypeError:
            model = DeepseekV2ForCausalLM._from_config(cfg, torch_dtype=dtype, attn_implementation=args.attn)
    model = model.to(device=dev, dtype=dtype).eval()  # whatever this version did with dtype=
    timer.sync()
    build_s = time.perf_counter() - t0
    V = cfg.vocab_size
    nparams = sum(p.numel() for p in model.parameters())

    def new_cache():
        try:
            return DynamicCache(config=cfg)
        except TypeError:
            return DynamicCache()

    def forward(ids, cache, pos):
        ids_t = torch.tensor([ids], dtype=torch.long, device=dev)
        p = torch.arange(pos, pos + len(ids), dtype=torch.long, device=dev)[None]
        logits = model(input_ids=ids_t, position_ids=p, past_key_values=cache, use_cache=True,
                       logits_to_keep=1).logits
        return logits[0, -1].float().cpu()  # the last logits on the host, as Engine::forward returns them

    results = []
    for impl in impls:
        if impl != "installed" and not set_experts_impl(model, impl):
            errors.append(f"whole model, experts {impl}: this transformers cannot switch its experts implementation")
            continue
        out = {"layers": cfg.num_hidden_layers, "dtype": args.model_dtype, "experts": impl, "attn": args.attn,
               "params_total": nparams, "build_s": build_s, "steps": args.steps, "step_warmup": args.step_warmup,
               "tokens": "token i = (1 + 7919 i) mod V", "decode": []}
        try:
            with torch.inference_mode():
                for c in args.contexts:
                    log(f"whole model, experts {impl}, context {c}")
                    prompt = [bench_token(i, V) for i in range(c)]
                    forward(prompt, new_cache(), 0)  # untimed
                    cache = new_cache()
                    pre_s, _ = timer.time(lambda: forward(prompt, cache, 0))
                    for s in range(args.step_warmup):
                        forward([bench_token(c + s, V)], cache, c + s)
                    secs, logits = [], None
                    for s in range(args.steps):
                        i = c + args.step_warmup + s
                        t, logits = timer.time(lambda: forward([bench_token(i, V)], cache, i))
                        secs.append(t)
                    med = statistics.median(secs)
                    out["decode"].append({"context": c, "steps": args.steps, "prefill_s": pre_s,
                                          "prefill_tokens_per_s": c / pre_s, "median_step_ms": med * 1e3,
                                          "mean_step_ms": statistics.mean(secs) * 1e3, "min_step_ms": min(secs) * 1e3,
                                          "tokens_per_s": 1.0 / med,
                                          "finite": bool(torch.isfinite(logits).all().item())})
                    del cache
        except Exception as e:  # noqa: BLE001 — one implementation failing must not stop the others
            errors.append(f"whole model, experts {impl}: {type(e).__name__}: {e}")
            log(errors[-1])
        if out["decode"]:
            results.append(out)
    del model
    if timer.cuda:
        torch.cuda.empty_cache()
    return results


# ------------------------------------------------------------------------------------------------
# output

def print_table(doc):
    print(f"moe_torch: DeepSeekMoE layer and whole-model decode in PyTorch {doc.get('torch_version', '?')} eager "
          f"(transformers {doc.get('transformers_version', '?')}) on {doc['device']}")
    common.print_copy(doc.get("copy"), f"; HBM3e datasheet {doc['hbm_bytes_per_s'] / 1e9:.0f} GB/s")
    dec = [r for r in doc["moe_layer"] if r["phase"] == "decode"]
    if dec:
        print(f"  MoE layer, decode: GB/s of weights read (median of {doc['iters']} calls, {doc['sets']} rotated sets)")
        print(f"  {'dtype':>5} {'experts':>10} {'B':>4} {'hit':>6} {'median µs':>11} {'min µs':>9} {'weight MB':>10} "
              f"{'GB/s':>8} {'%HBM':>7}")
        for r in dec:
            print(f"  {r['dtype']:>5} {r['experts']:>10} {r['T']:4d} {r['experts_hit_mean']:6.1f} {r['median_us']:11.1f} "
                  f"{r['min_us']:9.1f} {r['weight_bytes'] / 1e6:10.1f} {r['gbs']:8.0f} {r['percent_of_hbm']:6.1f}%")
    pre = [r for r in doc["moe_layer"] if r["phase"] == "prefill"]
    if pre:
        print(f"  MoE layer, prefill: TFLOP/s (median of {doc['prefill_iters']} calls)")
        print(f"  {'dtype':>5} {'experts':>10} {'T':>5} {'median ms':>10} {'GFLOP':>8} {'TFLOP/s':>9} {'%peak':>7}")
        for r in pre:
            print(f"  {r['dtype']:>5} {r['experts']:>10} {r['T']:5d} {r['median_us'] / 1e3:10.3f} {r['flops'] / 1e9:8.1f} "
                  f"{r['tflops']:9.2f} {r['percent_of_peak_flops']:6.1f}%")
    for m in doc.get("models", []):
        print(f"  whole model: {m['layers']} layers, {m['dtype']}, attn {m['attn']}, experts {m['experts']}, "
              f"{m['params_total'] / 1e9:.2f} B parameters; median of {m['steps']} steps")
        print(f"  {'context':>7} {'prefill s':>10} {'step ms':>10} {'mean ms':>10} {'tokens/s':>10}")
        for r in m["decode"]:
            print(f"  {r['context']:7d} {r['prefill_s']:10.3f} {r['median_step_ms']:10.3f} {r['mean_step_ms']:10.3f} "
                  f"{r['tokens_per_s']:10.1f}")
    for e in doc.get("errors", []):
        print(f"  not run: {e}")


def against(doc, path):
    """Ratio tables against dsv2_gpu_moe_bench's JSON; stored in doc['against']."""
    ours = common.load_json(path)
    res = {"file": path, "moe_layer": [], "model": [], "config_mismatch": []}
    theirs_cfg, our_cfg = doc.get("config", {}), ours.get("config", {})
    for k in ("d", "N_r", "K_r", "d_e", "N_s", "G", "G_k", "n_h", "d_c", "d_R", "d_q", "d_ff", "V"):
        if k in theirs_cfg and k in our_cfg and theirs_cfg[k] != our_cfg[k]:
            res["config_mismatch"].append(f"{k}: dsv2 {our_cfg[k]}, PyTorch {theirs_cfg[k]}")
    print()
    print(f"ratio (same GPU, same run): dsv2 ({ours.get('backend', '?')}) vs PyTorch eager; "
          f"PyTorch time / dsv2 time, > 1: dsv2 is faster")
    if res["config_mismatch"]:
        print("  WARNING: the configs differ: " + "; ".join(res["config_mismatch"]))
    by = {(r["dtype"], r["phase"], r["T"]): r for r in ours.get("moe_layer", [])}
    if doc["moe_layer"]:
        print(f"  MoE layer   {'dtype':>5} {'phase':>7} {'T':>5} {'experts':>10} {'dsv2 µs':>10} {'torch µs':>10} "
              f"{'torch/dsv2':>10} {'dsv2 GB/s|TF':>12} {'torch GB/s|TF':>13}")
    for t in doc["moe_layer"]:
        d = by.get((t["dtype"], t["phase"], t["T"]))
        if d is None:
            print(f"  {'':11} {t['dtype']:>5} {t['phase']:>7} {t['T']:5d} {t['experts']:>10}   (no dsv2 result)")
            continue
        ratio = t["median_us"] / d["median_us"]
        rate = "gbs" if t["phase"] == "decode" else "tflops"
        res["moe_layer"].append({"dtype": t["dtype"], "phase": t["phase"], "T": t["T"], "experts": t["experts"],
                                 "dsv2_median_us": d["median_us"], "torch_median_us": t["median_us"],
                                 "torch_over_dsv2": ratio, "dsv2_" + rate: d[rate], "torch_" + rate: t[rate]})
        print(f"  {'':11} {t['dtype']:>5} {t['phase']:>7} {t['T']:5d} {t['experts']:>10} {d['median_us']:10.1f} "
              f"{t['median_us']:10.1f} {ratio:10.2f} {d[rate]:12.1f} {t[rate]:13.1f}")
    om = ours.get("model") or {}
    dm = {r["context"]: r for r in om.get("decode", [])}
    for m in doc.get("models", []):
        if om and om.get("layers") != m["layers"]:
            print(f"  WARNING: whole model: dsv2 ran {om.get('layers')} layers, PyTorch {m['layers']}")
        print(f"  whole model ({m['layers']} layers, {m['dtype']}, experts {m['experts']}): decode tokens/s")
        print(f"  {'':11} {'context':>7} {'dsv2':>10} {'torch':>10} {'dsv2/torch':>10} {'floor':>10} "
              f"{'dsv2 %floor':>11}")
        for t in m["decode"]:
            d = dm.get(t["context"])
            if d is None:
                print(f"  {'':11} {t['context']:7d} {'—':>10} {t['tokens_per_s']:10.1f}   (no dsv2 result)")
                continue
            ratio = d["tokens_per_s"] / t["tokens_per_s"]
            floor = d.get("floor_tokens_per_s_copy") or d.get("floor_tokens_per_s_hbm") or 0
            res["model"].append({"context": t["context"], "experts": m["experts"], "dsv2_tokens_per_s": d["tokens_per_s"],
                                 "torch_tokens_per_s": t["tokens_per_s"], "dsv2_over_torch": ratio,
                                 "floor_tokens_per_s": floor})
            pf = f"{100.0 * d['tokens_per_s'] / floor:10.1f}%" if floor else f"{'—':>11}"
            print(f"  {'':11} {t['context']:7d} {d['tokens_per_s']:10.1f} {t['tokens_per_s']:10.1f} {ratio:10.2f} "
                  f"{floor:10.1f} {pf}")
    common.print_copy_ratio(ours, doc, "dsv2_gpu_moe_bench")
    doc["against"] = res
    return res


# ------------------------------------------------------------------------------------------------

def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--json", help="write the results here (dsv2_gpu_moe_bench's keys)")
    ap.add_argument("--against", help="dsv2_gpu_moe_bench's JSON: print the ratio tables")
    ap.add_argument("--config", default=DEFAULT_CONFIG, help="HF config.json (default: V2-Lite's)")
    ap.add_argument("--decode", default="1,8,64")
    ap.add_argument("--prefill", type=int, default=4096)
    ap.add_argument("--dtypes", default="bf16,fp32")
    ap.add_argument("--experts", default="eager,grouped_mm",
                    help="experts implementations to time (eager = the per-expert loop); those this transformers "
                         "lacks are reported as not run; 'installed' = whatever the module does by itself")
    ap.add_argument("--model-experts", default="eager,grouped_mm",
                    help="the experts implementations of the whole-model run (one model, switched between runs)")
    ap.add_argument("--iters", type=int, default=20)
    ap.add_argument("--prefill-iters", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--sets", type=int, default=2)
    ap.add_argument("--layers", type=int, default=4, help="whole model: the first N layers (0: skip)")
    ap.add_argument("--contexts", default="512,4096")
    ap.add_argument("--steps", type=int, default=32)
    ap.add_argument("--step-warmup", type=int, default=2)
    ap.add_argument("--model-dtype", default="bf16", choices=["bf16", "fp32"])
    ap.add_argument("--attn", default="eager", choices=["eager", "sdpa"])
    ap.add_argument("--hbm-bw", type=float, default=4.8e12, help="B/s (default: the H200's HBM3e datasheet 4.8e12)")
    ap.add_argument("--bf16-flops", type=float, default=790e12)
    ap.add_argument("--fp32-flops", type=float, default=67e12)
    ap.add_argument("--copy-gib", type=float, default=2.0)
    ap.add_argument("--dry-run", action="store_true",
                    help="CPU, tiny config, small sizes: checks the bookkeeping (no speed)")
    args = ap.parse_args()
    args.decode, args.contexts = ints(args.decode), ints(args.contexts)
    if args.dry_run:
        args.config = TINY_CONFIG if args.config == DEFAULT_CONFIG else args.config
        args.decode, args.prefill, args.iters, args.prefill_iters, args.warmup = [1, 8], 64, 3, 2, 1
        args.layers, args.contexts, args.steps, args.step_warmup, args.copy_gib = 3, [16, 64], 3, 1, 0
        args.dtypes = "fp32"
        args.model_dtype = "fp32"

    try:
        import torch
        import transformers
        from transformers import DeepseekV2Config
        from transformers.cache_utils import DynamicCache
    except ImportError as e:
        print(f"SKIPPED: no torch/transformers with DeepseekV2 ({e})")
        return common.SKIP_EXIT
    cuda = not args.dry_run
    if cuda and common.cuda_missing(torch):
        return common.SKIP_EXIT
    transformers.utils.logging.set_verbosity_error()
    dev = "cuda" if cuda else "cpu"
    timer = Timer(torch, cuda)
    hf = hf_module()
    cfg, cfg_dict = load_config(args.config, 0, DeepseekV2Config)
    c = config_summary(cfg_dict)
    impls = words(args.experts) or ["installed"]
    have = available_experts_impls()
    if not have:  # no switchable experts implementation in this transformers: time what it does
        log("this transformers has no experts_implementation switch: timing its own experts forward ('installed')")
        impls, args.model_experts = ["installed"], "installed"

    copy = common.measure_copy(torch, args.copy_gib if cuda else 0, timer.each, dev)

    errors, layer_rows, models = [], [], []
    dtypes = {"bf16": torch.bfloat16, "fp32": torch.float32}
    for dname in words(args.dtypes):
        for impl in impls:
            if impl != "installed" and have and impl not in have:
                errors.append(f"MoE layer {dname}, experts {impl}: not in this transformers ({', '.join(have)})")
                continue
            try:
                layer_rows += bench_layer(torch, args, timer, hf, cfg, c, dtypes[dname], dev, impl)
            except Exception as e:  # noqa: BLE001 — a missing implementation must not stop the rest
                errors.append(f"MoE layer {dname}, experts {impl}: {type(e).__name__}: {e}")
                log(errors[-1])
    if args.layers > 0 and args.contexts:
        mcfg, _ = load_config(args.config, args.layers, DeepseekV2Config)
        mimpls = []
        for impl in words(args.model_experts) or ["installed"]:
            if impl != "installed" and have and impl not in have:
                errors.append(f"whole model, experts {impl}: not in this transformers ({', '.join(have)})")
            else:
                mimpls.append(impl)
        try:
            models = bench_model(torch, args, timer, mcfg, dev, mimpls, DynamicCache, errors)
        except Exception as e:  # noqa: BLE001
            errors.append(f"whole model: {type(e).__name__}: {e}")
            log(errors[-1])

    if cuda:
        device = common.device_description(torch.cuda.get_device_properties(0))
    else:
        device = "cpu (dry run: no speed)"
    doc = {"tool": "moe_torch", "op": "moe_layer_and_model_decode",
           "impl": "transformers DeepseekV2 (PyTorch eager): DeepseekV2Moe; DeepseekV2ForCausalLM, "
                   f"attn_implementation={args.attn}",
           "device": device, "torch_version": torch.__version__, "transformers_version": transformers.__version__,
           "config_file": os.path.relpath(args.config, ROOT), "config": c, "experts_implementations": have,
           "hbm_bytes_per_s": args.hbm_bw, "bf16_flops_per_s": args.bf16_flops, "fp32_flops_per_s": args.fp32_flops,
           "copy": copy, "iters": args.iters, "prefill_iters": args.prefill_iters, "warmup": args.warmup,
           "sets": args.sets, "timing": "torch.cuda.synchronize + perf_counter around each call; median",
           "moe_layer": layer_rows, "models": models, "errors": errors}
    if models:
        doc["model"] = models[0]
    print_table(doc)
    common.finish(doc, args, against)
    finite = all(r["finite"] for r in layer_rows) and all(d["finite"] for m in models for d in m["decode"])
    if not finite:
        print("moe_torch: FAILED: a timed output was not finite")
    return 0 if finite and (layer_rows or models) else 1


if __name__ == "__main__":
    sys.exit(main())
