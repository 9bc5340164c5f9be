/**
 * Understanding: the spec's six question forms, their exact answers, and the exact-match scorer.
 */
import type { Rng } from './rng.js';
import { COLOURS, SHAPES, canonicalOrder, matchesConstraint, type Colour, type Scene, type Shape } from './scene.js';
import {
  isColour,
  isShape,
  kindPhrase,
  normaliseText,
  numberWord,
  parseReferringExpression,
  plural,
  referableObjects,
  referringExpression,
  resolveReferringExpression,
  withArticle,
} from './text.js';

export const QUESTION_KINDS = ['count_shape', 'count_colour', 'colour_of', 'shape_of', 'exists', 'describe'] as const;
export type QuestionKind = (typeof QUESTION_KINDS)[number];

export type QuestionSpec =
  | { kind: 'count_shape'; shape: Shape }
  | { kind: 'count_colour'; colour: Colour }
  | { kind: 'colour_of'; ref: string }
  | { kind: 'shape_of'; ref: string }
  | { kind: 'exists'; colour: Colour; shape: Shape }
  | { kind: 'describe' };

export interface Question {
  spec: QuestionSpec;
  text: string;
  answer: string;
}

/** The question's text, e.g. `how many circles are there?`, `what colour is the small circle?`. */
export function questionText(spec: QuestionSpec): string {
  switch (spec.kind) {
    case 'count_shape':
      return `how many ${plural(spec.shape)} are there?`;
    case 'count_colour':
      return `how many ${spec.colour} objects are there?`;
    case 'colour_of':
      return `what colour is ${spec.ref}?`;
    case 'shape_of':
      return `what shape is ${spec.ref}?`;
    case 'exists':
      return `is there ${withArticle(`${spec.colour} ${spec.shape}`)}?`;
    case 'describe':
      return 'describe the image.';
  }
}

/** Parses a question of the six forms (case and spacing are forgiven); undefined otherwise. */
export function parseQuestion(text: string): QuestionSpec | undefined {
  const t = normaliseText(text);
  if (t === 'describe the image') return { kind: 'describe' };
  let m = /^how many (\w+)s are there$/.exec(t);
  if (m !== null && isShape(m[1])) return { kind: 'count_shape', shape: m[1] };
  m = /^how many (\w+) objects are there$/.exec(t);
  if (m !== null && isColour(m[1])) return { kind: 'count_colour', colour: m[1] };
  m = /^what (colour|shape) is (the .+)$/.exec(t);
  if (m !== null && parseReferringExpression(m[2]) !== undefined) return { kind: m[1] === 'colour' ? 'colour_of' : 'shape_of', ref: m[2] };
  m = /^is there (a|an) (\w+) (\w+)$/.exec(t);
  if (m !== null && isColour(m[2]) && isShape(m[3])) return { kind: 'exists', colour: m[2], shape: m[3] };
  return undefined;
}

/**
 * The description answer: every object as `{size} {colour} {shape}`, in reading order (box centre y,
 * then x: top to bottom, left to right), joined with ", ".
 */
export function describeScene(scene: Scene): string {
  return canonicalOrder(scene.objects)
    .map((o) => kindPhrase(o))
    .join(', ');
}

/**
 * The exact answer to the question about the scene: a number word (zero..four), a colour, a shape,
 * yes/no, or the description. Undefined when a referring expression does not pick out one object.
 */
export function answerQuestion(spec: QuestionSpec, scene: Scene): string | undefined {
  switch (spec.kind) {
    case 'count_shape':
      return numberWord(scene.objects.filter((o) => o.shape === spec.shape).length);
    case 'count_colour':
      return numberWord(scene.objects.filter((o) => o.colour === spec.colour).length);
    case 'colour_of':
    case 'shape_of': {
      const i = resolveReferringExpression(scene, spec.ref);
      if (i === undefined) return undefined;
      return spec.kind === 'colour_of' ? scene.objects[i].colour : scene.objects[i].shape;
    }
    case 'exists':
      return scene.objects.some((o) => matchesConstraint(o, spec)) ? 'yes' : 'no';
    case 'describe':
      return describeScene(scene);
  }
}

/** Exact-match scoring: equal after lower-casing, collapsing spaces and dropping a trailing "." or "?". */
export function scoreAnswer(predicted: string, expected: string): boolean {
  return normaliseText(predicted) === normaliseText(expected);
}

/**
 * Samples a question about the scene with its answer (kind uniform when omitted). Reference questions
 * pick among objects that have a referring expression, and fall back to another kind when none does;
 * `exists` asks about a present kind half the time.
 */
export function sampleQuestion(rng: Rng, scene: Scene, kind: QuestionKind = rng.pick(QUESTION_KINDS)): Question {
  let spec: QuestionSpec;
  switch (kind) {
    case 'count_shape':
      spec = { kind, shape: rng.pick(SHAPES) };
      break;
    case 'count_colour':
      spec = { kind, colour: rng.pick(COLOURS) };
      break;
    case 'colour_of':
    case 'shape_of': {
      const referable = referableObjects(scene);
      if (referable.length === 0)
        return sampleQuestion(rng, scene, rng.pick(['count_shape', 'count_colour', 'exists', 'describe'] as const));
      spec = { kind, ref: referringExpression(scene, rng.pick(referable)) as string };
      break;
    }
    case 'exists': {
      const present = rng.chance(0.5) && scene.objects.length > 0;
      const o = present ? rng.pick(scene.objects) : { colour: rng.pick(COLOURS), shape: rng.pick(SHAPES) };
      spec = { kind, colour: o.colour, shape: o.shape };
      break;
    }
    case 'describe':
      spec = { kind };
      break;
  }
  return { spec, text: questionText(spec), answer: answerQuestion(spec, scene) as string };
}
