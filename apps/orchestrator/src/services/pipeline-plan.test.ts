import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import {
  JobName,
  QueueName,
  type EditJobData,
  type GenerateJobData,
  type PipelineJobData,
  type StageRef,
  type UnderstandingJobData,
  type UnderstandingResult,
} from '@lavida/contracts';
import { nextStep } from './pipeline-plan.js';

const model = { name: 'm', version: '1' };
const generated = (round: number) => ({
  tokens: [round],
  artifact: { name: `attempt-${round}.png`, contentType: 'image/png', bytes: 10 },
  model,
  timings: { totalMs: 1, steps: 16 },
  peer: 'p',
});
const verdict = (text: string): UnderstandingResult => ({ task: 'reflect', text, model, timings: { totalMs: 1, forwards: 8 } });

/** Runs the pipeline's decisions with the given stage results, as the orchestrator would. */
function walk(data: PipelineJobData, answer: (ref: StageRef) => unknown) {
  const results = new Map<string, unknown>();
  const steps: { ref: StageRef; name: JobName; data: unknown }[] = [];
  for (let i = 0; i < 20; i++) {
    const step = nextStep(data, results);
    if (step.kind === 'done') return { steps, result: step.result };
    steps.push(step);
    data = { ...data, stages: [...(data.stages ?? []), step.ref] };
    results.set(step.ref.jobId, answer(step.ref));
  }
  throw new Error('no end');
}

describe('pipeline decisions (nextStep)', () => {
  const t2i = (input: object): PipelineJobData => ({
    id: 'j',
    task: 'text-to-image',
    input: { task: 'text-to-image', prompt: 'a red circle', seed: 7, ...input },
    createdAt: '',
  });

  it('plan, generate, reflect; a rejected image is regenerated with its critique and image, up to `rounds`', () => {
    const { steps, result } = walk(t2i({ plan: true, reflect: true, rounds: 3, cfg_interval: [0.25, 1] }), (ref) =>
      ref.stage === 'plan'
        ? { task: 'plan', layout: [{ label: 'red circle', bins: [1, 2, 3, 4] }], model, timings: { totalMs: 1, forwards: 11 } }
        : ref.stage === 'generate'
          ? generated(ref.round!)
          : verdict('the circle is missing'),
    );
    assert.deepEqual(
      steps.map((s) => `${s.ref.stage}${s.ref.round ?? ''}`),
      ['plan', 'generate1', 'reflect1', 'generate2', 'reflect2', 'generate3', 'reflect3'],
    );
    const g1 = steps[1].data as GenerateJobData;
    const g2 = steps[3].data as GenerateJobData;
    assert.deepEqual(g1.plan, [{ label: 'red circle', bins: [1, 2, 3, 4] }]);
    assert.equal(g1.feedback, undefined);
    assert.equal(g1.seed, 7);
    assert.equal(g2.plan, undefined, 'regenerations use the feedback template, not the plan');
    assert.deepEqual(g2.feedback, { verdict: 'the circle is missing', image: { jobId: 'j', name: 'attempt-1.png' } });
    assert.equal(g2.seed, 7 + 2 ** 32);
    // The request's guidance interval goes to every image (a regeneration's image side guides every step regardless).
    assert.deepEqual(
      [g1.cfgInterval, g2.cfgInterval],
      [
        [0.25, 1],
        [0.25, 1],
      ],
    );
    assert.equal(steps[2].ref.queue, QueueName.Understanding);
    assert.equal(steps[2].name, JobName.Reflect);
    assert.equal(result.accepted, false);
    assert.equal(result.attempts!.length, 3);
    assert.equal(result.image!.artifact.name, 'attempt-3.png');
    assert.ok(result.attempts!.every((a) => a.verdict === 'the circle is missing'));
  });

  it('stops at the first accepted image', () => {
    const { steps, result } = walk(t2i({ reflect: true }), (ref) =>
      ref.stage === 'generate' ? generated(ref.round!) : verdict(ref.round === 2 ? 'correct' : 'wrong colour'),
    );
    assert.deepEqual(
      steps.map((s) => `${s.ref.stage}${s.ref.round ?? ''}`),
      ['generate1', 'reflect1', 'generate2', 'reflect2'],
    );
    assert.equal(result.accepted, true);
    assert.equal(result.image!.artifact.name, 'attempt-2.png');
  });

  it('without plan and reflection: one generate stage; stage job ids are fixed (queuing again is a no-op)', () => {
    const { steps, result } = walk(t2i({}), (ref) => generated(ref.round!));
    assert.deepEqual(
      steps.map((s) => s.ref.jobId),
      ['j-generate-1'],
    );
    assert.equal(result.accepted, undefined);
    const again = nextStep(t2i({}), new Map());
    assert.equal(again.kind === 'stage' && again.ref.jobId, 'j-generate-1');
  });

  it('respond: one stage on the understanding queue with the sampler options; the result is the image or the text, with the modality', () => {
    const data: PipelineJobData = {
      id: 'r',
      task: 'respond',
      input: {
        task: 'respond',
        prompt: 'a blue circle',
        seed: 9,
        steps: 12,
        guidance: 1.5,
        temperature: 0.5,
        correction_sweeps: 2,
        cfg_interval: [0.25, 1],
        luminance: 0.25,
        priority: 2,
      },
      createdAt: '',
    };
    const image = { artifact: { name: 'image.png', contentType: 'image/png', bytes: 10 }, tokens: [1, 2] };
    const drawn = walk(data, () => ({ task: 'respond', modality: 'image', image, peer: 'g', model, timings: { totalMs: 1, forwards: 1 } }));
    assert.equal(drawn.steps.length, 1);
    const [stage] = drawn.steps;
    assert.deepEqual(stage.ref, { stage: 'respond', queue: QueueName.Understanding, jobId: 'r-respond' });
    assert.equal(stage.name, JobName.Respond);
    assert.deepEqual(stage.data, {
      jobId: 'r',
      task: 'respond',
      prompt: 'a blue circle',
      seed: 9,
      steps: 12,
      guidance: 1.5,
      temperature: 0.5,
      correctionSweeps: 2,
      cfgInterval: [0.25, 1],
      luminance: 0.25,
      output: 'image.png',
    });
    assert.deepEqual(drawn.result, { task: 'respond', modality: 'image', image, model });
    const said = walk(data, () => ({ task: 'respond', modality: 'text', text: 'circle', model, timings: { totalMs: 1, forwards: 3 } }));
    assert.deepEqual(said.result, { task: 'respond', modality: 'text', text: 'circle', model });
  });

  it('edit with plan: plan_edit on the understanding queue from the source image, then the edit given that region', () => {
    const image = { jobId: 'e', name: 'input.png' };
    const edit = (input: object): PipelineJobData => ({
      id: 'e',
      task: 'edit',
      input: { task: 'edit', instruction: 'remove the square', image, seed: 3, ...input },
      createdAt: '',
    });
    const region = [{ label: 'red square', bins: [672, 400, 864, 592] as [number, number, number, number] }];
    const answer = (ref: StageRef) =>
      ref.stage === 'plan_edit' ? { task: 'plan_edit', layout: region, model, timings: { totalMs: 1, forwards: 14 } } : generated(1);
    const planned = walk(edit({ plan: true }), answer);
    assert.deepEqual(
      planned.steps.map((s) => [s.ref.stage, s.ref.queue, s.name, s.ref.jobId]),
      [
        ['plan_edit', QueueName.Understanding, JobName.PlanEdit, 'e-plan_edit'],
        ['edit', QueueName.Generation, JobName.Edit, 'e-edit'],
      ],
    );
    assert.deepEqual(planned.steps[0].data, {
      jobId: 'e',
      task: 'plan_edit',
      image,
      instruction: 'remove the square',
    } satisfies UnderstandingJobData);
    const e = planned.steps[1].data as EditJobData;
    assert.deepEqual([e.plan, e.instruction, e.seed, e.image], [region, 'remove the square', 3, image]);
    assert.deepEqual(planned.result.plan, region);
    assert.equal(planned.result.image!.artifact.name, 'attempt-1.png');
    // Without plan: one edit stage, no plan in its data or the result.
    const plain = walk(edit({}), answer);
    assert.deepEqual(
      plain.steps.map((s) => s.ref.stage),
      ['edit'],
    );
    assert.equal((plain.steps[0].data as EditJobData).plan, undefined);
    assert.equal(plain.result.plan, undefined);
  });

  it('a stage whose result is missing is an error, not a guess', () => {
    const data = {
      ...t2i({ reflect: true }),
      stages: [{ stage: 'generate', queue: QueueName.Generation, jobId: 'j-generate-1', round: 1 } as StageRef],
    };
    assert.throws(() => nextStep(data, new Map()), /j-generate-1 has no result/);
  });
});
