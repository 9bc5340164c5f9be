"""Grow a trained checkpoint into a deeper config without changing what it computes.

    python3 -m lavida_mini.grow --checkpoint checkpoints/lavida-o-mini-0.2.0.pt --config mini-deep --out /tmp/grown.pt

The new config must keep every width, the joint layers and the vocabularies; it may only add split
layers. The old layers keep their weights (layers 0..N_old-1), the new split layers are appended after
them with a fresh seeded init whose output projections (attention `wo`, FFN `w2`, both branches) are
zero, so every new layer starts as the identity of its residual stream and the grown model's logits
equal the old model's. The result is a slim checkpoint (weights, step, elapsed time, RNG states; no
optimizer) that `train.py --config <new>` resumes like any other, with a fresh Adam warm-up.
"""
from __future__ import annotations

import argparse
import json
from dataclasses import asdict, replace

import torch

from .config import CONFIGS, ModelConfig
from .train import Mini, load_mini

SAME = ("joint_layers", "und_hidden", "gen_hidden", "und_ffn", "gen_ffn", "heads", "head_dim", "rope_theta",
        "norm_eps", "max_text_len", "image_locality_slopes", "grid_rows", "grid_cols", "patch", "codebook_size",
        "edit_conditions", "tokenizer")


def grow(state: dict, new: ModelConfig, seed: int = 0) -> dict:
    old = ModelConfig.from_dict(state["config"])
    new = replace(new, codebook_size=old.codebook_size)
    for key in SAME:
        if getattr(old, key) != getattr(new, key):
            raise ValueError(f"grow: {key} differs ({getattr(old, key)} -> {getattr(new, key)}): only split layers may be added")
    if new.num_layers <= old.num_layers:
        raise ValueError(f"grow: the new config needs more than {old.num_layers} layers")
    vocab_size = len(state["vocab"])
    small = load_mini(state, old, vocab_size)  # pattern factors, if any, are folded in
    torch.manual_seed(seed)
    big = Mini(new, vocab_size)
    weights = big.state_dict()
    for name, value in small.state_dict().items():
        if weights[name].shape != value.shape:
            raise ValueError(f"grow: {name} has shape {tuple(value.shape)}, the new model {tuple(weights[name].shape)}")
        weights[name] = value.clone()
    for l in range(old.num_layers, new.num_layers):
        for branch in ("und", "gen"):
            for proj in ("wo", "w2"):
                weights[f"core.layers.{l}.{branch}.{proj}.weight"].zero_()
    out = {k: v for k, v in state.items() if k not in ("model", "optimizer", "patterns")}
    out["model"] = weights
    out["config"] = asdict(new)
    out["grown_from"] = {"config": asdict(old), "step": state["step"], "seed": seed}
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--checkpoint", required=True)
    ap.add_argument("--config", required=True, choices=sorted(CONFIGS))
    ap.add_argument("--out", required=True)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    state = torch.load(args.checkpoint, map_location="cpu", weights_only=False)
    grown = grow(state, CONFIGS[args.config], args.seed)
    torch.save(grown, args.out)
    params = sum(v.numel() for v in grown["model"].values())
    print(json.dumps({"out": args.out, "config": args.config, "layers": grown["config"]["num_layers"],
                      "params": params, "step": grown["step"]}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
