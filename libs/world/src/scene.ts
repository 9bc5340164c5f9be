/**
 * The Shapes world scene model (shared/spec/shapes-world.md, sections Canvas, Objects, Relations) and
 * the seeded scene generator.
 *
 * Coordinates: an object's (x, y) is the top-left pixel of its square bounding box; the box covers
 * pixels x .. x+side-1 and y .. y+side-1. Boxes are written (x1, y1, x2, y2) = (x, y, x+side, y+side)
 * in continuous pixel coordinates (pixel i spans [i, i+1)), so a box's width is x2 - x1 = side and its
 * centre is (x + side/2, y + side/2).
 */
import type { Rng } from './rng.js';

/** Canvas width and height in pixels. */
export const CANVAS = 64;
/** Background grey level range, inclusive. */
export const BACKGROUND_MIN = 8;
export const BACKGROUND_MAX = 64;
/** Objects per scene, inclusive. */
export const MIN_OBJECTS = 1;
export const MAX_OBJECTS = 4;
/** Least number of background pixels between two bounding boxes. */
export const MIN_GAP = 2;
/** Least number of background pixels between a bounding box and the canvas edge. */
export const MIN_MARGIN = 1;

export const COLOURS = ['red', 'green', 'blue', 'yellow', 'purple', 'orange'] as const;
export type Colour = (typeof COLOURS)[number];

/** The palette, exact RGB per the spec. */
export const PALETTE: Readonly<Record<Colour, readonly [number, number, number]>> = {
  red: [230, 40, 40],
  green: [40, 190, 70],
  blue: [50, 90, 230],
  yellow: [240, 220, 50],
  purple: [160, 70, 210],
  orange: [250, 140, 30],
};

export const SHAPES = ['circle', 'square', 'triangle'] as const;
export type Shape = (typeof SHAPES)[number];

export const SIZES = ['small', 'large'] as const;
export type Size = (typeof SIZES)[number];

/** Bounding box side in pixels per size. */
export const SIZE_PX: Readonly<Record<Size, number>> = { small: 12, large: 20 };

export interface SceneObject {
  shape: Shape;
  colour: Colour;
  size: Size;
  /** Left column of the bounding box. */
  x: number;
  /** Top row of the bounding box. */
  y: number;
}

export interface Scene {
  /** Grey level g of the flat background (R = G = B = g), an integer in [8, 64]. */
  background: number;
  objects: SceneObject[];
}

/** (x1, y1, x2, y2) in continuous pixel coordinates; x2 and y2 are exclusive pixel edges. */
export type Box = [number, number, number, number];

/** A partial object description: what a prompt or instruction fixes about an object. */
export interface ObjectConstraint {
  shape?: Shape;
  colour?: Colour;
  size?: Size;
}

export const RELATIONS = ['left of', 'right of', 'above', 'below'] as const;
export type Relation = (typeof RELATIONS)[number];

/** Bounding box side of an object in pixels. */
export function sideOf(obj: Pick<SceneObject, 'size'>): number {
  return SIZE_PX[obj.size];
}

/** The object's bounding box (x1, y1, x2, y2). */
export function boxOf(obj: SceneObject): Box {
  const s = sideOf(obj);
  return [obj.x, obj.y, obj.x + s, obj.y + s];
}

/** The object's box centre (cx, cy) in pixels. */
export function centreOf(obj: SceneObject): [number, number] {
  const s = sideOf(obj);
  return [obj.x + s / 2, obj.y + s / 2];
}

/**
 * Whether A is in `relation` to B, per the spec: dx = cx_B - cx_A, dy = cy_B - cy_A (y grows down);
 * left of: dx > 4 and dx > |dy|; right of: -dx > 4 and -dx > |dy|; above: dy > 4 and dy > |dx|;
 * below: -dy > 4 and -dy > |dx|.
 */
export function inRelation(a: SceneObject, b: SceneObject, relation: Relation): boolean {
  const [ax, ay] = centreOf(a);
  const [bx, by] = centreOf(b);
  const dx = bx - ax;
  const dy = by - ay;
  switch (relation) {
    case 'left of':
      return dx > 4 && dx > Math.abs(dy);
    case 'right of':
      return -dx > 4 && -dx > Math.abs(dy);
    case 'above':
      return dy > 4 && dy > Math.abs(dx);
    case 'below':
      return -dy > 4 && -dy > Math.abs(dx);
  }
}

/** Every relation A holds to B (zero or one in practice: the four are mutually exclusive). */
export function relationsBetween(a: SceneObject, b: SceneObject): Relation[] {
  return RELATIONS.filter((r) => inRelation(a, b, r));
}

/** Whether the object has every attribute the constraint fixes. */
export function matchesConstraint(obj: ObjectConstraint, constraint: ObjectConstraint): boolean {
  return (
    (constraint.shape === undefined || obj.shape === constraint.shape) &&
    (constraint.colour === undefined || obj.colour === constraint.colour) &&
    (constraint.size === undefined || obj.size === constraint.size)
  );
}

/**
 * Background pixels between two boxes along the axis where they are furthest apart (the Chebyshev
 * gap); negative or zero when the boxes touch or overlap.
 */
export function boxGap(a: Box, b: Box): number {
  const gx = Math.max(a[0] - b[2], b[0] - a[2]);
  const gy = Math.max(a[1] - b[3], b[1] - a[3]);
  return Math.max(gx, gy);
}

/** Whether the object lies on the canvas with at least MIN_MARGIN background pixels to every edge. */
export function withinCanvas(obj: SceneObject): boolean {
  const [x1, y1, x2, y2] = boxOf(obj);
  return (
    Number.isInteger(obj.x) &&
    Number.isInteger(obj.y) &&
    x1 >= MIN_MARGIN &&
    y1 >= MIN_MARGIN &&
    x2 <= CANVAS - MIN_MARGIN &&
    y2 <= CANVAS - MIN_MARGIN
  );
}

/** Whether `obj` may join `others`: on the canvas with margin, and MIN_GAP px from every other box. */
export function canPlace(obj: SceneObject, others: readonly SceneObject[]): boolean {
  if (!withinCanvas(obj)) return false;
  const box = boxOf(obj);
  return others.every((o) => boxGap(box, boxOf(o)) >= MIN_GAP);
}

/** Every way the scene breaks the spec's canvas rules (empty when the scene is legal). */
export function sceneProblems(scene: Scene): string[] {
  const problems: string[] = [];
  const g = scene.background;
  if (!Number.isInteger(g) || g < BACKGROUND_MIN || g > BACKGROUND_MAX) problems.push(`background ${g} outside [8, 64]`);
  const n = scene.objects.length;
  if (n < MIN_OBJECTS || n > MAX_OBJECTS) problems.push(`${n} objects, expected 1 to 4`);
  scene.objects.forEach((obj, i) => {
    if (!SHAPES.includes(obj.shape) || !COLOURS.includes(obj.colour) || !SIZES.includes(obj.size))
      problems.push(`object ${i} has an unknown attribute`);
    if (!withinCanvas(obj)) problems.push(`object ${i} is not 1 px inside the canvas`);
    for (let j = 0; j < i; j++) {
      if (boxGap(boxOf(obj), boxOf(scene.objects[j])) < MIN_GAP) problems.push(`objects ${j} and ${i} are closer than 2 px`);
    }
  });
  return problems;
}

/**
 * The canonical reading order: by box centre y, then centre x (top to bottom, left to right); shape,
 * colour and size break ties only in illegal, overlapping scenes.
 */
export function compareReadingOrder(a: SceneObject, b: SceneObject): number {
  const [ax, ay] = centreOf(a);
  const [bx, by] = centreOf(b);
  return (
    ay - by ||
    ax - bx ||
    SHAPES.indexOf(a.shape) - SHAPES.indexOf(b.shape) ||
    COLOURS.indexOf(a.colour) - COLOURS.indexOf(b.colour) ||
    SIZES.indexOf(a.size) - SIZES.indexOf(b.size)
  );
}

/** The objects sorted in the canonical reading order (a new array). */
export function canonicalOrder<T extends SceneObject>(objects: readonly T[]): T[] {
  return [...objects].sort(compareReadingOrder);
}

/** Whether two scenes are identical up to object order (background, and every object's attributes and box). */
export function sameScene(a: Scene, b: Scene): boolean {
  if (a.background !== b.background || a.objects.length !== b.objects.length) return false;
  const oa = canonicalOrder(a.objects);
  const ob = canonicalOrder(b.objects);
  return oa.every(
    (o, i) => o.shape === ob[i].shape && o.colour === ob[i].colour && o.size === ob[i].size && o.x === ob[i].x && o.y === ob[i].y,
  );
}

/** A deep copy of the scene. */
export function cloneScene(scene: Scene): Scene {
  return { background: scene.background, objects: scene.objects.map((o) => ({ ...o })) };
}

/** Fills a constraint's free attributes at random. */
export function randomKind(rng: Rng, constraint: ObjectConstraint = {}): Required<ObjectConstraint> {
  return {
    shape: constraint.shape ?? rng.pick(SHAPES),
    colour: constraint.colour ?? rng.pick(COLOURS),
    size: constraint.size ?? rng.pick(SIZES),
  };
}

/**
 * Places an object of the given kind at a uniformly random legal position among `others`, or returns
 * undefined when `tries` random positions all fail.
 */
export function placeObject(
  rng: Rng,
  kind: Required<ObjectConstraint>,
  others: readonly SceneObject[],
  tries = 200,
): SceneObject | undefined {
  const maxXY = CANVAS - MIN_MARGIN - SIZE_PX[kind.size];
  for (let t = 0; t < tries; t++) {
    const obj: SceneObject = { ...kind, x: rng.int(MIN_MARGIN, maxXY), y: rng.int(MIN_MARGIN, maxXY) };
    if (canPlace(obj, others)) return obj;
  }
  return undefined;
}

export interface GenerateOptions {
  /** Total number of objects (1 to 4); default uniform in [max(1, required.length), 4]. */
  count?: number;
  /** Objects the scene must contain (each constraint is met by its own object). */
  required?: readonly ObjectConstraint[];
  /** Fixed background grey; default uniform in [8, 64]. */
  background?: number;
  /** Whole-scene condition; scenes failing it are rejected and redrawn. */
  accept?: (scene: Scene) => boolean;
  /** Scene draws before giving up (default 2000). */
  maxTries?: number;
}

/**
 * Generates a legal random scene by rejection sampling: 1 to 4 non-overlapping objects, at least 2 px
 * between bounding boxes and 1 px from the border, background grey in [8, 64]. Required objects get
 * their fixed attributes; everything else is uniform. Object order in the result is random.
 *
 * @throws when no scene meeting the options is found within `maxTries` draws.
 */
export function generateScene(rng: Rng, options: GenerateOptions = {}): Scene {
  const required = options.required ?? [];
  if (required.length > MAX_OBJECTS) throw new RangeError(`${required.length} required objects, at most 4 fit`);
  if (options.count !== undefined && (options.count < Math.max(MIN_OBJECTS, required.length) || options.count > MAX_OBJECTS))
    throw new RangeError(`count ${options.count} incompatible with ${required.length} required objects`);
  const maxTries = options.maxTries ?? 2000;
  for (let attempt = 0; attempt < maxTries; attempt++) {
    const count = options.count ?? rng.int(Math.max(MIN_OBJECTS, required.length), MAX_OBJECTS);
    const kinds = [...required.map((c) => randomKind(rng, c))];
    while (kinds.length < count) kinds.push(randomKind(rng));
    // Large boxes first: they are the hardest to fit, so placing them early wastes fewer draws.
    kinds.sort((a, b) => SIZE_PX[b.size] - SIZE_PX[a.size]);
    const objects: SceneObject[] = [];
    for (const kind of kinds) {
      const obj = placeObject(rng, kind, objects, 100);
      if (obj === undefined) break;
      objects.push(obj);
    }
    if (objects.length !== count) continue;
    const background = options.background ?? rng.int(BACKGROUND_MIN, BACKGROUND_MAX);
    const scene: Scene = { background, objects: rng.shuffle(objects) };
    if (options.accept === undefined || options.accept(scene)) return scene;
  }
  throw new Error(`no scene met the constraints in ${maxTries} draws`);
}
