import { CanceledError, InvalidInputError } from '@lavida/contracts';
import type { JointPeer } from './joint.js';
import type { ModelPackage } from './package.js';
import { textToImage, type TextToImageResult } from './text-to-image.js';
import { answerWords, binsToBox, detokenize, fill, parseLayout, stripMicro, taskTemplates, type LayoutItem } from './tasks.js';
import { decodeBox, logSoftmax } from './box-prior.js';
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

  /** A layout plan for a prompt: boxes with labels, `answer_len.plan` slots, `per_step.plan` (default 4) a step. */
  async plan(prompt: string, options: TextTaskOptions & { perStep?: number; eosBias?: number } = {}): Promise<PlanResult> {
    if (!prompt.trim()) throw new InvalidInputError('prompt must not be empty');
    const t = this.templates;
    const before = this.runner.forwards;
    const head = this.encode(fill(t.plan, { prompt: stripMicro(prompt) }), 'prompt');
    const [ids] = await decodeSlots(this.runner, [head], { length: t.answer_len.plan, perStep: options.perStep ?? t.per_step?.plan ?? 4, eosBias: t.eos_bias?.plan, ...options });
    return { layout: parseLayout(this.tokenizer, ids, this.pkg.manifest), ids, forwards: this.runner.forwards - before };
  }

  /**
   * Boxes for referring expressions: `<loc>` + 4 coordinate slots + `</loc>` per reference, decoded
   * in `steps` forwards (1 = all four coordinates at once). References of one token length share
   * their forwards (decoded in parallel as rows). In one step, a package with `tasks.box_prior` decodes
   * the four slots jointly under it (`boxPrior: false`: each slot's argmax, as in more steps).
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
    const prior = steps === 1 && options.boxPrior !== false ? t.box_prior : undefined;
    for (const members of groups.values()) {
      const prefix = await this.runner.imageTokens(pixels, members.length);
      if (prior) {
        if (options.signal?.aborted) throw new CanceledError('canceled');
        const out = await this.runner.logits(
          members.map((i) => [...heads[i], sp.mask, sp.mask, sp.mask, sp.mask, sp.loc_end]),
          prefix,
        );
        const start = prefix.dims[1] + heads[members[0]].length;
        members.forEach((i, row) => {
          const slot = (k: number) => logSoftmax(out.data, (row * out.length + start + k) * out.vocab + first, count);
          bins[i] = decodeBox([slot(0), slot(1), slot(2), slot(3)], prior);
        });
        await options.onStep?.(1, 1);
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
