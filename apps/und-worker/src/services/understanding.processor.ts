import { Inject, Injectable, type OnApplicationBootstrap, type BeforeApplicationShutdown } from '@nestjs/common';
import type { Job } from 'bullmq';
import { CONFIG, JsonLogger, StageProcessor, WorkerRegistry, type Config } from '@lavida/config';
import { InvalidInputError, JobName, QueueName, type UnderstandingJobData, type UnderstandingResult } from '@lavida/contracts';
import { UnderstandingService } from './understanding.service.js';

const TASK_JOBS = new Set<string>([JobName.Understand, JobName.Ground, JobName.Plan, JobName.PlanEdit, JobName.Reflect, JobName.Respond]);

/** Consumes the understanding queue. Retryable failures are thrown for BullMQ to retry; others are unrecoverable. */
@Injectable()
export class UnderstandingProcessor
  extends StageProcessor<UnderstandingJobData, UnderstandingResult>
  implements OnApplicationBootstrap, BeforeApplicationShutdown
{
  constructor(
    @Inject(CONFIG) config: Config,
    private readonly understanding: UnderstandingService,
    registry: WorkerRegistry,
  ) {
    super(config, new JsonLogger('und-worker', UnderstandingProcessor.name), QueueName.Understanding, config.UND_CONCURRENCY, registry);
  }

  protected async dispatch(job: Job<UnderstandingJobData, UnderstandingResult>, signal?: AbortSignal): Promise<UnderstandingResult> {
    if (!TASK_JOBS.has(job.name) || job.data?.task !== job.name) {
      throw new InvalidInputError(`unknown job ${job.name} (task ${String(job.data?.task)}) on ${QueueName.Understanding}`);
    }
    const result = await this.understanding.run(job, signal);
    this.logger.log('answered', {
      jobId: job.data.jobId,
      task: job.name,
      ms: Math.round(result.timings.totalMs),
      forwards: result.timings.forwards,
    });
    return result;
  }
}
