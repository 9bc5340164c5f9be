/**
 * Editing: the four instruction forms, their expected results, and the edit-success check.
 */
import type { ReadResult } from './read.js';
import type { Rng } from './rng.js';
import {
  COLOURS,
  MAX_OBJECTS,
  SHAPES,
  SIZES,
  centreOf,
  cloneScene,
  placeObject,
  type Colour,
  type Scene,
  type SceneObject,
  type Shape,
} from './scene.js';
import {
  isColour,
  isShape,
  normaliseText,
  parseReferringExpression,
  referableObjects,
  referringExpression,
  resolveReferringExpression,
  withArticle,
} from './text.js';

export const EDIT_KINDS = ['add', 'remove', 'change', 'replace'] as const;
export type EditKind = (typeof EDIT_KINDS)[number];

export type EditSpec =
  | { kind: 'add'; colour: Colour; shape: Shape }
  | { kind: 'remove'; ref: string }
  | { kind: 'change'; ref: string; colour: Colour }
  | { kind: 'replace'; ref: string; colour: Colour; shape: Shape };

export interface Edit {
  spec: EditSpec;
  text: string;
  /** The expected scene after the edit. */
  target: Scene;
}

/** Largest per-axis centre shift, in pixels, of an object an edit keeps (or changes in place). */
export const EDIT_CENTRE_TOLERANCE_PX = 2;

/** The instruction: `add a {colour} {shape}`, `remove {ref}`, `change {ref} to {colour}`, `replace {ref} with a {colour} {shape}`. */
export function editText(spec: EditSpec): string {
  switch (spec.kind) {
    case 'add':
      return `add ${withArticle(`${spec.colour} ${spec.shape}`)}`;
    case 'remove':
      return `remove ${spec.ref}`;
    case 'change':
      return `change ${spec.ref} to ${spec.colour}`;
    case 'replace':
      return `replace ${spec.ref} with ${withArticle(`${spec.colour} ${spec.shape}`)}`;
  }
}

/** Parses an instruction of the four forms; undefined otherwise. */
export function parseEdit(text: string): EditSpec | undefined {
  const t = normaliseText(text);
  let m = /^add (a|an) (\w+) (\w+)$/.exec(t);
  if (m !== null && isColour(m[2]) && isShape(m[3])) return { kind: 'add', colour: m[2], shape: m[3] };
  m = /^remove (the .+)$/.exec(t);
  if (m !== null && parseReferringExpression(m[1]) !== undefined) return { kind: 'remove', ref: m[1] };
  m = /^change (the .+) to (\w+)$/.exec(t);
  if (m !== null && parseReferringExpression(m[1]) !== undefined && isColour(m[2])) return { kind: 'change', ref: m[1], colour: m[2] };
  m = /^replace (the .+) with (a|an) (\w+) (\w+)$/.exec(t);
  if (m !== null && parseReferringExpression(m[1]) !== undefined && isColour(m[3]) && isShape(m[4]))
    return { kind: 'replace', ref: m[1], colour: m[3], shape: m[4] };
  return undefined;
}

/**
 * The scene after the edit, or undefined when the edit does not apply (the reference picks out no
 * single object, no room to add, or removing the last object). Changed and replaced objects keep
 * their box (a replacement keeps the size); an added object gets a random size and legal position.
 */
export function applyEdit(rng: Rng, scene: Scene, spec: EditSpec): Scene | undefined {
  const out = cloneScene(scene);
  if (spec.kind === 'add') {
    if (scene.objects.length >= MAX_OBJECTS) return undefined;
    const obj = placeObject(rng, { colour: spec.colour, shape: spec.shape, size: rng.pick(SIZES) }, scene.objects);
    if (obj === undefined) return undefined;
    out.objects.push(obj);
    return out;
  }
  const i = resolveReferringExpression(scene, spec.ref);
  if (i === undefined) return undefined;
  switch (spec.kind) {
    case 'remove':
      // An empty canvas is not a clean scene, so the last object cannot be removed.
      if (scene.objects.length < 2) return undefined;
      out.objects.splice(i, 1);
      return out;
    case 'change':
      out.objects[i].colour = spec.colour;
      return out;
    case 'replace':
      out.objects[i].colour = spec.colour;
      out.objects[i].shape = spec.shape;
      return out;
  }
}

/**
 * Samples an applicable edit of the scene with its expected result (kind uniform among those that
 * apply when omitted). A change always picks a new colour and a replacement a new shape, so that every
 * edit is visible. Undefined when no edit of the requested kind applies.
 */
export function sampleEdit(rng: Rng, scene: Scene, kind?: EditKind): Edit | undefined {
  const kinds = kind === undefined ? rng.shuffle([...EDIT_KINDS]) : [kind];
  const referable = referableObjects(scene);
  for (const k of kinds) {
    let spec: EditSpec;
    if (k === 'add') {
      spec = { kind: k, colour: rng.pick(COLOURS), shape: rng.pick(SHAPES) };
    } else {
      if (referable.length === 0) continue;
      const i = rng.pick(referable);
      const ref = referringExpression(scene, i) as string;
      const obj = scene.objects[i];
      if (k === 'remove') spec = { kind: k, ref };
      else if (k === 'change') spec = { kind: k, ref, colour: rng.pick(COLOURS.filter((c) => c !== obj.colour)) };
      else spec = { kind: k, ref, colour: rng.pick(COLOURS), shape: rng.pick(SHAPES.filter((s) => s !== obj.shape)) };
    }
    const target = applyEdit(rng, scene, spec);
    if (target !== undefined) return { spec, text: editText(spec), target };
  }
  return undefined;
}

/** Whether `b`'s centre lies within 2 px of `a`'s on each axis. */
function centreNear(a: SceneObject, b: SceneObject): boolean {
  const [ax, ay] = centreOf(a);
  const [bx, by] = centreOf(b);
  return Math.abs(ax - bx) <= EDIT_CENTRE_TOLERANCE_PX && Math.abs(ay - by) <= EDIT_CENTRE_TOLERANCE_PX;
}

/** Whether `after` is `before` kept: same shape, colour and size, centre within 2 px (per axis). */
export function keptObject(before: SceneObject, after: SceneObject): boolean {
  return before.shape === after.shape && before.colour === after.colour && before.size === after.size && centreNear(before, after);
}

/**
 * Edit success (spec): the change is made and every other object keeps shape, colour, size and centre
 * within 2 px (per axis), with nothing else added or lost. `after` is a read image (which must be
 * clean) or a scene. The background is not judged.
 * - add: exactly one new object, of the colour and shape (any size, anywhere);
 * - remove: the referred object is gone;
 * - change: the referred object has the new colour and keeps shape, size and centre;
 * - replace: in its place (centre within 2 px) an object of the new colour and shape (any size).
 *
 * @throws RangeError when the instruction's reference does not pick out one object of `before`.
 */
export function checkEdit(before: Scene, spec: EditSpec, after: Scene | ReadResult): boolean {
  let scene: Scene;
  if ('clean' in after) {
    if (!after.clean) return false;
    scene = after.scene;
  } else {
    scene = after;
  }
  const target = spec.kind === 'add' ? undefined : resolveReferringExpression(before, spec.ref);
  if (spec.kind !== 'add' && target === undefined) throw new RangeError(`"${spec.ref}" does not pick out one object of the scene`);
  const remaining = [...scene.objects];
  for (let i = 0; i < before.objects.length; i++) {
    if (i === target) continue;
    const j = remaining.findIndex((o) => keptObject(before.objects[i], o));
    if (j < 0) return false;
    remaining.splice(j, 1);
  }
  if (spec.kind === 'remove') return remaining.length === 0;
  if (remaining.length !== 1) return false;
  const made = remaining[0];
  switch (spec.kind) {
    case 'add':
      return made.colour === spec.colour && made.shape === spec.shape;
    case 'change': {
      const old = before.objects[target as number];
      return made.colour === spec.colour && made.shape === old.shape && made.size === old.size && centreNear(old, made);
    }
    case 'replace':
      return made.colour === spec.colour && made.shape === spec.shape && centreNear(before.objects[target as number], made);
  }
}
