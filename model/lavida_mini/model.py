"""ElasticMoT: the Elastic Mixture-of-Transformers backbone and its training-framework forward.

Two branches (understanding / text with hidden d_u, generation / image with hidden d_g) project
Q, K, V into one shared attention space of H heads x D. Layers 0..M-1 are joint (every token attends
to every token), layers M..N-1 are split (each side attends only within itself). Image-image
attention logits carry a per-head 2D locality bias -slope_h * |cell_i - cell_j|.
"""
from __future__ import annotations

import math
from typing import List, Optional, Tuple

import torch
import torch.nn.functional as F
from torch import nn

from .config import ModelConfig


class RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.rsqrt((x * x).mean(-1, keepdim=True) + self.eps) * self.weight


class Rotary(nn.Module):
    """Rotate-half RoPE over the head dimension, positions = global sequence index."""

    def __init__(self, head_dim: int, theta: float) -> None:
        super().__init__()
        self.head_dim = head_dim
        exponent = torch.arange(0, head_dim, 2, dtype=torch.float64) / head_dim
        self.register_buffer("inv_freq", (1.0 / theta ** exponent).to(torch.float32), persistent=False)

    def cos_sin(self, positions: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """positions int64 [S] -> cos, sin float32 [S, D]."""
        angles = positions.to(torch.float32)[:, None] * self.inv_freq[None, :]
        angles = torch.cat((angles, angles), dim=-1)
        return torch.cos(angles), torch.sin(angles)


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """x [B, H, S, D]; cos, sin [S, D]."""
    half = x.shape[-1] // 2
    x1 = x[..., :half]
    x2 = x[..., half:]
    return x * cos + torch.cat((-x2, x1), dim=-1) * sin


class Branch(nn.Module):
    """One branch (understanding or generation) of one transformer layer."""

    def __init__(self, hidden: int, ffn: int, heads: int, head_dim: int, eps: float) -> None:
        super().__init__()
        self.heads = heads
        self.head_dim = head_dim
        attn = heads * head_dim
        self.attn_norm = RMSNorm(hidden, eps)
        self.wq = nn.Linear(hidden, attn, bias=False)
        self.wk = nn.Linear(hidden, attn, bias=False)
        self.wv = nn.Linear(hidden, attn, bias=False)
        self.wo = nn.Linear(attn, hidden, bias=False)
        self.ffn_norm = RMSNorm(hidden, eps)
        self.w1 = nn.Linear(hidden, ffn, bias=False)
        self.w3 = nn.Linear(hidden, ffn, bias=False)
        self.w2 = nn.Linear(ffn, hidden, bias=False)

    def _heads(self, x: torch.Tensor) -> torch.Tensor:
        """[B, S, H*D] -> [B, H, S, D]."""
        return x.view(x.shape[0], x.shape[1], self.heads, self.head_dim).transpose(1, 2)

    def qkv(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor):
        """Pre-attention norm, Q/K/V projections, RoPE on Q and K. Returns [B, H, S, D] each."""
        h = self.attn_norm(x)
        q = apply_rope(self._heads(self.wq(h)), cos, sin)
        k = apply_rope(self._heads(self.wk(h)), cos, sin)
        v = self._heads(self.wv(h))
        return q, k, v

    def ffn(self, x: torch.Tensor) -> torch.Tensor:
        h = self.ffn_norm(x)
        return self.w2(F.silu(self.w1(h)) * self.w3(h))

    def finish(self, x: torch.Tensor, attn: torch.Tensor) -> torch.Tensor:
        """attn [B, H, S, D]: O-projection, residual, FFN, residual."""
        x = x + self.wo(attn.transpose(1, 2).flatten(2))
        return x + self.ffn(x)


class Layer(nn.Module):
    def __init__(self, cfg: ModelConfig, joint: bool) -> None:
        super().__init__()
        self.joint = joint
        self.und = Branch(cfg.und_hidden, cfg.und_ffn, cfg.heads, cfg.head_dim, cfg.norm_eps)
        self.gen = Branch(cfg.gen_hidden, cfg.gen_ffn, cfg.heads, cfg.head_dim, cfg.norm_eps)


def locality_bias(num_tokens, grid_cols: int, slopes: torch.Tensor, grid_tokens: int = 0) -> torch.Tensor:
    """2D locality bias for image tokens in raster order: [H, I, I] = -slope_h * euclidean cell distance.

    num_tokens may be a traced size (the ONNX graphs keep I dynamic). With grid_tokens, token i sits on
    cell i mod grid_tokens, so an editing condition grid and the output grid overlap in space.
    """
    idx = torch.arange(num_tokens)
    if grid_tokens:
        idx = idx % grid_tokens
    row = torch.div(idx, grid_cols, rounding_mode="floor").to(torch.float32)
    col = (idx % grid_cols).to(torch.float32)
    dr = row[:, None] - row[None, :]
    dc = col[:, None] - col[None, :]
    dist = torch.sqrt(dr * dr + dc * dc)
    return -slopes[:, None, None] * dist[None, :, :]


def partial_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                      bias: Optional[torch.Tensor] = None) -> Tuple[torch.Tensor, torch.Tensor]:
    """Softmax attention of q over (k, v) with its log-sum-exp.

    q [B,H,Sq,D], k/v [B,H,Sk,D], bias broadcastable to [B,H,Sq,Sk].
    Returns out [B,H,Sq,D] and lse [B,H,Sq] (log-sum-exp of the scaled, biased scores).
    """
    scores = torch.matmul(q, k.transpose(-1, -2)) * (1.0 / math.sqrt(q.shape[-1]))
    if bias is not None:
        scores = scores + bias
    m = scores.amax(dim=-1, keepdim=True)
    e = torch.exp(scores - m)
    z = e.sum(dim=-1, keepdim=True)
    out = torch.matmul(e, v) / z
    lse = (m + torch.log(z)).squeeze(-1)
    return out, lse


def merge_partials(o1: torch.Tensor, m1: torch.Tensor, o2: torch.Tensor, m2: torch.Tensor) -> torch.Tensor:
    """Exact merge of two attention partials over disjoint key sets (o [B,H,S,D], m [B,H,S])."""
    m = torch.maximum(m1, m2)
    w1 = torch.exp(m1 - m).unsqueeze(-1)
    w2 = torch.exp(m2 - m).unsqueeze(-1)
    return (w1 * o1 + w2 * o2) / (w1 + w2)


class ElasticMoT(nn.Module):
    def __init__(self, cfg: ModelConfig, text_vocab_size: Optional[int] = None) -> None:
        super().__init__()
        self.cfg = cfg
        self.text_vocab_size = text_vocab_size if text_vocab_size is not None else cfg.text_vocab_size
        self.text_embed = nn.Embedding(self.text_vocab_size, cfg.und_hidden)
        self.image_embed = nn.Embedding(cfg.image_vocab_size, cfg.gen_hidden)
        self.layers = nn.ModuleList([Layer(cfg, joint=l < cfg.joint_layers) for l in range(cfg.num_layers)])
        self.und_norm = RMSNorm(cfg.und_hidden, cfg.norm_eps)
        self.gen_norm = RMSNorm(cfg.gen_hidden, cfg.norm_eps)
        self.text_head = nn.Linear(cfg.und_hidden, self.text_vocab_size, bias=False)
        self.image_head = nn.Linear(cfg.gen_hidden, cfg.codebook_size, bias=False)
        self.rotary = Rotary(cfg.head_dim, cfg.rope_theta)
        self.register_buffer("slopes", torch.tensor(cfg.image_locality_slopes, dtype=torch.float32),
                             persistent=False)
        self.image_pos: Optional[nn.Parameter] = (
            nn.Parameter(torch.zeros(cfg.num_image_tokens, cfg.gen_hidden)) if cfg.image_position_table else None)

    def embed_image(self, image_ids: torch.Tensor) -> torch.Tensor:
        """[B, I] -> [B, I, d_g]: the code embeddings, plus the grid-cell table where the model has one. `image_ids`
        are whole grids in raster order (an edit: the condition grid, then the output grid), so token i is cell
        i % (rows * cols)."""
        h = self.image_embed(image_ids)
        if self.image_pos is None:
            return h
        cells = torch.arange(image_ids.shape[-1], device=image_ids.device) % self.cfg.num_image_tokens
        return h + self.image_pos[cells]

    @torch.no_grad()
    def init_weights(self, seed: int) -> None:
        """Seeded random init, std large enough that logits are far from uniform."""
        g = torch.Generator().manual_seed(seed)
        named = [(n, p) for n, p in self.named_parameters() if n != "image_pos"]
        if self.image_pos is not None:   # drawn last: every other parameter keeps the values of a model without it
            named.append(("image_pos", self.image_pos))
        for name, p in named:
            if name.endswith("norm.weight"):
                p.copy_(1.0 + 0.1 * torch.randn(p.shape, generator=g))
            elif "embed" in name:
                p.copy_(0.2 * torch.randn(p.shape, generator=g))
            elif name.endswith("head.weight"):
                p.copy_(2.0 / math.sqrt(p.shape[1]) * torch.randn(p.shape, generator=g))
            else:  # linear [out, in]
                p.copy_(1.0 / math.sqrt(p.shape[1]) * torch.randn(p.shape, generator=g))

    def _image_bias(self, num_image_tokens: int) -> torch.Tensor:
        """[H, I, I] locality bias from grid-cell coordinates (torch.cdist, independent of the segments)."""
        cols = self.cfg.grid_cols
        idx = torch.arange(num_image_tokens) % self.cfg.num_image_tokens
        cells = torch.stack((idx // cols, idx % cols), dim=-1).to(torch.float32)
        dist = torch.cdist(cells, cells, compute_mode="donot_use_mm_for_euclid_dist")
        return -self.slopes.view(-1, 1, 1) * dist.to(self.slopes.device)

    def forward(self, text_ids: torch.Tensor, image_ids: torch.Tensor, return_hidden: bool = False):
        """text_ids [B,T], image_ids [B,I] -> text_logits [B,T,V_text], image_logits [B,I,K].

        Straightforward single-sequence implementation: both sides concatenated, one attention with
        an additive bias (locality on image-image, -inf across sides in split layers).
        With return_hidden, also returns [(h_text, h_image)] at the input of every layer plus the
        final (pre-norm) states.
        """
        cfg = self.cfg
        B, T = text_ids.shape
        I = image_ids.shape[1]
        S = T + I
        H, D = cfg.heads, cfg.head_dim
        ht = self.text_embed(text_ids)
        hi = self.embed_image(image_ids)

        positions = torch.arange(S)
        angles = positions.to(torch.float32)[:, None] * self.rotary.inv_freq[None, :]
        cos = torch.cos(angles).repeat(1, 2)
        sin = torch.sin(angles).repeat(1, 2)

        def rope(x):  # [B, S, H, D]
            x1, x2 = x[..., : D // 2], x[..., D // 2:]
            rot = torch.cat((-x2, x1), dim=-1)
            return x * cos[None, :, None, :] + rot * sin[None, :, None, :]

        joint_bias = torch.zeros(H, S, S)
        joint_bias[:, T:, T:] = self._image_bias(I)
        split_bias = joint_bias.clone()
        split_bias[:, :T, T:] = float("-inf")
        split_bias[:, T:, :T] = float("-inf")

        hidden: List[Tuple[torch.Tensor, torch.Tensor]] = []
        for layer in self.layers:
            hidden.append((ht, hi))
            u, g = layer.und, layer.gen
            nt, ni = u.attn_norm(ht), g.attn_norm(hi)
            q = rope(torch.cat((u.wq(nt), g.wq(ni)), dim=1).view(B, S, H, D))
            k = rope(torch.cat((u.wk(nt), g.wk(ni)), dim=1).view(B, S, H, D))
            v = torch.cat((u.wv(nt), g.wv(ni)), dim=1).view(B, S, H, D)
            scores = torch.einsum("bqhd,bkhd->bhqk", q, k) / math.sqrt(D)
            scores = scores + (joint_bias if layer.joint else split_bias)
            attn = torch.einsum("bhqk,bkhd->bqhd", torch.softmax(scores, dim=-1), v).reshape(B, S, H * D)
            ht = ht + u.wo(attn[:, :T])
            hi = hi + g.wo(attn[:, T:])
            ht = ht + u.ffn(ht)
            hi = hi + g.ffn(hi)
        hidden.append((ht, hi))

        text_logits = self.text_head(self.und_norm(ht))
        image_logits = self.image_head(self.gen_norm(hi))
        if return_hidden:
            return text_logits, image_logits, hidden
        return text_logits, image_logits


def build_model(cfg: ModelConfig, seed: int) -> ElasticMoT:
    model = ElasticMoT(cfg)
    model.init_weights(seed)
    model.eval()
    return model
