/**
 * Planning: a layout is one labelled box per object (colour and shape; the size follows from the box).
 * A plan passes when its boxes, drawn as their objects, read back as a clean scene that satisfies the
 * prompt: the same rule, and the same reader, as a generated image.
 */
import { quantiseBox } from './grounding.js';
import { checkPrompt, sceneForPrompt, type PromptSpec } from './prompts.js';
import { isRegularBox, readImage } from './read.js';
import { render } from './render.js';
import type { Rng } from './rng.js';
import { MAX_OBJECTS, SIZE_PX, boxOf, canonicalOrder, type Box, type Colour, type Scene, type Shape, type Size } from './scene.js';

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
