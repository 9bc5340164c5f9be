"""What each image policy reveals when (model/README.md, "Stratified against confidence order").

    /usr/bin/python3 runs/reveal-order.py CHECKPOINT [PROMPTS_PER_CATEGORY] [--out F]

Samples the first PROMPTS_PER_CATEGORY eval prompts of each mini-GenEval category (one image each, the
evaluation's first seed, temperature 0.7, guidance 3, 16 steps) under three policies (stratified order;
confidence with Gumbel noise 1, the reference code's "mmada"; confidence without noise) and reports, per
quarter of the 64 cells in reveal order, the share of revealed cells that are pure background codes and
the share that touch (8-neighbourhood) a cell revealed at an earlier step.
"""
import argparse, json, os, sys
import numpy as np, torch
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from lavida_mini.sample import load                     # noqa: E402
from lavida_mini.labelvq import LEVELS                   # noqa: E402
from lavida_mini.evaluate import t2i_prompts             # noqa: E402

ap = argparse.ArgumentParser()
ap.add_argument("checkpoint")
ap.add_argument("prompts", type=int, nargs="?", default=8)
ap.add_argument("--data", default="/tmp/prep/eval")
ap.add_argument("--out")
args = ap.parse_args()
torch.set_num_threads(1)
s, tok, book, cfg = load(args.checkpoint, os.path.join(args.data, "codebook.npz"))
samples = [json.loads(l) for l in open(os.path.join(args.data, "samples.jsonl"))]
prompts = t2i_prompts(samples, args.prompts)
R, C = cfg.grid_rows, cfg.grid_cols
policies = {"stratified": (1.0, 1.0), "confidence, Gumbel 1 (mmada)": (0.0, 1.0), "confidence, no noise": (0.0, 0.0)}
report = {"checkpoint": args.checkpoint, "images": len(prompts), "temperature": 0.7, "guidance": 3.0, "steps": 16, "policies": {}}
for name, (cutoff, alg) in policies.items():
    s.order_cutoff, s.alg_temp = cutoff, alg
    snaps = []
    forward = s._forward

    def hook(text, prefix, image, need_text, image_positions=None):
        snaps.append(np.asarray(image)[0].copy())          # the grid at the start of a step (cond row)
        return forward(text, prefix, image, need_text, image_positions)

    s._forward = hook
    bg = [[] for _ in range(4)]
    touch = [[] for _ in range(4)]
    for r in prompts:
        snaps.clear()
        final = np.asarray(s.sample_images([s.t2i_text(r["t2i"]["text"])], [r["seed"] * 4], steps=16, guidance=3.0,
                                           temperature=0.7)[0])
        grids = snaps + [final]
        step_of = np.full(R * C, -1)
        for k in range(len(grids) - 1):
            new = (grids[k] == cfg.mask_id) & (grids[k + 1] != cfg.mask_id)
            step_of[new] = k
        rank = np.argsort(step_of, kind="stable")            # cells in reveal order
        for q in range(4):
            for cell in rank[q * 16:(q + 1) * 16]:
                bg[q].append(final[cell] < LEVELS)
                r0, c0 = divmod(int(cell), C)
                nb = [(r0 + dr) * C + c0 + dc for dr in (-1, 0, 1) for dc in (-1, 0, 1)
                      if (dr or dc) and 0 <= r0 + dr < R and 0 <= c0 + dc < C]
                touch[q].append(any(step_of[n] < step_of[cell] for n in nb))
    del s._forward
    report["policies"][name] = {"background_share_by_quarter": [round(float(np.mean(b)), 3) for b in bg],
                                "touches_earlier_by_quarter": [round(float(np.mean(t)), 3) for t in touch]}
    print(name, json.dumps(report["policies"][name]))
if args.out:
    json.dump(report, open(args.out, "w"), indent=1)
