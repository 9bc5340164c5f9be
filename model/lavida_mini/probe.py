"""Probes what the text side of a checkpoint reads, with single all-masked forwards (no decoding loop).

    python3 -m lavida_mini.probe --checkpoint CK --codebook /tmp/prep/train/codebook.npz --data /tmp/prep/eval \
        [--samples 400] [--out probe.json]

- Understanding, per question kind: the first answer token's accuracy and mean log-probability with the
  sample's own image and with another sample's image (the image of sample i+7 of the same batch). Equal
  numbers mean the answer does not depend on the image.
- Grounding: the same for the 4 coordinate tokens.
- Text head: the mean pairwise cosine of the head rows of the colour words, the shape words and the
  number words (rows near 1 cannot tell their words apart, whatever the hidden state holds).
"""
from __future__ import annotations

import argparse
import json
from collections import defaultdict
from typing import Dict, List

import numpy as np
import torch

from .sample import load
from .train import ANSWER_LEN, Data


def iou(a, b) -> float:
    """Intersection over union of two (x1, y1, x2, y2) boxes (the world scorer's [email protected] test, in Python)."""
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0])); iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    u = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - ix * iy
    return ix * iy / u if u > 0 else 0.0

COLOURS = ["red", "green", "blue", "yellow", "purple", "orange"]
SHAPES = ["circle", "square", "triangle"]
NUMBERS = ["zero", "one", "two", "three", "four"]


def auc(score: np.ndarray, positive: np.ndarray):
    """The chance that a positive scores above a negative (ties count half); None without both."""
    pos, neg = score[positive], score[~positive]
    if not len(pos) or not len(neg):
        return None
    return float(((pos[:, None] > neg[None, :]).sum() + 0.5 * (pos[:, None] == neg[None, :]).sum()) / (len(pos) * len(neg)))


def colour_label_probe(X: np.ndarray, patterns: np.ndarray, counts: np.ndarray, levels: int, num_labels: int,
                       fitted: int = 6000) -> Dict[int, dict]:
    """A linear probe from one feature row a code (X: [K, d]) to "this code's 8x8 label pattern holds colour
    label c", per label c >= 1: least squares with a bias on `fitted` codes (a seed-0 permutation), scored on the
    rest against the majority share, also weighted by `counts` (how often each code occurs). Codes < levels are
    pure background (label 0)."""
    K = len(X)
    X = np.c_[X, np.ones(K)]
    lab = np.zeros((K, patterns.shape[1]), int)
    lab[levels:] = patterns
    idx = np.random.default_rng(0).permutation(K)
    tr, te = idx[:fitted], idx[fitted:]
    out = {}
    for c in range(1, num_labels):
        y = (lab == c).any(1)
        w = np.linalg.lstsq(X[tr], y[tr] * 2.0 - 1, rcond=None)[0]
        ok, wt = (X[te] @ w > 0) == y[te], counts[te]
        out[c] = {"probe": float(ok.mean()), "majority": float(max(y[te].mean(), 1 - y[te].mean())),
                  "probe_by_use": float((ok * wt).sum() / wt.sum()),
                  "majority_by_use": float(max((y[te] * wt).sum(), ((1 - y[te]) * wt).sum()) / wt.sum())}
    return out


def verdict_scores(sampler, codes: np.ndarray, prompts: List[str], batch: int = 64) -> np.ndarray:
    """log p(`correct`) - log p(`incorrect`) at the verdict's first slot of `evaluate : {prompt}` with every
    slot masked, one all-masked forward per image (runs/reflect-own-probe.py, runs/reflect-loop-sim.py)."""
    s = sampler
    yes, no = s.enc("correct")[0], s.enc("incorrect")[0]
    P = codes.shape[1]
    score = np.zeros(len(prompts))
    for k in range(0, len(prompts), batch):
        groups: Dict[int, List[int]] = defaultdict(list)
        heads = [s.enc("evaluate : " + p) for p in prompts[k:k + batch]]
        for b, h in enumerate(heads):
            groups[len(h)].append(b)
        for n, idx in groups.items():
            rows = [heads[b] + [s.sp["mask"]] * ANSWER_LEN["reflect"] for b in idx]
            logits, _ = s._forward(rows, np.asarray(codes[k:k + batch])[idx], None, need_text=True)
            lp = torch.log_softmax(torch.from_numpy(logits[:, P + n]).double(), -1)
            score[[k + b for b in idx]] = (lp[:, yes] - lp[:, no]).numpy()
    return score


def _mean_cos(rows: torch.Tensor) -> float:
    n = rows / rows.norm(dim=1, keepdim=True)
    c = n @ n.T
    k = len(rows)
    return float((c.sum() - k) / (k * k - k))


def probe(sampler, data: Data, samples: int, batch: int = 50) -> Dict[str, object]:
    sp = data.sp
    recs = data.samples[:samples]
    und: Dict[str, List[float]] = defaultdict(lambda: [0, 0, 0, 0.0, 0.0])
    ground = [0, 0, 0, 0.0, 0.0]
    for i0 in range(0, len(recs), batch):
        part = recs[i0:i0 + batch]
        own = np.stack([data.tokens[r["image"]] for r in part])
        other = np.roll(own, -7 % len(part), axis=0) if len(part) > 1 else own
        q_heads = [data.enc("question : " + r["question"]["text"]) for r in part]
        g_heads = [data.enc("locate : " + r["grounding"]["ref"]) + [sp["loc_begin"]] for r in part]
        for which, codes in ((0, own), (1, other)):
            lg, _ = sampler._forward([h + [sp["mask"]] * ANSWER_LEN["und"] for h in q_heads], codes, None, True)
            for j, r in enumerate(part):
                answer = data.enc(r["question"]["answer"])[0]
                lp = torch.log_softmax(torch.from_numpy(lg[j, codes.shape[1] + len(q_heads[j])]).double(), -1)
                st = und[r["question"]["kind"]]
                if which == 0:
                    st[0] += 1
                st[1 + which] += int(int(lp.argmax()) == answer)
                st[3 + which] += float(lp[answer])
            lg, _ = sampler._forward([h + [sp["mask"]] * 4 + [sp["loc_end"]] for h in g_heads], codes, None, True)
            for j, r in enumerate(part):
                at = codes.shape[1] + len(g_heads[j])
                for k, b in enumerate(r["grounding"]["bins"]):
                    target = data.tok.loc_id(b)
                    lp = torch.log_softmax(torch.from_numpy(lg[j, at + k]).double(), -1)
                    if which == 0:
                        ground[0] += 1
                    ground[1 + which] += int(int(lp.argmax()) == target)
                    ground[3 + which] += float(lp[target])

    def row(st):
        n = st[0]
        return {"n": n, "acc_own_image": round(st[1] / n, 3), "acc_other_image": round(st[2] / n, 3),
                "logp_own_image": round(st[3] / n, 3), "logp_other_image": round(st[4] / n, 3)}

    head = sampler.model.core.text_head.weight.detach().float()
    ids = data.tok.ids
    return {
        "understanding_first_token": {k: row(v) for k, v in sorted(und.items())},
        "grounding_bins": row(ground),
        "text_head_mean_cosine": {name: round(_mean_cos(head[[ids[w] for w in words]]), 3)
                                  for name, words in (("colours", COLOURS), ("shapes", SHAPES), ("numbers", NUMBERS))},
    }


def main(argv=None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--checkpoint", required=True)
    ap.add_argument("--codebook", required=True)
    ap.add_argument("--data", required=True, help="prepared eval data (prepare.py)")
    ap.add_argument("--samples", type=int, default=400)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", default=None)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    sampler = load(args.checkpoint, args.codebook)[0]
    result = {"checkpoint": args.checkpoint, "samples": args.samples,
              **probe(sampler, Data(args.data), args.samples)}
    text = json.dumps(result, indent=1)
    print(text)
    if args.out:
        with open(args.out, "w") as f:
            f.write(text + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
