/**
 * Text-to-image prompts: the six GenEval-style categories, their pass rules, scenes that satisfy (or
 * break) them, LUMINANCE micro-conditioning, and the prompt-blind baseline.
 */
import type { ReadResult } from './read.js';
import type { Rng } from './rng.js';
import {
  BACKGROUND_MAX,
  BACKGROUND_MIN,
  COLOURS,
  RELATIONS,
  SHAPES,
  generateScene,
  inRelation,
  matchesConstraint,
  type Colour,
  type GenerateOptions,
  type ObjectConstraint,
  type Relation,
  type Scene,
  type SceneObject,
  type Shape,
} from './scene.js';
import { isColour, isShape, numberWord, parseNumberWord, plural, withArticle } from './text.js';

export const CATEGORIES = ['single_object', 'two_object', 'counting', 'colors', 'position', 'color_attr'] as const;
export type Category = (typeof CATEGORIES)[number];

/** A coloured shape, as named in colors and color_attr prompts. */
export interface ColouredShape {
  colour: Colour;
  shape: Shape;
}

/** The structured form of a prompt; `promptText` writes it, `parsePrompt` reads it back. */
export type PromptSpec =
  | { category: 'single_object'; shape: Shape }
  | { category: 'two_object'; shapes: [Shape, Shape] }
  | { category: 'counting'; shape: Shape; count: 2 | 3 | 4 }
  | { category: 'colors'; colour: Colour; shape: Shape }
  | { category: 'position'; shapes: [Shape, Shape]; relation: Relation }
  | { category: 'color_attr'; objects: [ColouredShape, ColouredShape] };

export interface Prompt {
  text: string;
  spec: PromptSpec;
}

/** The prompt's text: `a circle`, `a circle and a square`, `three squares`, `an orange circle`, ... */
export function promptText(spec: PromptSpec): string {
  switch (spec.category) {
    case 'single_object':
      return withArticle(spec.shape);
    case 'two_object':
      return `${withArticle(spec.shapes[0])} and ${withArticle(spec.shapes[1])}`;
    case 'counting':
      return `${numberWord(spec.count)} ${plural(spec.shape)}`;
    case 'colors':
      return withArticle(`${spec.colour} ${spec.shape}`);
    case 'position':
      return `${withArticle(spec.shapes[0])} ${spec.relation} ${withArticle(spec.shapes[1])}`;
    case 'color_attr':
      return spec.objects.map((o) => withArticle(`${o.colour} ${o.shape}`)).join(' and ');
  }
}

/** Reads a kind phrase "a {shape}" or "a {colour} {shape}" (with its correct article). */
function parseArticlePhrase(words: string[]): { colour?: Colour; shape: Shape } | undefined {
  if (words.length === 2 && words[0] === 'a' && isShape(words[1])) return { shape: words[1] };
  if (words.length === 3 && isColour(words[1]) && isShape(words[2]) && words[0] === withArticle(words[1]).split(' ')[0])
    return { colour: words[1], shape: words[2] };
  return undefined;
}

/**
 * Parses a prompt written by `promptText` (optionally followed by micro-conditioning, which is ignored
 * here; see `parseMicroConditioning`). Undefined when the text is not a prompt of the six forms.
 */
export function parsePrompt(text: string): PromptSpec | undefined {
  const base = parseMicroConditioning(text).prompt;
  const words = base.toLowerCase().trim().split(/\s+/);
  if (words.length === 2 && parseNumberWord(words[0]) !== undefined) {
    const count = parseNumberWord(words[0]) as number;
    const shape = words[1].replace(/s$/, '');
    if (count >= 2 && count <= 4 && isShape(shape) && words[1] === plural(shape))
      return { category: 'counting', shape, count: count as 2 | 3 | 4 };
    return undefined;
  }
  const single = parseArticlePhrase(words);
  if (single !== undefined) {
    return single.colour === undefined
      ? { category: 'single_object', shape: single.shape }
      : { category: 'colors', colour: single.colour, shape: single.shape };
  }
  const and = words.indexOf('and');
  if (and > 0) {
    const a = parseArticlePhrase(words.slice(0, and));
    const b = parseArticlePhrase(words.slice(and + 1));
    if (a === undefined || b === undefined) return undefined;
    if (a.colour === undefined && b.colour === undefined) return { category: 'two_object', shapes: [a.shape, b.shape] };
    if (a.colour !== undefined && b.colour !== undefined)
      return {
        category: 'color_attr',
        objects: [
          { colour: a.colour, shape: a.shape },
          { colour: b.colour, shape: b.shape },
        ],
      };
    return undefined;
  }
  for (const relation of RELATIONS) {
    const rel = relation.split(' ');
    for (let i = 2; i + rel.length + 2 === words.length; i++) {
      if (words.slice(i, i + rel.length).join(' ') !== relation) continue;
      const a = parseArticlePhrase(words.slice(0, i));
      const b = parseArticlePhrase(words.slice(i + rel.length));
      if (a?.colour === undefined && b?.colour === undefined && a !== undefined && b !== undefined)
        return { category: 'position', shapes: [a.shape, b.shape], relation };
    }
  }
  return undefined;
}

/** Two different values from `items`, in random order. */
function pickTwoDifferent<T>(rng: Rng, items: readonly T[]): [T, T] {
  const [a, b] = rng.shuffle([...items]);
  return [a, b];
}

/**
 * Samples a prompt of the category (uniform over categories when omitted). Two-object forms always
 * name two different shapes; color_attr also two different colours, as in GenEval.
 */
export function samplePrompt(rng: Rng, category: Category = rng.pick(CATEGORIES)): Prompt {
  let spec: PromptSpec;
  switch (category) {
    case 'single_object':
      spec = { category, shape: rng.pick(SHAPES) };
      break;
    case 'two_object':
      spec = { category, shapes: pickTwoDifferent(rng, SHAPES) };
      break;
    case 'counting':
      spec = { category, shape: rng.pick(SHAPES), count: rng.pick([2, 3, 4] as const) };
      break;
    case 'colors':
      spec = { category, colour: rng.pick(COLOURS), shape: rng.pick(SHAPES) };
      break;
    case 'position':
      spec = { category, shapes: pickTwoDifferent(rng, SHAPES), relation: rng.pick(RELATIONS) };
      break;
    case 'color_attr': {
      const [s1, s2] = pickTwoDifferent(rng, SHAPES);
      const [c1, c2] = pickTwoDifferent(rng, COLOURS);
      spec = {
        category,
        objects: [
          { colour: c1, shape: s1 },
          { colour: c2, shape: s2 },
        ],
      };
      break;
    }
  }
  return { text: promptText(spec), spec };
}

/** Whether two different objects match the two constraints (one each). */
function distinctPair(objects: readonly SceneObject[], a: ObjectConstraint, b: ObjectConstraint, relation?: Relation): boolean {
  return objects.some((oa, i) =>
    objects.some(
      (ob, j) =>
        i !== j && matchesConstraint(oa, a) && matchesConstraint(ob, b) && (relation === undefined || inRelation(oa, ob, relation)),
    ),
  );
}

/**
 * Whether the scene satisfies every clause of the prompt (spec's pass rules). The scene is taken as
 * clean; for an image use `scorePrompt`, which also requires a clean read.
 * - single_object: at least one object of the shape;
 * - two_object: at least one of each shape (two different objects);
 * - counting: exactly that many objects of the shape;
 * - colors: at least one object of that colour and shape;
 * - position: some pair of different objects, of the first and second shape, in the relation;
 * - color_attr: two different objects, one of each described colour and shape.
 */
export function checkPrompt(spec: PromptSpec, scene: Scene): boolean {
  const objects = scene.objects;
  switch (spec.category) {
    case 'single_object':
      return objects.some((o) => o.shape === spec.shape);
    case 'two_object':
      return distinctPair(objects, { shape: spec.shapes[0] }, { shape: spec.shapes[1] });
    case 'counting':
      return objects.filter((o) => o.shape === spec.shape).length === spec.count;
    case 'colors':
      return objects.some((o) => o.shape === spec.shape && o.colour === spec.colour);
    case 'position':
      return distinctPair(objects, { shape: spec.shapes[0] }, { shape: spec.shapes[1] }, spec.relation);
    case 'color_attr':
      return distinctPair(objects, spec.objects[0], spec.objects[1]);
  }
}

/** The text-to-image score of a read image: clean, and every clause of the prompt satisfied. */
export function scorePrompt(spec: PromptSpec, read: ReadResult): boolean {
  return read.clean && checkPrompt(spec, read.scene);
}

/** The objects a scene for the prompt needs. */
export function requiredObjects(spec: PromptSpec): ObjectConstraint[] {
  switch (spec.category) {
    case 'single_object':
    case 'colors':
      return [spec];
    case 'two_object':
    case 'position':
      return spec.shapes.map((shape) => ({ shape }));
    case 'counting':
      return Array.from({ length: spec.count }, () => ({ shape: spec.shape }));
    case 'color_attr':
      return [...spec.objects];
  }
}

/**
 * A random legal scene that satisfies the prompt (for training data): the prompt's objects plus
 * random others, redrawn until `checkPrompt` holds (and `options.accept`, if given).
 */
export function sceneForPrompt(rng: Rng, spec: PromptSpec, options: Omit<GenerateOptions, 'required'> = {}): Scene {
  const extra = options.accept;
  return generateScene(rng, {
    maxTries: 20000,
    ...options,
    required: requiredObjects(spec),
    accept: (scene) => checkPrompt(spec, scene) && (extra === undefined || extra(scene)),
  });
}

/** A random legal scene that fails the prompt (a negative example). */
export function sceneAgainstPrompt(rng: Rng, spec: PromptSpec, options: Omit<GenerateOptions, 'accept'> = {}): Scene {
  return generateScene(rng, { maxTries: 20000, ...options, accept: (scene) => !checkPrompt(spec, scene) });
}

/** The micro-conditioning key for the background level. */
export const LUMINANCE_KEY = 'LUMINANCE';
/** Largest accepted |background / 255 - value| for a LUMINANCE-conditioned image. */
export const LUMINANCE_TOLERANCE = 0.03;

/** The background level as its micro-conditioning value, g / 255 to 3 decimals. */
export function luminanceValue(background: number): number {
  return Math.round((background / 255) * 1000) / 1000;
}

/** The micro-conditioning text for a background level: `LUMINANCE : 0.125;` (value g / 255, 3 decimals). */
export function luminanceText(background: number): string {
  return `${LUMINANCE_KEY} : ${luminanceValue(background).toFixed(3)};`;
}

/** The prompt with the background level's micro-conditioning appended after one space. */
export function withLuminance(prompt: string, background: number): string {
  return `${prompt} ${luminanceText(background)}`;
}

/** Splits a prompt from trailing `KEY : value;` micro-conditioning; returns the LUMINANCE value if present. */
export function parseMicroConditioning(text: string): { prompt: string; luminance?: number } {
  let prompt = text.trim();
  let luminance: number | undefined;
  const pattern = /\s*([A-Za-z_]+)\s*:\s*([^;]*?)\s*;\s*$/;
  for (let m = pattern.exec(prompt); m !== null; m = pattern.exec(prompt)) {
    if (m[1].toUpperCase() === LUMINANCE_KEY && luminance === undefined) luminance = Number(m[2]);
    prompt = prompt.slice(0, m.index).trim();
  }
  return luminance === undefined || Number.isNaN(luminance) ? { prompt } : { prompt, luminance };
}

/** Whether a read background level honours a LUMINANCE value: |g / 255 - value| <= 0.03. */
export function checkLuminance(value: number, background: number): boolean {
  // The epsilon keeps exact boundary cases from failing on float rounding.
  return Math.abs(background / 255 - value) <= LUMINANCE_TOLERANCE + 1e-9;
}

/** Background levels a LUMINANCE value allows, inclusive, clipped to the spec's range (empty when lo > hi). */
export function backgroundRangeFor(value: number): [number, number] {
  const lo = Math.max(BACKGROUND_MIN, Math.ceil((value - LUMINANCE_TOLERANCE) * 255 - 1e-6));
  const hi = Math.min(BACKGROUND_MAX, Math.floor((value + LUMINANCE_TOLERANCE) * 255 + 1e-6));
  return [lo, hi];
}

export interface BaselineResult {
  /** Pass rate per category. */
  perCategory: Record<Category, number>;
  /** Mean over categories. */
  overall: number;
}

/**
 * The prompt-blind baseline: random legal scenes (1 to 4 objects, uniform) scored against random
 * prompts they ignore, `samples` per category.
 */
export function promptBlindBaseline(rng: Rng, samples = 2000): BaselineResult {
  const perCategory = {} as Record<Category, number>;
  for (const category of CATEGORIES) {
    let pass = 0;
    for (let i = 0; i < samples; i++) {
      const { spec } = samplePrompt(rng, category);
      if (checkPrompt(spec, generateScene(rng))) pass++;
    }
    perCategory[category] = pass / samples;
  }
  const overall = CATEGORIES.reduce((sum, c) => sum + perCategory[c], 0) / CATEGORIES.length;
  return { perCategory, overall };
}
