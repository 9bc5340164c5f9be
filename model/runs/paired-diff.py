"""Paired differences of two evaluate.py runs on the same samples (model/README.md, "Reading counts and presence").

    /usr/bin/python3 runs/paired-diff.py WORKDIR_A WORKDIR_B     # evaluate.py --workdir folders (results.jsonl, scores.jsonl)
    /usr/bin/python3 runs/paired-diff.py WORKDIR_A WORKDIR_B plain plan   # A's plain images against B's planned ones

Per task (t2i: and mode; grounding: steps; answers: kind): n, the two scores, B - A and the SE of the
per-sample difference. With two modes, the t2i images of mode MODE_A in A are paired with those of MODE_B
in B (the same prompts and seeds, in order).
"""
import json, sys, numpy as np
def load(d, only_mode=None):
    res=[json.loads(l) for l in open(d+'/results.jsonl')]; sc=[json.loads(l) for l in open(d+'/scores.jsonl')]
    out={}
    for r,s in zip(res,sc):
        mode = r.get('mode')
        if only_mode is not None:   # this mode's t2i images only, under one key for both runs
            if r['task'] != 't2i' or mode != only_mode:
                continue
            mode = 'paired'
        v = s.get('pass', s.get('agree'))
        if v is None:
            continue
        key=(r['task'], mode, r.get('steps'), r.get('kind'))
        out.setdefault(key,[]).append(float(v))
    return out
modes = sys.argv[3:5] if len(sys.argv) >= 5 else [None, None]
a=load(sys.argv[1], modes[0]); b=load(sys.argv[2], modes[1])
for k in a:
    if k not in b:
        continue
    x=np.array(a[k]); y=np.array(b[k]); d=y-x
    print(k, len(x), round(x.mean(),3), round(y.mean(),3), 'diff', round(d.mean(),3), 'paired SE', round(d.std(ddof=1)/np.sqrt(len(d)),3))
ua=np.array([x for k,v in a.items() if k[0]=='answer' for x in v]); ub=np.array([x for k,v in b.items() if k[0]=='answer' for x in v])
d=ub-ua
if len(d): print('answer all', len(d), round(ua.mean(),3), round(ub.mean(),3), round(d.mean(),3), round(d.std(ddof=1)/np.sqrt(len(d)),3))
