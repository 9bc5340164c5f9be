/**
 * Seeded randomness and the masked-diffusion sampling schedule. Everything here is deterministic
 * given its seed, so a job gives the same tokens wherever it runs.
 */

const MASK64 = (1n << 64n) - 1n;
const PCG_MULTIPLIER = 6364136223846793005n;

/** PCG-XSH-RR 32-bit generator (O'Neill), seeded like the reference `pcg32_srandom(seed, 54)`. */
export class Pcg32 {
  private state = 0n;
  private readonly inc: bigint;

  constructor(seed: number | bigint, stream: number | bigint = 54) {
    this.inc = ((BigInt(stream) << 1n) | 1n) & MASK64;
    this.nextUint32();
    this.state = (this.state + BigInt(seed)) & MASK64;
    this.nextUint32();
  }

  nextUint32(): number {
    const old = this.state;
    this.state = (old * PCG_MULTIPLIER + this.inc) & MASK64;
    const xorshifted = Number((((old >> 18n) ^ old) >> 27n) & 0xffffffffn);
    const rot = Number(old >> 59n);
    return ((xorshifted >>> rot) | (xorshifted << (-rot & 31))) >>> 0;
  }

  /** Uniform in [0, 1) with 32 bits of resolution. */
  nextFloat(): number {
    return this.nextUint32() / 4294967296;
  }

  /** Uniform integer in [0, n). */
  nextInt(n: number): number {
    return Math.floor(this.nextFloat() * n);
  }

  /** Fisher-Yates shuffle in place. */
  shuffle<T>(items: T[]): T[] {
    for (let i = items.length - 1; i > 0; i--) {
      const j = this.nextInt(i + 1);
      [items[i], items[j]] = [items[j], items[i]];
    }
    return items;
  }
}

/**
 * The stratified (hierarchical, progressive multi-jittered) unmasking order over a token grid:
 * level k splits the grid into 2^k x 2^k blocks and puts one random cell in each block that has
 * none yet, visiting blocks in a shuffled order; so any prefix of length 4^k is one per block.
 * Grids that are not square powers of two are covered by the next power of two, skipping cells
 * outside. Returns raster indices (row * cols + col).
 */
export function stratifiedOrder(rows: number, cols: number, seed: number): number[] {
  const rng = new Pcg32(seed);
  let size = 1;
  while (size < Math.max(rows, cols)) size *= 2;
  const taken = new Uint8Array(rows * cols);
  const order: number[] = [];
  for (let blocks = 1; blocks <= size; blocks *= 2) {
    const block = size / blocks;
    const visit: [number, number][] = [];
    for (let br = 0; br < blocks; br++) for (let bc = 0; bc < blocks; bc++) visit.push([br, bc]);
    rng.shuffle(visit);
    for (const [br, bc] of visit) {
      const r0 = br * block;
      const c0 = bc * block;
      const r1 = Math.min(r0 + block, rows);
      const c1 = Math.min(c0 + block, cols);
      if (r0 >= rows || c0 >= cols) continue;
      let occupied = false;
      for (let r = r0; r < r1 && !occupied; r++) for (let c = c0; c < c1; c++) if (taken[r * cols + c]) occupied = true;
      if (occupied) continue;
      const r = r0 + rng.nextInt(r1 - r0);
      const c = c0 + rng.nextInt(c1 - c0);
      taken[r * cols + c] = 1;
      order.push(r * cols + c);
    }
  }
  return order;
}

/**
 * Tokens to reveal at each step, for `total` tokens in `steps` steps with the shifted schedule
 * s(t) = shift t / (1 + (shift - 1) t) of the reference code: counts are the differences of
 * floor(s N), reversed (few tokens first, many last), at least one per step, summing to `total`.
 */
export function unmaskSchedule(total: number, steps: number, shift: number): number[] {
  const n = Math.max(1, Math.min(steps, total));
  const s = (t: number) => (shift * t) / (1 + (shift - 1) * t);
  const marks = Array.from({ length: n + 1 }, (_, i) => Math.floor(s(i / n) * total));
  const counts = marks.slice(1).map((m, i) => Math.max(1, m - marks[i])).reverse();
  let excess = counts.reduce((a, b) => a + b, 0) - total;
  for (let i = counts.length - 1; excess > 0 && i >= 0; i--) {
    const take = Math.min(excess, counts[i] - 1);
    counts[i] -= take;
    excess -= take;
  }
  for (let i = counts.length - 1; excess < 0; i = (i - 1 + counts.length) % counts.length) {
    counts[i] += 1;
    excess += 1;
  }
  return counts;
}

/**
 * Samples a class from logits at a temperature (0 = argmax), in float64 so that results do not
 * depend on summation order across machines.
 */
export function sampleLogits(logits: ArrayLike<number>, temperature: number, rng: Pcg32): number {
  let best = 0;
  for (let i = 1; i < logits.length; i++) if (logits[i] > logits[best]) best = i;
  if (temperature <= 0) return best;
  const max = logits[best];
  let sum = 0;
  const weights = new Float64Array(logits.length);
  for (let i = 0; i < logits.length; i++) {
    weights[i] = Math.exp((logits[i] - max) / temperature);
    sum += weights[i];
  }
  let u = rng.nextFloat() * sum;
  for (let i = 0; i < weights.length; i++) {
    u -= weights[i];
    if (u < 0) return i;
  }
  return best;
}

/**
 * The correction sweeps' classes of a rows x cols grid: cells of equal row % 2 and column % 2, each in
 * raster order, the classes in the order (0,0), (0,1), (1,0), (1,1) (empty ones left out).
 */
export function correctionClasses(rows: number, cols: number): number[][] {
  const classes: number[][] = [];
  for (const pr of [0, 1]) {
    for (const pc of [0, 1]) {
      const cells: number[] = [];
      for (let r = pr; r < rows; r += 2) for (let c = pc; c < cols; c += 2) cells.push(r * cols + c);
      if (cells.length) classes.push(cells);
    }
  }
  return classes;
}

/** Classifier-free guidance over stacked rows: (1 + g) cond - g uncond. */
export function guide(cond: ArrayLike<number>, uncond: ArrayLike<number>, g: number): Float64Array {
  const out = new Float64Array(cond.length);
  for (let i = 0; i < cond.length; i++) out[i] = (1 + g) * cond[i] - g * uncond[i];
  return out;
}
