import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { Rng } from './rng.js';
import {
  BACKGROUND_MAX,
  BACKGROUND_MIN,
  CANVAS,
  boxGap,
  boxOf,
  centreOf,
  generateScene,
  inRelation,
  relationsBetween,
  sceneProblems,
  type SceneObject,
} from './scene.js';

const small = (x: number, y: number): SceneObject => ({ shape: 'circle', colour: 'red', size: 'small', x, y });
const large = (x: number, y: number): SceneObject => ({ shape: 'square', colour: 'blue', size: 'large', x, y });

describe('scene model', () => {
  it('boxes and centres', () => {
    assert.deepEqual(boxOf(small(3, 5)), [3, 5, 15, 17]);
    assert.deepEqual(centreOf(small(3, 5)), [9, 11]);
    assert.deepEqual(centreOf(large(3, 5)), [13, 15]);
    assert.equal(boxGap(boxOf(small(1, 1)), boxOf(small(15, 1))), 2);
    assert.equal(boxGap(boxOf(small(1, 1)), boxOf(small(14, 1))), 1);
    assert.ok(boxGap(boxOf(small(1, 1)), boxOf(small(5, 5))) <= 0);
  });

  it('relations follow the dx / dy rules at their edges', () => {
    // dx = 4: not far enough.
    assert.equal(inRelation(small(10, 10), small(14, 10), 'left of'), false);
    // dx = 5, dy = 0.
    assert.equal(inRelation(small(10, 10), small(15, 10), 'left of'), true);
    assert.equal(inRelation(small(15, 10), small(10, 10), 'right of'), true);
    // dx = 5, dy = 5: dx is not more than |dy|, so neither left of nor above.
    assert.deepEqual(relationsBetween(small(10, 10), small(15, 15)), []);
    // dx = 5, dy = 4: left of only; dy = -4 too.
    assert.deepEqual(relationsBetween(small(10, 10), small(15, 14)), ['left of']);
    assert.deepEqual(relationsBetween(small(10, 10), small(15, 6)), ['left of']);
    // Vertical: B lower on the canvas means A is above B.
    assert.deepEqual(relationsBetween(small(10, 10), small(10, 30)), ['above']);
    assert.deepEqual(relationsBetween(small(10, 30), small(10, 10)), ['below']);
    assert.deepEqual(relationsBetween(small(10, 10), small(16, 16)), []);
    // Centres, not corners: a small box at x=10 (cx 16) and a large one at x=10 (cx 20) are 4 apart.
    assert.deepEqual(relationsBetween(small(10, 10), large(10, 40)), ['above']);
    assert.equal(inRelation(small(10, 40), large(10, 6), 'left of'), false);
    assert.equal(inRelation(small(5, 10), large(6, 6), 'left of'), true); // dx = 16 - 11 = 5, dy = 16 - 16 = 0
  });

  it('generates legal scenes: 1 to 4 objects, 2 px gaps, 1 px border, grey in [8, 64]', () => {
    const counts = [0, 0, 0, 0, 0];
    const backgrounds = new Set<number>();
    for (let seed = 0; seed < 3000; seed++) {
      const scene = generateScene(new Rng(seed));
      assert.deepEqual(sceneProblems(scene), [], `seed ${seed}`);
      counts[scene.objects.length]++;
      backgrounds.add(scene.background);
      // Independent re-check of the rules, not through sceneProblems.
      for (const [i, o] of scene.objects.entries()) {
        const [x1, y1, x2, y2] = boxOf(o);
        assert.ok(x1 >= 1 && y1 >= 1 && x2 <= CANVAS - 1 && y2 <= CANVAS - 1, `seed ${seed} border`);
        for (const p of scene.objects.slice(0, i)) {
          const [a1, b1, a2, b2] = boxOf(p);
          const apart = x1 >= a2 + 2 || a1 >= x2 + 2 || y1 >= b2 + 2 || b1 >= y2 + 2;
          assert.ok(apart, `seed ${seed}: boxes too close`);
        }
      }
      assert.ok(scene.background >= BACKGROUND_MIN && scene.background <= BACKGROUND_MAX);
    }
    assert.equal(counts[0], 0);
    for (let n = 1; n <= 4; n++) assert.ok(counts[n] > 600, `count ${n} drawn ${counts[n]} times`);
    assert.equal(backgrounds.size, BACKGROUND_MAX - BACKGROUND_MIN + 1);
  });

  it('honours count, required objects and accept', () => {
    const rng = new Rng(5);
    for (let i = 0; i < 200; i++) {
      const scene = generateScene(rng, {
        count: 4,
        required: [
          { shape: 'triangle', colour: 'orange', size: 'large' },
          { shape: 'triangle', colour: 'orange', size: 'large' },
        ],
        accept: (s) => s.background > 40,
      });
      assert.equal(scene.objects.length, 4);
      assert.ok(scene.objects.filter((o) => o.shape === 'triangle' && o.colour === 'orange' && o.size === 'large').length >= 2);
      assert.ok(scene.background > 40);
    }
    assert.throws(() => generateScene(rng, { count: 1, required: [{}, {}] }));
    assert.throws(() => generateScene(rng, { accept: () => false, maxTries: 5 }));
  });

  it('four large objects still fit', () => {
    const scene = generateScene(new Rng(3), { required: [{ size: 'large' }, { size: 'large' }, { size: 'large' }, { size: 'large' }] });
    assert.deepEqual(sceneProblems(scene), []);
  });
});
