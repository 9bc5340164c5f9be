import { z } from 'zod';

/**
 * A box-size prior for grounding and plan boxes (`manifest.tasks.box_prior`, docs/model-package.md "Task
 * templates"; model/README "Package 0.4.7"). Decoded in one forward, the four
 * coordinate slots are four marginals, and where a scene has several objects each slot's argmax may come
 * from a different object. Decoded jointly under the training targets' (width, height) distribution,
 * each axis's two coordinates come from one object's edges. The same as the PyTorch reference
 * (`model/lavida_mini/box_prior.py`).
 */
export const BoxPriorSchema = z.object({
  /** The far coordinate may lie this many bins from near + size (a max filter). */
  tol: z.number().int().min(0).max(64),
  /** [width, height, count] in coordinate bins, the most frequent first. */
  entries: z
    .array(z.tuple([z.number().int().min(0), z.number().int().min(0), z.number().positive()]))
    .min(1)
    .max(4096),
  /**
   * Plans too (absent: false): after a plan is decoded, each layout item's four coordinates are masked
   * again in turn and decoded jointly under the prior from one forward with the rest of the plan.
   */
  plans: z.boolean().optional(),
});
export type BoxPrior = z.infer<typeof BoxPriorSchema>;

/** Log-softmax of `count` logits from `at` in float64, summed in id order (numerically as torch's double log_softmax). */
export function logSoftmax(data: ArrayLike<number>, at: number, count: number): Float64Array {
  let top = -Infinity;
  for (let i = 0; i < count; i++) if (data[at + i] > top) top = data[at + i];
  let sum = 0;
  for (let i = 0; i < count; i++) sum += Math.exp(data[at + i] - top);
  const lse = top + Math.log(sum);
  const out = new Float64Array(count);
  for (let i = 0; i < count; i++) out[i] = data[at + i] - lse;
  return out;
}

/**
 * max over a of lo[a] + max_{|d| <= tol} hi[a + size + d] (indices inside the range); ties to the
 * smallest a, then the smallest far index.
 */
function axis(lo: Float64Array, hi: Float64Array, size: number, tol: number): { score: number; near: number; far: number } {
  const n = lo.length;
  let best = { score: -Infinity, near: 0, far: 0 };
  for (let a = 0; a < n; a++) {
    const from = Math.max(0, a + size - tol);
    const to = Math.min(n - 1, a + size + tol);
    let far = -1;
    let top = -Infinity;
    for (let b = from; b <= to; b++) {
      if (hi[b] > top) {
        top = hi[b];
        far = b;
      }
    }
    if (far < 0) continue;
    const score = lo[a] + top;
    if (score > best.score) best = { score, near: a, far };
  }
  return best;
}

/**
 * The four bins (x1, y1, x2, y2) of the best box under the prior, from the log-probabilities of the
 * four coordinate slots (each over the coordinate bins).
 */
export function decodeBox(logp: readonly [Float64Array, Float64Array, Float64Array, Float64Array], prior: BoxPrior): [number, number, number, number] {
  const total = prior.entries.reduce((s, e) => s + e[2], 0);
  const xs = new Map<number, ReturnType<typeof axis>>();
  const ys = new Map<number, ReturnType<typeof axis>>();
  let best = -Infinity;
  let out: [number, number, number, number] | undefined;
  for (const [w, h, count] of prior.entries) {
    if (!xs.has(w)) xs.set(w, axis(logp[0], logp[2], w, prior.tol));
    if (!ys.has(h)) ys.set(h, axis(logp[1], logp[3], h, prior.tol));
    const x = xs.get(w)!;
    const y = ys.get(h)!;
    const v = x.score + y.score + Math.log(count / total);
    if (v > best) {
      best = v;
      out = [x.near, y.near, x.far, y.far];
    }
  }
  // No size fits (every entry wider than the range): each slot's own argmax.
  return out ?? (logp.map((l) => l.reduce((bi, v, i, arr) => (v > arr[bi] ? i : bi), 0)) as [number, number, number, number]);
}
