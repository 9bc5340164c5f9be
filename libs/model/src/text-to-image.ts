import { InvalidInputError, type TextToImageRequest } from '@lavida/contracts';
import { diffuse, type DiffusionResult } from './diffusion.js';
import { int64Tensor, type JointPeer } from './joint.js';
import type { Manifest } from './manifest.js';
import { Tensor, type ModelPackage } from './package.js';
import { encodePng } from './png.js';
import { guide } from './sampling.js';
import { editPlanTemplates, encodeTemplate, fill, layoutIds, taskTemplates, type LayoutItem } from './tasks.js';
import { WordTokenizer } from './tokenizer.js';

export type { TextToImageRequest };

export interface TextToImageResult {
  /** Image tokens in raster order. */
  tokens: number[];
  /** Packed RGB, height x width x 3. */
  pixels: Uint8Array;
  width: number;
  height: number;
  png: Buffer;
  steps: number;
  /** The text the prompt became (with micro-conditioning). */
  text: string;
  peer: string;
}

export interface RunOptions {
  sessionId: string;
  signal?: AbortSignal;
  onStep?: (step: number, steps: number) => void | Promise<void>;
}

/** The prompt with micro-conditioning appended as text, in the paper's `KEY : value;` form. */
export function conditioningText(request: Pick<TextToImageRequest, 'prompt' | 'luminance'>): string {
  const micro = request.luminance === undefined ? '' : ` LUMINANCE : ${request.luminance.toFixed(3)};`;
  return `${request.prompt}${micro}`;
}

/** An earlier attempt and its critique, for regeneration (the text side reads the attempt's image). */
export interface Feedback {
  verdict: string;
  /** Packed RGB of the earlier attempt. */
  pixels: Uint8Array;
}

/** A text-to-image request to the engine, optionally with a layout plan and the critique of an earlier attempt. */
export interface ImageRequest extends TextToImageRequest {
  plan?: readonly Pick<LayoutItem, 'label' | 'bins'>[];
  feedback?: Feedback;
}

/**
 * The text of a text-to-image request in the model's templates: the prompt (with
 * micro-conditioning), then the plan's layout and the feedback when given.
 */
export function imageRequestIds(pkg: ModelPackage, request: ImageRequest, tokenizer = new WordTokenizer(pkg.manifest.text)): number[] {
  const prompt = conditioningText(request);
  const values: Record<string, string | readonly number[]> = { prompt };
  let template = '{prompt}';
  if (request.plan?.length || request.feedback) {
    const t = taskTemplates(pkg.manifest);
    template = t.text_to_image;
    if (request.plan?.length) {
      for (const [i, item] of request.plan.entries()) checkLayoutItem(pkg, item, `plan[${i}]`);
      template = fill(t.text_to_image_plan, { prompt: template });
      values.layout = layoutIds(tokenizer, request.plan);
    }
    if (request.feedback) {
      if (typeof request.feedback.verdict !== 'string') throw new InvalidInputError('feedback.verdict must be a string');
      template = fill(t.feedback, { prompt: template });
      values.verdict = request.feedback.verdict;
    }
  }
  return encodeTemplate(tokenizer, template, values);
}

function checkLayoutItem(pkg: ModelPackage, item: Pick<LayoutItem, 'label' | 'bins'>, where: string): void {
  const max = pkg.manifest.text.loc_bins.count - 1;
  if (!item.label?.trim()) throw new InvalidInputError(`${where}.label must not be empty`);
  if (!Array.isArray(item.bins) || item.bins.length !== 4 || item.bins.some((b) => !Number.isInteger(b) || b < 0 || b > max)) {
    throw new InvalidInputError(`${where}.bins must be 4 integers 0..${max}`);
  }
}

/**
 * Text-to-image by masked diffusion on the image side (the generation branch), with the text side
 * reached through `peer` for the joint layers. Guidance rows (cond, uncond: every text token
 * masked, the feedback image kept) are stacked so that one exchange per joint layer and step
 * carries them all.
 */
export async function textToImage(pkg: ModelPackage, peer: JointPeer, request: ImageRequest, options: RunOptions): Promise<TextToImageResult> {
  const { text, textRows, sampler } = textToImageSpec(pkg, request);
  const result = await diffuse(
    pkg,
    peer,
    { textRows, prefixPixels: request.feedback?.pixels, combine: guidanceCombine(sampler.guidance), ...sampler },
    options,
  );
  return imageResult(pkg, result, text);
}

/** The sampler of a text-to-image request, the model's defaults filled in. */
export interface ImageSampler {
  seed: number;
  steps: number;
  /** 0: one row, no guidance; > 0: cond and uncond rows. */
  guidance: number;
  temperature: number;
  /** Correction sweeps after the last step (four steps each). */
  correctionSweeps: number;
  /** Guidance interval [lo, hi] of the schedule's steps (ignored for a regeneration from a critique: every step is guided). */
  cfgInterval: [number, number];
}

/**
 * A text-to-image request in the model's terms, checked: its text (with micro-conditioning), the
 * text rows (cond, and uncond with every text token masked when guided) and the sampler.
 */
export function textToImageSpec(
  pkg: ModelPackage,
  request: ImageRequest,
): { text: string; textRows: number[][]; sampler: ImageSampler } {
  const { manifest } = pkg;
  const { sampling } = manifest;
  const tokenizer = new WordTokenizer(manifest.text);
  const text = conditioningText(request);
  const ids = imageRequestIds(pkg, request, tokenizer);
  if (ids.length === 0) throw new InvalidInputError('prompt has no tokens');
  if (request.feedback) checkPixels(pkg, request.feedback.pixels, 'feedback image');
  const guidance = request.guidance ?? modelGuidance(sampling, request.plan?.length ? 'plan' : request.feedback ? 'feedback' : 'plain');
  const textRows = guidance > 0 ? [ids, ids.map(() => tokenizer.special.mask)] : [ids];
  return {
    text,
    textRows,
    sampler: {
      seed: request.seed,
      steps: request.steps ?? sampling.steps,
      guidance,
      temperature: request.temperature ?? sampling.temperature,
      correctionSweeps: request.correctionSweeps ?? sampling.correction_sweeps ?? 0,
      cfgInterval: request.cfgInterval ?? modelCfgInterval(sampling),
    },
  };
}

/**
 * The model's guidance for an image whose request names none: `plan_guidance` for one drawn with a plan,
 * `feedback_guidance` for one regenerated from a critique (a plan wins when both are given), else `guidance`.
 */
export function modelGuidance(sampling: Manifest['sampling'], image: 'plain' | 'plan' | 'feedback'): number {
  const own = image === 'plan' ? sampling.plan_guidance : image === 'feedback' ? sampling.feedback_guidance : undefined;
  return own ?? sampling.guidance;
}

/** The model's guidance interval (`sampling.cfg_interval`; absent: [0, 1], every step guided). */
export function modelCfgInterval(sampling: Manifest['sampling']): [number, number] {
  return sampling.cfg_interval ?? [0, 1];
}

/** How text-to-image combines its rows' logits: `(1 + g) cond - g uncond`, or the one row as it is. */
export function guidanceCombine(guidance: number): (rows: readonly Float32Array[]) => ArrayLike<number> {
  return guidance > 0 ? ([c, u]) => guide(c, u, guidance) : ([c]) => c;
}

/** An editing request: the instruction, the source image, and the sampler settings. */
export interface EditRequest {
  instruction: string;
  /** Packed RGB of the source image, of the model's size. */
  pixels: Uint8Array;
  seed: number;
  steps?: number;
  /** Text guidance scale (instruction against none); default the manifest's `sampling.edit_guidance`, else `guidance`. */
  guidance?: number;
  /** Image guidance scale (source image against none); 0 leaves out the third row. */
  imageGuidance?: number;
  /** Default the manifest's `sampling.edit_temperature`, else `temperature` (0: argmax). */
  temperature?: number;
  /** Default the manifest's `sampling.correction_sweeps` (0: none). */
  correctionSweeps?: number;
  /**
   * The edit's region (UnderstandingEngine.planEdit, or the caller's): edits with the `edit_plan` template; the
   * unconditional rows mask it with the instruction. A model without that template rejects it.
   */
  plan?: readonly Pick<LayoutItem, 'label' | 'bins'>[];
}

/**
 * Editing: the instruction (and with a plan, the edit's region as layout text) on the text side, the source image's codes as a condition grid before
 * the output grid on the generation branch. Guidance over stacked rows: cond (instruction, image),
 * text-unconditional (masked instruction, image) and, with an image scale, unconditional (masked
 * instruction, masked condition): s = c + g_t (c - u_t) + g_i (u_t - u), which is
 * (1 + g_t) c - g_t u_t with g_i = 0.
 */
export async function editImage(pkg: ModelPackage, peer: JointPeer, request: EditRequest, options: RunOptions): Promise<TextToImageResult> {
  const { manifest } = pkg;
  const { image, sampling } = manifest;
  if (image.condition_offset === undefined) throw new InvalidInputError(`model ${manifest.name} does not edit images (no condition grid)`);
  if (!request.instruction.trim()) throw new InvalidInputError('instruction must not be empty');
  checkPixels(pkg, request.pixels, 'image');
  const tokenizer = new WordTokenizer(manifest.text);
  const templates = taskTemplates(manifest);
  let ids: number[];
  if (request.plan?.length) {
    const et = editPlanTemplates(templates);
    if (et === undefined) throw new InvalidInputError(`model ${manifest.name}@${manifest.version} does not edit with a plan (no edit_plan template)`);
    for (const [i, item] of request.plan.entries()) checkLayoutItem(pkg, item, `plan[${i}]`);
    ids = encodeTemplate(tokenizer, et.editPlan, { instruction: request.instruction, layout: layoutIds(tokenizer, request.plan) });
  } else {
    ids = encodeTemplate(tokenizer, templates.edit, { instruction: request.instruction });
  }
  if (ids.length === 0) throw new InvalidInputError('instruction has no tokens');
  const codes = await encodeImage(pkg, request.pixels);
  const condition = codes.map((c) => c + image.condition_offset!);
  const g = request.guidance ?? sampling.edit_guidance ?? sampling.guidance;
  const gi = request.imageGuidance ?? 0;
  if (gi < 0 || g < 0) throw new InvalidInputError('guidance scales must not be negative');
  const masked = ids.map(() => tokenizer.special.mask);
  let spec: Pick<import('./diffusion.js').DiffusionSpec, 'textRows' | 'conditionRows' | 'combine'>;
  if (gi > 0) {
    spec = {
      textRows: [ids, masked, masked],
      conditionRows: [condition, condition, condition.map(() => image.mask_id)],
      combine: ([c, ut, u]) => {
        const out = new Float64Array(c.length);
        for (let i = 0; i < c.length; i++) out[i] = (1 + g) * c[i] - g * ut[i] + gi * (ut[i] - u[i]);
        return out;
      },
    };
  } else if (g > 0) {
    spec = { textRows: [ids, masked], conditionRows: [condition, condition], combine: ([c, u]) => guide(c, u, g) };
  } else {
    spec = { textRows: [ids], conditionRows: [condition], combine: ([c]) => c };
  }
  const result = await diffuse(
    pkg,
    peer,
    {
      ...spec,
      seed: request.seed,
      steps: request.steps ?? sampling.steps,
      temperature: request.temperature ?? sampling.edit_temperature ?? sampling.temperature,
      correctionSweeps: request.correctionSweeps ?? sampling.correction_sweeps ?? 0,
      // An edit guides every step: the interval is not the request's to set (ImageDiffusion ignores it here).
      cfgInterval: modelCfgInterval(sampling),
    },
    options,
  );
  return imageResult(pkg, result, request.instruction);
}

/** The sampled tokens as an image: VQ-decoded pixels and PNG. */
export async function imageResult(pkg: ModelPackage, result: DiffusionResult, text: string): Promise<TextToImageResult> {
  const { width, height } = pkg.manifest.image;
  const pixels = await decodeTokens(pkg, result.tokens);
  return { tokens: result.tokens, pixels, width, height, png: encodePng(pixels, width, height), steps: result.steps, text, peer: result.peer };
}

export function checkPixels(pkg: ModelPackage, pixels: Uint8Array, what: string): void {
  const { width, height, channels } = pkg.manifest.image;
  if (!(pixels instanceof Uint8Array) || pixels.length !== width * height * channels) {
    throw new InvalidInputError(`${what} must be ${width}x${height} RGB (${width * height * channels} bytes), got ${pixels?.length ?? 0} bytes`);
  }
}

/** VQ-decodes one image's tokens to packed RGB. */
export async function decodeTokens(pkg: ModelPackage, tokens: readonly number[]): Promise<Uint8Array> {
  const [rows, cols] = pkg.manifest.image.grid;
  const out = await pkg.run('vq_decode', { image_ids: int64Tensor(tokens, [1, rows, cols]) });
  return out.pixels.data as Uint8Array;
}

/** VQ-encodes one packed RGB image to tokens. */
export async function encodeImage(pkg: ModelPackage, rgb: Uint8Array): Promise<number[]> {
  const { width, height } = pkg.manifest.image;
  if (rgb.length !== width * height * 3) throw new InvalidInputError(`image must be ${width}x${height} RGB`);
  const out = await pkg.run('vq_encode', { pixels: new Tensor('uint8', rgb, [1, height, width, 3]) });
  return Array.from(out.image_ids.data as BigInt64Array, Number);
}
