/**
 * Planning: a layout is one labelled box per object (colour and shape; the size follows from the box).
 * A plan passes when its boxes, drawn as their objects, read back as a clean scene that satisfies the
 * prompt: the same rule, and the same reader, as a generated image.
 */
import { checkEdit, keptObject, type EditSpec } from './edits.js';
import { quantiseBox } from './grounding.js';
import { checkPrompt, sceneForPrompt, type PromptSpec } from './prompts.js';
import { isRegularBox, readImage } from './read.js';
import { render } from './render.js';
import type { Rng } from './rng.js';
import {
  MAX_OBJECTS,
  SIZE_PX,
  boxOf,
  canonicalOrder,
  cloneScene,
  type Box,
  type Colour,
  type Scene,
  type Shape,
  type Size,
} from './scene.js';
import { resolveReferringExpression } from './text.js';

export interface LayoutItem {
  colour: Colour;
  shape: Shape;
  /** (x1, y1, x2, y2) in pixels. */
  box: Box;
}

export type Layout = LayoutItem[];

/** Background used when a layout is drawn to be checked (plans do not choose one). */
const PLAN_BACKGROUND = 32;

/** The layout of a scene: its objects in reading order, each as colour, shape and box. */
export function layoutFromScene(scene: Scene): Layout {
  return canonicalOrder(scene.objects).map((o) => ({ colour: o.colour, shape: o.shape, box: boxOf(o) }));
}

/**
 * The scene a layout draws: each box must be square within 2 px with sides within 2 px of 12 or 20
 * (the reader's clean rule); its object gets that size, centred on the box centre (rounded to whole
 * pixels). Undefined when a box fails the rule or there are not 1 to 4 items.
 */
export function sceneFromLayout(layout: Layout, background = PLAN_BACKGROUND): Scene | undefined {
  if (layout.length < 1 || layout.length > MAX_OBJECTS) return undefined;
  const objects = [];
  for (const item of layout) {
    const [x1, y1, x2, y2] = item.box;
    const w = x2 - x1;
    const h = y2 - y1;
    if (![x1, y1, x2, y2].every(Number.isFinite) || !isRegularBox(Math.round(w), Math.round(h))) return undefined;
    const size: Size = Math.max(w, h) < 16 ? 'small' : 'large';
    const side = SIZE_PX[size];
    objects.push({
      colour: item.colour,
      shape: item.shape,
      size,
      x: Math.round((x1 + x2 - side) / 2),
      y: Math.round((y1 + y2 - side) / 2),
    });
  }
  return { background, objects };
}

/**
 * The plan check: the layout's boxes, drawn as their objects, read back as a clean scene with as many
 * objects as the layout, and that scene satisfies the prompt (`checkPrompt`). Overlapping, touching
 * same-colour or off-canvas boxes therefore fail.
 */
export function checkPlan(spec: PromptSpec, layout: Layout): boolean {
  const scene = sceneFromLayout(layout);
  if (scene === undefined) return false;
  const read = readImage(render(scene));
  return read.clean && read.scene.objects.length === layout.length && checkPrompt(spec, read.scene);
}

/** A layout that satisfies the prompt (a random legal scene for it, as boxes). */
export function planForPrompt(rng: Rng, spec: PromptSpec): Layout {
  return layoutFromScene(sceneForPrompt(rng, spec));
}

/** The layout with each box's coordinate bins (for the model's `<loc_*>` tokens). */
export function quantiseLayout(layout: Layout): (LayoutItem & { bins: Box })[] {
  return layout.map((item) => ({ ...item, bins: quantiseBox(item.box) }));
}

/**
 * The plan of an edit (the published code's `create_plan_edit`: "consider {adding|removing|...} the objects in
 * these locations"): the region the edit changes, as layout items. The objects of `after` that `before` lacks
 * (the added object, the changed or replacing one, each with its new colour and shape), else the objects of
 * `before` that `after` lacks (the removed one).
 */
export function editRegion(before: Scene, after: Scene): Layout {
  const key = (o: Scene['objects'][number]): string => `${o.shape}/${o.colour}/${o.size}/${o.x}/${o.y}`;
  const had = new Set(before.objects.map(key));
  const has = new Set(after.objects.map(key));
  const added = after.objects.filter((o) => !had.has(key(o)));
  const objects = added.length > 0 ? added : before.objects.filter((o) => !has.has(key(o)));
  return objects.map((o) => ({ colour: o.colour, shape: o.shape, box: boxOf(o) }));
}

/**
 * The check of an edit's plan: exactly one item, and that item, drawn as its object, is what the edit needs.
 * For add, change and replace the source scene with the item's object put in (added; in place of the referred
 * object) must render, read back clean and pass `checkEdit` (so an added object must also fit beside the
 * others); for remove the item must be the referred object itself (shape, colour, size, centre within 2 px).
 *
 * @throws RangeError when the instruction's reference does not pick out one object of `before`.
 */
export function checkEditPlan(before: Scene, spec: EditSpec, layout: Layout): boolean {
  if (layout.length !== 1) return false;
  const drawn = sceneFromLayout(layout, before.background);
  if (drawn === undefined) return false;
  const obj = drawn.objects[0];
  const target = spec.kind === 'add' ? undefined : resolveReferringExpression(before, spec.ref);
  if (spec.kind !== 'add' && target === undefined) throw new RangeError(`"${spec.ref}" does not pick out one object of the scene`);
  if (spec.kind === 'remove') return keptObject(before.objects[target as number], obj);
  const after = cloneScene(before);
  if (spec.kind === 'add') after.objects.push(obj);
  else after.objects[target as number] = obj;
  const read = readImage(render(after));
  return read.clean && read.scene.objects.length === after.objects.length && checkEdit(before, spec, read);
}
