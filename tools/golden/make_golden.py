#!/usr/bin/env python3
"""Golden data for dsv2: two tiny random DeepSeek-V2 checkpoints run through transformers'
DeepseekV2ForCausalLM, with every intermediate captured under dsv2's names.

    python3 tools/golden/make_golden.py            # writes data/golden/{lite,v2}/ and data/golden/README.md

What it does, for each checkpoint (`lite`: V2-Lite-like; `v2`: V2-like):

1. builds a DeepseekV2Config and a DeepseekV2ForCausalLM in fp32, seeded, and re-initialises every
   weight to a sensible scale (Linear std 1/sqrt(in), embedding std 1, norms 1 +- 0.1) so that
   attention and routing are non-trivial and a missing norm weight would show;
2. audits the installed transformers against DeepSeek's released semantics (the hub
   modeling_deepseek.py of DeepSeek-V2 and DeepSeek-V3's inference/model.py; see
   /work/shared/spec/mla-moe-math.md §6), prints each finding, and corrects every deviation in the
   open (a commented replacement below), so the golden data follows the released semantics;
3. runs the corrected model on 12 tokens, capturing the intermediates with forward hooks;
4. checks the capture against an independent plain-PyTorch implementation of the released math
   (written below in the style of DeepSeek-V3 inference/model.py: naive MLA, interleaved complex
   RoPE, Gate), in fp64 and in fp32, that reads the weights back from the written
   model.safetensors — so the golden data does not just mirror one codebase;
5. writes config.json + model.safetensors (save_pretrained) and golden.safetensors.

Python only; the C++ tests (tests/reference/test_golden.cpp) read the files and never need Python.
Pinned versions: tools/golden/requirements.txt.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import platform
import sys

import numpy as np
import safetensors
import torch
import torch.nn.functional as F
import transformers
from safetensors.numpy import load_file as np_load_file
from safetensors.torch import load_file as torch_load_file
from transformers import DeepseekV2Config, DeepseekV2ForCausalLM
from transformers.cache_utils import DynamicCache

import transformers.models.deepseek_v2.modeling_deepseek_v2 as hf

# Weight seeds, chosen so that no routing decision is within 1e-4 of a tie and every expert of every MoE
# layer is chosen by some token (the script checks both).
SEEDS = {"lite": 1257, "v2": 1243}
TOKENS = [17, 150, 3, 88, 88, 42, 199, 0, 61, 123, 7, 150]  # 12 tokens, two repeats
PREFILL = 5  # the HF cache check: prefill of 5, then one-token decode steps

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))

# ------------------------------------------------------------------------------------------------
# The two checkpoints
# ------------------------------------------------------------------------------------------------

YARN = dict(rope_type="yarn", rope_theta=10000.0, factor=40.0, original_max_position_embeddings=4096,
            beta_fast=32, beta_slow=1, mscale=0.707, mscale_all_dim=0.707)  # as the released V2 configs

COMMON = dict(
    vocab_size=200, hidden_size=64, intermediate_size=128, num_hidden_layers=3, num_attention_heads=4,
    qk_nope_head_dim=16, qk_rope_head_dim=8, kv_lora_rank=32,
    n_routed_experts=8, num_experts_per_tok=2, moe_intermediate_size=32,
    first_k_dense_replace=1, moe_layer_freq=1, scoring_func="softmax", aux_loss_alpha=0.001, seq_aux=True,
    max_position_embeddings=163840, rms_norm_eps=1e-6, rope_parameters=YARN,
    bos_token_id=1, eos_token_id=2, tie_word_embeddings=False, attention_bias=False,
)

CHECKPOINTS = {
    # V2-Lite-like: no query compression, plain greedy top-K, no scaling, d_v = d_h.
    "lite": dict(COMMON, q_lora_rank=None, v_head_dim=16, topk_method="greedy", n_group=1, topk_group=1,
                 routed_scaling_factor=1.0, norm_topk_prob=False, n_shared_experts=1),
    # V2-like: query compression, group-limited routing, routed_scaling_factor != 1, d_v != d_h.
    # Top-3, not top-2: with K = 2 and topk_group = 2 the group limit can never change the choice (the
    # groups of the two best experts are always the two best groups), so K = 2 would not test it.
    "v2": dict(COMMON, q_lora_rank=24, v_head_dim=12, topk_method="group_limited_greedy", n_group=4, topk_group=2,
               num_experts_per_tok=3,
               routed_scaling_factor=2.5, norm_topk_prob=False, n_shared_experts=2),
}


def yarn_mscale(s: float, m: float) -> float:
    """DeepSeek's yarn_get_mscale: 0.1·m·ln s + 1 for s > 1, else 1."""
    return 1.0 if s <= 1 else 0.1 * m * math.log(s) + 1.0


def released_softmax_scale(c: dict) -> float:
    """Hub modeling_deepseek.py DeepseekV2Attention.__init__ (= V3 inference/model.py MLA.__init__):
    d_qk^-1/2, times mscale(s, mscale_all_dim)² when rope_scaling has a non-zero mscale_all_dim."""
    scale = (c["qk_nope_head_dim"] + c["qk_rope_head_dim"]) ** -0.5
    rs = c["rope_parameters"]
    if rs is not None and rs.get("rope_type", "default") != "default" and rs.get("mscale_all_dim", 0):
        m = yarn_mscale(rs["factor"], rs["mscale_all_dim"])
        scale = scale * m * m
    return scale


def released_rope_amplitude(c: dict) -> float:
    """Hub DeepseekV2YarnRotaryEmbedding: cos/sin × mscale(s, mscale)/mscale(s, mscale_all_dim), with the
    hub defaults mscale = 1 and mscale_all_dim = 0 when a key is absent."""
    rs = c["rope_parameters"]
    if rs is None or rs.get("rope_type", "default") == "default":
        return 1.0
    return yarn_mscale(rs["factor"], rs.get("mscale", 1)) / yarn_mscale(rs["factor"], rs.get("mscale_all_dim", 0))


# ------------------------------------------------------------------------------------------------
# Audit of the installed transformers, and the corrections
# ------------------------------------------------------------------------------------------------

class Findings:
    """What the audit found: (topic, verdict, detail). verdict: 'matches', 'DEVIATES' or 'note'."""

    def __init__(self):
        self.items: list[tuple[str, str, str]] = []
        self.corrections: list[str] = []

    def add(self, topic: str, verdict: str, detail: str):
        if (topic, verdict, detail) not in self.items:
            self.items.append((topic, verdict, detail))
            print(f"  [{verdict}] {topic}: {detail}")

    def correct(self, what: str):
        if what not in self.corrections:
            self.corrections.append(what)
            print(f"  [CORRECTED] {what}")


def released_gate_forward(self, hidden_states):
    """Replacement for DeepseekV2TopkRouter.forward, following DeepSeek-V2's released MoEGate
    (hub modeling_deepseek.py; spec §3.3):
      logits and softmax in fp32; greedy top-K, or group_limited_greedy (group score = max of its
      experts, keep topk_group groups, zero the others' scores, top-K);
      gates: renormalised when top_k > 1 and norm_topk_prob, OTHERWISE × routed_scaling_factor.
    transformers 5.23.0 always multiplies by routed_scaling_factor and never reads norm_topk_prob;
    that is the only line that differs from the installed forward."""
    hidden_states = hidden_states.view(-1, self.hidden_dim)
    router_logits = F.linear(hidden_states.type(torch.float32), self.weight.type(torch.float32))
    scores = router_logits.softmax(dim=-1, dtype=torch.float32)
    if self.topk_method == "greedy":
        topk_weights, topk_indices = torch.topk(scores, k=self.top_k, dim=-1, sorted=False)
    elif self.topk_method == "group_limited_greedy":
        per_group = self.num_experts // self.num_group
        group_scores = scores.view(-1, self.num_group, per_group).max(dim=-1).values
        group_idx = torch.topk(group_scores, k=self.topk_group, dim=-1, sorted=False)[1]
        group_mask = torch.zeros_like(group_scores).scatter_(1, group_idx, 1)
        score_mask = group_mask.unsqueeze(-1).expand(-1, self.num_group, per_group).reshape(-1, self.num_experts)
        tmp_scores = scores.masked_fill(~score_mask.bool(), 0.0)
        topk_weights, topk_indices = torch.topk(tmp_scores, k=self.top_k, dim=-1, sorted=False)
    else:
        raise NotImplementedError(f"topk_method {self.topk_method!r}")
    if self.top_k > 1 and self.norm_topk_prob:  # released V2: renormalise ...
        topk_weights = topk_weights / (topk_weights.sum(dim=-1, keepdim=True) + 1e-20)
    else:  # ... or scale, never both
        topk_weights = topk_weights * self.routed_scaling_factor
    return router_logits, topk_weights, topk_indices


_ORIGINAL_GATE_FORWARD = hf.DeepseekV2TopkRouter.forward


def audit_and_correct(model, c: dict, f: Findings):
    """Checks the installed modeling code against the released semantics on this model, prints each
    finding and corrects the deviations in place (module attributes / class forward)."""
    cfg = model.config
    layers = model.model.layers

    # 1. Softmax scale: d_qk^-1/2 · mscale(s, mscale_all_dim)² (PR #47435).
    want = released_softmax_scale(c)
    got = [float(l.self_attn.scaling) for l in layers]
    if all(abs(g - want) <= 1e-12 * want for g in got):
        f.add("softmax scale", "matches",
              f"attention.scaling = d_qk^-1/2·mscale(s, mscale_all_dim)² = {want:.9f} (yarn_apply_mscale; "
              "PR #47435 is in this version)")
    else:
        f.add("softmax scale", "DEVIATES", f"attention.scaling = {got[0]:.9f}, released {want:.9f}")
        for l in layers:  # the released scale, set on every attention module
            l.self_attn.scaling = want
        f.correct(f"softmax scale set to the released d_qk^-1/2·mscale(s, mscale_all_dim)² = {want:.9f}")

    # 2. YaRN frequencies and the cos/sin amplitude. transformers and the hub code compute the
    # interpolated frequencies as 1/(s·b^x), V3 inference/model.py as b^-x/s: equal up to one fp32
    # rounding, so the comparison allows 1e-6 (a wrong ramp or range would be off by far more).
    rot = model.model.rotary_emb
    ref_freqs = ref_inv_freq(c, torch.float64)
    ferr = ((rot.inv_freq.double() - ref_freqs).abs() / ref_freqs).max().item()
    if ferr < 1e-6:
        f.add("YaRN frequencies", "matches",
              "inv_freq equals the released blend θ·(1−r) + θ/s·r (floor/ceil correction range clamped to "
              f"[0, d_R−1], fp32) to fp32 rounding: {[float(x) for x in ref_freqs]}")
    else:
        f.add("YaRN frequencies", "DEVIATES", f"inv_freq {rot.inv_freq.tolist()} vs released {ref_freqs.tolist()}")
        rot.inv_freq = ref_freqs.float()
        rot.original_inv_freq = ref_freqs.float()
        f.correct("rotary inv_freq replaced by the released YaRN frequencies")
    amp = released_rope_amplitude(c)
    if float(rot.attention_scaling) == amp:
        f.add("YaRN cos/sin amplitude", "matches",
              f"attention_scaling = mscale(s, mscale)/mscale(s, mscale_all_dim) = {amp} for these configs")
    else:
        f.add("YaRN cos/sin amplitude", "DEVIATES", f"attention_scaling {rot.attention_scaling} vs released {amp}")
        rot.attention_scaling = amp
        f.correct(f"rotary attention_scaling set to the released mscale ratio {amp}")
    f.add("YaRN cos/sin amplitude (general case)", "DEVIATES",
          "latent, not triggered here: modeling_rope_utils._compute_yarn_parameters uses "
          "mscale(s, mscale)/mscale(s, mscale_all_dim) only when both keys are set and non-zero, and 0.1·ln s + 1 "
          "otherwise; the hub DeepseekV2YarnRotaryEmbedding always uses mscale(s, mscale)/mscale(s, mscale_all_dim) "
          "with defaults mscale = 1, mscale_all_dim = 0. They differ when exactly one key is given; both are 0.707 "
          "here (as in the released configs), so the amplitude is 1 in both codes (checked on the model)")

    # 3. RoPE: interleaved complex form, output in interleaved order.
    g = torch.Generator().manual_seed(7)
    xq = torch.randn(1, 3, 5, c["qk_rope_head_dim"], generator=g)
    xk = torch.randn(1, 1, 5, c["qk_rope_head_dim"], generator=g)
    pos = torch.arange(5)[None]
    fc = rot(xq, pos)  # [1, 5, d_R/2] complex
    hq, hk = _ORIGINAL_APPLY_ROTARY(xq, xk, fc)
    rfc = ref_freqs_cis(c, 5, torch.float64)
    rq = ref_rope(xq[0].transpose(0, 1).double(), rfc).transpose(0, 1)[None]
    rk = ref_rope(xk[0].transpose(0, 1).double(), rfc).transpose(0, 1)[None]
    err = max(rel(hq, rq), rel(hk, rk))
    if err < 1e-6:
        f.add("RoPE layout", "matches",
              f"apply_rotary_emb rotates interleaved pairs (2k, 2k+1) as complex numbers (view_as_complex), "
              f"q_pe/k_pe come out in the interleaved order of the released code (rel. err {err:.1e})")
    else:
        raise SystemExit(f"RoPE of this transformers version is not the interleaved complex form (rel. err {err:.2e}); "
                         "convert its q_pe/k_pe order before using it")

    # 4. Norm placement and split orders (checked numerically against the reference below).
    a0 = layers[0].self_attn
    assert a0.kv_a_layernorm.weight.numel() == c["kv_lora_rank"]
    assert a0.kv_a_proj_with_mqa.out_features == c["kv_lora_rank"] + c["qk_rope_head_dim"]
    f.add("RMSNorm placement", "matches",
          "kv_a_layernorm covers only the kv_lora_rank latent (not k_pe); q_a_layernorm after q_a_proj; these two "
          "use eps 1e-6 whatever config.rms_norm_eps says, as the hub code (1e-6 here anyway)")
    f.add("split orders", "matches",
          "q per head = [nope | rope]; kv_a_proj_with_mqa = [latent | k_pe]; kv_b_proj per head = [k_nope | v]")

    # 5. Router.
    gate_layers = [l.mlp.gate for l in layers if isinstance(l.mlp, hf.DeepseekV2Moe)]
    f.add("router precision", "matches", "logits from fp32 inputs and weights, softmax in fp32")
    f.add("group-limited routing", "matches",
          "group score = max of its experts, top topk_group groups kept, other experts' scores zeroed "
          "(masked_fill 0.0, as the hub MoEGate), then top-K")
    if all(hasattr(gl, "num_experts") for gl in gate_layers):
        f.add("group_limited_greedy self.num_experts (spec §6.17)", "matches",
              "not present in this version: DeepseekV2TopkRouter sets self.num_experts itself, and the v2 "
              "checkpoint runs the group_limited_greedy branch without error")
    src_has_norm = "norm_topk_prob" in _source(_ORIGINAL_GATE_FORWARD)
    if not src_has_norm:
        f.add("norm_topk_prob", "DEVIATES",
              "DeepseekV2TopkRouter.forward never reads norm_topk_prob and always multiplies the gates by "
              "routed_scaling_factor; the released V2 gate renormalises (top_k > 1 and norm_topk_prob) OR scales")
        hf.DeepseekV2TopkRouter.forward = released_gate_forward
        for gl in gate_layers:
            gl.norm_topk_prob = bool(cfg.norm_topk_prob)
        f.correct("DeepseekV2TopkRouter.forward replaced by released_gate_forward (renormalise or scale, "
                  "as the hub MoEGate); no numerical change for these configs (norm_topk_prob false), "
                  "shown to matter with norm_topk_prob true (below)")
    f.add("top-k order", "note",
          "torch.topk(sorted=False) leaves the K chosen experts in an unspecified order; the capture sorts them "
          "best-first by score, ties by lower index (dsv2's rule), and topk_weight with the same permutation")
    f.add("shared experts", "matches",
          "one SwiGLU of width n_shared_experts·moe_intermediate_size on the same input, added unscaled")

    # 6. Which layers are MoE.
    want_moe = [c["n_routed_experts"] is not None and i >= c["first_k_dense_replace"] and i % c["moe_layer_freq"] == 0
                for i in range(c["num_hidden_layers"])]
    got_moe = [isinstance(l.mlp, hf.DeepseekV2Moe) for l in layers]
    assert got_moe == want_moe, (got_moe, want_moe)
    f.add("MoE layer placement", "DEVIATES",
          "latent, not triggered here: DeepseekV2DecoderLayer makes layer i MoE iff i >= first_k_dense_replace, "
          "ignoring moe_layer_freq (released: n_routed_experts set, i >= first_k_dense_replace and "
          "i % moe_layer_freq == 0); moe_layer_freq = 1 here as in the released configs, so the layers agree "
          f"(MoE layers {[i for i, m in enumerate(got_moe) if m]})")
    f.add("YaRN switch", "note",
          "YaRN frequencies and the mscale² softmax factor apply whenever rope_scaling is present, at every "
          "position (hub code and transformers; V3 inference/model.py switches on max_seq_len > 4096, on by default)")
    f.add("config.json", "note",
          "save_pretrained writes the RoPE settings as \"rope_parameters\" (with rope_theta inside); the released "
          "hub configs carry \"rope_theta\" and \"rope_scaling\" at the top level, the only keys dsv2's parser reads "
          "(reference/src/config.cpp), so dsv2 would read the file as written by save_pretrained as plain RoPE, "
          "without YaRN and without the mscale² softmax factor, and say nothing. The golden config.json keeps what "
          "save_pretrained wrote and adds those two legacy keys (same values); transformers reads the file back to "
          "the same rope parameters (checked)")


def _source(fn) -> str:
    import inspect
    return inspect.getsource(fn)


def demonstrate_norm_topk_prob(f: Findings):
    """The router correction matters when norm_topk_prob is true: original vs corrected forward."""
    c = dict(CHECKPOINTS["v2"], norm_topk_prob=True)
    cfg = make_config(c)
    gate = hf.DeepseekV2TopkRouter(cfg)
    gate.norm_topk_prob = True
    with torch.no_grad():
        gate.weight.copy_(torch.randn(gate.weight.shape, generator=torch.Generator().manual_seed(3)) / 8)
        x = torch.randn(5, c["hidden_size"], generator=torch.Generator().manual_seed(4))
        _, w_orig, _ = _ORIGINAL_GATE_FORWARD(gate, x)
        _, w_fix, _ = released_gate_forward(gate, x)
    f.add("norm_topk_prob (demonstration)", "note",
          f"with norm_topk_prob true the installed router gives gate sums "
          f"{[round(x, 4) for x in w_orig.sum(-1)[:3].tolist()]} (× {c['routed_scaling_factor']}), the released "
          f"one {[round(x, 4) for x in w_fix.sum(-1)[:3].tolist()]} (renormalised)")


# ------------------------------------------------------------------------------------------------
# Independent reference: DeepSeek's released math, plain PyTorch, in the style of V3 inference/model.py
# ------------------------------------------------------------------------------------------------

def ref_inv_freq(c: dict, dtype) -> torch.Tensor:
    """precompute_freqs_cis' frequencies (V3 inference/model.py; = hub DeepseekV2YarnRotaryEmbedding)."""
    dim, base, rs = c["qk_rope_head_dim"], c["rope_parameters"]["rope_theta"], c["rope_parameters"]
    freqs = 1.0 / (base ** (torch.arange(0, dim, 2, dtype=dtype) / dim))
    if rs.get("rope_type", "default") == "yarn":
        def corr_dim(n_rot):
            return dim * math.log(rs["original_max_position_embeddings"] / (n_rot * 2 * math.pi)) / (2 * math.log(base))
        low = max(math.floor(corr_dim(rs["beta_fast"])), 0)
        high = min(math.ceil(corr_dim(rs["beta_slow"])), dim - 1)
        if low == high:
            high += 0.001
        smooth = 1 - torch.clamp((torch.arange(dim // 2, dtype=dtype) - low) / (high - low), 0, 1)
        freqs = freqs / rs["factor"] * (1 - smooth) + freqs * smooth
    return freqs


def ref_freqs_cis(c: dict, seqlen: int, dtype) -> torch.Tensor:
    """e^{i p θ_k} × amplitude, [seqlen, d_R/2] complex."""
    freqs = ref_inv_freq(c, dtype)
    angles = torch.outer(torch.arange(seqlen, dtype=dtype), freqs)
    return torch.polar(torch.full_like(angles, released_rope_amplitude(c)), angles)


def ref_rope(x: torch.Tensor, freqs_cis: torch.Tensor) -> torch.Tensor:
    """apply_rotary_emb of V3 inference/model.py: x [T, H, d_R], pairs (2k, 2k+1) as complex numbers."""
    xc = torch.view_as_complex(x.reshape(*x.shape[:-1], -1, 2).contiguous())
    return torch.view_as_real(xc * freqs_cis.view(x.size(0), 1, -1)).flatten(-2)


def rms_norm(x, w, eps):
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) * w


def swiglu(x, p, pre):
    """Expert / MLP: w2(silu(w1 x) · w3 x); w1 = gate_proj, w3 = up_proj, w2 = down_proj."""
    return F.linear(F.silu(F.linear(x, p[pre + "gate_proj.weight"])) * F.linear(x, p[pre + "up_proj.weight"]),
                    p[pre + "down_proj.weight"])


def ref_mla(c, p, pre, x, fc, rec, l):
    """Naive MLA (V3 inference/model.py MLA with attn_impl = "naive"), one prefill from position 0."""
    T, H = x.shape[0], c["num_attention_heads"]
    dn, dr, dv, dc = c["qk_nope_head_dim"], c["qk_rope_head_dim"], c["v_head_dim"], c["kv_lora_rank"]
    if c["q_lora_rank"]:
        cq = rms_norm(F.linear(x, p[pre + "q_a_proj.weight"]), p[pre + "q_a_layernorm.weight"], 1e-6)
        rec(f"layers.{l}.attn.c_q", cq)
        q = F.linear(cq, p[pre + "q_b_proj.weight"])
    else:
        q = F.linear(x, p[pre + "q_proj.weight"])
    q = q.view(T, H, dn + dr)
    q_nope, q_pe = torch.split(q, [dn, dr], dim=-1)
    q_pe = ref_rope(q_pe, fc)
    rec(f"layers.{l}.attn.q_nope", q_nope.reshape(T, -1))
    rec(f"layers.{l}.attn.q_pe", q_pe.reshape(T, -1))
    kv = F.linear(x, p[pre + "kv_a_proj_with_mqa.weight"])
    kv, k_pe = torch.split(kv, [dc, dr], dim=-1)
    kv = rms_norm(kv, p[pre + "kv_a_layernorm.weight"], 1e-6)
    k_pe = ref_rope(k_pe.unsqueeze(1), fc)  # [T, 1, d_R]: one key for all heads
    rec(f"layers.{l}.attn.c_kv", kv)
    rec(f"layers.{l}.attn.k_pe", k_pe.reshape(T, -1))
    kvb = F.linear(kv, p[pre + "kv_b_proj.weight"]).view(T, H, dn + dv)
    k_nope, v = torch.split(kvb, [dn, dv], dim=-1)
    k = torch.cat([k_nope, k_pe.expand(-1, H, -1)], dim=-1)
    qf = torch.cat([q_nope, q_pe], dim=-1)
    scores = torch.einsum("shd,thd->sht", qf, k) * released_softmax_scale(c)
    scores = scores + torch.full((T, T), float("-inf"), dtype=x.dtype).triu_(1).unsqueeze(1)
    scores = scores.softmax(dim=-1, dtype=torch.float32 if x.dtype == torch.float32 else x.dtype)
    o = torch.einsum("sht,thd->shd", scores, v).reshape(T, -1)
    rec(f"layers.{l}.attn.o", o)
    out = F.linear(o, p[pre + "o_proj.weight"])
    rec(f"layers.{l}.attn.out", out)
    return out


def ref_gate(c, w, x):
    """V3 inference/model.py Gate with the V2 settings: softmax scores; group max; top-K (best first);
    gates = selected scores, renormalised if norm_topk_prob (and K > 1), otherwise × routed_scaling_factor."""
    T = x.shape[0]
    logits = F.linear(x, w)
    scores = logits.softmax(dim=-1)
    original = scores
    if c["topk_method"] == "group_limited_greedy" and c["n_group"] > 1:
        s = scores.view(T, c["n_group"], -1)
        keep = s.amax(dim=-1).topk(c["topk_group"], dim=-1)[1]
        mask = torch.ones(T, c["n_group"], dtype=torch.bool).scatter_(1, keep, False)
        scores = s.masked_fill(mask.unsqueeze(-1), float("-inf")).flatten(1)
    idx = torch.topk(scores, c["num_experts_per_tok"], dim=-1)[1]  # sorted: best first
    weights = original.gather(1, idx)
    if c["num_experts_per_tok"] > 1 and c["norm_topk_prob"]:
        weights = weights / (weights.sum(dim=-1, keepdim=True) + 1e-20)
    else:
        weights = weights * c["routed_scaling_factor"]
    return logits, original, idx, weights


def ref_moe(c, p, pre, x, rec, l):
    logits, scores, idx, weights = ref_gate(c, p[pre + "gate.weight"], x)
    rec(f"layers.{l}.moe.router_logits", logits)
    rec(f"layers.{l}.moe.scores", scores)
    rec(f"layers.{l}.moe.topk_idx", idx)
    rec(f"layers.{l}.moe.topk_weight", weights)
    routed = torch.zeros_like(x)
    for t in range(x.shape[0]):
        for k in range(idx.shape[1]):
            e = int(idx[t, k])
            routed[t] += weights[t, k] * swiglu(x[t:t + 1], p, f"{pre}experts.{e}.")[0]
    rec(f"layers.{l}.moe.routed", routed)
    out = routed
    if c["n_shared_experts"]:
        shared = swiglu(x, p, pre + "shared_experts.")
        rec(f"layers.{l}.moe.shared", shared)
        out = out + shared
    rec(f"layers.{l}.moe.out", out)
    return out


def ref_forward(c: dict, p: dict, tokens: list[int], dtype):
    """The whole model from the HF-named tensors `p`; returns (logits, {name: tensor})."""
    p = {k: v.to(dtype) for k, v in p.items()}
    acts: dict[str, torch.Tensor] = {}

    def rec(name, t):
        acts[name] = t.detach().clone()

    T = len(tokens)
    fc = ref_freqs_cis(c, T, dtype)
    eps = c["rms_norm_eps"]
    h = p["model.embed_tokens.weight"][torch.tensor(tokens)]
    rec("embed", h)
    for l in range(c["num_hidden_layers"]):
        pre = f"model.layers.{l}."
        x = rms_norm(h, p[pre + "input_layernorm.weight"], eps)
        rec(f"layers.{l}.attn_norm", x)
        h = h + ref_mla(c, p, pre + "self_attn.", x, fc, rec, l)
        rec(f"layers.{l}.attn_residual", h)
        x = rms_norm(h, p[pre + "post_attention_layernorm.weight"], eps)
        rec(f"layers.{l}.ffn_norm", x)
        if l >= c["first_k_dense_replace"] and l % c["moe_layer_freq"] == 0:
            y = ref_moe(c, p, pre + "mlp.", x, rec, l)
        else:
            y = swiglu(x, p, pre + "mlp.")
            rec(f"layers.{l}.mlp.out", y)
        h = h + y
        rec(f"layers.{l}.out", h)
    hn = rms_norm(h, p["model.norm.weight"], eps)
    rec("norm", hn)
    logits = F.linear(hn, p["lm_head.weight"])
    rec("logits", logits)
    return logits, acts


# ------------------------------------------------------------------------------------------------
# Model, weights, capture
# ------------------------------------------------------------------------------------------------

def make_config(c: dict) -> DeepseekV2Config:
    return DeepseekV2Config(**c, attn_implementation="eager", experts_implementation="eager")


def reinit_weights(model, seed: int):
    """Linear (out, in): normal, std 1/sqrt(in) (fused experts likewise, per expert); embedding: std 1;
    norm weights: 1 + 0.1·N(0, 1). One generator, parameters in name order."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, prm in sorted(model.named_parameters()):
            if name.endswith("norm.weight") or name.endswith("layernorm.weight"):
                prm.copy_(1.0 + 0.1 * torch.randn(prm.shape, generator=g))
            elif name == "model.embed_tokens.weight":
                prm.copy_(torch.randn(prm.shape, generator=g))
            elif prm.dim() in (2, 3):  # [out, in] or fused experts [N_r, out, in]
                prm.copy_(torch.randn(prm.shape, generator=g) / math.sqrt(prm.shape[-1]))
            else:
                raise SystemExit(f"no init rule for {name} {tuple(prm.shape)}")


_ORIGINAL_APPLY_ROTARY = hf.apply_rotary_emb


class Capture:
    """Forward hooks that record the intermediates under dsv2's names (docs/intermediates.md)."""

    def __init__(self, model, c: dict):
        self.c = c
        self.acts: dict[str, torch.Tensor] = {}
        self.on = False
        self.layer = -1
        self.handles = []
        m = model.model
        self.hook(m.embed_tokens, lambda o: self.rec("embed", o))
        for l, layer in enumerate(m.layers):
            at = layer.self_attn
            self.handles.append(at.register_forward_pre_hook(lambda mod, a, l=l: setattr(self, "layer", l)))
            self.hook(layer.input_layernorm, lambda o, l=l: self.rec(f"layers.{l}.attn_norm", o))
            if at.q_a_layernorm is not None:
                self.hook(at.q_a_layernorm, lambda o, l=l: self.rec(f"layers.{l}.attn.c_q", o))
            qproj = at.q_b_proj if at.q_b_proj is not None else at.q_proj
            self.hook(qproj, lambda o, l=l: self.rec(f"layers.{l}.attn.q_nope", self.q_nope(o)))
            self.hook(at.kv_a_layernorm, lambda o, l=l: self.rec(f"layers.{l}.attn.c_kv", o))
            self.handles.append(at.o_proj.register_forward_pre_hook(
                lambda mod, a, l=l: self.rec(f"layers.{l}.attn.o", a[0])))
            self.hook(at.o_proj, lambda o, l=l: self.rec(f"layers.{l}.attn.out", o))
            self.handles.append(layer.post_attention_layernorm.register_forward_pre_hook(
                lambda mod, a, l=l: self.rec(f"layers.{l}.attn_residual", a[0])))
            self.hook(layer.post_attention_layernorm, lambda o, l=l: self.rec(f"layers.{l}.ffn_norm", o))
            if isinstance(layer.mlp, hf.DeepseekV2Moe):
                self.hook(layer.mlp.gate, lambda o, l=l: self.router(l, o))
                self.hook(layer.mlp.experts, lambda o, l=l: self.rec(f"layers.{l}.moe.routed", o))
                self.hook(layer.mlp.shared_experts, lambda o, l=l: self.rec(f"layers.{l}.moe.shared", o))
                self.hook(layer.mlp, lambda o, l=l: self.rec(f"layers.{l}.moe.out", o))
            else:
                self.hook(layer.mlp, lambda o, l=l: self.rec(f"layers.{l}.mlp.out", o))
            self.hook(layer, lambda o, l=l: self.rec(f"layers.{l}.out", o))
        self.hook(m.norm, lambda o: self.rec("norm", o))
        self.hook(model.lm_head, lambda o: self.rec("logits", o))

        # q_pe and k_pe after RoPE are not module outputs: wrap the module-level apply_rotary_emb,
        # which DeepseekV2Attention.forward looks up at call time.
        def apply_rotary_emb(xq, xk, freqs_cis):
            q, k = _ORIGINAL_APPLY_ROTARY(xq, xk, freqs_cis)
            l = self.layer
            self.rec(f"layers.{l}.attn.q_pe", q.transpose(1, 2))  # [B, H, T, d_R] → [B, T, H, d_R]
            self.rec(f"layers.{l}.attn.k_pe", k.transpose(1, 2))  # [B, 1, T, d_R] → [B, T, 1, d_R]
            return q, k
        hf.apply_rotary_emb = apply_rotary_emb

    def hook(self, module, fn):
        self.handles.append(module.register_forward_hook(lambda mod, a, o: fn(o)))

    def rec(self, name, t):
        if not self.on:
            return
        t = t.detach()
        if t.dim() > 2:  # [1, T, ...] → [T, width]: heads side by side, in head order
            assert t.shape[0] == 1
            t = t.reshape(t.shape[1], -1)
        assert name not in self.acts, f"{name} recorded twice"
        self.acts[name] = t.clone()

    def q_nope(self, q):
        c = self.c
        T = q.shape[-2]
        return q.reshape(T, c["num_attention_heads"], -1)[..., :c["qk_nope_head_dim"]].reshape(T, -1)

    def router(self, l, out):
        logits, weights, idx = out
        scores = logits.softmax(dim=-1, dtype=torch.float32)
        # dsv2's order: best first by score, equal scores by lower index.
        s = scores.gather(1, idx).numpy()
        i = idx.numpy()
        order = np.stack([np.lexsort((i[t], -s[t])) for t in range(len(i))])  # last key = primary
        self.rec(f"layers.{l}.moe.router_logits", logits)
        self.rec(f"layers.{l}.moe.scores", scores)
        self.rec(f"layers.{l}.moe.topk_idx", torch.from_numpy(np.take_along_axis(i, order, 1)))
        self.rec(f"layers.{l}.moe.topk_weight", torch.from_numpy(np.take_along_axis(weights.numpy(), order, 1)))

    def run(self, model, tokens):
        self.acts, self.on = {}, True
        try:
            with torch.no_grad():
                logits = model(input_ids=torch.tensor([tokens]), use_cache=False).logits[0]
        finally:
            self.on = False
        return logits, dict(self.acts)


def rel(a, b) -> float:
    a, b = a.double(), b.double()
    den = b.norm().item()
    return (a - b).norm().item() / den if den else (a - b).norm().item()


def routing_margins(c: dict, acts: dict) -> tuple[float, int]:
    """Smallest score gap that decides a routing choice or its order (fp64 reference scores): between
    consecutive chosen experts, between the K-th and the best unchosen eligible expert, and between the
    topk_group-th and the next group. fp32 noise is ~1e-7; the choice is safe when this is >> that.
    Also returns how many (layer, token) choices the group limit changes against plain top-K."""
    gaps, changed = [], 0
    K = c["num_experts_per_tok"]
    for l in range(c["first_k_dense_replace"], c["num_hidden_layers"]):
        s = acts[f"layers.{l}.moe.scores"].numpy()
        for t in range(s.shape[0]):
            row = s[t].copy()
            if c["topk_method"] == "group_limited_greedy":
                gm = row.reshape(c["n_group"], -1).max(-1)
                gs = np.sort(gm)[::-1]
                gaps.append(gs[c["topk_group"] - 1] - gs[c["topk_group"]])
                keep = np.argsort(-gm, kind="stable")[:c["topk_group"]]
                allowed = np.zeros(c["n_group"], bool)
                allowed[keep] = True
                greedy = set(np.argsort(-row, kind="stable")[:K])
                row = np.where(np.repeat(allowed, len(row) // c["n_group"]), row, -np.inf)
                changed += greedy != set(np.argsort(-row, kind="stable")[:K])
            r = np.sort(row)[::-1]
            gaps.extend(r[k] - r[k + 1] for k in range(K))
    return float(min(gaps)), changed


# ------------------------------------------------------------------------------------------------
# One checkpoint
# ------------------------------------------------------------------------------------------------

def build(name: str, c: dict, out_dir: str, seed: int, f: Findings) -> dict:
    print(f"\n=== {name} ===")
    torch.manual_seed(seed)
    cfg = make_config(c)
    model = DeepseekV2ForCausalLM(cfg).eval()
    reinit_weights(model, seed)
    assert model.lm_head.weight.data_ptr() != model.model.embed_tokens.weight.data_ptr(), "lm_head tied"
    audit_and_correct(model, c, f)

    cap = Capture(model, c)
    logits, acts = cap.run(model, TOKENS)
    for h in cap.handles:
        h.remove()
    hf.apply_rotary_emb = _ORIGINAL_APPLY_ROTARY
    assert torch.equal(acts["logits"], logits)

    # HF's own cache path: prefill + one-token decode steps give the same logits.
    with torch.no_grad():
        cache = DynamicCache(config=cfg)
        ids = torch.tensor([TOKENS])
        steps = [model(input_ids=ids[:, :PREFILL], past_key_values=cache, use_cache=True).logits[0]]
        for t in range(PREFILL, len(TOKENS)):
            steps.append(model(input_ids=ids[:, t:t + 1], past_key_values=cache, use_cache=True).logits[0])
    dec_err = rel(torch.cat(steps), logits)
    print(f"  transformers prefill {PREFILL} + decode vs one prefill: logits rel. err {dec_err:.2e}")
    assert dec_err < 1e-5

    # Files: config.json and model.safetensors as save_pretrained writes them.
    os.makedirs(out_dir, exist_ok=True)
    for old in ("config.json", "model.safetensors", "golden.safetensors", "generation_config.json"):
        if os.path.exists(os.path.join(out_dir, old)):
            os.remove(os.path.join(out_dir, old))
    model.save_pretrained(out_dir, safe_serialization=True)
    for extra in os.listdir(out_dir):
        if extra not in ("config.json", "model.safetensors"):
            os.remove(os.path.join(out_dir, extra))
    cpath = os.path.join(out_dir, "config.json")
    with open(cpath) as fh:
        cj = json.load(fh)
    rp = dict(cj["rope_parameters"])
    cj["rope_theta"] = rp.pop("rope_theta")  # legacy keys, as in the released hub configs
    cj["rope_scaling"] = dict(rp, type=rp["rope_type"])
    with open(cpath, "w") as fh:
        fh.write(json.dumps(cj, indent=2, sort_keys=True) + "\n")
    back = DeepseekV2Config.from_pretrained(out_dir)
    for k, v in YARN.items():
        assert back.rope_parameters[k] == v, (k, back.rope_parameters)

    # The independent reference, from the written file.
    p = torch_load_file(os.path.join(out_dir, "model.safetensors"))
    assert all(t.dtype == torch.float32 for t in p.values())
    ref_logits64, ref64 = ref_forward(c, p, TOKENS, torch.float64)
    ref_logits32, ref32 = ref_forward(c, p, TOKENS, torch.float32)
    assert set(ref64) == set(acts), set(ref64) ^ set(acts)
    worst64 = worst32 = 0.0
    print(f"  {'intermediate':34s} {'shape':>9s}  vs ref fp64   vs ref fp32")
    for n, a in acts.items():
        if n.endswith("topk_idx"):
            assert torch.equal(a.long(), ref64[n].long()) and torch.equal(a.long(), ref32[n].long()), n
            print(f"  {n:34s} {str(list(a.shape)):>9s}  exact        exact")
            continue
        assert a.shape == ref64[n].shape, (n, a.shape, ref64[n].shape)
        e64, e32 = rel(a, ref64[n]), rel(a, ref32[n])
        worst64, worst32 = max(worst64, e64), max(worst32, e32)
        print(f"  {n:34s} {str(list(a.shape)):>9s}  {e64:.2e}     {e32:.2e}")
    margin, changed = routing_margins(c, ref64)
    used = [len(set(a.flatten().tolist())) for n, a in acts.items() if n.endswith("topk_idx")]
    print(f"  max rel. err vs reference: fp64 {worst64:.2e}, fp32 {worst32:.2e}; smallest routing margin {margin:.2e}; "
          f"distinct experts chosen per MoE layer {used}; choices changed by the group limit: {changed}")
    assert worst64 < 2e-6 and worst32 < 2e-6, "transformers (corrected) and the reference disagree"
    assert margin > 1e-4, "a routing choice is within fp32 noise: pick other tokens or another seed"
    assert all(u == c["n_routed_experts"] for u in used), "some expert is never chosen"
    assert c["topk_method"] != "group_limited_greedy" or changed > 0, "the group limit never matters"

    # golden.safetensors
    tensors = {"tokens": np.array(TOKENS, dtype=np.int32)}
    for n, a in acts.items():
        tensors[n] = np.ascontiguousarray(a.numpy().astype(np.int32 if n.endswith("topk_idx") else np.float32))
    meta = {
        "format": "dsv2-golden-1",
        "checkpoint": name,
        "tokens": ",".join(map(str, TOKENS)),
        "seed": str(seed),
        "order": ",".join(acts.keys()),
        "source": "transformers DeepseekV2ForCausalLM (eager attention, eager experts), fp32, one prefill of all "
                  "tokens from position 0, after the corrections listed",
        "corrections": json.dumps(f.corrections),
        "deviations": json.dumps([f"{t}: {d}" for t, v, d in f.items if v == "DEVIATES"]),
        "reference_max_rel_err_fp64": f"{worst64:.3e}",
        "reference_max_rel_err_fp32": f"{worst32:.3e}",
        "routing_margin": f"{margin:.3e}",
        "group_limit_changed_choices": str(changed),
        "versions": json.dumps(versions()),
        "command": "python3 tools/golden/make_golden.py",
    }
    write_safetensors(os.path.join(out_dir, "golden.safetensors"), tensors, meta)
    for fn in os.listdir(out_dir):
        os.chmod(os.path.join(out_dir, fn), 0o644)
    sizes = {fn: os.path.getsize(os.path.join(out_dir, fn)) for fn in sorted(os.listdir(out_dir))}
    total = sum(sizes.values())
    print(f"  wrote {out_dir}: {sizes} = {total} bytes")
    assert total < 1_000_000, "keep each golden directory under 1 MB"
    return dict(name=name, worst64=worst64, worst32=worst32, margin=margin, changed=changed, dec_err=dec_err, sizes=sizes,
                n_tensors=len(acts))


def write_safetensors(path: str, tensors: dict, metadata: dict):
    """A safetensors file with a deterministic header (the library's own writer orders the metadata
    differently from run to run): tensors and keys in name order, data little-endian, contiguous."""
    dtypes = {np.dtype("<f4"): "F32", np.dtype("<i4"): "I32"}
    header, blobs, offset = {"__metadata__": metadata}, [], 0
    for name in sorted(tensors):
        a = np.ascontiguousarray(tensors[name])
        b = a.astype(a.dtype.newbyteorder("<")).tobytes()
        header[name] = {"dtype": dtypes[a.dtype.newbyteorder("<")], "shape": list(a.shape),
                        "data_offsets": [offset, offset + len(b)]}
        blobs.append(b)
        offset += len(b)
    h = json.dumps(header, sort_keys=True, separators=(",", ":")).encode()
    h += b" " * (-len(h) % 8)
    with open(path, "wb") as fh:
        fh.write(len(h).to_bytes(8, "little") + h + b"".join(blobs))
    back = np_load_file(path)  # read back with the library
    assert set(back) == set(tensors) and all(np.array_equal(back[k], tensors[k]) for k in tensors)


def versions() -> dict:
    return {"python": platform.python_version(), "torch": torch.__version__, "transformers": transformers.__version__,
            "safetensors": safetensors.__version__, "numpy": np.__version__}


def write_readme(path: str, results: list[dict], f: Findings):
    v = versions()
    lines = [
        "# data/golden/ — golden data from PyTorch (transformers) for dsv2",
        "",
        "Two tiny random DeepSeek-V2 checkpoints and every intermediate of one forward pass, computed by",
        "transformers' `DeepseekV2ForCausalLM` (fp32, eager attention) after correcting its deviations from",
        "DeepSeek's released semantics, and checked inside the generator against an independent plain-PyTorch",
        "implementation of the released math (`tools/golden/make_golden.py`, in the style of DeepSeek-V3",
        "`inference/model.py`: naive MLA, interleaved complex RoPE, Gate). `tests/reference/test_golden.cpp` runs dsv2's",
        "oracle on the same weights and tokens and compares every intermediate by name. (`tokenizer/` holds",
        "the tokenizer's golden encodings, made by `tools/golden/tokenizer_cases.py` and described there.)",
        "",
        "| directory | shape | what it exercises |",
        "|---|---|---|",
        "| `lite/` | V2-Lite-like | no query compression (`q_lora_rank` null), `greedy` top-2 of 8 experts, "
        "`routed_scaling_factor` 1.0, `norm_topk_prob` false, 1 shared expert, d_v = d_h = 16 |",
        "| `v2/` | V2-like | `q_lora_rank` 24, `group_limited_greedy` top-3 of 8 experts in 4 groups of 2, "
        "topk_group 2, `routed_scaling_factor` 2.5, `norm_topk_prob` false, 2 shared experts, d_v 12 ≠ d_h 16 |",
        "",
        "`v2` routes to 3 experts, not 2: with K = 2 and topk_group = 2 the group limit can never change the",
        "choice (the groups of the two best experts are always the two best groups), so it would go untested;",
        "with K = 3 it changes the chosen set for about half of the (layer, token) pairs (column below).",
        "",
        "Both: hidden 64, 3 layers (layer 0 dense SwiGLU of width 128, layers 1–2 DeepSeekMoE with experts of",
        "width 32), 4 heads, qk_nope 16, qk_rope 8, kv_lora 32, vocab 200, YaRN as the released configs",
        "(factor 40, original 4096, β 32/1, mscale = mscale_all_dim = 0.707, so the softmax scale is",
        "σ = 24^-1/2·1.589626 = 0.324481 and the cos/sin amplitude 1).",
        f"Weights: seed {SEEDS['lite']} (`lite`) and {SEEDS['v2']} (`v2`); Linear normal with std 1/√in, embedding std 1, "
        "norm weights 1 + 0.1·N(0, 1).",
        f"Tokens: `{','.join(map(str, TOKENS))}` (12, one prefill from position 0).",
        "",
        "Each directory holds",
        "",
        "- `config.json` — as `save_pretrained` wrote it, plus the legacy top-level `rope_theta` and",
        "  `rope_scaling` keys of the released hub configs (same values as its `rope_parameters`; see below);",
        "- `model.safetensors` — F32 weights under the Hugging Face names (per-expert tensors), what",
        "  `dsv2::load_weights` reads;",
        "- `golden.safetensors` — one F32 tensor per intermediate under the names of",
        "  `docs/intermediates.md`, shape [T, width] (heads side by side, in head order; `attn.q_pe` and",
        "  `attn.k_pe` after RoPE in the interleaved order); `layers.{l}.moe.topk_idx` as I32, best first by",
        "  score (equal scores: lower index), `moe.topk_weight` in the same order; `tokens` (I32 [T]). The",
        "  metadata holds the versions, seed, tokens, forward order, corrections and the measured agreement",
        "  with the reference. The absorbed-form entries (`attn.q_absorbed`, `attn.o_latent`) are not in it.",
        "",
        "## Regenerate",
        "",
        "```sh",
        "pip install -r tools/golden/requirements.txt     # CPU is enough",
        "python3 tools/golden/make_golden.py             # rewrites data/golden/{lite,v2}/ and this README",
        "```",
        "",
        f"Generated with Python {v['python']}, torch {v['torch']}, transformers {v['transformers']}, "
        f"safetensors {v['safetensors']}, numpy {v['numpy']}.",
        "The run prints the audit below and a table of every intermediate's relative error against the",
        "reference; it stops if they disagree by more than 2e-6 or differ in a chosen expert, if a routing",
        "decision is within 1e-4 of a tie (the seeds were picked so that none is), if an expert is never used,",
        "if the group limit never matters, or if a directory would exceed 1 MB (10^6 bytes). Rerunning it",
        "with the same versions rewrites the same bytes.",
        "",
        "## The test",
        "",
        "`tests/reference/test_golden.cpp` (CTest `test_golden: …`, no Python) loads each directory with",
        "`dsv2::config_from_file` + `dsv2::load_weights`, runs `Model::forward` on the golden tokens with a",
        "`Trace` — fp32 and fp64, naive and absorbed attention, one prefill of 12 and a prefill of 5 followed",
        "by 7 one-token decode steps through the latent cache — and compares every golden intermediate by",
        "name: ‖Δ‖/‖ref‖ ≤ 1e-5, `topk_idx` exactly. A failure names the first diverging intermediate in",
        "forward order (`Trace::order()`) with its error. It also checks that the comparison can fail: a",
        "weight perturbed by 1%, the softmax scale without mscale², plain RoPE, renormalised gates, greedy",
        "instead of group-limited routing, and golden q_pe in rotate_half order are each reported at the",
        "intermediate where they first show.",
        "",
        "## Agreement measured by the generator",
        "",
        "| checkpoint | intermediates | max ‖Δ‖/‖ref‖ vs fp64 reference | vs fp32 reference | smallest routing margin | "
        "choices changed by the group limit | HF prefill 5 + decode vs prefill | bytes |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        lines.append(f"| `{r['name']}` | {r['n_tensors']} | {r['worst64']:.1e} | {r['worst32']:.1e} | {r['margin']:.1e} | "
                     f"{r['changed'] if r['name'] == 'v2' else '— (greedy)'}"
                     f"{' of 24' if r['name'] == 'v2' else ''} | {r['dec_err']:.1e} | {sum(r['sizes'].values())} |")
    lines += [
        "",
        f"## transformers {v['transformers']} against DeepSeek's released semantics",
        "",
        "Read from `transformers/models/deepseek_v2/modeling_deepseek_v2.py` and `modeling_rope_utils.py`, and",
        "checked numerically by the generator (spec: `/work/shared/spec/mla-moe-math.md` §2–§3, §6).",
        "",
        "### Deviations",
        "",
    ]
    for t, verdict, d in f.items:
        if verdict == "DEVIATES":
            lines.append(f"- **{t}** — {d}.")
    lines += ["", "### Corrections applied (in the open, in `make_golden.py`)", ""]
    lines += [f"- {x}." for x in f.corrections] or ["- none"]
    lines += ["", "### Checked and matching", ""]
    for t, verdict, d in f.items:
        if verdict == "matches":
            lines.append(f"- **{t}** — {d}.")
    lines += ["", "### Notes", ""]
    for t, verdict, d in f.items:
        if verdict == "note":
            lines.append(f"- **{t}** — {d}.")
    lines.append("")
    with open(path, "w") as fh:
        fh.write("\n".join(lines))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default=os.path.join(REPO, "data", "golden"), help="output folder (default: data/golden)")
    args = ap.parse_args()
    torch.set_num_threads(1)
    print("versions:", versions())
    print("modeling code:", hf.__file__)
    f = Findings()
    results = []
    for i, (name, c) in enumerate(CHECKPOINTS.items()):
        results.append(build(name, c, os.path.join(args.out, name), SEEDS[name], f))
    demonstrate_norm_topk_prob(f)
    write_readme(os.path.join(args.out, "README.md"), results, f)
    print("\nwrote", os.path.join(args.out, "README.md"))


if __name__ == "__main__":
    sys.exit(main())
