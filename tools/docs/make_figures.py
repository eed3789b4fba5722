#!/usr/bin/env python3
"""Regenerates the figures of the documentation (docs/images/*.png) from dsv2's own output.

    pip install -r tools/docs/requirements.txt
    python3 tools/docs/make_figures.py --dsv2 build/bin/dsv2 --out docs/images

kv_cache_vs_context.png   `dsv2 kv-cache --json` at contexts 1K … 128K, DeepSeek-V2 and V2-Lite
expert_load.png           moe.topk_idx of a `dsv2 forward --dump`: tokens per expert, per MoE layer
attention_pattern.png     attention probabilities of the heads of one layer, recomputed from the
                          dump's q_absorbed, q_pe, c_kv and k_pe (checked against its o_latent)

By default the forward pass runs the `tiny` preset (random weights) on the bytes of a fixed
text; --model DIR --tokens 1,2,3 runs a checkpoint instead.
"""
import argparse
import json
import math
import pathlib
import struct
import subprocess
import sys
import tempfile

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

TEXT = ("In the beginning God created the heaven and the earth. And the earth was without form, and void; "
        "and darkness was upon the face of the deep. And the Spirit of God moved upon the face of the waters. "
        "And God said, Let there be light: and there was light. And God saw the light, that it was good: "
        "and God divided the light from the darkness. And God called the light Day, and the darkness he called "
        "Night. And the evening and the morning were the first day.")
MECHANISMS = [("MHA", "C0", "-"), ("GQA", "C1", "-"), ("MQA", "C2", "-"), ("MLA", "C3", "-"), ("HF-cache", "0.5", ":")]


def run(cmd):
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        sys.exit(f"make_figures: {' '.join(cmd)} failed:\n{r.stderr}")
    return r.stdout


def read_safetensors(path):
    """{name: array} and the metadata of a safetensors file (F32, F64, I32, I64)."""
    raw = pathlib.Path(path).read_bytes()
    n = struct.unpack("<Q", raw[:8])[0]
    header = json.loads(raw[8:8 + n])
    meta = header.pop("__metadata__", {})
    data = raw[8 + n:]
    dtypes = {"F32": "<f4", "F64": "<f8", "I32": "<i4", "I64": "<i8"}
    out = {}
    for name, e in header.items():
        a, b = e["data_offsets"]
        out[name] = np.frombuffer(data[a:b], dtype=dtypes[e["dtype"]]).reshape(e["shape"])
    return out, meta


def softmax_scale(cfg):
    """σ = d_qk^(-1/2) · mscale(s, mscale_all_dim)² (docs/oracle.md)."""
    sigma = 1.0 / math.sqrt(cfg["qk_nope_head_dim"] + cfg["qk_rope_head_dim"])
    rs = cfg.get("rope_scaling")
    if rs:
        s, m = rs["factor"], rs.get("mscale_all_dim", 0.0)
        ms = 0.1 * m * math.log(s) + 1.0 if s > 1 else 1.0
        sigma *= ms * ms
    return sigma


def fig_kv_cache(dsv2, out):
    contexts = [2 ** k for k in range(10, 18)]
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.3), sharey=True)
    for ax, preset, title in zip(axes, ["deepseek-v2", "deepseek-v2-lite"], ["DeepSeek-V2 (236B)", "DeepSeek-V2-Lite (16B)"]):
        series = {m: [] for m, _, _ in MECHANISMS}
        per_token = {}
        for ctx in contexts:
            j = json.loads(run([dsv2, "kv-cache", "--preset", preset, "--context", str(ctx), "--json"]))
            for m, _, _ in MECHANISMS:
                series[m].append(j["caches"][m]["bytes_at_context"] / 1e9)
                per_token[m] = j["caches"][m]["elements_per_token_per_layer"]
        for m, color, style in MECHANISMS:
            label = {"GQA": "GQA (8 groups)", "HF-cache": "decompressed K/V (HF code)"}.get(m, m)
            ax.plot(contexts, series[m], style, color=color, marker="o", ms=3,
                    label=f"{label}: {per_token[m]} / token / layer")
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_ylim(2e-5, 2e3)  # room below the lines for the legend
        ax.set_xticks(contexts)
        ax.set_xticklabels([f"{c // 1024}K" for c in contexts])
        ax.set_xlabel("context length (tokens)")
        ax.set_title(title)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8, loc="lower right")
        ax.annotate(f"{series['MLA'][-1]:.1f} GB", (contexts[-1], series["MLA"][-1]), textcoords="offset points",
                    xytext=(-6, 6), ha="right", fontsize=8, color="C3")
        ax.annotate(f"{series['MHA'][-1]:.0f} GB", (contexts[-1], series["MHA"][-1]), textcoords="offset points",
                    xytext=(-10, 6), ha="right", fontsize=8, color="C0")
    axes[0].set_ylabel("KV cache of one sequence, bf16 (GB)")
    fig.suptitle("KV cache against context length (dsv2 kv-cache --json)", fontsize=11)
    fig.tight_layout()
    fig.savefig(out / "kv_cache_vs_context.png", dpi=120)
    plt.close(fig)


def forward_dump(dsv2, args, tmp):
    tokens = args.tokens or ",".join(str(b) for b in TEXT.encode())
    src = ["--model", args.model] if args.model else ["--preset", "tiny"]
    dump = tmp / "acts.safetensors"
    run([dsv2, "forward", *src, "--tokens", tokens, "--attention", "absorbed", "--precision", "fp64",
         "--out", str(tmp / "logits.npy"), "--dump", str(dump)])
    return read_safetensors(dump)


def fig_expert_load(acts, meta, out):
    cfg = json.loads(meta["config"])
    n_r, k_r = cfg["n_routed_experts"], cfg["num_experts_per_tok"]
    layers = sorted(int(n.split(".")[1]) for n in acts if n.endswith("moe.topk_idx"))
    load = np.zeros((len(layers), n_r), dtype=int)
    balance = []
    for row, l in enumerate(layers):
        idx = acts[f"layers.{l}.moe.topk_idx"]
        load[row] = np.bincount(idx.ravel(), minlength=n_r)
        t = idx.shape[0]
        f = n_r / (k_r * t) * load[row]
        p = acts[f"layers.{l}.moe.scores"].mean(axis=0)
        balance.append(float((f * p).sum()))
    t = acts[f"layers.{layers[0]}.moe.topk_idx"].shape[0]
    fig, ax = plt.subplots(figsize=(1.2 + 0.75 * n_r, 1.4 + 0.7 * len(layers)))
    im = ax.imshow(load, cmap="viridis", aspect="auto")
    for (r, e), v in np.ndenumerate(load):
        ax.text(e, r, str(v), ha="center", va="center", color="white" if v < load.max() * 0.6 else "black", fontsize=9)
    ax.set_xticks(range(n_r))
    ax.set_xlabel("routed expert")
    ax.set_yticks(range(len(layers)))
    ax.set_yticklabels([f"layer {l}\nΣ f·P = {b:.2f}" for l, b in zip(layers, balance)], fontsize=8)
    groups = cfg.get("n_group") or 1
    for g in range(1, groups):
        ax.axvline(g * n_r / groups - 0.5, color="white", lw=2)
    fig.colorbar(im, ax=ax, label="tokens")
    source = meta.get("source", "")
    if source.startswith("preset"):
        source += ", random weights"
    ax.set_title(f"Expert load: {t} tokens × {k_r} routed experts each ({source}); "
                 f"white lines: the {groups} expert groups", fontsize=9)
    fig.tight_layout()
    fig.savefig(out / "expert_load.png", dpi=120)
    plt.close(fig)


def fig_attention(acts, meta, out, layer, max_tokens):
    cfg = json.loads(meta["config"])
    n_h, d_c, d_r = cfg["num_attention_heads"], cfg["kv_lora_rank"], cfg["qk_rope_head_dim"]
    sigma = softmax_scale(cfg)
    q_abs = acts[f"layers.{layer}.attn.q_absorbed"].astype(np.float64)   # [T, n_h·d_c]
    q_pe = acts[f"layers.{layer}.attn.q_pe"].astype(np.float64)          # [T, n_h·d_R]
    c_kv = acts[f"layers.{layer}.attn.c_kv"].astype(np.float64)          # [T, d_c]
    k_pe = acts[f"layers.{layer}.attn.k_pe"].astype(np.float64)          # [T, d_R]
    o_lat = acts[f"layers.{layer}.attn.o_latent"].astype(np.float64)     # [T, n_h·d_c]
    t = c_kv.shape[0]
    mask = np.triu(np.ones((t, t), dtype=bool), k=1)
    probs = []
    for i in range(n_h):
        s = sigma * (q_abs[:, i * d_c:(i + 1) * d_c] @ c_kv.T + q_pe[:, i * d_r:(i + 1) * d_r] @ k_pe.T)
        s[mask] = -np.inf
        p = np.exp(s - s.max(axis=1, keepdims=True))
        p /= p.sum(axis=1, keepdims=True)
        # The same probabilities must give the dump's latent output Σ_j p_ij ĉ_j.
        err = np.linalg.norm(p @ c_kv - o_lat[:, i * d_c:(i + 1) * d_c]) / np.linalg.norm(o_lat[:, i * d_c:(i + 1) * d_c])
        if err > 1e-5:
            sys.exit(f"make_figures: head {i}: recomputed attention does not reproduce attn.o_latent (rel err {err:.1e})")
        probs.append(p)
    n = min(t, max_tokens)
    shown = min(n_h, 4)
    cols = 2 if shown > 1 else 1
    rows = (shown + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(4.6 * cols, 4.4 * rows), squeeze=False)
    tokens = [int(x) for x in meta.get("tokens", "").split(",") if x]
    bytes_vocab = cfg.get("vocab_size", 256) <= 256
    labels = [chr(x) if 32 < x < 127 else "␣" if x == 32 else "·" for x in tokens[:n]] if bytes_vocab else None
    norm = matplotlib.colors.PowerNorm(gamma=0.5, vmin=0, vmax=1)
    for i, ax in enumerate(axes.ravel()):
        if i >= shown:
            ax.axis("off")
            continue
        im = ax.imshow(probs[i][:n, :n], cmap="magma", norm=norm)
        ax.set_title(f"head {i}", fontsize=10)
        ax.set_xlabel("key position j (cached token)", fontsize=8)
        ax.set_ylabel("query position t", fontsize=8)
        if labels and n <= 48:
            ax.set_xticks(range(n))
            ax.set_xticklabels(labels, fontsize=7)
            ax.set_yticks(range(n))
            ax.set_yticklabels(labels, fontsize=7)
    fig.colorbar(im, ax=axes.ravel().tolist(), shrink=0.7, label="softmax probability (square-root scale)")
    source = meta.get("source", "")
    if source.startswith("preset"):
        source += ", random weights"
    fig.suptitle(f"Attention probabilities of layer {layer}, first {n} tokens\n"
                 rf"absorbed form: softmax$_j\,\sigma(\tilde q_t\cdot\hat c_j + q^R_t\cdot k^R_j)$, causal ({source})",
                 fontsize=10)
    fig.savefig(out / "attention_pattern.png", dpi=120, bbox_inches="tight")
    plt.close(fig)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dsv2", default="build/bin/dsv2", help="the dsv2 binary")
    ap.add_argument("--out", default="docs/images", help="where the PNGs go")
    ap.add_argument("--model", help="a checkpoint directory instead of the tiny preset")
    ap.add_argument("--tokens", help="token ids for --model (comma-separated); default: the bytes of a fixed text")
    ap.add_argument("--layer", type=int, default=1, help="layer of the attention figure")
    ap.add_argument("--max-tokens", type=int, default=24, help="tokens shown in the attention figure")
    args = ap.parse_args()
    out = pathlib.Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    fig_kv_cache(args.dsv2, out)
    with tempfile.TemporaryDirectory() as tmp:
        acts, meta = forward_dump(args.dsv2, args, pathlib.Path(tmp))
    fig_expert_load(acts, meta, out)
    fig_attention(acts, meta, out, args.layer, args.max_tokens)
    for name in ("kv_cache_vs_context.png", "expert_load.png", "attention_pattern.png"):
        print(f"make_figures: {out / name}")


if __name__ == "__main__":
    main()
