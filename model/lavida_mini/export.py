"""Export a lavida-model-package/v1 folder: one ONNX file per segment, manifest.json, golden.json.

    cd model && python3 -m lavida_mini.export --config fixture --seed 0 --out ../models/fixture

The output is deterministic: the same config and seed give byte-identical files.
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
from typing import Dict, List

import numpy as np
import onnx
import torch

from .config import CONFIGS, ModelConfig
from .model import ElasticMoT, build_model
from .segments import Segment, TensorSpec, build_segments
from .tokenizer import WordTokenizer
from .vq import PatchVQ

FORMAT = "lavida-model-package/v1"
OPSET = 17
SAMPLING = OrderedDict(steps=16, guidance=2.0, shift=3.0, temperature=1.0, order_seed=42)
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


def export_segment(seg: Segment, example: List[torch.Tensor]) -> bytes:
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
    verify_onnx(proto, seg)
    return proto.SerializeToString()


# ---------------------------------------------------------------- golden vectors

def tensor_json(t: torch.Tensor) -> Dict:
    t = t.detach().contiguous()
    dtype = {torch.float32: "float32", torch.int64: "int64", torch.uint8: "uint8"}[t.dtype]
    arr = t.numpy().astype({"float32": "<f4", "int64": "<i8", "uint8": "u1"}[dtype], copy=False)
    return OrderedDict(dtype=dtype, shape=list(t.shape), data=base64.b64encode(arr.tobytes()).decode("ascii"))


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
            run(f"und_joint_out_{l}", hidden=h_t, q=qkv["q"], k=qkv["k"], v=qkv["v"],
                remote_out=gj["text_out"], remote_lse=gj["text_lse"])
        run("und_tail", hidden=hidden[M][0], positions=pos_t)
        run("gen_tail", hidden=hidden[M][1], positions=pos_i)
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
             seed: int) -> "OrderedDict":
    def io_list(specs):
        return [OrderedDict(name=s.name, dtype=s.dtype, shape=s.manifest_shape()) for s in specs]

    return OrderedDict(
        format=FORMAT,
        name=name,
        version=version,
        description=(f"Seeded random (untrained) Elastic-MoT fixture, config '{cfg.name}', seed {seed}; "
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
        sampling=SAMPLING,
        segments=OrderedDict(
            (s.name, OrderedDict(file=f"{s.name}.onnx", branch=s.branch, sha256=hashes[s.name],
                                 inputs=io_list(s.inputs), outputs=io_list(s.outputs)))
            for s in segs.values()
        ),
    )


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
    args = ap.parse_args(argv)

    torch.set_num_threads(1)          # reproducible float reductions
    torch.manual_seed(args.seed)
    cfg = CONFIGS[args.config]
    tok = WordTokenizer()
    model = build_model(cfg, args.seed)
    if model.text_vocab_size != len(tok):
        raise AssertionError("model text vocabulary does not match the tokenizer")
    vq = PatchVQ.fixture(cfg, args.seed)
    segs = build_segments(model, vq)
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
