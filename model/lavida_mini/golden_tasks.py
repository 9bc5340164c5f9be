"""Golden vectors of every task of the reference sampler (sample.py) for a trained checkpoint.

    cd model && nice -n 10 /usr/bin/python3 -m lavida_mini.golden_tasks \\
        --checkpoint checkpoints/lavida-o-mini-0.1.0.pt --codebook /tmp/prep/train/codebook.npz \\
        --data /tmp/prep/eval --out ../models/lavida-o-mini/tasks-golden.json

Writes `lavida-task-golden/v1`: one case per task run (text_to_image plain / with plan / with feedback,
edit, understand, reflect, plan, ground, respond), inputs taken from the first samples of the prepared
eval folder (in order), outputs token for token as sample.Sampler produces them, so the TypeScript
runtime can be checked against it. Deterministic: single-threaded torch, sorted keys, floats rounded
to 6 decimals; the same inputs give a byte-identical file.

Near-decisions are avoided, so that a runtime whose logits differ from PyTorch's by float32 rounding
(onnxruntime vs PyTorch: max |diff| below 1e-5, test/integration/mini-package.test.ts) still
reproduces every case. A case whose margin is under the threshold is skipped: a text case for the
next eval sample, an image case for the next seed (printed). Text decisions (argmax decoding,
--margin, default 1e-4) count worst case, as the sup-norm logit perturbation that flips them: half
a top-2 logit gap, a quarter of the log-odds gap between the last kept and the first remasked slot
of the low-confidence remasking (an exact confidence tie there, decided by slot order, is a skip
too). Multinomial draws (--sample-margin, default 2e-5) count the iid logit noise (std) at which the
uniform draw is one standard deviation from a boundary of the cumulative weights (guided scores
(1 + g) c - g u carry hypot(1 + g, g) times the logit noise). Worst case, every draw of 8192 weights is
within ~1e-7 of flipping, and even this measure puts a typical seed's closest draw at ~5e-6: exact
token equality of sampled images needs logits that agree to ~1e-6, hence the seed search.

Case fields (every case also has `task`, `sample` (the eval sample id its inputs come from) and
`margin` {logit, sample}: its closest decisions as above, null where it has none):
  text_to_image  prompt (no micro-conditioning), luminance (null or the value: the sampler text is
                 `conditioning_text(prompt, luminance)`), seed, steps, guidance, temperature, tokens [64];
                 optionally plan [{colour, shape, bins}] (t2i_plan template) or
                 feedback {verdict, image_tokens [64]} (t2i_feedback template, codes as semantic prefix)
  edit           image_tokens, instruction, seed, steps, guidance, temperature, tokens
  understand     image_tokens, question, answer_ids [24] (decode_text slots), answer
  reflect        image_tokens, prompt, answer_ids [16], verdict
  plan           prompt, answer_ids [44], layout [{colour, shape, bins, box (px)}]; with tasks.box_prior.plans,
                 answer_ids after each box is re-decoded under the prior and slot_ids before it
  ground         image_tokens, ref, steps (1 or 4), bins [4], box [4] px; with the package's tasks.box_prior,
                 decoded under it (Sampler.ground_under_prior), the 1-step cases also carry argmax_bins (each
                 slot's own argmax): refs are added (up to 8) until one of them differs from bins
  respond        prompt, token (argmax over the text vocabulary at the one [mask] after enc(prompt)),
                 logit_top (top-3 ids)
"""
from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import sys
import time
from typing import Callable, Dict, Iterable, List, Optional, Sequence, Tuple

import numpy as np
import torch

from . import sample as sample_mod
from .labelvq import LEVELS
from .sample import LOC_MAX, Pcg32, Sampler, conditioning_text, detokenize, load, strip_micro
from .train import ANSWER_LEN, edit_region

FORMAT = "lavida-task-golden/v1"
DEFAULT_MARGIN = 1e-4          # text decisions, logits, worst case (sup norm): 10x onnxruntime vs PyTorch's max |diff|
DEFAULT_SAMPLE_MARGIN = 2e-5   # multinomial draws, iid logit noise at one standard deviation


class Margins:
    """The closest decisions of one case: text (argmax and keep boundary, sup-norm logit perturbation)
    and sample (multinomial draws, iid noise std; in score units until _image scales it)."""

    def __init__(self) -> None:
        self.text = math.inf
        self.sample = math.inf
        self.ties = 0          # exact equal confidences at a keep boundary (broken by slot index)

    def ok(self, margin: float, sample_margin: float) -> bool:
        return self.text >= margin and self.sample >= sample_margin and self.ties == 0

    def json(self) -> Dict[str, Optional[float]]:
        r = lambda v: None if math.isinf(v) else float(f"{v:.3g}")
        return {"logit": r(self.text), "sample": r(self.sample)}

    def __str__(self) -> str:
        return f"text {self.text:.3g}, sample {self.sample:.3g}, ties {self.ties}"


def _log_odds(lg: torch.Tensor) -> torch.Tensor:
    """log(p / (1 - p)) of each row's argmax probability, from the logits (finite where p rounds to 1)."""
    top = lg.max(-1, keepdim=True)
    others = lg.scatter(-1, top.indices, -math.inf)
    return -torch.logsumexp(others - top.values, -1)


@contextlib.contextmanager
def watching(s: Sampler, m: Margins):
    """Records the decisions of decode_text (via s._forward) and of image sampling (via
    sample.sample_logits_rows) into m; the outputs are those of the unmodified sampler."""
    forward = s._forward
    rows_fn = sample_mod.sample_logits_rows
    ctx: Dict = {}

    def forward_hook(text, prefix, image, need_text, image_positions=None):
        out = forward(text, prefix, image, need_text, image_positions)
        if need_text and "decode" in ctx:
            _text_margins(s, m, ctx["decode"], text, prefix, out[0])
        return out

    def rows_hook(logits, temperature, rng, top_k=0, min_p=0.0):
        if top_k or min_p:
            raise NotImplementedError("sample margins assume untruncated sampling (top_k 0, min_p 0)")
        state = rng.state
        out = rows_fn(logits, temperature, rng)
        probe = Pcg32(0)
        probe.state, probe.inc = state, rng.inc
        m.sample = min(m.sample, _sample_margin(np.asarray(logits, np.float64), temperature, probe, out))
        return out

    s._forward = forward_hook                     # instance attribute: only this sampler, only here
    sample_mod.sample_logits_rows = rows_hook
    try:
        yield ctx
    finally:
        del s._forward
        sample_mod.sample_logits_rows = rows_fn


def _text_margins(s: Sampler, m: Margins, spec: dict, rows, prefix, logits: np.ndarray) -> None:
    """Margins of one decode_text step (B = 1), replaying its selection on the same logits."""
    mask = s.sp["mask"]
    head, length, per_step, allowed = spec["head"], spec["length"], spec["per_step"], spec["allowed"]
    P = 0 if prefix is None else np.asarray(prefix).shape[1]
    slots = np.asarray(rows[0][len(head):len(head) + length])
    masked = np.flatnonzero(slots == mask)
    if not len(masked):
        return
    lg = torch.from_numpy(logits[0, P + len(head) + masked]).double()
    if allowed is not None:
        lg = lg[:, allowed[0]:allowed[0] + allowed[1]]
    else:
        lg[:, [mask, s.sp["pad"]]] = -math.inf
        if spec.get("eos_bias"):
            lg[:, s.sp["eos"]] += spec["eos_bias"]
    conf = torch.softmax(lg, -1).max(-1).values.numpy()
    keep = np.argsort(-conf, kind="stable")[:per_step]
    top2 = lg.topk(2, -1).values
    gaps = (top2[:, 0] - top2[:, 1]).numpy()
    m.text = min(m.text, float(gaps[keep].min()) / 2)
    if len(masked) > per_step:
        order = np.argsort(-conf, kind="stable")
        a, b = order[per_step - 1], order[per_step]
        if conf[a] == conf[b]:
            m.ties += 1
        odds = _log_odds(lg).numpy()
        m.text = min(m.text, float(abs(odds[a] - odds[b])) / 4)


def _sample_margin(scores: np.ndarray, temperature: float, rng: Pcg32, picked: List[int]) -> float:
    """How far each draw of sample.sample_logits_rows is from changing, as the iid noise (std, score
    units) on every score at which the uniform draw u = f * total is one standard deviation from a
    cumulative weight boundary C_{k-1} <= u < C_k of the picked token k. d(u - C_{k-1}) / d s_i =
    w_i (f - [i < k]) / T, d(C_k - u) / d s_i = w_i ([i <= k] - f) / T. (A worst-case, every-logit-
    aligned bound is far smaller, ~1e-7: a draw among 8192 weights always has some such direction.)"""
    if temperature <= 0:
        top2 = np.sort(scores, -1)[:, -2:]
        return float((top2[:, 1] - top2[:, 0]).min()) / 2
    best = scores.argmax(-1)
    mx = scores[np.arange(len(scores)), best][:, None]
    weights = sample_mod.fexp((scores - mx) / temperature)
    out = math.inf
    for row in range(len(scores)):
        w = weights[row]
        cum, cum2 = np.add.accumulate(w), np.add.accumulate(w * w)
        total, total2 = cum[-1], cum2[-1]
        f = rng.next_float()
        u = f * total
        k = picked[row]
        below, below2 = (cum[k - 1], cum2[k - 1]) if k > 0 else (0.0, 0.0)
        upto, upto2 = cum[k], cum2[k]
        s_lo = math.sqrt(f * f * (total2 - below2) + (1 - f) ** 2 * below2) / temperature
        s_hi = math.sqrt((1 - f) ** 2 * upto2 + f * f * (total2 - upto2)) / temperature
        if k > 0:
            out = min(out, (u - below) / s_lo)
        if k < len(w) - 1:
            out = min(out, (upto - u) / s_hi)
    return float(out)


# ---------------------------------------------------------------------------------------------------


class Golden:
    def __init__(self, s: Sampler, tokens: np.ndarray, samples: List[dict], margin: float, sample_margin: float,
                 log: Callable[[str], None] = print) -> None:
        self.s, self.tokens, self.samples = s, tokens, samples
        self.margin, self.sample_margin, self.log = margin, sample_margin, log
        self.cases: List[dict] = []
        self.skips: List[str] = []
        self.worst = Margins()

    def codes(self, index: int) -> List[int]:
        return [int(v) for v in self.tokens[index]]

    def _accept(self, label: str, m: Margins, quiet: bool = False) -> bool:
        if m.ok(self.margin, self.sample_margin):
            self.worst.text = min(self.worst.text, m.text)
            self.worst.sample = min(self.worst.sample, m.sample)
            self.log(f"  {label}: margins {m}")
            return True
        self.skips.append(f"{label}: {m}")
        if not quiet:
            self.log(f"  skip {label}: near decision ({m})")
        return False

    def _decode(self, head: List[int], length: int, prefix: Optional[Sequence[int]], per_step: int,
                tail: Optional[List[int]] = None, allowed: Optional[Tuple[int, int]] = None,
                eos_bias: float = 0.0) -> Tuple[List[int], Margins]:
        m = Margins()
        pre = None if prefix is None else np.asarray([prefix], np.int64)
        with watching(self.s, m) as ctx:
            ctx["decode"] = dict(head=head, length=length, per_step=per_step, allowed=allowed, eos_bias=eos_bias)
            ids = self.s.decode_text([head], length, pre, per_step, tail=tail, allowed=allowed, eos_bias=eos_bias)[0]
        return [int(i) for i in ids], m

    def _image(self, label: str, seed: int, guidance: float, run: Callable[[int], List[int]],
               tries: int = 400) -> Tuple[int, List[int], Margins]:
        """Runs an image case from `seed`, moving to the next seed while it has a near decision."""
        for k in range(tries):
            m = Margins()
            with watching(self.s, m):
                tokens = run(seed + k)
            m.sample /= math.hypot(1 + guidance, guidance)   # iid logit noise -> guided score noise
            if self._accept(f"{label} seed {seed + k} ({k} near seeds skipped)", m, quiet=True):
                return seed + k, [int(t) for t in tokens], m
        raise RuntimeError(f"{label}: {tries} seeds in a row with a near decision")

    def _text_cases(self, task: str, count: int, candidates: Iterable[dict], build: Callable[[dict], Optional[dict]]) -> None:
        n = 0
        for r in candidates:
            if n == count:
                break
            case = build(r)
            if case is not None:
                self.cases.append(case)
                n += 1
        if n < count:
            raise RuntimeError(f"{task}: only {n} of {count} cases without a near decision")

    # -- image tasks ----------------------------------------------------------------------------
    def t2i(self, r: dict, steps: int = 16, guidance: float = 3.0, temperature: float = 1.0,
            plan: bool = False, feedback: bool = False, seed: Optional[int] = None) -> dict:
        s = self.s
        prompt = strip_micro(r["t2i"]["text"])
        luminance = r["t2i"]["luminance"]
        text = conditioning_text(prompt, luminance)
        if text != r["t2i"]["text"] or prompt != r["t2i"]["prompt"]:
            raise AssertionError(f"sample {r['id']}: {r['t2i']['text']!r} is not conditioning_text({prompt!r}, {luminance})")
        case = dict(task="text_to_image", sample=r["id"], prompt=prompt, luminance=luminance, steps=steps,
                    guidance=float(guidance), temperature=float(temperature))
        layout, fb = None, None
        if plan:
            layout = [dict(colour=it["colour"], shape=it["shape"], bins=[int(b) for b in it["bins"]]) for it in r["plan"]["layout"]]
            case["plan"] = layout
        if feedback:
            fb = (r["reflection"]["text"], self.codes(r["reflection"]["image"]))
            case["feedback"] = dict(verdict=fb[0], image_tokens=fb[1])
        seed = r["seed"] if seed is None else seed
        label = f"text_to_image{' plan' if plan else ''}{' feedback' if feedback else ''} sample {r['id']}"
        case["seed"], case["tokens"], m = self._image(label, seed, guidance, lambda sd: s.text_to_image(
            text, sd, steps=steps, guidance=guidance, temperature=temperature, plan_layout=layout, feedback=fb).tokens)
        case["margin"] = m.json()
        return case

    def edit(self, r: dict, steps: int = 16, guidance: float = 3.0, temperature: float = 1.0,
             plan: Optional[List[dict]] = None) -> dict:
        """An edit; with `plan` (layout items), editing with a plan (the edit_plan template)."""
        codes = self.codes(r["image"])
        instruction = r["edit"]["text"]
        case = dict(task="edit", sample=r["id"], image_tokens=codes, instruction=instruction, steps=steps,
                    guidance=float(guidance), temperature=float(temperature))
        if plan:
            case["plan"] = [dict(label=f"{it['colour']} {it['shape']}", bins=[int(b) for b in it["bins"]]) for it in plan]
        case["seed"], case["tokens"], m = self._image(f"edit sample {r['id']}" + (" with plan" if plan else ""), r["seed"], guidance,
                                                      lambda sd: self.s.edit(codes, instruction, sd, steps=steps, guidance=guidance,
                                                                             temperature=temperature, plan_layout=plan).tokens)
        case["margin"] = m.json()
        return case

    def plan_edit(self, r: dict) -> Optional[dict]:
        """The region of an edit (Sampler.plan_edit): the slot decoded with the source image as prefix, then its
        boxes re-decoded under the box prior where the package's prior has plans."""
        s = self.s
        codes, instruction = self.codes(r["image"]), r["edit"]["text"]
        case = self._layout_case(f"plan_edit sample {r['id']} ({r['edit']['kind']})", "plan_edit", s.enc("edit plan : " + instruction),
                                 codes, lambda: s.plan_edit(codes, instruction))
        return None if case is None else dict(task="plan_edit", sample=r["id"], image_tokens=codes, instruction=instruction, **case)
    # -- text tasks -----------------------------------------------------------------------------
    def understand(self, r: dict) -> Optional[dict]:
        s = self.s
        codes, q = self.codes(r["image"]), r["question"]["text"]
        ids, m = self._decode(s.enc("question : " + q), ANSWER_LEN["und"], codes, s.per_step["und"],
                              eos_bias=s.eos_bias.get("und", 0.0))
        answer = s.answer(codes, q)
        if detokenize(s.words(ids)) != answer:
            raise AssertionError(f"understand sample {r['id']}: decode_text {ids} != answer {answer!r}")
        if not self._accept(f"understand sample {r['id']} ({r['question']['kind']})", m):
            return None
        return dict(task="understand", sample=r["id"], image_tokens=codes, question=q, answer_ids=ids, answer=answer, margin=m.json())

    def reflect(self, r: dict) -> Optional[dict]:
        s = self.s
        codes, prompt = self.codes(r["reflection"]["image"]), r["reflection"]["prompt"]
        ids, m = self._decode(s.enc("evaluate : " + strip_micro(prompt)), ANSWER_LEN["reflect"], codes, s.per_step["reflect"],
                              eos_bias=s.eos_bias.get("reflect", 0.0))
        verdict = s.reflect(codes, prompt)
        if detokenize(s.words(ids)) != verdict:
            raise AssertionError(f"reflect sample {r['id']}: decode_text {ids} != reflect {verdict!r}")
        if not self._accept(f"reflect sample {r['id']}", m):
            return None
        return dict(task="reflect", sample=r["id"], image_tokens=codes, prompt=prompt, answer_ids=ids, verdict=verdict, margin=m.json())

    def plan(self, r: dict) -> Optional[dict]:
        s = self.s
        prompt = r["plan"]["prompt"]
        case = self._layout_case(f"plan sample {r['id']}", "plan", s.enc("plan : " + strip_micro(prompt)), None, lambda: s.plan(prompt))
        return None if case is None else dict(task="plan", sample=r["id"], prompt=prompt, **case)

    def _layout_case(self, label: str, task: str, head: List[int], prefix: Optional[List[int]],
                     sampled: Callable[[], List[dict]]) -> Optional[dict]:
        """A layout answer (a plan, an edit's plan) decoded as the sampler does: the slot, then each box re-decoded
        under the box prior where the package's prior has plans (slot_ids: the layout as decoded before), checked
        against the sampler's own call `sampled`. None when a decision is near a tie."""
        s = self.s
        ids, m = self._decode(head, ANSWER_LEN[task], prefix, s.per_step[task], eos_bias=s.eos_bias.get(task, 0.0))
        extra = {}
        if s.plan_box_prior and s.box_prior is not None:
            gaps: List[float] = []
            extra["slot_ids"] = ids
            pre = None if prefix is None else np.asarray([prefix], np.int64)
            ids = [int(i) for i in s.redecode_plan_boxes(head, ids, gaps, prefix=pre)]
            m.text = min([m.text] + [gap / 16 for gap in gaps])
        layout = sampled()
        if s.parse_layout(ids) != layout:
            raise AssertionError(f"{label}: decode_text {ids} != {task} {layout}")
        if not self._accept(label, m):
            return None
        items = [dict(colour=it["colour"], shape=it["shape"], bins=[int(b) for b in it["bins"]],
                      box=[round(float(v), 6) for v in it["box"]]) for it in layout]
        return dict(answer_ids=ids, layout=items, margin=m.json(), **extra)
    def ground(self, r: dict, steps_list: Sequence[int] = (1, 4)) -> Optional[List[dict]]:
        s = self.s
        codes, ref = self.codes(r["image"]), r["grounding"]["ref"]
        out = []
        for steps in steps_list:
            head = s.enc("locate : " + ref) + [s.sp["loc_begin"]]
            extra = {}
            if s.box_prior is not None:
                # the slots decoded under the box prior (Sampler.ground_under_prior), with its decisions' margins
                m = Margins()
                gaps: List[float] = []
                bins = s.ground_under_prior(np.asarray([codes], np.int64), [head], steps, gaps)[0]
                m.text = min(gaps)
                if steps == 1:   # each slot's own argmax too (the runtime's boxPrior: false), with its margin
                    lg, _ = s._forward([head + [s.sp["mask"]] * 4 + [s.sp["loc_end"]]], np.asarray([codes], np.int64), None, need_text=True)
                    at = len(codes) + len(head)
                    lp = s.loc_logprobs(lg[0, at:at + 4])
                    top2 = np.sort(lp, -1)[:, -2:]
                    m.text = min(m.text, float((top2[:, 1] - top2[:, 0]).min()) / 2)
                    extra["argmax_bins"] = [int(v) for v in lp.argmax(-1)]
            else:
                per_step = math.ceil(4 / max(1, min(4, steps)))
                ids, m = self._decode(head, 4, codes, per_step, tail=[s.sp["loc_end"]], allowed=(s.loc0, LOC_MAX + 1))
                bins = [i - s.loc0 for i in ids]
            box = s.ground(codes, ref, steps=steps)
            if [b / LOC_MAX * sample_mod.CANVAS for b in bins] != list(box):
                raise AssertionError(f"ground sample {r['id']}: decoded {bins} != ground {box}")
            if not self._accept(f"ground sample {r['id']} steps {steps}", m):
                return None
            out.append(dict(task="ground", sample=r["id"], image_tokens=codes, ref=ref, steps=steps, bins=[int(b) for b in bins],
                            box=[round(float(v), 6) for v in box], margin=m.json(), **extra))
        return out

    def respond(self, r: dict, prompt: str) -> Optional[dict]:
        """The `[exp]` modality decision: enc(prompt) + [mask], no prefix, argmax over the whole text
        vocabulary at the [mask]."""
        s = self.s
        logits, _ = s._forward([s.enc(prompt) + [s.sp["mask"]]], None, None, need_text=True)
        last = logits[0, -1].astype(np.float64)
        order = np.argsort(-last, kind="stable")
        m = Margins()
        m.text = float(last[order[0]] - last[order[1]]) / 2
        if not self._accept(f"respond sample {r['id']} {prompt!r}", m):
            return None
        return dict(task="respond", sample=r["id"], prompt=prompt, token=int(order[0]),
                    logit_top=[int(i) for i in order[:3]], margin=m.json())


def build(s: Sampler, tokens: np.ndarray, samples: List[dict], margin: float = DEFAULT_MARGIN,
          sample_margin: float = DEFAULT_SAMPLE_MARGIN, log: Callable[[str], None] = print) -> Golden:
    g = Golden(s, tokens, samples, margin, sample_margin, log)
    S = samples

    def timed(name, fn):
        t0 = time.time()
        before = len(g.cases)
        fn()
        log(f"{name}: {len(g.cases) - before} cases, {time.time() - t0:.1f} s")

    # text_to_image, plain: one with LUMINANCE, one without, one unguided (1 row), one in 8 steps
    def t2i_plain():
        with_lum = next(r for r in S if r["t2i"]["luminance"] is not None)
        without = next(r for r in S if r["t2i"]["luminance"] is None)
        rest = [r for r in S if r is not with_lum and r is not without][:2]
        g.cases.append(g.t2i(with_lum))
        g.cases.append(g.t2i(without))
        g.cases.append(g.t2i(rest[0], guidance=0.0))
        g.cases.append(g.t2i(rest[1], steps=8))

    # with the sample's true plan; with the critique of a non-matching reflection (as train.Data.feedback)
    def t2i_cond():
        for r in [r for r in S if r["plan"]["layout"]][:2]:
            g.cases.append(g.t2i(r, plan=True))
        fb = [r for r in S if not r["reflection"]["matches"] and r["reflection"]["perturbation"] != "blob"][:2]
        for r in fb:   # a feedback round's seed, as Sampler.generate: seed + round * 2**32
            g.cases.append(g.t2i(r, feedback=True, seed=r["seed"] + 2 ** 32))

    def edits():
        for r in S[:3]:
            g.cases.append(g.edit(r))

    def understand():
        kinds: set = set()

        def one(r):
            if r["question"]["kind"] in kinds:
                return None
            case = g.understand(r)
            if case is not None:
                kinds.add(r["question"]["kind"])
            return case
        g._text_cases("understand", 4, S, one)

    def reflect():
        # the first non-matching and the first matching reflection image, then the next sample (at
        # checkpoint 0.1.0 calls every one of the first 200 eval reflection images `correct`)
        first_no = next(r for r in S if not r["reflection"]["matches"])
        first_yes = next(r for r in S if r["reflection"]["matches"])
        order = sorted([first_no, first_yes], key=lambda r: S.index(r))
        order += [r for r in S if r is not first_no and r is not first_yes]
        g._text_cases("reflect", 3, order, g.reflect)

    def plan():
        seen: set = set()

        def one(r):
            if r["plan"]["prompt"] in seen:
                return None
            seen.add(r["plan"]["prompt"])
            return g.plan(r)
        g._text_cases("plan", 3, S, one)
        if s.plan_box_prior and s.box_prior is not None:
            # the re-decoding must change a golden plan, or the cases would not check it: add one that it changes
            plans = [c for c in g.cases if c["task"] == "plan"]
            if all(c["slot_ids"] == c["answer_ids"] for c in plans):
                for r in S:
                    c = one(r)
                    if c is not None and c["slot_ids"] != c["answer_ids"]:
                        g.cases.append(c)
                        break
                else:
                    raise RuntimeError("plan: the box prior changes no plan")

    def ground():
        n = 0
        decided = s.box_prior is None   # with a box prior: go on (up to 8 refs) until it decides a 1-step box
        for r in S:
            if n >= 2 and (decided or n == 8):
                break
            cases = g.ground(r)
            if cases is not None:
                g.cases.extend(cases)
                n += 1
                decided = decided or any(c.get("argmax_bins", c["bins"]) != c["bins"] for c in cases)
        if not decided:
            raise RuntimeError("ground: the box prior decides no 1-step box in 8 refs")
        if n < 2:
            raise RuntimeError("ground: fewer than 2 refs without a near decision")

    def respond():
        def first(prompt_of):
            return lambda: next(c for c in (g.respond(r, prompt_of(r)) for r in S) if c is not None)
        g.cases.append(first(lambda r: strip_micro(r["t2i"]["text"]))())
        g.cases.append(first(lambda r: r["question"]["text"])())

    # editing with a plan (a package with the plan_edit / edit_plan templates): the model's plans of the first
    # edits, one of each kind where it can, then edits given the first two of those plans
    def edit_plans():
        kinds: set = set()

        def one(r):
            if r["edit"]["kind"] in kinds:
                return None
            case = g.plan_edit(r)
            if case is not None:
                kinds.add(r["edit"]["kind"])
            return case
        g._text_cases("plan_edit", 4, S, one)
        by_id = {r["id"]: r for r in S}
        planned = [(by_id[c["sample"]], c["layout"]) for c in g.cases if c["task"] == "plan_edit" and c["layout"]][:2]
        if len(planned) < 2:
            # a model whose plans parse to nothing (weights that never trained plan_edit, given the templates to check
            # the runtime's decoding): edit with the samples' true regions instead
            planned = [(r, edit_region(r["scene"], r["edit"]["target_scene"])) for r in S[:2]]
        for r, layout in planned:
            g.cases.append(g.edit(r, plan=layout))

    timed("text_to_image", t2i_plain)
    timed("text_to_image plan / feedback", t2i_cond)
    timed("edit", edits)
    timed("understand", understand)
    timed("reflect", reflect)
    timed("plan", plan)
    timed("ground", ground)
    timed("respond", respond)
    if g.s.edit_plans:
        timed("plan_edit / edit with plan", edit_plans)
    return g


def document(g: Golden, name: str, version: str, step: int, margin: float, sample_margin: float) -> str:
    """The JSON text: sorted keys, one case a line (byte-stable)."""
    head = {
        "format": FORMAT,
        "model": {"name": name, "version": version, "checkpoint_step": int(step)},
        "settings": {"order_seed": sample_mod.ORDER_SEED, "shift": 3.0, "correction_sweeps": g.s.correction_sweeps,
                     "correction_guidance": g.s.correction_guidance, "cfg_interval": list(g.s.cfg_interval),
                     "per_step": {"understand": g.s.per_step["und"], "reflect": g.s.per_step["reflect"],
                                  "plan": g.s.per_step["plan"], "ground": "ceil(4 / steps)",
                                  **({"plan_edit": g.s.per_step["plan_edit"]} if g.s.edit_plans else {})},
                     "eos_bias": {("understand" if k == "und" else k): v for k, v in sorted(g.s.eos_bias.items())},
                     **({"box_prior": g.s.box_prior} if g.s.box_prior is not None else {}),
                     "answer_len": {"understand": ANSWER_LEN["und"], "reflect": ANSWER_LEN["reflect"], "plan": ANSWER_LEN["plan"],
                                    **({"plan_edit": ANSWER_LEN["plan_edit"]} if g.s.edit_plans else {})},
                     "min_margin": {"logit": margin, "sample": sample_margin}},
    }
    enc = lambda v: json.dumps(v, sort_keys=True, ensure_ascii=True, allow_nan=False)
    lines = ["{", ' "cases": [']
    lines += [f"  {enc(c)}{',' if i + 1 < len(g.cases) else ''}" for i, c in enumerate(g.cases)]
    lines.append(" ],")
    keys = sorted(head)
    lines += [f" {enc(k)}: {enc(head[k])}{',' if i + 1 < len(keys) else ''}" for i, k in enumerate(keys)]
    lines.append("}")
    text = "\n".join(lines) + "\n"
    json.loads(text)
    return text


def check_codebook(s: Sampler, package: Optional[str]) -> None:
    """The codebook must be the package's: its size (+ the 57 background codes) is the checkpoint's,
    and, where the package folder has vq_decode.onnx, its label table is the codebook's."""
    if s.book.size != s.cfg.codebook_size or len(s.book.patterns) + LEVELS != s.cfg.codebook_size:
        raise ValueError(f"codebook has {s.book.size} codes, the checkpoint {s.cfg.codebook_size}")
    path = None if package is None else os.path.join(package, "vq_decode.onnx")
    if path is None or not os.path.exists(path):
        return
    import onnx
    from onnx import numpy_helper
    p2 = s.book.patch ** 2
    table = s.book.label_table()
    for init in onnx.load(path).graph.initializer:
        if list(init.dims) == [s.book.size, p2]:
            if not np.array_equal(numpy_helper.to_array(init).astype(np.uint8), table):
                raise ValueError(f"the codebook is not the one of {path}")
            return
    raise ValueError(f"{path} has no [{s.book.size}, {p2}] label table to compare the codebook with")


def write(checkpoint: str, codebook: str, data: str, out: str, name: str = "lavida-o-mini", version: str = "0.1.0",
          margin: float = DEFAULT_MARGIN, sample_margin: float = DEFAULT_SAMPLE_MARGIN, log: Callable[[str], None] = print) -> int:
    """Writes tasks-golden.json to `out`; returns the number of cases."""
    torch.set_num_threads(1)          # reproducible float reductions
    t0 = time.time()
    s, tok, book, cfg = load(checkpoint, codebook)
    check_codebook(s, os.path.dirname(os.path.abspath(out)))
    vocab = json.load(open(os.path.join(data, "vocab.json")))
    if list(vocab) != list(tok.vocab):
        raise ValueError(f"{data}/vocab.json is not the checkpoint's vocabulary")
    man_path = os.path.join(os.path.dirname(os.path.abspath(out)), "manifest.json")
    if os.path.exists(man_path):
        man = json.load(open(man_path))
        if (man.get("name"), man.get("version")) != (name, version) or man["text"]["vocab"] != list(tok.vocab):
            raise ValueError(f"{man_path} is {man.get('name')} {man.get('version')} (or another vocabulary), not {name} {version}")
        # Every image case runs with the package's correction sweeps, as the runtime does.
        s.correction_sweeps = int(man["sampling"].get("correction_sweeps", 0))
        s.correction_guidance = man["sampling"].get("correction_guidance")
        s.cfg_interval = tuple(man["sampling"].get("cfg_interval", (0.0, 1.0)))
        # One-step grounding under the package's box prior, as the runtime decodes it.
        s.box_prior = (man.get("tasks") or {}).get("box_prior")
        s.plan_box_prior = bool((s.box_prior or {}).get("plans"))
        # editing with a plan where the package has its templates
        s.edit_plans = "plan_edit" in (man.get("tasks") or {})
    tokens = np.load(os.path.join(data, "tokens.npy")).astype(np.int64)
    with open(os.path.join(data, "samples.jsonl")) as f:
        samples = [json.loads(line) for line in f]
    g = build(s, tokens, samples, margin, sample_margin, log)
    text = document(g, name, version, s.step, margin, sample_margin)
    tmp = out + ".tmp"
    with open(tmp, "w") as f:
        f.write(text)
    os.replace(tmp, out)
    counts: Dict[str, int] = {}
    for c in g.cases:
        key = c["task"] + ("+plan" if "plan" in c and c["task"] in ("text_to_image", "edit") else "") + \
            ("+feedback" if "feedback" in c else "")
        counts[key] = counts.get(key, 0) + 1
    log(f"wrote {out}: {len(g.cases)} cases ({', '.join(f'{k} {v}' for k, v in counts.items())}), "
        f"{len(text)} B, step {s.step}, {time.time() - t0:.1f} s; closest decisions kept: {g.worst}; "
        f"{len(g.skips)} skipped")
    return len(g.cases)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--checkpoint", required=True)
    ap.add_argument("--codebook", required=True, help="the checkpoint's label codebook.npz")
    ap.add_argument("--data", required=True, help="prepared eval folder (tokens.npy, samples.jsonl, vocab.json)")
    ap.add_argument("--out", required=True, help="tasks-golden.json (the package folder's manifest / vq_decode are checked when present)")
    ap.add_argument("--name", default="lavida-o-mini")
    ap.add_argument("--version", default="0.1.0")
    ap.add_argument("--margin", type=float, default=DEFAULT_MARGIN,
                    help="text decisions: skip cases a logit perturbation this small (sup norm) could change")
    ap.add_argument("--sample-margin", type=float, default=DEFAULT_SAMPLE_MARGIN,
                    help="multinomial draws: next seed while iid logit noise of this std is one std from a boundary")
    args = ap.parse_args(argv)
    write(args.checkpoint, args.codebook, args.data, args.out, args.name, args.version, args.margin, args.sample_margin)
    return 0


if __name__ == "__main__":
    sys.exit(main())
