"""Does the generation branch know where an image token is? (model/README "Where an image token is")

The generation branch's image tokens get no absolute position: their embedding is the code's (all
[mask] alike at the first step), RoPE gives relative offsets only, and the locality bias is relative.
This fits a linear probe (multinomial logistic regression) from the generation-branch hidden state of each
of the 64 image tokens after every layer to its grid row, and one to its column, on the first half of the
prompts, and scores it on the other half: the share of tokens put in the right row / column (chance 1/8).

  /usr/bin/python3 runs/position-probe.py CHECKPOINT CODEBOOK EVAL_PREP [--prompts 400] [--out FILE]

Two images states: every token [mask] (the first step), and the prompt's eval image with a random half of
its tokens masked (a middle step). The probe is read on the masked tokens only.
"""
import argparse, json, sys, os
import numpy as np
import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from lavida_mini.sample import load  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("checkpoint"); ap.add_argument("codebook"); ap.add_argument("data")
    ap.add_argument("--prompts", type=int, default=400)
    ap.add_argument("--out")
    args = ap.parse_args()
    torch.set_num_threads(1)
    s, tok, book, cfg = load(args.checkpoint, args.codebook)
    model = s.model
    layers = model.core.layers
    records = []
    for l, layer in enumerate(layers):
        g = layer.gen
        orig = g.finish
        def wrap(h, out, _orig=orig, _l=l):
            r = _orig(h, out)
            records.append((_l, r.detach()))
            return r
        g.finish = wrap
    samples = [json.loads(x) for x in open(os.path.join(args.data, "samples.jsonl"))]
    tokens = np.load(os.path.join(args.data, "tokens.npy"))
    rng = np.random.default_rng(0)
    G = cfg.num_image_tokens
    cols = cfg.grid_cols
    rows_of = np.arange(G) // cols
    cols_of = np.arange(G) % cols
    mask_id = cfg.codebook_size  # the image [mask]
    feats = {"first step": [[] for _ in layers], "middle step": [[] for _ in layers]}
    targets = {"first step": [], "middle step": []}
    for r in samples[: args.prompts]:
        ids = s.t2i_text(r["t2i"]["text"])
        truth = tokens[r["image"]]
        for state in feats:
            if state == "first step":
                img = np.full(G, mask_id)
                keep = np.arange(G)
            else:
                m = rng.uniform(size=G) < 0.5
                img = np.where(m, mask_id, truth)
                keep = np.flatnonzero(m)
            records.clear()
            with torch.no_grad():
                s._forward([ids], None, img[None], need_text=False)
            for l, h in records:
                feats[state][l].append(h[0, keep].float().numpy())
            targets[state].append(np.stack((rows_of[keep], cols_of[keep]), 1))
    out = {"checkpoint": args.checkpoint, "prompts": args.prompts, "probe": "logistic regression (row, column) on centred states, first half of prompts fit, second half scored"}
    n = args.prompts // 2
    for state in feats:
        y_parts = targets[state]
        ytr, yte = np.concatenate(y_parts[:n]).astype(np.float64), np.concatenate(y_parts[n:]).astype(np.float64)
        res = []
        for l in range(len(layers)):
            X = feats[state][l]
            Xtr, Xte = np.concatenate(X[:n]).astype(np.float64), np.concatenate(X[n:]).astype(np.float64)
            mu = Xtr.mean(0)
            sd = np.sqrt(((Xtr - mu) ** 2).mean())  # one scale for every direction
            xtr = torch.from_numpy((Xtr - mu) / sd).float()
            xte = torch.from_numpy((Xte - mu) / sd).float()
            row = {"after_layer": l}
            for name, k in (("row", 0), ("col", 1)):
                # a linear probe: multinomial logistic regression over the 8 rows (columns), full batch
                torch.manual_seed(0)
                lin = torch.nn.Linear(xtr.shape[1], cols)
                opt = torch.optim.Adam(lin.parameters(), lr=0.05, weight_decay=1e-4)
                t = torch.from_numpy(ytr[:, k]).long()
                for _ in range(300):
                    opt.zero_grad()
                    torch.nn.functional.cross_entropy(lin(xtr), t).backward()
                    opt.step()
                with torch.no_grad():
                    row[f"{name}_acc"] = round(float((lin(xte).argmax(1).numpy() == yte[:, k]).mean()), 3)
            res.append(row)
            print(state, res[-1], flush=True)
        out[state] = res
    if args.out:
        with open(args.out, "w") as f:
            json.dump(out, f, indent=1)


if __name__ == "__main__":
    main()
