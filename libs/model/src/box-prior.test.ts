import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { BoxPriorSchema, decodeBox, logSoftmax, type BoxPrior } from './box-prior.js';

/** Every box the prior allows, scored as decodeBox's objective; the best, ties to the first in (entry, x1, x2, y1, y2) order. */
function bruteForce(logp: Float64Array[], prior: BoxPrior): number[] {
  const n = logp[0].length;
  const total = prior.entries.reduce((s, e) => s + e[2], 0);
  let best = -Infinity;
  let out: number[] = [];
  for (const [w, h, c] of prior.entries) {
    for (let x1 = 0; x1 < n; x1++)
      for (let x2 = Math.max(0, x1 + w - prior.tol); x2 <= Math.min(n - 1, x1 + w + prior.tol); x2++)
        for (let y1 = 0; y1 < n; y1++)
          for (let y2 = Math.max(0, y1 + h - prior.tol); y2 <= Math.min(n - 1, y1 + h + prior.tol); y2++) {
            const v = logp[0][x1] + logp[2][x2] + logp[1][y1] + logp[3][y2] + Math.log(c / total);
            if (v > best) {
              best = v;
              out = [x1, y1, x2, y2];
            }
          }
  }
  return out;
}

function rng(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return s / 2 ** 32;
  };
}

describe('box prior: one-step grounding decoded jointly', () => {
  it('finds the best box the prior allows (against brute force)', () => {
    const r = rng(7);
    const prior: BoxPrior = { tol: 2, entries: [[5, 5, 3], [9, 9, 2], [6, 9, 1]] };
    for (let t = 0; t < 100; t++) {
      const logits = Float64Array.from({ length: 4 * 24 }, () => (r() - 0.5) * 8);
      const logp = [0, 1, 2, 3].map((k) => logSoftmax(logits, k * 24, 24));
      assert.deepEqual(decodeBox(logp as [Float64Array, Float64Array, Float64Array, Float64Array], prior), bruteForce(logp, prior), `trial ${t}`);
    }
  });

  it("keeps an axis's two coordinates on one object where each slot's argmax mixes two", () => {
    // Two objects, A at x 10..20 and B at x 40..50 (width 10); x1 favours A, x2 favours B: the slots'
    // own argmax is 10..50, a box on neither. The prior (width 10) picks A's edges, whose sum is larger.
    const n = 64;
    const peaks = (a: number, pa: number, b: number, pb: number) => {
      const l = new Float64Array(n).fill(-20);
      l[a] = Math.log(pa);
      l[b] = Math.log(pb);
      return logSoftmax(l, 0, n);
    };
    const logp: [Float64Array, Float64Array, Float64Array, Float64Array] = [peaks(10, 0.6, 40, 0.4), peaks(5, 1, 5, 1), peaks(20, 0.45, 50, 0.55), peaks(15, 1, 15, 1)];
    const argmax = logp.map((l) => l.indexOf(Math.max(...l)));
    assert.deepEqual(argmax, [10, 5, 50, 15]);
    assert.deepEqual(decodeBox(logp, { tol: 0, entries: [[10, 10, 1]] }), [10, 5, 20, 15]);
    // Without a size that fits, each slot's argmax.
    assert.deepEqual(decodeBox(logp, { tol: 0, entries: [[100, 100, 1]] }), argmax);
  });

  it('refuses a malformed prior', () => {
    assert.equal(BoxPriorSchema.safeParse({ tol: 8, entries: [] }).success, false);
    assert.equal(BoxPriorSchema.safeParse({ tol: -1, entries: [[1, 1, 1]] }).success, false);
    assert.equal(BoxPriorSchema.safeParse({ tol: 8, entries: [[192, 192, 0]] }).success, false);
    assert.equal(BoxPriorSchema.safeParse({ tol: 8, entries: [[192, 192, 30005]] }).success, true);
  });
});
