import { UnrecoverableError, WaitingError, Worker, type Job } from 'bullmq';
import { CanceledError, DeadlineExceededError, errorCode, isRetryable, type QueueName } from '@lavida/contracts';
import { CancelSubscriber, isCanceled } from './cancel.js';
import type { Config } from './index.js';
import type { JsonLogger } from './logger.js';
import { workerLockOptions, workerMetricsOptions } from './worker-options.js';
import type { WorkerRegistry } from './worker-registry.js';
import { bullmqTelemetry, stageDuration, stageWait, withLogFields } from '@lavida/telemetry';
import { redisClient, type RedisClient } from './redis.js';

/** What every stage job carries: its pipeline job id and the pipeline's deadline. */
export interface StageJobData {
  jobId?: unknown;
  deadline?: unknown;
}

export interface StageWorkerOptions<D extends StageJobData, R> {
  queue: QueueName;
  concurrency: number;
  logger: JsonLogger;
  /** Runs one stage job (the worker's own dispatch); `signal` aborts on cancellation or at the deadline. */
  run: (job: Job<D, R>, signal?: AbortSignal) => Promise<R>;
  /** Told when a stage job starts and ends: the worker's heartbeat shows its current job. */
  registry?: WorkerRegistry;
}

/**
 * A worker's BullMQ consumer of one stage queue, around its own dispatch: cancellations abort the
 * running stage, a stage never starts past the pipeline's deadline or once the pipeline is canceled,
 * and a running one is aborted at the deadline. Retryable failures are thrown for BullMQ to retry;
 * others are unrecoverable.
 */
export class StageWorker<D extends StageJobData, R> {
  private worker?: Worker<D, R>;
  private cancels?: CancelSubscriber;
  private redis?: RedisClient;
  /** Stage jobs running now. */
  private running = 0;
  /** Why running jobs are being handed back (set once, while draining). */
  private handBackReason?: string;

  constructor(
    private readonly config: Config,
    private readonly options: StageWorkerOptions<D, R>,
  ) {}

  start(): void {
    const { queue, concurrency, logger } = this.options;
    this.worker = new Worker<D, R>(queue, (job, token, signal) => this.process(job, token, signal), {
      connection: redisClient(this.config, { maxRetriesPerRequest: null }),
      prefix: this.config.QUEUE_PREFIX,
      concurrency,
      ...workerLockOptions(this.config),
      ...workerMetricsOptions(),
      // With tracing on, each attempt is a span in the trace of the pipeline that queued it.
      ...bullmqTelemetry(),
    });
    this.worker.on('error', (error) => logger.error('worker error', error));
    // A cancellation aborts the running stage's AbortSignal (the engine checks it every step).
    this.redis = redisClient(this.config, { maxRetriesPerRequest: null });
    this.cancels = new CancelSubscriber(this.config, (stageJobId) => {
      if (this.worker?.cancelJob(stageJobId, 'canceled by request')) logger.log('stage canceled', { stageJobId });
    });
    logger.log('consuming', { queue, concurrency });
  }

  /**
   * A graceful drain: takes no new job and lets the running ones finish. Jobs still running after
   * DRAIN_TIMEOUT_MS, or when a second SIGTERM (or SIGINT) arrives, are handed back: aborted and moved
   * back to their queue (not counted as a failed attempt), where another worker takes them at once.
   * Either way no job is lost; a worker killed outright loses its jobs to BullMQ's stalled check instead.
   */
  async close(): Promise<void> {
    const { logger } = this.options;
    const timeoutMs = this.config.DRAIN_TIMEOUT_MS;
    logger.log('draining', { running: this.running, timeoutMs });
    const timer = setTimeout(() => this.handBack(`still running after DRAIN_TIMEOUT_MS (${timeoutMs} ms)`), timeoutMs);
    const onSignal = (signal: NodeJS.Signals) => this.handBack(`second ${signal} while draining`);
    process.on('SIGTERM', onSignal);
    process.on('SIGINT', onSignal);
    try {
      await this.worker?.close();
    } finally {
      clearTimeout(timer);
      process.off('SIGTERM', onSignal);
      process.off('SIGINT', onSignal);
    }
    logger.log('drained', { handedBack: this.handBackReason !== undefined });
    await this.cancels?.close();
    await this.redis?.quit().catch(() => undefined);
  }

  /** Aborts the running jobs; each moves back to its queue (see process). */
  private handBack(reason: string): void {
    if (this.handBackReason !== undefined) return;
    this.handBackReason = reason;
    this.options.logger.warn('handing back running jobs', { running: this.running, reason });
    this.worker?.cancelAllJobs(`handed back: ${reason}`);
  }

  private async process(job: Job<D, R>, token?: string, signal?: AbortSignal): Promise<R> {
    this.running++;
    const { queue } = this.options;
    const started = performance.now();
    const labels = { queue, stage: job.name };
    if (job.attemptsMade === 0 && job.processedOn) stageWait.observe(labels, Math.max(0, job.processedOn - job.timestamp) / 1000);
    let outcome = 'succeeded';
    try {
      // Every log line of the attempt (the engine's, the exchange's) carries the pipeline's job id.
      const jobId = typeof job.data?.jobId === 'string' ? job.data.jobId : undefined;
      return await withLogFields({ jobId, stageJobId: job.id, queue }, () => this.attempt(job, token, signal));
    } catch (error) {
      outcome = stageOutcome(job, error);
      throw error;
    } finally {
      this.running--;
      stageDuration.observe({ ...labels, outcome }, (performance.now() - started) / 1000);
    }
  }

  private async attempt(job: Job<D, R>, token?: string, signal?: AbortSignal): Promise<R> {
    const { logger } = this.options;
    // The pipeline's deadline: a stage never starts past it, and a running one is aborted at it
    // through the same AbortSignal a cancellation uses.
    const deadline = typeof job.data?.deadline === 'number' ? job.data.deadline : undefined;
    let timer: NodeJS.Timeout | undefined;
    let expired = false;
    let failed = false;
    this.options.registry?.begin(job);
    try {
      if (deadline !== undefined) {
        if (Date.now() >= deadline) throw deadlineExceeded(deadline, 'before the stage started');
        timer = setTimeout(() => {
          expired = true;
          if (job.id && this.worker?.cancelJob(job.id, 'deadline exceeded')) logger.log('stage past its deadline', { stageJobId: job.id });
        }, deadline - Date.now());
      }
      // A stage of a canceled pipeline that was already queued never runs.
      if (typeof job.data?.jobId === 'string' && this.redis && (await isCanceled(this.redis, this.config, job.data.jobId))) {
        throw new CanceledError('canceled by request');
      }
      return await this.options.run(job, signal);
    } catch (caught) {
      failed = true;
      // Handed back by a draining worker: back to the queue for another worker, not a failed attempt.
      if (this.handBackReason !== undefined && !expired && token) {
        await job.log(`attempt ${job.attemptsMade + 1} handed back: ${this.handBackReason}`);
        await job.moveToWait(token);
        this.options.logger.warn('stage handed back', { jobId: job.data?.jobId, stageJobId: job.id, reason: this.handBackReason });
        throw new WaitingError();
      }
      // Aborted by the deadline timer: whatever the engine threw (CanceledError, a broken exchange) is the deadline.
      const error = expired && deadline !== undefined ? deadlineExceeded(deadline, 'while the stage ran') : caught;
      const message = `${errorCode(error)}: ${(error as Error).message}`;
      const retryable = isRetryable(error);
      await job.log(`attempt ${job.attemptsMade + 1} failed (${retryable ? 'retryable' : 'not retryable'}): ${message}`);
      logger.warn('attempt failed', { jobId: job.data?.jobId, attempt: job.attemptsMade + 1, retryable, error: message });
      if (!retryable) throw new UnrecoverableError(message);
      throw new Error(message, { cause: error });
    } finally {
      clearTimeout(timer);
      this.options.registry?.end(job.id, !failed);
    }
  }
}

/** How an attempt ended, for lavida_stage_duration_seconds: from what `attempt` threw. */
function stageOutcome(job: Job, error: unknown): string {
  if (error instanceof WaitingError) return 'handed_back';
  const message = error instanceof Error ? error.message : '';
  if (message.startsWith('CANCELED')) return 'canceled';
  if (message.startsWith('DEADLINE_EXCEEDED')) return 'deadline_exceeded';
  if (error instanceof UnrecoverableError) return 'failed';
  return job.attemptsMade + 1 < (job.opts.attempts ?? 1) ? 'retrying' : 'failed';
}

function deadlineExceeded(deadline: number, when: string): DeadlineExceededError {
  return new DeadlineExceededError(`the job's deadline ${new Date(deadline).toISOString()} passed ${when}`);
}

/**
 * Base of a worker app's queue processor (a NestJS provider): starts the stage worker once the app is
 * up, and drains it before the model and the gRPC server go (onApplicationShutdown), so the running
 * job finishes first. Subclasses keep only their dispatch.
 */
export abstract class StageProcessor<D extends StageJobData, R> {
  private readonly worker: StageWorker<D, R>;

  constructor(
    config: Config,
    protected readonly logger: JsonLogger,
    queue: QueueName,
    concurrency: number,
    registry?: WorkerRegistry,
  ) {
    this.worker = new StageWorker(config, { queue, concurrency, logger, registry, run: (job, signal) => this.dispatch(job, signal) });
  }

  onApplicationBootstrap(): void {
    this.worker.start();
  }

  // Before the model and the gRPC server go (onApplicationShutdown): the running job finishes first.
  async beforeApplicationShutdown(): Promise<void> {
    // Let the running job finish (or hand it back on a second signal): a graceful drain.
    await this.worker.close();
  }

  /** Runs one job of the queue; `signal` aborts on cancellation or at the deadline. */
  protected abstract dispatch(job: Job<D, R>, signal?: AbortSignal): Promise<R>;
}
