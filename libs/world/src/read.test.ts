import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { decodePng, estimateBackground, classifyPixel, readImage, readPng } from './read.js';
import { encodePng, render, renderPng, shapeMask } from './render.js';
import { Rng } from './rng.js';
import { CANVAS, COLOURS, PALETTE, SHAPES, generateScene, sameScene, type Scene } from './scene.js';

function setPixel(rgb: Uint8Array, x: number, y: number, c: readonly [number, number, number]): void {
  const p = (y * CANVAS + x) * 3;
  rgb[p] = c[0];
  rgb[p + 1] = c[1];
  rgb[p + 2] = c[2];
}

describe('renderer', () => {
  it('draws mirror-symmetric templates that fill their box edges', () => {
    for (const shape of SHAPES) {
      for (const side of [12, 20]) {
        const m = shapeMask(shape, side);
        for (let j = 0; j < side; j++)
          for (let i = 0; i < side; i++) assert.equal(m[j * side + i], m[j * side + side - 1 - i], `${shape} ${side}`);
        const rows = [...Array(side).keys()].filter((j) => m.slice(j * side, (j + 1) * side).some((v) => v === 1));
        const cols = [...Array(side).keys()].filter((i) => rows.some((j) => m[j * side + i] === 1));
        assert.equal(cols.length, side, `${shape} ${side} spans its width`);
        // The triangle's apex row is narrower than a pixel centre: it spans rows 1..side-1.
        assert.deepEqual([rows[0], rows[rows.length - 1]], [shape === 'triangle' ? 1 : 0, side - 1]);
      }
    }
    // The triangle's base row is full, the square is full.
    assert.ok(
      shapeMask('triangle', 12)
        .slice(11 * 12)
        .every((v) => v === 1),
    );
    assert.ok(shapeMask('square', 20).every((v) => v === 1));
  });

  it('renders flat colours on the background', () => {
    const scene: Scene = { background: 20, objects: [{ shape: 'square', colour: 'orange', size: 'small', x: 5, y: 7 }] };
    const rgb = render(scene);
    assert.equal(rgb.length, CANVAS * CANVAS * 3);
    assert.deepEqual([...rgb.subarray(0, 3)], [20, 20, 20]);
    const p = (7 * CANVAS + 5) * 3;
    assert.deepEqual([...rgb.subarray(p, p + 3)], [...PALETTE.orange]);
    assert.deepEqual(render(scene), rgb);
  });
});

describe('reader', () => {
  it('recovers at least 99.5% of 2000 seeded clean renders exactly', () => {
    let exact = 0;
    const misses: number[] = [];
    for (let seed = 0; seed < 2000; seed++) {
      const scene = generateScene(new Rng(1_000_000 + seed));
      const read = readImage(render(scene));
      if (read.clean && sameScene(read.scene, scene) && read.specks === 0) exact++;
      else misses.push(seed);
    }
    const rate = exact / 2000;
    console.log(`read-back exact: ${exact}/2000 = ${(rate * 100).toFixed(2)}%`);
    assert.ok(rate >= 0.995, `rate ${rate}, misses ${misses.slice(0, 10).join(',')}`);
  });

  it('reads PNG bytes the same as raw RGB', () => {
    for (let seed = 0; seed < 20; seed++) {
      const scene = generateScene(new Rng(seed));
      const png = renderPng(scene);
      assert.deepEqual(decodePng(png), render(scene));
      assert.ok(sameScene(readPng(png).scene, scene));
    }
    assert.deepEqual(decodePng(encodePng(render({ background: 9, objects: [] }))).subarray(0, 3), new Uint8Array([9, 9, 9]));
  });

  it('classifies pixels by their mix with the background', () => {
    for (const colour of COLOURS) {
      const [r, g, b] = PALETTE[colour];
      assert.equal(classifyPixel(r, g, b, 30), colour);
      // 70% colour, 30% background: still that colour.
      const mix = (c: number): number => Math.round(0.7 * c + 0.3 * 30);
      assert.equal(classifyPixel(mix(r), mix(g), mix(b), 30), colour);
      // 30% colour: background.
      const faint = (c: number): number => Math.round(0.3 * c + 0.7 * 30);
      assert.equal(classifyPixel(faint(r), faint(g), faint(b), 30), undefined);
    }
    assert.equal(classifyPixel(30, 30, 30, 30), undefined);
    assert.equal(estimateBackground(render({ background: 61, objects: [] })), 61);
  });

  it('marks speckled, fragmented and wrong-sized images as not clean', () => {
    const scene: Scene = {
      background: 25,
      objects: [
        { shape: 'circle', colour: 'red', size: 'large', x: 4, y: 4 },
        { shape: 'square', colour: 'blue', size: 'small', x: 40, y: 40 },
      ],
    };
    assert.equal(readImage(render(scene)).clean, true);

    // Speckle: 2 x 2 clumps of colour scattered over the background (4 px each, so not ignored).
    const rng = new Rng(11);
    const speckled = render(scene);
    for (let k = 0; k < 12; k++) {
      const x = rng.int(28, 60);
      const y = rng.int(2, 34);
      const c = PALETTE[rng.pick(COLOURS)];
      for (const [dx, dy] of [
        [0, 0],
        [1, 0],
        [0, 1],
        [1, 1],
      ])
        setPixel(speckled, x + dx, y + dy, c);
    }
    assert.equal(readImage(speckled).clean, false);

    // Single-pixel specks are ignored: still clean.
    const dusty = render(scene);
    setPixel(dusty, 30, 5, PALETTE.green);
    setPixel(dusty, 60, 20, PALETTE.yellow);
    const dustyRead = readImage(dusty);
    assert.equal(dustyRead.clean, true);
    assert.equal(dustyRead.specks, 2);

    // Fragmented: a background line through the circle splits it into two halves.
    const cut = render(scene);
    for (let x = 0; x < CANVAS; x++) setPixel(cut, x, 14, [25, 25, 25]);
    assert.equal(readImage(cut).clean, false);

    // A blob of the wrong size (16 x 16 square).
    const blob = render({ background: 25, objects: [] });
    for (let y = 10; y < 26; y++) for (let x = 10; x < 26; x++) setPixel(blob, x, y, PALETTE.green);
    assert.equal(readImage(blob).clean, false);

    // A smear: a 12 px wide, 20 px tall rectangle.
    const smear = render({ background: 25, objects: [] });
    for (let y = 10; y < 30; y++) for (let x = 10; x < 22; x++) setPixel(smear, x, y, PALETTE.purple);
    assert.equal(readImage(smear).clean, false);

    // Empty and overfull canvases.
    assert.equal(readImage(render({ background: 25, objects: [] })).clean, false);
    const five: Scene = {
      background: 25,
      objects: [
        [1, 1],
        [15, 1],
        [29, 1],
        [43, 1],
        [1, 20],
      ].map(([x, y]) => ({ shape: 'square', colour: 'red', size: 'small', x, y })),
    };
    assert.equal(readImage(render(five)).components.length, 5);
    assert.equal(readImage(render(five)).clean, false);
  });

  it('tolerates slightly noisy renders', () => {
    const rng = new Rng(4);
    let exact = 0;
    for (let seed = 0; seed < 200; seed++) {
      const scene = generateScene(new Rng(seed));
      const rgb = render(scene);
      for (let i = 0; i < rgb.length; i++) rgb[i] = Math.max(0, Math.min(255, rgb[i] + rng.int(-4, 4)));
      const read = readImage(rgb);
      if (read.clean && sameScene(read.scene, scene)) exact++;
    }
    assert.ok(exact >= 195, `${exact}/200 noisy renders read exactly`);
  });
});
