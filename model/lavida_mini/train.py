"""Trains lavida-o-mini on prepared Shapes-world data (see prepare.py). Resumable.

    python3 -m lavida_mini.train --data PREPARED --out CKPT_DIR [--minutes 90] [--steps N] [--device cpu|cuda]

One masked cross-entropy over text and image tokens, a task drawn per batch:
  t2i           prompt (+ LUMINANCE micro-conditioning) -> image; prompt dropout 0.1 for guidance
  t2i_plan      prompt + layout plan -> image
  t2i_feedback  prompt + the critique of an earlier attempt (its image as semantic tokens) -> image
  exp           modality-aware masking: a fully masked image collapses into one [exp] text token
  plan          prompt -> layout boxes (coordinate tokens)
  und           image + question -> answer / description
  ground        image + referring expression -> box, 4 coordinate tokens decoded in parallel
  edit          instruction + VQ condition tokens (generation branch) -> edited image
  reflect       image + prompt -> verdict and reason
  plan_edit     image + instruction -> the edit's region as a layout item (the object it adds, removes or changes)
  edit_plan     instruction + that region + VQ condition tokens -> edited image (editing with a plan)
(plan_edit and edit_plan have weight 0 unless --task-weights gives them one: runs before them draw as they did.)
The text branch stops after the joint layers when only image tokens are predicted, and the image
branch is absent for text-only tasks (elastic activation).
"""
from __future__ import annotations

import argparse
import csv
import json
import math
import os
import signal
import time
from dataclasses import asdict, replace
from typing import Dict, List, Optional, Tuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .config import CONFIGS, ModelConfig
from .model import ElasticMoT, RMSNorm
from .tokenizer import LOC_BINS, WordTokenizer

TASKS: Dict[str, float] = {
    "t2i": 0.30, "t2i_plan": 0.10, "t2i_feedback": 0.05, "exp": 0.03, "plan": 0.10,
    "und": 0.14, "ground": 0.10, "edit": 0.10, "reflect": 0.08,
    # Editing with a plan (the published code's create_plan_edit): last and at 0 by default, so that a run without
    # them draws the same tasks and batches as before they existed.
    "plan_edit": 0.0, "edit_plan": 0.0,
}
IMAGE_TASKS = ("t2i", "t2i_plan", "t2i_feedback", "edit", "edit_plan")   # tasks whose targets are image tokens only
ANSWER_LEN = {"und": 24, "reflect": 16, "plan": 44, "plan_edit": 12}
BOX_SIDE = {"small": 12, "large": 20}   # shared/spec/shapes-world.md: an object's box side in pixels
LOC_PER_PX = 16                         # coordinate bins per pixel: bin = px / 64 * 1024


def parse_task_weights(spec: str) -> Dict[str, float]:
    """TASKS with the overrides of a --task-weights value (`und=0.25,ground=0.15`); ValueError for an unknown task."""
    weights = dict(TASKS)
    for item in filter(None, spec.split(",")):
        name, value = item.split("=")
        if name not in weights:
            raise ValueError(f"unknown task {name!r} (tasks: {', '.join(TASKS)})")
        weights[name] = float(value)
    return weights


def drawn_tasks(weights: Dict[str, float], scope: str, read_feedback: bool = False) -> Dict[str, float]:
    """The --task-weights a run under --train-scope draws: only the tasks that reach a trainable weight, the image
    tasks under gen, the text tasks under und-tail / und-read. und-read reaches t2i_feedback's prefix too (the
    earlier attempt goes through the semantic encoder) and draws it with --read-feedback."""
    if scope == "all":
        return dict(weights)
    image_side = scope == "gen"
    return {name: w for name, w in weights.items()
            if (name in IMAGE_TASKS) == image_side or (name == "t2i_feedback" and read_feedback and scope == "und-read")}


def box_cell_cover(bins: List[int], cfg: ModelConfig) -> np.ndarray:
    """[rows * cols] the share of each grid cell (raster order) inside the box of four coordinate bins (pixel =
    bin * side / (LOC_BINS - 1)): `--ground-align`'s per-cell target, which cells the expression names."""
    x1, y1, x2, y2 = (b * cfg.image_width / (LOC_BINS - 1) for b in bins)
    p = cfg.patch
    cols, rows = np.arange(cfg.grid_cols) * p, np.arange(cfg.grid_rows) * p
    wx = np.clip(np.minimum(cols + p, x2) - np.maximum(cols, x1), 0, p) / p
    wy = np.clip(np.minimum(rows + p, y2) - np.maximum(rows, y1), 0, p) / p
    return (wy[:, None] * wx[None, :]).reshape(-1).astype(np.float32)


def edit_region(scene: dict, target: dict) -> List[dict]:
    """The layout item(s) of an edit's region: the objects of the target scene that the source lacks (the added,
    changed or replacing object), else the source's objects that the target lacks (the removed one), as
    {colour, shape, box (pixels), bins}; the plan of an edit (`plan_edit`) and the condition of `edit_plan`."""
    def key(o):
        return (o["shape"], o["colour"], o["size"], o["x"], o["y"])
    before = {key(o) for o in scene["objects"]}
    after = {key(o) for o in target["objects"]}
    new = [o for o in target["objects"] if key(o) not in before]
    objs = new if new else [o for o in scene["objects"] if key(o) not in after]
    items = []
    for o in objs:
        side = BOX_SIDE[o["size"]]
        box = [o["x"], o["y"], o["x"] + side, o["y"] + side]
        items.append({"colour": o["colour"], "shape": o["shape"], "box": box, "bins": [v * LOC_PER_PX for v in box]})
    return items
PROMPT_DROPOUT = 0.1


class SemanticEncoder(nn.Module):
    """The text side's view of an image (the role SigLIP plays): label-patch codes -> d_u features."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.embed = nn.Embedding(cfg.codebook_size, cfg.und_hidden)
        self.pos = nn.Parameter(torch.zeros(cfg.num_image_tokens, cfg.und_hidden))
        self.norm = RMSNorm(cfg.und_hidden, cfg.norm_eps)
        self.proj = nn.Linear(cfg.und_hidden, cfg.und_hidden, bias=False)

    def forward(self, codes: torch.Tensor) -> torch.Tensor:
        return self.proj(self.norm(self.embed(codes) + self.pos))


def pattern_features(patterns: np.ndarray, levels: int, num_labels: int) -> torch.Tensor:
    """Label-codebook patterns [K - levels, P] -> one-hot label features [K, P * num_labels] of every code
    (the pure-background codes 0..levels-1 are all label 0)."""
    K, P = levels + len(patterns), patterns.shape[1]
    labels = np.zeros((K, P), dtype=np.int64)
    labels[levels:] = patterns
    return F.one_hot(torch.from_numpy(labels), num_labels).reshape(K, P * num_labels).to(torch.float32)


class PatternFactors(nn.Module):
    """Code embeddings and image-head rows shared through the codes' label patterns (a training-time
    parametrisation): every table row is its free row plus a linear map of the code's one-hot label
    pattern, so what is learned for one code carries to every code with similar pixels (rare boundary
    patterns above all), and copying an editing condition is one map for all codes. Zero-initialised:
    a model gains them with its function unchanged. `Mini.fold` writes them into the plain tables, so
    the exported package has the same segments and shapes with or without them."""

    def __init__(self, cfg: ModelConfig, features: torch.Tensor) -> None:
        super().__init__()
        n = features.shape[1]
        self.register_buffer("features", features, persistent=False)
        self.embed = nn.Parameter(torch.zeros(n, cfg.gen_hidden))     # image tokens (generation branch input)
        self.cond = nn.Parameter(torch.zeros(n, cfg.gen_hidden))      # editing condition tokens
        self.head = nn.Parameter(torch.zeros(n, cfg.gen_hidden))      # image head rows
        self.sem = nn.Parameter(torch.zeros(n, cfg.und_hidden))       # semantic encoder (text side)

    def image_rows(self, ids: torch.Tensor, K: int) -> torch.Tensor:
        """The pattern part of image_embed(ids): codes < K, [mask] = K (none), conditions K+1 .. 2K."""
        code = torch.where(ids > K, ids - K - 1, ids).clamp(max=K - 1)
        f = self.features[code]
        out = torch.where((ids < K)[..., None], f @ self.embed, f @ self.cond)
        return out * (ids != K)[..., None].to(out.dtype)


class Mini(nn.Module):
    """ElasticMoT plus the semantic encoder: everything that is trained."""

    def __init__(self, cfg: ModelConfig, vocab_size: int, features: Optional[torch.Tensor] = None,
                 tie_text_head: bool = False, gen_pos: bool = False) -> None:
        super().__init__()
        self.cfg = cfg
        self.core = ElasticMoT(cfg, text_vocab_size=vocab_size)
        self.sem = SemanticEncoder(cfg)
        for name, p in self.named_parameters():
            if p.dim() == 2:
                nn.init.normal_(p, std=0.02)
        nn.init.zeros_(self.sem.pos)
        # Absolute grid position of the generation branch's image tokens (train.py --gen-pos, an experiment; no
        # package has it): without it an image token's only position signal is RoPE's relative offsets and the
        # relative locality bias, so in the joint layers, where it reads the plan, it does not know its column
        # (runs/position-probe.py). Zero-initialised: a model gains it with its function unchanged.
        self.gen_pos = nn.Parameter(torch.zeros(cfg.num_image_tokens, cfg.gen_hidden)) if gen_pos else None
        self.factors = PatternFactors(cfg, features) if features is not None else None
        # Tied text head (train.py --tie-text-head, a training-time parametrisation like the pattern factors):
        # the head's row of a word is its free row plus the word's input embedding, so words the input side
        # tells apart start apart at the output. `fold` writes the sum into the plain head. It did not stop the
        # colour rows collapsing (the colour embeddings collapse with them; model/README.md), so it is off by default.
        self.tied = tie_text_head
        if tie_text_head:
            self.register_buffer("text_tie", torch.ones(()))

    def text_head(self, h: torch.Tensor) -> torch.Tensor:
        core = self.core
        if not self.tied:
            return core.text_head(h)
        return F.linear(h, core.text_head.weight + self.text_tie * core.text_embed.weight)

    def text_head_rows(self) -> torch.Tensor:
        """[V, d_u] the effective head rows (the free rows plus the tie)."""
        w = self.core.text_head.weight
        return w + self.text_tie * self.core.text_embed.weight if self.tied else w

    def image_embed(self, ids: torch.Tensor) -> torch.Tensor:
        h = self.core.embed_image(ids)
        if self.gen_pos is not None:  # ids are whole grids in raster order (an edit: the condition's, then the output's)
            h = h + self.gen_pos[torch.arange(ids.shape[-1], device=ids.device) % self.cfg.num_image_tokens]
        return h if self.factors is None else h + self.factors.image_rows(ids, self.cfg.codebook_size)

    def image_head(self, h: torch.Tensor) -> torch.Tensor:
        if self.factors is None:
            return self.core.image_head(h)
        return F.linear(h, self.core.image_head.weight + self.factors.features @ self.factors.head)

    def semantic(self, codes: torch.Tensor) -> torch.Tensor:
        if self.factors is None:
            return self.sem(codes)
        s = self.sem
        return s.proj(s.norm(s.embed(codes) + self.factors.features[codes] @ self.factors.sem + s.pos))

    @torch.no_grad()
    def sem_rows_to_patterns(self, levels: int) -> float:
        """`train.py --sem-pattern-rows`: the semantic encoder's rows of the patterned codes (>= levels) become a
        linear map of their label pattern alone. The factor is refitted by least squares to the current rows
        (free + factor), and those free rows are zeroed (the pure-background codes keep theirs: their patterns
        are all alike and only the free rows tell the grey levels apart). Returns the fit's relative residual
        (0: the same function). A rare code's own row is trained by its few examples only; a pattern map
        shares what is learned for one code's pixels with every code, which is what colour presence needs."""
        f, sem = self.factors, self.sem.embed.weight
        rows = sem + f.features @ f.sem                  # every code's effective row
        fit = torch.linalg.lstsq(f.features[levels:].double(), rows[levels:].double(),
                                 driver="gelsd").solution.to(rows.dtype)   # the features are rank-deficient (385 of 448)
        residual = float((f.features[levels:] @ fit - rows[levels:]).norm() / rows[levels:].norm())
        f.sem.copy_(fit)
        sem[levels:] = 0
        sem[:levels] = rows[:levels] - f.features[:levels] @ fit   # the background codes' rows stay what they were
        return residual

    def hold_sem_pattern_rows(self, levels: int) -> None:
        """Keeps the semantic encoder's free rows of the patterned codes (>= levels) where they are (zero after
        `sem_rows_to_patterns`): their gradient is zeroed, so those codes learn through the factor only."""
        self.sem.embed.weight.register_hook(lambda g: torch.cat([g[:levels], torch.zeros_like(g[levels:])]))

    @torch.no_grad()
    def fold(self) -> None:
        """Writes the pattern factors and the head tie into the plain tables and drops them (same function, plain model)."""
        if self.tied:
            self.core.text_head.weight += self.text_tie * self.core.text_embed.weight
            self.tied = False
            del self.text_tie
        if self.gen_pos is not None:   # the core's own grid-cell table (ElasticMoT.image_pos), which gen_embed adds
            if self.core.image_pos is not None:
                raise ValueError("the model has both train.py's gen_pos and a config image_position_table")
            self.core.image_pos = nn.Parameter(self.gen_pos.detach().clone())
            self.core.cfg = self.cfg = replace(self.core.cfg, image_position_table=True)
            self.gen_pos = None
        if self.factors is None:
            return
        f, K, core = self.factors, self.cfg.codebook_size, self.core
        core.image_embed.weight[:K] += f.features @ f.embed
        core.image_embed.weight[K + 1:] += f.features @ f.cond
        core.image_head.weight += f.features @ f.head
        self.sem.embed.weight += f.features @ f.sem
        self.factors = None


    def forward(self, text_ids, text_pad, prefix, image_ids, need_text: bool, tap: Optional[int] = None):
        """text_ids/text_pad [B,T]; prefix codes [B,64] or None; image_ids [B,I] or None.

        Returns text logits [B, P+T, V] (or None) and image logits [B, I, K] (or None); with `tap` = l also the
        understanding branch's hidden states [B, P+T, d_u] after layer l (train.py --ground-align reads them).
        """
        tapped = None
        m, cfg = self.core, self.cfg
        H, D = cfg.heads, cfg.head_dim
        ht = m.text_embed(text_ids)
        pad = text_pad
        if prefix is not None:
            ht = torch.cat((self.semantic(prefix), ht), 1)
            pad = torch.cat((torch.zeros(prefix.shape, dtype=torch.bool, device=pad.device), pad), 1)
        B, T = pad.shape
        I = 0 if image_ids is None else image_ids.shape[1]
        hi = self.image_embed(image_ids) if I else None
        S = T + I
        pos = torch.arange(S, device=ht.device)
        cos, sin = m.rotary.cos_sin(pos)
        key_pad = torch.zeros(B, S, dtype=torch.bool, device=ht.device)
        key_pad[:, :T] = pad
        neg = torch.finfo(ht.dtype).min
        pad_bias = torch.where(key_pad, neg, 0.0)[:, None, None, :]          # [B,1,1,S]
        img_bias = m._image_bias(I).to(ht.device) if I else None              # [H,I,I]

        def heads(x, w):
            return w(x).view(B, x.shape[1], H, D).transpose(1, 2)

        def rope(x, c, s):
            half = D // 2
            return x * c + torch.cat((-x[..., half:], x[..., :half]), -1) * s

        def attend(q, k, v, bias):
            scores = torch.matmul(q, k.transpose(-1, -2)) / math.sqrt(D) + bias
            return torch.matmul(torch.softmax(scores, -1), v)

        for l, layer in enumerate(m.layers):
            u, g = layer.und, layer.gen
            text_alive = need_text or l < cfg.joint_layers
            if layer.joint and I:
                nt, ni = u.attn_norm(ht), g.attn_norm(hi)
                q = rope(torch.cat((heads(nt, u.wq), heads(ni, g.wq)), 2), cos, sin)
                k = rope(torch.cat((heads(nt, u.wk), heads(ni, g.wk)), 2), cos, sin)
                v = torch.cat((heads(nt, u.wv), heads(ni, g.wv)), 2)
                bias = pad_bias.expand(B, H, S, S).clone()
                bias[:, :, T:, T:] += img_bias
                out = attend(q, k, v, bias)
                ht = u.finish(ht, out[:, :, :T])
                hi = g.finish(hi, out[:, :, T:])
                if l == tap:
                    tapped = ht
                continue
            if text_alive:
                nt = u.attn_norm(ht)
                c, s = cos[:T], sin[:T]
                out = attend(rope(heads(nt, u.wq), c, s), rope(heads(nt, u.wk), c, s), heads(nt, u.wv), pad_bias[..., :T])
                ht = u.finish(ht, out)
            if I:
                ni = g.attn_norm(hi)
                c, s = cos[T:], sin[T:]
                out = attend(rope(heads(ni, g.wq), c, s), rope(heads(ni, g.wk), c, s), heads(ni, g.wv), img_bias)
                hi = g.finish(hi, out)
            if l == tap:
                tapped = ht
        text_logits = self.text_head(m.und_norm(ht)) if need_text else None
        image_logits = self.image_head(m.gen_norm(hi)) if I else None
        return (text_logits, image_logits) if tap is None else (text_logits, image_logits, tapped)


def tail_parameters(model: "Mini") -> List[nn.Parameter]:
    """The understanding branch after the joint layers, its final norm and the text head: the weights that no
    image output depends on (the generation branch reads the text side only in layers 0..M-1)."""
    core = model.core
    params: List[nn.Parameter] = []
    for layer in core.layers[model.cfg.joint_layers:]:
        params += list(layer.und.parameters())
    return params + list(core.und_norm.parameters()) + list(core.text_head.parameters())


def read_parameters(model: "Mini") -> List[nn.Parameter]:
    """`tail_parameters` plus the semantic encoder (`--train-scope und-read`): everything between an image's
    codes and the text answers that no prompt-only image depends on. Text-to-image with or without a plan
    and editing never read the semantic encoder; only `t2i_feedback` does (its earlier attempt is a
    semantic prefix), so those images change and the others stay bit for bit the same."""
    factors = [] if model.factors is None else [model.factors.sem]   # --pattern-factors: only the semantic map
    return tail_parameters(model) + list(model.sem.parameters()) + factors


def gen_parameters(model: "Mini") -> List[nn.Parameter]:
    """The generation branch of every layer, the image embeddings, its final norm and the image head
    (`--train-scope gen`; with --pattern-factors their image-token, condition and head maps too, since a code's
    free embedding row need not say which colours it holds): the weights no text output depends on. The text
    tasks run with no generation-branch token in the sequence (an image reaches the text side as a semantic
    prefix), so plans, answers, grounding and verdicts stay bit for bit the same; only images (text-to-image
    with or without a plan or critique, edits) change."""
    core = model.core
    params: List[nn.Parameter] = [] if model.gen_pos is None else [model.gen_pos]
    for layer in core.layers:
        params += list(layer.gen.parameters())
    if model.factors is not None:  # --pattern-factors: the image-token, condition and head maps, not the semantic one
        params += [model.factors.embed, model.factors.cond, model.factors.head]
    return params + list(core.image_embed.parameters()) + list(core.gen_norm.parameters()) + list(core.image_head.parameters())


SCOPE_PARAMETERS = {"und-tail": tail_parameters, "und-read": read_parameters, "gen": gen_parameters}   # --train-scope


def load_mini(state: dict, cfg: ModelConfig, vocab_size: int) -> "Mini":
    """A checkpoint's model as a plain Mini: pattern factors (train.py --pattern-factors) are folded in."""
    weights = state["model"]
    features = None
    if any(k.startswith("factors.") for k in weights):
        from .labelvq import LEVELS, NUM_LABELS
        features = pattern_features(np.asarray(state["patterns"]), LEVELS, NUM_LABELS)
    mini = Mini(cfg, vocab_size, features, tie_text_head="text_tie" in weights, gen_pos="gen_pos" in weights)
    mini.load_state_dict(weights)
    mini.fold()
    return mini


def _centre(item: dict) -> Tuple[float, float]:
    x1, y1, x2, y2 = item["box"]
    return (x1 + x2) / 2, (y1 + y2) / 2


def _in_relation(a: dict, b: dict, relation: str) -> bool:
    """The world's `inRelation` (libs/world/src/scene.ts) on layout boxes: dx = cx_B - cx_A, dy = cy_B - cy_A."""
    (ax, ay), (bx, by) = _centre(a), _centre(b)
    dx, dy = bx - ax, by - ay
    return {"left of": dx > 4 and dx > abs(dy), "right of": -dx > 4 and -dx > abs(dy),
            "above": dy > 4 and dy > abs(dx), "below": -dy > 4 and -dy > abs(dx)}[relation]


def prompt_first(spec: dict, layout: List[dict]) -> List[dict]:
    """The layout with the objects the prompt names first, in the prompt's order (a pair in the relation for
    position prompts, every object of the counted shape for counting), then the others in reading order."""
    picked = prompt_named(spec, layout)
    return [layout[i] for i in picked] + [it for i, it in enumerate(layout) if i not in picked]


def prompt_named(spec: dict, layout: List[dict]) -> List[int]:
    """Indices of the layout items the prompt names, in the prompt's order (see prompt_first)."""
    def first(shape, colour=None, taken=()):
        return next((i for i, it in enumerate(layout) if i not in taken and it["shape"] == shape
                     and (colour is None or it["colour"] == colour)), None)
    cat, picked = spec["category"], []
    if cat in ("single_object", "colors"):
        picked = [first(spec["shape"], spec.get("colour"))]
    elif cat == "two_object":
        picked = [first(spec["shapes"][0])]
        picked.append(first(spec["shapes"][1], taken=picked))
    elif cat == "color_attr":
        for o in spec["objects"]:
            picked.append(first(o["shape"], o["colour"], taken=picked))
    elif cat == "counting":
        picked = [i for i, it in enumerate(layout) if it["shape"] == spec["shape"]]
    elif cat == "position":
        a, b = spec["shapes"]
        picked = next(([i, j] for i, x in enumerate(layout) for j, y in enumerate(layout) if i != j
                       and x["shape"] == a and y["shape"] == b and _in_relation(x, y, spec["relation"])), [])
    else:
        raise ValueError(f"prompt_first: unknown category {cat!r}")
    return [i for i in picked if i is not None]


def named_colours(spec: dict) -> set:
    """The (shape, colour) pairs whose colour a prompt names (colors, color_attr); other prompts name none."""
    if spec["category"] == "colors":
        return {(spec["shape"], spec["colour"])}
    if spec["category"] == "color_attr":
        return {(o["shape"], o["colour"]) for o in spec["objects"]}
    return set()


class Data:
    """Prepared data: samples, image tokens, vocabulary; builds one task's batch."""

    def __init__(self, folder: str) -> None:
        self.tokens = np.load(os.path.join(folder, "tokens.npy")).astype(np.int64)
        with open(os.path.join(folder, "samples.jsonl")) as f:
            self.samples = [json.loads(line) for line in f]
        self.vocab = json.load(open(os.path.join(folder, "vocab.json")))
        self.tok = WordTokenizer(self.vocab)
        self.sp = self.tok.special_tokens
        self.edit_dropout = 0.0
        self.edit_token_weight = 1.0  # loss weight of an edit's changed tokens (target code != source code)
        self.ground_mask_all = 0.0  # share of grounding examples with all 4 coordinates masked (the 1-step case)
        self.ground_align = False   # grounding batches carry box_cell_cover targets (--ground-align)
        self.plan_colours = "all"   # "named": a plan item's colour is a target only where the prompt names it
        self.own: Optional[List[dict]] = None       # own.py records: the model's own images, labelled
        self.own_tokens: Optional[np.ndarray] = None
        self.own_failures: List[int] = []
        self.own_rights: List[int] = []
        self.own_share = 0.0
        self.own_right_share: Optional[float] = None  # reflect: chance of a right own image (None: as they come)
        self.feedback = [i for i, r in enumerate(self.samples) if not r["reflection"]["matches"] and r["reflection"]["perturbation"] != "blob"]
        self.und_pools: Optional[Tuple[List[np.ndarray], np.ndarray]] = None   # set_und_kinds

    def set_und_kinds(self, factors: Dict[str, float]) -> Dict[str, float]:
        """`und` examples drawn by question kind: each kind's natural share times its factor (others 1),
        renormalised. Returns the resulting shares."""
        pools: Dict[str, List[int]] = {}
        for i, r in enumerate(self.samples):
            pools.setdefault(r["question"]["kind"], []).append(i)
        for kind in factors:
            if kind not in pools:
                raise SystemExit(f"--und-kinds: unknown question kind {kind!r} (kinds: {', '.join(sorted(pools))})")
        kinds = sorted(pools)
        share = np.array([len(pools[k]) * factors.get(k, 1.0) for k in kinds], dtype=np.float64)
        share /= share.sum()
        self.und_pools = ([np.array(pools[k]) for k in kinds], share)
        return {k: round(float(v), 4) for k, v in zip(kinds, share)}

    def load_own(self, folder: str, share: float, right_share: Optional[float] = None) -> None:
        """The model's own images (own.py) for `reflect` and `t2i_feedback`, drawn for `share` of those examples;
        with `right_share`, reflect draws a right one with that chance."""
        self.own_tokens = np.load(os.path.join(folder, "tokens.npy")).astype(np.int64)
        with open(os.path.join(folder, "samples.jsonl")) as f:
            self.own = [json.loads(line) for line in f]
        if len(self.own) != len(self.own_tokens):
            raise ValueError(f"{folder}: {len(self.own)} records, {len(self.own_tokens)} images")
        self.own_failures = [i for i, r in enumerate(self.own) if r["verdict"] != "correct"]
        self.own_rights = [i for i, r in enumerate(self.own) if r["verdict"] == "correct"]
        self.own_share = share
        self.own_right_share = right_share

    def enc(self, text: str) -> List[int]:
        return self.tok.encode(text)

    def order_plans_prompt_first(self) -> None:
        """Every sample's plan target (plan, t2i_plan) with the prompt's objects first (train.py --plan-order);
        the prepared layouts are in the scene's reading order."""
        for r in self.samples:
            r["plan"]["layout"] = prompt_first(r["t2i"]["spec"], r["plan"]["layout"])

    def layout(self, items, free_colours: Optional[List[int]] = None) -> List[int]:
        """Plan ids of layout items; with a `free_colours` list, the positions of the items' colour tokens are
        appended to it (the colour is the first token after <box>)."""
        ids: List[int] = []
        for it in items:
            if free_colours is not None:
                free_colours.append(len(ids) + 1)
            ids += [self.sp["box_begin"], *self.enc(f"{it['colour']} {it['shape']}"), self.sp["box_end"], self.sp["loc_begin"]]
            ids += [self.tok.loc_id(b) for b in it["bins"]] + [self.sp["loc_end"]]
        return ids

    def answer(self, ids: List[int], length: int) -> List[int]:
        ids = ids[: length - 1] + [self.sp["eos"]]
        return ids + [self.sp["eos"]] * (length - len(ids))

    def example(self, task: str, r: dict, rng: np.random.Generator):
        """(text ids, text targets (-100 = none), prefix codes or None, image ids or None, image targets or None)."""
        mask = self.sp["mask"]
        K = None
        img = self.tokens

        def masked(target: List[int], all_share: float = 0.0) -> Tuple[List[int], List[int]]:
            if all_share and rng.uniform() < all_share:
                return [mask] * len(target), list(target)
            t = rng.uniform(0.0, 1.0)
            m = rng.uniform(size=len(target)) < t
            if not m.any():
                m[rng.integers(len(target))] = True
            return [mask if mi else x for x, mi in zip(target, m)], [x if mi else -100 for x, mi in zip(target, m)]

        def image_target(index: int):
            target = img[index].tolist()
            ids, tgt = masked(target)
            return [self.mask_image if v == mask else v for v in ids], tgt

        def none(n):
            return [-100] * n

        if task in ("reflect", "t2i_feedback") and self.own is not None and rng.uniform() < self.own_share:
            # The model's own image: judge it (reflect), or regenerate the sample's image from it with its critique.
            if task == "t2i_feedback":
                j = int(rng.choice(self.own_failures))
            elif self.own_right_share is not None and self.own_rights and self.own_failures:
                pool = self.own_rights if rng.uniform() < self.own_right_share else self.own_failures
                j = int(rng.choice(pool))
            else:
                j = int(rng.integers(len(self.own)))
            own = self.own[j]
            if task == "reflect":
                head = self.enc("evaluate : " + own["prompt"])
                ids, tgt = masked(self.answer(self.enc(own["verdict"]), ANSWER_LEN["reflect"]))
                return head + ids, none(len(head)) + tgt, self.own_tokens[j], None, None
            r = self.samples[own["sample"]]
            text = self.enc(r["t2i"]["text"] + " feedback : " + own["verdict"])
            if rng.uniform() < PROMPT_DROPOUT:
                text = [mask] * len(text)
            ids, tgt = image_target(r["image"] + r["_base"])
            return text, none(len(text)), self.own_tokens[j], ids, tgt
        if task in ("t2i", "t2i_plan", "t2i_feedback"):
            text = self.enc(r["t2i"]["text"])
            prefix = None
            if task == "t2i_plan":
                text += self.enc(" plan :") + self.layout(r["plan"]["layout"])
            if task == "t2i_feedback":
                text += self.enc(" feedback : " + r["reflection"]["text"])
                prefix = img[r["reflection"]["image"] + r["_base"]]
            if rng.uniform() < PROMPT_DROPOUT:
                text = [mask] * len(text)
            ids, tgt = image_target(r["image"] + r["_base"])
            return text, none(len(text)), prefix, ids, tgt
        if task == "exp":
            text = self.enc(r["t2i"]["text"]) + [mask]
            return text, none(len(text) - 1) + [self.sp["exp"]], None, None, None
        if task == "plan":
            head = self.enc("plan : " + r["plan"]["prompt"])
            layout = r["plan"]["layout"]
            colour_at: List[int] = []
            ids, tgt = masked(self.answer(self.layout(layout, colour_at), ANSWER_LEN["plan"]))
            if self.plan_colours == "named":  # a colour the prompt leaves open is no target (it is a coin toss)
                named = named_colours(r["t2i"]["spec"])
                for it, at in zip(layout, colour_at):
                    if (it["shape"], it["colour"]) not in named and at < len(tgt):
                        tgt[at] = -100
            return head + ids, none(len(head)) + tgt, None, None, None
        if task == "und":
            head = self.enc("question : " + r["question"]["text"])
            ids, tgt = masked(self.answer(self.enc(r["question"]["answer"]), ANSWER_LEN["und"]))
            return head + ids, none(len(head)) + tgt, img[r["image"] + r["_base"]], None, None
        if task == "ground":
            head = self.enc("locate : " + r["grounding"]["ref"]) + [self.sp["loc_begin"]]
            ids, tgt = masked([self.tok.loc_id(b) for b in r["grounding"]["bins"]], self.ground_mask_all)
            text = head + ids + [self.sp["loc_end"]]
            return text, none(len(head)) + tgt + [-100], img[r["image"] + r["_base"]], None, None
        if task == "reflect":
            head = self.enc("evaluate : " + r["reflection"]["prompt"])
            ids, tgt = masked(self.answer(self.enc(r["reflection"]["text"]), ANSWER_LEN["reflect"]))
            return head + ids, none(len(head)) + tgt, img[r["reflection"]["image"] + r["_base"]], None, None
        if task == "plan_edit":
            head = self.enc("edit plan : " + r["edit"]["text"])
            ids, tgt = masked(self.answer(self.layout(edit_region(r["scene"], r["edit"]["target_scene"])), ANSWER_LEN["plan_edit"]))
            return head + ids, none(len(head)) + tgt, img[r["image"] + r["_base"]], None, None
        if task in ("edit", "edit_plan"):
            text = self.enc("edit : " + r["edit"]["text"])
            if task == "edit_plan":
                text += self.enc(" plan :") + self.layout(edit_region(r["scene"], r["edit"]["target_scene"]))
            if self.edit_dropout and rng.uniform() < self.edit_dropout:  # trains the text-unconditional row of edit guidance
                text = [mask] * len(text)
            cond = (img[r["image"] + r["_base"]] + self.cond_offset).tolist()
            ids, tgt = image_target(r["edit"]["target_image"] + r["_base"])
            return text, none(len(text)), None, cond + ids, none(len(cond)) + tgt
        raise ValueError(task)

    def bind(self, cfg: ModelConfig) -> None:
        self.cfg = cfg
        self.mask_image = cfg.mask_id
        self.cond_offset = cfg.condition_offset
        # Image indices in the shard's records are global indices into images.u8 (tokens.npy).
        for r in self.samples:
            r["_base"] = 0
        top = max(max(r["image"], r["edit"]["target_image"], r["reflection"]["image"]) for r in self.samples)
        if top >= len(self.tokens):
            raise ValueError(f"samples index image {top}, tokens.npy has {len(self.tokens)}")

    def batch(self, task: str, size: int, rng: np.random.Generator, device: str):
        pool = self.feedback if task == "t2i_feedback" else None
        rows, records = [], []
        for _ in range(size):
            if task == "und" and self.und_pools is not None:
                kind_pools, share = self.und_pools
                kind_pool = kind_pools[int(rng.choice(len(share), p=share))]
                i = int(kind_pool[int(rng.integers(len(kind_pool)))])
            else:
                i = int(rng.choice(pool)) if pool else int(rng.integers(len(self.samples)))
            rows.append(self.example(task, self.samples[i], rng))
            records.append(self.samples[i])
        T = max(len(r[0]) for r in rows)
        pad = self.sp["pad"]
        text = torch.tensor([r[0] + [pad] * (T - len(r[0])) for r in rows])
        text_tgt = torch.tensor([r[1] + [-100] * (T - len(r[1])) for r in rows])
        text_pad = torch.tensor([[False] * len(r[0]) + [True] * (T - len(r[0])) for r in rows])
        prefix = torch.tensor(np.stack([r[2] for r in rows])) if rows[0][2] is not None else None
        image = torch.tensor([r[3] for r in rows]) if rows[0][3] is not None else None
        image_tgt = torch.tensor([r[4] for r in rows]) if rows[0][4] is not None else None
        if prefix is not None:
            text_tgt = torch.cat((torch.full(prefix.shape, -100), text_tgt), 1)
        to = lambda t: None if t is None else t.to(device)
        out = (to(text), to(text_tgt), to(text_pad), to(prefix), to(image), to(image_tgt))
        if task in ("edit", "edit_plan") and self.edit_token_weight != 1.0:
            return out + (to(self.edited_weights(image, image_tgt)),)
        if task == "ground" and self.ground_align:   # 7th: no edit weights; 8th: the cells the expression names
            cover = np.stack([box_cell_cover(r["grounding"]["bins"], self.cfg) for r in records])
            return out + (None, to(torch.from_numpy(cover)))
        return out

    def edited_weights(self, image: torch.Tensor, image_tgt: torch.Tensor) -> torch.Tensor:
        """Per-token loss weights of an edit batch (condition grid, then output grid): edit_token_weight where
        the output's target code differs from the source's code at the same cell (the published code's 5x on
        edited pixels, `llava_llada.py:448-456`), 1 elsewhere; the condition half has no targets."""
        n = image.shape[1] // 2
        source = image[:, :n] - self.cond_offset
        edited = (image_tgt[:, n:] != -100) & (image_tgt[:, n:] != source)
        w = torch.ones(image_tgt.shape, dtype=torch.float32)
        w[:, n:][edited] = self.edit_token_weight
        return w


class GroundAlign(nn.Module):
    """`train.py --ground-align`: a training-time head (never exported) on the understanding branch's image rows
    after one layer, asked for each grid cell whether it lies in the box the expression names (box_cell_cover).
    Grounding in one step needs two lookups at once: the coordinate slot must carry the expression's words to the
    image and find the object that matches them. This loss asks each cell the first question on its own ("does the
    expression name me?"), so the match between a cell's colour and the words gets a gradient of its own, as the
    word-region alignment losses of MDETR and GLIP do."""

    def __init__(self, cfg: ModelConfig, layer: int) -> None:
        super().__init__()
        self.layer = layer
        self.cells = cfg.num_image_tokens
        self.norm = RMSNorm(cfg.und_hidden, cfg.norm_eps)
        self.head = nn.Linear(cfg.und_hidden, 1)

    def loss(self, tapped: torch.Tensor, cover: torch.Tensor) -> torch.Tensor:
        logits = self.head(self.norm(tapped[:, :self.cells])).squeeze(-1)
        return F.binary_cross_entropy_with_logits(logits, cover)


def loss_of(model: Mini, batch, need_text: bool, eos: Optional[int] = None, eos_weight: float = 1.0,
            align: Optional[GroundAlign] = None, align_weight: float = 0.0, align_only: bool = False):
    """Mean cross-entropy over the masked tokens. With eos_weight != 1, text targets equal to `eos`
    (the padding of an answer slot) count eos_weight each, so a one-word answer is not drowned by its
    23 [eos] slots; the accuracy stays the plain share of masked tokens right. An edit batch with a 7th element
    (Data.edited_weights) weights its image tokens the same way. A grounding batch with an 8th (box_cell_cover)
    and `align` adds align_weight times GroundAlign's loss and returns it as a third value; with align_only the
    loss is that term alone (the coordinates' cross-entropy is left out: a curriculum's first phase)."""
    text, text_tgt, text_pad, prefix, image, image_tgt = batch[:6]
    image_w = batch[6] if len(batch) > 6 else None   # Data.edited_weights (--edit-token-weight)
    cover = batch[7] if len(batch) > 7 and align is not None else None
    if cover is not None:
        tl, il, tapped = model(text, text_pad, prefix, image, need_text, tap=align.layer)
    else:
        tl, il = model(text, text_pad, prefix, image, need_text)
    logits, targets = [], []
    if need_text:
        logits.append(tl.reshape(-1, tl.shape[-1])); targets.append(text_tgt.reshape(-1))
    if il is not None:
        logits.append(il.reshape(-1, il.shape[-1])); targets.append(image_tgt.reshape(-1))
    # Text and image vocabularies differ: one cross-entropy each, summed over all masked tokens.
    total, weight, count, correct = 0.0, 0.0, 0, 0
    for i, (lg, tg) in enumerate(zip(logits, targets)):
        keep = tg != -100
        if keep.any():
            w = None   # per-token weights of the kept targets: the text's [eos], or an edit's changed cells
            if need_text and i == 0 and eos is not None and eos_weight != 1.0:
                w = torch.where(tg[keep] == eos, eos_weight, 1.0)
            elif image_w is not None and i == len(logits) - 1:
                w = image_w.reshape(-1)[keep]
            if w is not None:
                total = total + (F.cross_entropy(lg[keep], tg[keep], reduction="none") * w).sum()
                weight += float(w.sum())
            else:  # the original reduction, bit for bit
                total = total + F.cross_entropy(lg[keep], tg[keep], reduction="sum")
                weight += int(keep.sum())
            count += int(keep.sum())
            correct += int((lg[keep].argmax(-1) == tg[keep]).sum())
    if cover is not None:
        aux = align.loss(tapped, cover)
        main = 0.0 if align_only else total / max(weight, 1e-9)
        return main + align_weight * aux, correct / max(count, 1), aux
    return total / max(weight, 1e-9), correct / max(count, 1)


def lr_at(step: int, args, warm_from: int) -> float:
    """Linear warm-up from warm_from, constant, then (optionally) cosine decay by global step."""
    lr = args.lr
    if args.decay_from is not None and args.decay_to is not None and step >= args.decay_from:
        frac = min(1.0, (step - args.decay_from) / max(1, args.decay_to - args.decay_from))
        lr = args.lr_end + 0.5 * (args.lr - args.lr_end) * (1.0 + math.cos(math.pi * frac))
    return lr * min(1.0, (step + 1 - warm_from) / args.warmup)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--config", default="mini")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--warmup", type=int, default=200)
    ap.add_argument("--decay-from", type=int, default=None,
                    help="global step where a cosine decay of the lr starts (default: none, constant lr)")
    ap.add_argument("--decay-to", type=int, default=None, help="global step where the cosine decay reaches --lr-end")
    ap.add_argument("--lr-end", type=float, default=1e-4)
    ap.add_argument("--steps", type=int, default=10**9, help="stop at this global step")
    ap.add_argument("--minutes", type=float, default=110.0, help="stop after this much wall time (this run)")
    ap.add_argument("--checkpoint-minutes", type=float, default=10.0)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--task-weights", default="",
                    help="override task sampling weights, e.g. und=0.25,ground=0.15 (the others keep theirs; renormalised)")
    ap.add_argument("--eos-weight", type=float, default=1.0,
                    help="loss weight of text targets that are an answer slot's [eos] padding (1: plain mean)")
    ap.add_argument("--eos-weight-tasks", default="",
                    help="the tasks --eos-weight applies to, e.g. und,reflect (default: every text task). A plan "
                         "must learn where it ends: with its [eos] down-weighted, plans run to their 44-token limit")
    ap.add_argument("--pattern-factors", action="store_true",
                    help="share code embeddings and image-head rows through the codes' label patterns (PatternFactors; "
                         "a checkpoint without them gains them zero-initialised)")
    ap.add_argument("--ground-mask-all", type=float, default=0.0,
                    help="share of grounding examples with all 4 coordinates masked, the one-step decoding case, "
                         "where the box must come from reading which object the expression names (model/README)")
    ap.add_argument("--ground-align", type=float, default=0.0,
                    help="weight of an auxiliary loss on grounding batches: each image cell of the understanding branch, "
                         "after --ground-align-layer, predicts whether it lies in the named box (GroundAlign; a "
                         "training-time head, kept in the checkpoint as 'ground_align', never exported)")
    ap.add_argument("--ground-align-only", action="store_true",
                    help="with --ground-align: grounding batches train the alignment alone, without the coordinates' "
                         "cross-entropy (a first phase: the cells learn which object is named before the slots read them)")
    ap.add_argument("--ground-align-layer", type=int, default=3,
                    help="the layer after which --ground-align reads the image cells (0-based)")
    ap.add_argument("--edit-dropout", type=float, default=0.0,
                    help="share of edit examples whose instruction is masked (trains the unconditional row of edit guidance)")
    ap.add_argument("--edit-token-weight", type=float, default=1.0,
                    help="loss weight of an edit's changed tokens (target code != source code at that cell; the published "
                         "code uses 5): the few cells an edit changes are otherwise outweighed by the copied ones")
    ap.add_argument("--own", default=None, help="own.py folder: the model's own images for reflect and t2i_feedback")
    ap.add_argument("--own-share", type=float, default=0.5, help="share of reflect / t2i_feedback examples drawn from --own")
    ap.add_argument("--own-right-share", type=float, default=None,
                    help="reflect on --own images: draw a right one with this chance (default: as they come)")
    ap.add_argument("--factor-lr-scale", type=float, default=1.0, help="lr multiplier of the pattern factors")
    ap.add_argument("--gen-pos", action="store_true",
                    help="an absolute grid-position embedding on the generation branch's image tokens (Mini.gen_pos; a "
                         "checkpoint without it gains it zero-initialised). An experiment: export refuses it")
    ap.add_argument("--gen-pos-lr-scale", type=float, default=1.0, help="lr multiplier of --gen-pos")
    ap.add_argument("--sem-pattern-rows", action="store_true",
                    help="with --pattern-factors: the semantic encoder reads a patterned code through its label pattern only "
                         "(its free row is refitted into the semantic factor once, then held at zero)")
    ap.add_argument("--train-scope", choices=["all", "und-tail", "und-read", "gen"], default="all",
                    help="und-tail: train only the understanding branch after the joint layers, its final norm and the "
                         "text head; everything the image side reads (embeddings, semantic encoder, joint layers, "
                         "generation branch) stays fixed, so generated images are unchanged; only the text tasks are drawn. "
                         "und-read: the same plus the semantic encoder (only t2i_feedback images, which read an earlier "
                         "attempt through it, change). gen: only the generation branch, image embeddings and image head "
                         "(with --pattern-factors their pattern maps too); only the image tasks are drawn and every text "
                         "output stays the same")
    ap.add_argument("--read-feedback", action="store_true",
                    help="with --train-scope und-read: draw t2i_feedback too (at its --task-weights share). Its loss reaches "
                         "the semantic encoder only (the generation branch stays fixed), so the earlier attempt's prefix "
                         "keeps meaning to the image side what it meant when that side was trained")
    ap.add_argument("--plan-colours", choices=["all", "named"], default="all",
                    help="plan targets: every item's colour, or only the colours the prompt names (the others are "
                         "random in the data, and as targets they teach the text head that colours are unpredictable)")
    ap.add_argument("--und-kinds", default="",
                    help="understanding examples by question kind: natural share times a factor, e.g. colour_of=3 "
                         "(the others 1; renormalised)")
    ap.add_argument("--tie-text-head", action="store_true",
                    help="text head rows = free rows + the words' input embeddings (folded at export; a checkpoint "
                         "without the tie gains it with its function unchanged)")
    ap.add_argument("--plan-order", choices=["scene", "prompt-first"], default="scene",
                    help="plan targets (plan, t2i_plan): the scene's layout in reading order, or the prompt's objects first")
    args = ap.parse_args(argv)

    torch.set_num_threads(args.threads)
    data = Data(args.data)
    codebook = np.load(os.path.join(args.data, "codebook.npz"))
    book_size = 57 + len(codebook["patterns"])
    cfg = replace(CONFIGS[args.config], codebook_size=book_size)
    data.bind(cfg)
    data.edit_dropout = args.edit_dropout
    data.edit_token_weight = args.edit_token_weight
    data.ground_mask_all = args.ground_mask_all
    data.ground_align = args.ground_align > 0
    data.plan_colours = args.plan_colours
    if args.und_kinds:
        shares = data.set_und_kinds({k: float(v) for k, v in (item.split("=") for item in args.und_kinds.split(","))})
        print(json.dumps({"und_kinds": shares}), flush=True)
    if args.plan_order == "prompt-first":
        data.order_plans_prompt_first()
    if args.own:
        data.load_own(args.own, args.own_share, args.own_right_share)
    os.makedirs(args.out, exist_ok=True)
    ckpt_path = os.path.join(args.out, "checkpoint.pt")

    torch.manual_seed(args.seed)
    features = None
    if args.pattern_factors:
        from .labelvq import LEVELS, NUM_LABELS
        features = pattern_features(codebook["patterns"], LEVELS, NUM_LABELS)
    state = torch.load(ckpt_path, map_location=args.device, weights_only=False) if os.path.exists(ckpt_path) else None
    tie = args.tie_text_head or (state is not None and "text_tie" in state["model"])  # a tie, once there, stays
    gen_pos = args.gen_pos or (state is not None and "gen_pos" in state["model"])  # once there, it stays
    model = Mini(cfg, len(data.vocab), features, tie_text_head=tie, gen_pos=gen_pos).to(args.device)
    factor_params = [] if model.factors is None else list(model.factors.parameters())
    ids = {id(p) for p in factor_params}
    if args.train_scope in ("und-tail", "und-read") and (tie or (factor_params and args.train_scope == "und-tail")):
        raise SystemExit(f"--train-scope {args.train_scope} trains no tied head{'' if args.train_scope == 'und-read' else ' and no pattern factors'}: "
                         "drop --tie-text-head / --pattern-factors")
    if args.train_scope == "gen" and args.sem_pattern_rows:  # it refits the semantic rows: text outputs would move
        raise SystemExit("--train-scope gen leaves the text side as it is: drop --sem-pattern-rows")
    if args.train_scope != "all":
        keep = {id(p) for p in SCOPE_PARAMETERS[args.train_scope](model)}
        for p in model.parameters():
            p.requires_grad_(id(p) in keep)
    if args.read_feedback and args.train_scope != "und-read":
        raise SystemExit("--read-feedback is for --train-scope und-read (t2i_feedback is drawn under all and gen anyway)")
    if args.sem_pattern_rows and model.factors is None:
        raise SystemExit("--sem-pattern-rows needs --pattern-factors")
    trainable = [p for p in model.parameters() if p.requires_grad]
    align = None
    if args.ground_align_only and args.ground_align <= 0:
        raise SystemExit("--ground-align-only needs --ground-align W > 0")
    if args.ground_align > 0:
        if not 0 <= args.ground_align_layer < cfg.num_layers:
            raise SystemExit(f"--ground-align-layer must be in [0, {cfg.num_layers})")
        align = GroundAlign(cfg, args.ground_align_layer).to(args.device)
        trainable = trainable + list(align.parameters())
    if model.gen_pos is not None:
        ids = ids | {id(model.gen_pos)}
    if align is not None:
        ids = ids | {id(p) for p in align.parameters()}
    groups = [{"params": [p for p in trainable if id(p) not in ids], "lr_scale": 1.0}]
    if model.gen_pos is not None and model.gen_pos.requires_grad:
        groups.append({"params": [model.gen_pos], "lr_scale": args.gen_pos_lr_scale})
    if any(p.requires_grad for p in factor_params):  # und-read trains the semantic factor only: the image ones stay zero
        groups.append({"params": [p for p in factor_params if p.requires_grad], "lr_scale": args.factor_lr_scale})
    if align is not None:   # its own group (groups[0] leaves it out), so a checkpoint with or without it is told apart
        groups.append({"params": list(align.parameters()), "lr_scale": 1.0})
    opt = torch.optim.AdamW(groups, lr=args.lr, betas=(0.9, 0.98), weight_decay=0.01)
    step, elapsed_before, warm_from = 0, 0.0, 0
    rng = np.random.default_rng(args.seed)
    if state is not None:
        gained = (features is not None and not any(k.startswith("factors.") for k in state["model"])) or \
            (gen_pos and "gen_pos" not in state["model"])
        gained_tie = tie and "text_tie" not in state["model"]
        align_changed = False
        if align is not None and "ground_align" in state and state["ground_align"]["layer"] == align.layer:
            align.load_state_dict(state["ground_align"]["weights"])
        elif align is not None or "ground_align" in state:  # the head comes or goes: other Adam groups, so Adam restarts
            align_changed = True
        model.load_state_dict(state["model"], strict=not (gained or gained_tie))
        if gained_tie:  # the free rows become the old head minus the embeddings: the same function to start
            with torch.no_grad():
                model.core.text_head.weight -= model.core.text_embed.weight
            gained = True
        same_scope = state.get("args", {}).get("train_scope", "all") == args.train_scope
        if "optimizer" in state and not gained and not align_changed and same_scope:
            opt.load_state_dict(state["optimizer"])
            warm_from = state.get("warm_from", 0)  # a resumed run goes on with its own warm-up
        elif "optimizer" in state:  # new factors, a new tie, the align head or another --train-scope: Adam restarts, so warm up again
            warm_from = state["step"]
        else:
            # A slim checkpoint (weights only, as committed): Adam moments restart, so warm up again.
            warm_from = state["step"]
        step, elapsed_before = state["step"], state["elapsed"]
        rng.bit_generator.state = state["numpy_rng"]
        torch.set_rng_state(state["torch_rng"].cpu())
        print(json.dumps({"resumed": step, "elapsed_min": round(elapsed_before / 60, 1)}), flush=True)
    if args.sem_pattern_rows:
        from .labelvq import LEVELS
        if model.sem.embed.weight[LEVELS:].any():   # once; a checkpoint already in this form keeps its factor
            print(json.dumps({"sem_pattern_rows_residual": round(model.sem_rows_to_patterns(LEVELS), 4)}), flush=True)
            for p in (model.sem.embed.weight, model.factors.sem):
                opt.state.pop(p, None)   # their Adam moments belonged to the old split of the rows
        model.hold_sem_pattern_rows(LEVELS)
    params = sum(p.numel() for p in model.parameters())
    print(json.dumps({"config": asdict(cfg), "params": params, "vocab": len(data.vocab), "samples": len(data.samples)}), flush=True)

    try:
        task_weights = parse_task_weights(args.task_weights)
    except ValueError as e:
        raise SystemExit(f"--task-weights: {e}")
    task_weights = drawn_tasks(task_weights, args.train_scope, args.read_feedback)
    eos_tasks = set(filter(None, args.eos_weight_tasks.split(",")))
    if eos_tasks - set(TASKS):
        raise SystemExit(f"--eos-weight-tasks: unknown task(s) {sorted(eos_tasks - set(TASKS))}")
    names, weights = list(task_weights), np.array(list(task_weights.values()))
    weights = weights / weights.sum()
    log_path = os.path.join(args.out, "loss.csv")
    new_log = not os.path.exists(log_path)
    log = open(log_path, "a", newline="")
    writer = csv.writer(log)
    if new_log:
        writer.writerow(["step", "task", "loss", "acc", "lr", "elapsed_s"])
    align_log = None
    if align is not None:
        align_path = os.path.join(args.out, "align.csv")
        new_align = not os.path.exists(align_path)
        align_log = open(align_path, "a")
        if new_align:
            align_log.write("step,align_loss\n")

    def save():
        state = {
            "model": model.state_dict(), "optimizer": opt.state_dict(), "step": step,
            "elapsed": elapsed_before + time.time() - started, "warm_from": warm_from, "numpy_rng": rng.bit_generator.state,
            "torch_rng": torch.get_rng_state(), "config": asdict(cfg), "vocab": data.vocab, "args": vars(args),
        }
        if model.factors is not None:
            state["patterns"] = codebook["patterns"]  # load_mini rebuilds the features from them
        if align is not None:
            state["ground_align"] = {"layer": align.layer, "weights": align.state_dict()}
        torch.save(state, ckpt_path + ".tmp")
        os.replace(ckpt_path + ".tmp", ckpt_path)

    started = time.time()
    last_save = started
    stop = []  # SIGTERM / SIGINT: finish the step, save, exit (a stopped run loses nothing)
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda signum, frame: stop.append(signum))
    model.train()
    while step < args.steps and time.time() - started < args.minutes * 60 and not stop:
        task = names[int(rng.choice(len(names), p=weights))]
        need_text = task not in IMAGE_TASKS
        batch = data.batch(task, args.batch, rng, args.device)
        lr = lr_at(step, args, warm_from)
        for group in opt.param_groups:
            group["lr"] = lr * group.get("lr_scale", 1.0)
        eos_weight = args.eos_weight if not eos_tasks or task in eos_tasks else 1.0
        loss, acc, *aux = loss_of(model, batch, need_text, data.sp["eos"], eos_weight, align, args.ground_align,
                                   args.ground_align_only)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(trainable, 1.0)
        opt.step()
        step += 1
        writer.writerow([step, task, f"{loss.item():.4f}", f"{acc:.4f}", f"{lr:.2e}", f"{elapsed_before + time.time() - started:.1f}"])
        if aux:   # --ground-align: its loss (within the logged total, at its weight) to align.csv
            align_log.write(f"{step},{aux[0].item():.4f}\n")
        if step % 50 == 0:
            log.flush()
            if align_log is not None:
                align_log.flush()
            print(json.dumps({"step": step, "task": task, "loss": round(loss.item(), 4), "acc": round(acc, 3),
                              "min": round((elapsed_before + time.time() - started) / 60, 1)}), flush=True)
        if time.time() - last_save > args.checkpoint_minutes * 60:
            save()
            last_save = time.time()
    save()
    log.close()
    if align_log is not None:
        align_log.close()
    print(json.dumps({"done": step, "elapsed_min": round((elapsed_before + time.time() - started) / 60, 1)}), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
