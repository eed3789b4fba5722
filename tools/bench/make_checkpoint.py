#!/usr/bin/env python3
"""A seeded random DeepSeek-V2 checkpoint for the CPU benchmark (tools/bench/README.md).

    python3 tools/bench/make_checkpoint.py --out build/bench/lite-3l [--layers 3]
        [--base data/configs/deepseek-v2-lite/config.json] [--seed 0]

Writes OUT/config.json (the base config, num_hidden_layers replaced by --layers, nothing else
changed) and OUT/model.safetensors: bf16, the Hugging Face tensor names and shapes of the
released model (the layout of tools/train/model.py). Linear and embedding weights are
normal(0, initializer_range), norm weights are ones.

Deterministic: tensor NAME is drawn from its own generator, seeded with a hash of (--seed, NAME),
in row blocks of at most 16M values, so its values do not depend on the other tensors or on the
number of layers. The file is written one tensor at a time (a bf16 block in memory, never an fp32
copy of the model). A stamp file records the arguments; a rerun with the same arguments and an
intact output does nothing.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import struct
import sys
import time
from pathlib import Path

STAMP = ".make_checkpoint.json"
VERSION = 1                       # bump when the generated values or the layout change
BLOCK = 1 << 24                   # values per generated block


def tensor_specs(cfg: dict) -> list[tuple[str, tuple[int, ...], str]]:
    """(name, shape, init) of every tensor, in the released layout; init is 'normal' or 'ones'."""
    d = cfg["hidden_size"]
    V = cfg["vocab_size"]
    H = cfg["num_attention_heads"]
    dh, dR, dv = cfg["qk_nope_head_dim"], cfg["qk_rope_head_dim"], cfg["v_head_dim"]
    dc = cfg["kv_lora_rank"]
    dq = cfg.get("q_lora_rank")
    E = cfg.get("n_routed_experts") or 0
    ns = cfg.get("n_shared_experts") or 0
    mi = cfg["moe_intermediate_size"]
    I = cfg["intermediate_size"]
    first_dense = cfg.get("first_k_dense_replace", 0)
    freq = cfg.get("moe_layer_freq", 1)

    def mlp(prefix: str, width: int):
        return [(f"{prefix}.gate_proj.weight", (width, d), "normal"),
                (f"{prefix}.up_proj.weight", (width, d), "normal"),
                (f"{prefix}.down_proj.weight", (d, width), "normal")]

    specs = [("model.embed_tokens.weight", (V, d), "normal")]
    for l in range(cfg["num_hidden_layers"]):
        p = f"model.layers.{l}"
        specs.append((f"{p}.input_layernorm.weight", (d,), "ones"))
        a = f"{p}.self_attn"
        if dq:
            specs += [(f"{a}.q_a_proj.weight", (dq, d), "normal"),
                      (f"{a}.q_a_layernorm.weight", (dq,), "ones"),
                      (f"{a}.q_b_proj.weight", (H * (dh + dR), dq), "normal")]
        else:
            specs.append((f"{a}.q_proj.weight", (H * (dh + dR), d), "normal"))
        specs += [(f"{a}.kv_a_proj_with_mqa.weight", (dc + dR, d), "normal"),
                  (f"{a}.kv_a_layernorm.weight", (dc,), "ones"),
                  (f"{a}.kv_b_proj.weight", (H * (dh + dv), dc), "normal"),
                  (f"{a}.o_proj.weight", (d, H * dv), "normal"),
                  (f"{p}.post_attention_layernorm.weight", (d,), "ones")]
        if E > 0 and l >= first_dense and l % freq == 0:
            specs.append((f"{p}.mlp.gate.weight", (E, d), "normal"))
            for e in range(E):
                specs += mlp(f"{p}.mlp.experts.{e}", mi)
            if ns:
                specs += mlp(f"{p}.mlp.shared_experts", ns * mi)
        else:
            specs += mlp(f"{p}.mlp", I)
    specs += [("model.norm.weight", (d,), "ones"),
              ("lm_head.weight", (V, d), "normal")]
    return specs


def numel(shape) -> int:
    n = 1
    for s in shape:
        n *= s
    return n


def tensor_seed(seed: int, name: str) -> int:
    return int.from_bytes(hashlib.sha256(f"{seed}:{name}".encode()).digest()[:8], "little") & ((1 << 63) - 1)


def bf16_blocks(name: str, shape, init: str, seed: int, std: float):
    """The tensor's bf16 values as raw little-endian bytes, block by block (rows of the first dim)."""
    import torch  # here, so that an up-to-date rerun does not pay for importing torch

    if init == "ones":
        yield torch.ones(shape, dtype=torch.bfloat16).view(torch.int16).numpy().tobytes()
        return
    g = torch.Generator().manual_seed(tensor_seed(seed, name))
    row = numel(shape[1:])
    rows_per_block = max(1, BLOCK // row)
    for r0 in range(0, shape[0], rows_per_block):
        r = min(rows_per_block, shape[0] - r0)
        x = torch.randn((r, *shape[1:]), generator=g, dtype=torch.float32)
        x.mul_(std)
        yield x.to(torch.bfloat16).view(torch.int16).numpy().tobytes()
        del x


def write_safetensors(path: Path, specs, seed: int, std: float, log) -> int:
    header: dict = {"__metadata__": {"format": "pt"}}
    off = 0
    for name, shape, _ in specs:
        nbytes = 2 * numel(shape)
        header[name] = {"dtype": "BF16", "shape": list(shape), "data_offsets": [off, off + nbytes]}
        off += nbytes
    hdr = json.dumps(header, separators=(",", ":")).encode()
    hdr += b" " * (-len(hdr) % 8)                      # data starts 8-byte aligned
    tmp = path.with_name(path.name + ".tmp.part")
    t0 = time.time()
    done = 0
    with open(tmp, "wb") as f:
        f.write(struct.pack("<Q", len(hdr)))
        f.write(hdr)
        for i, (name, shape, init) in enumerate(specs):
            written = 0
            for blk in bf16_blocks(name, shape, init, seed, std):
                f.write(blk)
                written += len(blk)
            assert written == 2 * numel(shape), name
            done += written
            if i % 50 == 0 or i == len(specs) - 1:
                log(f"  {i + 1}/{len(specs)} tensors, {done / 2**30:.2f} GiB, {time.time() - t0:.0f} s")
    os.replace(tmp, path)
    return 8 + len(hdr) + off


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", required=True, help="output directory (e.g. build/bench/lite-3l)")
    ap.add_argument("--layers", type=int, default=3, help="num_hidden_layers (default 3)")
    ap.add_argument("--base", default="data/configs/deepseek-v2-lite/config.json",
                    help="base config.json (default: the V2-Lite config)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--force", action="store_true", help="rewrite even when the stamp matches")
    args = ap.parse_args(argv)

    def log(msg: str):
        print(msg, file=sys.stderr, flush=True)

    if args.layers < 1:
        ap.error("--layers must be >= 1")
    base_bytes = Path(args.base).read_bytes()
    cfg = json.loads(base_bytes)
    cfg["num_hidden_layers"] = args.layers
    specs = tensor_specs(cfg)
    std = float(cfg.get("initializer_range", 0.02))

    out = Path(args.out)
    st_path, cfg_path, stamp_path = out / "model.safetensors", out / "config.json", out / STAMP
    stamp = {"version": VERSION, "layers": args.layers, "seed": args.seed,
             "base_sha256": hashlib.sha256(base_bytes).hexdigest(),
             "tensors": len(specs), "parameters": sum(numel(s) for _, s, _ in specs)}

    if not args.force and stamp_path.is_file() and st_path.is_file() and cfg_path.is_file():
        try:
            old = json.loads(stamp_path.read_text())
        except (OSError, ValueError):
            old = None
        if (old is not None and {k: old.get(k) for k in stamp} == stamp
                and st_path.stat().st_size == old.get("safetensors_bytes")
                and json.loads(cfg_path.read_text()) == cfg):
            log(f"{out}: up to date ({args.layers} layers, seed {args.seed}); nothing to do")
            return 0

    out.mkdir(parents=True, exist_ok=True)
    if stamp_path.exists():
        stamp_path.unlink()                      # invalid until the new files are complete
    n = stamp["parameters"]
    log(f"{out}: {args.layers} layers, {len(specs)} tensors, {n / 1e9:.3f} B parameters, "
        f"{2 * n / 2**30:.2f} GiB bf16, seed {args.seed}")
    size = write_safetensors(st_path, specs, args.seed, std, log)
    cfg_path.write_text(json.dumps(cfg, indent=2) + "\n")
    stamp["safetensors_bytes"] = size
    stamp_path.write_text(json.dumps(stamp, indent=2) + "\n")
    log(f"wrote {cfg_path} and {st_path} ({size / 2**30:.2f} GiB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
