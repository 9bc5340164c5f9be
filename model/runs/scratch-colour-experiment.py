"""From-scratch text-side experiment: und + plan, plan colours all vs named; colour_of first token over time."""
import sys, time, json, numpy as np, torch
sys.path.insert(0, '/work/main/model')
from dataclasses import replace
from lavida_mini.config import CONFIGS
from lavida_mini.train import Data, Mini, loss_of
mode, minutes, seed = sys.argv[1], float(sys.argv[2]), int(sys.argv[3])
torch.set_num_threads(1); torch.manual_seed(seed)
cfg = replace(CONFIGS['mini'], num_layers=4, joint_layers=2, und_hidden=128, und_ffn=384, gen_hidden=64, gen_ffn=128, codebook_size=8192)
d = Data('/tmp/prep/train'); d.bind(cfg); d.plan_colours = mode
dv = Data('/tmp/prep/eval')
m = Mini(cfg, len(d.vocab))
opt = torch.optim.AdamW(m.parameters(), lr=1e-3, betas=(0.9, 0.98), weight_decay=0.01)
rng = np.random.default_rng(seed)
recs = [r for r in dv.samples if r['question']['kind'] == 'colour_of'][:300]
heads = [dv.enc('question : ' + r['question']['text']) for r in recs]
codes = torch.tensor(np.stack([dv.tokens[r['image']] for r in recs]))
def probe():
    m.eval()
    T = max(len(h) for h in heads) + 24
    ids = torch.tensor([h + [dv.sp['mask']] * 24 + [dv.sp['pad']] * (T - len(h) - 24) for h in heads])
    pad = torch.tensor([[False] * (len(h) + 24) + [True] * (T - len(h) - 24) for h in heads])
    with torch.no_grad():
        tl, _ = m(ids, pad, codes, None, True)
    m.train()
    out = {'copy': [], 'read': []}
    for j, r in enumerate(recs):
        a = dv.enc(r['question']['answer'])[0]
        out['copy' if r['question']['answer'] in r['question']['text'] else 'read'].append(int(tl[j, 64 + len(heads[j])].argmax() == a))
    W = m.core.text_head.weight.detach(); ids_c = [d.tok.ids[c] for c in ['red','green','blue','yellow','purple','orange']]
    n = W[ids_c] / W[ids_c].norm(dim=1, keepdim=True); cos = float(((n @ n.T).sum() - 6) / 30)
    return {k: round(float(np.mean(v)), 3) for k, v in out.items()} | {'head_cos': round(cos, 3)}
t0 = time.time(); step = 0
while time.time() - t0 < minutes * 60:
    task = 'und' if rng.uniform() < 0.5 else 'plan'
    b = d.batch(task, 32, rng, 'cpu')
    for g in opt.param_groups: g['lr'] = 1e-3 * min(1, (step + 1) / 100)
    loss, acc = loss_of(m, b, True, d.sp['eos'], 0.1)
    opt.zero_grad(); loss.backward(); torch.nn.utils.clip_grad_norm_(m.parameters(), 1.0); opt.step()
    step += 1
    if step % 200 == 0:
        print(json.dumps({'mode': mode, 'step': step, 'min': round((time.time() - t0) / 60, 1), **probe()}), flush=True)
print(json.dumps({'mode': mode, 'step': step, 'final': True, **probe()}), flush=True)
