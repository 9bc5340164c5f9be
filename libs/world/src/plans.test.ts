import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { checkPlan, layoutFromScene, planForPrompt, sceneFromLayout, type Layout } from './plans.js';
import { CATEGORIES, samplePrompt, sceneAgainstPrompt, type PromptSpec } from './prompts.js';
import { Rng } from './rng.js';

describe('plans', () => {
  it('planForPrompt passes checkPlan for every category; a failing scene layout does not', () => {
    const rng = new Rng(12);
    for (const category of CATEGORIES) {
      for (let i = 0; i < 40; i++) {
        const { spec } = samplePrompt(rng, category);
        assert.ok(checkPlan(spec, planForPrompt(rng, spec)), category);
        assert.equal(checkPlan(spec, layoutFromScene(sceneAgainstPrompt(rng, spec))), false, category);
      }
    }
  });

  it('rejects boxes that do not draw as clean objects', () => {
    const spec: PromptSpec = { category: 'position', shapes: ['circle', 'square'], relation: 'left of' };
    const good: Layout = [
      { colour: 'red', shape: 'circle', box: [4, 20, 16, 32] },
      { colour: 'blue', shape: 'square', box: [40, 20, 60, 40] },
    ];
    assert.ok(checkPlan(spec, good));
    // Slightly off boxes (within 2 px of a legal box) still draw as their object.
    assert.ok(
      checkPlan(spec, [
        { colour: 'red', shape: 'circle', box: [4.3, 19.6, 17, 32.5] },
        { colour: 'blue', shape: 'square', box: [40, 20, 59, 41] },
      ]),
    );
    // Relation wrong.
    assert.equal(checkPlan({ ...spec, relation: 'right of' }, good), false);
    // A box of neither size, a non-square box, an empty plan.
    assert.equal(checkPlan(spec, [good[0], { ...good[1], box: [40, 20, 56, 36] }]), false);
    assert.equal(checkPlan(spec, [good[0], { ...good[1], box: [40, 20, 60, 32] }]), false);
    assert.equal(checkPlan(spec, []), false);
    // Overlapping same-colour boxes merge into one blob.
    assert.equal(
      checkPlan({ category: 'two_object', shapes: ['circle', 'square'] }, [
        { colour: 'red', shape: 'circle', box: [10, 10, 30, 30] },
        { colour: 'red', shape: 'square', box: [25, 12, 45, 32] },
      ]),
      false,
    );
    assert.deepEqual(
      sceneFromLayout(good, 20)?.objects.map((o) => [o.size, o.x, o.y]),
      [
        ['small', 4, 20],
        ['large', 40, 20],
      ],
    );
  });
});
