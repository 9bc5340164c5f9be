import { randomUUID } from 'node:crypto';
import { Inject, Injectable, NotFoundException } from '@nestjs/common';
import type { JobState } from 'bullmq';
import { CONFIG, type Config } from '@lavida/config';
import type { CreateJob, GenerateResult, JobStatus, PipelineInput, PipelineResult, StageRef, UnderstandingResult } from '@lavida/contracts';
import { JobQueueRepository } from '../repositories/job-queue.repository.js';
import type { JobDto, OutputDto, StageDto } from '../dtos/job.dto.js';
import { modelImageSize, parseImageInput } from './image-input.js';

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
  ) {}

  async create(body: CreateJob, baseUrl: string): Promise<JobDto> {
    const id = randomUUID();
    let input: PipelineInput;
    if (body.task === 'text-to-image') {
      input = { task: body.task, ...body.input, seed: body.input.seed ?? Math.floor(Math.random() * 2 ** 31) };
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
    await this.jobs.addPipeline({ id, task: body.task, input, createdAt: new Date().toISOString() });
    return this.get(id, baseUrl);
  }

  async get(id: string, baseUrl: string): Promise<JobDto> {
    const job = await this.jobs.getPipeline(id);
    if (!job) throw new NotFoundException(`job ${id} not found`);
    const state = await job.getState();
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
      output: job.returnvalue ? this.output(job.returnvalue, url) : null,
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
    };
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

  private output(result: PipelineResult, url: string): OutputDto {
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
      ...(result.boxes ? { boxes: result.boxes } : {}),
      model: `${result.model.name}@${result.model.version}`,
    };
  }

  private async stage(ref: StageRef, url: string, canceled: boolean): Promise<StageDto> {
    const job = await this.jobs.getStage(ref);
    const state = job ? await job.getState() : 'unknown';
    const value = job?.returnvalue as (GenerateResult & UnderstandingResult) | null | undefined;
    const produced: Partial<StageDto> = {};
    if (value) {
      if (value.artifact) produced.image = `${url}/files/${value.artifact.name}`;
      if (ref.stage === 'plan') produced.plan = value.layout;
      if (ref.stage === 'reflect') produced.verdict = value.text;
      if (ref.stage === 'understand') produced.text = value.text;
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
