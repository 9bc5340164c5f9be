"""Round a checkpoint's weights to float16 values and store them as float16.

    python3 -m lavida_mini.halve --checkpoint /tmp/run/checkpoint.pt --out checkpoints/lavida-o-mini-X.pt

Every float32 tensor of the model becomes the nearest float16 value; the file stores float16 (half the
bytes) and marks `weights_rounded: float16`. Loading widens them back to float32 exactly
(`load_state_dict` copies into the float32 parameters), so sampling, evaluation, golden vectors and
training all see the rounded model, and `export.py` stores the same values in the ONNX segments as
float16 initializers plus a Cast (`shrink_constants(half=True)`): the package is about half the size and
computes exactly what the PyTorch model computes. The optimizer state is dropped (a slim checkpoint);
`train.py` resumes it like any other, with a fresh Adam warm-up.
"""
from __future__ import annotations

import argparse
import json

import torch


def halve(state: dict) -> dict:
    out = {k: v for k, v in state.items() if k not in ("model", "optimizer")}
    weights, changed, total = {}, 0, 0
    for name, value in state["model"].items():
        if value.dtype in (torch.float32, torch.float16):
            half = value.to(torch.float16)
            if not torch.isfinite(half).all():
                raise ValueError(f"halve: {name} has values outside the float16 range")
            changed += int((half.to(value.dtype) != value).sum())
            total += value.numel()
            weights[name] = half
        else:
            weights[name] = value
    out["model"] = weights
    out["weights_rounded"] = "float16"
    out["halved"] = {"changed": changed, "values": total}
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--checkpoint", required=True)
    ap.add_argument("--out", required=True)
    args = ap.parse_args(argv)
    state = torch.load(args.checkpoint, map_location="cpu", weights_only=False)
    out = halve(state)
    torch.save(out, args.out)
    print(json.dumps({"out": args.out, "step": out["step"], **out["halved"]}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
