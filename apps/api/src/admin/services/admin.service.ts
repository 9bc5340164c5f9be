import { ConflictException, Injectable, NotFoundException } from '@nestjs/common';
import type { Job, JobType, Queue } from 'bullmq';
import { JobService } from '../../services/job.service.js';
import type { JobDto } from '../../dtos/job.dto.js';
import { AdminQueueRepository, ADMIN_QUEUES, JOB_STATES } from '../repositories/admin-queue.repository.js';
import type {
  AdminJobDetailDto,
  AdminJobSummaryDto,
  AdminQueueDto,
  AdminQueueJobDto,
  AdminStageTimingDto,
  AdminWebhookLogDto,
  AdminWorkersDto,
} from '../dtos/admin.dto.js';
import { perMinute } from './throughput.js';
import { peerLinks } from './peer-links.js';

/** Minutes of throughput the dashboard shows. */
export const THROUGHPUT_MINUTES = 60;

const iso = (ms: number | undefined | null) => (ms ? new Date(ms).toISOString() : null);
const span = (from: number | undefined | null, to: number | undefined | null) => (from && to ? Math.max(0, to - from) : null);
const round = (ms: number | undefined) => (typeof ms === 'number' ? Math.round(ms * 10) / 10 : null);

/**
 * What the admin dashboard shows and does: queues (counts, throughput, pause, resume, retry,
 * remove), workers and their peer links, recent jobs with each stage's timing, and webhook
 * deliveries. Jobs are read through the api's JobService, so the dashboard shows what the public
 * api answers, with file URLs under /admin (the browser has the session cookie, not a Bearer key).
 */
@Injectable()
export class AdminService {
  constructor(
    private readonly repo: AdminQueueRepository,
    private readonly jobs: JobService,
  ) {}

  async queues(): Promise<AdminQueueDto[]> {
    const now = Date.now();
    return Promise.all(
      ADMIN_QUEUES.map(async (name) => {
        const queue = this.repo.queue(name)!;
        const [counts, paused, workers, completed, failed] = await Promise.all([
          this.repo.counts(queue),
          queue.isPaused(),
          this.repo.workerCount(queue).catch(() => 0),
          this.repo.metrics(queue, 'completed', THROUGHPUT_MINUTES),
          this.repo.metrics(queue, 'failed', THROUGHPUT_MINUTES),
        ]);
        return {
          name,
          paused,
          counts,
          workers,
          throughput: { completed: perMinute(completed, now, THROUGHPUT_MINUTES), failed: perMinute(failed, now, THROUGHPUT_MINUTES) },
        };
      }),
    );
  }

  async pause(name: string): Promise<{ name: string; paused: boolean }> {
    const queue = this.queue(name);
    await queue.pause();
    return { name, paused: await queue.isPaused() };
  }

  async resume(name: string): Promise<{ name: string; paused: boolean }> {
    const queue = this.queue(name);
    await queue.resume();
    return { name, paused: await queue.isPaused() };
  }

  /** Retries every failed job of the queue (BullMQ moves them back to wait). */
  async retryFailed(name: string): Promise<{ name: string; retried: number }> {
    const queue = this.queue(name);
    const { failed } = await this.repo.counts(queue);
    await queue.retryJobs({ state: 'failed', count: 1000 });
    return { name, retried: failed ?? 0 };
  }

  async queueJobs(name: string, state: string, limit: number): Promise<AdminQueueJobDto[]> {
    const queue = this.queue(name);
    if (!(JOB_STATES as readonly string[]).includes(state))
      throw new NotFoundException({ code: 'not_found', message: `no job state ${state}` });
    const jobs = await this.repo.jobs(queue, state as JobType, 0, limit - 1);
    return Promise.all(jobs.filter(Boolean).map(async (job) => this.queueJob(job, state)));
  }

  async retryJob(name: string, id: string): Promise<AdminQueueJobDto> {
    const job = await this.job(name, id);
    const state = await job.getState();
    if (state !== 'failed')
      throw new ConflictException({ code: 'not_failed', message: `job ${id} is ${state}: only failed jobs are retried` });
    await job.retry('failed');
    return this.queueJob(job, await job.getState());
  }

  /** Removes a job (and its children); a job running now (locked by a worker) cannot be removed. */
  async removeJob(name: string, id: string): Promise<void> {
    const job = await this.job(name, id);
    try {
      await job.remove();
    } catch (error) {
      throw new ConflictException({ code: 'locked', message: `job ${id} cannot be removed now: ${(error as Error).message}` });
    }
  }

  async workers(): Promise<AdminWorkersDto> {
    const workers = await this.repo.workers();
    return { workers, links: peerLinks(workers) };
  }

  async recentJobs(query: { limit: number; status?: string; task?: string }): Promise<AdminJobSummaryDto[]> {
    const { results } = await this.jobs.list(query, '');
    return results.map((job) => {
      const input = job.input as { prompt?: string; instruction?: string; question?: string; refs?: string[] };
      const image = job.output?.image;
      return {
        id: job.id,
        task: job.task,
        status: job.status,
        text: input.prompt ?? input.instruction ?? input.question ?? input.refs?.join(', ') ?? null,
        created_at: job.created_at,
        completed_at: job.completed_at,
        duration_ms: span(Date.parse(job.created_at), job.completed_at ? Date.parse(job.completed_at) : null),
        stages: job.timeline.map((s) => (s.round === undefined ? s.stage : `${s.stage} ${s.round}`)).join(' › '),
        image: image ? adminUrl(image) : null,
        error: job.error,
      };
    });
  }

  async jobDetail(id: string): Promise<AdminJobDetailDto> {
    const job = rewriteUrls(await this.jobs.get(id, ''));
    const pipeline = await this.repo.pipeline(id);
    const refs = pipeline?.data.stages ?? [];
    const timeline = await Promise.all(
      job.timeline.map(async (stage, i) => {
        const ref = refs[i];
        const stageJob = ref ? await this.repo.stage(ref) : undefined;
        return { ...stage, stage_job_id: ref?.jobId ?? '', queue: ref?.queue ?? '', timing: timing(stageJob) };
      }),
    );
    return {
      ...job,
      duration_ms: span(Date.parse(job.created_at), job.completed_at ? Date.parse(job.completed_at) : null),
      timeline,
    };
  }

  file(id: string, name: string): Promise<Buffer> {
    return this.jobs.file(id, name);
  }

  async webhookLog(limit: number): Promise<AdminWebhookLogDto> {
    return { results: await this.repo.webhookLog(limit) };
  }

  private queue(name: string): Queue {
    const queue = this.repo.queue(name);
    if (!queue) throw new NotFoundException({ code: 'not_found', message: `no queue ${name}: one of ${ADMIN_QUEUES.join(', ')}` });
    return queue;
  }

  private async job(name: string, id: string): Promise<Job> {
    const job = await this.queue(name).getJob(id);
    if (!job) throw new NotFoundException({ code: 'not_found', message: `job ${id} not found on ${name}` });
    return job;
  }

  private async queueJob(job: Job, state: string): Promise<AdminQueueJobDto> {
    const data = job.data as { jobId?: unknown; id?: unknown } | undefined;
    const jobId = typeof data?.jobId === 'string' ? data.jobId : typeof data?.id === 'string' ? data.id : null;
    return {
      id: job.id!,
      name: job.name,
      state,
      attemptsMade: job.attemptsMade,
      failedReason: job.failedReason || null,
      created_at: iso(job.timestamp),
      started_at: iso(job.processedOn),
      finished_at: iso(job.finishedOn),
      jobId,
    };
  }
}

/** A stage job's queue wait, run time and the engine's own figures. */
function timing(job: Job | undefined): AdminStageTimingDto {
  const value = job?.returnvalue as { timings?: { totalMs?: number; steps?: number; forwards?: number } } | null | undefined;
  return {
    queued_at: iso(job?.timestamp),
    wait_ms: span(job?.timestamp, job?.processedOn),
    run_ms: span(job?.processedOn, job?.finishedOn),
    engine_ms: round(value?.timings?.totalMs),
    steps: value?.timings?.steps ?? null,
    forwards: value?.timings?.forwards ?? null,
  };
}

/** `/v1/jobs/{id}/files/{name}` (Bearer) as `/admin/api/jobs/{id}/files/{name}` (session cookie). */
function adminUrl(url: string): string {
  return url.replace(/^\/v1\/jobs\//, '/admin/api/jobs/');
}

/** Every file URL of a job (read with an empty base URL) under /admin. */
function rewriteUrls(job: JobDto): JobDto {
  const input = typeof job.input.image === 'string' ? { ...job.input, image: adminUrl(job.input.image) } : job.input;
  const output = job.output && {
    ...job.output,
    ...(job.output.image ? { image: adminUrl(job.output.image) } : {}),
    ...(job.output.attempts ? { attempts: job.output.attempts.map((a) => ({ ...a, image: adminUrl(a.image) })) } : {}),
  };
  const timeline = job.timeline.map((s) => (s.image ? { ...s, image: adminUrl(s.image) } : s));
  return { ...job, input, output, timeline };
}
