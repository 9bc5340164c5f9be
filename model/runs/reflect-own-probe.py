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
  move the threshold along this ranking).
"""
import argparse, json, os, sys, time
import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
from lavida_mini.sample import load  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("checkpoint")
    ap.add_argument("own")
    ap.add_argument("--codebook", default="/tmp/prep/train/codebook.npz")
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", default=None)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    t0 = time.time()
    s, _, _, _ = load(a.checkpoint, a.codebook)
    codes = np.load(os.path.join(a.own, "tokens.npy")).astype(np.int64)
    recs = [json.loads(line) for line in open(os.path.join(a.own, "samples.jsonl"))]
    said = []
    for k in range(0, len(recs), a.batch):
        said += s.reflect_batch(codes[k:k + a.batch], [r["prompt"] for r in recs[k:k + a.batch]])
    right = np.array([r["verdict"] == "correct" for r in recs])
    from lavida_mini.train import ANSWER_LEN
    yes, no = s.enc("correct")[0], s.enc("incorrect")[0]
    score = []
    for k in range(0, len(recs), a.batch):
        heads = [s.enc("evaluate : " + r["prompt"]) for r in recs[k:k + a.batch]]
        P = codes.shape[1]
        groups = {}
        for b, h in enumerate(heads):
            groups.setdefault(len(h), []).append(b)
        part = [0.0] * len(heads)
        for n, idx in groups.items():
            rows = [heads[b] + [s.sp["mask"]] * ANSWER_LEN["reflect"] for b in idx]
            logits, _ = s._forward(rows, codes[k:k + a.batch][idx], None, need_text=True)
            lp = torch.log_softmax(torch.from_numpy(logits[:, P + n]).double(), -1)
            for b, v in zip(idx, (lp[:, yes] - lp[:, no]).tolist()):
                part[b] = v
        score += part
    score = np.array(score)
    pos, neg = score[right], score[~right]
    auc = float(((pos[:, None] > neg[None, :]).sum() + 0.5 * (pos[:, None] == neg[None, :]).sum()) / (len(pos) * len(neg))) if len(pos) and len(neg) else None
    acc = np.array([v.strip() == "correct" for v in said])
    wrong_called_wrong = [(r, v) for r, v, ok, ac in zip(recs, said, right, acc) if not ok and not ac]
    out = {
        "checkpoint": a.checkpoint, "own": a.own, "n": len(recs), "right_share": round(float(right.mean()), 4),
        "accept_if_right": round(float(acc[right].mean()), 4) if right.any() else None,
        "accept_if_wrong": round(float(acc[~right].mean()), 4) if (~right).any() else None,
        "agreement": round(float((acc == right).mean()), 4),
        "precision": round(float(right[acc].mean()), 4) if acc.any() else None,
        "accepted": int(acc.sum()),
        "reason": round(float(np.mean([v.strip() == r["verdict"] for r, v in wrong_called_wrong])), 4) if wrong_called_wrong else None,
        "auc": None if auc is None else round(auc, 4),
        "seconds": round(time.time() - t0, 1),
    }
    out["balanced"] = round(0.5 * ((out["accept_if_right"] or 0) + 1 - (out["accept_if_wrong"] or 0)), 4)
    print(json.dumps(out))
    if a.out:
        json.dump(out, open(a.out, "w"), indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
