"""Classifier-free guidance on the text of grounding and understanding (a probe, not in the package).

    cd model && CHECKPOINT=checkpoints/lavida-o-mini-0.4.0.pt /usr/bin/python3 runs/text-guidance.py ground 400 0,0.5,1,2,4
    ... runs/text-guidance.py answer 200 0,0.5,1

The unconditional row keeps the task word and the image and masks the referring expression / question
(`Sampler.ground_batch` / `answer_batch` with `guidance=`); the answer slot's logits are (1 + g) cond - g uncond.
Grounding is scored as [email protected] against the eval sample's box; answers by exact string match (stricter
than the world scorer for `describe`, so that kind reads 0 here). One JSON line a guidance.
"""
import json, os, sys, time
import numpy as np, torch
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from lavida_mini.probe import iou
from lavida_mini.sample import load

torch.set_num_threads(1)
s, tok, book, cfg = load(os.environ.get("CHECKPOINT", "checkpoints/lavida-o-mini-0.4.0.pt"), "/tmp/prep/eval/codebook.npz")
tokens = np.load("/tmp/prep/eval/tokens.npy").astype(np.int64)
samples = [json.loads(l) for l in open("/tmp/prep/eval/samples.jsonl")][: int(sys.argv[2])]
codes = np.asarray([tokens[r["image"]] for r in samples], np.int64)
task = sys.argv[1]
for g in [float(x) for x in sys.argv[3].split(",")]:
    t0 = time.time(); out = []
    for i in range(0, len(samples), 64):
        sub = samples[i:i + 64]; c = codes[i:i + 64]
        if task == "ground":
            boxes = s.ground_batch(c, [r["grounding"]["ref"] for r in sub], steps=1, guidance=g)
            out += [iou(b, r["grounding"]["box"]) >= 0.5 for b, r in zip(boxes, sub)]
        elif task == "answer":
            answers = s.answer_batch(c, [r["question"]["text"] for r in sub], guidance=g)
            out += [(a.strip() == str(r["question"]["answer"]).strip(), r["question"]["kind"]) for a, r in zip(answers, sub)]
    if task == "ground":
        print(json.dumps({"task": task, "g": g, "acc": float(np.mean(out)), "n": len(out), "s": round(time.time() - t0, 1)}), flush=True)
    else:
        kinds = sorted({k for _, k in out})
        per = {k: round(float(np.mean([ok for ok, kk in out if kk == k])), 3) for k in kinds}
        print(json.dumps({"task": task, "g": g, "mean_kinds": round(float(np.mean(list(per.values()))), 3), "per": per,
                          "n": len(out), "s": round(time.time() - t0, 1)}), flush=True)
