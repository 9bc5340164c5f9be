"""The model's own images as reflection data: generate, read back, label with the true verdict.

    python3 -m lavida_mini.own --checkpoint CKPT --data /tmp/prep/train --out /tmp/prep/own [--count 2000]

For `--count` training samples (a seeded choice, never eval seeds), one image from the sample's
text-to-image prompt (micro-conditioning included) with the reference sampler at the package's
settings; the image is read back by the world library (`libs/world/dist/cli/score.js`, the scorer of
the quality table) and labelled with the true verdict (`correct` / `incorrect because ...`). Writes
`tokens.npy` (the sampled codes, [N, 64]), `images.u8` and `samples.jsonl` ({sample, prompt, verdict}).

`--mode plan` draws what the reflection loop judges first instead: the model's plan for the prompt, then
the image with that plan at `--plan-guidance` (the package's 0.5), so reflection learns on the images it
has to judge when it is served. `--allow-eval` takes eval data too, for a measurement set
(`runs/reflect-own-probe.py`), never for training.
`train.py --own DIR` then trains reflection on these images (the failures a real model makes, which
the perturbed clean scenes of the shards do not show) and regenerates from them with feedback.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from types import SimpleNamespace

import numpy as np
import torch

from .evaluate import REPO, layout_line, sample_grouped, text_batched
from .sample import load, strip_micro


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--checkpoint", required=True)
    ap.add_argument("--data", default="/tmp/prep/train")
    ap.add_argument("--out", required=True)
    ap.add_argument("--count", type=int, default=2000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--steps", type=int, default=16)
    ap.add_argument("--guidance", type=float, default=3.0)
    ap.add_argument("--temperature", type=float, default=0.7)
    ap.add_argument("--shift", type=float, default=3.0)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--mode", choices=["plain", "plan"], default="plain",
                    help="plain: the prompt's image at --guidance; plan: the model's plan, then the image at --plan-guidance")
    ap.add_argument("--plan-guidance", type=float, default=0.5)
    ap.add_argument("--text-batch", type=int, default=64)
    ap.add_argument("--allow-eval", action="store_true", help="eval data is allowed (a measurement set, not training data)")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    t0 = time.time()
    s, tok, book, cfg = load(args.checkpoint, os.path.join(args.data, "codebook.npz"))
    samples = [json.loads(line) for line in open(os.path.join(args.data, "samples.jsonl"))]
    if min(r["seed"] for r in samples) >= 1_000_000_000 and not args.allow_eval:
        raise SystemExit("--data must be the training set (own images of eval prompts would leak)")
    rng = np.random.default_rng(args.seed)
    chosen = sorted(int(i) for i in rng.choice(len(samples), size=min(args.count, len(samples)), replace=False))
    opts = SimpleNamespace(batch=args.batch, steps=args.steps, temperature=args.temperature, shift=args.shift,
                           guidance=args.guidance if args.mode == "plain" else args.plan_guidance)
    layouts: list = [None] * len(chosen)
    if args.mode == "plan":
        layouts = text_batched(s.plan_batch, None, [samples[i]["t2i"]["text"] for i in chosen], args.text_batch)
        jobs = [{"ids": s.t2i_text(samples[i]["t2i"]["text"], lay), "seed": int(samples[i]["seed"]) * 4 + 2}
                for i, lay in zip(chosen, layouts)]
    else:
        jobs = [{"ids": s.enc(samples[i]["t2i"]["text"]), "seed": int(samples[i]["seed"]) * 4 + 1} for i in chosen]
    tokens = np.asarray(sample_grouped(s, jobs, opts), np.int64)
    images = np.concatenate([s.decode_rgb(tokens[k:k + 256]) for k in range(0, len(tokens), 256)])
    os.makedirs(args.out, exist_ok=True)
    np.save(os.path.join(args.out, "tokens.npy"), tokens.astype(np.int16))
    images.astype(np.uint8).tofile(os.path.join(args.out, "images.u8"))
    prompts = [strip_micro(samples[i]["t2i"]["text"]) for i in chosen]
    results = os.path.join(args.out, "results.jsonl")
    with open(results, "w") as f:
        for k, p in enumerate(prompts):
            f.write(json.dumps({"task": "reflect", "set": "own", "prompt": p, "predicted": "correct", "image": k}) + "\n")
    per_line = os.path.join(args.out, "verdicts.jsonl")
    subprocess.run(["node", os.path.join(REPO, "libs/world/dist/cli/score.js"), "--results", results,
                    "--images", os.path.join(args.out, "images.u8"), "--baseline-samples", "0", "--per-line", per_line],
                   check=True, stdout=subprocess.DEVNULL)
    truths = [json.loads(line)["truth"] for line in open(per_line)]
    with open(os.path.join(args.out, "samples.jsonl"), "w") as f:
        for i, p, v, lay in zip(chosen, prompts, truths, layouts):
            rec = {"sample": i, "category": samples[i]["t2i"]["category"], "prompt": p, "verdict": v}
            if args.mode == "plan":
                rec["plan"] = layout_line(lay or [])
            f.write(json.dumps(rec) + "\n")
    correct = sum(v == "correct" for v in truths)
    reasons: dict = {}
    for v in truths:
        key = v if v == "correct" else v.split(" because ", 1)[1].split(" ")[0]
        reasons[key] = reasons.get(key, 0) + 1
    info = {"images": len(truths), "correct": correct, "reasons": reasons, "checkpoint": args.checkpoint,
            "settings": {k: getattr(args, k) for k in ("mode", "count", "seed", "steps", "guidance", "plan_guidance",
                                                       "temperature", "shift")},
            "seconds": round(time.time() - t0, 1)}
    json.dump(info, open(os.path.join(args.out, "info.json"), "w"), indent=1)
    print(json.dumps(info))
    return 0


if __name__ == "__main__":
    sys.exit(main())
