"""The smallest reader of `exists` questions (model/README.md, "Why counts and presence stay blind").

    PYTHONPATH=. /usr/bin/python3 runs/exists-attention-check.py      # from model/, one thread, about 4 minutes

One cross-attention from the question's colour (an embedding of the six colours) over the 64 codes of the image,
then a 2-layer MLP -> yes/no; trained on the 9,941 `exists` questions of /tmp/prep/train, batch 32, AdamW 1e-3,
scored on the 340 of /tmp/prep/eval every 250 steps. Two code representations: a free row a code (as the
semantic encoder's embedding) and a linear map of the code's one-hot 8x8 label pattern (train.pattern_features,
as --pattern-factors / --sem-pattern-rows). The rule "the colour's label is in some code" scores 0.888.
"""
import json
import numpy as np, torch, torch.nn as nn
from lavida_mini.labelvq import LEVELS, NUM_LABELS
from lavida_mini.probe import COLOURS
from lavida_mini.train import pattern_features

torch.set_num_threads(1)


def load(split):
    tok = np.load(f'/tmp/prep/{split}/tokens.npy', mmap_mode='r'); X, C, Y = [], [], []
    for line in open(f'/tmp/prep/{split}/samples.jsonl'):
        r = json.loads(line); q = r['question']
        if q['kind'] != 'exists':
            continue
        X.append(np.asarray(tok[r['image']])); Y.append(int(q['answer'] == 'yes'))
        C.append(COLOURS.index(next(c for c in COLOURS if c in q['text'].split())))
    return torch.tensor(np.stack(X)).long(), torch.tensor(C), torch.tensor(Y)


Xt, Ct, Yt = load('train'); Xe, Ce, Ye = load('eval')
F = pattern_features(np.load('/tmp/prep/train/codebook.npz')['patterns'], LEVELS, NUM_LABELS)
d = 128


class Reader(nn.Module):
    def __init__(self, patterns: bool):
        super().__init__()
        self.patterns = patterns
        self.codes = nn.Linear(F.shape[1], d, bias=False) if patterns else nn.Embedding(F.shape[0], d)
        self.pos = nn.Parameter(torch.zeros(64, d)); self.colour = nn.Embedding(6, d)
        self.att = nn.MultiheadAttention(d, 4, batch_first=True)
        self.out = nn.Sequential(nn.Linear(2 * d, d), nn.GELU(), nn.Linear(d, 2))

    def forward(self, x, c):
        h = (self.codes(F[x]) if self.patterns else self.codes(x)) + self.pos
        q = self.colour(c)[:, None]
        o, _ = self.att(q, h, h)
        return self.out(torch.cat([o[:, 0], q[:, 0]], -1))


for patterns in (False, True):
    torch.manual_seed(0); rng = np.random.default_rng(0)
    m = Reader(patterns); opt = torch.optim.AdamW(m.parameters(), 1e-3)
    for step in range(1, 2001):
        i = torch.from_numpy(rng.integers(len(Yt), size=32))
        loss = nn.functional.cross_entropy(m(Xt[i], Ct[i]), Yt[i])
        opt.zero_grad(); loss.backward(); opt.step()
        if step % 250 == 0:
            with torch.no_grad():
                acc = (m(Xe, Ce).argmax(-1) == Ye).float().mean().item()
            print(json.dumps({'codes': 'label patterns' if patterns else 'free rows', 'step': step,
                              'train_loss': round(loss.item(), 3), 'eval_acc': round(acc, 3),
                              'prior': round(max(Ye.float().mean().item(), 1 - Ye.float().mean().item()), 3)}), flush=True)
