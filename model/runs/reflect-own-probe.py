"""Does reflection tell the model's own right images from its wrong ones? (model/README.md, "Reflection on own planned images")

    /usr/bin/python3 runs/reflect-own-probe.py CHECKPOINT OWN_DIR [--codebook FILE] [--out FILE.json]

OWN_DIR is an `own.py` folder (the model's images with their true verdicts, read back by the world
scorer), e.g. planned images of eval prompts (`own.py --mode plan --data /tmp/prep/eval --allow-eval`).
The checkpoint's verdict is decoded as the package does (`Sampler.reflect_batch`) and compared with the
truth, by class (`correct` or not):
- accept_if_right / accept_if_wrong: the share of truly right / wrong images it calls `correct`;
- agreement (what evaluate.py reports for own images) and balanced accuracy (the mean of
  accept_if_right and 1 - accept_if_wrong; 0.5 is a verdict that does not look at the image);
- precision: the share of the accepted images that are right (what the loop keeps when it stops);
- reason: among truly wrong images called wrong, the share whose reason is the true one;
- auc: from one all-masked forward, the first verdict slot's log p(`correct`) - log p(`incorrect`) as a
  score, the chance that a right image scores above a wrong one (0.5: no signal; a verdict bias can only
  move the threshold along this ranking);
- auc_within: the same within each prompt category (own.py records `category`), and their mean
  (`auc_within_mean`): a verdict that only learned which categories the model draws well (single objects)
  ranks well overall and no better than chance inside a category, and such a verdict does not help the
  loop (the regenerations of a category it accepts are right about as often).
"""
import argparse, json, os, sys, time
import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
from lavida_mini.sample import load  # noqa: E402
from lavida_mini.probe import auc as auc_of, verdict_scores  # noqa: E402
from lavida_mini.evaluate import text_batched  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("checkpoint")
    ap.add_argument("own")
    ap.add_argument("--codebook", default="/tmp/prep/train/codebook.npz")
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", default=None)
    ap.add_argument("--eos-bias", default=None, help="the verdict slot's [eos] bias (package: tasks.eos_bias.reflect); "
                    "a comma list sweeps it (one line each)")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    t0 = time.time()
    s, _, _, _ = load(a.checkpoint, a.codebook)
    codes = np.load(os.path.join(a.own, "tokens.npy")).astype(np.int64)
    recs = [json.loads(line) for line in open(os.path.join(a.own, "samples.jsonl"))]
    right = np.array([r["verdict"] == "correct" for r in recs])
    score = verdict_scores(s, codes, [r["prompt"] for r in recs], a.batch)
    auc = auc_of(score, right)
    cats = np.array([r.get("category", "") for r in recs])
    within = {c: auc_of(score[cats == c], right[cats == c]) for c in sorted(set(cats)) if c}
    within = {c: round(v, 4) for c, v in within.items() if v is not None}
    biases = [None] if a.eos_bias is None else [float(x) for x in a.eos_bias.split(",")]
    lines = []
    for bias in biases:
        if bias is not None:
            s.eos_bias["reflect"] = bias
        said = text_batched(s.reflect_batch, codes, [r["prompt"] for r in recs], a.batch)
        acc = np.array([v.strip() == "correct" for v in said])
        wrong_called_wrong = [(r, v) for r, v, ok, ac in zip(recs, said, right, acc) if not ok and not ac]
        out = {
            "checkpoint": a.checkpoint, "own": a.own, "eos_bias": s.eos_bias.get("reflect", 0.0), "n": len(recs),
            "right_share": round(float(right.mean()), 4),
            "accept_if_right": round(float(acc[right].mean()), 4) if right.any() else None,
            "accept_if_wrong": round(float(acc[~right].mean()), 4) if (~right).any() else None,
            "agreement": round(float((acc == right).mean()), 4),
            "precision": round(float(right[acc].mean()), 4) if acc.any() else None,
            "accepted": int(acc.sum()),
            "reason": round(float(np.mean([v.strip() == r["verdict"] for r, v in wrong_called_wrong])), 4) if wrong_called_wrong else None,
            "auc": None if auc is None else round(auc, 4),
            "auc_within": within, "auc_within_mean": round(float(np.mean(list(within.values()))), 4) if within else None,
            "seconds": round(time.time() - t0, 1),
        }
        out["balanced"] = round(0.5 * ((out["accept_if_right"] or 0) + 1 - (out["accept_if_wrong"] or 0)), 4)
        print(json.dumps(out), flush=True)
        lines.append(out)
    if a.out:
        json.dump(lines[0] if len(lines) == 1 else lines, open(a.out, "w"), indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
