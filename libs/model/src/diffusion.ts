import { CanceledError, InvalidInputError } from '@lavida/contracts';
import { int64Tensor, positionsTensor, type JointPeer } from './joint.js';
import type { ModelPackage } from './package.js';
import { textPartialSegment } from './manifest.js';
import { Pcg32, sampleLogits, stratifiedOrder, unmaskSchedule } from './sampling.js';
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
  const { architecture, image, sampling } = pkg.manifest;
  const rows = spec.textRows.length;
  const textLen = spec.textRows[0]?.length ?? 0;
  if (rows === 0 || textLen === 0) throw new InvalidInputError('prompt has no tokens');
  if (spec.textRows.some((r) => r.length !== textLen)) throw new InvalidInputError('guidance rows must have one text length');
  if (!Number.isInteger(spec.steps) || spec.steps < 1) throw new InvalidInputError(`steps must be a positive integer, got ${spec.steps}`);
  const [gridRows, gridCols] = image.grid;
  const gridTokens = gridRows * gridCols;
  const prefixLen = spec.prefixPixels ? gridTokens : 0;
  const sideLen = prefixLen + textLen;
  if (sideLen > architecture.max_text_len) {
    throw new InvalidInputError(
      `prompt is ${textLen} tokens${prefixLen ? ` after a ${prefixLen}-token image` : ''}, longer than the model's context of ${architecture.max_text_len}`,
    );
  }
  const condition = spec.conditionRows;
  if (condition && (condition.length !== rows || condition.some((c) => c.length !== gridTokens))) {
    throw new InvalidInputError(`a condition grid needs ${gridTokens} tokens on each of the ${rows} rows`);
  }
  const conditionLen = condition ? gridTokens : 0;
  const imageLen = conditionLen + gridTokens;
  const schedule = unmaskSchedule(gridTokens, spec.steps, sampling.shift);
  const order = stratifiedOrder(gridRows, gridCols, sampling.order_seed);
  const rng = new Pcg32(spec.seed);
  const textIds = int64Tensor(spec.textRows.flat(), [rows, textLen]);
  const imagePositions = positionsTensor(sideLen, imageLen);
  const tokens = new Array<number>(gridTokens).fill(image.mask_id);
  const lastJoint = architecture.joint_layers - 1;
  const k = image.codebook_size;

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
  const { heads, head_dim: headDim } = architecture;
  const partialBytes = rows * heads * sideLen * (headDim + 1) * 4;
  const overlap = Array.from(
    { length: lastJoint },
    (_, l) => partialBytes <= (link.concurrentPartialBytes ?? 0) && pkg.has(textPartialSegment(l)),
  );
  try {
    let cursor = 0;
    for (let step = 0; step < schedule.length; step++) {
      if (options.signal?.aborted) throw new CanceledError('canceled');
      const ids: number[] = [];
      for (let r = 0; r < rows; r++) ids.push(...(condition ? condition[r] : []), ...tokens);
      let hidden = (await pkg.run('gen_embed', { image_ids: int64Tensor(ids, [rows, imageLen]) })).hidden;
      let qkv = await link.beginStep(step);
      for (let layer = 0; layer <= lastJoint; layer++) {
        const joint = { hidden, positions: imagePositions, text_q: qkv.q, text_k: qkv.k, text_v: qkv.v };
        // The text side stops after the last joint layer: its states never reach an image token again.
        if (layer < lastJoint && overlap[layer]) {
          // The text side's partial first (the same numbers as gen_joint's), then the rest of the
          // layer here while the text side merges it and projects the next layer.
          const partial = await pkg.run(textPartialSegment(layer), { hidden, positions: imagePositions, text_q: qkv.q });
          const next = link.partial(step, layer, { out: partial.text_out, lse: partial.text_lse });
          next.catch(() => undefined); // awaited below, after this layer's own work
          hidden = (await pkg.run(`gen_joint_${layer}`, joint)).hidden_out;
          qkv = await next;
          continue;
        }
        const out = await pkg.run(`gen_joint_${layer}`, joint);
        hidden = out.hidden_out;
        if (layer < lastJoint) qkv = await link.partial(step, layer, { out: out.text_out, lse: out.text_lse });
      }
      const logits = (await pkg.run('gen_tail', { hidden, positions: imagePositions })).logits.data as Float32Array;
      for (const index of order.slice(cursor, cursor + schedule[step])) {
        const perRow = Array.from({ length: rows }, (_, r) => {
          const at = (r * imageLen + conditionLen + index) * k;
          return logits.subarray(at, at + k);
        });
        tokens[index] = sampleLogits(spec.combine(perRow), spec.temperature, rng);
      }
      cursor += schedule[step];
      await options.onStep?.(step + 1, schedule.length);
    }
  } finally {
    await link.close();
  }
  return { tokens, steps: schedule.length, peer: link.peer };
}
