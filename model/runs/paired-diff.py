"""Paired differences of two evaluate.py runs on the same samples (model/README.md, "Reading counts and presence").

    /usr/bin/python3 runs/paired-diff.py WORKDIR_A WORKDIR_B     # evaluate.py --workdir folders (results.jsonl, scores.jsonl)

Per task (and grounding steps, answer kind): n, the two scores, B - A and the SE of the per-sample difference.
"""
import json, sys, numpy as np
def load(d):
    res=[json.loads(l) for l in open(d+'/results.jsonl')]; sc=[json.loads(l) for l in open(d+'/scores.jsonl')]
    out={}
    for r,s in zip(res,sc):
        key=(r['task'], r.get('steps'), r.get('kind'))
        out.setdefault(key,[]).append(float(s['pass']))
    return out
a=load(sys.argv[1]); b=load(sys.argv[2])
for k in a:
    x=np.array(a[k]); y=np.array(b[k]); d=y-x
    print(k, len(x), round(x.mean(),3), round(y.mean(),3), 'diff', round(d.mean(),3), 'paired SE', round(d.std(ddof=1)/np.sqrt(len(d)),3))
ua=np.array([x for k,v in a.items() if k[0]=='answer' for x in v]); ub=np.array([x for k,v in b.items() if k[0]=='answer' for x in v])
d=ub-ua
if len(d): print('answer all', len(d), round(ua.mean(),3), round(ub.mean(),3), round(d.mean(),3), round(d.std(ddof=1)/np.sqrt(len(d)),3))
