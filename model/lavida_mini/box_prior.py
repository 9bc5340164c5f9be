"""A box-size prior for grounding and plan boxes (model/README.md, "Package 0.4.7").

Decoded in one forward, the four coordinate slots of `<loc> x1 y1 x2 y2 </loc>` are four marginals: where a
scene has several objects, each slot's argmax may come from a different object and the box is near none.
Joint decoding under the (width, height) distribution of the training targets keeps each axis's two
coordinates on one object's edges:

    argmax over (w, h) in the prior, x1, y1 of  lp[0][x1] + max_{|d| <= tol} lp[2][x1 + w + d]
                                               + lp[1][y1] + max_{|d| <= tol} lp[3][y1 + h + d]
                                               + prior_weight * log p(w, h)

The prior is data, not code: the package's manifest carries it (`text.box_prior`: the bins it is counted
in, the tolerance and the (w, h, count) entries) and the TypeScript runtime (`libs/model/src/box-prior.ts`)
decodes the same way; a package without it decodes each slot by its argmax, as before. Grounding in more steps
(Sampler.ground_under_prior) and plans (Sampler.redecode_plan_boxes) use decode_box too.
"""
import json
import math
from collections import Counter
from typing import Dict, List, Sequence

import numpy as np

LOC_MAX = 1024
CANVAS = 64
DEFAULT_TOL = 8   # bins the far corner may lie from near + size: half a pixel (model/README "Package 0.4.7")


def to_bin(px: float) -> int:
    """The world library's quantisation: round(px / 64 * 1024), clamped (libs/world/src/grounding.ts)."""
    return min(LOC_MAX, max(0, int(math.floor(px / CANVAS * LOC_MAX + 0.5))))


def box_prior_from_samples(samples_path: str, tol: int = DEFAULT_TOL, max_entries: int = 256) -> Dict:
    """The (width, height) histogram, in bins, of the grounding targets of a prepared split's samples.jsonl
    (and of its multi-box targets where present): the `max_entries` most frequent sizes."""
    counts: Counter = Counter()
    with open(samples_path) as f:
        for line in f:
            r = json.loads(line)
            boxes = []
            g = r.get("grounding")
            if g and g.get("box"):
                boxes.append(g["box"])
            for b in boxes:
                counts[(to_bin(b[2]) - to_bin(b[0]), to_bin(b[3]) - to_bin(b[1]))] += 1
    entries = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:max_entries]
    return {"bins": LOC_MAX + 1, "tol": tol, "entries": [[w, h, c] for (w, h), c in entries]}


def _axis(lo: np.ndarray, hi: np.ndarray, size: int, tol: int):
    """max over a of lo[a] + max_{|d| <= tol} hi[a + size + d] (indices inside [0, n)) -> (score, a, b);
    ties go to the smallest a, then the smallest b."""
    best = _axis_top(lo, hi, size, tol, 1)
    return best[0] if best else (-math.inf, 0, 0)


def decode_box(lp: np.ndarray, prior: Dict, tol: int = None, prior_weight: float = 1.0) -> List[int]:
    """lp: (4, bins) log-probabilities of x1, y1, x2, y2 -> the 4 bins of the best box under the prior."""
    tol = prior["tol"] if tol is None else tol
    total = float(sum(e[2] for e in prior["entries"]))
    best, out = -math.inf, lp.argmax(-1).tolist()
    cache: Dict = {}
    for w, h, c in prior["entries"]:
        if ("x", w) not in cache:
            cache[("x", w)] = _axis(lp[0], lp[2], w, tol)
        if ("y", h) not in cache:
            cache[("y", h)] = _axis(lp[1], lp[3], h, tol)
        sx, x1, x2 = cache[("x", w)]
        sy, y1, y2 = cache[("y", h)]
        v = sx + sy + prior_weight * math.log(c / total)
        if v > best:
            best, out = v, [x1, y1, x2, y2]
    return out


def _axis_top(lo: np.ndarray, hi: np.ndarray, size: int, tol: int, k: int = 2):
    """The k best (score, near, far) pairs of _axis's objective, in _axis's tie order (fewer where fewer are finite)."""
    n = lo.shape[0]
    if size < 0:
        return []
    pad = np.full(n + size + 2 * tol, -np.inf)
    pad[tol:tol + n] = hi
    win = np.lib.stride_tricks.sliding_window_view(pad, 2 * tol + 1)   # row c: hi[c - tol .. c + tol]
    c = np.arange(n) + size
    score = (lo[:, None] + win[c]).ravel()                              # row-major: near, then far
    order = np.argsort(-score, kind="stable")[:k]
    w = 2 * tol + 1
    return [(float(score[j]), int(j // w), int(c[j // w] - tol + j % w)) for j in order if np.isfinite(score[j])]


def decode_box_margin(lp: np.ndarray, prior: Dict, tol: int = None):
    """-> (decode_box's bins, the score gap to the best different box). A sup-norm logit perturbation e moves a
    log-softmax value by at most 2e, a box's score (4 of them) by 8e and a gap by 16e: gap / 16 is the
    perturbation that can flip the decision (golden_tasks' margins)."""
    tol = prior["tol"] if tol is None else tol
    bins = decode_box(lp, prior, tol)
    total = float(sum(e[2] for e in prior["entries"]))
    cands = []
    for w, h, c in prior["entries"]:
        lw = math.log(c / total)
        for sx, x1, x2 in _axis_top(lp[0], lp[2], w, tol):
            for sy, y1, y2 in _axis_top(lp[1], lp[3], h, tol):
                cands.append((sx + sy + lw, [x1, y1, x2, y2]))
    best = max(v for v, b in cands if b == bins)
    other = max((v for v, b in cands if b != bins), default=-math.inf)
    return bins, best - other
