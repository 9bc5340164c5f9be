import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { EDIT_KINDS, applyEdit, checkEdit, editText, parseEdit, sampleEdit, type EditSpec } from './edits.js';
import { readImage } from './read.js';
import { render } from './render.js';
import { Rng } from './rng.js';
import { cloneScene, generateScene, sceneProblems, type Scene } from './scene.js';

const before: Scene = {
  background: 40,
  objects: [
    { shape: 'circle', colour: 'red', size: 'small', x: 5, y: 5 },
    { shape: 'square', colour: 'blue', size: 'large', x: 30, y: 30 },
  ],
};
const read = (s: Scene) => readImage(render(s));

describe('edits', () => {
  it('writes and parses the four instruction forms', () => {
    const specs: [EditSpec, string][] = [
      [{ kind: 'add', colour: 'orange', shape: 'triangle' }, 'add an orange triangle'],
      [{ kind: 'remove', ref: 'the circle' }, 'remove the circle'],
      [{ kind: 'change', ref: 'the small red circle', colour: 'green' }, 'change the small red circle to green'],
      [{ kind: 'replace', ref: 'the square', colour: 'yellow', shape: 'circle' }, 'replace the square with a yellow circle'],
    ];
    for (const [spec, text] of specs) {
      assert.equal(editText(spec), text);
      assert.deepEqual(parseEdit(text), spec);
    }
    assert.equal(parseEdit('paint the circle'), undefined);
  });

  it('passes the true edit and fails wrong ones, per kind', () => {
    const rng = new Rng(2);
    const moved = (s: Scene, i: number, dx: number): Scene => {
      const out = cloneScene(s);
      out.objects[i].x += dx;
      return out;
    };
    // change
    const change: EditSpec = { kind: 'change', ref: 'the circle', colour: 'green' };
    const changed = applyEdit(rng, before, change) as Scene;
    assert.ok(checkEdit(before, change, read(changed)));
    assert.ok(checkEdit(before, change, moved(changed, 0, 2)));
    assert.equal(checkEdit(before, change, read(before)), false, 'nothing changed');
    assert.equal(checkEdit(before, change, moved(changed, 0, 3)), false, 'changed object moved 3 px');
    assert.equal(checkEdit(before, change, moved(changed, 1, 3)), false, 'other object moved 3 px');
    const wrongColour = cloneScene(changed);
    wrongColour.objects[0].colour = 'yellow';
    assert.equal(checkEdit(before, change, read(wrongColour)), false);
    const alsoChanged = cloneScene(changed);
    alsoChanged.objects[1].colour = 'green';
    assert.equal(checkEdit(before, change, read(alsoChanged)), false, 'the other object changed too');
    // remove
    const remove: EditSpec = { kind: 'remove', ref: 'the square' };
    assert.ok(checkEdit(before, remove, read(applyEdit(rng, before, remove) as Scene)));
    assert.equal(checkEdit(before, remove, read(before)), false);
    assert.equal(checkEdit(before, remove, { background: 40, objects: [before.objects[1]] }), false, 'removed the wrong one');
    // add
    const add: EditSpec = { kind: 'add', colour: 'purple', shape: 'triangle' };
    const added = applyEdit(rng, before, add) as Scene;
    assert.deepEqual(sceneProblems(added), []);
    assert.ok(checkEdit(before, add, read(added)));
    const addedWrong = cloneScene(added);
    addedWrong.objects[2].shape = 'square';
    assert.equal(checkEdit(before, add, read(addedWrong)), false);
    assert.equal(checkEdit(before, add, read(before)), false);
    // replace
    const replace: EditSpec = { kind: 'replace', ref: 'the square', colour: 'yellow', shape: 'triangle' };
    const replaced = applyEdit(rng, before, replace) as Scene;
    assert.ok(checkEdit(before, replace, read(replaced)));
    assert.equal(checkEdit(before, replace, read(moved(replaced, 1, 6))), false, 'replacement elsewhere');
    assert.equal(checkEdit(before, replace, read(changed)), false);
    // An unclean result fails whatever it shows; a reference that picks out nothing throws.
    assert.equal(checkEdit(before, change, { ...read(changed), clean: false }), false);
    assert.throws(() => checkEdit(before, { kind: 'remove', ref: 'the triangle' }, before));
  });

  it('sampled edits are legal and pass through render and read', () => {
    const rng = new Rng(99);
    const kinds = new Set<string>();
    for (let i = 0; i < 400; i++) {
      const scene = generateScene(rng);
      const edit = sampleEdit(rng, scene);
      if (edit === undefined) continue;
      kinds.add(edit.spec.kind);
      assert.deepEqual(parseEdit(edit.text), edit.spec);
      assert.deepEqual(sceneProblems(edit.target), [], edit.text);
      assert.ok(checkEdit(scene, edit.spec, read(edit.target)), edit.text);
      assert.equal(checkEdit(scene, edit.spec, read(scene)), false, `no-op passes ${edit.text}`);
    }
    assert.equal(kinds.size, EDIT_KINDS.length);
    // No room: four objects cannot take a fifth.
    const full = generateScene(rng, { count: 4 });
    assert.equal(sampleEdit(rng, full, 'add'), undefined);
  });
});
