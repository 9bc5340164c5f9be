import { Inject, Injectable, type OnApplicationBootstrap, type BeforeApplicationShutdown } from '@nestjs/common';
import { UnrecoverableError, Worker, type Job } from 'bullmq';
import { Redis } from 'ioredis';
import { CancelSubscriber, CONFIG, isCanceled, JsonLogger, type Config } from '@lavida/config';
import {
  CanceledError,
  DeadlineExceededError,
  errorCode,
  InvalidInputError,
  isRetryable,
  JobName,
  QueueName,
  type UnderstandingJobData,
  type UnderstandingResult,
} from '@lavida/contracts';
import { UnderstandingService } from './understanding.service.js';

const TASK_JOBS = new Set<string>([JobName.Understand, JobName.Ground, JobName.Plan, JobName.Reflect, JobName.Respond]);

/** Consumes the understanding queue. Retryable failures are thrown for BullMQ to retry; others are unrecoverable. */
@Injectable()
export class UnderstandingProcessor implements OnApplicationBootstrap, BeforeApplicationShutdown {
  private readonly logger = new JsonLogger('und-worker', UnderstandingProcessor.name);
  private worker?: Worker<UnderstandingJobData, UnderstandingResult>;
  private cancels?: CancelSubscriber;
  private redis?: Redis;

  constructor(
    @Inject(CONFIG) private readonly config: Config,
    private readonly understanding: UnderstandingService,
  ) {}

  onApplicationBootstrap(): void {
    this.worker = new Worker<UnderstandingJobData, UnderstandingResult>(
      QueueName.Understanding,
      (job, _token, signal) => this.process(job, signal),
      {
        connection: new Redis(this.config.REDIS_URL, { maxRetriesPerRequest: null }),
        prefix: this.config.QUEUE_PREFIX,
        concurrency: this.config.UND_CONCURRENCY,
      },
    );
    this.worker.on('error', (error) => this.logger.error('worker error', error));
    // A cancellation aborts the running stage's AbortSignal (the engine checks it every step).
    this.redis = new Redis(this.config.REDIS_URL, { maxRetriesPerRequest: null });
    this.cancels = new CancelSubscriber(this.config, (stageJobId) => {
      if (this.worker?.cancelJob(stageJobId, 'canceled by request')) this.logger.log('stage canceled', { stageJobId });
    });
    this.logger.log('consuming', { queue: QueueName.Understanding, concurrency: this.config.UND_CONCURRENCY });
  }

  // Before the model and the gRPC server go (onApplicationShutdown): the running job finishes first.
  async beforeApplicationShutdown(): Promise<void> {
    await this.worker?.close();
    await this.cancels?.close();
    await this.redis?.quit().catch(() => undefined);
  }

  private async process(job: Job<UnderstandingJobData, UnderstandingResult>, signal?: AbortSignal): Promise<UnderstandingResult> {
    // The pipeline's deadline: a stage never starts past it, and a running one is aborted at it
    // through the same AbortSignal a cancellation uses.
    const deadline = typeof job.data?.deadline === 'number' ? job.data.deadline : undefined;
    let timer: NodeJS.Timeout | undefined;
    let expired = false;
    try {
      if (deadline !== undefined) {
        if (Date.now() >= deadline) throw deadlineExceeded(deadline, 'before the stage started');
        timer = setTimeout(() => {
          expired = true;
          if (job.id && this.worker?.cancelJob(job.id, 'deadline exceeded'))
            this.logger.log('stage past its deadline', { stageJobId: job.id });
        }, deadline - Date.now());
      }
      // A stage of a canceled pipeline that was already queued never runs.
      if (typeof job.data?.jobId === 'string' && this.redis && (await isCanceled(this.redis, this.config, job.data.jobId))) {
        throw new CanceledError('canceled by request');
      }
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
    } catch (caught) {
      // Aborted by the deadline timer: whatever the engine threw (CanceledError, a broken exchange) is the deadline.
      const error = expired && deadline !== undefined ? deadlineExceeded(deadline, 'while the stage ran') : caught;
      const message = `${errorCode(error)}: ${(error as Error).message}`;
      const retryable = isRetryable(error);
      await job.log(`attempt ${job.attemptsMade + 1} failed (${retryable ? 'retryable' : 'not retryable'}): ${message}`);
      this.logger.warn('attempt failed', { jobId: job.data?.jobId, attempt: job.attemptsMade + 1, retryable, error: message });
      if (!retryable) throw new UnrecoverableError(message);
      throw new Error(message, { cause: error });
    } finally {
      clearTimeout(timer);
    }
  }
}

function deadlineExceeded(deadline: number, when: string): DeadlineExceededError {
  return new DeadlineExceededError(`the job's deadline ${new Date(deadline).toISOString()} passed ${when}`);
}
