"""Can the understanding branch's image cells learn which object the expression names? (model/README.md,
"Word-to-cell alignment")

    /usr/bin/python3 runs/align-experiment.py CHECKPOINT --layer L [--train probe|read] [--steps N] [--lr LR]
        [--batch B] [--threads T] [--eval 512] [--every 50] [--sem-pattern-rows] [--log FILE.jsonl]

Grounding batches from /tmp/prep/train (train.py's Data, all four coordinates masked, the one-step case) and only
GroundAlign's loss: each image cell after layer L predicts its share of the named box (box_cell_cover).
`--train probe` trains the head alone on the frozen model (is "the expression names me" already in the cells?);
`--train read` trains the head with train.py's und-read weights (can the model learn it?). Every --every steps
it prints the head's BCE on --eval held-out eval samples against two references, a constant (0.243 on the eval
split) and the best head that knows every object's cells but not which one is named (0.149), and the cell
identification of runs/ground-align-check.py (chance 0.353).
"""
import argparse, json, os, sys, time
import numpy as np, torch
HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
from lavida_mini.config import ModelConfig
from lavida_mini.labelvq import LEVELS, NUM_LABELS
from lavida_mini.train import Data, GroundAlign, Mini, pattern_features, read_parameters
sys.path.insert(0, HERE)
cell_scores = __import__("ground-align-check").cell_scores


def evaluate(model, align, data, samples, cfg):
    bce, recs = cell_scores(model, align, data.enc, data.sp, samples, data.eval_tokens, cfg)
    many = [x for x in recs if x["objects"] >= 2]
    return float(np.mean(bce)), float(np.mean([x["identified"] for x in many])), float(np.mean([1 / x["objects"] for x in many]))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("checkpoint")
    ap.add_argument("--layer", type=int, required=True)
    ap.add_argument("--train", choices=["probe", "read"], default="probe")
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--eval", type=int, default=512)
    ap.add_argument("--every", type=int, default=50)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--sem-pattern-rows", action="store_true")
    ap.add_argument("--log", default=None)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    state = torch.load(a.checkpoint, map_location="cpu", weights_only=False)
    data = Data("/tmp/prep/train")
    codebook = np.load("/tmp/prep/train/codebook.npz")
    cfg = ModelConfig.from_dict(state["config"])
    data.bind(cfg)
    data.ground_mask_all = 1.0
    data.ground_align = True
    data.eval_tokens = np.load("/tmp/prep/eval/tokens.npy").astype(np.int64)
    samples = [json.loads(l) for l in open("/tmp/prep/eval/samples.jsonl")][:a.eval]
    w = state["model"]
    features = pattern_features(codebook["patterns"], LEVELS, NUM_LABELS)
    model = Mini(cfg, len(data.vocab), features, tie_text_head="text_tie" in w, gen_pos="gen_pos" in w)
    model.load_state_dict(w, strict=False)   # a checkpoint without factors gains them at zero
    if a.sem_pattern_rows:
        model.sem_rows_to_patterns(LEVELS)
        model.hold_sem_pattern_rows(LEVELS)
    keep = {id(p) for p in read_parameters(model)} if a.train == "read" else set()
    for p in model.parameters():
        p.requires_grad_(id(p) in keep)
    align = GroundAlign(cfg, a.layer)
    params = [p for p in model.parameters() if p.requires_grad] + list(align.parameters())
    opt = torch.optim.AdamW(params, lr=a.lr, betas=(0.9, 0.98), weight_decay=0.01)
    rng = np.random.default_rng(a.seed)
    log = open(a.log, "a") if a.log else None
    started = time.time()
    train_bce = []
    for step in range(a.steps + 1):
        if step % a.every == 0:
            model.eval()
            bce, ident, chance = evaluate(model, align, data, samples, cfg)
            line = {"layer": a.layer, "train": a.train, "lr": a.lr, "step": step, "eval_bce": round(bce, 4),
                    "cell_identification": round(ident, 3), "chance": round(chance, 3),
                    "train_bce": round(float(np.mean(train_bce)), 4) if train_bce else None, "min": round((time.time() - started) / 60, 1)}
            print(json.dumps(line), flush=True)
            if log:
                log.write(json.dumps(line) + "\n"); log.flush()
            model.train()
            train_bce = []
        if step == a.steps:
            break
        batch = data.batch("ground", a.batch, rng, "cpu")
        text, _, pad, prefix = batch[:4]
        _, _, tapped = model(text, pad, prefix, None, True, tap=a.layer)   # need_text: the text side runs every layer
        loss = align.loss(tapped, batch[7])
        train_bce.append(loss.item())
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()


if __name__ == "__main__":
    main()
