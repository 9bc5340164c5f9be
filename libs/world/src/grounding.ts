/**
 * Grounding: referring expression to box, IoU scoring, and the model's 1025-bin coordinate
 * quantisation (coordinates normalised to [0, 1] by the canvas side, then bin = round(c * 1024)).
 */
import type { Rng } from './rng.js';
import { CANVAS, boxOf, type Box, type Scene } from './scene.js';
import { referableObjects, referringExpression, resolveReferringExpression } from './text.js';

/** Number of coordinate bins (`<loc_0>` .. `<loc_1024>`). */
export const LOC_BINS = 1025;
/** IoU a predicted box needs to count as correct. */
export const GROUNDING_IOU = 0.5;

/** Intersection over union of two boxes (x1, y1, x2, y2); 0 when either is empty. */
export function iou(a: Box, b: Box): number {
  const iw = Math.max(0, Math.min(a[2], b[2]) - Math.max(a[0], b[0]));
  const ih = Math.max(0, Math.min(a[3], b[3]) - Math.max(a[1], b[1]));
  const inter = iw * ih;
  const area = (box: Box): number => Math.max(0, box[2] - box[0]) * Math.max(0, box[3] - box[1]);
  const union = area(a) + area(b) - inter;
  return union > 0 ? inter / union : 0;
}

/** The grounding score: IoU with the true box >= 0.5. */
export function scoreGrounding(predicted: Box, truth: Box): boolean {
  return iou(predicted, truth) >= GROUNDING_IOU;
}

/** The box of the object the expression refers to, or undefined when it picks out none or several. */
export function groundExpression(scene: Scene, ref: string): Box | undefined {
  const i = resolveReferringExpression(scene, ref);
  return i === undefined ? undefined : boxOf(scene.objects[i]);
}

/** A pixel coordinate in [0, 64] normalised to [0, 1]. */
export function normaliseCoord(pixels: number): number {
  return pixels / CANVAS;
}

/** The bin of a pixel coordinate: round(coord / 64 * 1024), clamped to [0, 1024]. */
export function quantiseCoord(pixels: number): number {
  return Math.min(LOC_BINS - 1, Math.max(0, Math.round((pixels / CANVAS) * (LOC_BINS - 1))));
}

/** The pixel coordinate a bin stands for: bin / 1024 * 64 (within 1/32 px of any coordinate it quantises). */
export function dequantiseCoord(bin: number): number {
  if (!Number.isInteger(bin) || bin < 0 || bin >= LOC_BINS) throw new RangeError(`bin ${bin} outside [0, 1024]`);
  return (bin / (LOC_BINS - 1)) * CANVAS;
}

/** A box's four bins. */
export function quantiseBox(box: Box): Box {
  return [quantiseCoord(box[0]), quantiseCoord(box[1]), quantiseCoord(box[2]), quantiseCoord(box[3])];
}

/** The pixel box four bins stand for. */
export function dequantiseBox(bins: Box): Box {
  return [dequantiseCoord(bins[0]), dequantiseCoord(bins[1]), dequantiseCoord(bins[2]), dequantiseCoord(bins[3])];
}

export interface GroundingExample {
  /** The referring expression. */
  ref: string;
  /** Index of the object in the scene. */
  object: number;
  /** True box in pixels. */
  box: Box;
  /** True box in bins. */
  bins: Box;
}

/** A random grounding example (an object with a referring expression), or undefined when no object has one. */
export function sampleGrounding(rng: Rng, scene: Scene): GroundingExample | undefined {
  const referable = referableObjects(scene);
  if (referable.length === 0) return undefined;
  const object = rng.pick(referable);
  const box = boxOf(scene.objects[object]);
  return { ref: referringExpression(scene, object) as string, object, box, bins: quantiseBox(box) };
}
