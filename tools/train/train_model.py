#!/usr/bin/env python3
"""Trains the embedded default model (DeepSeek-V2 architecture, ~5.9M parameters) on the KJV Bible.

One CPU thread (the build machine is shared). Data: tools/train/kjv_text.sh, unwrapped to one verse
a line without verse numbers, each chapter headed by its title ("Genesis 1"); 1% of the chapters
(every 100th, from the 50th) are held out for the validation loss. Each training window is
<｜begin▁of▁sentence｜> followed by 256 tokens of the text starting at a random verse.
The learning-rate schedule runs on progress = max(step / steps, elapsed / time_budget), so a
slower machine ends the run on time instead of late.

    tools/train/kjv_text.sh > /tmp/kjv.txt
    python3 tools/train/train_model.py --text /tmp/kjv.txt --bench 10          # measure steps/s
    mkdir -p /tmp/kjv-train
    nohup python3 tools/train/train_model.py --text /tmp/kjv.txt --steps 2600 \\
        --time-budget 1980 > /tmp/kjv-train/train.log 2>&1 &
    python3 tools/train/train_model.py --export-only /tmp/kjv-train/ckpt.pt   # from a checkpoint

Writes data/models/kjv-tiny/{config.json, model.safetensors} (BF16) at the end; checkpoints
(fp32 weights + optimizer) go to --work every --ckpt-every seconds.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import random
import re
import subprocess
import sys
import time

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("RAYON_NUM_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from safetensors.torch import save_file  # noqa: E402
from tokenizers import Tokenizer  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from model import DeepseekV2Config, DeepseekV2ForCausalLM, num_params  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
MODEL_DIR = os.path.join(ROOT, "data", "models", "kjv-tiny")
BOS = "<｜begin▁of▁sentence｜>"
EOS = "<｜end▁of▁sentence｜>"
PROMPTS = ["And God said", "In the beginning", "The LORD is my shepherd", "Jesus answered and said unto them",
           "And it came to pass"]


# ---------------------------------------------------------------------------------------------
# Data

def read_chapters(text: str) -> list[tuple[str, list[str]]]:
    """The output of kjv_text.sh → [(title, [verse, …])]: titles follow a blank line, verses start
    with an indented number, other lines continue the verse before them."""
    chapters: list[tuple[str, list[str]]] = []
    prev_blank = True
    for line in text.split("\n"):
        m = re.match(r"^\s+\d+ (.*)$", line)
        if m:
            chapters[-1][1].append(m.group(1).strip())
        elif line.strip() == "":
            pass
        elif prev_blank and re.fullmatch(r"(\d )?[A-Z][A-Za-z ]+ \d+", line):
            chapters.append((line.strip(), []))
        else:
            chapters[-1][1][-1] += " " + line.strip()
        prev_blank = line.strip() == ""
    return chapters


def chapter_text(title: str, verses: list[str]) -> list[str]:
    """The lines of one chapter as the model sees them (each ends with a newline)."""
    return [title + "\n"] + [v + "\n" for v in verses] + ["\n"]


def tokenize(tok: Tokenizer, chapters) -> tuple[list[int], list[int]]:
    """Token stream of the chapters and the offsets where verses (and titles) start."""
    lines = [ln for title, verses in chapters for ln in chapter_text(title, verses)]
    encs = tok.encode_batch(lines, add_special_tokens=False)
    stream: list[int] = []
    starts: list[int] = []
    for ln, e in zip(lines, encs):
        if ln != "\n":
            starts.append(len(stream))
        stream.extend(e.ids)
    return stream, starts


class Data:
    def __init__(self, text: str, tok: Tokenizer, seq: int, seed: int):
        chapters = read_chapters(text)
        held = [c for i, c in enumerate(chapters) if i % 100 == 50]
        train = [c for i, c in enumerate(chapters) if i % 100 != 50]
        self.n_chapters, self.n_verses = len(chapters), sum(len(v) for _, v in chapters)
        self.bos = tok.token_to_id(BOS)
        self.seq = seq
        stream, starts = tokenize(tok, train)
        self.train = torch.tensor(stream, dtype=torch.long)
        self.starts = [s for s in starts if s + seq <= len(stream)]
        vstream, _ = tokenize(tok, held)
        self.val = torch.tensor(vstream, dtype=torch.long)
        self.held_titles = [t for t, _ in held]
        self.rng = random.Random(seed)

    def batch(self, B: int) -> tuple[torch.Tensor, torch.Tensor]:
        """B windows [BOS, t_s … t_{s+seq-1}] → inputs [B, seq], targets [B, seq]."""
        rows = []
        for _ in range(B):
            s = self.rng.choice(self.starts)
            rows.append(torch.cat([torch.tensor([self.bos]), self.train[s:s + self.seq]]))
        x = torch.stack(rows)
        return x[:, :-1], x[:, 1:]

    def val_windows(self, seq: int) -> torch.Tensor:
        n = (len(self.val)) // seq
        w = self.val[:n * seq].view(n, seq)
        return torch.cat([torch.full((n, 1), self.bos), w], dim=1)   # [n, seq+1]


@torch.no_grad()
def evaluate(model, windows: torch.Tensor, batch: int = 8) -> tuple[float, torch.Tensor]:
    """Mean next-token loss over the windows, and the loss per position."""
    was = model.training
    model.eval()
    losses = []
    for i in range(0, len(windows), batch):
        w = windows[i:i + batch]
        logits, _ = model(w[:, :-1])
        losses.append(F.cross_entropy(logits.transpose(1, 2), w[:, 1:], reduction="none"))
    model.train(was)
    per_pos = torch.cat(losses).mean(0)
    return float(per_pos.mean()), per_pos


# ---------------------------------------------------------------------------------------------
# Checkpoint export

def export(model: DeepseekV2ForCausalLM, out_dir: str) -> None:
    os.makedirs(out_dir, exist_ok=True)
    sd = {k: v.detach().to(torch.bfloat16).contiguous() for k, v in model.state_dict().items()}
    tmp = os.path.join(out_dir, "model.safetensors.tmp")
    save_file(sd, tmp, metadata={"format": "pt"})
    os.chmod(tmp, 0o644)
    os.replace(tmp, os.path.join(out_dir, "model.safetensors"))
    with open(os.path.join(out_dir, "config.json"), "w") as f:
        json.dump(model.cfg.to_hf_dict(), f, indent=2)
        f.write("\n")
    print(f"exported {len(sd)} tensors (bf16) to {out_dir}", flush=True)


def samples(model, tok: Tokenizer, n_new: int = 60) -> list[str]:
    out = []
    bos = tok.token_to_id(BOS)
    for p in PROMPTS:
        ids = [bos] + tok.encode(p, add_special_tokens=False).ids
        gen = model.generate(ids, n_new, temperature=0.0, stop=tok.token_to_id(EOS))
        out.append(tok.decode(gen[1:]))
    return out


# ---------------------------------------------------------------------------------------------

def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--text", help="KJV text from kjv_text.sh (default: run it)")
    ap.add_argument("--tokenizer", default=os.path.join(MODEL_DIR, "tokenizer.json"))
    ap.add_argument("--out-dir", default=MODEL_DIR, help="where config.json and model.safetensors go")
    ap.add_argument("--work", default="/tmp/kjv-train", help="checkpoints and the summary")
    ap.add_argument("--steps", type=int, default=2600)
    ap.add_argument("--time-budget", type=float, default=1980.0, help="seconds of training at most")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--seq", type=int, default=256)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--min-lr-ratio", type=float, default=0.1)
    ap.add_argument("--warmup", type=int, default=100)
    ap.add_argument("--weight-decay", type=float, default=0.1)
    ap.add_argument("--clip", type=float, default=1.0)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--log-every", type=int, default=25)
    ap.add_argument("--eval-every", type=int, default=250)
    ap.add_argument("--ckpt-every", type=float, default=300.0, help="seconds between checkpoints")
    ap.add_argument("--bench", type=int, default=0, help="time this many steps, print steps/s, exit")
    ap.add_argument("--export-only", metavar="CKPT", help="write --out-dir from a checkpoint and exit")
    ap.add_argument("--no-export", action="store_true")
    args = ap.parse_args()

    torch.set_num_threads(1)
    torch.set_num_interop_threads(1)
    torch.manual_seed(args.seed)
    tok = Tokenizer.from_file(args.tokenizer)

    if args.export_only:
        ck = torch.load(args.export_only, map_location="cpu")
        model = DeepseekV2ForCausalLM(DeepseekV2Config.from_dict(ck["config"]))
        model.load_state_dict(ck["model"])
        export(model, args.out_dir)
        for s in samples(model, tok):
            print("---\n" + s)
        return

    text = open(args.text).read() if args.text else subprocess.run(
        [os.path.join(HERE, "kjv_text.sh")], check=True, capture_output=True, text=True).stdout
    data = Data(text, tok, args.seq, args.seed)
    cfg = DeepseekV2Config(vocab_size=tok.get_vocab_size(), bos_token_id=tok.token_to_id(BOS),
                           eos_token_id=tok.token_to_id(EOS))
    model = DeepseekV2ForCausalLM(cfg)
    print(f"data: {data.n_chapters} chapters, {data.n_verses} verses; train {len(data.train)} tokens, "
          f"{len(data.starts)} window starts; held out {len(data.val)} tokens ({len(data.held_titles)} chapters: "
          f"{', '.join(data.held_titles)})", flush=True)
    print(f"model: {num_params(model)} parameters, {2 * num_params(model) / 1e6:.2f} MB in bf16", flush=True)

    decay = [p for n, p in model.named_parameters() if p.ndim == 2 and "embed_tokens" not in n]
    no_decay = [p for n, p in model.named_parameters() if not (p.ndim == 2 and "embed_tokens" not in n)]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": args.weight_decay},
                             {"params": no_decay, "weight_decay": 0.0}], lr=args.lr, betas=(0.9, 0.95), eps=1e-8)
    val256 = data.val_windows(args.seq)[:32]
    os.makedirs(args.work, exist_ok=True)
    ckpt_path = os.path.join(args.work, "ckpt.pt")

    def save_ckpt(step: int, elapsed: float) -> None:
        tmp = ckpt_path + ".tmp"
        torch.save({"config": cfg.to_hf_dict(), "model": model.state_dict(), "opt": opt.state_dict(),
                    "step": step, "elapsed": elapsed, "args": vars(args)}, tmp)
        os.replace(tmp, ckpt_path)
        print(f"checkpoint: step {step}, {elapsed:.0f} s → {ckpt_path}", flush=True)

    steps = args.bench or args.steps
    model.train()
    t0 = time.time()
    last_ckpt = t0
    step = 0
    ema = None
    loads = None
    while True:
        elapsed = time.time() - t0
        progress = max(step / steps, 0.0 if args.bench else elapsed / args.time_budget)
        if progress >= 1.0:
            break
        if step < args.warmup and not args.bench:
            lr = args.lr * (step + 1) / args.warmup
        else:
            lr = args.lr * (args.min_lr_ratio + (1 - args.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress)))
        for g in opt.param_groups:
            g["lr"] = lr
        x, y = data.batch(args.batch)
        logits, aux = model(x)
        ce = F.cross_entropy(logits.reshape(-1, cfg.vocab_size), y.reshape(-1))
        loss = ce + aux
        opt.zero_grad(set_to_none=True)
        loss.backward()
        gnorm = torch.nn.utils.clip_grad_norm_(model.parameters(), args.clip)
        opt.step()
        step += 1
        cev = ce.item()
        ema = cev if ema is None else 0.95 * ema + 0.05 * cev
        cnt = torch.tensor([layer.mlp.last_counts for layer in model.model.layers if layer.is_moe], dtype=torch.float)
        loads = cnt if loads is None else loads + cnt
        if step % args.log_every == 0 or step == 1:
            el = time.time() - t0
            frac = loads / loads.sum(1, keepdim=True)
            print(f"step {step:5d}  ce {cev:.4f}  ema {ema:.4f}  aux {aux.item():.5f}  lr {lr:.2e}  "
                  f"gnorm {float(gnorm):.2f}  {step / el:.2f} steps/s  {el:6.0f} s  expert load (max/min share "
                  f"per MoE layer) {' '.join(f'{float(r.max()):.2f}/{float(r.min()):.2f}' for r in frac)}", flush=True)
            loads = None
        if not args.bench and step % args.eval_every == 0:
            vl, _ = evaluate(model, val256)
            print(f"step {step:5d}  val {vl:.4f}", flush=True)
        if not args.bench and time.time() - last_ckpt > args.ckpt_every:
            save_ckpt(step, time.time() - t0)
            last_ckpt = time.time()

    train_s = time.time() - t0
    print(f"trained {step} steps in {train_s:.0f} s ({step / train_s:.3f} steps/s, "
          f"{step * args.batch * args.seq} tokens)", flush=True)
    if args.bench:
        return
    save_ckpt(step, train_s)
    vl, per_pos = evaluate(model, data.val_windows(args.seq))
    long_w = data.val_windows(1024)
    vl_long, per_pos_long = evaluate(model, long_w, batch=2)
    seg = [float(per_pos_long[a:b].mean()) for a, b in [(0, 256), (256, 512), (512, 768), (768, 1024)]]
    print(f"final: train ce (ema) {ema:.4f}; val {vl:.4f} (256-token windows); "
          f"1024-token windows by position quarter {' '.join(f'{v:.3f}' for v in seg)}", flush=True)
    outs = samples(model, tok)
    for s in outs:
        print("--- greedy:\n" + s, flush=True)
    summary = {"steps": step, "train_seconds": train_s, "tokens": step * args.batch * args.seq,
               "train_ce_ema": ema, "val_loss": vl, "val_1024_by_quarter": seg, "samples": outs,
               "params": num_params(model), "args": vars(args)}
    with open(os.path.join(args.work, "summary.json"), "w") as f:
        json.dump(summary, f, indent=2)
    if not args.no_export:
        export(model, args.out_dir)


if __name__ == "__main__":
    main()
