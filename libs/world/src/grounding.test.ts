import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  dequantiseBox,
  dequantiseCoord,
  groundExpression,
  iou,
  quantiseBox,
  quantiseCoord,
  sampleGrounding,
  scoreGrounding,
} from './grounding.js';
import { readImage } from './read.js';
import { render } from './render.js';
import { Rng } from './rng.js';
import { boxOf, generateScene, type Box, type Scene } from './scene.js';

describe('grounding', () => {
  it('IoU and the 0.5 threshold', () => {
    const a: Box = [10, 10, 30, 30];
    assert.equal(iou(a, a), 1);
    assert.equal(iou(a, [40, 40, 50, 50]), 0);
    assert.equal(iou(a, [20, 10, 40, 30]), 1 / 3);
    assert.equal(iou([0, 0, 12, 12], [0, 0, 12, 6]), 0.5);
    assert.ok(scoreGrounding([0, 0, 12, 6], [0, 0, 12, 12]));
    assert.equal(scoreGrounding([0, 0, 12, 5], [0, 0, 12, 12]), false);
    assert.equal(iou([5, 5, 5, 9], [0, 0, 10, 10]), 0);
  });

  it('quantises to 1025 bins and back within 0.5 px', () => {
    assert.equal(quantiseCoord(0), 0);
    assert.equal(quantiseCoord(64), 1024);
    assert.equal(quantiseCoord(32), 512);
    assert.equal(quantiseCoord(-3), 0);
    assert.equal(quantiseCoord(70), 1024);
    assert.equal(dequantiseCoord(1024), 64);
    assert.throws(() => dequantiseCoord(1025));
    for (let c = 0; c <= 64; c += 1 / 64) assert.ok(Math.abs(dequantiseCoord(quantiseCoord(c)) - c) <= 0.5, `coord ${c}`);
    for (let bin = 0; bin <= 1024; bin++) assert.equal(quantiseCoord(dequantiseCoord(bin)), bin);
    const box: Box = [3, 17, 23, 37];
    assert.deepEqual(dequantiseBox(quantiseBox(box)), box);
  });

  it('grounds sampled expressions to their true boxes on the read-back image', () => {
    const rng = new Rng(8);
    let examples = 0;
    for (let i = 0; i < 300; i++) {
      const scene = generateScene(rng);
      const ex = sampleGrounding(rng, scene);
      if (ex === undefined) continue;
      examples++;
      assert.deepEqual(ex.box, boxOf(scene.objects[ex.object]));
      const predicted = groundExpression(readImage(render(scene)).scene, ex.ref) as Box;
      assert.equal(iou(predicted, ex.box), 1);
      assert.ok(scoreGrounding(dequantiseBox(ex.bins), ex.box));
    }
    assert.ok(examples > 250);
    const twins: Scene = {
      background: 20,
      objects: [
        { shape: 'circle', colour: 'red', size: 'small', x: 2, y: 2 },
        { shape: 'circle', colour: 'red', size: 'small', x: 30, y: 30 },
      ],
    };
    assert.equal(sampleGrounding(rng, twins), undefined);
    assert.equal(groundExpression(twins, 'the circle'), undefined);
  });
});
