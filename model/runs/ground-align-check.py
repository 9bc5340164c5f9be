"""Does the --ground-align head find the named object's cells? (model/README.md, "Word-to-cell alignment")

    /usr/bin/python3 runs/ground-align-check.py CHECKPOINT [N=2000] [--out FILE.json]

CHECKPOINT is a train.py checkpoint with a `ground_align` head (train.py --ground-align). One all-masked
grounding forward per eval sample (`locate : {ref} <loc_begin> [mask]x4 <loc_end>`, as runs/ground-identification.py),
then the head's probability for each image cell of the understanding branch after its layer. Prints the head's
BCE against box_cell_cover on the eval images, and, in scenes of 2+ objects, cell identification: the object
whose cells (cover-weighted) the head rates highest is the named one (chance 1 / objects), by object count and
by the form of the expression. A head that finds objects but not the named one sits at chance.
"""
import json, os, sys
import numpy as np, torch
HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
from lavida_mini.config import ModelConfig
from lavida_mini.tokenizer import WordTokenizer
from lavida_mini.train import GroundAlign, box_cell_cover, load_mini
sys.path.insert(0, HERE)
_ident = __import__("ground-identification")   # the expression's form and the world's box sides, as that script has them
form, SIZES, checkpoint_args = _ident.form, _ident.SIZES, _ident.checkpoint_args


def cell_scores(model, align, encode, sp, samples, tokens, cfg):
    """One all-masked grounding forward per sample (64 a batch): each sample's head BCE against box_cell_cover,
    and a record {form, objects, identified} (identified: the object whose cells, cover-weighted, the head rates
    highest is the named one). runs/align-experiment.py scores with it too."""
    recs, bce = [], []
    for i0 in range(0, len(samples), 64):
        sub = samples[i0:i0 + 64]
        rows = [encode("locate : " + r["grounding"]["ref"]) + [sp["loc_begin"]] + [sp["mask"]] * 4 + [sp["loc_end"]] for r in sub]
        T = max(map(len, rows))
        text = torch.tensor([x + [sp["pad"]] * (T - len(x)) for x in rows])
        pad = torch.tensor([[False] * len(x) + [True] * (T - len(x)) for x in rows])
        prefix = torch.from_numpy(np.stack([tokens[r["image"]] for r in sub]))
        with torch.no_grad():
            _, _, tapped = model(text, pad, prefix, None, True, tap=align.layer)
            logits = align.head(align.norm(tapped[:, :cfg.num_image_tokens])).squeeze(-1)
        cover = torch.from_numpy(np.stack([box_cell_cover(r["grounding"]["bins"], cfg) for r in sub]))
        bce += torch.nn.functional.binary_cross_entropy_with_logits(logits, cover, reduction="none").mean(-1).tolist()
        prob = torch.sigmoid(logits).numpy()
        for b, r in enumerate(sub):
            objs = r["scene"]["objects"]
            score = []
            for o in objs:
                side = SIZES[o["size"]]
                c = box_cell_cover([round(v * 16) for v in (o["x"], o["y"], o["x"] + side, o["y"] + side)], cfg)
                score.append(float((prob[b] * c).sum() / c.sum()))
            recs.append({"form": form(r["grounding"]["ref"]), "objects": len(objs),
                         "identified": int(np.argmax(score)) == r["grounding"]["object"]})
    return bce, recs


def main():
    ck, N, out_path = checkpoint_args()
    torch.set_num_threads(2)
    state = torch.load(ck, map_location="cpu", weights_only=False)
    if "ground_align" not in state:
        raise SystemExit(f"{ck} has no ground_align head (train.py --ground-align)")
    cfg = ModelConfig.from_dict(state["config"])
    model = load_mini(state, cfg, len(state["vocab"])).eval()
    align = GroundAlign(cfg, state["ground_align"]["layer"])
    align.load_state_dict(state["ground_align"]["weights"])
    tok = WordTokenizer(state["vocab"])
    sp = tok.special_tokens
    samples = [json.loads(l) for l in open("/tmp/prep/eval/samples.jsonl")][:N]
    tokens = np.load("/tmp/prep/eval/tokens.npy").astype(np.int64)
    bce, recs = cell_scores(model, align, tok.encode, sp, samples, tokens, cfg)
    many = [x for x in recs if x["objects"] >= 2]
    res = {"checkpoint": ck, "step": state["step"], "layer": align.layer, "n": len(recs), "bce": float(np.mean(bce)),
           "cell_identification": {"n": len(many), "share": float(np.mean([x["identified"] for x in many])),
                                   "chance": float(np.mean([1 / x["objects"] for x in many]))},
           "by_objects": {k: {"n": len(g), "identified": float(np.mean([x["identified"] for x in g]))}
                          for k in sorted({x["objects"] for x in many}) for g in [[x for x in many if x["objects"] == k]]},
           "by_form": {f: {"n": len(g), "identified": float(np.mean([x["identified"] for x in g])),
                           "chance": float(np.mean([1 / x["objects"] for x in g]))}
                       for f in sorted({x["form"] for x in many}) for g in [[x for x in many if x["form"] == f]]}}
    print(json.dumps(res, indent=1))
    if out_path:
        json.dump(res, open(out_path, "w"), indent=1)


if __name__ == "__main__":
    main()
