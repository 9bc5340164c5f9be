"""Prepares a training shard written by libs/world for the trainer.

    python3 -m lavida_mini.prepare --shard DIR --out DIR [--codebook 8192] [--codebook-from PREPARED]

Builds (or reuses) the label-patch codebook, encodes every image of the shard to tokens, and builds the
word vocabulary from the shard's texts. Writes tokens.npy, codebook.npz, vocab.json and a copy of
samples.jsonl into --out.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import time

import numpy as np

from .labelvq import LEVELS, GREY_MIN, LabelCodebook, labels_of, patches_of
from .tokenizer import SPECIALS, DIGITS, PUNCTUATION, LOC_BINS, TOKEN_RE, WORDS


def load_images(shard: str) -> np.ndarray:
    meta = json.load(open(os.path.join(shard, "meta.json")))
    return np.memmap(os.path.join(shard, "images.u8"), dtype=np.uint8, mode="r",
                     shape=(meta["images"], meta["height"], meta["width"], meta["channels"]))


def encode_all(book: LabelCodebook, images: np.ndarray, batch: int = 20000) -> np.ndarray:
    """Vectorised encode: unique patterns per batch, dictionary lookup, nearest pattern for the misses."""
    out = np.empty((len(images), 64), dtype=np.int16)
    onehot_book = np.eye(7, dtype=np.float32)[book.patterns].reshape(len(book.patterns), -1)
    for start in range(0, len(images), batch):
        labels, grey = labels_of(np.asarray(images[start:start + batch]))
        pats = patches_of(labels, book.patch)                       # [n, 64, 64]
        greys = patches_of(grey, book.patch).mean(-1)               # [n, 64]
        flat = np.ascontiguousarray(pats.reshape(-1, pats.shape[-1]))
        keys = flat.view(np.dtype((np.void, flat.shape[1]))).ravel()
        uniq, inverse = np.unique(keys, return_inverse=True)
        codes = np.empty(len(uniq), dtype=np.int64)
        misses = []
        for i, key in enumerate(uniq):
            code = book._index.get(key.tobytes())
            if code is None:
                misses.append(i)
                code = -1
            codes[i] = code
        if misses:
            miss_pats = np.frombuffer(b"".join(uniq[m].tobytes() for m in misses), dtype=np.uint8).reshape(len(misses), -1)
            oh = np.eye(7, dtype=np.float32)[miss_pats].reshape(len(misses), -1)
            codes[misses] = LEVELS + (oh @ onehot_book.T).argmax(-1)
        token = codes[inverse].reshape(pats.shape[:2])
        empty = ~pats.any(-1)
        token[empty] = np.clip(np.round(greys[empty]) - GREY_MIN, 0, LEVELS - 1)
        out[start:start + len(token)] = token
    return out


def build_vocab(samples_path: str) -> list:
    words = set(WORDS)
    with open(samples_path) as f:
        for line in f:
            r = json.loads(line)
            texts = [r["t2i"]["text"], r["question"]["text"], r["question"]["answer"], r["grounding"]["ref"],
                     r["edit"]["text"], r["reflection"]["text"], r["plan"]["prompt"]]
            for t in texts:
                words.update(w for w in TOKEN_RE.findall(t.lower()) if w.isalpha())
    extra = ["locate", "question", "answer", "edit", "feedback"]
    words.update(extra)
    vocab = [tok for _, tok in SPECIALS] + sorted(words) + DIGITS + PUNCTUATION + [f"<loc_{i}>" for i in range(LOC_BINS)]
    assert len(set(vocab)) == len(vocab)
    return vocab


def main(argv=None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--shard", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--codebook", type=int, default=8192)
    ap.add_argument("--codebook-from", help="reuse the codebook and vocabulary of an earlier prepared folder")
    args = ap.parse_args(argv)
    os.makedirs(args.out, exist_ok=True)
    images = load_images(args.shard)
    t0 = time.time()
    if args.codebook_from:
        book = LabelCodebook.load(os.path.join(args.codebook_from, "codebook.npz"))
        vocab = json.load(open(os.path.join(args.codebook_from, "vocab.json")))
    else:
        book = LabelCodebook.build(np.asarray(images), 8, args.codebook)
        vocab = build_vocab(os.path.join(args.shard, "samples.jsonl"))
    book.save(os.path.join(args.out, "codebook.npz"))
    json.dump(vocab, open(os.path.join(args.out, "vocab.json"), "w"))
    tokens = encode_all(book, images)
    np.save(os.path.join(args.out, "tokens.npy"), tokens)
    shutil.copyfile(os.path.join(args.shard, "samples.jsonl"), os.path.join(args.out, "samples.jsonl"))
    print(json.dumps({"images": len(images), "codebook": book.size, "vocab": len(vocab), "seconds": round(time.time() - t0, 1)}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
