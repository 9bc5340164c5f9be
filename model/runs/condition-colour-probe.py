"""Do the generation branch's code embeddings say which colours a code holds? (model/README.md, "Why edits miss")

    /usr/bin/python3 runs/condition-colour-probe.py CHECKPOINT [--out FILE.json]

The linear probe of runs/ground-identification.py's semantic one (`probe.colour_label_probe`: least squares,
6,000 codes fitted, 2,192 held out; "this code's 8x8 pattern holds colour label c", averaged over the colour labels,
against the majority share), on three tables of the generation branch (pattern factors folded in, as exported): the image-token rows
(codes < K), the editing condition rows (K+1 .. 2K: what an edit's source image is read through) and the image
head rows. Weighted by how often each held-out code occurs in the eval images (`by_use`) and per code.
"""
import json, os, sys
import numpy as np, torch
HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
from lavida_mini.sample import load
from lavida_mini.labelvq import LEVELS, NUM_LABELS
from lavida_mini.probe import colour_label_probe


def probe(X, book, counts):
    """colour_label_probe's per-label shares, averaged over the colour labels."""
    per = colour_label_probe(X, book.patterns, counts, LEVELS, NUM_LABELS).values()
    return {k: round(float(np.mean([p[k] for p in per])), 4) for k in ("probe_by_use", "majority_by_use", "probe", "majority")}


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
    res = {"checkpoint": args[0], "image_tokens": probe(W[:K], book, counts),
           "condition_tokens": probe(W[K + 1:2 * K + 1], book, counts), "image_head": probe(H[:K], book, counts)}
    print(json.dumps(res, indent=1))
    if out_path:
        json.dump(res, open(out_path, "w"), indent=1)


if __name__ == "__main__":
    main()
