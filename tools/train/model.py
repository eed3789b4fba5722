"""A compact PyTorch DeepSeek-V2 (MLA + DeepSeekMoE) for training the embedded default model.

Follows DeepSeek's released semantics as written down in /work/shared/spec/mla-moe-math.md
(§2–§3, gotchas §6), which is also what the C++ oracle (reference/) computes:

- RMSNorm in fp32, eps = rms_norm_eps (also for q_a_layernorm / kv_a_layernorm).
- MLA: q per head = [q_nope d_h | q_pe d_R]; kv_a_proj_with_mqa output = [latent d_c | k_pe d_R];
  kv_a_layernorm over the latent only; kv_b_proj per head = [k_nope d_h | v d_v];
  one k_pe shared by all heads; interleaved RoPE (pairs (2k, 2k+1), view_as_complex);
  YaRN inverse frequencies and amplitude mscale(s, mscale)/mscale(s, mscale_all_dim);
  softmax scale d_qk^-1/2 · mscale(s, mscale_all_dim)²; causal softmax in fp32; o_proj.
- DeepSeekMoE: router logits and softmax in fp32 over all routed experts; greedy or
  group_limited_greedy (group score = max, other groups masked with 0.0); gates = the selected
  scores, renormalised iff norm_topk_prob and K > 1, otherwise × routed_scaling_factor;
  SwiGLU experts; the shared experts as one MLP of width n_shared · moe_intermediate_size.
- Layer l is dense iff l < first_k_dense_replace (or l % moe_layer_freq != 0); final norm;
  untied lm_head.
- Training only: the expert-level balance loss (aux_loss_alpha, seq_aux) of the released MoEGate.

Parameter names are the Hugging Face ones, so `model.state_dict()` is the checkpoint.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields

import torch
import torch.nn.functional as F
from torch import nn


@dataclass
class DeepseekV2Config:
    vocab_size: int = 4096
    hidden_size: int = 256
    num_hidden_layers: int = 4
    num_attention_heads: int = 4
    qk_nope_head_dim: int = 32
    qk_rope_head_dim: int = 16
    v_head_dim: int = 32
    kv_lora_rank: int = 64
    q_lora_rank: int | None = 96
    intermediate_size: int = 512
    moe_intermediate_size: int = 128
    n_routed_experts: int | None = 8
    n_shared_experts: int | None = 2
    num_experts_per_tok: int | None = 2
    n_group: int = 4
    topk_group: int = 2
    topk_method: str = "group_limited_greedy"
    scoring_func: str = "softmax"
    norm_topk_prob: bool = False
    routed_scaling_factor: float = 2.0
    first_k_dense_replace: int = 1
    moe_layer_freq: int = 1
    aux_loss_alpha: float = 0.003
    seq_aux: bool = True
    rms_norm_eps: float = 1e-6
    rope_theta: float = 10000.0
    rope_scaling: dict | None = field(default_factory=lambda: {
        "type": "yarn", "factor": 8.0, "original_max_position_embeddings": 256,
        "beta_fast": 32.0, "beta_slow": 1.0, "mscale": 0.707, "mscale_all_dim": 0.707})
    max_position_embeddings: int = 2048
    bos_token_id: int | None = 0
    eos_token_id: int | None = 1
    initializer_range: float = 0.02

    @property
    def qk_head_dim(self) -> int:
        return self.qk_nope_head_dim + self.qk_rope_head_dim

    def is_moe_layer(self, l: int) -> bool:
        return (self.n_routed_experts is not None and self.n_routed_experts > 0
                and l >= self.first_k_dense_replace and l % self.moe_layer_freq == 0)

    @classmethod
    def from_dict(cls, d: dict) -> "DeepseekV2Config":
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})

    def to_hf_dict(self) -> dict:
        """config.json in the Hugging Face DeepSeek-V2 layout."""
        d = asdict(self)
        d.update({
            "model_type": "deepseek_v2",
            "architectures": ["DeepseekV2ForCausalLM"],
            "num_key_value_heads": self.num_attention_heads,
            "hidden_act": "silu",
            "attention_bias": False,
            "attention_dropout": 0.0,
            "tie_word_embeddings": False,
            "use_cache": True,
            "torch_dtype": "bfloat16",
        })
        return dict(sorted(d.items()))


# ---------------------------------------------------------------------------------------------
# Building blocks

def upcast(x: torch.Tensor) -> torch.Tensor:
    """To fp32 for the steps DeepSeek runs in fp32 (norms, RoPE, router, attention softmax);
    fp64 stays fp64 (the parity check runs the whole model in fp64 as well)."""
    return x if x.dtype == torch.float64 else x.float()


class RMSNorm(nn.Module):
    def __init__(self, n: int, eps: float):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(n))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        dtype = x.dtype
        x = upcast(x)
        x = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps)
        return self.weight * x.to(dtype)


def yarn_mscale(s: float, m: float) -> float:
    return 1.0 if s <= 1.0 else 0.1 * m * math.log(s) + 1.0


def yarn_correction_range(d_R: int, base: float, L0: int, beta_fast: float, beta_slow: float) -> tuple[int, int]:
    def dim(rot: float) -> float:
        return d_R * math.log(L0 / (rot * 2 * math.pi)) / (2 * math.log(base))
    return max(math.floor(dim(beta_fast)), 0), min(math.ceil(dim(beta_slow)), d_R - 1)


def rope_inv_freq(cfg: DeepseekV2Config) -> torch.Tensor:
    """θ_k = base^(-2k/d_R), blended with θ_k/s by YaRN's linear ramp over the correction range. fp64."""
    d_R = cfg.qk_rope_head_dim
    k = torch.arange(d_R // 2, dtype=torch.float64)
    theta = cfg.rope_theta ** (-2.0 * k / d_R)
    rs = cfg.rope_scaling
    if not rs:
        return theta
    low, high = yarn_correction_range(d_R, cfg.rope_theta, rs.get("original_max_position_embeddings", 4096),
                                      rs.get("beta_fast", 32.0), rs.get("beta_slow", 1.0))
    hi = high + 0.001 if low == high else high
    ramp = ((k - low) / (hi - low)).clamp(0.0, 1.0)
    return theta * (1.0 - ramp) + (theta / rs["factor"]) * ramp


def rope_amplitude(cfg: DeepseekV2Config) -> float:
    rs = cfg.rope_scaling
    if not rs:
        return 1.0
    return yarn_mscale(rs["factor"], rs.get("mscale", 1.0)) / yarn_mscale(rs["factor"], rs.get("mscale_all_dim", 0.0))


def softmax_scale(cfg: DeepseekV2Config) -> float:
    sigma = cfg.qk_head_dim ** -0.5
    rs = cfg.rope_scaling
    if rs and rs.get("mscale_all_dim", 0.0):
        m = yarn_mscale(rs["factor"], rs["mscale_all_dim"])
        sigma *= m * m
    return sigma


def apply_rope(x: torch.Tensor, freqs_cis: torch.Tensor) -> torch.Tensor:
    """Interleaved RoPE: pairs (x_2k, x_2k+1) as complex numbers times freqs_cis. x: [B, T, H, d_R],
    freqs_cis: [T, d_R/2] complex."""
    xc = torch.view_as_complex(upcast(x).reshape(*x.shape[:-1], -1, 2).contiguous())
    y = torch.view_as_real(xc * freqs_cis[None, :, None, :].to(xc.device, xc.dtype)).flatten(-2)
    return y.to(x.dtype)


class MLP(nn.Module):
    """SwiGLU: down(silu(gate x) ⊙ up x)."""

    def __init__(self, d: int, width: int):
        super().__init__()
        self.gate_proj = nn.Linear(d, width, bias=False)
        self.up_proj = nn.Linear(d, width, bias=False)
        self.down_proj = nn.Linear(width, d, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))


# ---------------------------------------------------------------------------------------------
# MLA

class Attention(nn.Module):
    def __init__(self, cfg: DeepseekV2Config):
        super().__init__()
        self.cfg = cfg
        d, H = cfg.hidden_size, cfg.num_attention_heads
        if cfg.q_lora_rank:
            self.q_a_proj = nn.Linear(d, cfg.q_lora_rank, bias=False)                   # W^DQ
            self.q_a_layernorm = RMSNorm(cfg.q_lora_rank, cfg.rms_norm_eps)
            self.q_b_proj = nn.Linear(cfg.q_lora_rank, H * cfg.qk_head_dim, bias=False)  # [W^UQ; W^QR] per head
        else:
            self.q_proj = nn.Linear(d, H * cfg.qk_head_dim, bias=False)
        self.kv_a_proj_with_mqa = nn.Linear(d, cfg.kv_lora_rank + cfg.qk_rope_head_dim, bias=False)  # [W^DKV; W^KR]
        self.kv_a_layernorm = RMSNorm(cfg.kv_lora_rank, cfg.rms_norm_eps)
        self.kv_b_proj = nn.Linear(cfg.kv_lora_rank, H * (cfg.qk_nope_head_dim + cfg.v_head_dim), bias=False)
        self.o_proj = nn.Linear(H * cfg.v_head_dim, d, bias=False)
        self.scale = softmax_scale(cfg)

    def forward(self, x: torch.Tensor, freqs_cis: torch.Tensor) -> torch.Tensor:
        c = self.cfg
        B, T, _ = x.shape
        H, dh, dR, dv = c.num_attention_heads, c.qk_nope_head_dim, c.qk_rope_head_dim, c.v_head_dim
        q = self.q_b_proj(self.q_a_layernorm(self.q_a_proj(x))) if c.q_lora_rank else self.q_proj(x)
        q_nope, q_pe = q.view(B, T, H, dh + dR).split([dh, dR], dim=-1)
        latent, k_pe = self.kv_a_proj_with_mqa(x).split([c.kv_lora_rank, dR], dim=-1)
        kv = self.kv_b_proj(self.kv_a_layernorm(latent)).view(B, T, H, dh + dv)
        k_nope, v = kv.split([dh, dv], dim=-1)
        q_pe = apply_rope(q_pe, freqs_cis)
        k_pe = apply_rope(k_pe.view(B, T, 1, dR), freqs_cis)                  # one key for all heads
        q = torch.cat([q_nope, q_pe], dim=-1)                                 # [B, T, H, d_qk]
        k = torch.cat([k_nope, k_pe.expand(B, T, H, dR)], dim=-1)            # [B, T, H, d_qk]
        scores = torch.einsum("bthd,bshd->bhts", q, k) * self.scale         # [B, H, T, T]
        mask = torch.ones(T, T, dtype=torch.bool, device=x.device).triu(1)
        scores = scores.masked_fill(mask, float("-inf"))
        p = upcast(scores).softmax(dim=-1).to(q.dtype)
        o = torch.einsum("bhts,bshd->bthd", p, v).reshape(B, T, H * dv)
        return self.o_proj(o)


# ---------------------------------------------------------------------------------------------
# DeepSeekMoE

class Gate(nn.Module):
    def __init__(self, cfg: DeepseekV2Config):
        super().__init__()
        self.cfg = cfg
        self.weight = nn.Parameter(torch.empty(cfg.n_routed_experts, cfg.hidden_size))  # expert centroids

    def forward(self, x: torch.Tensor):
        """x: [B, T, d] → (topk_idx [B·T, K], topk_weight [B·T, K] fp32, aux_loss or None)."""
        c = self.cfg
        B, T, d = x.shape
        N, K = c.n_routed_experts, c.num_experts_per_tok
        logits = F.linear(upcast(x.reshape(-1, d)), upcast(self.weight))
        assert c.scoring_func == "softmax", c.scoring_func
        scores = logits.softmax(dim=-1)                                             # [B·T, N]
        if c.topk_method == "greedy":
            topk_weight, topk_idx = torch.topk(scores, k=K, dim=-1, sorted=False)
        elif c.topk_method == "group_limited_greedy":
            group_scores = scores.view(B * T, c.n_group, -1).max(dim=-1).values     # [B·T, G]
            group_idx = torch.topk(group_scores, k=c.topk_group, dim=-1, sorted=False).indices
            group_mask = torch.zeros_like(group_scores).scatter_(1, group_idx, 1.0)
            score_mask = group_mask.unsqueeze(-1).expand(B * T, c.n_group, N // c.n_group).reshape(B * T, N)
            masked = scores.masked_fill(~score_mask.bool(), 0.0)
            topk_weight, topk_idx = torch.topk(masked, k=K, dim=-1, sorted=False)
        else:
            raise ValueError(f"topk_method {c.topk_method!r}")
        if K > 1 and c.norm_topk_prob:
            topk_weight = topk_weight / (topk_weight.sum(dim=-1, keepdim=True) + 1e-20)
        else:
            topk_weight = topk_weight * c.routed_scaling_factor

        aux = None
        if self.training and c.aux_loss_alpha > 0.0:
            # Expert-level balance loss: α Σ_i f_i P_i, f_i = N/(K T) · #selections, P_i = mean score.
            if c.seq_aux:
                ce = torch.zeros(B, N, device=x.device)
                ce.scatter_add_(1, topk_idx.view(B, -1), torch.ones(B, T * K, device=x.device))
                ce = ce / (T * K / N)
                aux = (ce * scores.view(B, T, N).mean(dim=1)).sum(dim=1).mean() * c.aux_loss_alpha
            else:
                f = F.one_hot(topk_idx.view(-1), N).float().mean(0) * N
                aux = (f * scores.mean(0)).sum() * c.aux_loss_alpha
        return topk_idx, topk_weight, aux


class MoE(nn.Module):
    def __init__(self, cfg: DeepseekV2Config):
        super().__init__()
        self.cfg = cfg
        self.experts = nn.ModuleList(MLP(cfg.hidden_size, cfg.moe_intermediate_size)
                                     for _ in range(cfg.n_routed_experts))
        self.gate = Gate(cfg)
        if cfg.n_shared_experts:
            self.shared_experts = MLP(cfg.hidden_size, cfg.n_shared_experts * cfg.moe_intermediate_size)

    def forward(self, x: torch.Tensor):
        B, T, d = x.shape
        topk_idx, topk_weight, aux = self.gate(x)
        flat = x.reshape(-1, d)
        K = topk_idx.shape[1]
        y = torch.zeros_like(flat)
        idx = topk_idx.reshape(-1)
        w = topk_weight.reshape(-1)
        order = torch.argsort(idx, stable=True)                 # (token, rank) slots grouped by expert
        counts = torch.bincount(idx, minlength=len(self.experts)).tolist()
        start = 0
        for e, n in enumerate(counts):
            if n == 0:
                continue
            slots = order[start:start + n]
            start += n
            tok = slots // K
            out = self.experts[e](flat[tok]) * w[slots].unsqueeze(-1).to(flat.dtype)
            y = y.index_add(0, tok, out)
        y = y.view(B, T, d)
        if self.cfg.n_shared_experts:
            y = y + self.shared_experts(x)
        self.last_counts = counts
        return y, aux


# ---------------------------------------------------------------------------------------------
# Model

class DecoderLayer(nn.Module):
    def __init__(self, cfg: DeepseekV2Config, l: int):
        super().__init__()
        self.input_layernorm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)
        self.self_attn = Attention(cfg)
        self.post_attention_layernorm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)
        self.is_moe = cfg.is_moe_layer(l)
        self.mlp = MoE(cfg) if self.is_moe else MLP(cfg.hidden_size, cfg.intermediate_size)

    def forward(self, h: torch.Tensor, freqs_cis: torch.Tensor):
        h = h + self.self_attn(self.input_layernorm(h), freqs_cis)
        if self.is_moe:
            y, aux = self.mlp(self.post_attention_layernorm(h))
        else:
            y, aux = self.mlp(self.post_attention_layernorm(h)), None
        return h + y, aux


class Backbone(nn.Module):
    def __init__(self, cfg: DeepseekV2Config):
        super().__init__()
        self.embed_tokens = nn.Embedding(cfg.vocab_size, cfg.hidden_size)
        self.layers = nn.ModuleList(DecoderLayer(cfg, l) for l in range(cfg.num_hidden_layers))
        self.norm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)


class DeepseekV2ForCausalLM(nn.Module):
    def __init__(self, cfg: DeepseekV2Config):
        super().__init__()
        self.cfg = cfg
        self.model = Backbone(cfg)
        self.lm_head = nn.Linear(cfg.hidden_size, cfg.vocab_size, bias=False)
        # RoPE table (not a parameter, not saved): angles p·θ_k in fp64, amplitude from YaRN.
        pos = torch.arange(cfg.max_position_embeddings, dtype=torch.float64)
        angles = torch.outer(pos, rope_inv_freq(cfg))
        amp = torch.full_like(angles, rope_amplitude(cfg))
        # complex128, cast to the compute type in apply_rope. A plain attribute, not a buffer, so that
        # model.to(dtype) leaves it alone (it would drop the imaginary part).
        self.freqs_cis = torch.polar(amp, angles)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        std = self.cfg.initializer_range
        for m in self.modules():
            if isinstance(m, (nn.Linear, nn.Embedding)):
                nn.init.normal_(m.weight, std=std)
            elif isinstance(m, Gate):
                nn.init.normal_(m.weight, std=std)
            elif isinstance(m, RMSNorm):
                nn.init.ones_(m.weight)

    def forward(self, tokens: torch.Tensor, start_pos: int = 0):
        """tokens [B, T] at positions start_pos … start_pos+T-1 (no cache: full recompute).
        Returns (logits [B, T, V] fp32, aux_loss summed over MoE layers or None)."""
        T = tokens.shape[1]
        freqs_cis = self.freqs_cis[start_pos:start_pos + T]
        h = self.model.embed_tokens(tokens)
        aux_total = None
        for layer in self.model.layers:
            h, aux = layer(h, freqs_cis)
            if aux is not None:
                aux_total = aux if aux_total is None else aux_total + aux
        logits = self.lm_head(self.model.norm(h)).float()
        return logits, aux_total

    @torch.no_grad()
    def generate(self, tokens: list[int], max_new_tokens: int, temperature: float = 0.0,
                 stop: int | None = None, generator: torch.Generator | None = None) -> list[int]:
        """Greedy (temperature 0) or sampled continuation; recomputes the whole prefix each step."""
        was_training = self.training
        self.eval()
        out = list(tokens)
        for _ in range(max_new_tokens):
            ctx = out[-self.cfg.max_position_embeddings:]
            logits, _ = self(torch.tensor([ctx]))
            last = logits[0, -1]
            if temperature <= 0.0:
                nxt = int(last.argmax())
            else:
                nxt = int(torch.multinomial((last / temperature).softmax(-1), 1, generator=generator))
            out.append(nxt)
            if stop is not None and nxt == stop:
                break
        self.train(was_training)
        return out


def num_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.state_dict().values())
