#!/usr/bin/env python3
"""Parity of tools/train/model.py (PyTorch) with the C++ oracle on a checkpoint directory.

Loads config.json + model.safetensors (BF16 weights upcast exactly to fp32 and fp64), runs a KJV
sentence through the PyTorch model in fp32 and in fp64, runs `dsv2 forward` on the same tokens
(absorbed and naive attention, all tokens in one prefill or --prefill 3 then decode one at a time
through the latent cache, fp32 and fp64), and prints max |Δ| and ‖Δ‖/‖ref‖ of the logits.

    python3 tools/train/check_parity.py [--model data/models/kjv-tiny] [--dsv2 build/bin/dsv2]

Exits non-zero when an fp32 run differs from the PyTorch fp64 logits by more than --tol
(relative, Frobenius) or an fp64 run by more than 1e-9, or when dsv2's greedy decode of --prompt
(prefill, then one token at a time through the latent cache) picks a different token than PyTorch.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("RAYON_NUM_THREADS", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402
from safetensors.torch import load_file  # noqa: E402
from tokenizers import Tokenizer  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, HERE)
from model import DeepseekV2Config, DeepseekV2ForCausalLM  # noqa: E402

SENTENCE = ("And God said, Let there be light: and there was light. And God saw the light, "
            "that it was good: and God divided the light from the darkness.")


def load(model_dir: str, dtype: torch.dtype) -> DeepseekV2ForCausalLM:
    with open(os.path.join(model_dir, "config.json")) as f:
        cfg = DeepseekV2Config.from_dict(json.load(f))
    m = DeepseekV2ForCausalLM(cfg)
    sd = load_file(os.path.join(model_dir, "model.safetensors"))
    m.load_state_dict({k: v.to(dtype) for k, v in sd.items()})   # bf16 → fp32/fp64 is exact
    return m.to(dtype).eval()


def compare(name: str, got: np.ndarray, ref: np.ndarray) -> float:
    d = got.astype(np.float64) - ref.astype(np.float64)
    rel = float(np.linalg.norm(d) / np.linalg.norm(ref))
    print(f"  {name:48s} max|Δ| {np.abs(d).max():.3e}   ‖Δ‖/‖ref‖ {rel:.3e}")
    return rel


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=os.path.join(ROOT, "data", "models", "kjv-tiny"))
    ap.add_argument("--dsv2", default=os.path.join(ROOT, "build", "bin", "dsv2"))
    ap.add_argument("--tokenizer", help="default: MODEL/tokenizer.json")
    ap.add_argument("--text", default=SENTENCE)
    ap.add_argument("--prompt", default="And God said", help="prompt of the greedy-decoding check")
    ap.add_argument("--new-tokens", type=int, default=48)
    ap.add_argument("--tol", type=float, default=1e-5, help="relative tolerance of the fp32 runs")
    args = ap.parse_args()
    torch.set_num_threads(1)

    tok = Tokenizer.from_file(args.tokenizer or os.path.join(args.model, "tokenizer.json"))
    ids = tok.encode(args.text).ids                     # the template puts BOS first
    print(f"{args.model}: {len(ids)} tokens: {ids}")

    with torch.no_grad():
        ref64 = load(args.model, torch.float64)(torch.tensor([ids]))[0][0].numpy()
        ref32 = load(args.model, torch.float32)(torch.tensor([ids]))[0][0].numpy()
    print(f"PyTorch fp32 vs PyTorch fp64 (the fp32 rounding floor); ‖ref‖ = {np.linalg.norm(ref64):.4g}")
    compare("torch fp32", ref32, ref64)

    worst32 = worst64 = 0.0
    with tempfile.TemporaryDirectory() as tmp:
        runs = [(a, p, prec) for prec in ("fp32", "fp64") for a in ("absorbed", "naive") for p in (None, 3)]
        for attention, prefill, precision in runs:
            out = os.path.join(tmp, "x.npy")
            cmd = [args.dsv2, "forward", "--model", args.model, "--tokens", ",".join(map(str, ids)),
                   "--attention", attention, "--precision", precision, "--out", out]
            if prefill:
                cmd += ["--prefill", str(prefill)]
            env = dict(os.environ, OMP_NUM_THREADS=os.environ.get("OMP_NUM_THREADS", "1"))
            subprocess.run(cmd, check=True, env=env)
            got = np.load(out)
            assert got.shape == ref64.shape, (got.shape, ref64.shape)
            label = f"dsv2 {precision} {attention}" + (f" --prefill {prefill}" if prefill else "")
            print(label)
            if precision == "fp32":
                compare("vs PyTorch fp32", got, ref32)
                worst32 = max(worst32, compare("vs PyTorch fp64", got, ref64))
            else:
                # dsv2 writes float32 logits even in fp64: compare with the fp64 logits rounded to fp32.
                worst64 = max(worst64, compare("vs PyTorch fp64 (rounded to fp32)", got, ref64.astype(np.float32)))
            same = int((got.argmax(-1) == ref64.argmax(-1)).sum())
            print(f"  argmax agrees at {same}/{len(ids)} positions")
        # Greedy decoding: PyTorch's continuation of the prompt, fed to dsv2 as prefill + decode steps;
        # dsv2's argmax at every decoded position must pick the same next token.
        prompt = tok.encode(args.prompt).ids
        m32 = load(args.model, torch.float32)
        gen = m32.generate(prompt, args.new_tokens)
        out = os.path.join(tmp, "g.npy")
        subprocess.run([args.dsv2, "forward", "--model", args.model, "--tokens", ",".join(map(str, gen)),
                        "--prefill", str(len(prompt)), "--out", out], check=True)
        picks = np.load(out).argmax(-1)[len(prompt) - 1:-1]
        greedy_ok = bool((picks == np.array(gen[len(prompt):])).all())
        print(f"greedy {args.new_tokens} tokens from {args.prompt!r} (dsv2 decodes through its latent cache): "
              f"{'same tokens' if greedy_ok else 'DIFFERENT tokens'}\n  {tok.decode(gen)!r}")
    ok = worst32 <= args.tol and worst64 <= 1e-9 and greedy_ok
    print(f"worst relative error: fp32 {worst32:.3e} (tol {args.tol:g}), fp64 {worst64:.3e} (tol 1e-9) → "
          f"{'OK' if ok else 'MISMATCH'}")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
