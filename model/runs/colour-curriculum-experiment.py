"""Text-side experiments on colour answers (model/README.md, "Breaking the colour collapse").

One script for every variant of this session (the runs were made with one-off copies of it, same logic):
  python3 runs/colour-curriculum-experiment.py NAME MINUTES [options]
  --init scratch | CHECKPOINT      a small from-scratch model (4 layers, width 128) or a checkpoint (e.g. 0.3.0)
  --tie                            tied text head (train.py --tie-text-head)
  --subset copy | colour_of        train only `und` on colour_of questions (copy: those that name the colour)
  --colour-batches P               share of batches drawn from colour_of questions only (the rest: the mix)
  --focus-steps N                  the first N steps colour_of only, then the mix
  --und-kinds colour_of=3          the mix's `und` examples by kind (train.py --und-kinds)
  --plan-colours all | named       plan colour targets (train.py --plan-colours; default named). The previous
                                   session's test of them (runs/scratch-colour-experiment.jsonl) is
                                   `NAME 20 --plan-colours all` against `--plan-colours named`, probed every 200 steps.
The mix is half `und`, half `plan`, batch 32, eos weight 0.1, AdamW, lr 1e-3 from
scratch (warm-up 100) or 4e-4 from a checkpoint (warm-up 30). Every --every steps it prints one JSON line: the
first answer token of 300 eval colour_of questions (copy: the question names the colour; read: it does not),
the mean cosine of the six colour rows of the text head, and the residual norm at the first answer slot.
Needs /tmp/prep/train and /tmp/prep/eval (model/README.md).
"""
import argparse, copy, json, sys, time
from dataclasses import replace
import numpy as np, torch
sys.path.insert(0, __file__.rsplit('/runs/', 1)[0])
from lavida_mini.config import CONFIGS, ModelConfig
from lavida_mini.train import Data, Mini, load_mini, loss_of

ap = argparse.ArgumentParser()
ap.add_argument('name'); ap.add_argument('minutes', type=float)
ap.add_argument('--init', default='scratch'); ap.add_argument('--seed', type=int, default=0)
ap.add_argument('--tie', action='store_true'); ap.add_argument('--subset', choices=['copy', 'colour_of'])
ap.add_argument('--colour-batches', type=float, default=0.0); ap.add_argument('--focus-steps', type=int, default=0)
ap.add_argument('--und-kinds', default=''); ap.add_argument('--plan-colours', choices=['all', 'named'], default='named'); ap.add_argument('--every', type=int, default=None)
a = ap.parse_args()
torch.set_num_threads(1); torch.manual_seed(a.seed)
d = Data('/tmp/prep/train'); d.plan_colours = a.plan_colours
dv = Data('/tmp/prep/eval')
if a.init == 'scratch':
    cfg = replace(CONFIGS['mini'], num_layers=4, joint_layers=2, und_hidden=128, und_ffn=384, gen_hidden=64, gen_ffn=128, codebook_size=8192)
    m = Mini(cfg, len(d.vocab), tie_text_head=a.tie)
    lr, warm, every = 1e-3, 100, a.every or 200
else:
    st = torch.load(a.init, map_location='cpu', weights_only=False)
    cfg = ModelConfig.from_dict(st['config'])
    m = load_mini(st, cfg, len(st['vocab'])).float()
    lr, warm, every = 4e-4, 30, a.every or 50
d.bind(cfg)
colour = copy.copy(d)
colour.samples = [r for r in d.samples if r['question']['kind'] == 'colour_of' and
                  (a.subset != 'copy' or r['question']['answer'] in r['question']['text'])]
if a.und_kinds:
    d.set_und_kinds({k: float(v) for k, v in (i.split('=') for i in a.und_kinds.split(','))})
cap = {}
m.core.und_norm.register_forward_hook(lambda mod, inp, out: cap.__setitem__('r', inp[0].detach()))
opt = torch.optim.AdamW(m.parameters(), lr=lr, betas=(0.9, 0.98), weight_decay=0.01)
rng = np.random.default_rng(a.seed)
recs = [r for r in dv.samples if r['question']['kind'] == 'colour_of'][:300]
heads = [dv.enc('question : ' + r['question']['text']) for r in recs]
codes = torch.tensor(np.stack([dv.tokens[r['image']] for r in recs]))
ids_c = [d.tok.ids[c] for c in ['red', 'green', 'blue', 'yellow', 'purple', 'orange']]


def probe():
    m.eval()
    T = max(len(h) for h in heads) + 24
    ids = torch.tensor([h + [dv.sp['mask']] * 24 + [dv.sp['pad']] * (T - len(h) - 24) for h in heads])
    pad = torch.tensor([[False] * (len(h) + 24) + [True] * (T - len(h) - 24) for h in heads])
    with torch.no_grad():
        tl, _ = m(ids, pad, codes, None, True)
    slot = float(torch.stack([cap['r'][j, 64 + len(heads[j])].norm() for j in range(len(heads))]).mean())
    m.train()
    out = {'copy': [], 'read': []}
    for j, r in enumerate(recs):
        ans = dv.enc(r['question']['answer'])[0]
        out['copy' if r['question']['answer'] in r['question']['text'] else 'read'].append(int(tl[j, 64 + len(heads[j])].argmax() == ans))
    W = m.text_head_rows().detach()[ids_c]
    n = W / W.norm(dim=1, keepdim=True)
    cos = float(((n @ n.T).sum() - 6) / 30)
    return {k: round(float(np.mean(v)), 3) for k, v in out.items()} | {'head_cos': round(cos, 3), 'slot_norm': round(slot, 1)}


t0, step = time.time(), 0
while time.time() - t0 < a.minutes * 60:
    if a.subset or step < a.focus_steps or rng.uniform() < a.colour_batches:
        b = colour.batch('und', 32, rng, 'cpu')
    else:
        b = d.batch('und' if rng.uniform() < 0.5 else 'plan', 32, rng, 'cpu')
    for g in opt.param_groups:
        g['lr'] = lr * min(1, (step + 1) / warm)
    loss, acc = loss_of(m, b, True, d.sp['eos'], 0.1)
    opt.zero_grad(); loss.backward(); torch.nn.utils.clip_grad_norm_(m.parameters(), 1.0); opt.step()
    step += 1
    if step % every == 0:
        print(json.dumps({'name': a.name, 'step': step, 'min': round((time.time() - t0) / 60, 1), **probe()}), flush=True)
print(json.dumps({'name': a.name, 'step': step, 'final': True, **probe()}), flush=True)
