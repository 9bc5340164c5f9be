import {
  outputView,
  webhookId,
  type GenerateResult,
  type JobStatus,
  type PipelineJobData,
  type PipelineResult,
  type StageRef,
  type UnderstandingResult,
  type WebhookEvent,
  type WebhookPayload,
  type WebhookStage,
} from '@lavida/contracts';

/** One event of one pipeline, ready to queue: its webhook-id and the exact body every attempt sends. */
export interface WebhookMessage {
  id: string;
  event: WebhookEvent;
  /** job.stage: the stage job's id. */
  stage?: string;
  url: string;
  body: string;
}

/** How a pipeline ended, for job.completed. */
export type PipelineOutcome = { status: 'succeeded'; result: PipelineResult } | { status: 'failed' | 'canceled'; error: string };

/**
 * The URL of a job as the api serves it: under PUBLIC_URL when it is set, else relative to the api
 * (the orchestrator does not know the host clients use).
 */
export function jobUrl(publicUrl: string | undefined, id: string): string {
  return `${publicUrl?.replace(/\/$/, '') ?? ''}/v1/jobs/${id}`;
}

function message(
  data: PipelineJobData,
  event: WebhookEvent,
  fields: Omit<WebhookPayload['data'], 'id' | 'task'>,
  now: Date,
  stageJobId?: string,
): WebhookMessage | undefined {
  if (!data.webhook?.events.includes(event)) return undefined;
  const payload: WebhookPayload = { type: `job.${event}`, timestamp: now.toISOString(), data: { id: data.id, task: data.task, ...fields } };
  return {
    id: webhookId(data.id, event, stageJobId),
    event,
    ...(stageJobId === undefined ? {} : { stage: stageJobId }),
    url: data.webhook.url,
    body: JSON.stringify(payload),
  };
}

/** job.start: the pipeline was picked up for the first time. Undefined when the job's webhook does not want it. */
export function startMessage(data: PipelineJobData, now: Date): WebhookMessage | undefined {
  return message(data, 'start', { status: 'processing' }, now);
}

/** job.stage: a stage finished; what it produced, as in the job's timeline. */
export function stageMessage(data: PipelineJobData, ref: StageRef, value: unknown, url: string, now: Date): WebhookMessage | undefined {
  const result = value as Partial<GenerateResult & UnderstandingResult> | null | undefined;
  const stage: WebhookStage = { name: ref.stage, ...(ref.round === undefined ? {} : { round: ref.round }), job_id: ref.jobId };
  const artifact = result?.artifact ?? result?.image?.artifact;
  if (artifact) stage.image = `${url}/files/${artifact.name}`;
  if ((ref.stage === 'plan' || ref.stage === 'plan_edit') && result?.layout) stage.plan = result.layout;
  if (ref.stage === 'reflect' && result?.text !== undefined) stage.verdict = result.text;
  if ((ref.stage === 'understand' || ref.stage === 'respond') && result?.text !== undefined) stage.text = result.text;
  if (ref.stage === 'ground' && result?.boxes) stage.boxes = result.boxes;
  return message(data, 'stage', { status: 'processing', stage }, now, ref.jobId);
}

/** job.completed: succeeded with the output (as `GET /v1/jobs/{id}` shows it), or failed / canceled with the error. */
export function completedMessage(data: PipelineJobData, outcome: PipelineOutcome, url: string, now: Date): WebhookMessage | undefined {
  const status: JobStatus = outcome.status;
  return message(
    data,
    'completed',
    outcome.status === 'succeeded' ? { status, output: outputView(outcome.result, url) } : { status, error: outcome.error },
    now,
  );
}
