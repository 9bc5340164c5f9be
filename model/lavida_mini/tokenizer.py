"""word-v1 tokenizer (see docs/model-package.md)."""
from __future__ import annotations

import re
from typing import Dict, List, Sequence

SPECIALS = [
    ("pad", "[pad]"),
    ("mask", "[mask]"),
    ("exp", "[exp]"),
    ("eos", "[eos]"),
    ("unk", "[unk]"),
    ("box_begin", "<box>"),
    ("box_end", "</box>"),
    ("loc_begin", "<loc>"),
    ("loc_end", "</loc>"),
]

# Shapes world words (shared/spec/shapes-world.md).
WORDS = (
    "a an the and of is are there how many what which colour shape size image object objects "
    "describe add remove change replace with to in at left right above below small large "
    "red green blue yellow purple orange circle circles square squares triangle triangles "
    "zero one two three four yes no luminance generate plan layout place evaluate correct "
    "incorrect wrong missing extra because position count it this generation feedback please "
    "consider previous"
).split()

DIGITS = [str(d) for d in range(10)]
PUNCTUATION = [":", ";", ".", ",", "?"]
LOC_BINS = 1025

TOKEN_RE = re.compile(r"[a-z]+|[0-9]|[^\sa-z0-9]")


def build_vocab() -> List[str]:
    vocab = [tok for _, tok in SPECIALS] + WORDS + DIGITS + PUNCTUATION
    vocab += [f"<loc_{i}>" for i in range(LOC_BINS)]
    if len(set(vocab)) != len(vocab):
        raise AssertionError("duplicate vocabulary entry")
    return vocab


class WordTokenizer:
    name = "word-v1"

    def __init__(self, vocab: Sequence[str] | None = None) -> None:
        self.vocab: List[str] = list(vocab) if vocab is not None else build_vocab()
        self.ids: Dict[str, int] = {tok: i for i, tok in enumerate(self.vocab)}
        self.special_tokens: Dict[str, int] = {key: self.ids[tok] for key, tok in SPECIALS}
        self.loc_first_id: int = self.ids["<loc_0>"]
        self.loc_count: int = LOC_BINS

    def __len__(self) -> int:
        return len(self.vocab)

    @property
    def mask_id(self) -> int:
        return self.special_tokens["mask"]

    def encode(self, text: str) -> List[int]:
        unk = self.special_tokens["unk"]
        return [self.ids.get(m, unk) for m in TOKEN_RE.findall(text.lower())]

    def loc_id(self, bin_index: int) -> int:
        if not 0 <= bin_index < self.loc_count:
            raise ValueError(f"loc bin {bin_index} out of range")
        return self.loc_first_id + bin_index

    def decode(self, ids: Sequence[int]) -> str:
        return " ".join(self.vocab[i] for i in ids)
