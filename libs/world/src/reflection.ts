/**
 * Reflection: judge whether an image matches its prompt, with a short reason, and score agreement
 * with the read-back check.
 *
 * Reason grammar (only words of the model's word-v1 vocabulary, so every reason tokenises):
 *   verdict  := "correct" | "incorrect because " reason
 *   reason   := "wrong objects in the image"            (the read is not a clean scene)
 *             | "missing " article [colour " "] shape    (a named object is absent)
 *             | "wrong count of " shape "s"             (counting)
 *             | "no " shape " is " relation " " article shape   (position: both present, never in relation)
 * The first failing clause, in prompt order, gives the reason.
 */
import { sampleEdit } from './edits.js';
import { checkPrompt, sceneAgainstPrompt, type PromptSpec } from './prompts.js';
import type { ReadResult } from './read.js';
import type { Rng } from './rng.js';
import {
  CANVAS,
  COLOURS,
  PALETTE,
  cloneScene,
  matchesConstraint,
  placeObject,
  type ObjectConstraint,
  type Scene,
  type Shape,
} from './scene.js';
import { normaliseText, plural, withArticle } from './text.js';

export interface Verdict {
  /** Whether the image satisfies the prompt. */
  matches: boolean;
  /** Why not (empty when it matches). */
  reason: string;
}

export const UNCLEAN_REASON = 'wrong objects in the image';

function missing(kind: ObjectConstraint & { shape: Shape }): string {
  return `missing ${withArticle(kind.colour === undefined ? kind.shape : `${kind.colour} ${kind.shape}`)}`;
}

/** The reason a two-object clause fails: the first kind absent, or the second when only one object matches both. */
function missingOfPair(scene: Scene, a: ObjectConstraint & { shape: Shape }, b: ObjectConstraint & { shape: Shape }): string {
  if (!scene.objects.some((o) => matchesConstraint(o, a))) return missing(a);
  return missing(b);
}

/**
 * The true verdict for an image (read back; must be clean) or a scene (taken as clean) against the
 * prompt, with its reason from the module's grammar.
 */
export function reflect(spec: PromptSpec, image: Scene | ReadResult): Verdict {
  if ('clean' in image && !image.clean) return { matches: false, reason: UNCLEAN_REASON };
  const scene = 'clean' in image ? image.scene : image;
  if (checkPrompt(spec, scene)) return { matches: true, reason: '' };
  let reason: string;
  switch (spec.category) {
    case 'single_object':
      reason = missing(spec);
      break;
    case 'colors':
      reason = missing(spec);
      break;
    case 'two_object':
      reason = missingOfPair(scene, { shape: spec.shapes[0] }, { shape: spec.shapes[1] });
      break;
    case 'counting':
      reason = `wrong count of ${plural(spec.shape)}`;
      break;
    case 'position': {
      const [a, b] = spec.shapes;
      const pairExists = checkPrompt({ category: 'two_object', shapes: [a, b] }, scene);
      reason = pairExists ? `no ${a} is ${spec.relation} ${withArticle(b)}` : missingOfPair(scene, { shape: a }, { shape: b });
      break;
    }
    case 'color_attr':
      reason = missingOfPair(scene, spec.objects[0], spec.objects[1]);
      break;
  }
  return { matches: false, reason };
}

/** The verdict as text: `correct` or `incorrect because {reason}`. */
export function verdictText(verdict: Verdict): string {
  return verdict.matches ? 'correct' : `incorrect because ${verdict.reason}`;
}

/** Parses `correct` / `incorrect because {reason}` (a bare `incorrect` has an empty reason); undefined otherwise. */
export function parseVerdict(text: string): Verdict | undefined {
  const t = normaliseText(text);
  if (t === 'correct') return { matches: true, reason: '' };
  if (t === 'incorrect') return { matches: false, reason: '' };
  const m = /^incorrect because (.+)$/.exec(t);
  return m === null ? undefined : { matches: false, reason: m[1] };
}

/** The reflection score: the predicted verdict agrees with the read-back check. */
export function reflectionAgreement(predicted: Verdict, truth: Verdict): boolean {
  return predicted.matches === truth.matches;
}

/** Stricter, for analysis: the verdict agrees and, when it does not match, the reason is the same too. */
export function reasonAgreement(predicted: Verdict, truth: Verdict): boolean {
  return predicted.matches === truth.matches && (truth.matches || normaliseText(predicted.reason) === normaliseText(truth.reason));
}

/**
 * A legal scene near `scene` that fails the prompt: a random edit (add, remove, change, replace) or a
 * move of one object, redrawn until the prompt fails; a random failing scene when no near miss is
 * found in `tries`. Returns the scene and how it was made.
 */
export function perturbForPrompt(rng: Rng, spec: PromptSpec, scene: Scene, tries = 50): { scene: Scene; how: string } {
  for (let t = 0; t < tries; t++) {
    let candidate: Scene | undefined;
    let how: string;
    if (rng.chance(0.25)) {
      how = 'move';
      candidate = cloneScene(scene);
      const i = rng.nextInt(candidate.objects.length);
      const [obj] = candidate.objects.splice(i, 1);
      const moved = placeObject(rng, obj, candidate.objects);
      if (moved === undefined) continue;
      candidate.objects.splice(i, 0, moved);
    } else {
      const edit = sampleEdit(rng, scene);
      if (edit === undefined) continue;
      how = edit.spec.kind;
      candidate = edit.target;
    }
    if (!checkPrompt(spec, candidate)) return { scene: candidate, how };
  }
  return { scene: sceneAgainstPrompt(rng, spec), how: 'random' };
}

/** Whether every pixel of the rectangle, and a 1 px ring around it, is grey (background, not a palette colour). */
function allGrey(rgb: Uint8Array, x0: number, y0: number, w: number, h: number): boolean {
  for (let y = Math.max(0, y0 - 1); y < Math.min(CANVAS, y0 + h + 1); y++) {
    for (let x = Math.max(0, x0 - 1); x < Math.min(CANVAS, x0 + w + 1); x++) {
      const p = (y * CANVAS + x) * 3;
      if (rgb[p] !== rgb[p + 1] || rgb[p] !== rgb[p + 2]) return false;
    }
  }
  return true;
}

/**
 * Draws a flat blob of a palette colour whose box is not a legal object box (too small, too big, or far
 * from square), in place, on free background where one is found (else anywhere): the image then reads
 * as not clean. Returns the image.
 */
export function addBlob(rng: Rng, rgb: Uint8Array): Uint8Array {
  let w = 0;
  let h = 0;
  let x0 = 0;
  let y0 = 0;
  for (let t = 0; t < 200; t++) {
    [w, h] = rng.pick<[number, number]>([
      [rng.int(4, 8), rng.int(4, 8)],
      [rng.int(25, 30), rng.int(25, 30)],
      [rng.int(8, 12), rng.int(17, 22)],
      [rng.int(17, 22), rng.int(8, 12)],
    ]);
    x0 = rng.int(1, CANVAS - 1 - w);
    y0 = rng.int(1, CANVAS - 1 - h);
    if (allGrey(rgb, x0, y0, w, h)) break;
  }
  const [r, g, b] = PALETTE[rng.pick(COLOURS)];
  for (let y = y0; y < y0 + h; y++) {
    for (let x = x0; x < x0 + w; x++) {
      const p = (y * CANVAS + x) * 3;
      rgb[p] = r;
      rgb[p + 1] = g;
      rgb[p + 2] = b;
    }
  }
  return rgb;
}
