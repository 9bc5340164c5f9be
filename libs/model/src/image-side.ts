import { CanceledError, InvalidInputError, PeerProtocolError } from '@lavida/contracts';
import { checkCfgInterval, diffusionSteps, ImageDiffusion, type StepTokens } from './diffusion.js';
import { positionsTensor, TextSideSession, int64Tensor, type PartialAttention, type Projections } from './joint.js';
import { Tensor, tensorMismatch, type ModelPackage } from './package.js';
import { encodePng } from './png.js';
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
 *
 * Per step, with M joint layers: the text side's layer-0 projections depend on the fixed text
 * alone (and an image prefix, fixed too), so they travel once; its layer-l projections (l >= 1)
 * need the image side's partial of layer l-1 of the same step; the image side needs every layer's
 * text K/V (and Q below the last). So the image side can compute the next step's layer-0 partial
 * as soon as it has sampled a step, and sends it with the step's answer: a step then costs M-1
 * round trips (layers 1..M-1), one for M = 2.
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
  /**
   * Layer 0's partial of step `step + 1`: the image side begins the next step on its own right
   * after sampling this one (the text side's layer-0 projections never change). Set on every step
   * but the last when there is more than one joint layer.
   */
  next?: PartialAttention;
}

/**
 * What the image side answers one layer's projections with. `rest` runs the remaining work of the
 * layer whose partial is in the answer (call it once the answer is on its way): a layer before the
 * last, or layer 0 of the next step begun with a step's result.
 */
export type ImageSideAnswer =
  /** A layer before the last: the text queries' partial. */
  | { kind: 'partial'; partial: PartialAttention; rest: () => Promise<void> }
  /** The last joint layer: the step's result (with the next step's layer-0 partial, `result.next`). */
  | { kind: 'step'; result: ImageStepResult; rest: () => Promise<void> };

/**
 * The driver's view of an image side for one session. `layer(step, l, qkv)` sends the text side's
 * projections of layer `l` and yields the partial of layer `l` or, for the last layer, the step
 * (with the next step's layer-0 partial when there is more than one joint layer). Layer 0's
 * projections go only with the first step: a later step's layer 0 (begin_step: the image side
 * holds them) is asked for only with one joint layer, or of a peer whose step came without `next`.
 * Requests may be pipelined: answers come in order.
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
  /** Layer 0's partial of the step this side began on its own, until that step's layer 1 comes (for a begin_step asking again). */
  private begun?: { step: number; partial: PartialAttention };
  /** Zeros in place of the last layer's q (its text queries are not needed). */
  private zeroQ?: Tensor;

  private constructor(
    private readonly pkg: ModelPackage,
    readonly rows: number,
    readonly sideLen: number,
    /** The text side starts with an image prefix (side_len > text_len). */
    prefixed: boolean,
    sampler: ImageSampler,
    /** Send a layer's partial before running the rest of it (the driver works meanwhile). */
    private readonly partialFirst: boolean,
  ) {
    this.diffusion = new ImageDiffusion(pkg, { rows, sideLen, prefixed, combine: guidanceCombine(sampler.guidance), ...sampler });
  }

  /**
   * Validates the request against the model and returns a session ready for step 0's layer 0 (the
   * sampler's correction sweeps and guidance interval are checked by ImageDiffusion, from this call).
   */
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
    return new ImageSideSession(pkg, rows, sideLen, sideLen > textLen, sampler, options.partialFirst ?? false);
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
   * step after the first, `qkv` is left out (begin_step): the projections of step 0 are used. On
   * the last layer q may be left out (no partial of it is needed). The last layer's answer, the
   * step, carries the next step's layer-0 partial when there is more than one joint layer: this
   * side begins that step right away, and expects its layer 1 next.
   */
  async layer(step: number, layer: number, qkv: { q?: Tensor; k?: Tensor; v?: Tensor } | undefined): Promise<ImageSideAnswer> {
    const last = this.diffusion.lastJoint;
    if (!qkv && layer === 0 && this.begun?.step === step) {
      // begin_step for a step begun here already (a driver that does not read the step's next partial): that partial again.
      const { partial } = this.begun;
      this.begun = undefined;
      return { kind: 'partial', partial, rest: noRest };
    }
    if (this.nextStep >= this.steps) throw new PeerProtocolError(`projections for step ${step} layer ${layer}, but the session's ${this.steps} steps are done`);
    if (step !== this.nextStep || layer !== this.nextLayer) {
      throw new PeerProtocolError(`projections for step ${step} layer ${layer}, expected step ${this.nextStep} layer ${this.nextLayer}`);
    }
    this.begun = undefined;
    let projections: Projections;
    if (!qkv) {
      if (layer !== 0 || !this.first) throw new PeerProtocolError(`step ${step} layer ${layer} came without projections`);
      projections = this.first;
    } else {
      projections = this.check(layer, qkv);
    }
    if (layer === 0) {
      this.first ??= projections;
      await this.begin();
    }
    if (layer < last) return { kind: 'partial', ...(await this.enter(layer, projections)) };
    await this.diffusion.joint(layer, projections);
    const sampled = await this.diffusion.sample(step);
    this.nextStep = step + 1;
    this.nextLayer = 0;
    const result: ImageStepResult = { step, steps: this.steps, ...sampled };
    if (this.nextStep === this.steps) {
      const { height, width, channels } = this.pkg.manifest.image;
      result.imageTokens = [...this.diffusion.tokens];
      result.pixels = new Tensor('uint8', await decodeTokens(this.pkg, this.diffusion.tokens), [height, width, channels]);
      return { kind: 'step', result, rest: noRest };
    }
    if (last === 0) return { kind: 'step', result, rest: noRest };
    // The next step needs nothing new from the text side for its layer 0: begin it now, and send
    // its partial with this step's tokens. The driver's next request is that step's layer 1.
    await this.begin();
    const { partial, rest } = await this.enter(0, this.first!);
    result.next = partial;
    this.begun = { step: this.nextStep, partial };
    return { kind: 'step', result, rest };
  }

  /** Starts step `nextStep`: the grid as sampled so far, embedded. */
  private async begin(): Promise<void> {
    this.stepsRun += 1;
    await this.diffusion.embed(this.nextStep);
  }

  /** Layer `layer` (below the last) of step `nextStep`: its partial first where the segment allows, the rest in `rest`. */
  private async enter(layer: number, projections: Projections): Promise<{ partial: PartialAttention; rest: () => Promise<void> }> {
    this.nextLayer = layer + 1;
    if (this.partialFirst && this.diffusion.partialFirst(layer, Infinity)) {
      const partial = await this.diffusion.textPartial(layer, projections.q);
      return { partial, rest: async () => void (await this.diffusion.joint(layer, projections)) };
    }
    return { partial: await this.diffusion.joint(layer, projections), rest: noRest };
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

const noRest = async (): Promise<void> => undefined;

/** An image side in this process: the single-process counterpart of a remote generation worker. */
export class LocalImagePeer implements ImagePeer {
  constructor(private readonly pkg: ModelPackage) {}

  async open(request: ImageOpenRequest): Promise<ImageLink> {
    const session = ImageSideSession.open(this.pkg, request);
    let queue: Promise<unknown> = Promise.resolve();
    return {
      peer: 'local',
      // In order, like a remote side: a request may be made before the last answer is in.
      layer: (step, layer, qkv) => {
        const answer = queue.then(async () => {
          const a = await session.layer(step, layer, layer === 0 && step > 0 ? undefined : qkv);
          await a.rest();
          return a.kind === 'step' ? a.result : a.partial;
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
  const { architecture, image } = pkg.manifest;
  const { text, textRows, sampler } = textToImageSpec(pkg, request);
  if (!Number.isInteger(sampler.steps) || sampler.steps < 1) throw new InvalidInputError(`steps must be a positive integer, got ${sampler.steps}`);
  // Here, before a session is opened: the image side checks it too (a bad one from another driver is INVALID_ARGUMENT).
  checkCfgInterval(sampler.cfgInterval);
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
  const steps = diffusionSteps(pkg, sampler.steps, sampler.correctionSweeps);
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
  const asked = <T>(answer: Promise<T>) => {
    answer.catch(() => undefined); // awaited in turn
    return answer;
  };
  // The step before's progress, reported while this step runs on the image side.
  let progress: Promise<void> | undefined;
  try {
    // Step 0's layer 0 goes with open; a later step's layer-0 partial comes with the step before's tokens.
    let answer = asked(link.layer(0, 0, first));
    let carried: PartialAttention | undefined;
    for (let step = 0; step < steps; step++) {
      if (options.signal?.aborted) throw new CanceledError('canceled');
      if (step > 0) await textSide.beginStep(step);
      for (let layer = 0; layer < last; layer++) {
        const partial = layer === 0 && carried ? carried : await answer;
        if (isStepResult(partial)) throw new PeerProtocolError(`peer ${link.peer} answered step ${step} layer ${layer} with a step's tokens`);
        answer = asked(link.layer(step, layer + 1, await textSide.partial(step, layer, partial)));
      }
      const stepAnswer = answer;
      // One joint layer: nothing from the text side changes, a later step's layer 0 (begin_step) goes right behind.
      if (last === 0 && step + 1 < steps) answer = asked(link.layer(step + 1, 0, first));
      await progress;
      const result = await stepAnswer;
      if (!isStepResult(result) || result.step !== step || result.steps !== steps || result.positions.length !== result.tokens.length) {
        throw new PeerProtocolError(`peer ${link.peer} answered step ${step}'s last layer with something other than that step of ${steps}`);
      }
      for (const [i, position] of result.positions.entries()) tokens[position] = result.tokens[i];
      if (step + 1 === steps) final = result;
      else if (last > 0) {
        // A peer that does not begin the next step on its own is asked for its layer 0 (begin_step): one round trip more.
        const next = result.next ?? (await link.layer(step + 1, 0, first));
        if (isStepResult(next)) throw new PeerProtocolError(`peer ${link.peer} answered step ${step + 1} layer 0 with a step's tokens`);
        carried = next;
      }
      progress = asked(Promise.resolve(options.onStep?.(step + 1, steps)));
    }
    await progress;
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
