import { randomUUID } from 'node:crypto';
import { BadRequestException, Inject, Injectable, NotFoundException } from '@nestjs/common';
import type { JobState } from 'bullmq';
import { CONFIG, type Config } from '@lavida/config';
import { inSpan, jobsSubmitted } from '@lavida/telemetry';
import {
  DEFAULT_PRIORITY,
  outputView,
  type CreateJob,
  type GenerateResult,
  type JobStatus,
  type PipelineInput,
  type PipelineWebhook,
  type StageRef,
  type UnderstandingResult,
} from '@lavida/contracts';
import { JobQueueRepository } from '../repositories/job-queue.repository.js';
import { WebhookRepository } from '../repositories/webhook.repository.js';
import type { JobDto, StageDto, WebhookDto } from '../dtos/job.dto.js';
import { modelImageSize, parseImageInput } from './image-input.js';
import { webhookInput } from './webhook-input.js';

const iso = (ms: number | undefined) => (ms ? new Date(ms).toISOString() : null);

/** Maps BullMQ states onto the public job states. */
export function publicStatus(state: JobState | 'unknown', failedReason?: string): JobStatus {
  switch (state) {
    case 'completed':
      return 'succeeded';
    case 'failed':
      return failedReason?.startsWith('CANCELED') ? 'canceled' : 'failed';
    case 'active':
    case 'waiting-children':
      return 'processing';
    default:
      return 'queued';
  }
}

const INPUT_IMAGE = 'input.png';

@Injectable()
export class JobService {
  private imageSize?: { width: number; height: number };

  constructor(
    @Inject(CONFIG) private readonly config: Config,
    private readonly jobs: JobQueueRepository,
    private readonly webhooks: WebhookRepository,
  ) {}

  /** Creates a job; `id` is chosen by the caller when it reserved one first (an Idempotency-Key). */
  async create(body: CreateJob, baseUrl: string, id: string = randomUUID()): Promise<JobDto> {
    const webhook = webhookInput(body, this.config.WEBHOOK_ALLOW_PRIVATE);
    let input: PipelineInput;
    if (body.task === 'text-to-image' || body.task === 'respond') {
      // An unset seed is drawn here, so the job's input shows the seed its image was (or would be) drawn with.
      const seed = body.input.seed ?? Math.floor(Math.random() * 2 ** 31);
      input = body.task === 'respond' ? { task: 'respond', ...body.input, seed } : { task: 'text-to-image', ...body.input, seed };
    } else {
      // Input images are checked here (a 400 naming the field), then kept as an artefact of the job.
      this.imageSize ??= modelImageSize(this.config.MODEL_DIR);
      const png = parseImageInput(body.input.image, 'input.image', this.imageSize);
      await this.jobs.putArtifact(id, INPUT_IMAGE, png);
      const image = { jobId: id, name: INPUT_IMAGE };
      input =
        body.task === 'edit'
          ? { task: 'edit', ...body.input, image, seed: body.input.seed ?? Math.floor(Math.random() * 2 ** 31) }
          : body.task === 'ground'
            ? { task: 'ground', ...body.input, image }
            : { task: 'understand', ...body.input, image };
    }
    const created = Date.now();
    const seconds = body.input.deadline_seconds;
    // With tracing on, the job's trace starts here: its context travels in the pipeline job to every stage.
    const pipeline = {
      id,
      task: body.task,
      input,
      createdAt: new Date(created).toISOString(),
      ...(webhook ? { webhook } : {}),
      priority: body.input.priority ?? DEFAULT_PRIORITY,
      ...(seconds === undefined ? {} : { deadline: created + seconds * 1000 }),
    };
    await inSpan('job.submit', { attributes: { 'lavida.job_id': id, 'lavida.task': body.task } }, () => this.jobs.addPipeline(pipeline));
    jobsSubmitted.inc({ task: body.task });
    return this.get(id, baseUrl);
  }

  async get(id: string, baseUrl: string): Promise<JobDto> {
    let job = await this.jobs.getPipeline(id);
    if (!job) throw new NotFoundException(`job ${id} not found`);
    const state = await job.getState();
    // The job was read before its state: if it finished in between, read it again for its result.
    if ((state === 'completed' || state === 'failed') && !job.finishedOn) job = (await this.jobs.getPipeline(id)) ?? job;
    const canceled = await this.jobs.isCanceled(id);
    const url = `${baseUrl}/v1/jobs/${id}`;
    const timeline = await Promise.all((job.data.stages ?? []).map((ref) => this.stage(ref, url, canceled)));
    const running = timeline.filter((s) => s.status === 'processing').at(-1) ?? timeline.at(-1);
    const input: Record<string, unknown> = { ...job.data.input };
    delete input.task;
    return {
      id,
      task: job.data.task,
      // A canceled pipeline fails (its stage was aborted, or it stopped before the next one): show it as canceled.
      status: canceled && state === 'failed' ? 'canceled' : publicStatus(state, job.failedReason),
      input: 'image' in input ? { ...input, image: `${url}/files/${INPUT_IMAGE}` } : input,
      output: job.returnvalue ? outputView(job.returnvalue, url) : null,
      error:
        state === 'failed'
          ? canceled
            ? 'canceled by request'
            : (timeline.find((s) => s.error)?.error ?? job.failedReason ?? 'failed')
          : null,
      progress: running?.progress ?? null,
      created_at: job.data.createdAt,
      started_at: iso(job.processedOn),
      completed_at: state === 'completed' || state === 'failed' ? iso(job.finishedOn) : null,
      timeline,
      urls: { get: url },
      ...(job.data.webhook ? { webhook: await this.webhook(id, job.data.webhook) } : {}),
    };
  }

  /** The job's webhook with every delivery and its attempts. */
  private async webhook(id: string, webhook: PipelineWebhook): Promise<WebhookDto> {
    return { url: webhook.url, events: webhook.events, deliveries: await this.webhooks.deliveries(id) };
  }

  /**
   * Jobs newest first, `limit` a page, filtered by task and status; `cursor` continues a listing
   * (opaque: the last job's creation time and id).
   */
  async list(
    query: { task?: string; status?: string; limit: number; cursor?: string },
    baseUrl: string,
  ): Promise<{ results: JobDto[]; next: string | null }> {
    let before: number | undefined;
    let beforeId: string | undefined;
    if (query.cursor) {
      const [ms, id] = Buffer.from(query.cursor, 'base64url').toString().split('/');
      before = Number(ms);
      beforeId = id;
      if (!Number.isFinite(before) || !beforeId)
        throw new BadRequestException({ code: 'invalid_request', field: 'cursor', message: 'cursor: is not a cursor of this api' });
    }
    const results: JobDto[] = [];
    let last: { id: string; createdMs: number } | undefined;
    let exhausted = false;
    // Status is not indexed: scan pages until the page is full (bounded).
    for (let scanned = 0; results.length < query.limit && scanned < 2000;) {
      const ids = await this.jobs.listIds({ task: query.task, before, beforeId, count: 100 });
      if (ids.length === 0) {
        exhausted = true;
        break;
      }
      for (const entry of ids) {
        scanned += 1;
        last = entry;
        before = entry.createdMs;
        beforeId = entry.id;
        let job: JobDto;
        try {
          job = await this.get(entry.id, baseUrl);
        } catch (error) {
          if (error instanceof NotFoundException) {
            await this.jobs.unindex(entry.id, query.task ?? '');
            continue;
          }
          throw error;
        }
        if (query.status && job.status !== query.status) continue;
        results.push(job);
        if (results.length === query.limit) break;
      }
    }
    const next = !exhausted && last ? Buffer.from(`${last.createdMs}/${last.id}`).toString('base64url') : null;
    const params = new URLSearchParams({
      limit: String(query.limit),
      ...(query.task ? { task: query.task } : {}),
      ...(query.status ? { status: query.status } : {}),
    });
    return { results, next: next ? `${baseUrl}/v1/jobs?${params.toString()}&cursor=${next}` : null };
  }

  /** Waits up to `seconds` for a job to finish (Prefer: wait=N); answers whether it did. */
  async waitFor(id: string, seconds: number): Promise<boolean> {
    const deadline = Date.now() + seconds * 1000;
    for (;;) {
      const job = await this.jobs.getPipeline(id);
      const state = job ? await job.getState() : 'unknown';
      if (state === 'completed' || state === 'failed') return true;
      if (Date.now() >= deadline) return false;
      await new Promise((resolve) => setTimeout(resolve, Math.min(50, Math.max(1, deadline - Date.now()))));
    }
  }

  /** Cancels a job that has not finished (Replicate's cancel): answers the job as it then is. */
  async cancel(id: string, baseUrl: string): Promise<JobDto> {
    const job = await this.jobs.getPipeline(id);
    if (!job) throw new NotFoundException(`job ${id} not found`);
    const state = await job.getState();
    if (state !== 'completed' && state !== 'failed') await this.jobs.cancel(job);
    return this.get(id, baseUrl);
  }

  async file(id: string, name: string): Promise<Buffer> {
    const bytes = await this.jobs.getArtifact(id, name);
    if (!bytes) throw new NotFoundException(`file ${name} of job ${id} not found (or expired)`);
    return bytes;
  }

  private async stage(ref: StageRef, url: string, canceled: boolean): Promise<StageDto> {
    let job = await this.jobs.getStage(ref);
    const state = job ? await job.getState() : 'unknown';
    // Finished between the two reads: read it again for its result.
    if (job && (state === 'completed' || state === 'failed') && !job.finishedOn) job = (await this.jobs.getStage(ref)) ?? job;
    const value = job?.returnvalue as (GenerateResult & UnderstandingResult) | null | undefined;
    const produced: Partial<StageDto> = {};
    if (value) {
      // A generation stage's artefact, or the image of a respond stage's `[exp]` answer.
      const artifact = value.artifact ?? value.image?.artifact;
      if (artifact) produced.image = `${url}/files/${artifact.name}`;
      if (ref.stage === 'plan' || ref.stage === 'plan_edit') produced.plan = value.layout;
      if (ref.stage === 'reflect') produced.verdict = value.text;
      if (ref.stage === 'understand' || ref.stage === 'respond') produced.text = value.text;
      if (ref.stage === 'ground') produced.boxes = value.boxes;
    }
    return {
      stage: ref.stage,
      ...(ref.round === undefined ? {} : { round: ref.round }),
      // A queued stage of a canceled pipeline is removed from its queue.
      status: !job && canceled ? 'canceled' : publicStatus(state, job?.failedReason),
      attempts: job?.attemptsMade ?? 0,
      logs: job ? await this.jobs.stageLogs(ref) : [],
      progress: job?.progress ?? null,
      peer: value?.peer,
      ...produced,
      started_at: iso(job?.processedOn),
      completed_at: iso(job?.finishedOn),
      error: state === 'failed' ? (job?.failedReason ?? 'failed') : null,
    };
  }
}
