import { CanceledError, InvalidInputError, type TextToImageRequest } from '@lavida/contracts';
import { int64Tensor, positionsTensor, type JointPeer } from './joint.js';
import { Tensor, type ModelPackage } from './package.js';
import { encodePng } from './png.js';
import { guide, Pcg32, sampleLogits, stratifiedOrder, unmaskSchedule } from './sampling.js';
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

/**
 * Text-to-image by masked diffusion on the image side (the generation branch), with the text side
 * reached through `peer` for the joint layers. Guidance rows (cond, uncond) are stacked so that one
 * exchange per joint layer and step carries them all.
 */
export async function textToImage(
  pkg: ModelPackage,
  peer: JointPeer,
  request: TextToImageRequest,
  options: RunOptions,
): Promise<TextToImageResult> {
  const { manifest } = pkg;
  const { architecture, image, sampling } = manifest;
  const tokenizer = new WordTokenizer(manifest.text);
  const text = conditioningText(request);
  const ids = tokenizer.encode(text);
  if (ids.length === 0) throw new InvalidInputError('prompt has no tokens');
  if (ids.length > architecture.max_text_len) {
    throw new InvalidInputError(`prompt is ${ids.length} tokens, longer than the model's context of ${architecture.max_text_len}`);
  }
  const guidance = request.guidance ?? sampling.guidance;
  const temperature = request.temperature ?? sampling.temperature;
  const [gridRows, gridCols] = image.grid;
  const imageTokens = gridRows * gridCols;
  const schedule = unmaskSchedule(imageTokens, request.steps ?? sampling.steps, sampling.shift);
  const order = stratifiedOrder(gridRows, gridCols, sampling.order_seed);
  const rng = new Pcg32(request.seed);

  // Row 0 is conditional; row 1 (when guiding) has every text token masked.
  const rows = guidance > 0 ? 2 : 1;
  const textRows = guidance > 0 ? [...ids, ...ids.map(() => tokenizer.special.mask)] : ids;
  const textIds = int64Tensor(textRows, [rows, ids.length]);
  const imagePositions = positionsTensor(ids.length, imageTokens);
  const tokens = new Array<number>(imageTokens).fill(image.mask_id);
  const lastJoint = architecture.joint_layers - 1;

  const link = await peer.open(
    { sessionId: options.sessionId, textIds, textPositions: positionsTensor(0, ids.length), stopAfterLayer: lastJoint },
    options.signal,
  );
  try {
    let cursor = 0;
    for (let step = 0; step < schedule.length; step++) {
      if (options.signal?.aborted) throw new CanceledError('canceled');
      const imageIds = int64Tensor(Array.from({ length: rows }, () => tokens).flat(), [rows, imageTokens]);
      let hidden = (await pkg.run('gen_embed', { image_ids: imageIds })).hidden;
      let qkv = await link.beginStep(step);
      for (let layer = 0; layer <= lastJoint; layer++) {
        const out = await pkg.run(`gen_joint_${layer}`, {
          hidden,
          positions: imagePositions,
          text_q: qkv.q,
          text_k: qkv.k,
          text_v: qkv.v,
        });
        hidden = out.hidden_out;
        // The text side stops after the last joint layer: its states never reach an image token again.
        if (layer < lastJoint) qkv = await link.partial(step, layer, { out: out.text_out, lse: out.text_lse });
      }
      const logits = (await pkg.run('gen_tail', { hidden, positions: imagePositions })).logits.data as Float32Array;
      const k = image.codebook_size;
      for (const index of order.slice(cursor, cursor + schedule[step])) {
        const cond = logits.subarray(index * k, (index + 1) * k);
        const scores = rows === 2 ? guide(cond, logits.subarray((imageTokens + index) * k, (imageTokens + index + 1) * k), guidance) : cond;
        tokens[index] = sampleLogits(scores, temperature, rng);
      }
      cursor += schedule[step];
      await options.onStep?.(step + 1, schedule.length);
    }
  } finally {
    await link.close();
  }

  const pixels = await decodeTokens(pkg, tokens);
  return {
    tokens,
    pixels,
    width: image.width,
    height: image.height,
    png: encodePng(pixels, image.width, image.height),
    steps: schedule.length,
    text,
    peer: link.peer,
  };
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
