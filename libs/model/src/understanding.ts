import { CanceledError, InvalidInputError } from '@lavida/contracts';
import type { JointPeer } from './joint.js';
import type { ModelPackage, Tensor } from './package.js';
import { textToImage, type TextToImageResult } from './text-to-image.js';
import { answerWords, binsToBox, detokenize, editPlanTemplates, fill, parseLayout, stripMicro, taskTemplates, type LayoutItem } from './tasks.js';
import { decodeBox, logSoftmax, type BoxPrior } from './box-prior.js';
import { decodeSlots, TextSideRunner } from './text-decoding.js';
import { WordTokenizer } from './tokenizer.js';

/** A packed RGB image of the model's size (height x width x 3 bytes). */
export type Pixels = Uint8Array;

export interface TextTaskOptions {
  /** Keep the prompt's keys and values after the first forward (faster, approximate; see decodeSlots). */
  promptCache?: boolean;
  signal?: AbortSignal;
  onStep?: (step: number, steps: number) => void | Promise<void>;
}

export interface AnswerResult {
  text: string;
  /** The decoded answer slot, raw ids. */
  ids: number[];
  forwards: number;
}

export interface GroundResult {
  /** One box per reference, x1, y1, x2, y2 in pixels. */
  boxes: [number, number, number, number][];
  bins: [number, number, number, number][];
  forwards: number;
}

export interface PlanResult {
  layout: LayoutItem[];
  ids: number[];
  forwards: number;
}

export type RespondResult =
  | { kind: 'image'; token: number; imageTokens: number; forwards: number }
  | { kind: 'text'; token: number; text: string; forwards: number };

/**
 * The text tasks of the understanding branch: answers and descriptions, reflection, planning and
 * grounding, decoded by masked diffusion over answer slots (LLaDA low-confidence remasking).
 */
export class UnderstandingEngine {
  readonly tokenizer: WordTokenizer;
  private readonly runner: TextSideRunner;

  /** @param options.imageCacheSize images whose semantic tokens are kept between calls (default 16, 0 = none). */
  constructor(
    readonly pkg: ModelPackage,
    options: { imageCacheSize?: number } = {},
  ) {
    this.tokenizer = new WordTokenizer(pkg.manifest.text);
    this.runner = new TextSideRunner(pkg, options.imageCacheSize);
  }

  /** Image encodings run so far (semantic image tokens not found in the cache). */
  get imageEncodes(): number {
    return this.runner.imageEncodes;
  }

  private get templates() {
    return taskTemplates(this.pkg.manifest);
  }

  private encode(text: string, what: string): number[] {
    const ids = this.tokenizer.encode(text);
    if (ids.length === 0) throw new InvalidInputError(`${what} has no tokens`);
    return ids;
  }

  /** Answers a question about an image (or describes it): `answer_len.und` slots, `per_step.und` (default 2) a step. */
  async understand(pixels: Pixels, question: string, options: TextTaskOptions & { perStep?: number } = {}): Promise<AnswerResult> {
    if (!question.trim()) throw new InvalidInputError('question must not be empty');
    const t = this.templates;
    const before = this.runner.forwards;
    const head = this.encode(fill(t.understand, { question }), 'question');
    const prefix = await this.runner.imageTokens(pixels, 1);
    const [ids] = await decodeSlots(this.runner, [head], { length: t.answer_len.und, perStep: options.perStep ?? t.per_step?.und ?? 2, eosBias: t.eos_bias?.und, ...options }, prefix);
    return { text: detokenize(answerWords(this.tokenizer, ids)), ids, forwards: this.runner.forwards - before };
  }

  /** The model's verdict on an image for a prompt: `correct` or a reason. */
  async reflect(pixels: Pixels, prompt: string, options: TextTaskOptions & { perStep?: number } = {}): Promise<AnswerResult> {
    if (!prompt.trim()) throw new InvalidInputError('prompt must not be empty');
    const t = this.templates;
    const before = this.runner.forwards;
    const head = this.encode(fill(t.reflect, { prompt: stripMicro(prompt) }), 'prompt');
    const prefix = await this.runner.imageTokens(pixels, 1);
    const [ids] = await decodeSlots(this.runner, [head], { length: t.answer_len.reflect, perStep: options.perStep ?? t.per_step?.reflect ?? 2, eosBias: t.eos_bias?.reflect, ...options }, prefix);
    return { text: detokenize(answerWords(this.tokenizer, ids)), ids, forwards: this.runner.forwards - before };
  }

  /**
   * A layout plan for a prompt: boxes with labels, `answer_len.plan` slots, `per_step.plan` (default 4) a step.
   * With `tasks.box_prior.plans`, each box is then re-decoded under the prior (`boxPrior: false`: as decoded).
   */
  async plan(prompt: string, options: TextTaskOptions & { perStep?: number; eosBias?: number; boxPrior?: boolean } = {}): Promise<PlanResult> {
    if (!prompt.trim()) throw new InvalidInputError('prompt must not be empty');
    const t = this.templates;
    const before = this.runner.forwards;
    const head = this.encode(fill(t.plan, { prompt: stripMicro(prompt) }), 'prompt');
    let [ids] = await decodeSlots(this.runner, [head], { length: t.answer_len.plan, perStep: options.perStep ?? t.per_step?.plan ?? 4, eosBias: t.eos_bias?.plan, ...options });
    if (t.box_prior?.plans && options.boxPrior !== false) ids = await this.redecodePlanBoxes(head, ids, t.box_prior, options.signal);
    return { layout: parseLayout(this.tokenizer, ids, this.pkg.manifest), ids, forwards: this.runner.forwards - before };
  }

  /**
   * Editing with a plan, its first step (the published code's `create_plan_edit`): the region of the image an
   * instruction changes, as layout items (the object it adds, removes or changes), from the source image and
   * the `plan_edit` template; `answer_len.plan_edit` slots, `per_step.plan_edit` (default 1) a step, boxes
   * re-decoded under the box prior as plans are. An InvalidInputError for a model without the templates.
   */
  async planEdit(
    pixels: Pixels,
    instruction: string,
    options: TextTaskOptions & { perStep?: number; boxPrior?: boolean } = {},
  ): Promise<PlanResult> {
    if (!instruction.trim()) throw new InvalidInputError('instruction must not be empty');
    const t = this.templates;
    const et = editPlanTemplates(t);
    if (et === undefined) throw new InvalidInputError(`model ${this.pkg.manifest.name}@${this.pkg.manifest.version} does not plan edits (no plan_edit / edit_plan templates)`);
    const before = this.runner.forwards;
    const head = this.encode(fill(et.planEdit, { instruction }), 'instruction');
    const prefix = await this.runner.imageTokens(pixels, 1);
    let [ids] = await decodeSlots(
      this.runner,
      [head],
      { length: et.answerLen, perStep: options.perStep ?? t.per_step?.plan_edit ?? 1, eosBias: t.eos_bias?.plan_edit, ...options },
      prefix,
    );
    if (t.box_prior?.plans && options.boxPrior !== false) ids = await this.redecodePlanBoxes(head, ids, t.box_prior, options.signal, prefix);
    return { layout: parseLayout(this.tokenizer, ids, this.pkg.manifest), ids, forwards: this.runner.forwards - before };
  }

  /**
   * Each `<loc> b b b b </loc>` of a decoded plan (before its `[eos]`), in order, masked again and decoded
   * jointly under the box prior from one forward with the rest of the plan (and the image `prefix` of an
   * edit's plan): the slots of one box are fixed in different steps of the plan's decoding, so its width and
   * height may come from different objects. The reference sampler's `redecode_plan_boxes`.
   */
  private async redecodePlanBoxes(
    head: readonly number[],
    decoded: readonly number[],
    prior: BoxPrior,
    signal?: AbortSignal,
    prefix?: Tensor,
  ): Promise<number[]> {
    const sp = this.tokenizer.special;
    const { first_id: first, count } = this.tokenizer.locBins;
    const isLoc = (id: number) => id >= first && id < first + count;
    const ids = decoded.slice();
    const eos = ids.indexOf(sp.eos);
    const end = eos >= 0 ? eos : ids.length;
    for (let k = 0; k < end; k++) {
      if (ids[k] !== sp.loc_begin || k + 5 >= end || ids[k + 5] !== sp.loc_end || !ids.slice(k + 1, k + 5).every(isLoc)) continue;
      if (signal?.aborted) throw new CanceledError('canceled');
      const row = [...head, ...ids.slice(0, k + 1), sp.mask, sp.mask, sp.mask, sp.mask, ...ids.slice(k + 5)];
      const out = await this.runner.logits([row], prefix);
      const at = (prefix?.dims[1] ?? 0) + head.length + k + 1;
      const slot = (j: number) => logSoftmax(out.data, (at + j) * out.vocab + first, count);
      decodeBox([slot(0), slot(1), slot(2), slot(3)], prior).forEach((b, j) => (ids[k + 1 + j] = first + b));
    }
    return ids;
  }

  /**
   * Boxes for referring expressions: `<loc>` + 4 coordinate slots + `</loc>` per reference, decoded
   * in `steps` forwards (1 = all four coordinates at once). References of one token length share
   * their forwards (decoded in parallel as rows). A package with `tasks.box_prior` decodes them under it
   * (groundUnderPrior; `boxPrior: false`: each slot's argmax, the most confident first).
   */
  async ground(pixels: Pixels, refs: readonly string[], options: TextTaskOptions & { steps?: number; boxPrior?: boolean } = {}): Promise<GroundResult> {
    if (refs.length === 0) throw new InvalidInputError('refs must name at least one object');
    const steps = options.steps ?? 1;
    if (!Number.isInteger(steps) || steps < 1 || steps > 4) throw new InvalidInputError(`steps must be an integer 1..4, got ${steps}`);
    const t = this.templates;
    const sp = this.tokenizer.special;
    const before = this.runner.forwards;
    const heads = refs.map((ref, i) => {
      if (!ref.trim()) throw new InvalidInputError(`refs[${i}] must not be empty`);
      return [...this.encode(fill(t.ground, { ref }), `refs[${i}]`), sp.loc_begin];
    });
    const groups = new Map<number, number[]>();
    heads.forEach((h, i) => groups.set(h.length, [...(groups.get(h.length) ?? []), i]));
    const bins = new Array<[number, number, number, number]>(refs.length);
    const { first_id: first, count } = this.tokenizer.locBins;
    const prior = options.boxPrior !== false ? t.box_prior : undefined;
    for (const members of groups.values()) {
      const prefix = await this.runner.imageTokens(pixels, members.length);
      if (prior) {
        const fixed = await this.groundUnderPrior(
          members.map((i) => heads[i]),
          prefix,
          prior,
          steps,
          options,
        );
        members.forEach((i, row) => (bins[i] = fixed[row]));
        continue;
      }
      const slots = await decodeSlots(
        this.runner,
        members.map((i) => heads[i]),
        { length: 4, perStep: Math.ceil(4 / steps), tail: [sp.loc_end], allowed: { first, count }, signal: options.signal, onStep: options.onStep, promptCache: options.promptCache },
        prefix,
      );
      members.forEach((i, j) => (bins[i] = slots[j].map((id) => id - first) as [number, number, number, number]));
    }
    return { bins, boxes: bins.map((b) => binsToBox(b, this.pkg.manifest)), forwards: this.runner.forwards - before };
  }

  /**
   * The 4 coordinate slots after each head decoded under the box prior in `steps` forwards: each forward,
   * the best box under the prior given the slots fixed so far (a fixed slot's log-probability is 0 at its
   * bin), then the ceil(4 / steps) free slots whose bin in that box is the most probable are fixed (ties
   * to the earlier slot). One step: the joint box. The reference sampler's `ground_under_prior`.
   */
  private async groundUnderPrior(
    heads: readonly (readonly number[])[],
    prefix: Tensor,
    prior: BoxPrior,
    steps: number,
    options: TextTaskOptions,
  ): Promise<[number, number, number, number][]> {
    const sp = this.tokenizer.special;
    const { first_id: first, count } = this.tokenizer.locBins;
    const perStep = Math.ceil(4 / steps);
    const forwards = Math.ceil(4 / perStep); // steps 3 takes 2 forwards of 2 slots, as decodeSlots does
    const fixed = heads.map(() => [-1, -1, -1, -1]);
    for (let step = 0; fixed.some((f) => f.includes(-1)); step++) {
      if (options.signal?.aborted) throw new CanceledError('canceled');
      const out = await this.runner.logits(
        heads.map((h, b) => [...h, ...fixed[b].map((f) => (f < 0 ? sp.mask : first + f)), sp.loc_end]),
        prefix,
      );
      heads.forEach((head, b) => {
        const at = prefix.dims[1] + head.length;
        const logp = [0, 1, 2, 3].map((k) => {
          if (fixed[b][k] < 0) return logSoftmax(out.data, (b * out.length + at + k) * out.vocab + first, count);
          const l = new Float64Array(count).fill(-Infinity);
          l[fixed[b][k]] = 0;
          return l;
        }) as [Float64Array, Float64Array, Float64Array, Float64Array];
        const box = decodeBox(logp, prior);
        const free = [0, 1, 2, 3].filter((k) => fixed[b][k] < 0).sort((x, y) => logp[y][box[y]] - logp[x][box[x]] || x - y);
        for (const k of free.slice(0, perStep)) fixed[b][k] = box[k];
      });
      await options.onStep?.(step + 1, forwards);
    }
    return fixed as [number, number, number, number][];
  }

  /**
   * Which modality answers a prompt: one response slot after the prompt. `[exp]` means an image
   * (modality-aware masking): the caller expands it into the grid's image tokens on the generation
   * branch; anything else is a text answer.
   */
  async respond(prompt: string): Promise<RespondResult> {
    const sp = this.tokenizer.special;
    const before = this.runner.forwards;
    const ids = this.encode(prompt, 'prompt');
    const [[token]] = await decodeSlots(this.runner, [ids], { length: 1, perStep: 1 });
    const forwards = this.runner.forwards - before;
    if (token === sp.exp) {
      const [rows, cols] = this.pkg.manifest.image.grid;
      return { kind: 'image', token, imageTokens: rows * cols, forwards };
    }
    return { kind: 'text', token, text: detokenize(answerWords(this.tokenizer, [token])), forwards };
  }
}

/**
 * Interleaved answering: the understanding branch decodes one response slot; `[exp]` expands into
 * the grid's image tokens, generated by masked diffusion on the generation branch (through `peer`)
 * with the prompt as its text; anything else is the text answer.
 */
export async function respondInterleaved(
  engine: UnderstandingEngine,
  generator: { pkg: ModelPackage; peer: JointPeer },
  request: { prompt: string; seed: number },
  options: { sessionId: string; signal?: AbortSignal },
): Promise<{ kind: 'text'; text: string } | { kind: 'image'; image: TextToImageResult }> {
  const decision = await engine.respond(request.prompt);
  if (decision.kind === 'text') return { kind: 'text', text: decision.text };
  const image = await textToImage(generator.pkg, generator.peer, { prompt: request.prompt, seed: request.seed }, options);
  if (image.tokens.length !== decision.imageTokens) throw new Error(`expanded ${decision.imageTokens} image slots, generated ${image.tokens.length}`);
  return { kind: 'image', image };
}
