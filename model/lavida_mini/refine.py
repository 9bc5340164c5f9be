"""Trains the decoder's refiner (`labelvq.LabelRefiner`) and measures exact reconstruction.

    python3 -m lavida_mini.refine --codebook /tmp/prep/train/codebook.npz \
        --shards /tmp/shards/train,/tmp/shards/refine --eval /tmp/shards/eval \
        --out /tmp/refiner [--minutes 40] [--steps N] [--batch 32]
    python3 -m lavida_mini.refine --codebook ... --eval /tmp/shards/eval --measure checkpoints/vq-refiner.pt

The tokenizer's codes are fixed (the trained model speaks them), so only the decoder can learn. Pairs
come from the training shards: an image's true label map, and the lookup decode of its nearest-code
encoding. Only images whose lookup differs from the truth teach a correction; a batch is half such
images and half exact ones (which must come back unchanged). Eval images (held-out seeds) are never
trained on: `--measure` and the periodic evaluation report, over the eval shard, the share of images
whose decode equals the true label map, with the lookup alone and with the refiner, and how many exact
lookups the refiner broke. The scene read-back of the same decodes is `evaluate.py --parts readback
--refiner FILE`.

Resumable: `--out/refiner-train.pt` holds the net, optimizer, step and RNG states; a rerun continues it
(`--out/pairs.npz` keeps the pairs, which take about 20 minutes to build for 400k images on 2 cores).
`--out/refiner.pt` is the net alone (`LabelRefiner.load`).
"""
from __future__ import annotations

import argparse
import json
import os
import time
from typing import List, Tuple

import numpy as np
import torch

from .labelvq import LabelCodebook, LabelDecode, LabelRefiner, labels_of
from .prepare import encode_all, load_images


def lookup_labels(book: LabelCodebook, codes: np.ndarray) -> np.ndarray:
    """codes [N, rows*cols] -> the lookup label maps [N, H, W] uint8 (background codes are label 0)."""
    p = book.patch
    n, k = codes.shape
    side = int(round(k ** 0.5))
    lab = book.label_table()[codes.astype(np.int64)].reshape(n, side, side, p, p)
    return lab.transpose(0, 1, 3, 2, 4).reshape(n, side * p, side * p)


def pairs(book: LabelCodebook, shard: str, chunk: int = 20000) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """-> (lookup, truth) label maps of the images whose lookup differs, and the truth of the others."""
    images = load_images(shard)
    bad_in: List[np.ndarray] = []
    bad_out: List[np.ndarray] = []
    good: List[np.ndarray] = []
    for start in range(0, len(images), chunk):
        block = np.asarray(images[start:start + chunk])
        truth, _ = labels_of(block)
        look = lookup_labels(book, encode_all(book, block))
        diff = (look != truth).reshape(len(block), -1).any(-1)
        bad_in.append(look[diff])
        bad_out.append(truth[diff])
        good.append(truth[~diff])
    return np.concatenate(bad_in), np.concatenate(bad_out), np.concatenate(good)


@torch.no_grad()
def decode_all(decoder: LabelDecode, codes: np.ndarray, batch: int = 256) -> np.ndarray:
    """codes [N, rows*cols] -> pixels uint8 [N, H, W, 3] through the package's decoder."""
    ids = torch.from_numpy(codes.astype(np.int64)).view(len(codes), decoder.rows, decoder.cols)
    return np.concatenate([decoder(ids[s:s + batch]).numpy() for s in range(0, len(ids), batch)])


def measure(net: LabelRefiner, book: LabelCodebook, eval_shard: str) -> dict:
    images = np.asarray(load_images(eval_shard))
    truth, _ = labels_of(images)
    codes = encode_all(book, images)
    look = lookup_labels(book, codes)
    exact_look = (look == truth).reshape(len(images), -1).all(-1)
    side = int(round(codes.shape[1] ** 0.5))
    t0 = time.time()
    net.eval()
    pixels = decode_all(LabelDecode(book, side, side, net), codes)
    seconds = time.time() - t0
    net.train()
    ref, _ = labels_of(pixels)
    exact_ref = (ref == truth).reshape(len(images), -1).all(-1)
    # the runtime re-encodes decoded pixels (vq_encode(vq_decode(codes)) must give the codes back)
    roundtrip = (encode_all(book, pixels) == codes).all(-1)
    wrong_px_look = (look != truth).reshape(len(images), -1).sum(-1)
    wrong_px_ref = (ref != truth).reshape(len(images), -1).sum(-1)
    return {
        "images": int(len(images)),
        "exact_lookup": round(float(exact_look.mean()), 5),
        "exact_refined": round(float(exact_ref.mean()), 5),
        "fixed": int((~exact_look & exact_ref).sum()),
        "broken": int((exact_look & ~exact_ref).sum()),
        "wrong_pixels_lookup": int(wrong_px_look.sum()),
        "wrong_pixels_refined": int(wrong_px_ref.sum()),
        "roundtrip_codes": round(float(roundtrip.mean()), 5),
        "ms_per_image": round(1000 * seconds / len(images), 3),
    }


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--codebook", required=True)
    ap.add_argument("--shards", help="comma-separated training shards (libs/world shards.js)")
    ap.add_argument("--eval", required=True, help="eval shard (held-out seeds)")
    ap.add_argument("--out", help="run folder (resumable)")
    ap.add_argument("--measure", help="only measure this refiner.pt on --eval")
    ap.add_argument("--steps", type=int, default=100000)
    ap.add_argument("--minutes", type=float, default=40.0)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--width", type=int, default=32)
    ap.add_argument("--eval-every", type=int, default=500)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--init", help="start a new run from this refiner.pt's weights (fresh optimizer, warm-up and "
                                   "cosine); a run folder that holds refiner-train.pt resumes that instead")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: all cores)")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    book = LabelCodebook.load(args.codebook)
    if args.measure:
        print(json.dumps(measure(LabelRefiner.load(args.measure), book, args.eval)))
        return 0
    if not (args.shards and args.out):
        ap.error("training needs --shards and --out")
    os.makedirs(args.out, exist_ok=True)
    t0 = time.time()
    cache = os.path.join(args.out, "pairs.npz")   # building them takes ~20 min for 400k images on 2 cores
    if os.path.exists(cache):
        data = np.load(cache)
        bad_in, bad_out, good = data["bad_in"], data["bad_out"], data["good"]
    else:
        bad_in, bad_out, good = [], [], []
        for shard in args.shards.split(","):
            a, b, c = pairs(book, shard)
            bad_in.append(a), bad_out.append(b), good.append(c)
        bad_in, bad_out, good = np.concatenate(bad_in), np.concatenate(bad_out), np.concatenate(good)
        np.savez(cache, bad_in=bad_in, bad_out=bad_out, good=good)
    print(json.dumps({"pairs_differing": len(bad_in), "exact": len(good), "seconds": round(time.time() - t0, 1)}), flush=True)

    torch.manual_seed(args.seed)
    rng = np.random.default_rng(args.seed)
    net = LabelRefiner.load(args.init) if args.init else LabelRefiner(width=args.width)
    net.train()
    opt = torch.optim.AdamW(net.parameters(), lr=args.lr, weight_decay=0.0)
    step = 0
    state_path = os.path.join(args.out, "refiner-train.pt")
    if os.path.exists(state_path):
        st = torch.load(state_path, map_location="cpu", weights_only=False)
        net.load_state_dict(st["net"])
        opt.load_state_dict(st["opt"])
        step = st["step"]
        rng.bit_generator.state = st["numpy_rng"]
        torch.set_rng_state(st["torch_rng"])
        print(json.dumps({"resumed": step}), flush=True)

    def save() -> None:
        torch.save({"net": net.state_dict(), "opt": opt.state_dict(), "step": step,
                    "numpy_rng": rng.bit_generator.state, "torch_rng": torch.get_rng_state()}, state_path)
        net.save(os.path.join(args.out, "refiner.pt"), step=step, codebook=os.path.abspath(args.codebook))

    log = open(os.path.join(args.out, "loss.csv"), "a")
    if step == 0:
        log.write("step,loss,bad_pixel_acc,lr\n")
    start = time.time()
    half = args.batch // 2
    while step < args.steps and time.time() - start < args.minutes * 60:
        lr = args.lr * min(1.0, (step + 1) / 100) * (0.5 * (1 + np.cos(np.pi * min(1.0, step / args.steps))))
        for g in opt.param_groups:
            g["lr"] = lr
        bi = rng.integers(0, len(bad_in), half)
        gi = rng.integers(0, len(good), args.batch - half)
        x = torch.from_numpy(np.concatenate((bad_in[bi], good[gi])).astype(np.int64))
        y = torch.from_numpy(np.concatenate((bad_out[bi], good[gi])).astype(np.int64))
        logits = net.logits(x)
        loss = torch.nn.functional.cross_entropy(logits, y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(net.parameters(), 1.0)
        opt.step()
        step += 1
        with torch.no_grad():
            wrong = x[:half] != y[:half]
            acc = (logits[:half].argmax(1) == y[:half])[wrong].float().mean().item() if wrong.any() else 1.0
        log.write(f"{step},{loss.item():.5f},{acc:.4f},{lr:.6f}\n")
        if step % args.eval_every == 0:
            log.flush()
            m = measure(net, book, args.eval)
            print(json.dumps({"step": step, "loss": round(loss.item(), 5), "minutes": round((time.time() - start) / 60, 1), **m}), flush=True)
            save()
    save()
    m = measure(net, book, args.eval)
    print(json.dumps({"step": step, "final": True, "minutes": round((time.time() - start) / 60, 1), **m}), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
