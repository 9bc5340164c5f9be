import { CanceledError, InvalidInputError, PeerProtocolError } from '@lavida/contracts';
import { ImageDiffusion, type StepTokens } from './diffusion.js';
import { positionsTensor, TextSideSession, int64Tensor, type PartialAttention, type Projections } from './joint.js';
import { Tensor, tensorMismatch, type ModelPackage } from './package.js';
import { encodePng } from './png.js';
import { unmaskSchedule } from './sampling.js';
import { repeatImage } from './tensor-ops.js';
import {
  decodeTokens,
  guidanceCombine,
  textToImageSpec,
  type ImageRequest,
  type ImageSampler,
  type RunOptions,
  type TextToImageResult,
} from './text-to-image.js';

/**
 * The reverse role of the joint exchange: the text side (understanding branch) drives
 * text-to-image, the image side (generation branch) serves it with its own sampler. Per joint
 * layer and step the driver sends its projections; the image side answers a layer before the
 * last with the partial attention of the text queries over the image keys, and the last layer
 * (elastic activation: the text side stops there) with the step's sampled tokens.
 */

/** What the driving text side asks an image side to hold for a session. */
export interface ImageOpenRequest {
  sessionId: string;
  /** int64 [rows, text_len]: one row per guidance row (the image side takes its rows and length from it). */
  textIds: Tensor;
  /** int64 [side_len]: the text side's positions (an image prefix, then the text); the grid's follow. */
  textPositions: Tensor;
  /** The text side's last joint layer: M-1 (its projections are answered with the step). */
  stopAfterLayer: number;
  sampler: ImageSampler;
  /** Layer 0's projections: the same every step, sent once (right behind the open). */
  first: Projections;
}

/** One step of the image side: the cells it revealed; on the last step, the whole grid and its pixels. */
export interface ImageStepResult extends StepTokens {
  step: number;
  /** Steps of the schedule. */
  steps: number;
  /** The output grid in raster order (last step only). */
  imageTokens?: number[];
  /** The VQ-decoded image, uint8 [height, width, channels] (last step only). */
  pixels?: Tensor;
}

/** What the image side answers one layer's projections with. */
export type ImageSideAnswer =
  /** A layer before the last: the text queries' partial; `rest` runs the layer's remaining work (call it once the partial is on its way). */
  | { kind: 'partial'; partial: PartialAttention; rest: () => Promise<void> }
  /** The last joint layer: the step's result. */
  | { kind: 'step'; result: ImageStepResult };

/**
 * The driver's view of an image side for one session. `layer(step, l, qkv)` sends the text side's
 * projections of layer `l` (layer 0's only with the first step: a later step starts with the ones
 * the image side holds) and yields the partial of layer `l` or, for the last layer, the step. A
 * driver may ask for the next step's layer 0 before the step's answer has arrived.
 */
export interface ImageLink {
  readonly peer: string;
  layer(step: number, layer: number, qkv: Projections): Promise<PartialAttention | ImageStepResult>;
  close(): Promise<void>;
}

/** Opens image-side sessions: in this process, or on a remote generation worker. */
export interface ImagePeer {
  open(request: ImageOpenRequest, signal?: AbortSignal): Promise<ImageLink>;
}

export function isStepResult(answer: PartialAttention | ImageStepResult): answer is ImageStepResult {
  return 'positions' in answer;
}

/**
 * The image side of one text-to-image session, run on the generation branch's segments with the
 * same sampler as `textToImage` (`ImageDiffusion`). The same class serves a local link and a
 * remote driver (the gRPC peer service with serve_side SIDE_IMAGE), so the two give identical numbers.
 */
export class ImageSideSession {
  /** Steps begun, for logs and metrics. */
  stepsRun = 0;
  private readonly diffusion: ImageDiffusion;
  /** Layer 0's projections, kept from step 0. */
  private first?: Projections;
  /** The layer and step the next projections must be for. */
  private nextStep = 0;
  private nextLayer = 0;
  /** Zeros in place of the last layer's q (its text queries are not needed). */
  private zeroQ?: Tensor;

  private constructor(
    private readonly pkg: ModelPackage,
    readonly rows: number,
    readonly sideLen: number,
    sampler: ImageSampler,
    /** Send a layer's partial before running the rest of it (the driver works meanwhile). */
    private readonly partialFirst: boolean,
  ) {
    this.diffusion = new ImageDiffusion(pkg, { rows, sideLen, combine: guidanceCombine(sampler.guidance), ...sampler });
  }

  /** Validates the request against the model and returns a session ready for step 0's layer 0. */
  static open(
    pkg: ModelPackage,
    request: Omit<ImageOpenRequest, 'first'>,
    options: { partialFirst?: boolean } = {},
  ): ImageSideSession {
    const { architecture } = pkg.manifest;
    const { textIds, textPositions, stopAfterLayer, sampler } = request;
    const { seed, steps, guidance, temperature } = sampler;
    if (!Number.isInteger(seed) || seed < 0 || seed > 0xffffffff) throw new InvalidInputError(`seed must be an integer 0..2^32-1, got ${seed}`);
    if (!Number.isInteger(steps) || steps < 1) throw new InvalidInputError(`steps must be a positive integer, got ${steps}`);
    if (!Number.isFinite(guidance) || guidance < 0) throw new InvalidInputError(`guidance must be a finite number >= 0, got ${guidance}`);
    if (!Number.isFinite(temperature) || temperature < 0)
      throw new InvalidInputError(`temperature must be a finite number >= 0, got ${temperature}`);
    const rows = guidance > 0 ? 2 : 1;
    if (textIds.type !== 'int64' || textIds.dims.length !== 2 || textIds.dims[0] !== rows || textIds.dims[1] < 1) {
      throw new InvalidInputError(
        `text_ids must be int64 [${rows}, text_len] (${rows} guidance row${rows > 1 ? 's' : ''} for guidance ${guidance}), got ${textIds.type} [${textIds.dims.join(',')}]`,
      );
    }
    const textLen = textIds.dims[1];
    const sideLen = textPositions.dims[0];
    if (textPositions.type !== 'int64' || textPositions.dims.length !== 1 || sideLen < textLen) {
      throw new InvalidInputError(
        `text_positions must be int64 [side_len >= ${textLen}], got ${textPositions.type} [${textPositions.dims.join(',')}]`,
      );
    }
    if (sideLen > architecture.max_text_len) {
      throw new InvalidInputError(`text side is ${sideLen} tokens, longer than the model's context of ${architecture.max_text_len}`);
    }
    if (stopAfterLayer !== architecture.joint_layers - 1) {
      throw new InvalidInputError(
        `stop_after_layer must be the last joint layer ${architecture.joint_layers - 1} for image output, got ${stopAfterLayer}`,
      );
    }
    return new ImageSideSession(pkg, rows, sideLen, sampler, options.partialFirst ?? false);
  }

  /** Steps of the schedule. */
  get steps(): number {
    return this.diffusion.steps;
  }

  /** The last joint layer: its projections are answered with the step. */
  get lastLayer(): number {
    return this.diffusion.lastJoint;
  }

  /**
   * Layer `layer` of step `step` with the text side's projections of that layer. For layer 0 of a
   * step after the first, `qkv` is left out: the projections of step 0 are used. On the last layer
   * q may be left out (no partial of it is needed).
   */
  async layer(step: number, layer: number, qkv: { q?: Tensor; k?: Tensor; v?: Tensor } | undefined): Promise<ImageSideAnswer> {
    const last = this.diffusion.lastJoint;
    if (this.nextStep >= this.steps) throw new PeerProtocolError(`projections for step ${step} layer ${layer}, but the session's ${this.steps} steps are done`);
    if (step !== this.nextStep || layer !== this.nextLayer) {
      throw new PeerProtocolError(`projections for step ${step} layer ${layer}, expected step ${this.nextStep} layer ${this.nextLayer}`);
    }
    let projections: Projections;
    if (!qkv) {
      if (layer !== 0 || !this.first) throw new PeerProtocolError(`step ${step} layer ${layer} came without projections`);
      projections = this.first;
    } else {
      projections = this.check(layer, qkv);
    }
    if (layer === 0) {
      this.first ??= projections;
      this.stepsRun += 1;
      await this.diffusion.embed();
    }
    if (layer < last) {
      this.nextLayer = layer + 1;
      if (this.partialFirst && this.diffusion.partialFirst(layer, Infinity)) {
        const partial = await this.diffusion.textPartial(layer, projections.q);
        return { kind: 'partial', partial, rest: async () => void (await this.diffusion.joint(layer, projections)) };
      }
      return { kind: 'partial', partial: await this.diffusion.joint(layer, projections), rest: async () => undefined };
    }
    await this.diffusion.joint(layer, projections);
    const sampled = await this.diffusion.sample(step);
    this.nextStep = step + 1;
    this.nextLayer = 0;
    const result: ImageStepResult = { step, steps: this.steps, ...sampled };
    if (this.nextStep === this.steps) {
      const { height, width, channels } = this.pkg.manifest.image;
      result.imageTokens = [...this.diffusion.tokens];
      result.pixels = new Tensor('uint8', await decodeTokens(this.pkg, this.diffusion.tokens), [height, width, channels]);
    }
    return { kind: 'step', result };
  }

  /** The text side's projections checked against the model: float32 [rows, heads, side_len, head_dim]. */
  private check(layer: number, qkv: { q?: Tensor; k?: Tensor; v?: Tensor }): Projections {
    const { heads, head_dim: headDim } = this.pkg.manifest.architecture;
    const shape = [this.rows, heads, this.sideLen, headDim];
    const last = layer === this.diffusion.lastJoint;
    for (const name of ['q', 'k', 'v'] as const) {
      const tensor = qkv[name];
      if (!tensor) {
        if (name === 'q' && last) continue;
        throw new InvalidInputError(`projections of layer ${layer} need ${last ? 'k and v' : 'q, k and v'}, ${name} is missing`);
      }
      const problem = tensorMismatch({ name: `projections.${name}`, dtype: 'float32', shape }, tensor.type, tensor.dims);
      if (problem) throw new InvalidInputError(problem);
    }
    const k = qkv.k!;
    return { q: qkv.q ?? this.zeros(k), k, v: qkv.v! };
  }

  private zeros(like: Tensor): Tensor {
    this.zeroQ ??= new Tensor('float32', new Float32Array(like.dims.reduce((a, b) => a * b, 1)), [...like.dims]);
    return this.zeroQ;
  }
}

/** An image side in this process: the single-process counterpart of a remote generation worker. */
export class LocalImagePeer implements ImagePeer {
  constructor(private readonly pkg: ModelPackage) {}

  async open(request: ImageOpenRequest): Promise<ImageLink> {
    const session = ImageSideSession.open(this.pkg, request);
    let queue: Promise<unknown> = Promise.resolve();
    return {
      peer: 'local',
      // In order, like a remote side: a step's layer 0 may be asked for before the last answer is in.
      layer: (step, layer, qkv) => {
        const answer = queue.then(async () => {
          const a = await session.layer(step, layer, layer === 0 && step > 0 ? undefined : qkv);
          if (a.kind === 'step') return a.result;
          await a.rest();
          return a.partial;
        });
        queue = answer.catch(() => undefined);
        return answer;
      },
      close: async () => undefined,
    };
  }
}

/**
 * Text-to-image driven by the text side (the understanding branch): this process runs the text
 * side's joint layers and stops after the last one (elastic activation); the image side, reached
 * through `peer`, samples the image with the same sampler as `textToImage`, so the same request
 * gives the same tokens whichever side drives.
 */
export async function textToImageFromText(
  pkg: ModelPackage,
  peer: ImagePeer,
  request: ImageRequest,
  options: RunOptions,
): Promise<TextToImageResult> {
  const { architecture, image, sampling } = pkg.manifest;
  const { text, textRows, sampler } = textToImageSpec(pkg, request);
  if (!Number.isInteger(sampler.steps) || sampler.steps < 1) throw new InvalidInputError(`steps must be a positive integer, got ${sampler.steps}`);
  const rows = textRows.length;
  const textLen = textRows[0].length;
  const [gridRows, gridCols] = image.grid;
  const gridTokens = gridRows * gridCols;
  const prefixLen = request.feedback ? gridTokens : 0;
  const sideLen = prefixLen + textLen;
  if (sideLen > architecture.max_text_len) {
    throw new InvalidInputError(
      `prompt is ${textLen} tokens${prefixLen ? ` after a ${prefixLen}-token image` : ''}, longer than the model's context of ${architecture.max_text_len}`,
    );
  }
  const last = architecture.joint_layers - 1;
  const steps = unmaskSchedule(gridTokens, sampler.steps, sampling.shift).length;
  const textIds = int64Tensor(textRows.flat(), [rows, textLen]);
  const textPositions = positionsTensor(0, sideLen);
  const textSide = TextSideSession.open(pkg, {
    sessionId: options.sessionId,
    textIds,
    textPositions,
    stopAfterLayer: last,
    prefixPixels: request.feedback ? repeatImage(request.feedback.pixels, rows, image.height, image.width, image.channels) : undefined,
  });
  const first = await textSide.beginStep(0);
  const link = await peer.open({ sessionId: options.sessionId, textIds, textPositions, stopAfterLayer: last, sampler, first }, options.signal);
  const tokens = new Array<number>(gridTokens).fill(image.mask_id);
  let final: ImageStepResult | undefined;
  const asked = (answer: Promise<PartialAttention | ImageStepResult>) => {
    answer.catch(() => undefined); // awaited in turn
    return answer;
  };
  try {
    let answer = asked(link.layer(0, 0, first));
    for (let step = 0; step < steps; step++) {
      if (options.signal?.aborted) throw new CanceledError('canceled');
      if (step > 0) await textSide.beginStep(step);
      for (let layer = 0; layer < last; layer++) {
        const partial = await answer;
        if (isStepResult(partial)) throw new PeerProtocolError(`peer ${link.peer} answered step ${step} layer ${layer} with a step's tokens`);
        answer = asked(link.layer(step, layer + 1, await textSide.partial(step, layer, partial)));
      }
      const stepAnswer = answer;
      // The next step's layer 0 goes right behind this step's last layer: one round trip a step.
      if (step + 1 < steps) answer = asked(link.layer(step + 1, 0, first));
      const result = await stepAnswer;
      if (!isStepResult(result) || result.step !== step || result.steps !== steps || result.positions.length !== result.tokens.length) {
        throw new PeerProtocolError(`peer ${link.peer} answered step ${step}'s last layer with something other than that step of ${steps}`);
      }
      for (const [i, position] of result.positions.entries()) tokens[position] = result.tokens[i];
      if (step + 1 === steps) final = result;
      await options.onStep?.(step + 1, steps);
    }
  } finally {
    await link.close();
  }
  const { width, height, channels } = image;
  if (!final?.imageTokens || !final.pixels || final.imageTokens.some((t, i) => t !== tokens[i])) {
    throw new PeerProtocolError(`peer ${link.peer} ended without the image, or with other tokens than its steps sampled`);
  }
  const pixelProblem = tensorMismatch({ name: 'pixels', dtype: 'uint8', shape: [height, width, channels] }, final.pixels.type, final.pixels.dims);
  if (pixelProblem) throw new PeerProtocolError(`peer ${link.peer}: ${pixelProblem}`);
  const pixels = final.pixels.data as Uint8Array;
  return { tokens, pixels, width, height, png: encodePng(pixels, width, height), steps, text, peer: link.peer };
}
