import { CanceledError, InvalidInputError, ModelPackageError } from '@lavida/contracts';
import { int64Tensor, positionsTensor } from './joint.js';
import { createHash } from 'node:crypto';
import { Tensor, type ModelPackage } from './package.js';
import { concatTokens, emptyPartial, repeatImage } from './tensor-ops.js';
import { forwardFillingCache, forwardWithCache, hasLayeredTextTail, textTail, type PromptCache } from './text-layers.js';

/** Text-side logits of one forward: float32 [rows, length, vocab]. */
export interface TextLogits {
  data: Float32Array;
  rows: number;
  length: number;
  vocab: number;
}

/**
 * The understanding branch alone, in this process: text tasks (answers, plans, grounding,
 * reflection) never run the generation branch (elastic activation), so the joint layers merge an
 * empty remote partial. An image the text side reads enters as semantic image tokens
 * (`und_image_embed`) at positions 0..I-1, the text after them.
 */
export class TextSideRunner {
  /** Forwards run, for logs and benchmarks. */
  forwards = 0;
  /** Image encodings run (cache misses). */
  imageEncodes = 0;
  /** Semantic image tokens of recently read images, by content hash (least recently used first). */
  private readonly imageCache = new Map<string, Float32Array>();

  /** @param imageCacheSize images whose semantic tokens are kept (0 = none): stages of one pipeline read the same image. */
  constructor(
    readonly pkg: ModelPackage,
    private readonly imageCacheSize = 16,
  ) {}

  /** Semantic image tokens of one packed RGB image, repeated for `rows`: float32 [rows, I, d_u]. */
  async imageTokens(pixels: Uint8Array, rows: number): Promise<Tensor> {
    const { image, architecture } = this.pkg.manifest;
    if (!this.pkg.has('und_image_embed')) {
      throw new ModelPackageError(`model ${this.pkg.manifest.name} cannot read images on the text side (no und_image_embed segment)`);
    }
    if (pixels.length !== image.width * image.height * image.channels) {
      throw new InvalidInputError(`image must be ${image.width}x${image.height} with ${image.channels} channels, got ${pixels.length} bytes`);
    }
    const key = createHash('sha256').update(pixels).digest('base64');
    let one = this.imageCache.get(key);
    if (one) {
      this.imageCache.delete(key);
    } else {
      one = (await this.pkg.run('und_image_embed', { pixels: repeatImage(pixels, 1, image.height, image.width, image.channels) })).hidden.data as Float32Array;
      this.imageEncodes += 1;
    }
    if (this.imageCacheSize > 0) {
      this.imageCache.set(key, one);
      while (this.imageCache.size > this.imageCacheSize) this.imageCache.delete(this.imageCache.keys().next().value!);
    }
    const tokens = image.grid[0] * image.grid[1];
    const out = new Float32Array(rows * one.length);
    for (let r = 0; r < rows; r++) out.set(one, r * one.length);
    return new Tensor('float32', out, [rows, tokens, architecture.und_hidden]);
  }

  /** Checks text rows of one forward; returns their length. */
  private checkRows(rows: readonly (readonly number[])[], prefixLen: number): number {
    const { architecture, text } = this.pkg.manifest;
    const length = rows[0]?.length ?? 0;
    if (rows.length === 0 || length === 0) throw new InvalidInputError('no text to run');
    if (rows.some((r) => r.length !== length)) throw new InvalidInputError('text rows of one forward must have one length');
    const total = prefixLen + length;
    if (total > architecture.max_text_len) {
      throw new InvalidInputError(`text side is ${total} tokens (${prefixLen} image + ${length} text), longer than the model's context of ${architecture.max_text_len}`);
    }
    const vocab = text.vocab.length;
    for (const row of rows) {
      for (const id of row) if (!Number.isInteger(id) || id < 0 || id >= vocab) throw new InvalidInputError(`text id ${id} is outside the vocabulary of ${vocab}`);
    }
    return length;
  }

  private async embed(rows: readonly (readonly number[])[], prefix?: Tensor): Promise<Tensor> {
    const hidden = (await this.pkg.run('und_embed', { text_ids: int64Tensor(rows.flat(), [rows.length, rows[0].length]) })).hidden;
    return prefix ? concatTokens([prefix, hidden]) : hidden;
  }

  /**
   * Logits of text rows of one length, after an optional image prefix (already embedded by
   * `imageTokens`, one row per text row).
   */
  async logits(rows: readonly (readonly number[])[], prefix?: Tensor): Promise<TextLogits> {
    const { architecture, text } = this.pkg.manifest;
    const prefixLen = prefix ? prefix.dims[1] : 0;
    const total = prefixLen + this.checkRows(rows, prefixLen);
    let hidden = await this.embed(rows, prefix);
    const positions = positionsTensor(0, total);
    const { heads, head_dim: headDim, joint_layers: joint } = architecture;
    const empty = emptyPartial(rows.length, heads, total, headDim);
    for (let layer = 0; layer < joint; layer++) {
      const { q, k, v } = await this.pkg.run(`und_joint_qkv_${layer}`, { hidden, positions });
      hidden = (await this.pkg.run(`und_joint_out_${layer}`, { hidden, q, k, v, remote_out: empty.out, remote_lse: empty.lse })).hidden_out;
    }
    const logits = await textTail(this.pkg, hidden, positions);
    this.forwards += 1;
    return { data: logits.data as Float32Array, rows: rows.length, length: total, vocab: text.vocab.length };
  }

  /**
   * Logits of rows = prompt (the first `keep` tokens after the prefix... counted with it) + active
   * tokens, keeping every layer's keys and values of the first `keep` tokens (prefix included).
   */
  async logitsFillingCache(rows: readonly (readonly number[])[], keep: number, prefix?: Tensor): Promise<TextLogits & { cache: PromptCache }> {
    const prefixLen = prefix ? prefix.dims[1] : 0;
    const total = prefixLen + this.checkRows(rows, prefixLen);
    const { logits, cache } = await forwardFillingCache(this.pkg, await this.embed(rows, prefix), positionsTensor(0, total), keep);
    this.forwards += 1;
    return { data: logits.data as Float32Array, rows: rows.length, length: total, vocab: this.pkg.manifest.text.vocab.length, cache };
  }

  /** Logits of active tokens at positions start.., attending over a prompt cache. */
  async logitsWithCache(rows: readonly (readonly number[])[], start: number, cache: PromptCache): Promise<TextLogits> {
    const length = this.checkRows(rows, start);
    const logits = await forwardWithCache(this.pkg, await this.embed(rows), positionsTensor(start, length), cache);
    this.forwards += 1;
    return { data: logits.data as Float32Array, rows: rows.length, length, vocab: this.pkg.manifest.text.vocab.length };
  }
}

/** How an answer slot is decoded. */
export interface SlotDecoding {
  /** Answer tokens (all `[mask]` to start) after each head. */
  length: number;
  /** Slots revealed per forward (LLaDA low-confidence remasking). */
  perStep: number;
  /** Tokens after the slot (e.g. `</loc>`). */
  tail?: readonly number[];
  /** Restricts the argmax to ids first..first+count-1 (e.g. the coordinate tokens). */
  allowed?: { first: number; count: number };
  /**
   * Added to the `[eos]` logit before the argmax and the confidence (not with `allowed`). A model
   * trained with its `[eos]` targets weighted w has them under-predicted by log w; -log w undoes it.
   */
  eosBias?: number;
  /**
   * Keep the prompt's (image and head) keys and values from the first forward and run later
   * forwards on the slots and tail only (needs the per-layer text tail). Approximate: the prompt's
   * states no longer see the revealed answer tokens.
   */
  promptCache?: boolean;
  signal?: AbortSignal;
  onStep?: (step: number, steps: number) => void | Promise<void>;
}

/**
 * Masked-diffusion decoding of an answer slot after each head (rows decoded in parallel, one
 * forward per step for all of them): every step, the argmax at every masked slot, keeping the
 * `perStep` most confident (softmax probability of the argmax, ties to the earlier slot). Without
 * `allowed`, a slot never decodes to `[mask]` or `[pad]`. Returns each row's slot ids.
 */
export async function decodeSlots(
  runner: TextSideRunner,
  heads: readonly (readonly number[])[],
  decoding: SlotDecoding,
  prefix?: Tensor,
): Promise<number[][]> {
  const special = runner.pkg.manifest.text.special_tokens;
  const { length, perStep, tail = [], allowed } = decoding;
  if (!Number.isInteger(perStep) || perStep < 1) throw new InvalidInputError(`tokens per step must be a positive integer, got ${perStep}`);
  const slots = heads.map(() => new Array<number>(length).fill(special.mask));
  const prefixLen = prefix ? prefix.dims[1] : 0;
  const steps = Math.ceil(length / perStep);
  const headLen = heads[0]?.length ?? 0;
  if (heads.some((h) => h.length !== headLen)) throw new InvalidInputError('heads decoded together must have one length');
  if (decoding.promptCache && !hasLayeredTextTail(runner.pkg)) {
    throw new ModelPackageError(`model ${runner.pkg.manifest.name} has no per-layer text tail (und_layer_* and und_head): no prompt cache`);
  }
  let cache: PromptCache | undefined;
  for (let step = 0; slots.some((s) => s.includes(special.mask)); step++) {
    if (decoding.signal?.aborted) throw new CanceledError('canceled');
    // `first`: the sequence index of slot 0 in the logits.
    let out: TextLogits;
    let first: number;
    if (!decoding.promptCache) {
      out = await runner.logits(
        heads.map((h, b) => [...h, ...slots[b], ...tail]),
        prefix,
      );
      first = prefixLen + headLen;
    } else if (!cache) {
      const filled = await runner.logitsFillingCache(
        heads.map((h, b) => [...h, ...slots[b], ...tail]),
        prefixLen + headLen,
        prefix,
      );
      cache = filled.cache;
      out = filled;
      first = prefixLen + headLen;
    } else {
      out = await runner.logitsWithCache(
        slots.map((s) => [...s, ...tail]),
        prefixLen + headLen,
        cache,
      );
      first = 0;
    }
    const { data, length: total, vocab } = out;
    const from = allowed ? allowed.first : 0;
    const to = allowed ? allowed.first + allowed.count : vocab;
    // Ids a slot never decodes to (none with `allowed`, which already restricts the range).
    const skipA = allowed ? -1 : special.mask;
    const skipB = allowed ? -1 : special.pad;
    const eos = !allowed && decoding.eosBias ? special.eos : -1;
    const eosBias = decoding.eosBias ?? 0;
    heads.forEach((head, b) => {
      const masked = slots[b].flatMap((id, i) => (id === special.mask ? [i] : []));
      const picks = masked.map((slot) => {
        const at = (b * total + first + slot) * vocab;
        let best = -1;
        let top = 0;
        for (let i = from; i < to; i++) {
          if (i === skipA || i === skipB) continue;
          const x = i === eos ? data[at + i] + eosBias : data[at + i];
          if (best < 0 || x > top) {
            best = i;
            top = x;
          }
        }
        // The softmax probability of the argmax, summed in id order.
        let sum = 0;
        for (let i = from; i < to; i++) {
          if (i === skipA || i === skipB) continue;
          sum += Math.exp((i === eos ? data[at + i] + eosBias : data[at + i]) - top);
        }
        return { slot, id: best, confidence: 1 / sum };
      });
      picks.sort((x, y) => y.confidence - x.confidence || x.slot - y.slot);
      for (const pick of picks.slice(0, perStep)) slots[b][pick.slot] = pick.id;
    });
    await decoding.onStep?.(step + 1, steps);
  }
  return slots;
}
