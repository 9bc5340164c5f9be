import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { EDIT_KINDS, sampleEdit } from './edits.js';
import { editRegion } from './plans.js';
import { render } from './render.js';
import { Rng } from './rng.js';
import { generateScene } from './scene.js';
import { scoreLines, type ResultLine } from './scoring.js';

describe('scoring: edits with a plan', () => {
  it('scores edit modes apart and edit plans by checkEditPlan', () => {
    const rng = new Rng(3);
    const lines: ResultLine[] = [];
    const images: Uint8Array[] = [];
    for (let n = 0; lines.length < 16; n++) {
      const scene = generateScene(rng);
      const edit = sampleEdit(rng, scene, EDIT_KINDS[n % 4]);
      if (edit === undefined) continue;
      const base = { kind: edit.spec.kind, instruction: edit.text, before: scene };
      images.push(render(edit.target), render(scene));
      // The true result with the true plan; the source unchanged with the plan of another kind's edit (wrong).
      lines.push({ task: 'edit', mode: 'oracle_plan', ...base, image: images.length - 2 });
      lines.push({ task: 'edit', mode: 'plan', ...base, image: images.length - 1 });
      lines.push({ task: 'plan_edit', ...base, layout: editRegion(scene, edit.target) });
      lines.push({ task: 'plan_edit', ...base, layout: null });
    }
    const s = scoreLines(lines, images, 0) as Record<string, { overall: number; n: Record<string, number>; parsed?: number }>;
    assert.equal(s.edit_oracle_plan.overall, 1);
    assert.equal(s.edit_plan.overall, 0);
    assert.equal(s.edit, undefined);
    assert.equal(s.plan_edit.overall, 0.5);
    assert.equal(s.plan_edit.parsed, 0.5);
    assert.deepEqual(Object.keys(s.plan_edit.n).sort(), ['add', 'change', 'remove', 'replace']);
    assert.throws(() => scoreLines([{ ...lines[0], mode: 'guess' }], images, 0), /unknown edit mode guess/);
  });
});
