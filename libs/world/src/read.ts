/**
 * The reader: recovers a scene from any 64 x 64 RGB image, per the spec's read-back rule. Every score
 * is computed on what this reads, so a generated image is judged exactly like a rendered one.
 *
 * 1. Background: the median grey level of the near-grey pixels (channel spread <= 12), or of all
 *    pixels when fewer than a quarter are near-grey. Palette colours are far from grey and objects
 *    cover at most 1600 of 4096 pixels, so on a clean render this is exactly g.
 * 2. Pixel colour: for each palette colour c, the mix p = g + a (c - g) closest to the pixel
 *    (least squares, a clamped to [0, 1]); the colour with the smallest residual wins, and the pixel
 *    is background when that colour's share a is below one half.
 * 3. Components: 4-connected pixels of one colour; those under 4 px are specks and are ignored.
 * 4. Shape: the template (circle, square, triangle of render.ts) drawn in the component's own box
 *    (side = the larger of its width and height, shifted by up to 1 px around its bounds) with the best
 *    IoU against the component; ties go to circle, then square, then triangle.
 * 5. Size: small when that side is below 16 px, large otherwise.
 * 6. Position: the top-left of the nominal box (12 or 20) where the chosen template best overlaps the
 *    component (IoU; ties to the placement centred on the component's bounds).
 * 7. Clean: 1 to 4 components, each with width and height within 2 px of each other and both within
 *    2 px of 12 or of 20.
 */
import { PNG } from 'pngjs';
import {
  CANVAS,
  COLOURS,
  PALETTE,
  SHAPES,
  SIZE_PX,
  canonicalOrder,
  type Box,
  type Colour,
  type Scene,
  type Shape,
  type Size,
} from './scene.js';
import { shapeMask } from './render.js';

/** Components smaller than this many pixels are specks, ignored. */
export const MIN_COMPONENT_PX = 4;
/** Own-box sides below this are small, the rest large. */
export const SIZE_THRESHOLD_PX = 16;
/** Tolerance of the clean-scene box rules, in pixels. */
export const CLEAN_TOLERANCE_PX = 2;

export interface ReadComponent {
  colour: Colour;
  /** Number of pixels. */
  pixels: number;
  /** Tight bounds of its pixels (x1, y1, x2, y2), x2 and y2 exclusive. */
  bounds: Box;
  /** Best-matching template drawn in its own box. */
  shape: Shape;
  /** From its own box side: small below 16 px. */
  size: Size;
  /** Top-left of the fitted nominal box (side 12 or 20). */
  x: number;
  y: number;
  /** IoU of the shape's nominal template at (x, y) with the component: 1 for an exact render. */
  fit: number;
  /** Whether its bounds pass the clean-scene rule (square within 2 px, side 12 or 20 within 2 px). */
  regular: boolean;
}

export interface ReadResult {
  /** Estimated background grey level. */
  background: number;
  /** 1 to 4 components, all regular: only clean reads can pass a prompt. */
  clean: boolean;
  /** Components of 4 px or more, in canonical order (box centre y, then x). */
  components: ReadComponent[];
  /** Number of ignored components under 4 px. */
  specks: number;
  /** The components as scene objects (same order as `components`). */
  scene: Scene;
}

/** Estimates the background grey level of 64 x 64 x 3 RGB bytes (see the module comment). */
export function estimateBackground(rgb: Uint8Array): number {
  const greyHist = new Uint32Array(256);
  const allHist = new Uint32Array(256);
  let greys = 0;
  for (let p = 0; p < rgb.length; p += 3) {
    const r = rgb[p];
    const g = rgb[p + 1];
    const b = rgb[p + 2];
    const level = Math.round((r + g + b) / 3);
    allHist[level]++;
    if (Math.max(r, g, b) - Math.min(r, g, b) <= 12) {
      greyHist[level]++;
      greys++;
    }
  }
  const pixels = rgb.length / 3;
  return greys >= pixels / 4 ? median(greyHist, greys) : median(allHist, pixels);
}

/** The lower median of a histogram holding `total` values. */
function median(hist: Uint32Array, total: number): number {
  let seen = 0;
  for (let v = 0; v < hist.length; v++) {
    seen += hist[v];
    if (seen * 2 >= total) return v;
  }
  return hist.length - 1;
}

/**
 * The palette colour whose mix with the background explains the pixel best, or undefined when the
 * pixel is background (less than half colour). See the module comment.
 */
export function classifyPixel(r: number, g: number, b: number, background: number): Colour | undefined {
  const pr = r - background;
  const pg = g - background;
  const pb = b - background;
  let best: Colour | undefined;
  let bestResidual = Infinity;
  let bestShare = 0;
  for (const colour of COLOURS) {
    const [cr, cg, cb] = PALETTE[colour];
    const dr = cr - background;
    const dg = cg - background;
    const db = cb - background;
    const share = Math.min(1, Math.max(0, (pr * dr + pg * dg + pb * db) / (dr * dr + dg * dg + db * db)));
    const er = pr - share * dr;
    const eg = pg - share * dg;
    const eb = pb - share * db;
    const residual = er * er + eg * eg + eb * eb;
    if (residual < bestResidual) {
      bestResidual = residual;
      best = colour;
      bestShare = share;
    }
  }
  return bestShare >= 0.5 ? best : undefined;
}

/** IoU of `shape`'s template of `side` placed at (ox, oy) with component `id` of `count` pixels. */
function templateIoU(labels: Int32Array, id: number, count: number, shape: Shape, side: number, ox: number, oy: number): number {
  const mask = shapeMask(shape, side);
  let inter = 0;
  let area = 0;
  for (let j = 0; j < side; j++) {
    const y = oy + j;
    for (let i = 0; i < side; i++) {
      if (mask[j * side + i] === 0) continue;
      area++;
      const x = ox + i;
      if (x >= 0 && y >= 0 && x < CANVAS && y < CANVAS && labels[y * CANVAS + x] === id) inter++;
    }
  }
  return inter / (area + count - inter);
}

interface Fit {
  iou: number;
  x: number;
  y: number;
  /** Squared distance of the placement's centre from the bounds' centre, the tie-breaker. */
  offCentre: number;
}

/** The best placement of a side-`side` template over the component, searching `slack` px around its bounds. */
function bestPlacement(labels: Int32Array, id: number, count: number, bounds: Box, shape: Shape, side: number, slack: number): Fit {
  const [x1, y1, x2, y2] = bounds;
  const cx2 = x1 + x2; // twice the bounds' centre, to stay in integers
  const cy2 = y1 + y2;
  let best: Fit = { iou: -1, x: x1, y: y1, offCentre: Infinity };
  for (let oy = Math.min(y1, y2 - side) - slack; oy <= Math.max(y1, y2 - side) + slack; oy++) {
    for (let ox = Math.min(x1, x2 - side) - slack; ox <= Math.max(x1, x2 - side) + slack; ox++) {
      const iou = templateIoU(labels, id, count, shape, side, ox, oy);
      const offCentre = (2 * ox + side - cx2) ** 2 + (2 * oy + side - cy2) ** 2;
      if (iou > best.iou || (iou === best.iou && offCentre < best.offCentre)) best = { iou, x: ox, y: oy, offCentre };
    }
  }
  return best;
}

/** Whether bounds of width w and height h pass the clean-scene rule. */
export function isRegularBox(w: number, h: number): boolean {
  if (Math.abs(w - h) > CLEAN_TOLERANCE_PX) return false;
  return Object.values(SIZE_PX).some((s) => Math.abs(w - s) <= CLEAN_TOLERANCE_PX && Math.abs(h - s) <= CLEAN_TOLERANCE_PX);
}

/**
 * Reads a scene back from 64 x 64 x 3 RGB bytes (row-major), per the spec's read-back rule (see the
 * module comment for every step).
 */
export function readImage(rgb: Uint8Array): ReadResult {
  if (rgb.length !== CANVAS * CANVAS * 3) throw new RangeError(`expected ${CANVAS * CANVAS * 3} RGB bytes, got ${rgb.length}`);
  const background = estimateBackground(rgb);
  const n = CANVAS * CANVAS;
  // Per-pixel palette index, -1 for background; colours repeat a lot, so cache by RGB value.
  const classes = new Int8Array(n);
  const cache = new Map<number, number>();
  for (let p = 0; p < n; p++) {
    const r = rgb[3 * p];
    const g = rgb[3 * p + 1];
    const b = rgb[3 * p + 2];
    const key = (r << 16) | (g << 8) | b;
    let cls = cache.get(key);
    if (cls === undefined) {
      const colour = classifyPixel(r, g, b, background);
      cls = colour === undefined ? -1 : COLOURS.indexOf(colour);
      cache.set(key, cls);
    }
    classes[p] = cls;
  }

  const labels = new Int32Array(n).fill(-1);
  const components: ReadComponent[] = [];
  let specks = 0;
  let nextId = 0;
  const stack: number[] = [];
  for (let start = 0; start < n; start++) {
    if (classes[start] < 0 || labels[start] >= 0) continue;
    const id = nextId++;
    const cls = classes[start];
    let count = 0;
    let x1 = CANVAS;
    let y1 = CANVAS;
    let x2 = 0;
    let y2 = 0;
    labels[start] = id;
    stack.push(start);
    while (stack.length > 0) {
      const p = stack.pop() as number;
      const x = p % CANVAS;
      const y = (p - x) / CANVAS;
      count++;
      x1 = Math.min(x1, x);
      y1 = Math.min(y1, y);
      x2 = Math.max(x2, x + 1);
      y2 = Math.max(y2, y + 1);
      // 4-connectivity: left, right, up, down.
      for (const q of [x > 0 ? p - 1 : -1, x < CANVAS - 1 ? p + 1 : -1, y > 0 ? p - CANVAS : -1, y < CANVAS - 1 ? p + CANVAS : -1]) {
        if (q >= 0 && classes[q] === cls && labels[q] < 0) {
          labels[q] = id;
          stack.push(q);
        }
      }
    }
    if (count < MIN_COMPONENT_PX) {
      specks++;
      continue;
    }
    const bounds: Box = [x1, y1, x2, y2];
    const w = x2 - x1;
    const h = y2 - y1;
    const ownSide = Math.max(w, h);
    let shape: Shape = SHAPES[0];
    let bestIoU = -1;
    for (const candidate of SHAPES) {
      const fit = bestPlacement(labels, id, count, bounds, candidate, ownSide, 1);
      if (fit.iou > bestIoU) {
        bestIoU = fit.iou;
        shape = candidate;
      }
    }
    const size: Size = ownSide < SIZE_THRESHOLD_PX ? 'small' : 'large';
    const placed = bestPlacement(labels, id, count, bounds, shape, SIZE_PX[size], CLEAN_TOLERANCE_PX);
    components.push({
      colour: COLOURS[cls],
      pixels: count,
      bounds,
      shape,
      size,
      x: placed.x,
      y: placed.y,
      fit: placed.iou,
      regular: isRegularBox(w, h),
    });
  }

  const ordered = canonicalOrder(components);
  const objects = ordered.map((c) => ({ shape: c.shape, colour: c.colour, size: c.size, x: c.x, y: c.y }));
  const clean = components.length >= 1 && components.length <= 4 && components.every((c) => c.regular);
  return { background, clean, components: ordered, specks, scene: { background, objects } };
}

/** Decodes a PNG to 64 x 64 x 3 RGB bytes (alpha, if any, is dropped). */
export function decodePng(bytes: Uint8Array): Uint8Array {
  const png = PNG.sync.read(Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength));
  if (png.width !== CANVAS || png.height !== CANVAS) throw new RangeError(`expected a 64 x 64 image, got ${png.width} x ${png.height}`);
  const rgb = new Uint8Array(CANVAS * CANVAS * 3);
  for (let i = 0, j = 0; i < png.data.length; i += 4, j += 3) {
    rgb[j] = png.data[i];
    rgb[j + 1] = png.data[i + 1];
    rgb[j + 2] = png.data[i + 2];
  }
  return rgb;
}

/** Reads a scene back from PNG bytes. */
export function readPng(bytes: Uint8Array): ReadResult {
  return readImage(decodePng(bytes));
}
