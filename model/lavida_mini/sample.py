"""Reference sampler for a trained lavida-o-mini checkpoint (PyTorch, CPU or CUDA).

    from lavida_mini.sample import load
    s = load("/tmp/ckpt-mini/checkpoint.pt", "/tmp/prep/eval/codebook.npz")
    out = s.text_to_image("a red circle LUMINANCE : 0.125;", seed=7)        # tokens (64) + rgb [64,64,3]
    layout = s.plan("a red circle")                                          # [{colour, shape, box, bins}]
    box = s.ground(codes, "the red circle", steps=1)                         # (x1, y1, x2, y2) px
    text = s.answer(codes, "what colour is the circle?"); verdict = s.reflect(codes, "a red circle")
    edited = s.edit(codes, "remove the red circle", seed=7)
    best = s.generate("a red circle", seed=7)                                # plan -> image -> reflect loop

Image sampling is the algorithm of libs/model/src/sampling.ts + text-to-image.ts, bit for bit given
the same logits: PCG32 (pcg32_srandom(seed, 54)), the stratified order (order seed 42), the shifted
unmask schedule, guidance (1 + g) cond - g uncond and multinomial sampling in float64 with a
sequential sum and V8's exp (fdlibm; numpy's exp differs from Math.exp in the last bit for about a
quarter of inputs, so `fexp` reimplements it). Text prompts are unpadded exactly as in the TypeScript
sampler (row 0 the prompt, row 1 every text token [mask]).

Text answers (plan, VQA, reflection) use LLaDA low-confidence remasking: argmax at every masked slot,
keep the most confident few per step. Grounding decodes its 4 `<loc_*>` slots in 1 step (all at once)
or 4 steps (most confident first), argmax restricted to the coordinate tokens.

The task templates are those of `train.Data.example` (the single definition of what the model saw).
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch

from .config import ModelConfig
from .box_prior import decode_box, decode_box_margin
from .labelvq import LabelCodebook, LabelDecode
from .tokenizer import WordTokenizer
from .train import ANSWER_LEN, Mini, load_mini

MASK64 = (1 << 64) - 1
PCG_MULTIPLIER = 6364136223846793005
ORDER_SEED = 42
# Answer slots fixed a forward. Plans one at a time since 0.4.1: four at once decodes a box's four
# coordinates from one forward, each its own argmax, and they do not agree (x2 < x1; model/README).
DEFAULT_PER_STEP = {"und": 2, "reflect": 2, "plan": 1, "plan_edit": 1}
DEFAULT_EOS_BIAS_TASKS = ("plan", "plan_edit")
CANVAS = 64
LOC_MAX = 1024
COLOURS = ("red", "green", "blue", "yellow", "purple", "orange")
SHAPES = ("circle", "square", "triangle")

# ---------------------------------------------------------------------------------------------------
# Bit-compatible ports of libs/model/src/sampling.ts


class Pcg32:
    """PCG-XSH-RR 32-bit generator, seeded like `pcg32_srandom(seed, 54)` (sampling.ts `Pcg32`)."""

    def __init__(self, seed: int, stream: int = 54) -> None:
        self.state = 0
        self.inc = ((int(stream) << 1) | 1) & MASK64
        self.next_uint32()
        self.state = (self.state + int(seed)) & MASK64
        self.next_uint32()

    def next_uint32(self) -> int:
        old = self.state
        self.state = (old * PCG_MULTIPLIER + self.inc) & MASK64
        xorshifted = (((old >> 18) ^ old) >> 27) & 0xFFFFFFFF
        rot = old >> 59
        return ((xorshifted >> rot) | (xorshifted << ((-rot) & 31))) & 0xFFFFFFFF

    def next_float(self) -> float:
        return self.next_uint32() / 4294967296.0

    def next_int(self, n: int) -> int:
        return math.floor(self.next_float() * n)

    def shuffle(self, items: list) -> list:
        for i in range(len(items) - 1, 0, -1):
            j = self.next_int(i + 1)
            items[i], items[j] = items[j], items[i]
        return items


def stratified_order(rows: int, cols: int, seed: int) -> List[int]:
    """The progressive multi-jittered unmasking order (sampling.ts `stratifiedOrder`)."""
    rng = Pcg32(seed)
    size = 1
    while size < max(rows, cols):
        size *= 2
    taken = bytearray(rows * cols)
    order: List[int] = []
    blocks = 1
    while blocks <= size:
        block = size // blocks
        visit = [[br, bc] for br in range(blocks) for bc in range(blocks)]
        rng.shuffle(visit)
        for br, bc in visit:
            r0, c0 = br * block, bc * block
            r1, c1 = min(r0 + block, rows), min(c0 + block, cols)
            if r0 >= rows or c0 >= cols:
                continue
            if any(taken[r * cols + c] for r in range(r0, r1) for c in range(c0, c1)):
                continue
            r = r0 + rng.next_int(r1 - r0)
            c = c0 + rng.next_int(c1 - c0)
            taken[r * cols + c] = 1
            order.append(r * cols + c)
        blocks *= 2
    return order


def correction_classes(rows: int, cols: int) -> List[List[int]]:
    """The correction sweeps' classes (sampling.ts `correctionClasses`): cells of equal row % 2 and
    column % 2, each in raster order, classes (0,0), (0,1), (1,0), (1,1), empty ones left out."""
    classes = [[r * cols + c for r in range(pr, rows, 2) for c in range(pc, cols, 2)] for pr in (0, 1) for pc in (0, 1)]
    return [c for c in classes if c]


def unmask_schedule(total: int, steps: int, shift: float) -> List[int]:
    """Tokens revealed per step, shifted schedule, few first (sampling.ts `unmaskSchedule`)."""
    n = max(1, min(steps, total))
    s = lambda t: (shift * t) / (1 + (shift - 1) * t)
    marks = [math.floor(s(i / n) * total) for i in range(n + 1)]
    counts = [max(1, marks[i + 1] - marks[i]) for i in range(n)][::-1]
    excess = sum(counts) - total
    i = len(counts) - 1
    while excess > 0 and i >= 0:
        take = min(excess, counts[i] - 1)
        counts[i] -= take
        excess -= take
        i -= 1
    i = len(counts) - 1
    while excess < 0:
        counts[i] += 1
        excess += 1
        i = (i - 1 + len(counts)) % len(counts)
    return counts


# V8's Math.exp is fdlibm's __ieee754_exp; this is the same arithmetic, vectorised (checked bit-exact
# against node 20 on 1.6M inputs). The only rounding steps are IEEE float64 + - * /, as in the C code.
_LN2HI, _LN2LO = 6.93147180369123816490e-01, 1.90821492927058770002e-10
_INVLN2 = 1.44269504088896338700e00
_P = (1.66666666666666019037e-01, -2.77777777770155933842e-03, 6.61375632143793436117e-05,
      -1.65339022054652515390e-06, 4.13813679705723846039e-08)
_O_THRESHOLD, _U_THRESHOLD = 7.09782712893383973096e02, -7.45133219101941108420e02
_TWOM1000 = 9.33263618503218878990e-302


def fexp(x: np.ndarray) -> np.ndarray:
    """exp(x) in float64, bit-identical to JavaScript's Math.exp on V8."""
    x = np.ascontiguousarray(x, dtype=np.float64)
    hx = (x.view(np.uint64) >> np.uint64(32)).astype(np.int64)
    xsb = (hx >> 31) & 1
    ahx = hx & 0x7FFFFFFF
    sign = np.where(xsb == 1, -1.0, 1.0)
    mid = (ahx > 0x3FD62E42) & (ahx < 0x3FF0A2B2)        # 0.5 ln2 < |x| < 1.5 ln2
    big = ahx >= 0x3FF0A2B2
    with np.errstate(all="ignore"):
        kb = np.trunc(_INVLN2 * x + 0.5 * sign)           # (int)(invln2 * x + halF[xsb])
        kb = np.nan_to_num(np.clip(kb, -2000, 2000))
        k = np.where(mid, 1 - 2 * xsb, np.where(big, kb.astype(np.int64), 0))
        t = k.astype(np.float64)
        hi = np.where(mid, x - sign * _LN2HI, np.where(big, x - t * _LN2HI, x))
        lo = np.where(mid, sign * _LN2LO, np.where(big, t * _LN2LO, 0.0))
        xr = np.where(ahx > 0x3FD62E42, hi - lo, x)
        tt = xr * xr
        c = xr - tt * (_P[0] + tt * (_P[1] + tt * (_P[2] + tt * (_P[3] + tt * _P[4]))))
        y0 = 1.0 - ((xr * c) / (c - 2.0) - xr)
        y = 1.0 - ((lo - (xr * c) / (2.0 - c)) - hi)
        kk = np.clip(k, -1100, 1100)
        normal = kk >= -1021
        e = np.where(normal, kk, kk + 1000)
        twopk = ((e + 1023).astype(np.uint64) << np.uint64(52)).view(np.float64)
        out = np.where(k == 0, y0, np.where(normal, y * twopk, y * twopk * _TWOM1000))
        out = np.where(ahx < 0x3E300000, 1.0 + x, out)
        out = np.where(x > _O_THRESHOLD, np.inf, out)
        out = np.where(x < _U_THRESHOLD, 0.0, out)
        out = np.where(np.isnan(x), x, out)
    return out


def guide(cond: np.ndarray, uncond: np.ndarray, g: float) -> np.ndarray:
    """(1 + g) cond - g uncond in float64 (sampling.ts `guide`)."""
    return (1 + g) * np.asarray(cond, np.float64) - g * np.asarray(uncond, np.float64)


def sample_logits_rows(logits: np.ndarray, temperature: float, rng: Pcg32, top_k: int = 0, min_p: float = 0.0) -> List[int]:
    """`sampleLogits` applied to each row in order (one rng draw per row when temperature > 0).
    top_k > 0 keeps the codes whose logit is at least the k-th largest; min_p > 0 keeps the codes whose
    weight exp((l - max) / T), their probability over the most probable one's, is at least min_p."""
    logits = np.asarray(logits, np.float64)
    best = logits.argmax(-1)                               # first maximum, as the TS loop
    if temperature <= 0:
        return [int(b) for b in best]
    mx = logits[np.arange(len(logits)), best][:, None]
    weights = fexp((logits - mx) / temperature)
    if top_k > 0 and top_k < logits.shape[1]:
        kth = -np.sort(-logits, axis=1)[:, top_k - 1][:, None]
        weights = np.where(logits >= kth, weights, 0.0)
    if min_p > 0:
        weights = np.where(weights >= min_p, weights, 0.0)
    total = np.add.accumulate(weights, axis=1)[:, -1]      # sequential sum, as `sum += w[i]`
    out = []
    for row in range(len(logits)):
        u = rng.next_float() * total[row]
        # u -= w[i] sequentially; the first i where u < 0.
        rem = np.subtract.accumulate(np.concatenate(([u], weights[row])))[1:]
        hit = np.flatnonzero(rem < 0)
        out.append(int(hit[0]) if len(hit) else int(best[row]))
    return out


def log_softmax_at(logits: np.ndarray, picks: Sequence[int]) -> np.ndarray:
    """log p(picks[r]) of each row's softmax at temperature 1, float64 with fexp and a sequential sum."""
    logits = np.asarray(logits, np.float64)
    mx = logits.max(-1)
    total = np.add.accumulate(fexp(logits - mx[:, None]), axis=1)[:, -1]
    return logits[np.arange(len(logits)), np.asarray(picks)] - mx - np.log(total)


def confidence_pick(scores: np.ndarray, drawn: Sequence[int], count: int, alg_temp: float, rng: Pcg32) -> List[int]:
    """The published code's "mmada" policy: confidence = log p(drawn code) + alg_temp * Gumbel noise
    (one draw a row, in row order, after the codes), the `count` most confident rows, ties to the lower
    row; returned in ascending row order."""
    conf = log_softmax_at(scores, drawn)
    if alg_temp > 0:
        u = np.asarray([max(rng.next_float(), 1e-20) for _ in range(len(conf))])
        conf = conf + alg_temp * -np.log(-np.log(u))
    order = sorted(range(len(conf)), key=lambda r: (-conf[r], r))
    return sorted(order[:count])


def sample_logits(logits: Sequence[float], temperature: float, rng: Pcg32) -> int:
    return sample_logits_rows(np.asarray(logits, np.float64)[None], temperature, rng)[0]


# ---------------------------------------------------------------------------------------------------
# Text helpers


def conditioning_text(prompt: str, luminance: Optional[float] = None) -> str:
    """text-to-image.ts `conditioningText`: the prompt plus ` LUMINANCE : v;` (3 decimals)."""
    return prompt if luminance is None else f"{prompt} LUMINANCE : {luminance:.3f};"


def strip_micro(text: str) -> str:
    """The prompt without trailing `KEY : value;` micro-conditioning."""
    prompt = text.strip()
    pattern = re.compile(r"\s*([A-Za-z_]+)\s*:\s*([^;]*?)\s*;\s*$")
    m = pattern.search(prompt)
    while m is not None:
        prompt = prompt[: m.start()].strip()
        m = pattern.search(prompt)
    return prompt


def detokenize(words: Sequence[str]) -> str:
    """Word tokens -> text: spaces between words, none before , ; . ? nor inside numbers."""
    out = ""
    for w in words:
        if not out:
            out = w
        elif w in (",", ";", "?") or (w == "." and not out[-1].isdigit()):
            out += w
        elif (w.isdigit() or w == ".") and (out[-1].isdigit() or out[-1] == "."):
            out += w
        else:
            out += " " + w
    return out


class _Gather(torch.nn.Module):
    """The image head on selected sequence positions only."""

    def __init__(self, head: torch.nn.Module, positions: torch.Tensor) -> None:
        super().__init__()
        self.head, self.positions = head, positions

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(x.index_select(1, self.positions))


@dataclass
class Attempt:
    tokens: List[int]
    rgb: np.ndarray
    text: str
    verdict: Optional[str] = None


class Sampler:
    """A loaded checkpoint with every task's decoding."""

    def __init__(self, model: Mini, tok: WordTokenizer, book: LabelCodebook, cfg: ModelConfig, device: str = "cpu") -> None:
        self.model, self.tok, self.book, self.cfg, self.device = model, tok, book, cfg, device
        self.sp = tok.special_tokens
        self.decoder = LabelDecode(book, cfg.grid_rows, cfg.grid_cols)
        self.order = stratified_order(cfg.grid_rows, cfg.grid_cols, ORDER_SEED)
        self.loc0 = tok.loc_first_id
        self.step: Optional[int] = None
        # Answer-slot decoding per task (the package's `tasks.per_step` / `tasks.eos_bias`): `load` sets
        # eos_bias from the checkpoint's training arguments (trained_eos_bias).
        self.per_step: Dict[str, int] = dict(DEFAULT_PER_STEP)
        self.eos_bias: Dict[str, float] = {}
        # the package's tasks.box_prior (box_prior.py): one-step grounding decoded jointly under it; None: per-slot argmax
        self.box_prior: Optional[Dict] = None
        self.edit_plans = False       # the package has the plan_edit / edit_plan templates (editing with a plan)
        self.plan_box_prior = False   # the package's tasks.box_prior.plans: plan boxes re-decoded under it (redecode_plan_boxes)
        # Which image positions a step reveals (the published code's `confidence_policy` and
        # `order_cutoff`): steps whose 1-based index / steps is at most `order_cutoff` take the next
        # positions of the stratified order; later steps take the masked positions of highest
        # confidence log p(sampled code) + alg_temp * Gumbel noise ("mmada"). 1.0: stratified only
        # (the default, as every package up to 0.4.1); 0.0: confidence from the first step.
        self.order_cutoff: float = 1.0
        self.alg_temp: float = 1.0
        # Correction sweeps after the last step (the package's `sampling.correction_sweeps`; 0 up to 0.4.4).
        # A sweep visits the four parity classes of the grid (cells of equal row % 2 and column % 2: 16
        # cells, no two of them neighbours), masks one class, predicts it from every other cell and the
        # text, and puts each cell's argmax code there (diffusion.ts `ImageDiffusion`, bit for bit).
        # correction_guidance (`sampling.correction_guidance`): the guidance of those forwards where it is
        # not the image's; 0 predicts from the conditional row alone.
        self.correction_sweeps: int = 0
        self.correction_guidance: Optional[float] = None
        # The published code's `cfg_interval` (lo, hi): step i of S is guided where lo <= i / S < hi and
        # takes the conditional row alone elsewhere; (0, 1) guides every step (every package up to 0.4.5).
        # Plain and planned text-to-image only: edits (a condition grid) and regenerations from a critique
        # (an image prefix) guide every step, their text must steer the first steps (an interval of
        # (0.25, 1) costs 0.4.5's edits 0.04 and plan + reflect 0.03).
        # temperature_end (the published code's `dynamic_temperature` / `min_temperature`): the sampling
        # temperature of step i goes linearly from the image's temperature at step 0 to temperature_end at
        # the last step; None keeps it constant.
        self.cfg_interval: Tuple[float, float] = (0.0, 1.0)
        self.temperature_end: Optional[float] = None
        # Truncated sampling of image codes in the schedule's steps (sample_logits_rows): the published
        # code's top_k, and min_p; 0 keeps every code.
        self.top_k: int = 0
        self.min_p: float = 0.0

    # -- low level -------------------------------------------------------------------------------
    def enc(self, text: str) -> List[int]:
        return self.tok.encode(text)

    def decode_rgb(self, tokens: Sequence[Sequence[int]]) -> np.ndarray:
        ids = torch.tensor(np.asarray(tokens, dtype=np.int64)).view(-1, self.cfg.grid_rows, self.cfg.grid_cols)
        return self.decoder(ids).numpy()

    def layout_ids(self, items: Sequence[dict]) -> List[int]:
        """`train.Data.layout`: <box> colour shape </box> <loc> x1 y1 x2 y2 </loc> per item."""
        ids: List[int] = []
        for it in items:
            ids += [self.sp["box_begin"], *self.enc(f"{it['colour']} {it['shape']}"), self.sp["box_end"], self.sp["loc_begin"]]
            ids += [self.tok.loc_id(int(b)) for b in it["bins"]] + [self.sp["loc_end"]]
        return ids

    @torch.no_grad()
    def _forward(self, text: List[List[int]], prefix: Optional[np.ndarray], image: Optional[np.ndarray], need_text: bool,
                 image_positions: Optional[Sequence[int]] = None):
        """Rows padded at the end with [pad] (key-padded). Returns (text logits, image logits) float32 numpy.
        With image_positions, the image head runs on those image positions only (the tokens a step
        reveals), which is most of the generation branch's cost."""
        T = max(len(t) for t in text)
        pad = self.sp["pad"]
        ids = torch.tensor([t + [pad] * (T - len(t)) for t in text], dtype=torch.long, device=self.device)
        tpad = torch.tensor([[False] * len(t) + [True] * (T - len(t)) for t in text], device=self.device)
        pre = None if prefix is None else torch.as_tensor(np.asarray(prefix, np.int64), device=self.device)
        img = None if image is None else torch.as_tensor(np.asarray(image, np.int64), device=self.device)
        core = self.model.core
        head = core.image_head
        if image_positions is not None:
            core.image_head = _Gather(head, torch.as_tensor(list(image_positions), dtype=torch.long, device=self.device))
        try:
            tl, il = self.model(ids, tpad, pre, img, need_text)
        finally:
            core.image_head = head
        return (None if tl is None else tl.float().cpu().numpy(), None if il is None else il.float().cpu().numpy())

    # -- image generation (masked diffusion on the generation branch) ------------------------------
    def sample_images(self, texts: List[List[int]], seeds: List[int], prefixes: Optional[np.ndarray] = None,
                      condition: Optional[np.ndarray] = None, steps: int = 16, guidance: float = 3.0,
                      temperature: float = 1.0, shift: float = 3.0) -> List[List[int]]:
        """Samples one image per (text ids, seed); all texts must have the same length (no padding,
        exactly the TypeScript sampler's sequence). prefixes [B,64] semantic codes (feedback) or None;
        condition [B,64] edit-condition codes (VQ condition on the generation branch) or None.
        Guidance masks every text token in the unconditional row and keeps prefix and condition."""
        B = len(texts)
        if len({len(t) for t in texts}) != 1:
            raise ValueError("sample_images needs texts of one length (group them)")
        cfg = self.cfg
        n = cfg.num_image_tokens
        rows = 2 if guidance > 0 else 1
        schedule = unmask_schedule(n, steps, shift)
        rngs = [Pcg32(s) for s in seeds]
        tokens = np.full((B, n), cfg.mask_id, dtype=np.int64)
        text_rows = [list(t) for t in texts]
        if rows == 2:
            text_rows += [[self.sp["mask"]] * len(t) for t in texts]
        pre = None if prefixes is None else np.concatenate([prefixes] * rows, 0)
        cond = None if condition is None else np.asarray(condition, np.int64) + cfg.condition_offset
        cursor = 0
        offset = n if cond is not None else 0
        for step, count in enumerate(schedule):
            image = np.concatenate([tokens] * rows, 0)
            if cond is not None:
                image = np.concatenate((np.concatenate([cond] * rows, 0), image), 1)
            stratified = (step + 1) / len(schedule) <= self.order_cutoff
            # Stratified steps run the image head on the cells they reveal; confidence steps on the whole
            # output grid (each row's masked cells differ once confidence has chosen), never on the condition.
            cells = self.order[cursor:cursor + count] if stratified else range(n)
            _, logits = self._forward(text_rows, pre, image, need_text=False, image_positions=[offset + i for i in cells])
            lo, hi = self.cfg_interval
            g_step = guidance if cond is not None or prefixes is not None or lo <= step / len(schedule) < hi else 0.0
            t_step = temperature if self.temperature_end is None or len(schedule) < 2 else \
                temperature + (self.temperature_end - temperature) * step / (len(schedule) - 1)
            for b in range(B):
                at = slice(None) if stratified else np.flatnonzero(tokens[b] == cfg.mask_id)
                c = logits[b, at]
                scores = guide(c, logits[B + b, at], g_step) if rows == 2 and g_step > 0 else c.astype(np.float64)
                drawn = sample_logits_rows(scores, t_step, rngs[b], self.top_k, self.min_p)
                if stratified:
                    tokens[b, cells] = drawn
                else:
                    chosen = confidence_pick(scores, drawn, count, self.alg_temp, rngs[b])
                    tokens[b, at[chosen]] = [drawn[i] for i in chosen]
            cursor += count
        if self.correction_sweeps:
            self._correct(tokens, texts, prefixes, cond, guidance, rngs)
        return tokens.tolist()

    def _correct(self, tokens: np.ndarray, texts: List[List[int]], prefixes: Optional[np.ndarray],
                 cond: Optional[np.ndarray], guidance: float, rngs: List["Pcg32"]) -> None:
        """Correction sweeps over the parity classes (see __init__), in place; cond already offset."""
        cfg = self.cfg
        B, n = tokens.shape
        g = guidance if self.correction_guidance is None else self.correction_guidance
        # The image's rows, or the conditional row alone where the correction is unguided (the runtime
        # runs the image's rows and takes the first).
        use_rows = 2 if guidance > 0 and g > 0 else 1
        t_rows = [list(t) for t in texts] + ([[self.sp["mask"]] * len(t) for t in texts] if use_rows == 2 else [])
        p_rows = None if prefixes is None else np.concatenate([prefixes] * use_rows, 0)
        classes = correction_classes(cfg.grid_rows, cfg.grid_cols)
        offset = n if cond is not None else 0
        for _ in range(self.correction_sweeps):
            for cells in classes:
                masked = tokens.copy()
                masked[:, cells] = cfg.mask_id
                image = np.concatenate([masked] * use_rows, 0)
                if cond is not None:
                    image = np.concatenate((np.concatenate([cond] * use_rows, 0), image), 1)
                _, logits = self._forward(t_rows, p_rows, image, need_text=False, image_positions=[offset + i for i in cells])
                for b in range(B):
                    c = logits[b]
                    scores = guide(c, logits[B + b], g) if use_rows == 2 else c.astype(np.float64)
                    tokens[b, cells] = sample_logits_rows(scores, 0.0, rngs[b])

    def t2i_text(self, prompt_text: str, plan_layout: Optional[Sequence[dict]] = None,
                 feedback: Optional[str] = None) -> List[int]:
        """The t2i / t2i_plan / t2i_feedback text of train.Data.example."""
        ids = self.enc(prompt_text)
        if plan_layout:
            ids += self.enc(" plan :") + self.layout_ids(plan_layout)
        if feedback is not None:
            ids += self.enc(" feedback : " + feedback)
        if len(ids) > self.cfg.max_text_len:
            raise ValueError(f"prompt is {len(ids)} tokens, longer than {self.cfg.max_text_len}")
        return ids

    def text_to_image(self, prompt_text: str, seed: int, steps: int = 16, guidance: float = 3.0,
                      temperature: float = 1.0, shift: float = 3.0, plan_layout: Optional[Sequence[dict]] = None,
                      feedback: Optional[Tuple[str, Sequence[int]]] = None) -> Attempt:
        """One image. prompt_text may carry micro-conditioning (`... LUMINANCE : 0.125;`); plan_layout
        is a list of {colour, shape, bins}; feedback is (verdict text, previous image codes)."""
        ids = self.t2i_text(prompt_text, plan_layout, None if feedback is None else feedback[0])
        prefix = None if feedback is None else np.asarray([feedback[1]], np.int64)
        tokens = self.sample_images([ids], [seed], prefix, None, steps, guidance, temperature, shift)[0]
        return Attempt(tokens, self.decode_rgb([tokens])[0], prompt_text)

    def edit_text(self, instruction: str, plan_layout: Optional[Sequence[dict]] = None) -> List[int]:
        """The edit / edit_plan text of train.Data.example: `edit : {instruction}` (+ ` plan : {layout}`)."""
        ids = self.enc("edit : " + instruction)
        if plan_layout:
            ids += self.enc(" plan :") + self.layout_ids(plan_layout)
        if len(ids) > self.cfg.max_text_len:
            raise ValueError(f"instruction is {len(ids)} tokens, longer than {self.cfg.max_text_len}")
        return ids

    def edit(self, image_codes: Sequence[int], instruction: str, seed: int, steps: int = 16, guidance: float = 3.0,
             temperature: float = 1.0, shift: float = 3.0, plan_layout: Optional[Sequence[dict]] = None) -> Attempt:
        """Editing: `edit : {instruction}` (with a plan: + ` plan : {layout}`, the edit's region) + the image as
        VQ-condition tokens; guidance on the text only (the unconditional row masks the plan too, as trained)."""
        ids = self.edit_text(instruction, plan_layout)
        tokens = self.sample_images([ids], [seed], None, np.asarray([image_codes]), steps, guidance, temperature, shift)[0]
        return Attempt(tokens, self.decode_rgb([tokens])[0], instruction)

    # -- text decoding ----------------------------------------------------------------------------
    def decode_text(self, heads: List[List[int]], length: int, prefixes: Optional[np.ndarray] = None,
                    per_step: int = 2, tail: Optional[List[int]] = None,
                    allowed: Optional[Tuple[int, int]] = None, eos_bias: float = 0.0,
                    uncond_heads: Optional[List[List[int]]] = None, guidance: float = 0.0) -> List[List[int]]:
        """LLaDA low-confidence remasking over an answer slot of `length` masks after each head:
        every step, argmax at every masked slot, keep the `per_step` most confident (p of the argmax).
        `tail` ids follow the slot; `allowed` = (first, count) restricts the argmax to a token range;
        `eos_bias` is added to the [eos] logit (log 1/w undoes a training loss weight w on [eos]).
        `uncond_heads` (each as long as its head) with `guidance` g > 0: the slot's logits are
        (1 + g) cond - g uncond, the unconditional row reading the same image and slot."""
        B = len(heads)
        mask = self.sp["mask"]
        P = 0 if prefixes is None else prefixes.shape[1]
        slots = np.full((B, length), mask, dtype=np.int64)
        tail = tail or []
        guided = uncond_heads is not None and guidance > 0
        if guided and [len(h) for h in uncond_heads] != [len(h) for h in heads]:
            raise ValueError("uncond_heads must match heads in length")
        pre = None if prefixes is None else (np.concatenate([prefixes] * 2, 0) if guided else prefixes)
        while (slots == mask).any():
            rows = [h + s.tolist() + tail for h, s in zip(heads, slots)]
            if guided:
                rows += [h + s.tolist() + tail for h, s in zip(uncond_heads, slots)]
            logits, _ = self._forward(rows, pre, None, need_text=True)
            for b in range(B):
                masked = np.flatnonzero(slots[b] == mask)
                if not len(masked):
                    continue
                pos = P + len(heads[b]) + masked
                lg = torch.from_numpy(logits[b, pos]).double()
                if guided:
                    lg = (1 + guidance) * lg - guidance * torch.from_numpy(logits[B + b, pos]).double()
                if allowed is not None:
                    lg = lg[:, allowed[0]:allowed[0] + allowed[1]]
                else:  # a slot never decodes to [mask] (it would stay masked) or [pad]
                    lg[:, [mask, self.sp["pad"]]] = -math.inf
                    if eos_bias:
                        lg[:, self.sp["eos"]] += eos_bias
                p = torch.softmax(lg, -1)
                conf, arg = p.max(-1)
                arg = arg.numpy() + (allowed[0] if allowed is not None else 0)
                keep = np.argsort(-conf.numpy(), kind="stable")[:per_step]
                slots[b, masked[keep]] = arg[keep]
        return slots.tolist()

    def words(self, ids: Sequence[int]) -> List[str]:
        """Tokens up to the first [eos], as vocabulary strings."""
        out = []
        for i in ids:
            if i == self.sp["eos"]:
                break
            out.append(self.tok.vocab[i])
        return out

    def unconditioned(self, heads: List[List[int]], lead: int, trail: int = 0) -> List[List[int]]:
        """The heads with every token but the first `lead` and the last `trail` masked: the unconditional
        rows of text guidance on an answer slot (`decode_text(uncond_heads=)`)."""
        return [h[:lead] + [self.sp["mask"]] * (len(h) - lead - trail) + h[len(h) - trail:] for h in heads]

    def answer_batch(self, codes: np.ndarray, questions: List[str], per_step: Optional[int] = None,
                     guidance: float = 0.0) -> List[str]:
        """guidance > 0: text guidance against the question masked (a probe, runs/text-guidance.py; the package has none)."""
        heads = [self.enc("question : " + q) for q in questions]
        out = self.decode_text(heads, ANSWER_LEN["und"], np.asarray(codes, np.int64), per_step or self.per_step["und"],
                               eos_bias=self.eos_bias.get("und", 0.0),
                               uncond_heads=self.unconditioned(heads, len(self.enc("question :"))) if guidance > 0 else None,
                               guidance=guidance)
        return [detokenize(self.words(o)) for o in out]

    def answer(self, image_codes: Sequence[int], question: str) -> str:
        return self.answer_batch(np.asarray([image_codes]), [question])[0]

    def reflect_batch(self, codes: np.ndarray, prompts: List[str], per_step: Optional[int] = None) -> List[str]:
        heads = [self.enc("evaluate : " + strip_micro(p)) for p in prompts]
        out = self.decode_text(heads, ANSWER_LEN["reflect"], np.asarray(codes, np.int64), per_step or self.per_step["reflect"],
                               eos_bias=self.eos_bias.get("reflect", 0.0))
        return [detokenize(self.words(o)) for o in out]

    def reflect(self, image_codes: Sequence[int], prompt: str) -> str:
        return self.reflect_batch(np.asarray([image_codes]), [prompt])[0]

    def parse_layout(self, ids: Sequence[int]) -> List[dict]:
        """Items `<box> colour shape </box> <loc> b b b b </loc>` of a decoded plan; malformed items are skipped."""
        sp = self.sp
        ids = list(ids)
        if sp["eos"] in ids:
            ids = ids[: ids.index(sp["eos"])]
        items, i = [], 0
        while i < len(ids):
            if ids[i] != sp["box_begin"]:
                i += 1
                continue
            try:
                j = ids.index(sp["box_end"], i)
            except ValueError:
                break
            words = [self.tok.vocab[t] for t in ids[i + 1:j]]
            k = j + 1
            ok = len(words) == 2 and words[0] in COLOURS and words[1] in SHAPES
            ok = ok and k + 5 < len(ids) + 0 and ids[k] == sp["loc_begin"] and ids[k + 5] == sp["loc_end"]
            bins = [t - self.loc0 for t in ids[k + 1:k + 5]] if ok else []
            if ok and all(0 <= b <= LOC_MAX for b in bins):
                box = [b / LOC_MAX * CANVAS for b in bins]
                items.append({"colour": words[0], "shape": words[1], "bins": bins, "box": box})
                i = k + 6
            else:
                i = j + 1
        return items

    def plan_batch(self, prompts: List[str], per_step: Optional[int] = None) -> List[List[dict]]:
        heads = [self.enc("plan : " + strip_micro(p)) for p in prompts]
        out = self.decode_text(heads, ANSWER_LEN["plan"], None, per_step or self.per_step["plan"],
                               eos_bias=self.eos_bias.get("plan", 0.0))
        if self.plan_box_prior and self.box_prior is not None:
            out = [self.redecode_plan_boxes(h, list(o)) for h, o in zip(heads, out)]
        return [self.parse_layout(o) for o in out]

    def plan_edit_batch(self, codes: np.ndarray, instructions: List[str], per_step: Optional[int] = None) -> List[List[dict]]:
        """Editing with a plan, its first step (the published code's create_plan_edit): the source image (semantic
        prefix) + `edit plan : {instruction}` -> the edit's region as layout items (the object added, removed or
        changed), decoded as plans are, boxes re-decoded under the box prior where the package's prior has plans."""
        heads = [self.enc("edit plan : " + i) for i in instructions]
        codes = np.asarray(codes, np.int64)
        out = self.decode_text(heads, ANSWER_LEN["plan_edit"], codes, per_step or self.per_step["plan_edit"],
                               eos_bias=self.eos_bias.get("plan_edit", 0.0))
        if self.plan_box_prior and self.box_prior is not None:
            out = [self.redecode_plan_boxes(h, list(o), prefix=codes[b:b + 1]) for b, (h, o) in enumerate(zip(heads, out))]
        return [self.parse_layout(o) for o in out]

    def plan_edit(self, image_codes: Sequence[int], instruction: str) -> List[dict]:
        return self.plan_edit_batch(np.asarray([image_codes]), [instruction])[0]

    def redecode_plan_boxes(self, head: List[int], ids: List[int], gaps: Optional[List[float]] = None,
                            prefix: Optional[np.ndarray] = None) -> List[int]:
        """Each layout item's 4 coordinates masked again, in order, and decoded jointly under the box prior from
        one forward with the rest of the plan as decoded (and the image `prefix` of an edit's plan) (the package's `tasks.box_prior.plans`; the runtime's
        `redecodePlanBoxes`). Plans decode one token a step, and an item's width and height come from different
        steps: 228 of 638 boxes of the table's plans were 12 x 20 or 20 x 12, which no object has. `gaps`: each
        decision's score gap (box_prior.decode_box_margin) is appended to it."""
        sp = self.sp
        ids = list(ids)
        end = ids.index(sp["eos"]) if sp["eos"] in ids else len(ids)
        for k in range(end):
            if ids[k] != sp["loc_begin"] or k + 5 >= end or ids[k + 5] != sp["loc_end"]:
                continue
            if not all(self.loc0 <= t <= self.loc0 + LOC_MAX for t in ids[k + 1:k + 5]):
                continue
            row = ids[:k + 1] + [sp["mask"]] * 4 + ids[k + 5:]
            lg, _ = self._forward([head + row], prefix, None, need_text=True)
            at = (0 if prefix is None else prefix.shape[1]) + len(head) + k + 1
            lp = self.loc_logprobs(lg[0, at:at + 4])
            if gaps is None:
                bins = decode_box(lp, self.box_prior)
            else:
                bins, gap = decode_box_margin(lp, self.box_prior)
                gaps.append(gap)
            ids[k + 1:k + 5] = [self.loc0 + b for b in bins]
        return ids

    def plan(self, prompt: str, per_step: Optional[int] = None) -> List[dict]:
        """prompt -> layout [{colour, shape, bins, box (pixels)}] (micro-conditioning is stripped)."""
        return self.plan_batch([prompt], per_step)[0]

    def ground_batch(self, codes: np.ndarray, refs: List[str], steps: int = 1, guidance: float = 0.0) -> List[List[float]]:
        """guidance > 0: text guidance against the expression masked (a probe, runs/text-guidance.py; the package has none).
        With `self.box_prior` (the package's `tasks.box_prior`) the slots are decoded under it (ground_under_prior)."""
        heads = [self.enc("locate : " + r) + [self.sp["loc_begin"]] for r in refs]
        if self.box_prior is not None and guidance == 0:
            return [[b / LOC_MAX * CANVAS for b in bins] for bins in self.ground_under_prior(codes, heads, steps)]
        per_step = math.ceil(4 / max(1, min(4, steps)))
        out = self.decode_text(heads, 4, np.asarray(codes, np.int64), per_step, tail=[self.sp["loc_end"]],
                               allowed=(self.loc0, LOC_MAX + 1),
                               uncond_heads=self.unconditioned(heads, len(self.enc("locate :")), 1) if guidance > 0 else None,
                               guidance=guidance)
        return [[(t - self.loc0) / LOC_MAX * CANVAS for t in o] for o in out]

    def ground_under_prior(self, codes: np.ndarray, heads: List[List[int]], steps: int = 1,
                           margins: Optional[List[float]] = None) -> List[List[int]]:
        """The 4 coordinate slots decoded under the box prior (box_prior.decode_box; libs/model/src/box-prior.ts) in
        `steps` forwards: each forward, the best box under the prior given the slots fixed so far (a fixed slot's
        log-probability is 0 at its bin), then the ceil(4 / steps) free slots whose bin in that box is the most
        probable are fixed (ties to the earlier slot). One step: the joint box. Rows of one head length share a
        forward. `margins` (one row only): the sup-norm logit perturbation that could change a decision is appended."""
        per_step = math.ceil(4 / max(1, min(4, steps)))
        fixed = [[None] * 4 for _ in heads]
        codes = np.asarray(codes, np.int64)
        while any(f is None for row in fixed for f in row):
            for L in sorted({len(h) for h in heads}):
                idx = [i for i, h in enumerate(heads) if len(h) == L and any(f is None for f in fixed[i])]
                if not idx:
                    continue
                rows = [heads[i] + [self.sp["mask"] if f is None else self.loc0 + f for f in fixed[i]] + [self.sp["loc_end"]]
                        for i in idx]
                lg, _ = self._forward(rows, codes[idx], None, need_text=True)
                at = codes.shape[1] + L
                lps = self.loc_logprobs(lg[:, at:at + 4])
                for j, i in enumerate(idx):
                    lp = lps[j]
                    for k, f in enumerate(fixed[i]):
                        if f is not None:
                            lp[k] = -np.inf
                            lp[k][f] = 0.0
                    if margins is None:
                        box = decode_box(lp, self.box_prior)
                    else:
                        box, gap = decode_box_margin(lp, self.box_prior)
                        margins.append(gap / 16)
                    free = sorted((k for k in range(4) if fixed[i][k] is None), key=lambda k: -lp[k][box[k]])
                    if margins is not None and len(free) > per_step:   # the keep boundary: each value moves by 2e
                        margins.append((lp[free[per_step - 1]][box[free[per_step - 1]]] - lp[free[per_step]][box[free[per_step]]]) / 4)
                    for k in free[:per_step]:
                        fixed[i][k] = int(box[k])
        return fixed

    def loc_logprobs(self, logits: np.ndarray) -> np.ndarray:
        """Text logits [..., vocab] of coordinate slots -> float64 log-probabilities over the coordinate bins."""
        return torch.log_softmax(torch.from_numpy(np.asarray(logits[..., self.loc0:self.loc0 + LOC_MAX + 1])).double(), -1).numpy()

    def ground(self, image_codes: Sequence[int], ref: str, steps: int = 1) -> List[float]:
        """-> (x1, y1, x2, y2) in pixels: 4 loc tokens, all at once (steps=1) or one a step (steps=4)."""
        return self.ground_batch(np.asarray([image_codes]), [ref], steps)[0]

    # -- planning + reflection loop --------------------------------------------------------------
    def generate(self, prompt_text: str, seed: int, rounds: int = 3, use_plan: bool = True,
                 feedback_with_plan: bool = False, **kw) -> dict:
        """plan -> image (with the plan) -> reflect; while the verdict is not `correct`, regenerate with
        the critique and the previous attempt's codes as the semantic prefix, up to `rounds` images.
        Feedback rounds use the t2i_feedback template (prompt + feedback, no plan) unless
        feedback_with_plan. Returns {image: accepted or last Attempt, attempts, verdicts, plan}."""
        layout = self.plan(prompt_text) if use_plan else []
        attempts: List[Attempt] = []
        fb = None
        for r in range(rounds):
            a = self.text_to_image(prompt_text, seed + r * 2 ** 32,
                                   plan_layout=layout if (r == 0 or feedback_with_plan) else None,
                                   feedback=fb, **kw)
            a.verdict = self.reflect(a.tokens, prompt_text)
            attempts.append(a)
            if a.verdict.strip() == "correct":
                break
            fb = (a.verdict, a.tokens)
        return {"image": attempts[-1], "attempts": attempts, "verdicts": [a.verdict for a in attempts], "plan": layout}


def trained_tasks(train_args: dict) -> List[str]:
    """The tasks a checkpoint's last run drew (train.TASKS with its --task-weights); plan_edit and edit_plan only
    where that run gave them a weight."""
    from .train import parse_task_weights
    return [t for t, w in parse_task_weights(str(train_args.get("task_weights", "") or "")).items() if w > 0]


def trained_eos_bias(train_args: dict, tasks: Sequence[str] = ("und", "reflect", "plan", "plan_edit")) -> Dict[str, float]:
    """-log w for each answer task whose [eos] targets train.py weighted w (`--eos-weight w`, on every text
    task or on `--eos-weight-tasks`): a class weighted w in the cross-entropy is predicted w times too
    often, so adding -log w to its logit restores the unweighted odds (logit adjustment). Only the plan
    slot gets it (DEFAULT_EOS_BIAS_TASKS): on the short answers the weight was meant to stay (it keeps a
    one-word answer from being drowned by its padding, model/README)."""
    w = float(train_args.get("eos_weight", 1.0) or 1.0)
    only = set(filter(None, str(train_args.get("eos_weight_tasks", "") or "").split(",")))
    if w == 1.0 or w <= 0:
        return {}
    drawn = set(trained_tasks(train_args))
    return {t: round(-math.log(w), 4) for t in tasks
            if t in DEFAULT_EOS_BIAS_TASKS and (not only or t in only) and (t != "plan_edit" or t in drawn)}


def load(checkpoint_path: str, codebook_path: str, device: str = "cpu"):
    """-> (Sampler (the model with every task's decoding), tokenizer, codebook, cfg)."""
    state = torch.load(checkpoint_path, map_location=device)
    cfg = ModelConfig.from_dict(state["config"])
    tok = WordTokenizer(state["vocab"])
    book = LabelCodebook.load(codebook_path)
    if book.size != cfg.codebook_size:
        raise ValueError(f"codebook has {book.size} codes, the checkpoint {cfg.codebook_size}")
    model = load_mini(state, cfg, len(tok))
    model.to(device).eval()
    s = Sampler(model, tok, book, cfg, device)
    s.step = int(state.get("step", -1))
    s.eos_bias = trained_eos_bias(state.get("args") or {})
    return s, tok, book, cfg


if __name__ == "__main__":
    import argparse
    import json

    ap = argparse.ArgumentParser(description="sample one image from a checkpoint")
    ap.add_argument("--checkpoint", default="/tmp/ckpt-mini/checkpoint.pt")
    ap.add_argument("--codebook", default="/tmp/prep/eval/codebook.npz")
    ap.add_argument("--prompt", required=True)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--steps", type=int, default=16)
    ap.add_argument("--guidance", type=float, default=3.0)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    s, *_ = load(args.checkpoint, args.codebook)
    a = s.text_to_image(args.prompt, args.seed, steps=args.steps, guidance=args.guidance)
    print(json.dumps({"step": s.step, "tokens": a.tokens}))
