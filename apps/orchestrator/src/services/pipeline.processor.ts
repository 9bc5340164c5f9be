import { Inject, Injectable, type BeforeApplicationShutdown, type OnApplicationBootstrap } from '@nestjs/common';
import { UnrecoverableError, WaitingChildrenError, Worker, type Job } from 'bullmq';
import { CONFIG, workerLockOptions, workerMetricsOptions, JsonLogger, type Config, redisClient, type RedisClient } from '@lavida/config';
import { DeadlineExceededError, JobName, QueueName, type PipelineJobData, type PipelineResult } from '@lavida/contracts';
import { bullmqTelemetry, pipelineDuration, withLogFields } from '@lavida/telemetry';
import { StageQueueRepository } from '../repositories/stage-queue.repository.js';
import { nextStep } from './pipeline-plan.js';
import { parseStepRead, STEP_READ_COMMAND, STEP_READ_LUA, stepReadKeys, type StepRead, type StepReadCommand } from './step-read.js';
import { WebhookEmitter } from './webhook-emitter.js';

/**
 * Pipelines one orchestrator process steps at once. A step is well under a millisecond of CPU and
 * three round trips (fetch, read, write), so a few steps in flight keep the process's one thread
 * busy. More slots do not step more pipelines: each slot that finishes a step fetches again and,
 * unless pipelines queue up, finds the queue empty (with 64 slots a 4-step pipeline took 7.2
 * moveToActive calls at 50 pipelines in flight, with 16 it takes 4.4).
 */
const PIPELINE_CONCURRENCY = 16;

/**
 * Sequences a pipeline's stages as BullMQ children: queue the next stage, wait for it
 * (WaitingChildrenError), resume with its result, until `nextStep` says done. Every child edge
 * fails the parent on failure, so no pipeline waits forever.
 */
@Injectable()
export class PipelineProcessor implements OnApplicationBootstrap, BeforeApplicationShutdown {
  private readonly logger = new JsonLogger('orchestrator', PipelineProcessor.name);
  private worker?: Worker<PipelineJobData, PipelineResult>;
  private redis?: RedisClient;

  constructor(
    @Inject(CONFIG) private readonly config: Config,
    private readonly stages: StageQueueRepository,
    private readonly webhooks: WebhookEmitter,
  ) {}

  onApplicationBootstrap(): void {
    this.redis = redisClient(this.config, { maxRetriesPerRequest: null });
    this.redis.defineCommand(STEP_READ_COMMAND, { numberOfKeys: 2, lua: STEP_READ_LUA });
    // Every log line of a pipeline's processing carries its job id.
    const processor = (job: Job<PipelineJobData, PipelineResult>, token?: string) =>
      withLogFields({ jobId: job.id }, () => this.process(job, token));
    this.worker = new Worker<PipelineJobData, PipelineResult>(QueueName.Pipeline, processor, {
      connection: redisClient(this.config, { maxRetriesPerRequest: null }),
      prefix: this.config.QUEUE_PREFIX,
      concurrency: PIPELINE_CONCURRENCY,
      ...workerLockOptions(this.config),
      ...workerMetricsOptions(),
      // With tracing on, each time the pipeline runs is a span in the trace its submission started.
      ...bullmqTelemetry(),
    });
    this.worker.on('error', (error) => this.logger.error('worker error', error));
    this.worker.on('failed', (job, error) => {
      this.logger.warn('pipeline failed', { jobId: job?.id, error: error.message });
      if (job) observePipeline(job.data, error.message.startsWith('CANCELED') ? 'canceled' : 'failed');
      // job.completed with the error (a stage that failed the pipeline fails it here too).
      if (job?.id)
        this.webhooks.failed(job.id).catch((e: Error) => this.logger.error('webhook not queued', { jobId: job.id, error: e.message }));
    });
    this.logger.log('consuming', { queue: QueueName.Pipeline });
  }

  // A drain: running jobs finish before the queues and connections they use close (onApplicationShutdown).
  async beforeApplicationShutdown(): Promise<void> {
    await this.worker?.close();
    await this.redis?.quit().catch(() => undefined);
  }

  private async process(job: Job<PipelineJobData, PipelineResult>, token?: string): Promise<PipelineResult> {
    if (job.name !== (JobName.Pipeline as string)) throw new UnrecoverableError(`unknown job ${job.name} on ${QueueName.Pipeline}`);
    const log = this.logger.child({ jobId: job.id });
    for (;;) {
      const { canceled, results } = await this.read(job);
      // Canceled by request: no further stage is queued (a running one is aborted by its worker).
      if (canceled) throw new UnrecoverableError('CANCELED: canceled by request');
      // Webhooks: job.start the first time, then job.stage for each stage with a result (each sent once).
      if (!job.data.stages?.length) await this.webhooks.start(job);
      else await this.webhooks.stages(job, results);
      let step;
      try {
        step = nextStep(job.data, results);
      } catch (error) {
        throw new UnrecoverableError(`pipeline cannot go on: ${(error as Error).message}`);
      }
      if (step.kind === 'done') {
        // Its result is the job's return value (stored as the worker completes it: no write of our own).
        await this.webhooks.succeeded(job, step.result);
        log.log('pipeline succeeded', { stages: job.data.stages?.length ?? 0 });
        observePipeline(job.data, 'succeeded');
        return step.result;
      }
      // Past the deadline no further stage is queued (a result already made is still returned above).
      const deadline = job.data.deadline;
      if (deadline !== undefined && Date.now() >= deadline) {
        const error = new DeadlineExceededError(
          `the job's deadline ${new Date(deadline).toISOString()} passed before the ${step.ref.stage} stage`,
        );
        throw new UnrecoverableError(`${error.code}: ${error.message}`);
      }
      // Queue the stage, append it to `stages` (the api's timeline) and wait for it: one transaction.
      const stages = job.data.stages ?? [];
      const recorded = stages.some((s) => s.jobId === step.ref.jobId);
      const data = recorded ? undefined : { ...job.data, stages: [...stages, step.ref] };
      const waiting = await this.stages.queueAndWait(job, token!, step, data);
      log.log('stage queued', { stage: step.ref.stage, round: step.ref.round, stageJobId: step.ref.jobId });
      if (waiting) throw new WaitingChildrenError();
      // The stage finished before we got to wait for it: go on at once.
    }
  }

  /** What a step reads, in one request: the cancel mark and the finished stages' results (STEP_READ_LUA). */
  private async read(job: Job<PipelineJobData, PipelineResult>): Promise<StepRead> {
    const keys = stepReadKeys(this.config, job);
    return parseStepRead(await (this.redis as unknown as StepReadCommand)[STEP_READ_COMMAND](keys.canceled, keys.processed));
  }
}

/** lavida_pipeline_duration_seconds: from the submission to now. */
function observePipeline(data: PipelineJobData, outcome: 'succeeded' | 'failed' | 'canceled'): void {
  const created = Date.parse(data.createdAt);
  if (Number.isFinite(created)) pipelineDuration.observe({ task: data.task, outcome }, Math.max(0, Date.now() - created) / 1000);
}
