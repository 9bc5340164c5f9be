import { z } from 'zod';
import { TASKS, type PipelineResult } from './jobs.js';
import { WEBHOOK_EVENTS } from './webhooks.js';

/*
 * What the api answers, as schemas: the source of the response side of docs/openapi.json
 * (scripts/openapi.mjs). apps/api's DTO types are checked against them at compile time.
 */

export const JOB_STATUSES = ['queued', 'processing', 'succeeded', 'failed', 'canceled'] as const;

const box = z.tuple([z.number(), z.number(), z.number(), z.number()]);
const planItem = z.object({ label: z.string(), bins: z.tuple([z.number(), z.number(), z.number(), z.number()]), box: box.optional() });
const iso = z.string().nullable();

/** One stage of a job's timeline. */
export const StageViewSchema = z.object({
  stage: z.enum(['plan', 'plan_edit', 'generate', 'reflect', 'edit', 'ground', 'understand', 'respond']).describe('the stage'),
  round: z.number().int().optional().describe('round of a generate / reflect stage, from 1'),
  status: z.enum(JOB_STATUSES),
  attempts: z.number().int(),
  logs: z.array(z.string()).describe('one line per failed attempt, oldest first'),
  progress: z.unknown(),
  peer: z.string().optional(),
  image: z.string().optional().describe('PNG URL of the image the stage made'),
  plan: z.array(planItem).optional(),
  verdict: z.string().optional(),
  text: z.string().optional(),
  boxes: z.array(box).optional(),
  started_at: iso,
  completed_at: iso,
  error: z.string().nullable(),
});

/** A job's output, by task. */
export const OutputViewSchema = z.object({
  image: z.string().optional().describe('PNG URL (text-to-image: the accepted attempt, else the last; respond: an image answer)'),
  tokens: z.array(z.number().int()).optional(),
  attempts: z.array(z.object({ round: z.number().int(), image: z.string(), verdict: z.string().optional() })).optional(),
  accepted: z.boolean().optional(),
  plan: z.array(planItem).optional(),
  text: z.string().optional().describe('the answer (understand; respond when the answer is text)'),
  modality: z.enum(['image', 'text']).optional().describe('respond: image when the model answered with an image ([exp]), else text'),
  boxes: z.array(box).optional().describe('x1, y1, x2, y2 in pixels, one per reference'),
  model: z.string(),
});

const webhookAttempt = z
  .object({ at: z.string(), status: z.number().int().optional(), error: z.string().optional(), ms: z.number().optional() })
  .loose();

/** A job as the api shows it, after Replicate's predictions. */
export const JobViewSchema = z.object({
  id: z.string(),
  task: z.enum(TASKS),
  status: z.enum(JOB_STATUSES),
  input: z.record(z.string(), z.unknown()),
  output: OutputViewSchema.nullable(),
  error: z.string().nullable(),
  progress: z.unknown(),
  created_at: z.string(),
  started_at: iso,
  completed_at: iso,
  timeline: z.array(StageViewSchema),
  urls: z.object({ get: z.string() }),
  webhook: z
    .object({
      url: z.string(),
      events: z.array(z.enum(WEBHOOK_EVENTS)),
      deliveries: z.array(
        z
          .object({
            id: z.string(),
            event: z.enum(WEBHOOK_EVENTS),
            stage: z.string().optional(),
            status: z.string(),
            created_at: z.string(),
            attempts: z.array(webhookAttempt),
          })
          .loose(),
      ),
    })
    .optional(),
});

/** A page of `GET /v1/jobs`. */
export const JobListViewSchema = z.object({ results: z.array(JobViewSchema), next: z.string().nullable() });

/** Every error answer. */
export const ErrorViewSchema = z.object({
  error: z.object({ status: z.number().int(), code: z.string(), message: z.string(), field: z.string().optional() }),
});

export type OutputView = z.infer<typeof OutputViewSchema>;

/** A pipeline result as the api (and the webhooks) show it; `url` is the job's URL. */
export function outputView(result: PipelineResult, url: string): OutputView {
  const file = (name: string) => `${url}/files/${name}`;
  return {
    ...(result.image ? { image: file(result.image.artifact.name), tokens: result.image.tokens } : {}),
    ...(result.attempts
      ? {
          attempts: result.attempts.map((a) => ({
            round: a.round,
            image: file(a.artifact.name),
            ...(a.verdict === undefined ? {} : { verdict: a.verdict }),
          })),
        }
      : {}),
    ...(result.accepted === undefined ? {} : { accepted: result.accepted }),
    ...(result.plan ? { plan: result.plan } : {}),
    ...(result.text === undefined ? {} : { text: result.text }),
    ...(result.modality === undefined ? {} : { modality: result.modality }),
    ...(result.boxes ? { boxes: result.boxes } : {}),
    model: `${result.model.name}@${result.model.version}`,
  };
}
