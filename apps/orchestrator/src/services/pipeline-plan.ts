import {
  JobName,
  QueueName,
  type AttemptResult,
  type EditJobData,
  type GenerateJobData,
  type GenerateResult,
  type PipelineJobData,
  type PipelineResult,
  type StageRef,
  type UnderstandingJobData,
  type UnderstandingResult,
} from '@lavida/contracts';
import { stageJobId } from '../repositories/stage-queue.repository.js';

/** What the pipeline does next: queue a stage, or finish with a result. */
export type NextStep =
  | { kind: 'stage'; ref: StageRef; name: JobName; data: GenerateJobData | EditJobData | UnderstandingJobData }
  | { kind: 'done'; result: PipelineResult };

type Results = ReadonlyMap<string, unknown>;

/** Reflection rounds default: at most this many images. */
export const DEFAULT_ROUNDS = 3;

/**
 * The pipeline as a pure function of its data and its finished stages' results: the next stage to
 * queue, or the result. Deterministic, so an orchestrator that restarts mid-pipeline recomputes the
 * same step (and queuing a stage twice is a no-op: stage job ids are fixed).
 */
export function nextStep(data: PipelineJobData, results: Results): NextStep {
  const stages = data.stages ?? [];
  const input = data.input;
  const id = data.id;
  const result = <T>(ref: StageRef): T => {
    if (!results.has(ref.jobId)) throw new Error(`stage ${ref.jobId} has no result`);
    return results.get(ref.jobId) as T;
  };
  const understanding = (stage: StageRef['stage'], payload: UnderstandingJobData, round?: number): NextStep => ({
    kind: 'stage',
    ref: { stage, queue: QueueName.Understanding, jobId: stageJobId(id, stage, round), ...(round === undefined ? {} : { round }) },
    name: payload.task as JobName,
    data: payload,
  });
  const model = (r: { model: { name: string; version: string } }) => r.model;

  switch (input.task) {
    case 'understand': {
      if (stages.length === 0) {
        return understanding('understand', {
          jobId: id,
          task: 'understand',
          image: input.image,
          question: input.question,
          promptCache: input.prompt_cache,
        });
      }
      const r = result<UnderstandingResult>(stages[0]);
      return { kind: 'done', result: { task: 'understand', text: r.text, model: model(r) } };
    }
    case 'respond': {
      // One stage on the understanding queue: the model answers text, or `[exp]` and the und-worker
      // draws the image (a generation worker serving the image side).
      if (stages.length === 0) {
        return understanding('respond', {
          jobId: id,
          task: 'respond',
          prompt: input.prompt,
          seed: input.seed,
          steps: input.steps,
          guidance: input.guidance,
          temperature: input.temperature,
          correctionSweeps: input.correction_sweeps,
          cfgInterval: input.cfg_interval,
          luminance: input.luminance,
          output: 'image.png',
        });
      }
      const r = result<UnderstandingResult>(stages[0]);
      return {
        kind: 'done',
        result: {
          task: 'respond',
          modality: r.modality,
          ...(r.image ? { image: r.image } : {}),
          ...(r.text === undefined ? {} : { text: r.text }),
          model: model(r),
        },
      };
    }
    case 'ground': {
      if (stages.length === 0)
        return understanding('ground', { jobId: id, task: 'ground', image: input.image, refs: input.refs, steps: input.steps });
      const r = result<UnderstandingResult>(stages[0]);
      return { kind: 'done', result: { task: 'ground', boxes: r.boxes, model: model(r) } };
    }
    case 'edit': {
      // With `plan`: the understanding branch plans the edit's region from the source image first (plan_edit).
      const planRef = stages.find((s) => s.stage === 'plan_edit');
      const layout = planRef ? result<UnderstandingResult>(planRef).layout : undefined;
      if (stages.length === 0 && input.plan)
        return understanding('plan_edit', { jobId: id, task: 'plan_edit', image: input.image, instruction: input.instruction });
      const last = stages.at(-1);
      if (!last || last.stage === 'plan_edit') {
        const payload: EditJobData = {
          jobId: id,
          instruction: input.instruction,
          image: input.image,
          seed: input.seed ?? 0,
          steps: input.steps,
          guidance: input.guidance,
          imageGuidance: input.image_guidance,
          temperature: input.temperature,
          correctionSweeps: input.correction_sweeps,
          output: 'image.png',
          ...(layout ? { plan: layout } : {}),
        };
        return {
          kind: 'stage',
          ref: { stage: 'edit', queue: QueueName.Generation, jobId: stageJobId(id, 'edit') },
          name: JobName.Edit,
          data: payload,
        };
      }
      const r = result<GenerateResult>(last);
      return {
        kind: 'done',
        result: { task: 'edit', image: { artifact: r.artifact, tokens: r.tokens }, ...(layout ? { plan: layout } : {}), model: model(r) },
      };
    }
    case 'text-to-image': {
      const rounds = input.reflect ? (input.rounds ?? DEFAULT_ROUNDS) : 1;
      const planRef = stages.find((s) => s.stage === 'plan');
      const layout = planRef ? result<UnderstandingResult>(planRef).layout : undefined;
      const generate = (round: number, feedback?: { verdict: string }): NextStep => ({
        kind: 'stage',
        ref: { stage: 'generate', queue: QueueName.Generation, jobId: stageJobId(id, 'generate', round), round },
        name: JobName.Generate,
        data: {
          jobId: id,
          prompt: input.prompt,
          // Each round samples afresh (the reference sampler's seed + round * 2^32).
          seed: (input.seed ?? 0) + (round - 1) * 2 ** 32,
          steps: input.steps,
          guidance: input.guidance,
          temperature: input.temperature,
          correctionSweeps: input.correction_sweeps,
          cfgInterval: input.cfg_interval,
          luminance: input.luminance,
          output: `attempt-${round}.png`,
          // The plan conditions the first image; regenerations get the critique and the earlier image (as trained).
          plan: round === 1 ? layout : undefined,
          feedback: feedback ? { verdict: feedback.verdict, image: { jobId: id, name: `attempt-${round - 1}.png` } } : undefined,
        },
      });
      const last = stages.at(-1);
      if (!last) return input.plan ? understanding('plan', { jobId: id, task: 'plan', prompt: input.prompt }) : generate(1);
      if (last.stage === 'plan') return generate(1);
      const attempts: AttemptResult[] = stages
        .filter((s) => s.stage === 'generate')
        .map((s) => {
          const r = result<GenerateResult>(s);
          const reflection = stages.find((x) => x.stage === 'reflect' && x.round === s.round);
          const verdict = reflection && results.has(reflection.jobId) ? result<UnderstandingResult>(reflection).text : undefined;
          return { round: s.round!, artifact: r.artifact, tokens: r.tokens, ...(verdict === undefined ? {} : { verdict }) };
        });
      const round = last.round!;
      if (last.stage === 'generate' && input.reflect) {
        return understanding(
          'reflect',
          { jobId: id, task: 'reflect', image: { jobId: id, name: `attempt-${round}.png` }, prompt: input.prompt },
          round,
        );
      }
      const verdict = attempts.at(-1)?.verdict;
      const accepted = verdict !== undefined && verdict.trim() === 'correct';
      if (last.stage === 'reflect' && !accepted && round < rounds) return generate(round + 1, { verdict: verdict ?? '' });
      const chosen = attempts.at(-1)!;
      const gen = result<GenerateResult>(stages.filter((s) => s.stage === 'generate').at(-1)!);
      return {
        kind: 'done',
        result: {
          task: 'text-to-image',
          image: { artifact: chosen.artifact, tokens: chosen.tokens },
          attempts,
          ...(input.reflect ? { accepted } : {}),
          ...(layout ? { plan: layout } : {}),
          model: model(gen),
        },
      };
    }
  }
}
