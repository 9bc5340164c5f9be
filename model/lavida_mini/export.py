"""Export a lavida-model-package/v1 folder: one ONNX file per segment, manifest.json, golden.json.

    cd model && python3 -m lavida_mini.export --config fixture --seed 0 --out ../models/fixture

The output is deterministic: the same config and seed give byte-identical files.

A trained checkpoint (train.py) with its label codebook:

    cd model && python3 -m lavida_mini.export --checkpoint /tmp/ckpt-mini/checkpoint.pt \
        --codebook /tmp/prep/train/codebook.npz --out ../models/lavida-o-mini --name lavida-o-mini --version 0.1.0

exports the same segments from the checkpoint's ElasticMoT (Mini.core), the label-patch tokenizer as
vq_decode / vq_encode, and und_image_embed (pixels -> the semantic encoder's image tokens of the text
side). golden.json is computed from the trained weights on a real sample of the prepared data folder
(--data, default: the codebook's folder). With --golden-data PREPARED_EVAL (e.g. /tmp/prep/eval) it also
writes tasks-golden.json, every task of the reference sampler token for token (golden_tasks.py).
"""
from __future__ import annotations

import argparse
import base64
import hashlib
import io
import json
import os
import sys
import warnings
from collections import OrderedDict
from typing import Dict, List, Optional, Tuple

import numpy as np
import onnx
import torch

from .box_prior import DEFAULT_TOL as BOX_PRIOR_TOL, box_prior_from_samples
from .config import CONFIGS, ModelConfig
from .model import ElasticMoT, build_model
from .segments import Segment, TensorSpec, build_segments, run_split, text_tail
from .tokenizer import WordTokenizer
from .vq import PatchVQ

FORMAT = "lavida-model-package/v1"
OPSET = 17
SAMPLING = OrderedDict(steps=16, guidance=2.0, shift=3.0, temperature=1.0, order_seed=42)
# plan_guidance / feedback_guidance (0.4.2): a plan or a critique conditions far more strongly than a prompt, and
# guidance 3 overshoots there (model/README "Guidance with a plan").
# correction_sweeps / correction_guidance (0.4.5): four sweeps of argmax corrections from the conditional row after
# the last step (model/README "Correction sweeps").
# cfg_interval (0.4.6): the first quarter of the schedule's steps unguided (model/README "Package 0.4.6").
MINI_SAMPLING = OrderedDict(steps=16, guidance=3.0, shift=3.0, temperature=0.7, order_seed=42, plan_guidance=0.5,
                            feedback_guidance=1.0, edit_guidance=0.75, edit_temperature=0.0, correction_sweeps=4,
                            correction_guidance=0.0, cfg_interval=[0.25, 1.0])
GOLDEN_PROMPT = "a red circle left of a blue square luminance : 0.125;"

ONNX_DTYPES = {"float32": onnx.TensorProto.FLOAT, "int64": onnx.TensorProto.INT64, "uint8": onnx.TensorProto.UINT8}
TORCH_DTYPES = {"float32": torch.float32, "int64": torch.int64, "uint8": torch.uint8}


# ---------------------------------------------------------------- ONNX export

def _example_inputs(seg: Segment, cfg: ModelConfig, vocab_size: int, sizes: Dict[str, int]) -> List[torch.Tensor]:
    """Inputs used only to trace the export (sizes chosen unlike any fixed dimension)."""
    g = torch.Generator().manual_seed(7)
    out = []
    for spec in seg.inputs:
        shape = [sizes[d] if isinstance(d, str) else d for d in spec.shape]
        if spec.name == "positions":
            start = sizes["T"] if spec.shape == ("I",) else 0
            out.append(torch.arange(start, start + shape[0]))
        elif spec.name == "text_ids":
            out.append(torch.randint(0, vocab_size, shape, generator=g))
        elif spec.name == "image_ids":
            high = cfg.image_vocab_size if seg.name == "gen_embed" else cfg.codebook_size
            out.append(torch.randint(0, high, shape, generator=g))
        elif spec.dtype == "uint8":
            out.append(torch.randint(0, 256, shape, generator=g).to(torch.uint8))
        else:
            out.append(torch.randn(shape, generator=g))
    return out


def _set_shape(value_info: onnx.ValueInfoProto, spec: TensorSpec) -> None:
    tt = value_info.type.tensor_type
    tt.elem_type = ONNX_DTYPES[spec.dtype]
    tt.shape.ClearField("dim")
    for d in spec.shape:
        dim = tt.shape.dim.add()
        if isinstance(d, int):
            dim.dim_value = d
        else:
            dim.dim_param = d


def _describe(vi: onnx.ValueInfoProto):
    tt = vi.type.tensor_type
    dims = [d.dim_value if d.HasField("dim_value") else (d.dim_param or "?") for d in tt.shape.dim]
    return vi.name, onnx.TensorProto.DataType.Name(tt.elem_type), dims


def verify_onnx(proto: onnx.ModelProto, seg: Segment) -> None:
    """check_model, then the graph's inputs/outputs must match the segment spec exactly."""
    onnx.checker.check_model(proto, full_check=True)
    for kind, got, want in (("input", proto.graph.input, seg.inputs), ("output", proto.graph.output, seg.outputs)):
        got = [vi for vi in got if kind == "output" or vi.name not in {i.name for i in proto.graph.initializer}]
        if [vi.name for vi in got] != [s.name for s in want]:
            raise AssertionError(f"{seg.name}: {kind} names {[vi.name for vi in got]} != {[s.name for s in want]}")
        for vi, spec in zip(got, want):
            name, dtype, dims = _describe(vi)
            want_dims = [d if isinstance(d, int) else d for d in spec.shape]
            if vi.type.tensor_type.elem_type != ONNX_DTYPES[spec.dtype] or dims != want_dims:
                raise AssertionError(f"{seg.name}: {kind} {name} is {dtype}{dims}, want {spec.dtype}{want_dims}")


def export_segment(seg: Segment, example: List[torch.Tensor], postprocess=None) -> bytes:
    dynamic_axes = {}
    for spec in seg.inputs + seg.outputs:
        axes = {i: d for i, d in enumerate(spec.shape) if isinstance(d, str)}
        if axes:
            dynamic_axes[spec.name] = axes
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            seg.module, tuple(example), buf,
            input_names=[s.name for s in seg.inputs],
            output_names=[s.name for s in seg.outputs],
            dynamic_axes=dynamic_axes,
            opset_version=OPSET,
            do_constant_folding=True,
            training=torch.onnx.TrainingMode.EVAL,
        )
    proto = onnx.load_from_string(buf.getvalue())
    # Deterministic, self-describing graph: no doc strings, declared io shapes exactly as the manifest.
    proto.doc_string = ""
    proto.graph.doc_string = ""
    proto.graph.name = seg.name
    for node in proto.graph.node:
        node.doc_string = ""
    for vi, spec in zip(proto.graph.output, seg.outputs):
        _set_shape(vi, spec)
    if postprocess is not None:
        postprocess(proto)
    verify_onnx(proto, seg)
    return proto.SerializeToString()


def _one_hot_patterns(arr: np.ndarray, depth: int) -> Optional[np.ndarray]:
    """A float32 matrix [P*depth, N] whose every column is P one-hot groups of `depth` -> its patterns
    [N, P] (uint8, the hot index of each group); anything else -> None."""
    if arr.dtype != np.float32 or arr.ndim != 2 or arr.shape[0] % depth:
        return None
    oh = np.ascontiguousarray(arr.T).reshape(arr.shape[1], arr.shape[0] // depth, depth)
    if not (np.all((oh == 0) | (oh == 1)) and np.all(oh.sum(-1) == 1)):
        return None
    return oh.argmax(-1).astype(np.uint8)


def shrink_constants(proto: onnx.ModelProto, one_hot_depth: int, min_elements: int = 100_000,
                     half: bool = False, min_half_elements: int = 4096) -> List[str]:
    """Stores large constants that are exactly representable in a smaller form as that form plus a few
    nodes that rebuild them (onnxruntime folds those once at load), so the file is smaller and the
    numbers are identical:
      - int64 tables with values 0..255 (LabelDecode.table, 4 MB) -> uint8 + Cast;
      - float32 one-hot matrices [P*L, N] (LabelEncode.book, 14.6 MB) -> uint8 patterns [N, P] + Equal;
      - with `half`, float32 constants (at least `min_half_elements`) whose every value is a float16
        value, as in a checkpoint rounded by `halve.py` -> float16 + Cast (half the bytes, the same
        float32 numbers).
    Returns a line per replaced constant."""
    from onnx import TensorProto, helper, numpy_helper
    g = proto.graph
    found = []          # (name, array, initializer or Constant node)
    smallest = min(min_elements, min_half_elements) if half else min_elements
    for init in g.initializer:
        if np.prod(init.dims) >= smallest:
            found.append((init.name, numpy_helper.to_array(init), init))
    for node in g.node:
        if node.op_type == "Constant" and len(node.attribute) == 1 and node.attribute[0].name == "value":
            t = node.attribute[0].t
            if np.prod(t.dims) >= smallest:
                found.append((node.output[0], numpy_helper.to_array(t), node))
    nodes, inits, done = [], [], []
    for name, arr, owner in found:
        base = name.replace(":", "_") + "_compact"
        large = arr.size >= min_elements
        patterns = _one_hot_patterns(arr, one_hot_depth) if large else None
        if large and arr.dtype == np.int64 and arr.min() >= 0 and arr.max() <= 255:
            inits.append(numpy_helper.from_array(arr.astype(np.uint8), base))
            nodes.append(helper.make_node("Cast", [base], [name], name=base + "_cast", to=TensorProto.INT64))
            into = "uint8"
        elif patterns is not None:
            n, p, depth = arr.shape[1], arr.shape[0] // one_hot_depth, one_hot_depth
            inits += [numpy_helper.from_array(patterns, base),
                      numpy_helper.from_array(np.arange(depth, dtype=np.int64).reshape(1, 1, depth), base + "_labels"),
                      numpy_helper.from_array(np.array([2], dtype=np.int64), base + "_axis"),
                      numpy_helper.from_array(np.array([n, p * depth], dtype=np.int64), base + "_shape")]
            nodes += [
                helper.make_node("Cast", [base], [base + "_i64"], name=base + "_cast", to=TensorProto.INT64),
                helper.make_node("Unsqueeze", [base + "_i64", base + "_axis"], [base + "_col"], name=base + "_unsqueeze"),
                helper.make_node("Equal", [base + "_col", base + "_labels"], [base + "_eq"], name=base + "_equal"),
                helper.make_node("Cast", [base + "_eq"], [base + "_f32"], name=base + "_float", to=TensorProto.FLOAT),
                helper.make_node("Reshape", [base + "_f32", base + "_shape"], [base + "_rows"], name=base + "_reshape"),
                helper.make_node("Transpose", [base + "_rows"], [name], name=base + "_transpose", perm=[1, 0]),
            ]
            into = "uint8"
        elif (half and arr.dtype == np.float32 and arr.size >= min_half_elements and np.all(np.isfinite(arr))
              and np.array_equal(arr.astype(np.float16).astype(np.float32), arr)):
            inits.append(numpy_helper.from_array(arr.astype(np.float16), base))
            nodes.append(helper.make_node("Cast", [base], [name], name=base + "_cast", to=TensorProto.FLOAT))
            into = "float16"
        else:
            continue
        if isinstance(owner, onnx.NodeProto):
            g.node.remove(owner)
        else:
            g.initializer.remove(owner)
        done.append(f"{name} {arr.dtype}{list(arr.shape)} -> {into}")
    for node in reversed(nodes):
        g.node.insert(0, node)
    g.initializer.extend(inits)
    return done


# ---------------------------------------------------------------- golden vectors

def tensor_json(t: torch.Tensor) -> Dict:
    t = t.detach().contiguous()
    dtype = {torch.float32: "float32", torch.int64: "int64", torch.uint8: "uint8"}[t.dtype]
    arr = t.numpy().astype({"float32": "<f4", "int64": "<i8", "uint8": "u1"}[dtype], copy=False)
    return OrderedDict(dtype=dtype, shape=list(t.shape), data=base64.b64encode(arr.tobytes()).decode("ascii"))


def _chain_cases(segs, hidden, text_ids, image_ids, pos_t, pos_i, M):
    """One golden case per segment of the split chain, inputs taken from a forward's hidden states.

    Returns the cases and `run`, which adds a case for any further segment call.
    """
    seg_cases: Dict[str, Dict] = {}

    def run(name, **inputs):
        seg = segs[name]
        out = seg.module(*[inputs[s.name] for s in seg.inputs])
        out = out if isinstance(out, tuple) else (out,)
        outputs = OrderedDict((s.name, o) for s, o in zip(seg.outputs, out))
        seg_cases[name] = OrderedDict(name=f"segment:{name}", inputs=OrderedDict(inputs), outputs=outputs)
        return outputs

    run("und_embed", text_ids=text_ids)
    run("gen_embed", image_ids=image_ids)
    for l in range(M):
        h_t, h_i = hidden[l]
        qkv = run(f"und_joint_qkv_{l}", hidden=h_t, positions=pos_t)
        gj = run(f"gen_joint_{l}", hidden=h_i, positions=pos_i,
                 text_q=qkv["q"], text_k=qkv["k"], text_v=qkv["v"])
        if f"gen_text_partial_{l}" in segs:
            run(f"gen_text_partial_{l}", hidden=h_i, positions=pos_i, text_q=qkv["q"])
        run(f"und_joint_out_{l}", hidden=h_t, q=qkv["q"], k=qkv["k"], v=qkv["v"],
            remote_out=gj["text_out"], remote_lse=gj["text_lse"])
    text_tail(segs, hidden[M][0], pos_t, run)
    run("gen_tail", hidden=hidden[M][1], positions=pos_i)
    return seg_cases, run


def golden_cases(model: ElasticMoT, segs: "OrderedDict[str, Segment]", tok: WordTokenizer, seed: int) -> List[Dict]:
    cfg = model.cfg
    g = torch.Generator().manual_seed(seed + 1)
    prompt = tok.encode(GOLDEN_PROMPT)
    T, I, M = len(prompt), cfg.num_image_tokens, cfg.joint_layers
    text_ids = torch.tensor([prompt, [tok.mask_id] * T], dtype=torch.int64)        # cond row, CFG uncond row
    codes = torch.randint(0, cfg.codebook_size, (2, I), generator=g)
    masked = torch.rand((2, I), generator=g) < 0.5
    image_ids = torch.where(masked, torch.full_like(codes, cfg.mask_id), codes)
    pos_t, pos_i = torch.arange(T), torch.arange(T, T + I)

    with torch.no_grad():
        text_logits, image_logits, hidden = model(text_ids, image_ids, return_hidden=True)
        cases = [OrderedDict(name="full_forward",
                             inputs=OrderedDict(text_ids=text_ids, image_ids=image_ids),
                             outputs=OrderedDict(text_logits=text_logits, image_logits=image_logits))]
        seg_cases, run = _chain_cases(segs, hidden, text_ids, image_ids, pos_t, pos_i, M)
        # gen_embed on two grids in a row (an edit's condition grid, then its output grid): with a grid-cell
        # table, token i gets cell i % I, so the second grid's rows repeat the first grid's cells
        two = torch.cat((codes, image_ids), 1)
        cases.append(OrderedDict(name="gen_embed_two_grids", inputs=OrderedDict(image_ids=two),
                                 outputs=OrderedDict(hidden=segs["gen_embed"].module(two))))
        ids = image_logits.argmax(-1).view(2, cfg.grid_rows, cfg.grid_cols)
        pixels = run("vq_decode", image_ids=ids)["pixels"]
        # encode a noisy copy, so the nearest-patch search is exercised, not only exact matches
        noise = torch.randint(-6, 7, pixels.shape, generator=g)
        noisy = (pixels.to(torch.int64) + noise).clamp(0, 255).to(torch.uint8)
        enc = run("vq_encode", pixels=noisy)["image_ids"]
        if not torch.equal(enc, ids):
            raise AssertionError("vq_encode of the lightly noised decode did not return the codes")
        # no near-ties: the runtime must pick the same patch
        vq = segs["vq_encode"].module.vq
        x = noisy.to(torch.float32) - 128.0
        x = x.view(2, cfg.grid_rows, cfg.patch, cfg.grid_cols, cfg.patch, 3).permute(0, 1, 3, 2, 4, 5).reshape(2, I, -1)
        d = torch.matmul(x, vq.codebook_t2) + vq.codebook_sq
        best2 = d.topk(2, dim=-1, largest=False).values
        if (best2[..., 1] - best2[..., 0]).min() < 1000:
            raise AssertionError("vq_encode golden input has a near tie")

    for name in segs:
        cases.append(seg_cases[name])
    return cases


def golden_json(cases: List[Dict]) -> str:
    out = {"cases": [OrderedDict(name=c["name"],
                                 inputs=OrderedDict((k, tensor_json(v)) for k, v in c["inputs"].items()),
                                 outputs=OrderedDict((k, tensor_json(v)) for k, v in c["outputs"].items()))
                     for c in cases]}
    return json.dumps(out, indent=1) + "\n"


# ---------------------------------------------------------------- manifest

def manifest(cfg: ModelConfig, tok: WordTokenizer, segs, hashes: Dict[str, str], name: str, version: str,
             seed: int, description: Optional[str] = None, sampling: Optional[Dict] = None,
             tasks: Optional[Dict] = None) -> "OrderedDict":
    def io_list(specs):
        return [OrderedDict(name=s.name, dtype=s.dtype, shape=s.manifest_shape()) for s in specs]

    man = OrderedDict(
        format=FORMAT,
        name=name,
        version=version,
        description=description if description is not None else (
            f"Seeded random (untrained) Elastic-MoT fixture, config '{cfg.name}', seed {seed}; "
            "regenerate with: cd model && python3 -m lavida_mini.export "
            f"--config {cfg.name} --seed {seed}"),
        architecture=OrderedDict(
            family="elastic-mot",
            num_layers=cfg.num_layers,
            joint_layers=cfg.joint_layers,
            und_hidden=cfg.und_hidden,
            gen_hidden=cfg.gen_hidden,
            und_ffn=cfg.und_ffn,
            gen_ffn=cfg.gen_ffn,
            heads=cfg.heads,
            head_dim=cfg.head_dim,
            rope_theta=float(cfg.rope_theta),
            norm_eps=float(cfg.norm_eps),
            max_text_len=cfg.max_text_len,
            image_locality_slopes=[float(s) for s in cfg.image_locality_slopes],
            **({"image_position_table": True} if cfg.image_position_table else {}),
        ),
        text=OrderedDict(
            tokenizer=tok.name,
            vocab=tok.vocab,
            special_tokens=tok.special_tokens,
            loc_bins=OrderedDict(first_id=tok.loc_first_id, count=tok.loc_count),
        ),
        image=OrderedDict(
            width=cfg.image_width, height=cfg.image_height, channels=cfg.image_channels,
            grid=[cfg.grid_rows, cfg.grid_cols], patch=cfg.patch,
            codebook_size=cfg.codebook_size, mask_id=cfg.mask_id, vocab_size=cfg.image_vocab_size,
        ),
        sampling=sampling if sampling is not None else SAMPLING,
    )
    if cfg.edit_conditions:
        man["image"]["condition_offset"] = cfg.condition_offset
    if tasks is not None:
        man["tasks"] = tasks
    man["segments"] = OrderedDict(
        (s.name, OrderedDict(file=f"{s.name}.onnx", branch=s.branch, sha256=hashes[s.name],
                             inputs=io_list(s.inputs), outputs=io_list(s.outputs)))
        for s in segs.values()
    )
    return man


# ---------------------------------------------------------------- trained checkpoint (lavida-o-mini)

# The text templates train.py (Data.example) trains on; the runtime must build its inputs the same way.
TASKS = OrderedDict(
    text_to_image="{prompt}",
    text_to_image_plan="{prompt} plan : {layout}",
    feedback="{prompt} feedback : {verdict}",
    plan="plan : {prompt}",
    understand="question : {question}",
    ground="locate : {ref}",
    edit="edit : {instruction}",
    reflect="evaluate : {prompt}",
    answer_len=OrderedDict(und=24, reflect=16, plan=44),
    layout_item="<box> {colour} {shape} </box> <loc> x1 y1 x2 y2 </loc>",
)


def layout_words() -> "OrderedDict[str, List[str]]":
    """The manifest's `tasks.layout_words`: the words each label placeholder of `layout_item` may take, the
    reference sampler's rule (Sampler.parse_layout skips an item whose label is not one colour and one shape)."""
    from .sample import COLOURS, SHAPES
    return OrderedDict(colour=list(COLOURS), shape=list(SHAPES))


# Editing with a plan (train.py's plan_edit and edit_plan tasks), written only for a checkpoint that trained them.
EDIT_PLAN_TASKS = OrderedDict(plan_edit="edit plan : {instruction}", edit_plan="edit : {instruction} plan : {layout}")


def task_templates(edit_plans: bool) -> "OrderedDict[str, object]":
    """The manifest's `tasks` templates; with edit_plans, the plan_edit / edit_plan templates after `reflect` and
    `answer_len.plan_edit`."""
    tasks: "OrderedDict[str, object]" = OrderedDict()
    for key, value in TASKS.items():
        tasks[key] = OrderedDict(value) if isinstance(value, OrderedDict) else value
        if key == "reflect" and edit_plans:
            tasks.update(EDIT_PLAN_TASKS)
        if key == "layout_item":
            tasks["layout_words"] = layout_words()
    if edit_plans:
        from .train import ANSWER_LEN
        tasks["answer_len"]["plan_edit"] = ANSWER_LEN["plan_edit"]
    return tasks


def load_checkpoint(path: str, codebook_path: str, refiner_path: Optional[str] = None):
    """-> (checkpoint dict, ModelConfig, vocab, Mini, LabelDecode, LabelEncode); with `refiner_path`, the
    decoder runs the lookup through that trained LabelRefiner (refine.py)."""
    from .labelvq import LabelCodebook, LabelDecode, LabelEncode, LabelRefiner
    from .train import Mini, load_mini
    state = torch.load(path, map_location="cpu")
    cfg = ModelConfig.from_dict(state["config"])
    vocab = list(state["vocab"])
    mini = load_mini(state, cfg, len(vocab))
    mini.eval()
    cfg = mini.cfg   # train.py --gen-pos: folded into the core's grid-cell table (image_position_table)
    book = LabelCodebook.load(codebook_path)
    if book.size != cfg.codebook_size or book.patch != cfg.patch:
        raise ValueError(f"codebook {codebook_path} has {book.size} codes of patch {book.patch}, "
                         f"the checkpoint wants {cfg.codebook_size} of patch {cfg.patch}")
    refiner = LabelRefiner.load(refiner_path) if refiner_path else None
    dec = LabelDecode(book, cfg.grid_rows, cfg.grid_cols, refiner).eval()
    enc = LabelEncode(book, cfg.grid_rows, cfg.grid_cols).eval()
    return state, cfg, vocab, mini, dec, enc


def _real_sample(data_dir: str):
    """The first prepared sample with a LUMINANCE prompt and two or more objects, and the image tokens."""
    tokens = np.load(os.path.join(data_dir, "tokens.npy"), mmap_mode="r")
    with open(os.path.join(data_dir, "samples.jsonl")) as f:
        for line in f:
            r = json.loads(line)
            if r["t2i"]["luminance"] is not None and len(r["scene"]["objects"]) >= 2:
                return r, tokens
    raise ValueError(f"{data_dir}/samples.jsonl has no sample with a LUMINANCE prompt and two objects")


def _max_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    return (a.to(torch.float64) - b.to(torch.float64)).abs().max().item()


def mini_golden_cases(mini, segs: "OrderedDict[str, Segment]", tok: WordTokenizer, dec, enc,
                      data_dir: str, seed: int = 0) -> Tuple[List[Dict], Dict[str, float]]:
    """Golden cases from the trained weights on a real sample. Returns (cases, self-check diffs)."""
    model, sem = mini.core, mini.sem
    cfg = model.cfg
    K, I, M = cfg.codebook_size, cfg.num_image_tokens, cfg.joint_layers
    g = torch.Generator().manual_seed(seed + 1)
    r, tokens = _real_sample(data_dir)
    codes = torch.from_numpy(np.asarray(tokens[r["image"]]).astype(np.int64))[None]            # [1, I]
    target = torch.from_numpy(np.asarray(tokens[r["edit"]["target_image"]]).astype(np.int64))[None]
    checks: Dict[str, float] = {}

    prompt = tok.encode(r["t2i"]["text"])
    T = len(prompt)
    text_ids = torch.tensor([prompt], dtype=torch.int64)       # one conditional row (keeps golden.json small)
    masked = torch.rand((1, I), generator=g) < 0.5
    image_ids = torch.where(masked, torch.full_like(codes, cfg.mask_id), codes)
    pos_t, pos_i = torch.arange(T), torch.arange(T, T + I)

    with torch.no_grad():
        text_logits, image_logits, hidden = model(text_ids, image_ids, return_hidden=True)
        # the trainer's own forward (train.Mini) agrees with ElasticMoT.forward on this input
        tl, il = mini(text_ids, torch.zeros_like(text_ids, dtype=torch.bool), None, image_ids, True)
        checks["train.Mini == ElasticMoT.forward"] = max(_max_diff(tl, text_logits), _max_diff(il, image_logits))
        st, si = run_split(segs, text_ids, image_ids)
        checks["split == forward (t2i)"] = max(_max_diff(st, text_logits), _max_diff(si, image_logits))
        cases = [OrderedDict(name="full_forward",
                             inputs=OrderedDict(text_ids=text_ids, image_ids=image_ids),
                             outputs=OrderedDict(text_logits=text_logits, image_logits=image_logits))]
        seg_cases, run = _chain_cases(segs, hidden, text_ids, image_ids, pos_t, pos_i, M)

        # image tokenizer: decode the model's argmax and a real image; encode lightly noised real images
        real = torch.cat((codes, target)).view(2, cfg.grid_rows, cfg.grid_cols)
        ids = torch.cat((image_logits.argmax(-1).view(1, cfg.grid_rows, cfg.grid_cols), real[:1]))
        pixels = run("vq_decode", image_ids=ids)["pixels"]
        real_pixels = dec(real)
        noise = torch.randint(-2, 3, real_pixels.shape, generator=g)
        noisy = (real_pixels.to(torch.int64) + noise).clamp(0, 255).to(torch.uint8)
        back = run("vq_encode", pixels=noisy)["image_ids"]
        if not torch.equal(back, real):
            raise AssertionError("vq_encode of the lightly noised decode of real tokens did not return them")
        emb = run("und_image_embed", pixels=noisy)["hidden"]
        checks["und_image_embed == sem(codes)"] = _max_diff(emb, sem(real.flatten(1)))

        # understanding: [semantic image tokens; question + answer masks], text side only
        question = tok.encode("question : " + r["question"]["text"])
        und_text = torch.tensor([question + [tok.mask_id] * 24], dtype=torch.int64)
        und_pixels = real_pixels[:1]
        und_logits, _ = mini(und_text, torch.zeros_like(und_text, dtype=torch.bool), enc(und_pixels).flatten(1), None, True)
        # logits of the text positions only (the 64 image-token positions carry no targets)
        cases.append(OrderedDict(name="understand_forward",
                                 inputs=OrderedDict(pixels=und_pixels, text_ids=und_text),
                                 outputs=OrderedDict(text_logits=und_logits[:, I:])))
        h = torch.cat((segs["und_image_embed"].module(und_pixels), segs["und_embed"].module(und_text)), 1)
        S = h.shape[1]
        pos = torch.arange(S)
        for l in range(M):
            q, k, v = segs[f"und_joint_qkv_{l}"].module(h, pos)
            h = segs[f"und_joint_out_{l}"].module(h, q, k, v, torch.zeros_like(q),
                                                  torch.full(q.shape[:3], float("-inf")))
        checks["text-only segments (remote lse -inf) == Mini (understand)"] = _max_diff(
            text_tail(segs, h, pos), und_logits)
        answer = und_logits[0, S - 24:].argmax(-1).tolist()
        print(f"understand: {r['question']['text']!r} -> {tok.decode(answer)!r} (truth {r['question']['answer']!r})")

        # editing: [condition grid (code + condition_offset); output grid] on the generation branch
        edit_text = torch.tensor([tok.encode("edit : " + r["edit"]["text"])], dtype=torch.int64)
        edit_ids = torch.cat((codes + cfg.condition_offset, torch.full_like(codes, cfg.mask_id)), 1)
        _, ref_i = model(edit_text, edit_ids)
        _, mini_i = mini(edit_text, torch.zeros_like(edit_text, dtype=torch.bool), None, edit_ids, False)
        _, seg_i = run_split(segs, edit_text, edit_ids, stop_text_early=True)
        checks["edit: elastic split == forward == Mini"] = max(_max_diff(seg_i, ref_i), _max_diff(mini_i, ref_i))
        # [1, 2I, K] logits would add 5.6 MB of base64: keep each token's top logit and its argmax
        cases.append(OrderedDict(name="edit_forward",
                                 inputs=OrderedDict(text_ids=edit_text, image_ids=edit_ids),
                                 outputs=OrderedDict(image_logits_max=ref_i.amax(-1), image_argmax=ref_i.argmax(-1))))
        changed = (ref_i[0, I:].argmax(-1) != codes[0]).sum().item()
        print(f"edit: {r['edit']['text']!r}: first-step argmax differs from the source in {changed}/{I} cells")

    for name in segs:
        cases.append(seg_cases[name])
    return cases, checks


def export_checkpoint(args) -> int:
    from .labelvq import NUM_LABELS
    from .sample import DEFAULT_PER_STEP, trained_eos_bias, trained_tasks
    state, cfg, vocab, mini, dec, enc = load_checkpoint(args.checkpoint, args.codebook, args.refiner)
    tok = WordTokenizer(vocab)
    model = mini.core
    if model.text_vocab_size != len(tok):
        raise AssertionError("model text vocabulary does not match the checkpoint's vocab")
    segs = build_segments(model, None, decoder=dec, encoder=enc, semantic=mini.sem, text_tail=args.text_tail or "layers")
    os.makedirs(args.out, exist_ok=True)

    sizes = {"B": 3, "T": 5, "I": cfg.num_image_tokens}
    hashes = {}
    half = state.get("weights_rounded") == "float16"   # halve.py: every weight is a float16 value
    for seg in segs.values():
        shrunk: List[str] = []
        data = export_segment(seg, _example_inputs(seg, cfg, model.text_vocab_size, sizes),
                              lambda proto: shrunk.extend(shrink_constants(proto, NUM_LABELS, half=half)))
        for line in shrunk:
            print(f"  {seg.name}: stored {line}")
        hashes[seg.name] = _write(os.path.join(args.out, f"{seg.name}.onnx"), data)
        print(f"{seg.name}.onnx  {len(data):9d} B  sha256 {hashes[seg.name][:16]}")

    data_dir = args.data or os.path.dirname(os.path.abspath(args.codebook))
    cases, checks = mini_golden_cases(mini, segs, tok, dec, enc, data_dir)
    for label, diff in checks.items():
        print(f"check {label}: max|d| = {diff:.2e}")
        if diff > 1e-4:
            raise AssertionError(f"self-check failed: {label}: {diff}")
    _write(os.path.join(args.out, "golden.json"), golden_json(cases).encode())
    minutes = state["elapsed"] / 60.0
    params = sum(p.numel() for p in mini.parameters())
    description = (f"lavida-o-mini: Elastic-MoT ({params} parameters) trained on the Shapes world with train.py; "
                   f"checkpoint step {state['step']} after {minutes:.1f} training minutes; label-patch image "
                   f"tokenizer of {cfg.codebook_size} codes"
                   + (f" with a trained refiner in its decoder ({os.path.basename(args.refiner)})" if args.refiner else "")
                   + ". Export: cd model && python3 -m lavida_mini.export --checkpoint CHECKPOINT --codebook CODEBOOK.npz"
                   + (" --refiner REFINER.pt" if args.refiner else ""))
    edit_plans = args.edit_plan == "yes" or (args.edit_plan == "auto" and {"plan_edit", "edit_plan"} <= set(trained_tasks(state.get("args") or {})))
    tasks = task_templates(edit_plans)
    tasks["per_step"] = OrderedDict((k, v) for k, v in DEFAULT_PER_STEP.items() if k != "plan_edit" or edit_plans)
    eos_bias = trained_eos_bias(state.get("args") or {})
    if eos_bias:
        tasks["eos_bias"] = OrderedDict(sorted(eos_bias.items()))
    prior_src = args.box_prior_data or os.path.join(data_dir, "samples.jsonl")
    if args.box_prior_data != "none" and os.path.exists(prior_src):
        # one-step grounding under the training targets' box sizes (box_prior.py; the runtime's box-prior.ts)
        prior = box_prior_from_samples(prior_src, tol=args.box_prior_tol)
        tasks["box_prior"] = OrderedDict([("tol", prior["tol"]), ("entries", prior["entries"]), ("plans", not args.box_prior_no_plans)])
        print(f"box prior from {prior_src}: tol {prior['tol']}, {len(prior['entries'])} sizes, the first {prior['entries'][:4]}")
    man = manifest(cfg, tok, segs, hashes, args.name or "lavida-o-mini", args.version, 0,
                   description=description, sampling=MINI_SAMPLING, tasks=tasks)
    _write(os.path.join(args.out, "manifest.json"), (json.dumps(man, indent=2) + "\n").encode())
    if args.golden_data:
        from .golden_tasks import write as write_task_golden
        write_task_golden(args.checkpoint, args.codebook, args.golden_data, os.path.join(args.out, "tasks-golden.json"),
                          args.name or "lavida-o-mini", args.version)
    total = sum(os.path.getsize(os.path.join(args.out, f)) for f in os.listdir(args.out))
    print(f"wrote {len(segs)} segments, manifest.json, golden.json ({len(cases)} cases) to {args.out}: "
          f"{total / 1e6:.1f} MB; step {state['step']}, {minutes:.1f} min")
    if total > 40e6:
        raise AssertionError(f"package is {total / 1e6:.1f} MB, over 40 MB")
    return 0


def _write(path: str, data: bytes) -> str:
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(data)
    os.replace(tmp, path)
    return hashlib.sha256(data).hexdigest()


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", default="fixture", choices=sorted(CONFIGS))
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", required=True)
    ap.add_argument("--name", default=None, help="package name (default lavida-o-<config>)")
    ap.add_argument("--version", default="0.1.0")
    ap.add_argument("--checkpoint", default=None, help="a train.py checkpoint.pt: export the trained model")
    ap.add_argument("--codebook", default=None, help="the label codebook.npz of the checkpoint (with --checkpoint)")
    ap.add_argument("--data", default=None,
                    help="prepared data folder for the golden sample (default: the codebook's folder)")
    ap.add_argument("--golden-data", default=None,
                    help="prepared eval folder: also write tasks-golden.json (golden_tasks.py; with --checkpoint)")
    ap.add_argument("--refiner", default=None, help="a refine.py refiner.pt: vq_decode runs the lookup through it (with --checkpoint)")
    ap.add_argument("--box-prior-data", default=None,
                    help="samples.jsonl whose grounding boxes give tasks.box_prior (default: the data folder's, where it "
                         "exists; 'none': no prior, each coordinate slot decoded by its argmax)")
    ap.add_argument("--box-prior-no-plans", action="store_true", help="tasks.box_prior.plans false: plan boxes stay as decoded")
    ap.add_argument("--edit-plan", choices=("auto", "yes", "no"), default="auto",
                    help="write the editing-with-a-plan templates (plan_edit, edit_plan): auto = when the checkpoint's last run "
                         "trained both tasks")
    ap.add_argument("--box-prior-tol", type=int, default=BOX_PRIOR_TOL, help="tasks.box_prior.tol: bins the far corner may lie from near + size")
    ap.add_argument("--text-tail", choices=["whole", "layers"], default=None,
                    help="the text side after the joint layers as one und_tail, or per layer + und_head "
                         "(enables the runtime's prompt cache; default: layers for a checkpoint, whole for the fixture)")
    args = ap.parse_args(argv)

    torch.set_num_threads(1)          # reproducible float reductions
    torch.manual_seed(args.seed)
    if args.golden_data and not args.checkpoint:
        ap.error("--golden-data needs --checkpoint (the fixture has no task golden vectors)")
    if args.checkpoint:
        if not args.codebook:
            ap.error("--checkpoint needs --codebook")
        return export_checkpoint(args)
    cfg = CONFIGS[args.config]
    tok = WordTokenizer()
    model = build_model(cfg, args.seed)
    if model.text_vocab_size != len(tok):
        raise AssertionError("model text vocabulary does not match the tokenizer")
    vq = PatchVQ.fixture(cfg, args.seed)
    segs = build_segments(model, vq, text_tail=args.text_tail or "whole")
    os.makedirs(args.out, exist_ok=True)

    sizes = {"B": 3, "T": 5, "I": cfg.num_image_tokens}
    hashes = {}
    for seg in segs.values():
        data = export_segment(seg, _example_inputs(seg, cfg, model.text_vocab_size, sizes))
        hashes[seg.name] = _write(os.path.join(args.out, f"{seg.name}.onnx"), data)
        print(f"{seg.name}.onnx  {len(data):8d} B  sha256 {hashes[seg.name][:16]}")

    cases = golden_cases(model, segs, tok, args.seed)
    _write(os.path.join(args.out, "golden.json"), golden_json(cases).encode())
    man = manifest(cfg, tok, segs, hashes, args.name or f"lavida-o-{cfg.name}", args.version, args.seed)
    _write(os.path.join(args.out, "manifest.json"), (json.dumps(man, indent=2) + "\n").encode())
    print(f"wrote {len(segs)} segments, manifest.json, golden.json ({len(cases)} cases) to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
