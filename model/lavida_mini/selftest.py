"""Self-check: the segment decomposition (split protocol) reproduces ElasticMoT.forward, and the VQ
round-trips.  Run: cd model && python3 -m lavida_mini.selftest [--config fixture] [--seed 0]"""
from __future__ import annotations

import argparse
import copy
import sys

import torch

from .config import CONFIGS
from .model import build_model
from .segments import build_segments, run_split
from .tokenizer import WordTokenizer
from .vq import PatchVQ

TOL = 1e-5


def main(argv=None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--config", default="fixture", choices=sorted(CONFIGS))
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--package", default=None,
                    help="also re-export into a temp dir and require byte-identical files to this package")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    cfg = CONFIGS[args.config]
    model = build_model(cfg, args.seed)
    vq = PatchVQ.fixture(cfg, args.seed)
    segs = build_segments(model, vq)
    model64 = copy.deepcopy(model).double()
    segs64 = build_segments(model64, vq)
    tok = WordTokenizer()
    g = torch.Generator().manual_seed(1234)
    I = cfg.num_image_tokens
    failures = 0

    def check(label, ok, detail=""):
        nonlocal failures
        failures += 0 if ok else 1
        print(f"{'ok  ' if ok else 'FAIL'} {label}{'  ' + detail if detail else ''}")

    # tokenizer
    ids = tok.encode("LUMINANCE : 0.125;")
    check("tokenizer word-v1", [tok.vocab[i] for i in ids] == ["luminance", ":", "0", ".", "1", "2", "5", ";"])
    check("tokenizer unk", tok.encode("zebra") == [tok.special_tokens["unk"]])

    # split protocol == forward, for several batch sizes and text lengths
    with torch.no_grad():
        for B, T in [(1, 1), (2, 16), (3, 7), (2, cfg.max_text_len)]:
            text_ids = torch.randint(0, model.text_vocab_size, (B, T), generator=g)
            image_ids = torch.randint(0, cfg.image_vocab_size, (B, I), generator=g)
            ref_t, ref_i = model(text_ids, image_ids)
            seg_t, seg_i = run_split(segs, text_ids, image_ids)
            # float32: within TOL relative to the logits' scale (BLAS kernels differ by machine in the last bits)
            tol_t = TOL * max(1.0, ref_t.abs().max().item())
            tol_i = TOL * max(1.0, ref_i.abs().max().item())
            dt = (seg_t - ref_t).abs().max().item()
            di = (seg_i - ref_i).abs().max().item()
            check(f"split == forward B={B} T={T}", dt <= tol_t and di <= tol_i,
                  f"max|dtext|={dt:.2e} (tol {tol_t:.1e}) max|dimage|={di:.2e} (tol {tol_i:.1e})")
            _, el_i = run_split(segs, text_ids, image_ids, stop_text_early=True)
            de = (el_i - ref_i).abs().max().item()
            check(f"elastic t2i (text stops at layer M-1) B={B} T={T}", de <= tol_i, f"max|dimage|={de:.2e}")
            # float64: the decomposition is exact algebra, so it must agree to rounding of doubles
            ref_t, ref_i = model64(text_ids, image_ids)
            seg_t, seg_i = run_split(segs64, text_ids, image_ids)
            d64 = max((seg_t - ref_t).abs().max().item(), (seg_i - ref_i).abs().max().item())
            check(f"split == forward in float64 B={B} T={T}", d64 <= 1e-10, f"max|d|={d64:.2e}")
            spread = ref_t.std().item(), ref_i.std().item()
            check(f"logits not near-uniform B={B} T={T}", min(spread) > 0.5, f"std text={spread[0]:.2f} image={spread[1]:.2f}")
            # gen_text_partial_l is gen_joint_l's text partial alone: the same numbers
            g2 = torch.Generator().manual_seed(T)
            h_i = segs["gen_embed"].module(image_ids)
            pos_i = torch.arange(T, T + I)
            for l in range(cfg.joint_layers - 1):
                q, k, v = (torch.randn((B, cfg.heads, T, cfg.head_dim), generator=g2) for _ in range(3))
                _, out, lse = segs[f"gen_joint_{l}"].module(h_i, pos_i, q, k, v)
                out2, lse2 = segs[f"gen_text_partial_{l}"].module(h_i, pos_i, q)
                check(f"gen_text_partial_{l} == gen_joint_{l}'s text_out, text_lse B={B} T={T}",
                      torch.equal(out, out2) and torch.equal(lse, lse2))

        # VQ round trip
        codes = torch.randint(0, cfg.codebook_size, (3, cfg.grid_rows, cfg.grid_cols), generator=g)
        pixels = segs["vq_decode"].module(codes)
        check("vq_decode shape/dtype", tuple(pixels.shape) == (3, cfg.image_height, cfg.image_width, 3)
              and pixels.dtype == torch.uint8)
        back = segs["vq_encode"].module(pixels)
        check("vq round trip decode -> encode", torch.equal(back, codes) and back.dtype == torch.int64)
        all_codes = torch.arange(cfg.codebook_size).view(1, cfg.grid_rows, cfg.grid_cols) if cfg.num_image_tokens == cfg.codebook_size else None
        if all_codes is not None:
            check("vq round trip, every code", torch.equal(segs["vq_encode"].module(segs["vq_decode"].module(all_codes)), all_codes))

    # Pattern factors (train.py --pattern-factors) fold into the plain tables without changing the function.
    from dataclasses import replace as _replace
    from .labelvq import LEVELS, NUM_LABELS
    from .train import Mini, pattern_features
    fcfg = _replace(cfg, codebook_size=LEVELS + 7, edit_conditions=True)
    patterns = torch.randint(0, NUM_LABELS, (7, fcfg.patch * fcfg.patch), generator=g).numpy()
    mini = Mini(fcfg, len(tok.vocab), pattern_features(patterns, LEVELS, NUM_LABELS), tie_text_head=True)
    with torch.no_grad():
        for p in mini.factors.parameters():
            p.normal_(0.0, 0.05, generator=g)
    mini.eval()
    K = fcfg.codebook_size
    text = torch.randint(10, 60, (2, 6), generator=g)
    pad = torch.zeros_like(text, dtype=torch.bool)
    prefix = torch.randint(0, K, (2, I), generator=g)
    image = torch.cat((torch.randint(0, K, (2, I), generator=g) + fcfg.condition_offset,
                       torch.where(torch.rand(2, I, generator=g) < 0.5, torch.randint(0, K, (2, I), generator=g), K)), 1)
    with torch.no_grad():
        before = mini(text, pad, prefix, image, True)
        factored = [p.abs().sum().item() for p in mini.factors.parameters()]
        mini.fold()
        after = mini(text, pad, prefix, image, True)
    dfold = max((a - b).abs().max().item() for a, b in zip(before, after))
    check("pattern factors and the tied text head fold into the plain tables",
          mini.factors is None and not mini.tied and min(factored) > 0 and dfold <= 1e-5, f"max|d|={dfold:.2e}")
    with torch.no_grad():   # forward(tap=l): the same logits, and the text side's state after layer l
        last = mini(text, pad, prefix, None, True, tap=fcfg.num_layers - 1)
        first = mini(text, pad, prefix, image, True, tap=0)
        plain_text = mini(text, pad, prefix, None, True)[0]
    check("forward(tap=l) keeps the logits and returns the text side after layer l",
          torch.equal(last[0], plain_text) and torch.equal(first[0], after[0])
          and torch.allclose(mini.text_head(mini.core.und_norm(last[2])), plain_text, atol=1e-5)
          and first[2].shape == (2, I + 6, fcfg.und_hidden) and not torch.equal(first[2], last[2]))

    # grow.py: two more split layers with zero output projections compute the same function.
    from dataclasses import asdict
    from .grow import grow
    with torch.no_grad():
        for p in mini.parameters():
            p.add_(0.01 * torch.randn(p.shape, generator=g))
    small = {"model": mini.state_dict(), "config": asdict(fcfg), "vocab": tok.vocab, "step": 7, "elapsed": 0.0}
    deep = _replace(fcfg, num_layers=fcfg.num_layers + 2)
    grown = grow(small, deep)
    big = Mini(deep, len(tok.vocab))
    big.load_state_dict(grown["model"])
    big.eval()
    with torch.no_grad():
        before = mini(text, pad, prefix, image, True)
        after = big(text, pad, prefix, image, True)
    dgrow = max((a - b).abs().max().item() for a, b in zip(before, after))
    new_out = [grown["model"][f"core.layers.{l}.{b}.{w}.weight"] for l in range(fcfg.num_layers, deep.num_layers)
               for b in ("und", "gen") for w in ("wo", "w2")]
    check("grow: deeper model, same function", dgrow == 0.0 and all(not w.any() for w in new_out)
          and grown["step"] == 7, f"max|d|={dgrow:.2e}")
    # train.py --train-scope und-tail: the weights it trains reach the text outputs and no image output.
    from .train import tail_parameters
    with torch.no_grad():
        before = big(text, pad, prefix, image, True)
        for p in tail_parameters(big):
            p.add_(0.1 * torch.randn(p.shape, generator=g))
        after = big(text, pad, prefix, image, True)
    dimg = (before[1] - after[1]).abs().max().item()
    dtxt = (before[0] - after[0]).abs().max().item()
    check("und-tail weights change text logits only", dimg == 0.0 and dtxt > 1e-3,
          f"max|dimage|={dimg:.2e} max|dtext|={dtxt:.2e}")
    # --train-scope und-read adds the semantic encoder: images without a semantic prefix (text-to-image with or
    # without a plan, edits) stay the same; a prefixed one (t2i_feedback) and the text change.
    from .train import read_parameters

    def perturb_read(model, text, pad):
        """Perturbs read_parameters(model); max |d| of the image logits without and with a prefix, and of the text's."""
        with torch.no_grad():
            before = model(text, pad, None, image, True), model(text, pad, prefix, image, True)
            for p in read_parameters(model):
                p.add_(0.1 * torch.randn(p.shape, generator=g))
            after = model(text, pad, None, image, True), model(text, pad, prefix, image, True)
        return ((before[0][1] - after[0][1]).abs().max().item(), (before[1][1] - after[1][1]).abs().max().item(),
                (before[1][0] - after[1][0]).abs().max().item())

    dplain, dfed, dtxt = perturb_read(big, text, pad)
    check("und-read weights change text and prefixed-image logits only", dplain == 0.0 and dfed > 1e-3 and dtxt > 1e-3,
          f"max|dimage, no prefix|={dplain:.2e} max|dimage, prefix|={dfed:.2e} max|dtext|={dtxt:.2e}")
    # The tasks each scope draws: --read-feedback adds t2i_feedback (its prefix reaches the semantic encoder) to
    # und-read only; without it the drawn tasks are those of before the flag.
    from .train import IMAGE_TASKS, TASKS, drawn_tasks
    read = drawn_tasks(TASKS, "und-read"); read_fb = drawn_tasks(TASKS, "und-read", True)
    check("drawn tasks: --read-feedback adds t2i_feedback to und-read only",
          set(read_fb) - set(read) == {"t2i_feedback"} and drawn_tasks(TASKS, "und-tail", True) == drawn_tasks(TASKS, "und-tail")
          and "t2i" not in read_fb and set(drawn_tasks(TASKS, "gen")) == set(IMAGE_TASKS) and drawn_tasks(TASKS, "all") == TASKS,
          f"und-read {sorted(read)}, with --read-feedback {sorted(read_fb)}")
    # ... and with --pattern-factors it trains the semantic factor only (the image factors stay zero).
    fmini = Mini(fcfg, len(tok.vocab), pattern_features(patterns, LEVELS, NUM_LABELS))
    fmini.eval()
    ftext = torch.randint(10, 60, (2, 6), generator=g)
    fpad = torch.zeros_like(ftext, dtype=torch.bool)
    dplain, dfed, _ = perturb_read(fmini, ftext, fpad)
    check("und-read with pattern factors: the semantic factor is trained, images without a prefix stay the same",
          dplain == 0.0 and dfed > 1e-3 and any(p is fmini.factors.sem for p in read_parameters(fmini))
          and not any(p is fmini.factors.embed for p in read_parameters(fmini)), f"max|dimage, no prefix|={dplain:.2e}")
    # --train-scope gen with --pattern-factors: the image-token, condition and head maps train with the generation
    # branch; no text output (a prefixed one included) moves, every image output does.
    from .train import gen_parameters
    fimage = torch.randint(0, fcfg.codebook_size, (2, 2 * fcfg.num_image_tokens), generator=g)
    fimage[:, :fcfg.num_image_tokens] += fcfg.condition_offset
    fprefix = torch.randint(0, fcfg.codebook_size, (2, fcfg.num_image_tokens), generator=g)
    with torch.no_grad():
        before = fmini(ftext, fpad, fprefix, None, True), fmini(ftext, fpad, None, fimage, True)
        for p in gen_parameters(fmini):
            p.add_(0.1 * torch.randn(p.shape, generator=g))
        after = fmini(ftext, fpad, fprefix, None, True), fmini(ftext, fpad, None, fimage, True)
    dtxt = (before[0][0] - after[0][0]).abs().max().item()
    dimg = (before[1][1] - after[1][1]).abs().max().item()
    gp = gen_parameters(fmini)
    check("gen scope with pattern factors: image, condition and head maps train, text logits stay the same",
          dtxt == 0.0 and dimg > 1e-3 and any(p is fmini.factors.cond for p in gp) and not any(p is fmini.factors.sem for p in gp),
          f"max|dtext|={dtxt:.2e} max|dimage|={dimg:.2e}")
    # --sem-pattern-rows: rows that are a pattern map already are refitted exactly (same function), the
    # patterned codes' free rows end at zero, the background codes' effective rows stay the same.
    with torch.no_grad():
        fmini.sem.embed.weight[LEVELS:] = 0
        fmini.factors.sem.normal_(0.0, 0.05, generator=g)
        fmini.sem.embed.weight[LEVELS:] = fmini.factors.features[LEVELS:] @ fmini.factors.sem   # move it into the free rows
        fmini.factors.sem.zero_()
        background = (fmini.sem.embed.weight + fmini.factors.features @ fmini.factors.sem)[:LEVELS].clone()
        before = fmini(ftext, fpad, prefix, image, True)
        residual = fmini.sem_rows_to_patterns(LEVELS)
        after = fmini(ftext, fpad, prefix, image, True)
    dspr = max((a - b).abs().max().item() for a, b in zip(before, after))
    check("sem-pattern-rows: an exact pattern map is refitted with the same function, free rows zero",
          residual < 1e-5 and dspr <= 1e-4 and not fmini.sem.embed.weight[LEVELS:].any()
          and torch.allclose((fmini.sem.embed.weight + fmini.factors.features @ fmini.factors.sem)[:LEVELS], background, atol=1e-5),
          f"residual={residual:.1e} max|d|={dspr:.2e}")
    try:
        grow(small, _replace(deep, gen_hidden=fcfg.gen_hidden * 2))
        check("grow refuses a width change", False)
    except ValueError as e:
        check("grow refuses a width change", "gen_hidden" in str(e), str(e))

    # The decoder's refiner (labelvq.LabelRefiner): with a zero output layer it is the lookup, bit for bit;
    # trained weights change only what it is taught (refine.py measures that on held-out scenes).
    from .labelvq import LabelCodebook, LabelDecode, LabelRefiner
    book = LabelCodebook(torch.randint(1, NUM_LABELS, (40, 64), generator=g).numpy().astype("uint8"), 8)
    ids = torch.randint(0, book.size, (3, 8, 8), generator=g)
    net = LabelRefiner(width=8)
    with torch.no_grad():
        net.out.weight.zero_()
        net.out.bias.zero_()
        plain = LabelDecode(book, 8, 8)(ids)
        same = LabelDecode(book, 8, 8, net)(ids)
        for p in net.parameters():
            p.normal_(0.0, 0.5, generator=g)
        changed = LabelDecode(book, 8, 8, net)(ids)
    check("refiner with a zero output layer == the lookup decode; random weights change it",
          torch.equal(plain, same) and not torch.equal(plain, changed) and changed.dtype == torch.uint8)

    # --edit-token-weight: an edit batch's changed cells (target != source code) weigh w in the image loss,
    # the copied ones 1; the condition half has no targets; no 7th element is the plain mean, bit for bit.
    from types import SimpleNamespace
    from .train import Data, loss_of
    M = 99
    fake = SimpleNamespace(cond_offset=100, edit_token_weight=5.0)
    image = torch.tensor([[101, 102, 103, 104, M, M, 3, M]])
    image_tgt = torch.tensor([[-100, -100, -100, -100, 1, 9, -100, 8]])
    w = Data.edited_weights(fake, image, image_tgt)
    il = torch.randn(1, 8, 12, generator=g)
    fake_model = lambda *a: (None, il)
    plain_batch = (None, None, None, None, image, image_tgt)
    ce = torch.nn.functional.cross_entropy(il[0, [4, 5, 7]], torch.tensor([1, 9, 8]), reduction="none")
    weighted, _ = loss_of(fake_model, plain_batch + (w,), False)
    plain, _ = loss_of(fake_model, plain_batch, False)
    check("edit-token-weight: changed cells weigh w, the rest 1; without weights the plain mean",
          w.tolist() == [[1, 1, 1, 1, 1, 5, 1, 5]] and abs(float(weighted) - float((ce[0] + 5 * ce[1] + 5 * ce[2]) / 11)) < 1e-6
          and abs(float(plain) - float(ce.mean())) < 1e-6)

    # --ground-align: the per-cell target is the share of each 8 px cell inside the box; the loss adds the head's
    # BCE at its weight (weight 0: the plain loss) and reads the understanding branch after the chosen layer.
    from .train import GroundAlign, box_cell_cover
    gcfg = CONFIGS["mini"]
    cover = box_cell_cover([128, 128, 320, 320], gcfg).reshape(gcfg.grid_rows, gcfg.grid_cols)   # 8..20 px
    check("ground-align: cell cover of an 8..20 px box", abs(float(cover.sum()) - 144 / 64) < 1e-6
          and cover[1, 1] == 1.0 and cover[1, 2] == 0.5 and cover[2, 2] == 0.25 and cover[0, 0] == 0.0)
    text_tgt = torch.tensor([[-100, 3, 5]])
    tl = torch.randn(1, 3, 8, generator=g)
    tapped = torch.randn(1, gcfg.num_image_tokens + 3, gcfg.und_hidden, generator=g)
    taps = []
    fake_ground = lambda *a, tap=None: (tl, None) if tap is None else (taps.append(tap) or (tl, None, tapped))
    head = GroundAlign(gcfg, 2)
    cells = torch.from_numpy(box_cell_cover([128, 128, 320, 320], gcfg))[None]
    gb = (None, text_tgt, None, None, None, None, None, cells)
    base, _ = loss_of(fake_ground, gb[:6], True)
    zero, _, aux0 = loss_of(fake_ground, gb, True, align=head, align_weight=0.0)
    two, _, aux2 = loss_of(fake_ground, gb, True, align=head, align_weight=2.0)
    want = torch.nn.functional.binary_cross_entropy_with_logits(head.head(head.norm(tapped[:, :64])).squeeze(-1), cells)
    only, _, _ = loss_of(fake_ground, gb, True, align=head, align_weight=2.0, align_only=True)
    check("ground-align: loss = plain + w * the cells' BCE after the chosen layer (align_only: w * BCE alone)",
          taps == [2, 2, 2] and abs(float(only) - 2 * float(want)) < 1e-5 and float(zero) == float(base) and abs(float(two) - float(base) - 2 * float(want)) < 1e-5
          and abs(float(aux2) - float(want)) < 1e-6)

    if args.package:
        import filecmp
        import os
        import tempfile
        from .export import main as export_main
        with tempfile.TemporaryDirectory() as tmp:
            export_main(["--config", args.config, "--seed", str(args.seed), "--out", tmp])
            names = sorted(os.listdir(tmp))
            _, diff, missing = filecmp.cmpfiles(tmp, args.package, names, shallow=False)
            check(f"package {args.package} == fresh export", not diff and not missing,
                  f"differ={diff} missing={missing}" if diff or missing else f"{len(names)} files")

    print("selftest:", "PASS" if failures == 0 else f"{failures} FAILED")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
