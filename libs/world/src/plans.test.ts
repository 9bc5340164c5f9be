import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { EDIT_KINDS, sampleEdit, type EditSpec } from './edits.js';
import { checkEditPlan, checkPlan, editRegion, layoutFromScene, planForPrompt, sceneFromLayout, type Layout } from './plans.js';
import { CATEGORIES, samplePrompt, sceneAgainstPrompt, type PromptSpec } from './prompts.js';
import { Rng } from './rng.js';
import { generateScene, type Scene } from './scene.js';

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

  it("editRegion is the edit's plan: it passes checkEditPlan for every kind, another object's box does not", () => {
    const rng = new Rng(7);
    const seen = new Set<string>();
    for (let n = 0; n < 400; n++) {
      const scene = generateScene(rng);
      const edit = sampleEdit(rng, scene, EDIT_KINDS[n % 4]);
      if (edit === undefined) continue;
      seen.add(edit.spec.kind);
      const region = editRegion(scene, edit.target);
      assert.equal(region.length, 1, edit.text);
      assert.ok(checkEditPlan(scene, edit.spec, region), edit.text);
      assert.equal(checkEditPlan(scene, edit.spec, []), false);
      assert.equal(checkEditPlan(scene, edit.spec, [region[0], region[0]]), false);
      const [x1, y1, x2, y2] = region[0].box;
      // Moved 4 px: a removal no longer names the object, a change or replacement is no longer in place.
      if (edit.spec.kind !== 'add')
        assert.equal(checkEditPlan(scene, edit.spec, [{ ...region[0], box: [x1 + 4, y1, x2 + 4, y2] }]), false, edit.text);
      const others = scene.objects.filter((o) => o.x !== x1 || o.y !== y1);
      if (edit.spec.kind !== 'add' && others.length > 0) {
        const o = others[0];
        const side = o.size === 'small' ? 12 : 20;
        assert.equal(checkEditPlan(scene, edit.spec, [{ ...region[0], box: [o.x, o.y, o.x + side, o.y + side] }]), false, edit.text);
      }
    }
    assert.deepEqual([...seen].sort(), ['add', 'change', 'remove', 'replace']);
  });

  it('checkEditPlan: an added object must fit, and carry the colour and shape the instruction names', () => {
    const scene: Scene = { background: 30, objects: [{ shape: 'square', colour: 'red', size: 'large', x: 2, y: 2 }] };
    const add: EditSpec = { kind: 'add', colour: 'blue', shape: 'circle' };
    assert.ok(checkEditPlan(scene, add, [{ colour: 'blue', shape: 'circle', box: [40, 40, 52, 52] }]));
    assert.equal(checkEditPlan(scene, add, [{ colour: 'green', shape: 'circle', box: [40, 40, 52, 52] }]), false);
    assert.equal(checkEditPlan(scene, add, [{ colour: 'blue', shape: 'circle', box: [10, 10, 22, 22] }]), false); // overlaps
    assert.equal(checkEditPlan(scene, add, [{ colour: 'blue', shape: 'circle', box: [40, 40, 56, 56] }]), false); // 16 px: no size
    const change: EditSpec = { kind: 'change', ref: 'the square', colour: 'green' };
    assert.ok(checkEditPlan(scene, change, [{ colour: 'green', shape: 'square', box: [2, 2, 22, 22] }]));
    assert.equal(checkEditPlan(scene, change, [{ colour: 'green', shape: 'square', box: [2, 2, 14, 14] }]), false); // size kept
    assert.throws(
      () => checkEditPlan(scene, { kind: 'remove', ref: 'the circle' }, [{ colour: 'red', shape: 'square', box: [2, 2, 22, 22] }]),
      RangeError,
    );
  });
});
