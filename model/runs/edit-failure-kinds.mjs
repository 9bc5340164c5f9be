// Why edits fail, object by object: an evaluate.py edit workdir's outputs read back with the world library.
//
//   npx tsc -b libs/world && node model/runs/edit-failure-kinds.mjs WORKDIR [--mode plain] [--out FILE.json]
//
// Every failed, clean edit output is compared with its source scene object by object (the world's keptObject, as
// checkEdit: same shape, colour, size, centre within 2 px). For remove / change / replace: "wrong object" when the
// named object is kept and another is not, "right object, wrong result" when only the named one is touched but not as asked,
// "several" when the named one and another are touched, "nothing" when every object is kept (and nothing added);
// "extra object" when an object appears beside them. For add: "nothing added", "wrong object added"
// (one new object, not the asked colour and shape), "others touched" (a source object not kept), "several added".
import { readFileSync, writeFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { CANVAS, keptObject as kept, parseEdit, readImage, resolveReferringExpression } from '../../libs/world/dist/index.js';

const { values, positionals } = parseArgs({
  options: { mode: { type: 'string', default: 'plain' }, out: { type: 'string' } },
  allowPositionals: true,
});
const dir = positionals[0];
if (!dir) throw new Error('usage: node model/runs/edit-failure-kinds.mjs WORKDIR [--mode plain] [--out FILE.json]');
const lines = readFileSync(`${dir}/results.jsonl`, 'utf8').trim().split('\n').map((l) => JSON.parse(l));
const scores = readFileSync(`${dir}/scores.jsonl`, 'utf8').trim().split('\n').map((l) => JSON.parse(l));
const images = readFileSync(`${dir}/images.u8`);
const bytes = CANVAS * CANVAS * 3;


const table = {};
const shares = {}; // "several" failures: the other objects of those scenes, touched or not, by what they share with the named one
const bump = (kind, why) => {
  table[kind] ??= { failed: 0, unclean: 0 };
  table[kind].failed += why === undefined ? 0 : 1;
  if (why) table[kind][why] = (table[kind][why] ?? 0) + 1;
};
lines.forEach((line, n) => {
  if (line.task !== 'edit' || (line.mode ?? 'plain') !== values.mode || scores[n].pass) return;
  const spec = parseEdit(line.instruction);
  const read = readImage(new Uint8Array(images.subarray(line.image * bytes, (line.image + 1) * bytes)));
  if (!read.clean) return bump(spec.kind, 'unclean');
  const before = line.before.objects;
  const after = [...read.scene.objects];
  const lost = [];
  before.forEach((o, i) => {
    const j = after.findIndex((p) => kept(o, p));
    if (j < 0) lost.push(i);
    else after.splice(j, 1);
  });
  if (spec.kind === 'add') {
    if (lost.length) return bump('add', 'others touched');
    if (after.length === 0) return bump('add', 'nothing added');
    return bump('add', after.length > 1 ? 'several added' : 'wrong object added');
  }
  const target = resolveReferringExpression(line.before, spec.ref);
  const extra = after.length > (spec.kind === 'remove' ? 0 : lost.includes(target) ? 1 : 0);
  if (lost.length === 0) return bump(spec.kind, extra ? 'extra object' : 'nothing');
  if (!lost.includes(target)) return bump(spec.kind, 'wrong object');
  if (lost.length > 1) {
    // the other objects it touched: do they share a word of the expression (the named colour or shape)?
    const t = before[target];
    for (let i = 0; i < before.length; i++) {
      if (i === target) continue;
      const o = before[i];
      const key = o.colour === t.colour && o.shape === t.shape ? 'same both' : o.colour === t.colour ? 'same colour' : o.shape === t.shape ? 'same shape' : 'neither';
      const s = (shares[lost.includes(i) ? 'touched' : 'untouched'] ??= {});
      s[key] = (s[key] ?? 0) + 1;
    }
    return bump(spec.kind, 'several');
  }
  return bump(spec.kind, extra && spec.kind === 'remove' ? 'extra object' : 'right object, wrong result');
});
console.log(JSON.stringify({ failures: table, several: shares }, null, 1));
if (values.out) writeFileSync(values.out, JSON.stringify({ workdir: dir, mode: values.mode, failures: table, several: shares }, null, 1) + '\n');
