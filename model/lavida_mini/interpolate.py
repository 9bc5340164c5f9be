"""Weight-space interpolation of two checkpoints of one model (WiSE-FT): base + alpha (tuned - base).

    python3 -m lavida_mini.interpolate --base checkpoints/lavida-o-mini-0.4.0.pt --tuned /tmp/run/checkpoint.pt \
        --alpha 0.5 --out /tmp/mix.pt [--halve]

A fine-tune on a few tasks moves the weights that every task shares; part of the way back keeps much of what
the fine-tune learned and loses less of what it did not train (model/README, "Reflection on own planned
images"). Both checkpoints must have the same config and vocabulary. The result is a slim checkpoint (no
optimizer) with the tuned run's step, arguments and RNG states (so `trained_eos_bias` and a resumed run see
the tuned run's settings) and `interpolated: {base, tuned, alpha}`; `--halve` rounds it to float16 as
`halve.py` does (what a package is made of).
"""
from __future__ import annotations

import argparse
import json

import torch

from .halve import halve


def interpolate(base: dict, tuned: dict, alpha: float) -> dict:
    if base["config"] != tuned["config"] or base["vocab"] != tuned["vocab"]:
        raise ValueError("interpolate: the checkpoints differ in config or vocabulary")
    a, b = dict(base["model"]), tuned["model"]
    if "gen_pos" in b and "gen_pos" not in a:   # train.py --gen-pos starts its table at zero: the base's is zero
        a["gen_pos"] = torch.zeros_like(b["gen_pos"], dtype=torch.float32)
    if set(a) != set(b):
        raise ValueError(f"interpolate: different parameters: {sorted(set(a) ^ set(b))[:5]}")
    out = {k: v for k, v in tuned.items() if k not in ("model", "optimizer", "weights_rounded", "halved")}
    weights = {}
    for name, tv in b.items():
        bv = a[name].to(torch.float32) if a[name].is_floating_point() else a[name]
        if tv.is_floating_point():
            weights[name] = bv + alpha * (tv.to(torch.float32) - bv)
        else:
            if not torch.equal(bv, tv):
                raise ValueError(f"interpolate: non-float tensor {name} differs")
            weights[name] = tv
    out["model"] = weights
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--base", required=True)
    ap.add_argument("--tuned", required=True)
    ap.add_argument("--alpha", type=float, required=True, help="0: the base, 1: the tuned checkpoint")
    ap.add_argument("--out", required=True)
    ap.add_argument("--halve", action="store_true", help="round to float16 and store as float16 (halve.py)")
    args = ap.parse_args(argv)
    base = torch.load(args.base, map_location="cpu")
    tuned = torch.load(args.tuned, map_location="cpu")
    state = interpolate(base, tuned, args.alpha)
    state["interpolated"] = {"base": args.base, "base_step": int(base["step"]), "tuned": args.tuned,
                             "tuned_step": int(tuned["step"]), "alpha": args.alpha}
    if args.halve:
        state = halve(state)
    torch.save(state, args.out)
    print(json.dumps(state["interpolated"]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
