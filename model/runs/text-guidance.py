"""Classifier-free guidance on the text of grounding and understanding (a probe, not in the package).

    cd model && CHECKPOINT=checkpoints/lavida-o-mini-0.4.0.pt /usr/bin/python3 runs/text-guidance.py ground 400 0,0.5,1,2,4
    ... runs/text-guidance.py answer 200 0,0.5,1

The unconditional row keeps the task word and the image and masks the referring expression / question
(`Sampler.decode_text(uncond_heads=, guidance=)`); the answer slot's logits are (1 + g) cond - g uncond.
Grounding is scored as [email protected] against the eval sample's box; answers by exact string match (stricter
than the world scorer for `describe`, so that kind reads 0 here). One JSON line a guidance.
"""
import json, sys, time, numpy as np, torch
import os
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from lavida_mini.sample import load, ANSWER_LEN, detokenize
torch.set_num_threads(1)
s, tok, book, cfg = load(os.environ.get("CHECKPOINT", "checkpoints/lavida-o-mini-0.4.0.pt"), "/tmp/prep/eval/codebook.npz")
tokens = np.load("/tmp/prep/eval/tokens.npy").astype(np.int64)
samples = [json.loads(l) for l in open("/tmp/prep/eval/samples.jsonl")][: int(sys.argv[2])]
codes = np.asarray([tokens[r["image"]] for r in samples], np.int64)
M = s.sp["mask"]
def masked_head(prefix, text, extra=()):
    h = s.enc(prefix + text) + list(extra)
    n0 = len(s.enc(prefix.strip()))
    u = h[:n0] + [M] * (len(h) - n0 - len(extra)) + list(extra)
    return h, u
def iou(a, b):
    ix = max(0, min(a[2], b[2]) - max(a[0], b[0])); iy = max(0, min(a[3], b[3]) - max(a[1], b[1]))
    i = ix * iy; u = (a[2]-a[0])*(a[3]-a[1]) + (b[2]-b[0])*(b[3]-b[1]) - i
    return i / u if u > 0 else 0
task = sys.argv[1]
for g in [float(x) for x in sys.argv[3].split(",")]:
    t0 = time.time(); out = []
    for i in range(0, len(samples), 64):
        sub = samples[i:i+64]; c = codes[i:i+64]
        if task == "ground":
            hs = [masked_head("locate : ", r["grounding"]["ref"], [s.sp["loc_begin"]]) for r in sub]
            o = s.decode_text([h for h, _ in hs], 4, c, 4, tail=[s.sp["loc_end"]], allowed=(s.loc0, 1025),
                              uncond_heads=[u for _, u in hs], guidance=g)
            out += [iou([(t - s.loc0) / 1024 * 64 for t in oo], r["grounding"]["box"]) >= 0.5 for oo, r in zip(o, sub)]
        elif task == "answer":
            hs = [masked_head("question : ", r["question"]["text"]) for r in sub]
            o = s.decode_text([h for h, _ in hs], ANSWER_LEN["und"], c, s.per_step["und"], uncond_heads=[u for _, u in hs], guidance=g)
            out += [(detokenize(s.words(oo)).strip() == str(r["question"]["answer"]).strip(), r["question"]["kind"]) for oo, r in zip(o, sub)]
    if task == "ground":
        print(json.dumps({"task": task, "g": g, "acc": float(np.mean(out)), "n": len(out), "s": round(time.time() - t0, 1)}), flush=True)
    else:
        kinds = sorted({k for _, k in out})
        per = {k: round(float(np.mean([ok for ok, kk in out if kk == k])), 3) for k in kinds}
        print(json.dumps({"task": task, "g": g, "mean_kinds": round(float(np.mean(list(per.values()))), 3), "per": per, "n": len(out), "s": round(time.time() - t0, 1)}), flush=True)
