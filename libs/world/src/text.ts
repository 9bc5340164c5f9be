/**
 * The Shapes world's words (spec section Text): lower case, "an" before orange and "a" otherwise,
 * plurals add "s", number words zero..four, and referring expressions.
 */
import {
  COLOURS,
  SHAPES,
  SIZES,
  matchesConstraint,
  type Colour,
  type ObjectConstraint,
  type Scene,
  type Shape,
  type Size,
} from './scene.js';

export const NUMBER_WORDS = ['zero', 'one', 'two', 'three', 'four'] as const;
export type NumberWord = (typeof NUMBER_WORDS)[number];

/** The number word for 0..4 ("zero" is for answers only). */
export function numberWord(n: number): NumberWord {
  const word = NUMBER_WORDS[n];
  if (!Number.isInteger(n) || word === undefined) throw new RangeError(`no number word for ${n}`);
  return word;
}

/** The number a number word stands for, or undefined. */
export function parseNumberWord(word: string): number | undefined {
  const n = (NUMBER_WORDS as readonly string[]).indexOf(word);
  return n < 0 ? undefined : n;
}

/** The indefinite article for the word that follows it: "an" before orange, "a" otherwise. */
export function article(nextWord: string): 'a' | 'an' {
  return nextWord === 'orange' ? 'an' : 'a';
}

/** The phrase with its indefinite article: "a red circle", "an orange square". */
export function withArticle(phrase: string): string {
  return `${article(phrase.split(' ')[0])} ${phrase}`;
}

/** The plural of a shape word: adds "s". */
export function plural(word: string): string {
  return `${word}s`;
}

/** "{size} {colour} {shape}" with the unset attributes left out, always in that order. */
export function kindPhrase(kind: ObjectConstraint & { shape: Shape }): string {
  return [kind.size, kind.colour, kind.shape].filter((w) => w !== undefined).join(' ');
}

/** Lower case, trimmed, single spaces, and no trailing "." or "?": the form exact-match scoring compares. */
export function normaliseText(text: string): string {
  return text
    .toLowerCase()
    .replace(/\s+/g, ' ')
    .trim()
    .replace(/\s*[.?]$/, '');
}

export function isColour(word: string): word is Colour {
  return (COLOURS as readonly string[]).includes(word);
}
export function isShape(word: string): word is Shape {
  return (SHAPES as readonly string[]).includes(word);
}
export function isSize(word: string): word is Size {
  return (SIZES as readonly string[]).includes(word);
}

/**
 * The spec's referring expression for object `index`: "the" + the fewest of (size, colour) that make
 * it unique in the scene, in the order size colour shape; where one word suffices colour is preferred:
 * "the circle", "the red circle", "the small circle", "the small red circle". Undefined when even the
 * full description matches another object too.
 */
export function referringExpression(scene: Scene, index: number): string | undefined {
  const target = scene.objects[index];
  if (target === undefined) throw new RangeError(`no object ${index}`);
  const candidates: ObjectConstraint[] = [
    { shape: target.shape },
    { shape: target.shape, colour: target.colour },
    { shape: target.shape, size: target.size },
    { shape: target.shape, size: target.size, colour: target.colour },
  ];
  for (const c of candidates) {
    if (scene.objects.filter((o) => matchesConstraint(o, c)).length === 1) return `the ${kindPhrase({ ...c, shape: target.shape })}`;
  }
  return undefined;
}

/**
 * Parses a referring expression: "the", then optional size and colour (either order accepted), then a
 * shape. Undefined when the text is not of that form.
 */
export function parseReferringExpression(text: string): (ObjectConstraint & { shape: Shape }) | undefined {
  const words = normaliseText(text).split(' ');
  if (words[0] !== 'the' || words.length < 2 || words.length > 4) return undefined;
  const shape = words[words.length - 1];
  if (!isShape(shape)) return undefined;
  const result: ObjectConstraint & { shape: Shape } = { shape };
  for (const word of words.slice(1, -1)) {
    if (isSize(word) && result.size === undefined) result.size = word;
    else if (isColour(word) && result.colour === undefined) result.colour = word;
    else return undefined;
  }
  return result;
}

/**
 * The index of the one object the expression refers to, or undefined when it matches none or several.
 * Any unique form is understood, not only the shortest.
 */
export function resolveReferringExpression(scene: Scene, text: string): number | undefined {
  const parsed = parseReferringExpression(text);
  if (parsed === undefined) return undefined;
  const hits = scene.objects.flatMap((o, i) => (matchesConstraint(o, parsed) ? [i] : []));
  return hits.length === 1 ? hits[0] : undefined;
}

/** Indices of the objects that have a referring expression (are unique in the scene). */
export function referableObjects(scene: Scene): number[] {
  return scene.objects.flatMap((_, i) => (referringExpression(scene, i) === undefined ? [] : [i]));
}
