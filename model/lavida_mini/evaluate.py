"""Quality table of a lavida-o-mini checkpoint on held-out Shapes-world data (eval seeds >= 1e9).

    cd model && nice -n 10 /usr/bin/python3 -m lavida_mini.evaluate \\
        --checkpoint /tmp/ckpt-mini/checkpoint.pt --data /tmp/prep/eval --shard /tmp/shards/eval \\
        [--prompts 50] [--samples 600] [--parts t2i,plan,ground,answer,edit,reflect,readback] [--threads 1]

Runs the reference sampler (sample.py) on the eval samples, writes every output image to
WORKDIR/images.u8 and one line per output to WORKDIR/results.jsonl, and scores them with the world
library (`node libs/world/dist/cli/score.js`, build it with `npx tsc -b libs/world`). Writes the scores,
settings and timings to --out (model/quality.json) and a markdown table to stdout.

Parts:
  t2i       mini-GenEval: --prompts prompts a category (spec: >= 50) x --images-per-prompt (4) images, the
            eval samples' t2i prompts (LUMINANCE included where the sample has it): plain; with planning
            (plan -> image with the plan); with planning + reflection (reflect on the planned image,
            regenerate with the critique and the previous codes as prefix while not `correct`, <= --rounds
            images). The plan itself is scored too (checkPlan), and the reflection verdicts on the
            model's own images ("own" reflection agreement).
  plan      the planning step of t2i alone (the same --prompts prompts a category, scored by checkPlan;
            part of t2i, so only needed without it: about a minute instead of t2i's twenty)
  ground    [email protected], 4 coordinate tokens in 1 step and in 4 steps
  answer    exact match per question kind
  edit      edit success per kind (checkEdit on the read-back output); --edit-modes plain,plan,oracle_plan adds
            editing with a plan: the model's own plan of the edit's region (scored by checkEditPlan as
            `plan_edit`), then the edit given it (`edit_plan`), and given the true region (`edit_oracle_plan`)
  reflect   verdict agreement on the eval reflection images (truth = read-back check of the image)
  readback  eval scene images encoded with the label codebook, decoded, read back: share equal to the scene
--samples limits the per-sample parts (ground, answer, edit, reflect, readback) to the first N eval samples.
--oracle replaces every model output by the ground truth (a check of the scoring pipeline: ~1.0 everywhere).
--oracle-plan gives t2i the true layouts as plans and keeps the model's images: how well the generation
branch follows a right plan, apart from how well the text branch plans (`--oracle-plan named`: only the
objects the prompt names, as short as the model's own plans).
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from collections import defaultdict
from typing import Dict, List, Optional

import numpy as np
import torch

from .labelvq import LabelDecode, LabelRefiner
from .prepare import encode_all
from .sample import Sampler, load, strip_micro
from .train import edit_region, prompt_named

CATEGORIES = ["single_object", "two_object", "counting", "colors", "position", "color_attr"]
QUESTION_KINDS = ["count_shape", "count_colour", "colour_of", "shape_of", "exists", "describe"]
EDIT_KINDS = ["add", "remove", "change", "replace"]
REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))


class Store:
    """Output images (uint8 64x64x3), the VQ codes each was decoded from (None for an image that is not a
    decode, e.g. an eval image) and result lines."""

    def __init__(self) -> None:
        self.images: List[np.ndarray] = []
        self.codes: List[Optional[List[int]]] = []
        self.lines: List[dict] = []

    def image(self, rgb: np.ndarray, codes=None) -> int:
        self.images.append(np.asarray(rgb, np.uint8).reshape(64, 64, 3))
        self.codes.append(None if codes is None else [int(c) for c in codes])
        return len(self.images) - 1

    def add(self, **line) -> None:
        self.lines.append(line)


def batches(items: list, size: int):
    for i in range(0, len(items), size):
        yield items[i:i + size]


def sample_grouped(s: Sampler, jobs: List[dict], args, guidance: Optional[float] = None,
                   temperature: Optional[float] = None) -> List[List[int]]:
    """jobs: {ids, seed, prefix?, cond?}. Groups equal-length texts (the sampler runs texts unpadded,
    as the TypeScript one does) and samples them in batches of --batch images."""
    out: List[Optional[List[int]]] = [None] * len(jobs)
    groups: Dict[tuple, List[int]] = defaultdict(list)
    for i, j in enumerate(jobs):
        groups[(len(j["ids"]), j.get("prefix") is not None, j.get("cond") is not None)].append(i)
    for (_, has_prefix, has_cond), idx in groups.items():
        for chunk in batches(idx, args.batch):
            texts = [jobs[i]["ids"] for i in chunk]
            seeds = [jobs[i]["seed"] for i in chunk]
            prefix = np.asarray([jobs[i]["prefix"] for i in chunk]) if has_prefix else None
            cond = np.asarray([jobs[i]["cond"] for i in chunk]) if has_cond else None
            g = args.guidance if guidance is None else guidance
            t = args.temperature if temperature is None else temperature
            toks = s.sample_images(texts, seeds, prefix, cond, args.steps, g, t, args.shift)
            for i, t in zip(chunk, toks):
                out[i] = t
    return out  # type: ignore[return-value]


def text_batched(fn, codes: Optional[np.ndarray], texts: List[str], size: int, **kw) -> list:
    out = []
    for i in range(0, len(texts), size):
        if codes is None:
            out += fn(texts[i:i + size], **kw)
        else:
            out += fn(codes[i:i + size], texts[i:i + size], **kw)
    return out


def layout_line(items: List[dict]) -> list:
    return [{"colour": it["colour"], "shape": it["shape"], "box": [float(v) for v in it["box"]]} for it in items]


def t2i_prompts(samples: List[dict], per_category: int) -> List[dict]:
    prompts = []
    for c in CATEGORIES:
        prompts += [r for r in samples if r["t2i"]["category"] == c][:per_category]
    return prompts


def run_plans(s: Sampler, prompts: List[dict], store: Store, args, times: dict) -> list:
    """The layouts planned for the prompts, each stored as a `plan` line (scored by checkPlan)."""
    t0 = time.time()
    if args.oracle_plan == "named":
        layouts = [[r["plan"]["layout"][i] for i in prompt_named(r["t2i"]["spec"], r["plan"]["layout"])] for r in prompts]
    elif args.oracle or args.oracle_plan:
        layouts = [r["plan"]["layout"] for r in prompts]
    else:
        layouts = text_batched(s.plan_batch, None, [r["t2i"]["text"] for r in prompts], args.text_batch, per_step=args.plan_per_step)
    for r, lay in zip(prompts, layouts):
        store.add(task="plan", category=r["t2i"]["category"], prompt=r["plan"]["prompt"], layout=layout_line(lay) if lay else None)
    times["plan"] = time.time() - t0
    return layouts


def run_t2i(s: Sampler, samples: List[dict], tokens: np.ndarray, store: Store, args, times: dict) -> dict:
    prompts = t2i_prompts(samples, args.prompts)
    K = args.images_per_prompt
    units = [(r, j, r["seed"] * K + j) for r in prompts for j in range(K)]
    info = {"prompts": len(prompts), "images_per_prompt": K}

    # plain
    t0 = time.time()
    if args.oracle or not args.no_plain:
        if args.oracle:
            codes = [tokens[r["image"]].tolist() for r, _, _ in units]
        else:
            codes = sample_grouped(s, [{"ids": s.t2i_text(r["t2i"]["text"]), "seed": seed} for r, _, seed in units], args)
        rgb = s.decode_rgb(codes)
        for (r, j, seed), im, c in zip(units, rgb, codes):
            store.add(task="t2i", mode="plain", category=r["t2i"]["category"], prompt=r["t2i"]["text"], image=store.image(im, c), seed=seed)
    times["t2i_plain"] = time.time() - t0
    if args.plain_only:
        return info

    # planning
    layouts = run_plans(s, prompts, store, args, times)
    t0 = time.time()
    lay_of = {id(r): lay for r, lay in zip(prompts, layouts)}
    if args.oracle:
        planned = [tokens[r["image"]].tolist() for r, _, _ in units]
    else:
        planned = sample_grouped(s, [{"ids": s.t2i_text(r["t2i"]["text"], lay_of[id(r)]), "seed": seed} for r, _, seed in units], args,
                                 guidance=args.plan_guidance)
    rgb = s.decode_rgb(planned)
    for (r, j, seed), im, c in zip(units, rgb, planned):
        store.add(task="t2i", mode="plan", category=r["t2i"]["category"], prompt=r["t2i"]["text"], image=store.image(im, c), seed=seed, rounds=1)
    times["t2i_plan"] = time.time() - t0

    # planning + reflection: round 1 is the planned image.
    t0 = time.time()
    current = [list(c) for c in planned]
    rounds = [1] * len(units)
    verdict_log: List[List[str]] = [[] for _ in units]
    open_ = list(range(len(units)))
    for rnd in range(args.rounds):
        if not open_:
            break
        cur_codes = np.asarray([current[i] for i in open_], np.int64)
        ptexts = [units[i][0]["t2i"]["text"] for i in open_]
        if args.oracle:
            verdicts = ["correct" for _ in open_]
        else:
            verdicts = text_batched(s.reflect_batch, cur_codes, ptexts, args.text_batch, per_step=args.text_per_step)
        cur_rgb = s.decode_rgb(cur_codes)
        for i, v, im, c in zip(open_, verdicts, cur_rgb, cur_codes):
            verdict_log[i].append(v)
            store.add(task="reflect", set="own", prompt=strip_micro(units[i][0]["t2i"]["text"]), predicted=v,
                      image=store.image(im, c), round=rnd + 1)
        still = [i for i, v in zip(open_, verdicts) if v.strip() != "correct"]
        if rnd == args.rounds - 1 or not still:
            break
        jobs = []
        for i in still:
            r, _, seed = units[i]
            jobs.append({"ids": s.t2i_text(r["t2i"]["text"], lay_of[id(r)] if args.feedback_with_plan else None, verdict_log[i][-1]),
                         "seed": seed + (rnd + 1) * 2 ** 32, "prefix": current[i]})
        new = sample_grouped(s, jobs, args, guidance=args.feedback_guidance)
        for i, t in zip(still, new):
            current[i] = t
            rounds[i] += 1
        open_ = still
    rgb = s.decode_rgb(current)
    for (r, j, seed), im, n, vs, c in zip(units, rgb, rounds, verdict_log, current):
        store.add(task="t2i", mode="plan+reflect", category=r["t2i"]["category"], prompt=r["t2i"]["text"],
                  image=store.image(im, c), seed=seed, rounds=n, verdicts=vs)
    times["t2i_reflect"] = time.time() - t0
    info["reflect_rounds_images"] = int(sum(rounds))
    return info


def run_parts(s: Sampler, samples: List[dict], tokens: np.ndarray, images: np.ndarray, store: Store, args, times: dict) -> dict:
    info: dict = {}
    parts = set(args.parts.split(","))
    if "t2i" in parts:
        info["t2i"] = run_t2i(s, samples, tokens, store, args, times)
    elif "plan" in parts:   # the planning step of t2i alone (t2i plans the same prompts)
        prompts = t2i_prompts(samples, args.prompts)
        run_plans(s, prompts, store, args, times)
        info["t2i"] = {"prompts": len(prompts), "plans_only": True}
    sub = samples[: args.samples]
    codes = np.asarray([tokens[r["image"]] for r in sub], np.int64)
    if "ground" in parts:
        refs = [r["grounding"]["ref"] for r in sub]
        for steps in (1, 4):
            t0 = time.time()
            boxes = [r["grounding"]["box"] for r in sub] if args.oracle else text_batched(s.ground_batch, codes, refs, args.text_batch, steps=steps)
            for r, b in zip(sub, boxes):
                store.add(task="ground", steps=steps, ref=r["grounding"]["ref"], box=[float(v) for v in b], truth=r["grounding"]["box"])
            times[f"ground_{steps}"] = time.time() - t0
    if "answer" in parts:
        t0 = time.time()
        qs = [r["question"]["text"] for r in sub]
        preds = [r["question"]["answer"] for r in sub] if args.oracle else text_batched(s.answer_batch, codes, qs, args.text_batch, per_step=args.text_per_step)
        for r, p in zip(sub, preds):
            store.add(task="answer", kind=r["question"]["kind"], question=r["question"]["text"], predicted=p, expected=r["question"]["answer"])
        times["answer"] = time.time() - t0
    if "edit" in parts:
        modes = [m for m in args.edit_modes.split(",") if m]
        for mode in modes:
            if mode not in ("plain", "plan", "oracle_plan"):
                raise SystemExit(f"--edit-modes: unknown mode {mode!r} (plain, plan, oracle_plan)")
        srcs = [tokens[r["image"]].tolist() for r in sub]
        instructions = [r["edit"]["text"] for r in sub]
        truth = [edit_region(r["scene"], r["edit"]["target_scene"]) for r in sub]   # each edit's true region
        layouts = None
        if "plan" in modes:  # editing with a plan, its first step: the model's region of each edit
            t0 = time.time()
            if args.oracle:
                layouts = truth
            else:
                layouts = text_batched(s.plan_edit_batch, codes, instructions, args.text_batch, per_step=args.plan_per_step)
            for r, lay in zip(sub, layouts):
                store.add(task="plan_edit", kind=r["edit"]["kind"], instruction=r["edit"]["text"], before=r["scene"],
                          layout=layout_line(lay) if lay else None)
            times["plan_edit"] = time.time() - t0
        for mode in modes:
            t0 = time.time()
            if args.oracle:
                out = [tokens[r["edit"]["target_image"]].tolist() for r in sub]
            else:
                plans = {"plain": [None] * len(sub), "plan": layouts, "oracle_plan": truth}[mode]
                jobs = [{"ids": s.edit_text(i, p), "seed": r["seed"], "cond": c} for r, i, p, c in zip(sub, instructions, plans, srcs)]
                out = sample_grouped(s, jobs, args, guidance=args.edit_guidance, temperature=args.edit_temperature)
            for r, im, c in zip(sub, s.decode_rgb(out), out):
                extra = {} if mode == "plain" else {"mode": mode}
                store.add(task="edit", kind=r["edit"]["kind"], instruction=r["edit"]["text"], before=r["scene"],
                          image=store.image(im, c), **extra)
            times["edit" if mode == "plain" else f"edit_{mode}"] = time.time() - t0
    if "reflect" in parts:
        t0 = time.time()
        rc = np.asarray([tokens[r["reflection"]["image"]] for r in sub], np.int64)
        ps = [r["reflection"]["prompt"] for r in sub]
        preds = [r["reflection"]["text"] for r in sub] if args.oracle else text_batched(s.reflect_batch, rc, ps, args.text_batch, per_step=args.text_per_step)
        for r, p in zip(sub, preds):
            store.add(task="reflect", set="eval", prompt=r["reflection"]["prompt"], predicted=p,
                      image=store.image(images[r["reflection"]["image"]]))
        times["reflect"] = time.time() - t0
    if "readback" in parts:
        t0 = time.time()
        idx = [r["image"] for r in sub]
        enc = encode_all(s.book, np.asarray(images[idx])).astype(np.int64)
        info["readback_tokens_equal_prepared"] = float((enc == tokens[idx]).all(-1).mean())
        for r, im, c in zip(sub, s.decode_rgb(enc), enc):
            store.add(task="readback", image=store.image(im, c), scene=r["scene"])
        times["readback"] = time.time() - t0
    return info


def write_codes(store: Store, workdir: str) -> None:
    """WORKDIR/codes.i32: one row a stored image, the codes it was decoded from, -1 for an image that is not a
    decode; what --redecode reads."""
    path = os.path.join(workdir, "codes.i32")
    n = max((len(c) for c in store.codes if c is not None), default=0)
    if not n:
        if os.path.exists(path):
            os.remove(path)
        return
    rows = np.full((len(store.codes), n), -1, np.int32)
    for i, c in enumerate(store.codes):
        if c is not None:
            rows[i] = c
    rows.tofile(path)


def redecode(s: Sampler, prior: dict, store: Store, grid: int) -> None:
    """The result lines and images of an earlier run (prior: its --out JSON), every decoded image decoded
    again with this run's decoder (--refiner): the same codes, so only the decoder differs."""
    wd = prior["workdir"]
    lines = [json.loads(l) for l in open(os.path.join(wd, "results.jsonl"))]
    images = np.fromfile(os.path.join(wd, "images.u8"), np.uint8).reshape(-1, 64, 64, 3)
    codes_path = os.path.join(wd, "codes.i32")
    if not os.path.exists(codes_path):
        raise SystemExit(f"{codes_path} missing: the run predates stored codes, nothing to decode again")
    codes = np.fromfile(codes_path, np.int32).reshape(len(images), -1)
    if codes.shape[1] != grid:
        raise SystemExit(f"{codes_path} holds {codes.shape[1]} codes an image, this model's grid {grid}")
    has = codes[:, 0] >= 0
    out = images.copy()
    idx = np.nonzero(has)[0]
    for i in range(0, len(idx), 256):
        chunk = idx[i:i + 256]
        out[chunk] = s.decode_rgb(codes[chunk].astype(np.int64))
    for im, c, h in zip(out, codes, has):
        store.image(im, c if h else None)
    store.lines = lines


def score(store: Store, workdir: str, baseline_samples: int) -> dict:
    os.makedirs(workdir, exist_ok=True)
    images_path = os.path.join(workdir, "images.u8")
    results_path = os.path.join(workdir, "results.jsonl")
    np.stack(store.images).astype(np.uint8).tofile(images_path) if store.images else open(images_path, "wb").close()
    write_codes(store, workdir)
    with open(results_path, "w") as f:
        for line in store.lines:
            f.write(json.dumps(line) + "\n")
    cli = os.path.join(REPO, "libs", "world", "dist", "cli", "score.js")
    if not os.path.exists(cli):
        raise SystemExit(f"{cli} missing: build it with `npx tsc -b libs/world`")
    out = subprocess.run(["node", cli, "--results", results_path, "--images", images_path,
                          "--baseline-samples", str(baseline_samples), "--per-line", os.path.join(workdir, "scores.jsonl")],
                         capture_output=True, text=True, cwd=REPO)
    if out.returncode != 0:
        raise SystemExit(f"score CLI failed: {out.stderr.strip()}")
    return json.loads(out.stdout)


def fmt(x) -> str:
    return "-" if x is None else f"{x:.3f}"


def table(q: dict) -> str:
    sc = q["scores"]
    L = [f"### lavida-o-mini quality (checkpoint step {q['checkpoint_step']}, {q['settings']['prompts']} prompts/category x "
         f"{q['settings']['images_per_prompt']} images, {q['settings']['samples']} samples/task)", ""]
    t2i = sc.get("t2i", {})
    if t2i:
        modes = [m for m in ("plain", "plan", "plan+reflect") if m in t2i]
        L += ["| mini-GenEval | " + " | ".join(modes) + " | prompt-blind baseline |", "|---|" + "---|" * (len(modes) + 1)]
        base = sc.get("baseline", {}).get("perCategory", {})
        for c in CATEGORIES:
            L.append(f"| {c} | " + " | ".join(fmt(t2i[m]["perCategory"].get(c)) for m in modes) + f" | {fmt(base.get(c))} |")
        L.append("| **overall** | " + " | ".join(f"**{fmt(t2i[m]['overall'])}**" for m in modes) + f" | {fmt(sc.get('baseline', {}).get('overall'))} |")
        L.append("| clean-scene share | " + " | ".join(fmt(t2i[m]["clean"]) for m in modes) + " | 1.000 |")
        L.append("| objects per image | " + " | ".join(fmt(t2i[m]["objectsPerImage"]) for m in modes) + " | 2.500 |")
        L.append("| LUMINANCE adherence | " + " | ".join(f"{fmt(t2i[m]['luminance']['adherence'])} (n={t2i[m]['luminance']['n']})" for m in modes) + " | - |")
        if "plan+reflect" in t2i:
            L.append(f"| mean images per prompt (reflection) | " + " | ".join(fmt(t2i[m].get("meanRounds")) for m in modes) + " | - |")
        L.append("")
    rows = []
    if "plan" in sc:
        rows.append(("plan (checkPlan of the layout)", sc["plan"]["overall"], f"parsed {fmt(sc['plan']['parsed'])}, n={sc['plan']['n']}"))
    for steps in ("1", "4"):
        g = sc.get("ground", {}).get(steps)
        if g:
            rows.append((f"grounding [email protected], {steps} step{'s' if steps != '1' else ''}", g["acc"], f"n={g['n']}"))
    if "answer" in sc:
        for k in QUESTION_KINDS:
            if k in sc["answer"]["perKind"]:
                rows.append((f"understanding: {k}", sc["answer"]["perKind"][k], f"n={sc['answer']['n'][k]}"))
        rows.append(("understanding: mean over kinds", sc["answer"]["overall"], ""))
    if "plan_edit" in sc:
        pe = sc["plan_edit"]
        for k in EDIT_KINDS:
            if k in pe["perKind"]:
                rows.append((f"edit plan (checkEditPlan): {k}", pe["perKind"][k], f"n={pe['n'][k]}"))
        rows.append(("edit plan: mean over kinds", pe["overall"], f"parsed {fmt(pe['parsed'])}"))
    for key, name in (("edit", "edit"), ("edit_plan", "edit with its plan"), ("edit_oracle_plan", "edit with the true region")):
        if key not in sc:
            continue
        for k in EDIT_KINDS:
            if k in sc[key]["perKind"]:
                rows.append((f"{name}: {k}", sc[key]["perKind"][k], f"n={sc[key]['n'][k]}"))
        rows.append((f"{name}: mean over kinds", sc[key]["overall"], f"clean {fmt(sc[key]['clean'])}"))
    for key, name in (("eval", "reflection agreement (eval images)"), ("own", "reflection agreement (own generations)")):
        r = sc.get("reflect", {}).get(key)
        if r:
            rows.append((name, r["agreement"], f"reason {fmt(r['reasonAgreement'])}, parsed {fmt(r['parsed'])}, true-match share {fmt(r['truthMatches'])}, n={r['n']}"))
    if "readback" in sc:
        rows.append(("tokenizer read-back (exact scene)", sc["readback"]["exact"], f"clean {fmt(sc['readback']['clean'])}, n={sc['readback']['n']}"))
    if rows:
        L += ["| task | score | notes |", "|---|---|---|"] + [f"| {a} | {fmt(b)} | {c} |" for a, b, c in rows] + [""]
    t = q["timings_s"]
    L.append("Timings (s): " + ", ".join(f"{k} {v:.1f}" for k, v in t.items()))
    if "estimate_full_run_s" in q:
        L.append(f"Estimated full run (--prompts 50 --samples {q['estimate_full']['samples']}, {q['settings']['threads']} thread(s)): "
                 f"{q['estimate_full_run_s'] / 60:.1f} min")
    return "\n".join(L)


def estimate(times: dict, info: dict, args, n_samples: int) -> tuple:
    """Scales each part's time by (full-run units / units run)."""
    full_prompts = 50 * 6
    full_samples = args.full_samples
    ran_prompts = info.get("t2i", {}).get("prompts", 0) or 1
    total = 0.0
    for k, v in times.items():
        if k.startswith("t2i") or k == "plan":
            total += v * full_prompts / ran_prompts
        elif k == "load":
            total += v
        elif k == "score":
            total += v * max(full_prompts / ran_prompts, full_samples / max(1, n_samples))
        else:
            total += v * full_samples / max(1, n_samples)
    return total, {"prompts": 50, "samples": full_samples}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--checkpoint", default="/tmp/ckpt-mini/checkpoint.pt")
    ap.add_argument("--data", default="/tmp/prep/eval", help="prepared eval folder (tokens.npy, samples.jsonl, codebook.npz)")
    ap.add_argument("--shard", default="/tmp/shards/eval", help="eval shard (images.u8, meta.json)")
    ap.add_argument("--prompts", type=int, default=50, help="prompts per category (spec: >= 50)")
    ap.add_argument("--images-per-prompt", type=int, default=4)
    ap.add_argument("--samples", type=int, default=600, help="eval samples for ground/answer/edit/reflect/readback")
    ap.add_argument("--full-samples", type=int, default=600, help="--samples assumed by the full-run estimate")
    ap.add_argument("--parts", default="t2i,ground,answer,edit,reflect,readback")
    ap.add_argument("--plain-only", action="store_true", help="t2i: plain images only (no planning, no reflection), e.g. for sampler sweeps")
    ap.add_argument("--no-plain", action="store_true", help="t2i: skip the plain images (planning sweeps)")
    ap.add_argument("--rounds", type=int, default=3, help="reflection: at most this many images per prompt")
    ap.add_argument("--feedback-with-plan", action="store_true", help="keep the plan in feedback rounds (not a trained template)")
    ap.add_argument("--steps", type=int, default=16)
    ap.add_argument("--guidance", type=float, default=3.0)
    ap.add_argument("--plan-guidance", type=float, default=None,
                    help="guidance of the image drawn with a plan (default: --guidance)")
    ap.add_argument("--feedback-guidance", type=float, default=None,
                    help="guidance of the images regenerated from a critique (default: --guidance)")
    ap.add_argument("--edit-guidance", type=float, default=0.0,
                    help="text guidance for edits (0: the package default from 0.2.2 to 0.4.2, when up to 0.2.0 training "
                         "never dropped the edit text and guidance 3 broke the copy; package 0.4.3 serves 0.75, "
                         "pass it to measure that)")
    ap.add_argument("--edit-modes", default="plain",
                    help="edit part: plain (no plan), plan (the model plans the region, then edits with it), oracle_plan "
                         "(the true region as the plan); comma-separated")
    ap.add_argument("--edit-temperature", type=float, default=0.0, help="edit sampling temperature (0: argmax; the package default)")
    ap.add_argument("--temperature", type=float, default=1.0)
    ap.add_argument("--shift", type=float, default=3.0)
    ap.add_argument("--order-cutoff", type=float, default=1.0,
                    help="image steps up to this share of the schedule reveal the stratified order, later ones the most "
                         "confident masked positions (1: stratified only, the default; 0: confidence from the first step)")
    ap.add_argument("--correction-sweeps", type=int, default=0, help="image correction sweeps after the last step (Sampler.correction_sweeps; the package's sampling.correction_sweeps)")
    ap.add_argument("--correction-guidance", type=float, default=None, help="guidance of the correction forwards (default: the image's, as the runtime)")
    ap.add_argument("--cfg-interval", default="0,1", help="lo,hi: guide image step i of S only where lo <= i/S < hi (Sampler.cfg_interval)")
    ap.add_argument("--temperature-end", type=float, default=None, help="image temperature of the last step, linear from --temperature (Sampler.temperature_end)")
    ap.add_argument("--top-k", type=int, default=0, help="image codes: sample among the k most probable (Sampler.top_k; 0: all)")
    ap.add_argument("--min-p", type=float, default=0.0, help="image codes: sample among those at least min_p as probable as the top one (Sampler.min_p)")
    ap.add_argument("--alg-temp", type=float, default=1.0, help="Gumbel noise scale on the confidence of confidence steps")
    ap.add_argument("--batch", type=int, default=16, help="images per forward batch")
    ap.add_argument("--text-batch", type=int, default=64)
    ap.add_argument("--text-per-step", type=int, default=None, help="answer / verdict tokens fixed per decoding step")
    ap.add_argument("--plan-per-step", type=int, default=None, help="plan tokens fixed per decoding step (default: the sampler's, 1; 4 before 0.4.1)")
    ap.add_argument("--box-prior", default=None, metavar="SAMPLES_JSONL|MANIFEST_JSON",
                    help="one-step grounding decoded jointly under a box-size prior: the training split's samples.jsonl "
                         "(box_prior.py, DEFAULT_TOL) or a package manifest.json (its tasks.box_prior); default: none")
    ap.add_argument("--plan-box-prior", action="store_true",
                    help="each plan box re-decoded under --box-prior (Sampler.redecode_plan_boxes; implied by a manifest whose box_prior has plans)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--baseline-samples", type=int, default=2000)
    ap.add_argument("--workdir", default="/tmp/lavida-eval")
    ap.add_argument("--out", default=os.path.join(REPO, "model", "quality.json"))
    ap.add_argument("--oracle", action="store_true", help="ground truth instead of the model (checks the scoring)")
    ap.add_argument("--oracle-plan", nargs="?", const="scene", choices=["scene", "named"], default=None,
                    help="t2i: the true layouts as plans, the model's images (how well the generation branch follows a right plan); "
                         "'named': only the layout items the prompt names, in its order (the plans the model writes are this short)")
    ap.add_argument("--refiner", help="decode images through this trained LabelRefiner (refine.py's refiner.pt)")
    ap.add_argument("--redecode", metavar="QUALITY_JSON",
                    help="sample nothing: decode the codes of that earlier run (its --out; its workdir must hold codes.i32) "
                         "with this run's decoder (--refiner) and score them again, settings and parts as that run's")
    ap.add_argument("--plan-eos-bias", type=float, default=None,
                    help="added to the [eos] logit when decoding plans (default: -log w of the checkpoint's --eos-weight w on plans; 0 to turn off)")
    ap.add_argument("--reflect-eos-bias", type=float, default=None,
                    help="added to the [eos] logit when decoding verdicts (default: none, as the package)")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)

    times: Dict[str, float] = {}
    t0 = time.time()
    s, tok, book, cfg = load(args.checkpoint, os.path.join(args.data, "codebook.npz"), args.device)
    if args.refiner:
        s.decoder = LabelDecode(book, cfg.grid_rows, cfg.grid_cols, LabelRefiner.load(args.refiner))
    s.order_cutoff, s.alg_temp = args.order_cutoff, args.alg_temp
    s.correction_sweeps, s.correction_guidance = args.correction_sweeps, args.correction_guidance
    s.cfg_interval = tuple(float(v) for v in args.cfg_interval.split(","))
    s.temperature_end = args.temperature_end
    s.top_k, s.min_p = args.top_k, args.min_p
    if args.plan_eos_bias is not None:
        s.eos_bias["plan"] = args.plan_eos_bias
    if args.reflect_eos_bias is not None:
        s.eos_bias["reflect"] = args.reflect_eos_bias
    if args.box_prior:
        if args.box_prior.endswith(".jsonl"):
            from .box_prior import box_prior_from_samples
            s.box_prior = box_prior_from_samples(args.box_prior)
        else:
            s.box_prior = json.load(open(args.box_prior))["tasks"]["box_prior"]
    s.plan_box_prior = args.plan_box_prior or bool((s.box_prior or {}).get("plans"))
    if args.plan_per_step:
        s.per_step["plan"] = args.plan_per_step
    if args.text_per_step:
        s.per_step["und"] = s.per_step["reflect"] = args.text_per_step
    tokens = np.load(os.path.join(args.data, "tokens.npy")).astype(np.int64)
    samples = [json.loads(l) for l in open(os.path.join(args.data, "samples.jsonl"))]
    meta = json.load(open(os.path.join(args.shard, "meta.json")))
    images = np.memmap(os.path.join(args.shard, "images.u8"), dtype=np.uint8, mode="r",
                       shape=(meta["images"], meta["height"], meta["width"], meta["channels"]))
    if min(r["seed"] for r in samples) < 1_000_000_000:
        raise SystemExit("eval data must be held out (seeds >= 1e9)")
    times["load"] = time.time() - t0
    store = Store()
    prior = json.load(open(args.redecode)) if args.redecode else None
    if prior:
        if os.path.abspath(prior["workdir"]) == os.path.abspath(args.workdir):
            raise SystemExit("--redecode needs a --workdir other than the earlier run's")
        t0 = time.time()
        redecode(s, prior, store, cfg.grid_rows * cfg.grid_cols)
        info, times["redecode"] = prior["info"], time.time() - t0
    else:
        info = run_parts(s, samples, tokens, images, store, args, times)
    t0 = time.time()
    scores = score(store, args.workdir, args.baseline_samples)
    times["score"] = time.time() - t0
    n_samples = min(args.samples, len(samples))
    q = {
        "model": "lavida-o-mini", "checkpoint": args.checkpoint, "checkpoint_step": s.step, "oracle": args.oracle,
        "settings": {"prompts": args.prompts, "images_per_prompt": args.images_per_prompt, "samples": n_samples,
                     "rounds": args.rounds, "steps": args.steps, "guidance": args.guidance, "plan_guidance": args.plan_guidance, "feedback_guidance": args.feedback_guidance, "temperature": args.temperature,
                     "shift": args.shift, "order_cutoff": args.order_cutoff, "alg_temp": args.alg_temp, "correction_sweeps": args.correction_sweeps, "correction_guidance": args.correction_guidance, "cfg_interval": args.cfg_interval, "temperature_end": args.temperature_end, "top_k": args.top_k, "min_p": args.min_p, "edit_guidance": args.edit_guidance, "edit_temperature": args.edit_temperature, "text_per_step": args.text_per_step, "plan_per_step": args.plan_per_step, "order_seed": 42, "threads": args.threads, "device": args.device,
                     "parts": args.parts, "feedback_with_plan": args.feedback_with_plan, "oracle_plan": args.oracle_plan,
                     "refiner": args.refiner, "per_step": s.per_step, "eos_bias": s.eos_bias,
                     "box_prior": s.box_prior, "plan_box_prior": s.plan_box_prior},
        "info": info, "scores": scores, "timings_s": {k: round(v, 2) for k, v in times.items()},
        "workdir": args.workdir,
    }
    if prior:
        q["settings"] = dict(prior["settings"], refiner=args.refiner)
        q["checkpoint"], q["redecoded_from"] = prior["checkpoint"], {"out": args.redecode, "workdir": prior["workdir"],
                                                                    "refiner": prior["settings"].get("refiner")}
    total, full = estimate(times, info, args, n_samples)
    q["estimate_full_run_s"], q["estimate_full"] = round(total, 1), full
    with open(args.out, "w") as f:
        json.dump(q, f, indent=1)
    print(table(q))
    return 0


if __name__ == "__main__":
    sys.exit(main())
