import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { layoutIds, layoutLabelSlots, ManifestSchema, parseLayout, WordTokenizer, type Manifest } from '@lavida/model';
import { ModelPackageError } from '@lavida/contracts';
import { MINI_MODEL } from '../support/paths.js';

// A decoded plan may hold an item whose label is not one of the layouts the model was trained on ("circle circle");
// the reference sampler (model/lavida_mini/sample.py, Sampler.parse_layout) skips it, and so must the runtime,
// or a planned image is drawn from another plan than PyTorch's. The manifest says which words each label slot
// takes (tasks.layout_words); a package without it keeps any words (a model whose labels are free text).
describe('layout parsing with the label words of tasks.layout_words', () => {
  const manifest = ManifestSchema.parse(JSON.parse(readFileSync(join(MINI_MODEL, 'manifest.json'), 'utf8')));
  const tok = new WordTokenizer(manifest.text);
  const items = [
    { label: 'purple circle', bins: [672, 144, 864, 336] as [number, number, number, number] },
    { label: 'circle circle', bins: [672, 256, 992, 576] as [number, number, number, number] },
    { label: 'red', bins: [16, 16, 208, 208] as [number, number, number, number] },
    { label: 'small red square', bins: [16, 16, 208, 208] as [number, number, number, number] },
    { label: 'orange triangle', bins: [16, 640, 336, 960] as [number, number, number, number] },
  ];
  const ids = [...layoutIds(tok, items), tok.special.eos];
  const without = (m: Manifest): Manifest => {
    const tasks = { ...(m.tasks as Record<string, unknown>) };
    delete tasks.layout_words;
    return { ...m, tasks };
  };

  it('the bundled manifest names a colour and a shape for each label', () => {
    const slots = layoutLabelSlots(manifest);
    assert.ok(slots, 'tasks.layout_words is missing');
    assert.equal(slots.length, 2);
    assert.ok(slots[0].has('purple') && !slots[0].has('circle'));
    assert.ok(slots[1].has('circle') && !slots[1].has('purple'));
  });

  it('skips items whose label is not one word of each slot, as the reference sampler does', () => {
    const layout = parseLayout(tok, ids, manifest);
    assert.deepEqual(
      layout.map((i) => [i.label, i.bins]),
      [
        ['purple circle', [672, 144, 864, 336]],
        ['orange triangle', [16, 640, 336, 960]],
      ],
    );
  });

  it('keeps any words when the manifest names none', () => {
    const m = without(manifest);
    assert.equal(layoutLabelSlots(m), undefined);
    assert.deepEqual(
      parseLayout(tok, ids, m).map((i) => i.label),
      items.map((i) => i.label),
    );
  });

  it('rejects a malformed layout_words with a package error', () => {
    const tasks = { ...(manifest.tasks as Record<string, unknown>), layout_words: { colour: ['red'] } };
    assert.throws(
      () => layoutLabelSlots({ ...manifest, tasks }),
      (e: unknown) => e instanceof ModelPackageError && /\{shape\}/.test(e.message),
    );
    const bad = { ...(manifest.tasks as Record<string, unknown>), layout_words: { colour: 'red' } };
    assert.throws(() => layoutLabelSlots({ ...manifest, tasks: bad }), ModelPackageError);
  });
});
