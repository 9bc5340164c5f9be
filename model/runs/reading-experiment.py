"""Can the text side learn to read counts and presence from the image at all? (model/README.md, "Reading counts").

    /usr/bin/python3 runs/reading-experiment.py NAME MINUTES [--kinds count_colour,exists] [--init scratch|CHECKPOINT]
        [--scope all|read] [--threads 1] [--every 200]
    /usr/bin/python3 runs/reading-experiment.py rule 0 --rule    # what the codes alone tell, no model

Trains `und` examples of the given question kinds only (each kind equally often), batch 32, eos weight 0.1,
AdamW, lr 1e-3 from scratch (warm-up 100; a small model: 4 layers, width 128, as in
colour-curriculum-experiment.py; --pattern-factors as train.py's, their lr times --factor-lr-scale) or 4e-4 from a checkpoint (warm-up 30; --scope read trains only
train.read_parameters, the understanding tail and the semantic encoder, as train.py --train-scope und-read).
Every --every steps it prints one JSON line: per kind, the first answer token's accuracy on up to 200 eval
questions of that kind with the sample's own image and with another sample's image (the image of the
question 7 places on), and the share of the most common answer (the prior a blind model scores).
--rule prints what a fixed rule over the image's codes scores on all eval questions of count_colour and
exists: "is the question's colour label in any code's 8x8 label pattern" (count_colour: zero if not, else
one; exists: yes if so), i.e. how much of the answer the semantic prefix holds before any learning.
Needs /tmp/prep/train and /tmp/prep/eval (model/README.md).
"""
import argparse, json, sys, time
from collections import Counter
from dataclasses import replace
import numpy as np, torch
sys.path.insert(0, __file__.rsplit('/runs/', 1)[0])
from lavida_mini.config import CONFIGS, ModelConfig
from lavida_mini.labelvq import LEVELS, NUM_LABELS
from lavida_mini.probe import COLOURS   # labels 1..6 (labelvq.PALETTE order)
from lavida_mini.train import ANSWER_LEN, Data, Mini, load_mini, loss_of, pattern_features, read_parameters

ap = argparse.ArgumentParser()
ap.add_argument('name'); ap.add_argument('minutes', type=float)
ap.add_argument('--kinds', default='count_colour,exists'); ap.add_argument('--init', default='scratch')
ap.add_argument('--scope', choices=['all', 'read'], default='all'); ap.add_argument('--seed', type=int, default=0)
ap.add_argument('--threads', type=int, default=1); ap.add_argument('--every', type=int, default=200)
ap.add_argument('--batch', type=int, default=32)
ap.add_argument('--pattern-factors', action='store_true', help='train.py --pattern-factors (scratch only)')
ap.add_argument('--factor-lr-scale', type=float, default=0.125)
ap.add_argument('--sem-pattern-rows', action='store_true',
                help='train.py --sem-pattern-rows: the semantic rows of patterned codes are the factor alone (free rows zero)')
ap.add_argument('--rule', action='store_true')
a = ap.parse_args()
patterns = np.load('/tmp/prep/train/codebook.npz')['patterns']
if a.rule:
    labels = np.zeros((LEVELS + len(patterns), patterns.shape[1]), dtype=np.int64)
    labels[LEVELS:] = patterns
    tokens = np.load('/tmp/prep/eval/tokens.npy', mmap_mode='r')
    hits = {'count_colour': [], 'count_colour_zero_or_not': [], 'exists': []}
    for line in open('/tmp/prep/eval/samples.jsonl'):
        r = json.loads(line); q = r['question']
        if q['kind'] not in ('count_colour', 'exists'):
            continue
        label = COLOURS.index(next(c for c in COLOURS if c in q['text'].split())) + 1
        present = bool((labels[np.asarray(tokens[r['image']])] == label).any())
        if q['kind'] == 'exists':
            hits['exists'].append(('yes' if present else 'no') == q['answer'])
        else:
            hits['count_colour'].append(('one' if present else 'zero') == q['answer'])
            hits['count_colour_zero_or_not'].append(present == (q['answer'] != 'zero'))
    print(json.dumps({k: {'acc': round(float(np.mean(v)), 3), 'n': len(v)} for k, v in hits.items()}))
    raise SystemExit(0)
torch.set_num_threads(a.threads); torch.manual_seed(a.seed)
kinds = a.kinds.split(',')
d = Data('/tmp/prep/train'); dv = Data('/tmp/prep/eval')
if a.init == 'scratch':
    cfg = replace(CONFIGS['mini'], num_layers=4, joint_layers=2, und_hidden=128, und_ffn=384, gen_hidden=64, gen_ffn=128,
                  codebook_size=LEVELS + len(patterns))
    m = Mini(cfg, len(d.vocab), pattern_features(patterns, LEVELS, NUM_LABELS) if a.pattern_factors else None)
    if a.sem_pattern_rows:   # from scratch the factor starts at zero: nothing to refit, the free rows just start at zero
        with torch.no_grad():
            m.sem.embed.weight[LEVELS:] = 0
        m.hold_sem_pattern_rows(LEVELS)
    lr, warm = 1e-3, 100
else:
    st = torch.load(a.init, map_location='cpu', weights_only=False)
    cfg = ModelConfig.from_dict(st['config'])
    m = load_mini(st, cfg, len(st['vocab'])).float()
    lr, warm = 4e-4, 30
d.bind(cfg); dv.bind(cfg)
# Every kind equally often: its natural share divided out (set_und_kinds multiplies natural shares).
counts = Counter(r['question']['kind'] for r in d.samples)
d.set_und_kinds({k: (1.0 / counts[k] if k in kinds else 0.0) for k in counts})
params = read_parameters(m) if a.scope == 'read' else list(m.parameters())
keep = {id(p) for p in params}
for p in m.parameters():
    p.requires_grad_(id(p) in keep)
factor_ids = set() if m.factors is None else {id(p) for p in m.factors.parameters()}
groups = [{'params': [p for p in params if id(p) not in factor_ids], 'scale': 1.0}]
if factor_ids & keep:
    groups.append({'params': [p for p in params if id(p) in factor_ids], 'scale': a.factor_lr_scale})
opt = torch.optim.AdamW(groups, lr=lr, betas=(0.9, 0.98), weight_decay=0.01)
rng = np.random.default_rng(a.seed)
evals = {k: [r for r in dv.samples if r['question']['kind'] == k][:200] for k in kinds}


def probe():
    m.eval()
    out = {}
    for k, recs in evals.items():
        heads = [dv.enc('question : ' + r['question']['text']) for r in recs]
        T = max(len(h) for h in heads) + ANSWER_LEN['und']
        ids = torch.tensor([h + [dv.sp['mask']] * ANSWER_LEN['und'] + [dv.sp['pad']] * (T - len(h) - ANSWER_LEN['und']) for h in heads])
        pad = torch.tensor([[False] * (len(h) + ANSWER_LEN['und']) + [True] * (T - len(h) - ANSWER_LEN['und']) for h in heads])
        own = torch.tensor(np.stack([dv.tokens[r['image']] for r in recs]))
        answers = [dv.enc(r['question']['answer'])[0] for r in recs]
        acc = []
        for codes in (own, torch.roll(own, -7, 0)):
            with torch.no_grad():
                tl, _ = m(ids, pad, codes, None, True)
            at = codes.shape[1]
            acc.append(round(float(np.mean([int(tl[j, at + len(heads[j])].argmax()) == answers[j] for j in range(len(recs))])), 3))
        prior = max(answers.count(x) for x in set(answers)) / len(answers)
        out[k] = {'own': acc[0], 'other': acc[1], 'prior': round(prior, 3)}
    m.train()
    return out


t0, step, losses = time.time(), 0, []
while time.time() - t0 < a.minutes * 60:
    b = d.batch('und', a.batch, rng, 'cpu')
    for g in opt.param_groups:
        g['lr'] = lr * g['scale'] * min(1, (step + 1) / warm)
    loss, acc = loss_of(m, b, True, d.sp['eos'], 0.1)
    opt.zero_grad(); loss.backward(); torch.nn.utils.clip_grad_norm_(params, 1.0); opt.step()
    step += 1; losses.append(float(loss))
    if step % a.every == 0:
        print(json.dumps({'name': a.name, 'step': step, 'min': round((time.time() - t0) / 60, 1),
                          'loss': round(float(np.mean(losses[-a.every:])), 4), **probe()}), flush=True)
print(json.dumps({'name': a.name, 'step': step, 'final': True, 'loss': round(float(np.mean(losses[-50:])), 4), **probe()}), flush=True)
