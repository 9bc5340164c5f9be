import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { decodeTokens, editImage, encodeImage, LocalJointPeer, ModelPackage, textToImage, UnderstandingEngine } from '@lavida/model';
import { MINI_MODEL } from '../support/paths.js';

/**
 * The TypeScript runtime against the PyTorch reference sampler (model/lavida_mini/sample.py) on
 * the trained model, task by task, token for token: models/lavida-o-mini/tasks-golden.json, written
 * by `python3 -m lavida_mini.golden_tasks` (or export with --golden-data). The cases were chosen
 * where no decision sits within float32 noise of a tie (their `margin`), so ONNX and PyTorch rounding
 * differences cannot flip a token.
 */
interface Case {
  task: 'text_to_image' | 'edit' | 'understand' | 'reflect' | 'plan' | 'ground' | 'respond' | 'plan_edit';
  [key: string]: unknown;
}
interface Golden {
  format: string;
  model: { name: string; version: string; checkpoint_step: number };
  settings: {
    per_step: Record<string, number | string>;
    eos_bias?: Record<string, number>;
    correction_sweeps?: number;
    correction_guidance?: number | null;
    cfg_interval?: [number, number];
    box_prior?: { tol: number; entries: [number, number, number][] };
  };
  cases: Case[];
}

describe('lavida-o-mini: every task equals the PyTorch reference sampler (tasks-golden.json)', () => {
  let pkg: ModelPackage;
  let engine: UnderstandingEngine;
  let peer: LocalJointPeer;
  const golden = JSON.parse(readFileSync(join(MINI_MODEL, 'tasks-golden.json'), 'utf8')) as Golden;

  before(async () => {
    pkg = await ModelPackage.load(MINI_MODEL, { branch: 'all' });
    engine = new UnderstandingEngine(pkg);
    peer = new LocalJointPeer(pkg);
  });
  after(async () => {
    await pkg?.release();
  });

  const pixelsOf = async (tokens: number[]) => {
    const pixels = await decodeTokens(pkg, tokens);
    // The runtime reads images as pixels and re-encodes them: the round trip must give the same codes.
    assert.deepEqual(await encodeImage(pkg, pixels), tokens, 'vq_encode(vq_decode(codes)) = codes');
    return pixels;
  };

  it('is the golden file of this package', () => {
    assert.equal(golden.format, 'lavida-task-golden/v1');
    assert.equal(golden.model.name, pkg.manifest.name);
    assert.equal(golden.model.version, pkg.manifest.version);
    const tasks = new Set(golden.cases.map((c) => c.task));
    for (const task of ['text_to_image', 'edit', 'understand', 'reflect', 'plan', 'ground', 'respond'])
      assert.ok(tasks.has(task as Case['task']), task);
    // A package with the editing-with-a-plan templates carries their cases (edit plans, and edits given them).
    const templates = pkg.manifest.tasks as { plan_edit?: string; edit_plan?: string };
    const editPlans = templates.plan_edit !== undefined && templates.edit_plan !== undefined;
    assert.equal(tasks.has('plan_edit'), editPlans, 'plan_edit cases exactly when the package plans edits');
    assert.equal(
      golden.cases.some((c) => c.task === 'edit' && c.plan),
      editPlans,
      'edit-with-plan cases exactly when the package plans edits',
    );
  });

  it("samples images with the package's correction sweeps and guidance interval, the reference sampler's", () => {
    assert.equal(pkg.manifest.sampling.correction_sweeps ?? 0, golden.settings.correction_sweeps ?? 0);
    assert.equal(pkg.manifest.sampling.correction_guidance ?? null, golden.settings.correction_guidance ?? null);
    assert.deepEqual(pkg.manifest.sampling.cfg_interval ?? [0, 1], golden.settings.cfg_interval ?? [0, 1]);
  });

  it("grounds in one step and re-decodes plan boxes under the package's box prior, the reference sampler's, and the prior decides golden outputs", async () => {
    const tasks = pkg.manifest.tasks as { box_prior?: unknown };
    assert.deepEqual(tasks.box_prior ?? null, golden.settings.box_prior ?? null);
    if (!tasks.box_prior) return;
    const oneStep = golden.cases.filter((c) => c.task === 'ground' && c.steps === 1);
    // Three steps fix 2 slots a forward: 2 forwards, reported as such.
    const reported: [number, number][] = [];
    const three = await engine.ground(await pixelsOf(oneStep[0].image_tokens as number[]), [oneStep[0].ref as string], {
      steps: 3,
      onStep: (step, steps) => void reported.push([step, steps]),
    });
    assert.equal(three.forwards, 2);
    assert.deepEqual(reported, [
      [1, 2],
      [2, 2],
    ]);
    assert.ok(oneStep.length > 0 && oneStep.every((c) => Array.isArray(c.argmax_bins)), 'one-step ground cases carry argmax_bins');
    assert.ok(
      oneStep.some((c) => JSON.stringify(c.argmax_bins) !== JSON.stringify(c.bins)),
      "every golden one-step box is each slot's own argmax: the cases would not check the prior",
    );
    const plans = golden.cases.filter((c) => c.task === 'plan');
    if (!(tasks.box_prior as { plans?: boolean }).plans) return;
    assert.ok(
      plans.some((c) => JSON.stringify(c.slot_ids) !== JSON.stringify(c.answer_ids)),
      'the box prior re-decodes no box of the golden plans: the cases would not check it',
    );
  });

  it("decodes answer slots with the package's per_step and eos_bias, the reference sampler's settings", async () => {
    const tasks = pkg.manifest.tasks as { per_step?: Record<string, number>; eos_bias?: Record<string, number> };
    assert.equal(tasks.per_step?.plan ?? 4, golden.settings.per_step.plan);
    assert.equal(tasks.eos_bias?.plan ?? 0, golden.settings.eos_bias?.plan ?? 0);
    const plans = golden.cases.filter((c) => c.task === 'plan');
    if (!tasks.eos_bias?.plan) return;
    // The bias must decide something in the golden plans, or the cases above would not check it.
    const unbiased = await Promise.all(plans.map((c) => engine.plan(c.prompt as string, { eosBias: 0 })));
    assert.ok(
      unbiased.some((r, i) => JSON.stringify(r.ids) !== JSON.stringify(plans[i].answer_ids)),
      'every golden plan decodes the same without the [eos] bias',
    );
  });

  for (const [index, c] of golden.cases.entries()) {
    const what = `${index}: ${c.task} ${JSON.stringify(c.prompt ?? c.question ?? c.ref ?? c.instruction ?? '')}${c.plan ? ' + plan' : ''}${c.feedback ? ' + feedback' : ''}${c.task === 'ground' ? ` in ${c.steps as number} steps` : ''}`;
    it(what, async () => {
      const n = (key: string) => c[key] as number;
      switch (c.task) {
        case 'text_to_image': {
          const plan = (c.plan as { colour: string; shape: string; bins: [number, number, number, number] }[] | undefined)?.map((p) => ({
            label: `${p.colour} ${p.shape}`,
            bins: p.bins,
          }));
          const fb = c.feedback as { verdict: string; image_tokens: number[] } | undefined;
          const result = await textToImage(
            pkg,
            peer,
            {
              prompt: c.prompt as string,
              luminance: (c.luminance as number | null) ?? undefined,
              seed: n('seed'),
              steps: n('steps'),
              guidance: n('guidance'),
              temperature: n('temperature'),
              plan,
              feedback: fb ? { verdict: fb.verdict, pixels: await pixelsOf(fb.image_tokens) } : undefined,
            },
            { sessionId: `golden-${index}` },
          );
          assert.deepEqual(result.tokens, c.tokens);
          return;
        }
        case 'edit': {
          const result = await editImage(
            pkg,
            peer,
            {
              instruction: c.instruction as string,
              pixels: await pixelsOf(c.image_tokens as number[]),
              seed: n('seed'),
              steps: n('steps'),
              guidance: n('guidance'),
              temperature: n('temperature'),
              plan: c.plan as { label: string; bins: [number, number, number, number] }[] | undefined,
            },
            { sessionId: `golden-${index}` },
          );
          assert.deepEqual(result.tokens, c.tokens);
          return;
        }
        case 'understand': {
          const result = await engine.understand(await pixelsOf(c.image_tokens as number[]), c.question as string);
          assert.deepEqual(result.ids, c.answer_ids);
          assert.equal(result.text, c.answer);
          return;
        }
        case 'reflect': {
          const result = await engine.reflect(await pixelsOf(c.image_tokens as number[]), c.prompt as string);
          assert.deepEqual(result.ids, c.answer_ids);
          assert.equal(result.text, c.verdict);
          return;
        }
        case 'plan': {
          const result = await engine.plan(c.prompt as string);
          assert.deepEqual(result.ids, c.answer_ids);
          if (c.slot_ids) {
            // The plan as decoded, before its boxes are re-decoded under the package's box prior.
            const asDecoded = await engine.plan(c.prompt as string, { boxPrior: false });
            assert.deepEqual(asDecoded.ids, c.slot_ids);
          }
          const want = c.layout as { colour: string; shape: string; bins: number[]; box: number[] }[];
          assert.deepEqual(
            result.layout.map((l) => ({ label: l.label, bins: l.bins })),
            want.map((l) => ({ label: `${l.colour} ${l.shape}`, bins: l.bins })),
          );
          result.layout.forEach((l, i) => l.box.forEach((v, j) => assert.ok(Math.abs(v - want[i].box[j]) < 1e-6)));
          return;
        }
        case 'plan_edit': {
          const pixels = await pixelsOf(c.image_tokens as number[]);
          const result = await engine.planEdit(pixels, c.instruction as string);
          assert.deepEqual(result.ids, c.answer_ids);
          if (c.slot_ids) assert.deepEqual((await engine.planEdit(pixels, c.instruction as string, { boxPrior: false })).ids, c.slot_ids);
          const want = c.layout as { colour: string; shape: string; bins: number[] }[];
          assert.deepEqual(
            result.layout.map((l) => ({ label: l.label, bins: l.bins })),
            want.map((l) => ({ label: `${l.colour} ${l.shape}`, bins: l.bins })),
          );
          return;
        }
        case 'ground': {
          const result = await engine.ground(await pixelsOf(c.image_tokens as number[]), [c.ref as string], { steps: n('steps') });
          assert.deepEqual(result.bins[0], c.bins);
          result.boxes[0].forEach((v, j) => assert.ok(Math.abs(v - (c.box as number[])[j]) < 1e-6, `box ${j}`));
          assert.equal(result.forwards, n('steps'));
          if (c.argmax_bins) {
            // One step under the package's box prior; without it, each slot's own argmax.
            const plain = await engine.ground(await pixelsOf(c.image_tokens as number[]), [c.ref as string], { steps: 1, boxPrior: false });
            assert.deepEqual(plain.bins[0], c.argmax_bins);
          }
          return;
        }
        case 'respond': {
          const result = await engine.respond(c.prompt as string);
          assert.equal(result.token, c.token);
          assert.equal(result.kind, c.token === pkg.manifest.text.special_tokens.exp ? 'image' : 'text');
          return;
        }
      }
    });
  }
});
