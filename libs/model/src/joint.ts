import { InvalidInputError, PeerProtocolError } from '@lavida/contracts';
import { Tensor, tensorMismatch, type ModelPackage } from './package.js';
import { concatTokens } from './tensor-ops.js';

/** Rotary-embedded Q, K, V of one side for one joint layer, each float32 [rows, heads, tokens, head_dim]. */
export interface Projections {
  q: Tensor;
  k: Tensor;
  v: Tensor;
}

/** Attention of one side's queries over the other side's keys: out [rows,H,T,D], lse [rows,H,T]. */
export interface PartialAttention {
  out: Tensor;
  lse: Tensor;
}

/** What the driver (image side) asks the text side to hold for a session. */
export interface OpenRequest {
  sessionId: string;
  /** int64 [rows, text_len] */
  textIds: Tensor;
  /** int64 [text_len] */
  textPositions: Tensor;
  /** The last joint layer the text side runs: M-1 for image output (elastic activation). */
  stopAfterLayer: number;
  /**
   * uint8 [rows, height, width, channels]: an image the text side reads as semantic image tokens
   * (`und_image_embed`) before the text, e.g. an earlier attempt with its critique. Its tokens take
   * positions 0..I-1; `textPositions` then covers I + text_len tokens.
   */
  prefixPixels?: Tensor;
}

/**
 * The driver's view of the text side for one session. Each step starts with `beginStep`, which
 * yields layer 0's projections; `partial` hands back the partial attention of layer l and yields
 * layer l+1's projections. The text side stops after `stopAfterLayer`.
 */
export interface JointLink {
  readonly peer: string;
  /**
   * Set when the text side runs beside the driver (another process): the largest partial (bytes of
   * `out` and `lse`) it takes in while the driver computes. A driver with the image side's partial
   * segments then sends such a partial first and runs the rest of the layer while the text side
   * merges it and projects the next layer. (A larger one would wait for the driver between its
   * pieces: the transport's flow control.)
   */
  readonly concurrentPartialBytes?: number;
  beginStep(step: number): Promise<Projections>;
  partial(step: number, layer: number, partial: PartialAttention): Promise<Projections>;
  close(): Promise<void>;
}

/** Opens joint-attention sessions on some text side: in this process, or a remote worker. */
export interface JointPeer {
  open(request: OpenRequest, signal?: AbortSignal): Promise<JointLink>;
}

/**
 * The text side of one session, run on the understanding branch's segments. The same class serves
 * a local link (single process) and a remote driver (the gRPC peer service), so the two give
 * identical numbers.
 */
export class TextSideSession {
  private embedded?: Tensor;
  private hidden?: Tensor;
  private current?: Projections;
  /** Layer 0's projections: a function of the fixed text alone, the same every step. */
  private first?: Projections;
  private layer = -1;
  private step = -1;
  /** Steps begun, for logs and metrics. */
  stepsRun = 0;

  private constructor(
    private readonly pkg: ModelPackage,
    private readonly textIds: Tensor,
    private readonly positions: Tensor,
    readonly stopAfterLayer: number,
    private readonly prefixPixels: Tensor | undefined,
    /** Tokens on the text side: image prefix tokens + text tokens. */
    readonly sideLen: number,
  ) {}

  /** Validates the request against the model and returns a session ready for its first step. */
  static open(pkg: ModelPackage, request: OpenRequest): TextSideSession {
    const { architecture, text, image } = pkg.manifest;
    const { textIds, textPositions, stopAfterLayer, prefixPixels } = request;
    if (textIds.type !== 'int64' || textIds.dims.length !== 2 || textIds.dims[0] < 1 || textIds.dims[1] < 1) {
      throw new InvalidInputError(`text_ids must be int64 [rows, text_len], got ${textIds.type} [${textIds.dims.join(',')}]`);
    }
    const textLen = textIds.dims[1];
    let prefixLen = 0;
    if (prefixPixels) {
      if (!pkg.has('und_image_embed')) throw new InvalidInputError(`model ${pkg.manifest.name} cannot read an image prefix (no und_image_embed segment)`);
      const want = [textIds.dims[0], image.height, image.width, image.channels];
      if (prefixPixels.type !== 'uint8' || prefixPixels.dims.length !== 4 || prefixPixels.dims.some((d, i) => d !== want[i])) {
        throw new InvalidInputError(`prefix_pixels must be uint8 [${want.join(',')}], got ${prefixPixels.type} [${prefixPixels.dims.join(',')}]`);
      }
      prefixLen = image.grid[0] * image.grid[1];
    }
    const sideLen = prefixLen + textLen;
    if (sideLen > architecture.max_text_len) {
      throw new InvalidInputError(`text side is ${sideLen} tokens, longer than the model's context of ${architecture.max_text_len}`);
    }
    if (textPositions.type !== 'int64' || textPositions.dims.length !== 1 || textPositions.dims[0] !== sideLen) {
      throw new InvalidInputError(`text_positions must be int64 [${sideLen}], got ${textPositions.type} [${textPositions.dims.join(',')}]`);
    }
    for (const id of textIds.data as BigInt64Array) {
      if (id < 0n || id >= BigInt(text.vocab.length)) {
        throw new InvalidInputError(`text_ids holds ${id}, outside the vocabulary of ${text.vocab.length}`);
      }
    }
    if (!Number.isInteger(stopAfterLayer) || stopAfterLayer < 0 || stopAfterLayer >= architecture.joint_layers) {
      throw new InvalidInputError(`stop_after_layer ${stopAfterLayer} is not a joint layer (0..${architecture.joint_layers - 1})`);
    }
    return new TextSideSession(pkg, textIds, textPositions, stopAfterLayer, prefixPixels, sideLen);
  }

  get rows(): number {
    return this.textIds.dims[0];
  }

  get textLen(): number {
    return this.textIds.dims[1];
  }

  /** Starts step `step`: returns layer 0's projections. */
  async beginStep(step: number): Promise<Projections> {
    if (step <= this.step) throw new PeerProtocolError(`step ${step} begun after step ${this.step}`);
    // Layer 0's input is the embedding of fixed text: the same every step.
    if (!this.embedded) {
      const text = (await this.pkg.run('und_embed', { text_ids: this.textIds })).hidden;
      this.embedded = this.prefixPixels
        ? concatTokens([(await this.pkg.run('und_image_embed', { pixels: this.prefixPixels })).hidden, text])
        : text;
    }
    this.step = step;
    this.stepsRun += 1;
    this.hidden = this.embedded;
    this.layer = 0;
    // ... and so are its projections: computed once per session.
    this.first ??= await this.projections(0);
    this.current = this.first;
    return this.current;
  }

  /** Merges layer `layer`'s remote partial and returns layer `layer + 1`'s projections. */
  async partial(step: number, layer: number, partial: PartialAttention): Promise<Projections> {
    // Layer 0's projections never change within a session, so a driver that holds them from the
    // first step may start a later step with its layer-0 partial: one round trip a step fewer.
    if (layer === 0 && step > this.step && this.first) await this.beginStep(step);
    if (step !== this.step) throw new PeerProtocolError(`partial for step ${step} during step ${this.step}`);
    if (layer !== this.layer) throw new PeerProtocolError(`partial for layer ${layer}, expected layer ${this.layer}`);
    if (layer >= this.stopAfterLayer) {
      throw new PeerProtocolError(`partial for layer ${layer}, but the text side stops after layer ${this.stopAfterLayer}`);
    }
    this.checkPartial(partial);
    const { q, k, v } = this.current!;
    const out = await this.pkg.run(`und_joint_out_${layer}`, {
      hidden: this.hidden!,
      q,
      k,
      v,
      remote_out: partial.out,
      remote_lse: partial.lse,
    });
    this.hidden = out.hidden_out;
    this.layer = layer + 1;
    this.current = await this.projections(this.layer);
    return this.current;
  }

  private async projections(layer: number): Promise<Projections> {
    const out = await this.pkg.run(`und_joint_qkv_${layer}`, { hidden: this.hidden!, positions: this.positions });
    return { q: out.q, k: out.k, v: out.v };
  }

  private checkPartial(partial: PartialAttention): void {
    const { heads, head_dim } = this.pkg.manifest.architecture;
    const rows = this.rows;
    const t = this.sideLen;
    const outProblem = tensorMismatch({ name: 'partial.out', dtype: 'float32', shape: [rows, heads, t, head_dim] }, partial.out.type, partial.out.dims);
    const lseProblem = tensorMismatch({ name: 'partial.lse', dtype: 'float32', shape: [rows, heads, t] }, partial.lse.type, partial.lse.dims);
    if (outProblem ?? lseProblem) throw new InvalidInputError(outProblem ?? lseProblem!);
  }
}

/** A text side in this process: the single-process runtime. */
export class LocalJointPeer implements JointPeer {
  constructor(private readonly pkg: ModelPackage) {}

  async open(request: OpenRequest): Promise<JointLink> {
    const session = TextSideSession.open(this.pkg, request);
    return {
      peer: 'local',
      beginStep: (step) => session.beginStep(step),
      partial: (step, layer, partial) => session.partial(step, layer, partial),
      close: async () => undefined,
    };
  }
}

/** int64 tensor from numbers. */
export function int64Tensor(values: readonly number[], dims: readonly number[]): Tensor {
  return new Tensor('int64', BigInt64Array.from(values, (v) => BigInt(v)), dims);
}

/** Global positions start..start+count-1 as int64 [count]. */
export function positionsTensor(start: number, count: number): Tensor {
  return int64Tensor(
    Array.from({ length: count }, (_, i) => start + i),
    [count],
  );
}
