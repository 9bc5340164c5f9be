import { Inject, Injectable, type OnModuleDestroy } from '@nestjs/common';
import { Queue, type Job } from 'bullmq';
import { artifactKey, CONFIG, isCanceled, requestCancel, type Config, redisClient, type RedisClient } from '@lavida/config';
import { bullmqTelemetry } from '@lavida/telemetry';
import { JobName, QueueName, type PipelineJobData, type PipelineResult, type StageRef } from '@lavida/contracts';

/** The API's view of Redis: pipeline jobs, their stage jobs, and artefacts. */
@Injectable()
export class JobQueueRepository implements OnModuleDestroy {
  private readonly redis: RedisClient;
  private readonly pipeline: Queue<PipelineJobData, PipelineResult>;
  private readonly stageQueues: Record<string, Queue>;

  constructor(@Inject(CONFIG) private readonly config: Config) {
    this.redis = redisClient(config, { maxRetriesPerRequest: null });
    const options = { connection: this.redis, prefix: config.QUEUE_PREFIX };
    // With tracing on, a pipeline job carries the trace context of its submission.
    this.pipeline = new Queue(QueueName.Pipeline, { ...options, ...bullmqTelemetry() });
    this.stageQueues = {
      [QueueName.Generation]: new Queue(QueueName.Generation, options),
      [QueueName.Understanding]: new Queue(QueueName.Understanding, options),
    };
  }

  /** Newest-first index of jobs (score: creation time in ms), one for all and one per task. */
  private indexKey(task?: string): string {
    return task ? `${this.config.QUEUE_PREFIX}:jobs:index:${task}` : `${this.config.QUEUE_PREFIX}:jobs:index`;
  }

  /** Job ids, newest first, created at or before `before` (ms; ties broken by id below `beforeId`). */
  async listIds(options: {
    task?: string;
    before?: number;
    beforeId?: string;
    count: number;
  }): Promise<{ id: string; createdMs: number }[]> {
    const key = this.indexKey(options.task);
    const max = options.before === undefined ? '+inf' : String(options.before);
    const raw = await this.redis.zrevrangebyscore(key, max, '-inf', 'WITHSCORES', 'LIMIT', 0, options.count + 64);
    const out: { id: string; createdMs: number }[] = [];
    for (let i = 0; i < raw.length; i += 2) {
      const id = raw[i];
      const createdMs = Number(raw[i + 1]);
      // Same millisecond as the cursor: ids sort descending too, so skip those already given.
      if (options.before !== undefined && createdMs === options.before && options.beforeId !== undefined && id >= options.beforeId)
        continue;
      out.push({ id, createdMs });
    }
    return out.slice(0, options.count);
  }

  /** Drops an expired job from the index. */
  async unindex(id: string, task: string): Promise<void> {
    await this.redis.zrem(this.indexKey(), id);
    await this.redis.zrem(this.indexKey(task), id);
  }

  async addPipeline(data: PipelineJobData): Promise<Job<PipelineJobData, PipelineResult>> {
    const created = Date.parse(data.createdAt);
    await this.redis.zadd(this.indexKey(), created, data.id);
    await this.redis.zadd(this.indexKey(data.task), created, data.id);
    return this.pipeline.add(JobName.Pipeline, data, {
      jobId: data.id,
      ...(data.priority ? { priority: data.priority } : {}),
      removeOnComplete: { age: this.config.RESULT_TTL_SECONDS },
      removeOnFail: { age: this.config.RESULT_TTL_SECONDS },
    });
  }

  getPipeline(id: string): Promise<Job<PipelineJobData, PipelineResult> | undefined> {
    return this.pipeline.getJob(id);
  }

  getStage(ref: StageRef): Promise<Job | undefined> {
    return this.stageQueues[ref.queue].getJob(ref.jobId);
  }

  async stageLogs(ref: StageRef): Promise<string[]> {
    return (await this.stageQueues[ref.queue].getJobLogs(ref.jobId)).logs;
  }

  /**
   * Cancels a pipeline: marks it, aborts its running stage (the workers subscribe) and removes its
   * stages still queued (the pipeline then resumes and fails as canceled).
   */
  async cancel(job: Job<PipelineJobData, PipelineResult>): Promise<void> {
    const stages = job.data.stages ?? [];
    await requestCancel(this.redis, this.config, { jobId: job.data.id, stageJobIds: stages.map((s) => s.jobId) });
    for (const ref of stages) {
      const stage = await this.getStage(ref);
      const state = stage ? await stage.getState() : undefined;
      if (stage && (state === 'waiting' || state === 'delayed' || state === 'prioritized')) await stage.remove().catch(() => undefined);
    }
  }

  isCanceled(id: string): Promise<boolean> {
    return isCanceled(this.redis, this.config, id);
  }

  async putArtifact(jobId: string, name: string, bytes: Buffer): Promise<void> {
    await this.redis.set(artifactKey(this.config, jobId, name), bytes, 'EX', this.config.RESULT_TTL_SECONDS);
  }

  getArtifact(jobId: string, name: string): Promise<Buffer | null> {
    return this.redis.getBuffer(artifactKey(this.config, jobId, name));
  }

  async ping(): Promise<boolean> {
    return (await this.redis.ping()) === 'PONG';
  }

  async onModuleDestroy(): Promise<void> {
    await this.pipeline.close();
    await Promise.all(Object.values(this.stageQueues).map((q) => q.close()));
    await this.redis.quit().catch(() => undefined);
  }
}
