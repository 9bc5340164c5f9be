import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { Scene, SceneObject } from './scene.js';
import {
  article,
  numberWord,
  parseReferringExpression,
  plural,
  referringExpression,
  resolveReferringExpression,
  withArticle,
} from './text.js';

const obj = (o: Partial<SceneObject>, x: number): SceneObject => ({ shape: 'circle', colour: 'red', size: 'small', y: 5, ...o, x });
const scene = (...objects: SceneObject[]): Scene => ({ background: 30, objects });

describe('text', () => {
  it('articles, plurals and number words', () => {
    assert.equal(article('orange'), 'an');
    assert.equal(article('red'), 'a');
    assert.equal(withArticle('orange triangle'), 'an orange triangle');
    assert.equal(withArticle('square'), 'a square');
    assert.equal(plural('triangle'), 'triangles');
    assert.deepEqual([0, 1, 2, 3, 4].map(numberWord), ['zero', 'one', 'two', 'three', 'four']);
    assert.throws(() => numberWord(5));
  });

  it("writes the spec's referring expressions", () => {
    // "the circle": the only circle.
    assert.equal(referringExpression(scene(obj({}, 1), obj({ shape: 'square' }, 20)), 0), 'the circle');
    // "the red circle": colour tells two small circles apart.
    assert.equal(referringExpression(scene(obj({}, 1), obj({ colour: 'blue' }, 20)), 0), 'the red circle');
    // "the small circle": two red circles of different sizes.
    assert.equal(referringExpression(scene(obj({}, 1), obj({ size: 'large' }, 20)), 0), 'the small circle');
    // "the small red circle": neither word alone is enough.
    const s = scene(obj({}, 1), obj({ size: 'large' }, 15), obj({ colour: 'blue' }, 40));
    assert.equal(referringExpression(s, 0), 'the small red circle');
    assert.equal(referringExpression(s, 1), 'the large circle');
    assert.equal(referringExpression(s, 2), 'the blue circle');
    // Colour is preferred when either one word works.
    assert.equal(referringExpression(scene(obj({}, 1), obj({ size: 'large', colour: 'blue' }, 20)), 0), 'the red circle');
    // No unique expression for identical twins.
    const twins = scene(obj({}, 1), obj({}, 20));
    assert.equal(referringExpression(twins, 0), undefined);
    assert.equal(referringExpression(scene(obj({ colour: 'orange' }, 1), obj({ colour: 'blue' }, 20)), 0), 'the orange circle');
  });

  it('understands any unique longer form, and nothing ambiguous', () => {
    const s = scene(obj({}, 1), obj({ shape: 'square', colour: 'blue', size: 'large' }, 20));
    assert.equal(resolveReferringExpression(s, 'the circle'), 0);
    assert.equal(resolveReferringExpression(s, 'the red circle'), 0);
    assert.equal(resolveReferringExpression(s, 'the small red circle'), 0);
    assert.equal(resolveReferringExpression(s, 'The Large Blue Square'), 1);
    assert.equal(resolveReferringExpression(s, 'the blue circle'), undefined);
    assert.equal(resolveReferringExpression(s, 'a circle'), undefined);
    assert.equal(resolveReferringExpression(scene(obj({}, 1), obj({}, 20)), 'the red circle'), undefined);
    assert.deepEqual(parseReferringExpression('the small red circle'), { shape: 'circle', size: 'small', colour: 'red' });
    assert.equal(parseReferringExpression('the red red circle'), undefined);
    assert.equal(parseReferringExpression('the circle square'), undefined);
  });
});
