import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { mkdtemp, readdir, readFile, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { decodeTokens, editImage, LocalJointPeer, ModelPackage, UnderstandingEngine } from '@lavida/model';
import { MINI_MODEL, ROOT } from '../support/paths.js';

/**
 * Editing with a plan, the runtime against the PyTorch reference sampler: the bundled package's segments with the
 * plan_edit / edit_plan templates added to its manifest (test/fixtures/edit-plan-golden.json, written by
 * model/runs/edit-plan-golden.py from `export.py --edit-plan yes`). The bundled weights never trained these tasks,
 * so this checks the decoding (the plan slot after the source image, the edit_plan template), not the model.
 */
interface Fixture {
  model: { name: string; version: string };
  tasks: { plan_edit: string; edit_plan: string; answer_len: { plan_edit: number }; per_step: { plan_edit: number } };
  cases: { task: 'plan_edit' | 'edit'; [key: string]: unknown }[];
}

describe('editing with a plan equals the PyTorch reference sampler (bundled weights, templates added)', () => {
  const fixture = JSON.parse(readFileSync(join(ROOT, 'test/fixtures/edit-plan-golden.json'), 'utf8')) as Fixture;
  let dir: string;
  let pkg: ModelPackage;
  let engine: UnderstandingEngine;

  before(async () => {
    const manifest = JSON.parse(await readFile(join(MINI_MODEL, 'manifest.json'), 'utf8')) as {
      name: string;
      version: string;
      tasks: Record<string, unknown> & { answer_len: Record<string, number>; per_step: Record<string, number> };
    };
    assert.deepEqual(
      [manifest.name, manifest.version],
      [fixture.model.name, fixture.model.version],
      'the fixture was made for another package: regenerate it (model/runs/edit-plan-golden.py)',
    );
    manifest.tasks.plan_edit = fixture.tasks.plan_edit;
    manifest.tasks.edit_plan = fixture.tasks.edit_plan;
    manifest.tasks.answer_len.plan_edit = fixture.tasks.answer_len.plan_edit;
    manifest.tasks.per_step.plan_edit = fixture.tasks.per_step.plan_edit;
    dir = await mkdtemp(join(tmpdir(), 'edit-plan-'));
    for (const name of await readdir(MINI_MODEL)) if (name !== 'manifest.json') await symlink(join(MINI_MODEL, name), join(dir, name));
    await writeFile(join(dir, 'manifest.json'), JSON.stringify(manifest));
    pkg = await ModelPackage.load(dir, { branch: 'all' });
    engine = new UnderstandingEngine(pkg);
  });
  after(async () => {
    await pkg?.release();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it('has plan_edit cases and edits given a plan', () => {
    assert.ok(fixture.cases.filter((c) => c.task === 'plan_edit').length >= 2);
    assert.ok(fixture.cases.filter((c) => c.task === 'edit' && Array.isArray(c.plan) && c.plan.length > 0).length >= 2);
  });

  for (const [index, c] of fixture.cases.entries()) {
    it(`${index}: ${c.task} ${JSON.stringify(c.instruction)}`, async () => {
      const pixels = await decodeTokens(pkg, c.image_tokens as number[]);
      if (c.task === 'plan_edit') {
        const result = await engine.planEdit(pixels, c.instruction as string);
        assert.deepEqual(result.ids, c.answer_ids);
        assert.equal(result.forwards, (c.answer_ids as number[]).length + result.layout.length, 'one forward a slot, one a box');
        assert.deepEqual(
          result.layout.map((l) => ({ label: l.label, bins: l.bins })),
          (c.layout as { colour: string; shape: string; bins: number[] }[]).map((l) => ({ label: `${l.colour} ${l.shape}`, bins: l.bins })),
        );
        return;
      }
      const plan = c.plan as { label: string; bins: [number, number, number, number] }[];
      const n = (key: string) => c[key] as number;
      const edit = (withPlan: boolean, sessionId: string) =>
        editImage(
          pkg,
          new LocalJointPeer(pkg),
          {
            instruction: c.instruction as string,
            pixels,
            seed: n('seed'),
            steps: n('steps'),
            guidance: n('guidance'),
            temperature: n('temperature'),
            ...(withPlan ? { plan } : {}),
          },
          { sessionId },
        );
      const result = await edit(true, `edit-plan-${index}`);
      assert.deepEqual(result.tokens, c.tokens);
      // The plan is in the text: without it the same seed draws another image.
      const plain = await edit(false, `edit-plain-${index}`);
      assert.notDeepEqual(plain.tokens, result.tokens);
    });
  }
});
