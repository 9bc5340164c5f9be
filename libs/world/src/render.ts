/**
 * The renderer: a scene to a 64 x 64 RGB image (row-major, 3 bytes per pixel), flat colours, no
 * anti-aliasing.
 *
 * Rasterisation (in a box of side s, pixel (i, j) = column i, row j of the box, its centre at
 * (i + 0.5, j + 0.5)):
 * - square: every pixel of the box;
 * - circle: pixels whose centre lies in the inscribed circle (centre (s/2, s/2), diameter s), i.e.
 *   (2i + 1 - s)^2 + (2j + 1 - s)^2 <= s^2;
 * - triangle: isosceles, apex (s/2, 0) at the top edge, base the bottom edge (height s): pixels whose
 *   centre lies inside, i.e. 2 |2i + 1 - s| <= 2j + 1.
 * All tests are exact integer arithmetic, mirror-symmetric about the box's vertical axis, and (for even
 * s) never land on a boundary, so there are no ties to break. For even s the triangle's top row stays
 * empty (its apex is narrower than any pixel centre), so a triangle's pixels span s x (s - 1).
 */
import { PNG } from 'pngjs';
import { CANVAS, PALETTE, sideOf, type Scene, type Shape } from './scene.js';

const masks = new Map<string, Uint8Array>();

/** Whether pixel (i, j) of a box of side s belongs to the shape (see the module comment). */
export function insideShape(shape: Shape, side: number, i: number, j: number): boolean {
  switch (shape) {
    case 'square':
      return true;
    case 'circle': {
      const u = 2 * i + 1 - side;
      const v = 2 * j + 1 - side;
      return u * u + v * v <= side * side;
    }
    case 'triangle':
      return 2 * Math.abs(2 * i + 1 - side) <= 2 * j + 1;
  }
}

/**
 * The shape's template in a box of the given side: side x side bytes, row-major, 1 inside and 0
 * outside. Cached and shared: do not modify.
 */
export function shapeMask(shape: Shape, side: number): Uint8Array {
  const key = `${shape}:${side}`;
  let mask = masks.get(key);
  if (mask === undefined) {
    mask = new Uint8Array(side * side);
    for (let j = 0; j < side; j++) for (let i = 0; i < side; i++) mask[j * side + i] = insideShape(shape, side, i, j) ? 1 : 0;
    masks.set(key, mask);
  }
  return mask;
}

/**
 * Renders the scene to 64 x 64 x 3 RGB bytes (row-major). Objects are drawn in order, clipped to the
 * canvas; legality is not checked so that deliberately broken scenes can be drawn too.
 */
export function render(scene: Scene): Uint8Array {
  const rgb = new Uint8Array(CANVAS * CANVAS * 3).fill(scene.background);
  for (const obj of scene.objects) {
    const side = sideOf(obj);
    const mask = shapeMask(obj.shape, side);
    const [r, g, b] = PALETTE[obj.colour];
    for (let j = 0; j < side; j++) {
      const y = obj.y + j;
      if (y < 0 || y >= CANVAS) continue;
      for (let i = 0; i < side; i++) {
        const x = obj.x + i;
        if (x < 0 || x >= CANVAS || mask[j * side + i] === 0) continue;
        const p = (y * CANVAS + x) * 3;
        rgb[p] = r;
        rgb[p + 1] = g;
        rgb[p + 2] = b;
      }
    }
  }
  return rgb;
}

/** Encodes 64 x 64 RGB bytes as an 8-bit RGB PNG. */
export function encodePng(rgb: Uint8Array): Buffer {
  if (rgb.length !== CANVAS * CANVAS * 3) throw new RangeError(`expected ${CANVAS * CANVAS * 3} RGB bytes, got ${rgb.length}`);
  const png = new PNG({ width: CANVAS, height: CANVAS, colorType: 2, inputColorType: 2, inputHasAlpha: false });
  png.data = Buffer.from(rgb.buffer, rgb.byteOffset, rgb.byteLength);
  return PNG.sync.write(png, { colorType: 2, inputColorType: 2, inputHasAlpha: false });
}

/** Renders the scene straight to PNG bytes. */
export function renderPng(scene: Scene): Buffer {
  return encodePng(render(scene));
}
