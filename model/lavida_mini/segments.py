"""ONNX segment modules (docs/model-package.md), sharing the parameters of an ElasticMoT.

Each segment is an nn.Module whose forward takes and returns exactly the tensors of the contract.
`build_segments` returns them in manifest order with their tensor specs (symbolic dims "B", "T",
"I" are dynamic, -1 in the manifest).
"""
from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from typing import List, Optional, Tuple, Union

import torch
from torch import nn

from .model import Branch, ElasticMoT, Rotary, apply_rope, locality_bias, merge_partials, partial_attention
from .vq import PatchVQ

Dim = Union[int, str]


@dataclass(frozen=True)
class TensorSpec:
    name: str
    dtype: str                  # "float32" | "int64" | "uint8"
    shape: Tuple[Dim, ...]

    def manifest_shape(self) -> List[int]:
        return [d if isinstance(d, int) else -1 for d in self.shape]


@dataclass(frozen=True)
class Segment:
    name: str
    branch: str                 # "und" | "gen"
    module: nn.Module
    inputs: Tuple[TensorSpec, ...]
    outputs: Tuple[TensorSpec, ...]


class UndEmbed(nn.Module):
    def __init__(self, model: ElasticMoT) -> None:
        super().__init__()
        self.embed = model.text_embed

    def forward(self, text_ids: torch.Tensor) -> torch.Tensor:
        return self.embed(text_ids)


class GenEmbed(nn.Module):
    """Image ids [B, I] (whole grids in raster order) -> [B, I, d_g]; with the model's grid-cell table
    (`image_position_table`), token i also gets row i % (rows * cols), so a runtime only sends whole grids."""

    def __init__(self, model: ElasticMoT) -> None:
        super().__init__()
        self.embed = model.image_embed
        self.pos = model.image_pos
        self.cells = model.cfg.num_image_tokens

    def forward(self, image_ids: torch.Tensor) -> torch.Tensor:
        h = self.embed(image_ids)
        if self.pos is None:
            return h
        return h + self.pos[torch.arange(image_ids.shape[-1]) % self.cells]


class UndJointQKV(nn.Module):
    """Layer l, text side: pre-attention RMSNorm, Q/K/V, RoPE."""

    def __init__(self, model: ElasticMoT, layer: int) -> None:
        super().__init__()
        self.branch: Branch = model.layers[layer].und
        self.rotary: Rotary = model.rotary

    def forward(self, hidden: torch.Tensor, positions: torch.Tensor):
        cos, sin = self.rotary.cos_sin(positions)
        return self.branch.qkv(hidden, cos, sin)


class UndJointOut(nn.Module):
    """Layer l, text side: local partial over text keys, exact LSE merge with the image side's
    partial, O-projection, residual, FFN, residual."""

    def __init__(self, model: ElasticMoT, layer: int) -> None:
        super().__init__()
        self.branch: Branch = model.layers[layer].und

    def forward(self, hidden, q, k, v, remote_out, remote_lse):
        o1, m1 = partial_attention(q, k, v)
        attn = merge_partials(o1, m1, remote_out, remote_lse)
        return self.branch.finish(hidden, attn)


class GenJoint(nn.Module):
    """Layer l, image side: the whole joint layer for the image tokens, plus the text queries'
    partial attention over the image keys (text_out, text_lse)."""

    def __init__(self, model: ElasticMoT, layer: int) -> None:
        super().__init__()
        self.branch: Branch = model.layers[layer].gen
        self.rotary: Rotary = model.rotary
        self.grid_cols = model.cfg.grid_cols
        self.grid_tokens = model.cfg.num_image_tokens
        self.register_buffer("slopes", model.slopes.clone(), persistent=False)

    def forward(self, hidden, positions, text_q, text_k, text_v):
        cos, sin = self.rotary.cos_sin(positions)
        q, k, v = self.branch.qkv(hidden, cos, sin)
        bias_ii = locality_bias(hidden.shape[1], self.grid_cols, self.slopes, self.grid_tokens)      # [H, I, I]
        bias = torch.cat((torch.zeros_like(bias_ii[:, :, :1]).expand(-1, -1, text_k.shape[2]), bias_ii), dim=-1)
        attn, _ = partial_attention(q, torch.cat((text_k, k), dim=2), torch.cat((text_v, v), dim=2), bias)
        hidden_out = self.branch.finish(hidden, attn)
        text_out, text_lse = partial_attention(text_q, k, v)
        return hidden_out, text_out, text_lse


class GenTextPartial(nn.Module):
    """Layer l, image side: the text queries' partial attention over the image keys alone (text_out,
    text_lse), the same numbers as gen_joint_l's. A driver that reaches the text side in another
    process sends it first and runs gen_joint_l while the text side merges it and works on."""

    def __init__(self, model: ElasticMoT, layer: int) -> None:
        super().__init__()
        self.branch: Branch = model.layers[layer].gen
        self.rotary: Rotary = model.rotary

    def forward(self, hidden, positions, text_q):
        cos, sin = self.rotary.cos_sin(positions)
        h = self.branch.attn_norm(hidden)
        k = apply_rope(self.branch._heads(self.branch.wk(h)), cos, sin)
        v = self.branch._heads(self.branch.wv(h))
        return partial_attention(text_q, k, v)


class UndTail(nn.Module):
    """Split layers M..N-1 for the text side, final norm, text head."""

    def __init__(self, model: ElasticMoT) -> None:
        super().__init__()
        m = model.cfg.joint_layers
        self.branches = nn.ModuleList([layer.und for layer in model.layers[m:]])
        self.rotary: Rotary = model.rotary
        self.norm = model.und_norm
        self.head = model.text_head

    def forward(self, hidden: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        cos, sin = self.rotary.cos_sin(positions)
        for branch in self.branches:
            q, k, v = branch.qkv(hidden, cos, sin)
            attn, _ = partial_attention(q, k, v)
            hidden = branch.finish(hidden, attn)
        return self.head(self.norm(hidden))


class UndHead(nn.Module):
    """The text side's final norm and head (the end of a per-layer text tail)."""

    def __init__(self, model: ElasticMoT) -> None:
        super().__init__()
        self.norm = model.und_norm
        self.head = model.text_head

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        return self.head(self.norm(hidden))


class GenTail(nn.Module):
    """Split layers M..N-1 for the image side (locality bias kept), final norm, image head."""

    def __init__(self, model: ElasticMoT) -> None:
        super().__init__()
        m = model.cfg.joint_layers
        self.branches = nn.ModuleList([layer.gen for layer in model.layers[m:]])
        self.rotary: Rotary = model.rotary
        self.norm = model.gen_norm
        self.head = model.image_head
        self.grid_cols = model.cfg.grid_cols
        self.grid_tokens = model.cfg.num_image_tokens
        self.register_buffer("slopes", model.slopes.clone(), persistent=False)

    def forward(self, hidden: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        cos, sin = self.rotary.cos_sin(positions)
        bias = locality_bias(hidden.shape[1], self.grid_cols, self.slopes, self.grid_tokens)
        for branch in self.branches:
            q, k, v = branch.qkv(hidden, cos, sin)
            attn, _ = partial_attention(q, k, v, bias)
            hidden = branch.finish(hidden, attn)
        return self.head(self.norm(hidden))


class VQDecode(nn.Module):
    def __init__(self, vq: PatchVQ) -> None:
        super().__init__()
        self.vq = vq

    def forward(self, image_ids: torch.Tensor) -> torch.Tensor:
        return self.vq.decode(image_ids)


class VQEncode(nn.Module):
    def __init__(self, vq: PatchVQ) -> None:
        super().__init__()
        self.vq = vq

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.vq.encode(pixels)


class UndImageEmbed(nn.Module):
    """The text side's semantic image tokens: pixels -> VQ codes [B, I] -> semantic encoder -> [B, I, d_u]."""

    def __init__(self, encoder: nn.Module, semantic: nn.Module) -> None:
        super().__init__()
        self.encoder = encoder
        self.semantic = semantic

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.semantic(self.encoder(pixels).flatten(1))


def build_segments(model: ElasticMoT, vq: Optional[PatchVQ], *, decoder: Optional[nn.Module] = None,
                   encoder: Optional[nn.Module] = None,
                   semantic: Optional[nn.Module] = None, text_tail: str = "whole") -> "OrderedDict[str, Segment]":
    """Segments in manifest order. The image tokenizer is `vq` (PatchVQ) unless `decoder` / `encoder`
    modules (ids [B,rows,cols] <-> pixels [B,H,W,3]) are given. With `semantic` (image codes [B, I] ->
    [B, I, d_u], e.g. train.SemanticEncoder) an `und_image_embed` segment is added: pixels -> encoder ->
    semantic features, the understanding side's image tokens.

    text_tail "whole" exports the text side's split layers, norm and head as one `und_tail`;
    "layers" exports them per layer instead (`und_layer_qkv_l` / `und_layer_out_l` for l = M..N-1,
    of the same form as the joint layers' text pieces, then `und_head`), which lets a runtime keep
    a prompt's keys and values between decoding steps (prompt cache)."""
    cfg = model.cfg
    du, dg, H, D = cfg.und_hidden, cfg.gen_hidden, cfg.heads, cfg.head_dim
    V, K = model.text_vocab_size, cfg.codebook_size
    f32, i64, u8 = "float32", "int64", "uint8"

    def t(name, dtype, *shape):
        return TensorSpec(name, dtype, tuple(shape))

    text_hidden = t("hidden", f32, "B", "T", du)
    image_hidden = t("hidden", f32, "B", "I", dg)
    heads = lambda name: t(name, f32, "B", H, "T", D)  # noqa: E731
    lse = lambda name: t(name, f32, "B", H, "T")       # noqa: E731

    segs: "OrderedDict[str, Segment]" = OrderedDict()

    def add(name, branch, module, inputs, outputs):
        module.eval()
        segs[name] = Segment(name, branch, module, tuple(inputs), tuple(outputs))

    add("und_embed", "und", UndEmbed(model), [t("text_ids", i64, "B", "T")], [text_hidden])
    for l in range(cfg.joint_layers):
        add(f"und_joint_qkv_{l}", "und", UndJointQKV(model, l),
            [text_hidden, t("positions", i64, "T")], [heads("q"), heads("k"), heads("v")])
        add(f"und_joint_out_{l}", "und", UndJointOut(model, l),
            [text_hidden, heads("q"), heads("k"), heads("v"), heads("remote_out"), lse("remote_lse")],
            [t("hidden_out", f32, "B", "T", du)])
    if text_tail == "whole":
        add("und_tail", "und", UndTail(model), [text_hidden, t("positions", i64, "T")],
            [t("logits", f32, "B", "T", V)])
    elif text_tail == "layers":
        for l in range(cfg.joint_layers, cfg.num_layers):
            add(f"und_layer_qkv_{l}", "und", UndJointQKV(model, l),
                [text_hidden, t("positions", i64, "T")], [heads("q"), heads("k"), heads("v")])
            add(f"und_layer_out_{l}", "und", UndJointOut(model, l),
                [text_hidden, heads("q"), heads("k"), heads("v"), heads("remote_out"), lse("remote_lse")],
                [t("hidden_out", f32, "B", "T", du)])
        add("und_head", "und", UndHead(model), [text_hidden], [t("logits", f32, "B", "T", V)])
    else:
        raise ValueError(f"text_tail must be whole or layers, got {text_tail!r}")
    rows, cols, h, w, c = cfg.grid_rows, cfg.grid_cols, cfg.image_height, cfg.image_width, cfg.image_channels
    if semantic is not None:
        if encoder is None:
            raise ValueError("und_image_embed needs the encoder")
        add("und_image_embed", "und", UndImageEmbed(encoder, semantic), [t("pixels", u8, "B", h, w, c)],
            [t("hidden", f32, "B", cfg.num_image_tokens, du)])
    add("gen_embed", "gen", GenEmbed(model), [t("image_ids", i64, "B", "I")], [image_hidden])
    for l in range(cfg.joint_layers):
        add(f"gen_joint_{l}", "gen", GenJoint(model, l),
            [image_hidden, t("positions", i64, "I"), heads("text_q"), heads("text_k"), heads("text_v")],
            [t("hidden_out", f32, "B", "I", dg), heads("text_out"), lse("text_lse")])
    # Layers 0..M-2 only: the text side stops after M-1, whose partial nobody needs.
    for l in range(cfg.joint_layers - 1):
        add(f"gen_text_partial_{l}", "gen", GenTextPartial(model, l),
            [image_hidden, t("positions", i64, "I"), heads("text_q")], [heads("text_out"), lse("text_lse")])
    add("gen_tail", "gen", GenTail(model), [image_hidden, t("positions", i64, "I")],
        [t("logits", f32, "B", "I", K)])
    add("vq_decode", "gen", decoder if decoder is not None else VQDecode(vq),
        [t("image_ids", i64, "B", rows, cols)], [t("pixels", u8, "B", h, w, c)])
    add("vq_encode", "gen", encoder if encoder is not None else VQEncode(vq),
        [t("pixels", u8, "B", h, w, c)], [t("image_ids", i64, "B", rows, cols)])
    return segs


def text_tail(segs, hidden: torch.Tensor, positions: torch.Tensor, call=None) -> torch.Tensor:
    """The text side after the joint layers: `und_tail`, or the per-layer pieces (empty remote
    partial: these layers attend within the text side) and `und_head`. Returns the logits."""
    if call is None:
        def call(name, **inputs):
            seg = segs[name]
            out = seg.module(*[inputs[s.name] for s in seg.inputs])
            out = out if isinstance(out, tuple) else (out,)
            return {s.name: o for s, o in zip(seg.outputs, out)}
    if "und_tail" in segs:
        return call("und_tail", hidden=hidden, positions=positions)["logits"]
    layers = sorted(int(n.rsplit("_", 1)[1]) for n in segs if n.startswith("und_layer_qkv_"))
    for l in layers:
        qkv = call(f"und_layer_qkv_{l}", hidden=hidden, positions=positions)
        q = qkv["q"]
        hidden = call(f"und_layer_out_{l}", hidden=hidden, q=q, k=qkv["k"], v=qkv["v"], remote_out=torch.zeros_like(q),
                      remote_lse=torch.full(q.shape[:3], float("-inf")))["hidden_out"]
    return call("und_head", hidden=hidden)["logits"]


def run_split(segs, text_ids: torch.Tensor, image_ids: torch.Tensor, stop_text_early: bool = False,
              trace: dict | None = None):
    """The split protocol of docs/model-package.md, in one process.

    Returns (text_logits or None, image_logits). With stop_text_early the text side stops after
    und_joint_out of layer M-2 (elastic text-to-image) and no text logits are produced.
    If trace is a dict, every segment call's inputs and outputs are recorded in it by segment name.
    """
    def call(name, **inputs):
        seg = segs[name]
        out = seg.module(*[inputs[s.name] for s in seg.inputs])
        out = out if isinstance(out, tuple) else (out,)
        outputs = {s.name: o for s, o in zip(seg.outputs, out)}
        if trace is not None:
            trace[name] = (inputs, outputs)
        return outputs

    T, I = text_ids.shape[1], image_ids.shape[1]
    m = sum(1 for n in segs if n.startswith("gen_joint_"))
    pos_t = torch.arange(T)
    pos_i = torch.arange(T, T + I)
    h_t = call("und_embed", text_ids=text_ids)["hidden"]
    h_i = call("gen_embed", image_ids=image_ids)["hidden"]
    for l in range(m):
        qkv = call(f"und_joint_qkv_{l}", hidden=h_t, positions=pos_t)
        g = call(f"gen_joint_{l}", hidden=h_i, positions=pos_i,
                 text_q=qkv["q"], text_k=qkv["k"], text_v=qkv["v"])
        h_i = g["hidden_out"]
        if stop_text_early and l == m - 1:
            break
        h_t = call(f"und_joint_out_{l}", hidden=h_t, q=qkv["q"], k=qkv["k"], v=qkv["v"],
                   remote_out=g["text_out"], remote_lse=g["text_lse"])["hidden_out"]
    text_logits = None if stop_text_early else text_tail(segs, h_t, pos_t, call)
    image_logits = call("gen_tail", hidden=h_i, positions=pos_i)["logits"]
    return text_logits, image_logits
