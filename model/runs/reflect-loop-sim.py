"""What would a verdict threshold buy the reflection loop? (model/README.md, "Reflection on own planned images")

    /usr/bin/python3 runs/reflect-loop-sim.py WORKDIR CHECKPOINT [CHECKPOINT ...] [--taus -0.5,0,0.5,1,1.25,1.5,2]

WORKDIR is an `evaluate.py --parts t2i` workdir of a checkpoint that rejected every image (0.4.0 does: every
prompt has all 3 rounds, each image read back and labelled). For each CHECKPOINT, each round-1 and round-2
image gets the verdict's first-slot score (log p(`correct`) - log p(`incorrect`), all slots masked, as
`reflect-own-probe.py`), and the loop is replayed with "accept when the score is over tau" (and, as
tau `decoded`, with the verdict decoded as the package decodes it): the final image is the first accepted one,
else the third. Prints mini-GenEval of that replay (mean over categories), how many
images each round accepts, the AUC of round 1 overall and within each category, and, for the accepted round-1
images, how often they and the third image of the same prompt are right.

A replay, not a run: the regenerations were drawn after 0.4.0's critiques, and the checkpoint's own plans may
differ (see `evaluate.py --reflect-eos-bias` for a real run of a decoding change).
"""
import argparse, json, os, sys
import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
from lavida_mini.sample import load  # noqa: E402
from lavida_mini.probe import auc as auc_of, verdict_scores  # noqa: E402
from lavida_mini.evaluate import text_batched  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("workdir")
    ap.add_argument("checkpoints", nargs="+")
    ap.add_argument("--codebook", default="/tmp/prep/train/codebook.npz")
    ap.add_argument("--taus", default="-0.5,0,0.5,1,1.25,1.5,2")
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    W = a.workdir
    R = [json.loads(line) for line in open(os.path.join(W, "results.jsonl"))]
    S = [json.loads(line) for line in open(os.path.join(W, "scores.jsonl"))]
    codes = np.fromfile(os.path.join(W, "codes.i32"), np.int32).reshape(-1, 64).astype(np.int64)
    refl = [(i, r) for i, r in enumerate(R) if r["task"] == "reflect" and r.get("set") == "own"]
    cats = np.array([r["category"] for r in R if r["task"] == "t2i" and r["mode"] == "plan"])
    rounds = {k: [x for x in refl if x[1]["round"] == k] for k in (1, 2, 3)}
    if any(len(v) != len(cats) for v in rounds.values()):
        raise SystemExit(f"{W}: not every prompt has 3 rounds ({ {k: len(v) for k, v in rounds.items()} }): "
                         "use a workdir of a checkpoint that rejects every image")
    truth = {k: np.array([S[i]["truth"] == "correct" for i, _ in v]) for k, v in rounds.items()}
    judged = {k: (np.stack([codes[r["image"]] for _, r in rounds[k]]), [r["prompt"] for _, r in rounds[k]]) for k in (1, 2)}

    def overall(ok):
        return float(np.mean([ok[cats == c].mean() for c in sorted(set(cats))]))

    print(json.dumps({"workdir": W, "round_pass": {k: round(overall(v), 4) for k, v in truth.items()},
                      "oracle_any_of_3": round(overall(truth[1] | truth[2] | truth[3]), 4),
                      "r3_right_if_r1_right": round(float(truth[3][truth[1]].mean()), 4),
                      "r3_right_if_r1_wrong": round(float(truth[3][~truth[1]].mean()), 4)}))
    for ck in a.checkpoints:
        s, _, _, _ = load(ck, a.codebook)
        sc = {k: verdict_scores(s, *judged[k]) for k in (1, 2)}
        within = {c: auc_of(sc[1][cats == c], truth[1][cats == c]) for c in sorted(set(cats))}
        print(json.dumps({"checkpoint": ck, "auc_r1": round(auc_of(sc[1], truth[1]), 4), "auc_r2": round(auc_of(sc[2], truth[2]), 4),
                          "auc_r1_within": {c: None if v is None else round(v, 4) for c, v in within.items()}}))
        decoded = {k: np.array([v.strip() == "correct" for v in text_batched(s.reflect_batch, *judged[k], 64)]) for k in (1, 2)}
        for tau in ["decoded"] + [float(x) for x in a.taus.split(",")]:
            a1 = decoded[1] if tau == "decoded" else sc[1] > tau
            a2 = ~a1 & (decoded[2] if tau == "decoded" else sc[2] > tau)
            final = np.where(a1, truth[1], np.where(a2, truth[2], truth[3]))
            print(json.dumps({"checkpoint": os.path.basename(ck), "tau": tau, "plan+reflect": round(overall(final), 4),
                              "accept_r1": int(a1.sum()), "accept_r2": int(a2.sum()),
                              "accepted_r1_right": round(float(truth[1][a1].mean()), 4) if a1.any() else None,
                              "their_r3_right": round(float(truth[3][a1].mean()), 4) if a1.any() else None}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
