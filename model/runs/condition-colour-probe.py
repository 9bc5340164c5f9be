"""Do the generation branch's code embeddings say which colours a code holds? (model/README.md, "Why edits miss")

    /usr/bin/python3 runs/condition-colour-probe.py CHECKPOINT [--out FILE.json]

The same linear probe as runs/ground-identification.py's semantic one (least squares, 6,000 codes fitted, 2,192
held out; "this code's 8x8 pattern holds colour label c", averaged over the colour labels, against the majority
share), on three tables of the generation branch (pattern factors folded in, as exported): the image-token rows
(codes < K), the editing condition rows (K+1 .. 2K: what an edit's source image is read through) and the image
head rows. Weighted by how often each held-out code occurs in the eval images (`by_use`) and per code.
"""
import json, os, sys
import numpy as np, torch
HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
from lavida_mini.sample import load
from lavida_mini.labelvq import LEVELS, NUM_LABELS


def probe(X, lab, counts, tr, te):
    X = np.c_[X, np.ones(len(X))]
    r = []
    for c in range(1, NUM_LABELS):
        y = (lab == c).any(1)
        w = np.linalg.lstsq(X[tr], y[tr] * 2.0 - 1, rcond=None)[0]
        ok, wt = (X[te] @ w > 0) == y[te], counts[te]
        r.append(((ok * wt).sum() / wt.sum(), max((y[te] * wt).sum(), ((1 - y[te]) * wt).sum()) / wt.sum(),
                  ok.mean(), max(y[te].mean(), 1 - y[te].mean())))
    r = np.array(r).mean(0)
    return {"probe_by_use": round(float(r[0]), 4), "majority_by_use": round(float(r[1]), 4),
            "probe": round(float(r[2]), 4), "majority": round(float(r[3]), 4)}


def main():
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    out_path = sys.argv[sys.argv.index("--out") + 1] if "--out" in sys.argv else None
    if out_path in args:
        args.remove(out_path)
    torch.set_num_threads(1)
    s, tok, book, cfg = load(args[0], "/tmp/prep/eval/codebook.npz")
    K = cfg.codebook_size
    W = s.model.core.image_embed.weight.detach().double().numpy()
    H = s.model.core.image_head.weight.detach().double().numpy()
    tokens = np.load("/tmp/prep/eval/tokens.npy")
    counts = np.bincount(tokens[tokens >= LEVELS].ravel(), minlength=K).astype(float)
    lab = np.zeros((K, book.patterns.shape[1]), int)
    lab[LEVELS:] = book.patterns
    idx = np.random.default_rng(0).permutation(K)
    tr, te = idx[:6000], idx[6000:]
    res = {"checkpoint": args[0], "image_tokens": probe(W[:K], lab, counts, tr, te),
           "condition_tokens": probe(W[K + 1:2 * K + 1], lab, counts, tr, te), "image_head": probe(H[:K], lab, counts, tr, te)}
    print(json.dumps(res, indent=1))
    if out_path:
        json.dump(res, open(out_path, "w"), indent=1)


if __name__ == "__main__":
    main()
