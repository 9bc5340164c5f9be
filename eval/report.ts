/**
 * The served scores beside the PyTorch evaluator's (model/quality.json): per number the difference
 * and a binomial standard error, so "within sampling noise" can be judged.
 *
 * SE of a share: sqrt(p (1 - p) / n), p = the mean of the two values (pooled, so a 0 beside a
 * small share still gets a non-zero SE), n = the served count. SE of a mean over groups
 * (categories, kinds): sqrt(sum_k p_k (1 - p_k) / n_k) / K. Counts and means that are not shares
 * (objects per image, images per prompt) get no SE. A row is flagged when |diff| > 3 SE.
 */
import { CATEGORIES, EDIT_KINDS, QUESTION_KINDS } from '@lavida/world';
import type { ResultLine } from './protocol.js';
import type { Scores } from './scoring.js';

export interface Row {
  metric: string;
  n: number | null;
  pytorch: number | null;
  served: number | null;
  diff: number | null;
  se: number | null;
  flagged: boolean;
}

function at(obj: unknown, path: readonly string[]): unknown {
  let v = obj;
  for (const key of path) {
    if (v === null || typeof v !== 'object') return undefined;
    v = (v as Record<string, unknown>)[key];
  }
  return v;
}

function num(obj: unknown, path: readonly string[]): number | null {
  const v = at(obj, path);
  return typeof v === 'number' && Number.isFinite(v) ? v : null;
}

const pooled = (a: number | null, b: number | null): number | null => (a === null || b === null ? (a ?? b) : (a + b) / 2);

function shareSe(a: number | null, b: number | null, n: number): number | null {
  const p = pooled(a, b);
  return p === null || n <= 0 ? null : Math.sqrt((p * (1 - p)) / n);
}

/** Compares served scores with the reference's; `lines` gives the served counts per category. */
export function compare(reference: Scores | undefined, served: Scores, lines: readonly ResultLine[]): Row[] {
  const rows: Row[] = [];
  const add = (
    metric: string,
    path: readonly string[],
    n: number | null,
    se: 'share' | 'none' | ((a: number | null, b: number | null) => number | null),
  ) => {
    const a = reference ? num(reference, path) : null;
    const b = num(served, path);
    if (a === null && b === null) return;
    const diff = a !== null && b !== null ? b - a : null;
    const s = se === 'share' ? (n === null ? null : shareSe(a, b, n)) : se === 'none' ? null : se(a, b);
    const flagged = diff !== null && s !== null && Math.abs(diff) > 3 * s + 1e-12;
    rows.push({ metric, n, pytorch: a, served: b, diff, se: s, flagged });
  };
  /** SE of a mean over groups from the groups' paths and served counts. */
  const groupSe = (groups: { path: readonly string[]; n: number }[]) => () => {
    let sum = 0;
    let k = 0;
    for (const g of groups) {
      const p = pooled(reference ? num(reference, g.path) : null, num(served, g.path));
      if (p === null || g.n <= 0) continue;
      sum += (p * (1 - p)) / g.n;
      k += 1;
    }
    return k === 0 ? null : Math.sqrt(sum) / k;
  };
  const count = (pred: (l: ResultLine) => boolean) => lines.filter(pred).length;

  for (const mode of ['plain', 'plan', 'plan+reflect']) {
    const t = ['t2i', mode];
    if (at(served, t) === undefined && (!reference || at(reference, t) === undefined)) continue;
    const groups = CATEGORIES.map((c) => ({
      c,
      path: [...t, 'perCategory', c],
      n: count((l) => l.task === 't2i' && l.mode === mode && l.category === c),
    }));
    for (const g of groups) add(`t2i ${mode}: ${g.c}`, g.path, g.n, 'share');
    add(`t2i ${mode}: overall`, [...t, 'overall'], num(served, [...t, 'images']), groupSe(groups));
    add(`t2i ${mode}: clean-scene share`, [...t, 'clean'], num(served, [...t, 'images']), 'share');
    add(`t2i ${mode}: objects per image`, [...t, 'objectsPerImage'], num(served, [...t, 'images']), 'none');
    add(`t2i ${mode}: LUMINANCE adherence`, [...t, 'luminance', 'adherence'], num(served, [...t, 'luminance', 'n']), 'share');
    if (mode !== 'plain') add(`t2i ${mode}: mean images per prompt`, [...t, 'meanRounds'], num(served, [...t, 'images']), 'none');
  }
  if (at(served, ['plan']) !== undefined) {
    const groups = CATEGORIES.map((c) => ({ path: ['plan', 'perCategory', c], n: count((l) => l.task === 'plan' && l.category === c) }));
    add('plan: checkPlan, mean over categories', ['plan', 'overall'], num(served, ['plan', 'n']), groupSe(groups));
    add('plan: parsed', ['plan', 'parsed'], num(served, ['plan', 'n']), 'share');
  }
  for (const steps of ['1', '4'])
    add(
      `grounding [email protected], ${steps} step${steps === '1' ? '' : 's'}`,
      ['ground', steps, 'acc'],
      num(served, ['ground', steps, 'n']),
      'share',
    );
  for (const [task, kinds, label] of [
    ['answer', QUESTION_KINDS, 'understanding'],
    ['edit', EDIT_KINDS, 'edit'],
  ] as const) {
    if (at(served, [task]) === undefined) continue;
    const groups = kinds.map((k) => ({ k, path: [task, 'perKind', k], n: num(served, [task, 'n', k]) ?? 0 }));
    for (const g of groups) add(`${label}: ${g.k}`, g.path, g.n, 'share');
    add(
      `${label}: mean over kinds`,
      [task, 'overall'],
      groups.reduce((s, g) => s + g.n, 0),
      groupSe(groups),
    );
    if (task === 'edit')
      add(
        'edit: clean-scene share',
        ['edit', 'clean'],
        count((l) => l.task === 'edit'),
        'share',
      );
  }
  for (const set of ['eval', 'own']) {
    const r = ['reflect', set];
    if (at(served, r) === undefined) continue;
    const n = num(served, [...r, 'n']);
    add(`reflection (${set}): agreement`, [...r, 'agreement'], n, 'share');
    add(`reflection (${set}): reason agreement`, [...r, 'reasonAgreement'], n, 'share');
    add(`reflection (${set}): parsed`, [...r, 'parsed'], n, 'share');
    add(`reflection (${set}): true-match share`, [...r, 'truthMatches'], n, 'share');
  }
  if (at(served, ['readback']) !== undefined) {
    add('tokenizer read-back: exact scene', ['readback', 'exact'], num(served, ['readback', 'n']), 'share');
    add('tokenizer read-back: clean', ['readback', 'clean'], num(served, ['readback', 'n']), 'share');
  }
  add('prompt-blind baseline (overall)', ['baseline', 'overall'], null, 'none');
  return rows;
}

const f3 = (x: number | null) => (x === null ? '-' : x.toFixed(3));
const signed = (x: number | null) => (x === null ? '-' : `${x >= 0 ? '+' : ''}${x.toFixed(3)}`);

export function markdown(rows: readonly Row[], header: string): string {
  const out = [header, '', '| metric | n | PyTorch | served | diff | SE | \\|diff\\| > 3 SE |', '|---|---|---|---|---|---|---|'];
  for (const r of rows) {
    out.push(
      `| ${r.metric} | ${r.n ?? '-'} | ${f3(r.pytorch)} | ${f3(r.served)} | ${signed(r.diff)} | ${f3(r.se)} | ${r.flagged ? '**yes**' : ''} |`,
    );
  }
  const compared = rows.filter((r) => r.diff !== null);
  const flagged = rows.filter((r) => r.flagged).length;
  const maxAbs = compared.reduce((m, r) => Math.max(m, Math.abs(r.diff!)), 0);
  out.push('', `${compared.length} numbers compared, ${flagged} beyond 3 SE, largest |diff| ${maxAbs.toFixed(4)}.`);
  return out.join('\n');
}
