"""Grounding decoded under a box-size prior (model/README.md, "Package 0.4.7").

    /usr/bin/python3 runs/ground-box-prior.py CHECKPOINT [N=2000] [--out FILE.json]

One all-masked forward per eval sample (the 1-step case, as runs/ground-identification.py): the 4 coordinate
distributions of `locate : {ref} <loc_begin> [mask]x4 <loc_end>`. The argmax of each slot alone takes its
coordinates from different objects (most 1-step misses are a box near no object). Decoded jointly instead:

    argmax over (w, h) in the prior and x1, y1 of  lp0[x1] + lp2[x1 + w] + lp1[y1] + lp3[y1 + h] + log prior(w, h)

with lp the log-probabilities of the 4 slots and the far corner taken within +-TOL bins of x1 + w (a max filter), so
the two coordinates of an axis come from one object's edges. The prior is the (width, height) histogram in bins of
the training grounding targets (/tmp/prep/train/samples.jsonl); `lavida_mini.box_prior` computes it the same way for
the package. Prints [email protected] of the argmax box and of the joint decoding (for several TOL and prior weights), by
object count; and in 2 and 4 steps, each slot's argmax (most confident first) against Sampler.ground_under_prior
(the package's decoding since 0.4.7: the best box under the prior given the slots fixed so far).
"""
import json, sys, os, numpy as np, torch
HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
from lavida_mini.sample import load, LOC_MAX, CANVAS
from lavida_mini.probe import iou
from lavida_mini.box_prior import box_prior_from_samples, decode_box
sys.path.insert(0, HERE)
checkpoint_args = __import__("ground-identification").checkpoint_args


def main():
    ck, N, out_path = checkpoint_args()
    torch.set_num_threads(2)
    s, tok, book, cfg = load(ck, "/tmp/prep/eval/codebook.npz")
    prior = box_prior_from_samples("/tmp/prep/train/samples.jsonl")
    samples = [json.loads(l) for l in open("/tmp/prep/eval/samples.jsonl")][:N]
    tokens = np.load("/tmp/prep/eval/tokens.npy")
    variants = {"argmax": None}
    for tol in (0, 8, 16, 32):
        variants[f"prior tol {tol}"] = (tol, 1.0)
    variants["prior tol 16, no prior weights"] = (16, 0.0)
    recs = []
    for i0 in range(0, N, 64):
        sub = samples[i0:i0 + 64]
        heads = [s.enc("locate : " + r["grounding"]["ref"]) + [s.sp["loc_begin"]] for r in sub]
        rows = [h + [s.sp["mask"]] * 4 + [s.sp["loc_end"]] for h in heads]
        codes = np.asarray([tokens[r["image"]] for r in sub], np.int64)
        lg, _ = s._forward(rows, codes, None, need_text=True)
        for b, r in enumerate(sub):
            at = codes.shape[1] + len(heads[b])
            lp = s.loc_logprobs(lg[b, at:at + 4])
            hit = {}
            for name, v in variants.items():
                bins = lp.argmax(-1).tolist() if v is None else decode_box(lp, prior, tol=v[0], prior_weight=v[1])
                box = [x / LOC_MAX * CANVAS for x in bins]
                hit[name] = iou(box, r["grounding"]["box"]) >= 0.5
            recs.append({"objects": len(r["scene"]["objects"]), "hit": hit})
    # more steps: each slot's argmax, the most confident first (decode_text), against Sampler.ground_under_prior
    for steps in (2, 4):
        for name, pr in ((f"argmax, {steps} steps", None), (f"prior tol 8, {steps} steps", prior)):
            s.box_prior = pr
            for i0 in range(0, N, 64):
                sub = samples[i0:i0 + 64]
                codes = np.asarray([tokens[r["image"]] for r in sub], np.int64)
                boxes = s.ground_batch(codes, [r["grounding"]["ref"] for r in sub], steps)
                for b, r in enumerate(sub):
                    recs[i0 + b]["hit"][name] = iou(boxes[b], r["grounding"]["box"]) >= 0.5
            variants[name] = pr
    s.box_prior = None
    res = {"checkpoint": ck, "step": s.step, "n": len(recs), "prior": prior,
           "acc": {k: float(np.mean([x["hit"][k] for x in recs])) for k in variants},
           "by_objects": {str(k): {"n": len(g), **{v: float(np.mean([x["hit"][v] for x in g])) for v in variants}}
                          for k in sorted({x["objects"] for x in recs}) for g in [[x for x in recs if x["objects"] == k]]}}
    print(json.dumps({k: v for k, v in res.items() if k != "prior"}, indent=1))
    if out_path:
        json.dump(res, open(out_path, "w"), indent=1)


if __name__ == "__main__":
    main()
