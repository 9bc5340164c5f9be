"""Where edits fail, cell by cell: an evaluate.py workdir's edit outputs against each edit's source and target codes.

    /usr/bin/python3 runs/edit-failures.py WORKDIR [--data /tmp/prep/eval] [--mode plain] [--out runs/edit-failures-X.json]

WORKDIR is an `evaluate.py --parts edit` workdir (results.jsonl, scores.jsonl, codes.i32); its edit lines are the first
--samples eval samples in order. A cell of the 8x8 grid is "changed" where the target's code differs from the source's
(the cells an edit has to redraw) and "kept" elsewhere. Per edit kind, for passed / failed edits and (remove, change, replace) by the expression's form: the share of
changed cells drawn as the target (right), left as the source (copied: the edit not made there) or neither, and the
share of kept cells copied, and the kept cells lost (not copied) next to a changed cell (8-neighbourhood) and
farther away, per edit. A failed edit is "unchanged" when it copies every changed cell, "damaged" when it keeps
under 95% of the kept cells. The published code weights the changed cells' loss 5x (`train.py --edit-token-weight`).
"""
import argparse
import json
import os
from collections import defaultdict

import numpy as np


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("workdir")
    ap.add_argument("--data", default="/tmp/prep/eval")
    ap.add_argument("--mode", default="plain", help="edit lines of this --edit-modes mode")
    ap.add_argument("--out", default=None)
    a = ap.parse_args()
    tokens = np.load(os.path.join(a.data, "tokens.npy")).astype(np.int64)
    samples = [json.loads(line) for line in open(os.path.join(a.data, "samples.jsonl"))]
    lines = [json.loads(line) for line in open(os.path.join(a.workdir, "results.jsonl"))]
    scores = [json.loads(line) for line in open(os.path.join(a.workdir, "scores.jsonl"))]
    if len(scores) != len(lines):
        raise SystemExit(f"{len(lines)} result lines, {len(scores)} score lines")
    n_cells = tokens.shape[1]
    codes = np.fromfile(os.path.join(a.workdir, "codes.i32"), np.int32).reshape(-1, n_cells)
    edits = [(ln, sc) for ln, sc in zip(lines, scores) if ln["task"] == "edit" and ln.get("mode", "plain") == a.mode]
    acc = defaultdict(lambda: defaultdict(float))
    for k, (ln, sc) in enumerate(edits):
        r = samples[k]
        if r["edit"]["text"] != ln["instruction"]:
            raise SystemExit(f"edit line {k} is not eval sample {k}'s edit")
        src, tgt, out = tokens[r["image"]], tokens[r["edit"]["target_image"]], codes[ln["image"]].astype(np.int64)
        changed = tgt != src
        ok = bool(sc["pass"])
        kept = float((out[~changed] == src[~changed]).mean()) if (~changed).any() else 1.0
        grid = changed.reshape(8, 8)
        pad = np.pad(grid, 1)
        near = np.zeros_like(grid)
        for dy in (-1, 0, 1):
            for dx in (-1, 0, 1):
                near |= pad[1 + dy:9 + dy, 1 + dx:9 + dx]
        near = near.reshape(-1) & ~changed   # kept cells next to a changed one (8-neighbourhood)
        far = ~changed & ~near
        near_lost = float((out[near] != src[near]).sum())
        far_lost = float((out[far] != src[far]).sum())
        nc = int(changed.sum())
        right = float((out[changed] == tgt[changed]).mean()) if nc else 1.0
        copied = float((out[changed] == src[changed]).mean()) if nc else 0.0
        keys = [r["edit"]["kind"], "all", f"{r['edit']['kind']} {'passed' if ok else 'failed'}", "passed" if ok else "failed"]
        if r["edit"]["kind"] != "add":  # the expression: the shape alone ("the circle") or more words ("the red circle")
            keys.append("ref: shape only" if len(r["edit"]["spec"]["ref"].split()) == 2 else "ref: more words")
        for key in keys:
            g = acc[key]
            g["n"] += 1
            g["passed"] += float(ok)
            g["changed_cells"] += nc
            g["right"] += right
            g["copied"] += copied
            g["kept"] += kept
            g["near_lost"] += near_lost
            g["far_lost"] += far_lost
            if not ok:
                g["unchanged"] += float(nc > 0 and copied == 1.0)
                g["damaged"] += float(kept < 0.95)
    table = {}
    for key in sorted(acc, key=lambda x: (x.split()[0] != "all", x)):
        g = acc[key]
        n = g["n"]
        row = {"n": int(n), "passed": round(g["passed"] / n, 3), "changed_cells": round(g["changed_cells"] / n, 2), "changed_right": round(g["right"] / n, 3),
               "changed_copied": round(g["copied"] / n, 3), "kept_copied": round(g["kept"] / n, 3),
               "kept_lost_near": round(g["near_lost"] / n, 2), "kept_lost_far": round(g["far_lost"] / n, 2)}
        if "failed" in key:
            row["failed_unchanged"] = round(g["unchanged"] / n, 3)
            row["failed_damaged"] = round(g["damaged"] / n, 3)
        table[key] = row
        print(f"{key:18s} " + " ".join(f"{k}={v}" for k, v in row.items()))
    if a.out:
        json.dump({"workdir": a.workdir, "mode": a.mode, "table": table}, open(a.out, "w"), indent=1)


if __name__ == "__main__":
    main()
