"""Label-patch image tokenizer for the Shapes world.

Every pixel of a Shapes-world image is either background grey (R = G = B = g) or one of six palette
colours, so an image is exactly a label map (0 = background, 1..6 = palette) plus one grey level.
A token is one patch x patch block of labels, looked up in a codebook of the most frequent label
patterns in the training images. Codes 0..LEVELS-1 are pure-background patches carrying the grey
level (8..64), so background luminance is part of the image tokens and a model must learn it;
the other codes are label patterns. Decoding paints background pixels with the mean level of the
image's pure-background codes.
"""
from __future__ import annotations

from typing import Tuple

import numpy as np
import torch
from torch import nn

PALETTE = np.array(
    [(230, 40, 40), (40, 190, 70), (50, 90, 230), (240, 220, 50), (160, 70, 210), (250, 140, 30)],
    dtype=np.int32,
)  # red, green, blue, yellow, purple, orange (shared/spec/shapes-world.md)
GREY_MIN, GREY_MAX = 8, 64
LEVELS = GREY_MAX - GREY_MIN + 1
DEFAULT_LEVEL = 36
NUM_LABELS = 1 + len(PALETTE)


def labels_of(images: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """images uint8 [N, H, W, 3] -> labels uint8 [N, H, W] and per-pixel grey int16 [N, H, W].

    A pixel is background when it is grey (max - min channel < 24); otherwise the nearest palette colour.
    """
    x = images.astype(np.int32)
    spread = x.max(-1) - x.min(-1)
    d = ((x[..., None, :] - PALETTE[None, None, None]) ** 2).sum(-1)  # [N,H,W,6]
    labels = (d.argmin(-1) + 1).astype(np.uint8)
    labels[spread < 24] = 0
    return labels, x.mean(-1).astype(np.int16)


def patches_of(labels: np.ndarray, patch: int) -> np.ndarray:
    """labels [N, H, W] -> [N, rows*cols, patch*patch] in raster order of the token grid."""
    n, h, w = labels.shape
    r, c = h // patch, w // patch
    return labels.reshape(n, r, patch, c, patch).transpose(0, 1, 3, 2, 4).reshape(n, r * c, patch * patch)


class LabelCodebook:
    """codes[k] = label pattern (patch*patch uint8) for k >= LEVELS; codes < LEVELS are pure background."""

    def __init__(self, patterns: np.ndarray, patch: int) -> None:
        self.patch = patch
        self.patterns = patterns.astype(np.uint8)  # [K - LEVELS, patch*patch], none all-zero
        self.size = LEVELS + len(self.patterns)
        self._index = {p.tobytes(): LEVELS + i for i, p in enumerate(self.patterns)}

    @classmethod
    def build(cls, images: np.ndarray, patch: int, size: int, batch: int = 10000) -> "LabelCodebook":
        """The size - LEVELS most frequent non-background patterns of the images (ties by byte order)."""
        counts: dict = {}
        for start in range(0, len(images), batch):
            labels, _ = labels_of(np.asarray(images[start:start + batch]))
            flat = np.ascontiguousarray(patches_of(labels, patch).reshape(-1, patch * patch))
            flat = flat[flat.any(-1)]
            keys = flat.view(np.dtype((np.void, flat.shape[1]))).ravel()
            uniq, n = np.unique(keys, return_counts=True)
            for key, c in zip(uniq, n):
                b = key.tobytes()
                counts[b] = counts.get(b, 0) + int(c)
        ranked = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[: size - LEVELS]
        patterns = np.frombuffer(b"".join(k for k, _ in ranked), dtype=np.uint8).reshape(len(ranked), patch * patch)
        return cls(patterns, patch)

    def encode(self, images: np.ndarray) -> np.ndarray:
        """images uint8 [N, H, W, 3] -> codes int64 [N, rows*cols]; unknown patterns map to the nearest by Hamming."""
        labels, grey = labels_of(images)
        pats = patches_of(labels, self.patch)
        greys = patches_of(grey, self.patch).mean(-1)
        out = np.empty(pats.shape[:2], dtype=np.int64)
        onehot_book = None
        for i in range(pats.shape[0]):
            for j in range(pats.shape[1]):
                p = pats[i, j]
                if not p.any():
                    out[i, j] = int(np.clip(round(float(greys[i, j])) - GREY_MIN, 0, LEVELS - 1))
                    continue
                code = self._index.get(p.tobytes())
                if code is None:
                    if onehot_book is None:
                        onehot_book = self.patterns
                    code = LEVELS + int((onehot_book != p[None]).sum(-1).argmin())
                out[i, j] = code
        return out

    def label_table(self) -> np.ndarray:
        """uint8 [size, patch*patch]: the label of every pixel of every code (background codes are all 0)."""
        table = np.zeros((self.size, self.patch * self.patch), dtype=np.uint8)
        table[LEVELS:] = self.patterns
        return table

    def save(self, path: str) -> None:
        np.savez_compressed(path, patterns=self.patterns, patch=np.array(self.patch))

    @classmethod
    def load(cls, path: str) -> "LabelCodebook":
        data = np.load(path)
        return cls(data["patterns"], int(data["patch"]))


class LabelRefiner(nn.Module):
    """The trained half of the decoder: label map [B, H, W] (int64, the codebook lookup) -> refined label map.

    A code stands for one 8x8 label pattern, and a pattern the codebook lacks was encoded as its nearest
    code, which deforms a shape at one patch. The neighbouring patches still show the rest of the shape,
    so a small residual convolutional net over the label map (dilated, receptive field 47 px, a little more
    than the largest object) is trained (`refine.py`) to map the lookup of nearest-code encodings back to
    the true labels. Its logits add `gain` times the input's one-hot, so the lookup is the default and the
    net only has to learn the corrections. Input also has the pixel's place in its patch (two channels),
    since deformations are patch-aligned.
    """

    def __init__(self, width: int = 32, dilations: Tuple[int, ...] = (1, 2, 4, 8, 4, 2, 1), patch: int = 8,
                 gain: float = 4.0) -> None:
        super().__init__()
        self.width, self.dilations, self.patch, self.gain = width, tuple(dilations), patch, gain
        self.inp = nn.Conv2d(NUM_LABELS + 2, width, 3, padding=1)
        self.convs = nn.ModuleList(nn.Conv2d(width, width, 3, padding=d, dilation=d) for d in self.dilations)
        self.out = nn.Conv2d(width, NUM_LABELS, 1)

    def config(self) -> dict:
        return {"width": self.width, "dilations": list(self.dilations), "patch": self.patch, "gain": self.gain}

    def logits(self, labels: torch.Tensor) -> torch.Tensor:
        """labels int64 [B, H, W] -> logits float32 [B, NUM_LABELS, H, W]."""
        b, h, w = labels.shape
        onehot = torch.nn.functional.one_hot(labels, NUM_LABELS).to(torch.float32).permute(0, 3, 1, 2)
        ys = (torch.arange(h, dtype=torch.float32) % self.patch) / (self.patch - 1) - 0.5
        xs = (torch.arange(w, dtype=torch.float32) % self.patch) / (self.patch - 1) - 0.5
        pos = torch.stack((ys.view(h, 1).expand(h, w), xs.view(1, w).expand(h, w))).unsqueeze(0).expand(b, 2, h, w)
        x = torch.relu(self.inp(torch.cat((onehot, pos), 1)))
        for conv in self.convs:
            x = x + torch.relu(conv(x))
        return self.out(x) + self.gain * onehot

    def forward(self, labels: torch.Tensor) -> torch.Tensor:
        return self.logits(labels).argmax(1)

    def save(self, path: str, **info) -> None:
        torch.save({"format": "lavida-label-refiner/v1", "config": self.config(), "state": self.state_dict(), **info}, path)

    @classmethod
    def load(cls, path: str) -> "LabelRefiner":
        data = torch.load(path, map_location="cpu")
        if data.get("format") != "lavida-label-refiner/v1":
            raise ValueError(f"{path} is not a lavida-label-refiner/v1 file")
        net = cls(**data["config"])
        net.load_state_dict(data["state"])
        return net.eval()


class LabelDecode(nn.Module):
    """image_ids int64 [B, rows, cols] -> pixels uint8 [B, H, W, 3] (exportable).

    With a `refiner` (`LabelRefiner`), the looked-up label map goes through it before it is painted."""

    def __init__(self, book: LabelCodebook, rows: int, cols: int, refiner: "LabelRefiner | None" = None) -> None:
        super().__init__()
        p = book.patch
        self.rows, self.cols, self.patch = rows, cols, p
        self.refiner = refiner
        # Label of every pixel of every code; background codes are all label 0.
        self.register_buffer("table", torch.from_numpy(book.label_table().astype(np.int64)), persistent=False)
        colours = np.zeros((NUM_LABELS, 3), dtype=np.float32)
        colours[1:] = PALETTE
        self.register_buffer("colours", torch.from_numpy(colours), persistent=False)

    def forward(self, image_ids: torch.Tensor) -> torch.Tensor:
        b = image_ids.shape[0]
        p = self.patch
        ids = image_ids.reshape(b, -1)
        is_bg = (ids < LEVELS).to(torch.float32)
        levels = (ids.clamp(max=LEVELS - 1) + GREY_MIN).to(torch.float32)
        count = is_bg.sum(-1)
        level = torch.where(count > 0, (levels * is_bg).sum(-1) / count.clamp(min=1.0), torch.full_like(count, float(DEFAULT_LEVEL)))
        level = torch.round(level)  # [B]
        labels = torch.index_select(self.table, 0, ids.reshape(-1)).view(b, self.rows, self.cols, p, p)
        labels = labels.permute(0, 1, 3, 2, 4).reshape(b, self.rows * p, self.cols * p)
        if self.refiner is not None:
            labels = self.refiner(labels)
        rgb = torch.index_select(self.colours, 0, labels.reshape(-1)).view(b, self.rows * p, self.cols * p, 3)
        bg = (labels == 0).unsqueeze(-1).to(torch.float32)
        rgb = rgb * (1.0 - bg) + bg * level.view(b, 1, 1, 1)
        return rgb.to(torch.uint8)


class LabelEncode(nn.Module):
    """pixels uint8 [B, H, W, 3] -> image_ids int64 [B, rows, cols] (exportable; nearest pattern by Hamming)."""

    def __init__(self, book: LabelCodebook, rows: int, cols: int) -> None:
        super().__init__()
        p = book.patch
        self.rows, self.cols, self.patch = rows, cols, p
        onehot = np.zeros((len(book.patterns), p * p, NUM_LABELS), dtype=np.float32)
        np.put_along_axis(onehot, book.patterns[..., None].astype(np.int64), 1.0, axis=-1)
        self.register_buffer("book", torch.from_numpy(onehot.reshape(len(book.patterns), -1)).t().contiguous(), persistent=False)
        self.register_buffer("palette", torch.from_numpy(PALETTE.astype(np.float32)), persistent=False)

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        b = pixels.shape[0]
        p = self.patch
        x = pixels.to(torch.float32)
        spread = x.amax(-1) - x.amin(-1)
        d = ((x.unsqueeze(-2) - self.palette) ** 2).sum(-1)  # [B,H,W,6]
        labels = torch.where(spread < 24.0, torch.zeros_like(spread, dtype=torch.int64), d.argmin(-1) + 1)
        grey = x.mean(-1)
        labels = labels.view(b, self.rows, p, self.cols, p).permute(0, 1, 3, 2, 4).reshape(b, self.rows * self.cols, p * p)
        grey = grey.view(b, self.rows, p, self.cols, p).permute(0, 1, 3, 2, 4).reshape(b, self.rows * self.cols, p * p).mean(-1)
        onehot = torch.nn.functional.one_hot(labels, NUM_LABELS).to(torch.float32).reshape(b, self.rows * self.cols, -1)
        matches = torch.matmul(onehot, self.book)  # agreements per pattern
        code = matches.argmax(-1) + LEVELS
        bg_code = (torch.round(grey) - GREY_MIN).clamp(0, LEVELS - 1).to(torch.int64)
        empty = (labels == 0).all(-1)
        return torch.where(empty, bg_code, code).view(b, self.rows, self.cols)
