import { randomUUID } from 'node:crypto';
import { Injectable, NotFoundException } from '@nestjs/common';
import type { Job, JobState } from 'bullmq';
import type { CreateJob, JobStatus } from '@lavida/contracts';
import { JobQueueRepository } from '../repositories/job-queue.repository.js';
import type { JobDto, StageDto } from '../dtos/job.dto.js';

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

@Injectable()
export class JobService {
  constructor(private readonly jobs: JobQueueRepository) {}

  async create(body: CreateJob, baseUrl: string): Promise<JobDto> {
    const id = randomUUID();
    const input = { ...body.input, seed: body.input.seed ?? Math.floor(Math.random() * 2 ** 31) };
    await this.jobs.addPipeline({ id, task: body.task, input, createdAt: new Date().toISOString() });
    return this.get(id, baseUrl);
  }

  async get(id: string, baseUrl: string): Promise<JobDto> {
    const job = await this.jobs.getPipeline(id);
    if (!job) throw new NotFoundException(`job ${id} not found`);
    const state = await job.getState();
    const stage = await this.jobs.getStage(id, 'generate');
    const timeline = stage ? [await this.stage('generate', stage)] : [];
    const result = job.returnvalue;
    const url = `${baseUrl}/v1/jobs/${id}`;
    return {
      id,
      task: job.data.task,
      status: publicStatus(state, job.failedReason),
      input: job.data.input,
      output: result?.generate
        ? {
            image: `${url}/files/${result.generate.artifact.name}`,
            tokens: result.generate.tokens,
            model: `${result.generate.model.name}@${result.generate.model.version}`,
          }
        : null,
      error: state === 'failed' ? (timeline.find((s) => s.error)?.error ?? job.failedReason ?? 'failed') : null,
      progress: stage?.progress ?? null,
      created_at: job.data.createdAt,
      started_at: iso(job.processedOn),
      completed_at: state === 'completed' || state === 'failed' ? iso(job.finishedOn) : null,
      timeline,
      urls: { get: url },
    };
  }

  async file(id: string, name: string): Promise<Buffer> {
    const bytes = await this.jobs.getArtifact(id, name);
    if (!bytes) throw new NotFoundException(`file ${name} of job ${id} not found (or expired)`);
    return bytes;
  }

  private async stage(name: string, job: Job): Promise<StageDto> {
    const state = await job.getState();
    return {
      stage: name,
      status: publicStatus(state, job.failedReason),
      attempts: job.attemptsMade,
      logs: await this.jobs.stageLogs(job),
      progress: job.progress,
      peer: (job.returnvalue as { peer?: string } | null)?.peer,
      started_at: iso(job.processedOn),
      completed_at: iso(job.finishedOn),
      error: state === 'failed' ? (job.failedReason ?? 'failed') : null,
    };
  }
}
