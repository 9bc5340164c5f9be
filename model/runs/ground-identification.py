"""Why grounding misses: does the model find the named object, or only objects? (model/README.md, "Grounding finds objects, not the named one")

    /usr/bin/python3 runs/ground-identification.py CHECKPOINT [N=2000] [--out FILE.json]

One all-masked forward per eval sample (the 1-step decoding case): the 4 coordinate distributions of
`locate : {ref} <loc_begin> [mask]x4 <loc_end>`. Prints
- [email protected] of the argmax box (what evaluate.py scores at 1 step), of the expected value and of the
  median of each coordinate's distribution;
- identification: in scenes of 2+ objects, the object whose 4 coordinates hold the most probability
  (the log of the mass within 2 px of each, summed) is the named one; chance is 1 / objects;
  by object count and by the form of the expression (colour / size / shape words);
- the colour read by the semantic encoder: a linear probe (least squares, 6,000 codes fitted, 2,192
  held out) from each code's semantic feature (mean position) to "this code's 8x8 pattern holds colour
  label c", against the majority share; also weighted by how often each held-out code occurs in the
  eval images (`_by_use`).
"""
import json, sys, os, numpy as np, torch
HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
from lavida_mini.sample import load, LOC_MAX, CANVAS
from lavida_mini.labelvq import LEVELS, NUM_LABELS
from lavida_mini.probe import COLOURS, colour_label_probe, iou

SIZES = {"small": 12, "large": 20}   # shapes-world.md: bounding boxes of 12 and 20 px


def form(ref):
    w = ref.split()[1:]
    return ("colour+" if any(x in COLOURS for x in w) else "") + ("size+" if any(x in SIZES for x in w) else "") + "shape"


def colour_probe(s, book, counts):
    m, K = s.model, s.cfg.codebook_size
    codes = torch.arange(K)
    with torch.no_grad():
        sem = m.sem
        e = sem.embed(codes) + (m.factors.features[codes] @ m.factors.sem if m.factors is not None else 0)
        X = sem.proj(sem.norm(e + sem.pos.mean(0))).double().numpy()
    return colour_label_probe(X, book.patterns, counts, LEVELS, NUM_LABELS)


def checkpoint_args(argv=None):
    """CHECKPOINT [N=2000] [--out FILE.json] of the grounding run scripts -> (checkpoint, N, out path or None)."""
    argv = sys.argv[1:] if argv is None else argv
    out_path = argv[argv.index("--out") + 1] if "--out" in argv else None
    args = [a for a in argv if not a.startswith("--")]
    if out_path in args:
        args.remove(out_path)
    return args[0], int(args[1]) if len(args) > 1 else 2000, out_path


def main():
    ck, N, out_path = checkpoint_args()
    torch.set_num_threads(2)
    s, tok, book, cfg = load(ck, "/tmp/prep/eval/codebook.npz")
    samples = [json.loads(l) for l in open("/tmp/prep/eval/samples.jsonl")][:N]
    tokens = np.load("/tmp/prep/eval/tokens.npy")
    bins = np.arange(LOC_MAX + 1)
    recs = []
    for i0 in range(0, N, 64):
        sub = samples[i0:i0 + 64]
        heads = [s.enc("locate : " + r["grounding"]["ref"]) + [s.sp["loc_begin"]] for r in sub]
        rows = [h + [s.sp["mask"]] * 4 + [s.sp["loc_end"]] for h in heads]
        codes = np.asarray([tokens[r["image"]] for r in sub], np.int64)
        lg, _ = s._forward(rows, codes, None, need_text=True)
        for b, r in enumerate(sub):
            at = codes.shape[1] + len(heads[b])
            p = torch.softmax(torch.from_numpy(lg[b, at:at + 4, s.loc0:s.loc0 + LOC_MAX + 1]).double(), -1).numpy()
            px = lambda v: [float(x) / LOC_MAX * CANVAS for x in v]
            boxes = {"argmax": px(p.argmax(-1)), "mean": px((p * bins).sum(-1)),
                     "median": px([np.searchsorted(np.cumsum(q), 0.5) for q in p])}
            objs = [[o["x"], o["y"], o["x"] + SIZES[o["size"]], o["y"] + SIZES[o["size"]]] for o in r["scene"]["objects"]]
            mass = [float(np.log(np.array([p[c, max(0, int(ob[c] * 16) - 32):int(ob[c] * 16) + 33].sum() for c in range(4)]) + 1e-9).sum())
                    for ob in objs]
            recs.append({"ref": r["grounding"]["ref"], "form": form(r["grounding"]["ref"]), "objects": len(objs),
                         "hit": {k: iou(v, r["grounding"]["box"]) >= 0.5 for k, v in boxes.items()},
                         "identified": int(np.argmax(mass)) == r["grounding"]["object"]})
    res = {"checkpoint": ck, "step": s.step, "n": len(recs),
           "acc": {k: float(np.mean([x["hit"][k] for x in recs])) for k in ("argmax", "mean", "median")}}
    many = [x for x in recs if x["objects"] >= 2]
    res["identification"] = {"n": len(many), "share": float(np.mean([x["identified"] for x in many])),
                             "chance": float(np.mean([1 / x["objects"] for x in many]))}
    res["by_objects"] = {k: {"n": len(g), "argmax_hit": float(np.mean([x["hit"]["argmax"] for x in g])),
                             "identified": float(np.mean([x["identified"] for x in g]))}
                         for k in sorted({x["objects"] for x in recs}) for g in [[x for x in recs if x["objects"] == k]]}
    res["by_form"] = {f: {"n": len(g), "identified": float(np.mean([x["identified"] for x in g])),
                          "chance": float(np.mean([1 / x["objects"] for x in g]))}
                      for f in sorted({x["form"] for x in many}) for g in [[x for x in many if x["form"] == f]]}
    patterned = tokens[tokens >= LEVELS]
    res["colour_probe"] = colour_probe(s, book, np.bincount(patterned, minlength=cfg.codebook_size).astype(float))
    print(json.dumps(res, indent=1))
    if out_path:
        json.dump(res, open(out_path, "w"), indent=1)


if __name__ == "__main__":
    main()
