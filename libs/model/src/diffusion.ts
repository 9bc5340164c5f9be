import { CanceledError, InvalidInputError } from '@lavida/contracts';
import { int64Tensor, positionsTensor, type JointPeer, type PartialAttention, type Projections } from './joint.js';
import type { ModelPackage, Tensor } from './package.js';
import { textPartialSegment } from './manifest.js';
import { correctionClasses, guide, Pcg32, sampleLogits, stratifiedOrder, unmaskSchedule } from './sampling.js';
import { repeatImage } from './tensor-ops.js';

/**
 * One image by masked diffusion on the generation branch, the text side reached through a joint
 * peer. Guidance rows are stacked: every row has its text (equal lengths) and optionally a
 * condition grid; one exchange per joint layer and step carries all rows.
 */
export interface DiffusionSpec {
  /** Text ids per guidance row, all of one length. */
  textRows: readonly (readonly number[])[];
  /** One packed RGB image the text side reads first (same for every row). */
  prefixPixels?: Uint8Array;
  /**
   * Embedding ids of a condition grid per row (already offset by `condition_offset`, or `mask_id`
   * for a row without the condition): the editing source image, before the output grid.
   */
  conditionRows?: readonly (readonly number[])[];
  /** Combines one token's logits of every row (float32, K each) into the scores to sample from. */
  combine: (rows: readonly Float32Array[]) => ArrayLike<number>;
  seed: number;
  steps: number;
  temperature: number;
  /** Correction sweeps after the schedule (`ImageDiffusion`). */
  correctionSweeps: number;
  /**
   * Guidance interval [lo, hi] of the schedule's steps (`ImageDiffusion`): plain and planned text-to-image
   * only; an edit and a regeneration from a critique guide every step whatever it is.
   */
  cfgInterval: [number, number];
}

export interface DiffusionOptions {
  sessionId: string;
  signal?: AbortSignal;
  onStep?: (step: number, steps: number) => void | Promise<void>;
}

export interface DiffusionResult {
  /** Output grid tokens, raster order. */
  tokens: number[];
  steps: number;
  peer: string;
}

export async function diffuse(pkg: ModelPackage, peer: JointPeer, spec: DiffusionSpec, options: DiffusionOptions): Promise<DiffusionResult> {
  const { architecture, image } = pkg.manifest;
  const rows = spec.textRows.length;
  const textLen = spec.textRows[0]?.length ?? 0;
  if (rows === 0 || textLen === 0) throw new InvalidInputError('prompt has no tokens');
  if (spec.textRows.some((r) => r.length !== textLen)) throw new InvalidInputError('guidance rows must have one text length');
  const [gridRows, gridCols] = image.grid;
  const prefixLen = spec.prefixPixels ? gridRows * gridCols : 0;
  const sideLen = prefixLen + textLen;
  // The sampler first (its steps and condition grid checked), then the text side's length.
  const diffusion = new ImageDiffusion(pkg, { ...spec, rows, sideLen, prefixed: prefixLen > 0 });
  if (sideLen > architecture.max_text_len) {
    throw new InvalidInputError(
      `prompt is ${textLen} tokens${prefixLen ? ` after a ${prefixLen}-token image` : ''}, longer than the model's context of ${architecture.max_text_len}`,
    );
  }
  const textIds = int64Tensor(spec.textRows.flat(), [rows, textLen]);
  const lastJoint = diffusion.lastJoint;

  const link = await peer.open(
    {
      sessionId: options.sessionId,
      textIds,
      textPositions: positionsTensor(0, sideLen),
      stopAfterLayer: lastJoint,
      prefixPixels: spec.prefixPixels ? repeatImage(spec.prefixPixels, rows, image.height, image.width, image.channels) : undefined,
    },
    options.signal,
  );
  // Joint layers whose partial goes out before the rest of the layer runs: worth it only when the
  // text side works beside this process and takes the partial in whole meanwhile.
  const overlap = Array.from({ length: lastJoint }, (_, l) => diffusion.partialFirst(l, link.concurrentPartialBytes ?? 0));
  try {
    for (let step = 0; step < diffusion.steps; step++) {
      if (options.signal?.aborted) throw new CanceledError('canceled');
      await diffusion.embed(step);
      let qkv = await link.beginStep(step);
      for (let layer = 0; layer <= lastJoint; layer++) {
        // The text side stops after the last joint layer: its states never reach an image token again.
        if (layer < lastJoint && overlap[layer]) {
          // The text side's partial first (the same numbers as gen_joint's), then the rest of the
          // layer here while the text side merges it and projects the next layer.
          const next = link.partial(step, layer, await diffusion.textPartial(layer, qkv.q));
          next.catch(() => undefined); // awaited below, after this layer's own work
          await diffusion.joint(layer, qkv);
          qkv = await next;
          continue;
        }
        const partial = await diffusion.joint(layer, qkv);
        if (layer < lastJoint) qkv = await link.partial(step, layer, partial);
      }
      await diffusion.sample(step);
      await options.onStep?.(step + 1, diffusion.steps);
    }
  } finally {
    await link.close();
  }
  return { tokens: diffusion.tokens, steps: diffusion.steps, peer: link.peer };
}

/**
 * Steps of one image asked for in `steps` with `correctionSweeps`: the shifted schedule's (at most
 * one a grid cell), then the correction steps (four a sweep on a grid of at least 2 x 2).
 */
export function diffusionSteps(pkg: ModelPackage, steps: number, correctionSweeps: number): number {
  const { image, sampling } = pkg.manifest;
  const [gridRows, gridCols] = image.grid;
  const corrections = correctionClasses(gridRows, gridCols).length * checkCorrectionSweeps(correctionSweeps);
  return unmaskSchedule(gridRows * gridCols, steps, sampling.shift).length + corrections;
}

/** Correction sweeps asked for, checked: an integer 0..16 (as a request's `correction_sweeps`). */
export function checkCorrectionSweeps(sweeps: number): number {
  if (!Number.isInteger(sweeps) || sweeps < 0 || sweeps > 16) {
    throw new InvalidInputError(`correction_sweeps must be an integer 0..16, got ${sweeps}`);
  }
  return sweeps;
}

/**
 * A guidance interval asked for, checked: [lo, hi], finite, 0 <= lo <= hi <= 1 (as a request's
 * `cfg_interval`). Checked at run time too: a stage's data or a peer's frame may carry anything.
 */
export function checkCfgInterval(interval: readonly number[]): [number, number] {
  const ends: readonly unknown[] = Array.isArray(interval) ? interval : [];
  const [lo, hi] = ends;
  // NaN fails every comparison, an infinity the range: what passes is finite.
  if (!(ends.length === 2 && typeof lo === 'number' && typeof hi === 'number' && 0 <= lo && lo <= hi && hi <= 1)) {
    const got = Array.isArray(interval) ? `[${ends.map(String).join(', ')}]` : String(interval);
    throw new InvalidInputError(`cfg_interval must be [lo, hi] with 0 <= lo <= hi <= 1, got ${got}`);
  }
  return [lo, hi];
}

/** What the image side of one diffusion needs: its rows and text-side length, and the sampler. */
export interface ImageDiffusionSpec
  extends Pick<DiffusionSpec, 'conditionRows' | 'combine' | 'seed' | 'steps' | 'temperature' | 'correctionSweeps' | 'cfgInterval'> {
  /** Guidance rows. */
  rows: number;
  /** Tokens on the text side (an image prefix and the text): the image grid's positions follow them. */
  sideLen: number;
  /** Whether the text side starts with an image prefix (a regeneration from a critique reads the earlier image). */
  prefixed: boolean;
}

/** The tokens one step revealed: grid cells (raster indices) in the order sampled, and their codes. */
export interface StepTokens {
  positions: number[];
  tokens: number[];
}

/**
 * The image side of one diffusion on the generation branch: the output grid, the sampler (seeded
 * generator, stratified order, shifted schedule, guidance over stacked rows) and the joint layers'
 * image states. The text side's projections come from elsewhere: a driven peer (`diffuse`) or a
 * driver this process serves (`ImageSideSession`), so both give the same numbers.
 */
export class ImageDiffusion {
  /** Output grid tokens, raster order (`mask_id` where not yet sampled). */
  readonly tokens: number[];
  readonly lastJoint: number;
  /** Tokens to reveal at each step. */
  private readonly schedule: number[];
  private readonly order: number[];
  private readonly rng: Pcg32;
  /** The cells each correction step masks and predicts again (after the schedule's steps). */
  private readonly corrections: number[][];
  /**
   * A correction step's scores of one cell: the image's combination, or the manifest's
   * `correction_guidance` over the first two rows (0: the first row alone).
   */
  private readonly correctionCombine: (rows: readonly Float32Array[]) => ArrayLike<number>;
  /**
   * The schedule's steps that combine the rows (the spec's `cfgInterval`, plain and planned text-to-image;
   * an edit's and a regeneration's are all guided); the others take the first row.
   */
  private readonly guided: boolean[];
  private readonly imagePositions: Tensor;
  private readonly conditionLen: number;
  private readonly imageLen: number;
  private cursor = 0;
  private hidden?: Tensor;

  constructor(
    private readonly pkg: ModelPackage,
    private readonly spec: ImageDiffusionSpec,
  ) {
    const { architecture, image, sampling } = pkg.manifest;
    if (!Number.isInteger(spec.steps) || spec.steps < 1) throw new InvalidInputError(`steps must be a positive integer, got ${spec.steps}`);
    const [gridRows, gridCols] = image.grid;
    const gridTokens = gridRows * gridCols;
    const condition = spec.conditionRows;
    if (condition && (condition.length !== spec.rows || condition.some((c) => c.length !== gridTokens))) {
      throw new InvalidInputError(`a condition grid needs ${gridTokens} tokens on each of the ${spec.rows} rows`);
    }
    this.conditionLen = condition ? gridTokens : 0;
    this.imageLen = this.conditionLen + gridTokens;
    this.schedule = unmaskSchedule(gridTokens, spec.steps, sampling.shift);
    this.order = stratifiedOrder(gridRows, gridCols, sampling.order_seed);
    this.rng = new Pcg32(spec.seed);
    const classes = correctionClasses(gridRows, gridCols);
    this.corrections = Array.from({ length: checkCorrectionSweeps(spec.correctionSweeps) }, () => classes).flat();
    const g = sampling.correction_guidance;
    this.correctionCombine = g === undefined ? spec.combine : (rows) => (g > 0 && rows.length > 1 ? guide(rows[0], rows[1], g) : rows[0]);
    // Plain and planned text-to-image only: an edit (a condition grid) and a regeneration from a critique
    // (an image prefix) are steered by their text in the first steps, so they guide every step (the
    // interval is checked all the same: a bad one is a bad request whatever the image).
    const interval = checkCfgInterval(spec.cfgInterval);
    const [lo, hi] = condition || spec.prefixed ? [0, 1] : interval;
    this.guided = this.schedule.map((_, step) => lo <= step / this.schedule.length && step / this.schedule.length < hi);
    this.imagePositions = positionsTensor(spec.sideLen, this.imageLen);
    this.tokens = new Array<number>(gridTokens).fill(image.mask_id);
    this.lastJoint = architecture.joint_layers - 1;
  }

  /** Steps: the schedule's, then the correction steps (four a sweep). */
  get steps(): number {
    return this.schedule.length + this.corrections.length;
  }

  /** The cells correction step `step` masks, or undefined for a step of the schedule. */
  private correcting(step: number): number[] | undefined {
    return step < this.schedule.length ? undefined : this.corrections[step - this.schedule.length];
  }

  /**
   * Whether joint layer `layer`'s text partial can go out before the rest of the layer runs: the
   * model has the partial segment and the partial fits what the other side takes in meanwhile.
   */
  partialFirst(layer: number, concurrentBytes: number): boolean {
    const { heads, head_dim: headDim } = this.pkg.manifest.architecture;
    const partialBytes = this.spec.rows * heads * this.spec.sideLen * (headDim + 1) * 4;
    return layer < this.lastJoint && partialBytes <= concurrentBytes && this.pkg.has(textPartialSegment(layer));
  }

  /**
   * Starts step `step`: the grid as it is (after any condition grid) embedded on every row; in a
   * correction step with that step's cells masked.
   */
  async embed(step: number): Promise<void> {
    const { rows, conditionRows: condition } = this.spec;
    let grid = this.tokens;
    const masked = this.correcting(step);
    if (masked) {
      grid = [...this.tokens];
      for (const index of masked) grid[index] = this.pkg.manifest.image.mask_id;
    }
    const ids: number[] = [];
    for (let r = 0; r < rows; r++) ids.push(...(condition ? condition[r] : []), ...grid);
    this.hidden = (await this.pkg.run('gen_embed', { image_ids: int64Tensor(ids, [rows, this.imageLen]) })).hidden;
  }

  /** Joint layer `layer` with the text side's projections: the image states move on; returns the text queries' partial. */
  async joint(layer: number, qkv: Projections): Promise<PartialAttention> {
    const out = await this.pkg.run(`gen_joint_${layer}`, {
      hidden: this.hidden!,
      positions: this.imagePositions,
      text_q: qkv.q,
      text_k: qkv.k,
      text_v: qkv.v,
    });
    this.hidden = out.hidden_out;
    return { out: out.text_out, lse: out.text_lse };
  }

  /** Joint layer `layer`'s text partial alone (segment `gen_text_partial_l`: the same numbers as `joint`'s). */
  async textPartial(layer: number, q: Tensor): Promise<PartialAttention> {
    const partial = await this.pkg.run(textPartialSegment(layer), { hidden: this.hidden!, positions: this.imagePositions, text_q: q });
    return { out: partial.text_out, lse: partial.text_lse };
  }

  /**
   * Ends step `step`: the image tail, then this step's cells sampled from the combined rows (the first
   * row alone outside `cfg_interval`; in a correction step: its masked cells, each set to its argmax code).
   */
  async sample(step: number): Promise<StepTokens> {
    const { rows, combine } = this.spec;
    const k = this.pkg.manifest.image.codebook_size;
    const logits = (await this.pkg.run('gen_tail', { hidden: this.hidden!, positions: this.imagePositions })).logits.data as Float32Array;
    const corrected = this.correcting(step);
    const positions = corrected ? [...corrected] : this.order.slice(this.cursor, this.cursor + this.schedule[step]);
    const temperature = corrected ? 0 : this.spec.temperature;
    const tokens: number[] = [];
    for (const index of positions) {
      const perRow = Array.from({ length: rows }, (_, r) => {
        const at = (r * this.imageLen + this.conditionLen + index) * k;
        return logits.subarray(at, at + k);
      });
      const scores = corrected ? this.correctionCombine(perRow) : this.guided[step] ? combine(perRow) : perRow[0];
      const token = sampleLogits(scores, temperature, this.rng);
      this.tokens[index] = token;
      tokens.push(token);
    }
    if (!corrected) this.cursor += this.schedule[step];
    return { positions, tokens };
  }
}
