/**
 * Training shards: samples written by this library and read by the Python trainer with numpy and json
 * only, so the world is defined in one place. Format (see libs/world/README.md):
 *   DIR/images.u8      uint8, shape (images, 64, 64, 3), row-major RGB, no header
 *   DIR/samples.jsonl  one JSON object per sample (SampleRecord), image fields index images.u8
 *   DIR/meta.json      ShardMeta
 * Sample i of a shard with seed S is generated from its own seed S + i, so any sample can be rebuilt
 * alone. Train seeds lie in [0, 1e9), eval seeds in [1e9, 2^53): the two splits never share a scene draw.
 */
import { closeSync, mkdirSync, openSync, readFileSync, writeFileSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { sampleEdit, type EditKind, type EditSpec } from './edits.js';
import { sampleGrounding } from './grounding.js';
import { quantiseLayout, layoutFromScene, type LayoutItem } from './plans.js';
import { CATEGORIES, luminanceValue, samplePrompt, sceneForPrompt, withLuminance, type Category, type PromptSpec } from './prompts.js';
import { sampleQuestion, type QuestionKind, type QuestionSpec } from './questions.js';
import { readImage } from './read.js';
import { addBlob, perturbForPrompt, reflect, verdictText } from './reflection.js';
import { render } from './render.js';
import { Rng } from './rng.js';
import { CANVAS, sameScene, type Box, type Scene } from './scene.js';
import { referableObjects } from './text.js';

export const SHARD_FORMAT = 'lavida-shapes-shard/v1';
/** First eval seed: train sample seeds are below it, eval sample seeds at or above it. */
export const EVAL_SEED_START = 1_000_000_000;
export const IMAGE_BYTES = CANVAS * CANVAS * 3;

export type Split = 'train' | 'eval';

/** The split a sample seed belongs to. */
export function splitOfSeed(seed: number): Split {
  return seed >= EVAL_SEED_START ? 'eval' : 'train';
}

export interface ShardMeta {
  format: typeof SHARD_FORMAT;
  split: Split;
  /** First sample seed; sample i used seed + i. */
  seed: number;
  /** Number of samples (lines of samples.jsonl). */
  count: number;
  /** Number of images in images.u8. */
  images: number;
  height: number;
  width: number;
  channels: number;
  /** Probability that a t2i text carries LUMINANCE micro-conditioning. */
  luminance_p: number;
}

export interface SampleRecord {
  id: number;
  seed: number;
  split: Split;
  /** Index in images.u8 of the scene's image. */
  image: number;
  scene: Scene;
  t2i: {
    category: Category;
    spec: PromptSpec;
    /** The bare prompt. */
    prompt: string;
    /** LUMINANCE value when the text carries it, else null. */
    luminance: number | null;
    /** The generation text: prompt, plus ` LUMINANCE : v;` when luminance is set. */
    text: string;
  };
  question: { kind: QuestionKind; spec: QuestionSpec; text: string; answer: string };
  grounding: { ref: string; object: number; box: Box; bins: Box };
  edit: { kind: EditKind; spec: EditSpec; text: string; target_image: number; target_scene: Scene };
  /** The plan for t2i.prompt: the scene's layout (which satisfies the prompt), in reading order. */
  plan: { prompt: string; layout: (LayoutItem & { bins: Box })[] };
  reflection: {
    /** Index in images.u8 of the judged image (the scene's own image when perturbation is "none"). */
    image: number;
    prompt: string;
    spec: PromptSpec;
    matches: boolean;
    reason: string;
    /** `correct` or `incorrect because {reason}`. */
    text: string;
    /** none | move | add | remove | change | replace | random | blob (an irregular blob drawn on the scene's image). */
    perturbation: string;
  };
}

export interface SampleOptions {
  /** Probability of LUMINANCE micro-conditioning on the t2i text (default 0.5). */
  luminanceP?: number;
}

/**
 * One sample from its seed: the record with image indices local to the sample (0 = the scene, then
 * the edit target, then a perturbed reflection image if any) and those images.
 */
export function makeSample(sampleSeed: number, options: SampleOptions = {}): { record: SampleRecord; images: Uint8Array[] } {
  const rng = new Rng(sampleSeed);
  const category = rng.pick(CATEGORIES);
  const prompt = samplePrompt(rng, category);
  // Every task needs an object with a referring expression, and every image must read back exactly.
  const scene = sceneForPrompt(rng, prompt.spec, { accept: (s) => referableObjects(s).length > 0 && readsBack(s) });
  const images = [render(scene)];
  const luminance = rng.chance(options.luminanceP ?? 0.5) ? luminanceValue(scene.background) : null;
  const question = sampleQuestion(rng, scene);
  const grounding = sampleGrounding(rng, scene);
  if (grounding === undefined) throw new Error('unreachable: scene has a referable object');
  let edit = sampleEdit(rng, scene);
  for (let t = 0; t < 20 && (edit === undefined || !readsBack(edit.target)); t++) edit = sampleEdit(rng, scene);
  if (edit === undefined || !readsBack(edit.target)) throw new Error(`seed ${sampleSeed}: no edit reads back`);
  images.push(render(edit.target));

  let reflectionImage = 0;
  let perturbation = 'none';
  const draw = rng.nextFloat();
  if (draw >= 0.5) {
    let rgb: Uint8Array;
    if (draw < 0.9) {
      const perturbed = perturbForPrompt(rng, prompt.spec, scene);
      perturbation = perturbed.how;
      rgb = render(perturbed.scene);
    } else {
      perturbation = 'blob';
      rgb = addBlob(rng, render(scene));
    }
    reflectionImage = images.length;
    images.push(rgb);
  }
  const verdict = reflect(prompt.spec, readImage(images[reflectionImage]));

  const record: SampleRecord = {
    id: 0,
    seed: sampleSeed,
    split: splitOfSeed(sampleSeed),
    image: 0,
    scene,
    t2i: {
      category,
      spec: prompt.spec,
      prompt: prompt.text,
      luminance,
      text: luminance === null ? prompt.text : withLuminance(prompt.text, scene.background),
    },
    question: { kind: question.spec.kind, spec: question.spec, text: question.text, answer: question.answer },
    grounding,
    edit: { kind: edit.spec.kind, spec: edit.spec, text: edit.text, target_image: 1, target_scene: edit.target },
    plan: { prompt: prompt.text, layout: quantiseLayout(layoutFromScene(scene)) },
    reflection: {
      image: reflectionImage,
      prompt: prompt.text,
      spec: prompt.spec,
      matches: verdict.matches,
      reason: verdict.reason,
      text: verdictText(verdict),
      perturbation,
    },
  };
  return { record, images };
}

/** Whether the scene's render reads back as exactly the scene (guards the training data against reader misses). */
function readsBack(scene: Scene): boolean {
  const read = readImage(render(scene));
  return read.clean && sameScene(read.scene, scene);
}

export interface ShardOptions extends SampleOptions {
  /** Output directory (created if missing). */
  out: string;
  /** First sample seed (default: 0 for train, 1e9 for eval). */
  seed?: number;
  count: number;
  /** Split the seeds must lie in (default: the split of `seed`). */
  split?: Split;
}

/**
 * Writes a shard of `count` samples (seeds seed .. seed+count-1) to `out`: images.u8, samples.jsonl
 * and meta.json. Throws when the seeds leave the split's range.
 */
export function writeShard(options: ShardOptions): ShardMeta {
  const count = options.count;
  if (!Number.isSafeInteger(count) || count < 1) throw new RangeError(`count must be a positive integer, got ${count}`);
  const seed = options.seed ?? (options.split === 'eval' ? EVAL_SEED_START : 0);
  const split = options.split ?? splitOfSeed(seed);
  const last = seed + count - 1;
  if (!Number.isSafeInteger(seed) || seed < 0 || !Number.isSafeInteger(last)) throw new RangeError(`bad seed ${seed}`);
  if (splitOfSeed(seed) !== split || splitOfSeed(last) !== split)
    throw new RangeError(`seeds ${seed}..${last} leave the ${split} range (train < ${EVAL_SEED_START} <= eval)`);
  const luminanceP = options.luminanceP ?? 0.5;

  mkdirSync(options.out, { recursive: true });
  const imagesFd = openSync(join(options.out, 'images.u8'), 'w');
  const samplesFd = openSync(join(options.out, 'samples.jsonl'), 'w');
  let images = 0;
  try {
    for (let i = 0; i < count; i++) {
      const sample = makeSample(seed + i, { luminanceP });
      const base = images;
      for (const rgb of sample.images) writeSync(imagesFd, rgb);
      images += sample.images.length;
      const r = sample.record;
      r.id = i;
      r.image += base;
      r.edit.target_image += base;
      r.reflection.image += base;
      writeSync(samplesFd, `${JSON.stringify(r)}\n`);
    }
  } finally {
    closeSync(imagesFd);
    closeSync(samplesFd);
  }
  const meta: ShardMeta = {
    format: SHARD_FORMAT,
    split,
    seed,
    count,
    images,
    height: CANVAS,
    width: CANVAS,
    channels: 3,
    luminance_p: luminanceP,
  };
  writeFileSync(join(options.out, 'meta.json'), `${JSON.stringify(meta, null, 2)}\n`);
  return meta;
}

/** Reads a whole shard back (for tests and TypeScript consumers); `image(i)` views image i. */
export function readShard(dir: string): { meta: ShardMeta; samples: SampleRecord[]; images: Uint8Array; image: (i: number) => Uint8Array } {
  const meta = JSON.parse(readFileSync(join(dir, 'meta.json'), 'utf8')) as ShardMeta;
  if (meta.format !== SHARD_FORMAT) throw new Error(`unknown shard format ${String(meta.format)}`);
  const buf = readFileSync(join(dir, 'images.u8'));
  const images = new Uint8Array(buf.buffer, buf.byteOffset, buf.byteLength);
  if (images.length !== meta.images * IMAGE_BYTES)
    throw new Error(`images.u8 holds ${images.length} bytes, expected ${meta.images * IMAGE_BYTES}`);
  const samples = readFileSync(join(dir, 'samples.jsonl'), 'utf8')
    .split('\n')
    .filter((line) => line.length > 0)
    .map((line) => JSON.parse(line) as SampleRecord);
  if (samples.length !== meta.count) throw new Error(`samples.jsonl holds ${samples.length} samples, expected ${meta.count}`);
  const image = (i: number): Uint8Array => {
    if (!Number.isInteger(i) || i < 0 || i >= meta.images) throw new RangeError(`no image ${i}`);
    return images.subarray(i * IMAGE_BYTES, (i + 1) * IMAGE_BYTES);
  };
  return { meta, samples, images, image };
}
