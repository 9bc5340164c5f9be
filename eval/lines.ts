/**
 * Output for output against a PyTorch evaluate.py workdir (its results.jsonl + images.u8, run with
 * the same --prompts / --samples): the share of outputs that are identical (same image bytes, same
 * text, same boxes). Given identical logits the samplers agree token for token, so anything below
 * 1.0 is float32 ties (or a bug).
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { ResultLine, Store } from './protocol.js';

const IMAGE_BYTES = 64 * 64 * 3;

export interface LineAgreement {
  /** Per group: outputs compared and identical; for images, the mean number of differing 8 x 8 blocks (tokens) among the differing ones. */
  groups: Record<string, { compared: number; identical: number; differingBlocksMean?: number }>;
  /** Served lines with no PyTorch counterpart (different settings). */
  unmatched: number;
  examples: string[];
}

/** 8 x 8 blocks (one image token each) in which two 64 x 64 RGB images differ. */
function differingBlocks(a: Uint8Array, b: Uint8Array): number {
  let n = 0;
  for (let by = 0; by < 8; by++) {
    for (let bx = 0; bx < 8; bx++) {
      let differs = false;
      for (let y = by * 8; y < by * 8 + 8 && !differs; y++) {
        const row = (y * 64 + bx * 8) * 3;
        for (let i = row; i < row + 24; i++) {
          if (a[i] !== b[i]) {
            differs = true;
            break;
          }
        }
      }
      if (differs) n += 1;
    }
  }
  return n;
}

function sameBox(a: unknown, b: unknown): boolean {
  if (!Array.isArray(a) || !Array.isArray(b) || a.length !== b.length) return a === b;
  return a.every((v, i) => Math.abs(Number(v) - Number(b[i])) < 1e-6);
}

function sameLayout(a: unknown, b: unknown): boolean {
  if (!Array.isArray(a) || !Array.isArray(b)) return a === b;
  if (a.length !== b.length) return false;
  return a.every((x: Record<string, unknown>, i) => {
    const y = b[i] as Record<string, unknown>;
    return x.colour === y.colour && x.shape === y.shape && sameBox(x.box, y.box);
  });
}

export function compareWithTorch(dir: string, store: Store): LineAgreement {
  const torchLines = readFileSync(join(dir, 'results.jsonl'), 'utf8')
    .split('\n')
    .filter((l) => l.trim() !== '')
    .map((l) => JSON.parse(l) as ResultLine);
  const buf = readFileSync(join(dir, 'images.u8'));
  const torchImage = (i: unknown) => buf.subarray(Number(i) * IMAGE_BYTES, (Number(i) + 1) * IMAGE_BYTES);
  const servedImage = (i: unknown) => Buffer.from(store.images[Number(i)]);

  // Keys: t2i by (mode, prompt, seed); the rest by position within (task, set/steps).
  const keyOf = (l: ResultLine, nth: Map<string, number>): string => {
    if (l.task === 't2i') return `t2i/${String(l.mode)}/${String(l.prompt)}/${String(l.seed)}`;
    const group =
      l.task === 'reflect'
        ? `reflect/${String(l.set)}/${typeof l.round === 'number' ? l.round : ''}`
        : l.task === 'ground'
          ? `ground/${String(l.steps)}`
          : l.task;
    const k = nth.get(group) ?? 0;
    nth.set(group, k + 1);
    return `${group}#${k}`;
  };
  const torch = new Map<string, ResultLine>();
  const tn = new Map<string, number>();
  for (const l of torchLines) torch.set(keyOf(l, tn), l);

  const out: LineAgreement = { groups: {}, unmatched: 0, examples: [] };
  const blocks = new Map<string, number[]>();
  const image = (group: string, l: ResultLine, t: ResultLine): boolean => {
    const a = servedImage(l.image);
    const b = torchImage(t.image);
    if (a.equals(b)) return true;
    blocks.set(group, [...(blocks.get(group) ?? []), differingBlocks(a, b)]);
    return false;
  };
  const sn = new Map<string, number>();
  for (const l of store.lines) {
    const key = keyOf(l, sn);
    // Own-image reflections are positional only while both runs judged the same images: compare
    // them through the plan+reflect lines (verdict lists and final image) instead.
    if (l.task === 'reflect' && l.set === 'own') continue;
    const t = torch.get(key);
    if (!t) {
      out.unmatched += 1;
      continue;
    }
    const group = l.task === 't2i' ? `t2i ${String(l.mode)}` : key.split('#')[0].replace(/\/$/, '');
    let same: boolean;
    switch (l.task) {
      case 't2i':
        same = image(group, l, t);
        if (l.mode === 'plan+reflect') {
          const verdictsSame = JSON.stringify(l.verdicts) === JSON.stringify(t.verdicts);
          const g = (out.groups['t2i plan+reflect verdicts'] ??= { compared: 0, identical: 0 });
          g.compared += 1;
          if (verdictsSame) g.identical += 1;
        }
        break;
      case 'edit':
      case 'readback':
        same = image(group, l, t);
        break;
      case 'plan':
        same = sameLayout(l.layout, t.layout);
        break;
      case 'ground':
        same = sameBox(l.box, t.box);
        break;
      case 'answer':
      case 'reflect':
        same = l.predicted === t.predicted;
        break;
      default:
        same = false;
    }
    const g = (out.groups[group] ??= { compared: 0, identical: 0 });
    g.compared += 1;
    if (same) g.identical += 1;
    else if (out.examples.length < 20) {
      const what =
        l.task === 't2i' || l.task === 'edit' || l.task === 'readback'
          ? 'image differs'
          : `served ${JSON.stringify(l.predicted ?? l.box ?? l.layout)} vs PyTorch ${JSON.stringify(t.predicted ?? t.box ?? t.layout)}`;
      out.examples.push(`${key}: ${what}`);
    }
  }
  for (const [group, list] of blocks)
    out.groups[group].differingBlocksMean = Math.round((list.reduce((a, b) => a + b, 0) / list.length) * 10) / 10;
  return out;
}
