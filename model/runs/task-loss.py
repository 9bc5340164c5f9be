"""Teacher-forced loss of checkpoints on the same eval batches, per task (model/README.md, "Package 0.5.0").

    /usr/bin/python3 runs/task-loss.py CHECKPOINT [CHECKPOINT ...] [--tasks t2i_feedback,t2i] [--batches 12] [--out FILE.json]

For each task, `--batches` batches of 64 drawn from the prepared eval split (/tmp/prep/eval) with numpy seed 0
and torch seed 0 (the same examples and masks for every checkpoint), scored by train.loss_of (the training
loss: cross-entropy over the masked tokens). Prints and writes each checkpoint's mean loss, its SE over the
batches and, against the first checkpoint, the mean and SE of the per-batch differences (paired).
"""
import argparse
import json
import os
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from lavida_mini.model import ModelConfig  # noqa: E402
from lavida_mini.train import Data, load_mini, loss_of  # noqa: E402

ap = argparse.ArgumentParser()
ap.add_argument("checkpoints", nargs="+")
ap.add_argument("--tasks", default="t2i_feedback,t2i")
ap.add_argument("--batches", type=int, default=12)
ap.add_argument("--data", default="/tmp/prep/eval")
ap.add_argument("--out")
args = ap.parse_args()
torch.set_num_threads(1)
data = Data(args.data)
result = {"data": args.data, "batches": args.batches, "batch": 64, "checkpoints": {}}
first = {}
for ck in args.checkpoints:
    state = torch.load(ck, map_location="cpu", weights_only=False)
    cfg = ModelConfig.from_dict(state["config"])
    data.bind(cfg)
    model = load_mini(state, cfg, len(state["vocab"])).eval()
    row = {"step": state.get("step")}
    for task in args.tasks.split(","):
        rng = np.random.default_rng(0)
        torch.manual_seed(0)
        with torch.no_grad():
            losses = np.array([float(loss_of(model, data.batch(task, 64, rng, "cpu"), False)[0]) for _ in range(args.batches)])
        r = {"loss": round(losses.mean(), 4), "se": round(losses.std(ddof=1) / np.sqrt(len(losses)), 4)}
        if task in first:
            d = losses - first[task]
            r["diff_vs_first"] = round(d.mean(), 4)
            r["paired_se"] = round(d.std(ddof=1) / np.sqrt(len(d)), 4)
        else:
            first[task] = losses
        row[task] = r
        print(ck, task, r, flush=True)
    result["checkpoints"][ck] = row
if args.out:
    with open(args.out, "w") as f:
        f.write(json.dumps(result, indent=1) + "\n")
