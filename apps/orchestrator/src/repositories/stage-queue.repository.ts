import { Inject, Injectable, type OnApplicationShutdown } from '@nestjs/common';
import { createIORedisClient, Job, Queue, SpanKind, TelemetryAttributes, type IRedisClient, type JobsOptions } from 'bullmq';
import { CONFIG, type Config, redisClient, type RedisClient } from '@lavida/config';
import { bullmqTelemetry } from '@lavida/telemetry';
import { QueueName, type PipelineJobData, type StageRef } from '@lavida/contracts';

type StageQueueName = QueueName.Generation | QueueName.Understanding;

/** BullMQ's scripts that a step's transaction runs (addJob picks one of the add* by the job's options). */
const TRANSACTION_SCRIPTS = ['addStandardJob', 'addPrioritizedJob', 'addDelayedJob', 'addParentJob', 'updateData', 'moveToWaitingChildren'];

/** Queues stage jobs as children of a pipeline job; the one place stage job ids and options are set. */
@Injectable()
export class StageQueueRepository implements OnApplicationShutdown {
  private readonly connection: RedisClient;
  private readonly queues: Record<StageQueueName, Queue>;
  /** The pipeline queue on the same connection: its scripts run in the same transaction as a stage's. */
  private readonly pipeline: Queue<PipelineJobData>;
  /**
   * The connection of the steps' transactions, with only the scripts they run: ioredis copies every
   * script its connection knows into each MULTI it makes, and BullMQ's connections know 64 (that
   * copy was a tenth of the orchestrator's CPU time).
   */
  private readonly transactions: RedisClient;
  private transactionClient?: Promise<IRedisClient>;

  constructor(@Inject(CONFIG) private readonly config: Config) {
    this.connection = redisClient(config, { maxRetriesPerRequest: null });
    // With tracing on, a stage job carries the trace context of the pipeline run that queued it.
    const options = { connection: this.connection, prefix: config.QUEUE_PREFIX, ...bullmqTelemetry() };
    this.queues = {
      [QueueName.Generation]: new Queue(QueueName.Generation, options),
      [QueueName.Understanding]: new Queue(QueueName.Understanding, options),
    };
    this.pipeline = new Queue<PipelineJobData>(QueueName.Pipeline, options);
    this.transactions = redisClient(config, { maxRetriesPerRequest: null });
  }

  /** The transactions' connection as BullMQ's client, once BullMQ defined its scripts on the shared one. */
  private transactionsClient(): Promise<IRedisClient> {
    this.transactionClient ??= this.pipeline.backend.client.then(() => {
      // ioredis' script definitions (Commander.scriptsSet) of BullMQ's connection, by versioned name.
      const scripts = (this.connection as unknown as { scriptsSet: Record<string, { lua: string; numberOfKeys: number | null }> })
        .scriptsSet;
      for (const [name, script] of Object.entries(scripts)) {
        if (TRANSACTION_SCRIPTS.includes(name.split(':')[0]))
          this.transactions.defineCommand(name, { lua: script.lua, numberOfKeys: script.numberOfKeys ?? undefined });
      }
      return createIORedisClient(this.transactions);
    });
    return this.transactionClient;
  }

  /**
   * What a pipeline step writes, in one MULTI (one round trip instead of three, and all or nothing:
   * an orchestrator that dies here leaves the three done or none):
   * - queues the stage as a child of the pipeline, as Queue.add would (the same job and options, and
   *   with tracing on the same producer span, whose context the stage job carries). Its job id is
   *   derived from the pipeline id and the stage, so queuing it again (an orchestrator that
   *   restarted mid-pipeline) is a no-op;
   * - stores `data` as the pipeline's data, when given (the stage appended to `stages`: the api's
   *   timeline, and what the next step reads);
   * - moves the pipeline to waiting-children, as `job.moveToWaitingChildren(token)` (it must hold
   *   the pipeline's lock).
   *
   * @returns true if the pipeline now waits for the stage; false if it has nothing to wait for (the
   *   stage had already finished: an orchestrator that restarted mid-pipeline).
   */
  async queueAndWait(
    parent: Job<PipelineJobData>,
    token: string,
    step: { ref: StageRef; name: string; data: object },
    data?: PipelineJobData,
  ): Promise<boolean> {
    const queue = this.queues[step.ref.queue as StageQueueName];
    const pipeline = this.pipeline.backend;
    return queue.trace(SpanKind.PRODUCER, 'add', `${queue.name}.${step.name}`, async (span, metadata) => {
      // Queue.add → Job.create, with the insert on the transaction.
      const options = { ...queue.jobsOpts, ...this.options(parent, step.ref), ...(metadata ? { telemetry: { metadata } } : {}) };
      const child = new Job(queue, step.name, this.payload(parent, step.data), options, step.ref.jobId);
      const multi = (await this.transactionsClient()).multi();
      // The command is queued at once; the promise settles with the transaction (its reply is checked below).
      void child
        .addJob(multi, { parentKey: child.parentKey, parentDependenciesKey: `${child.parentKey}:dependencies` })
        .catch(() => undefined);
      if (data) pipeline.execCommand(multi, 'updateData', [this.pipeline.toKey(parent.id!), JSON.stringify(data)]);
      pipeline.execCommand(multi, 'moveToWaitingChildren', pipeline.moveToWaitingChildrenArgs(parent.id!, token, {}));
      const replies = (await multi.exec()) as [Error | null, unknown][] | null;
      if (!replies) throw new Error(`queuing stage ${step.ref.jobId}: the transaction was aborted`);
      const [added, updated, moved] = data ? replies : [replies[0], undefined, replies[1]];
      for (const [error] of [added, updated ?? [null], moved]) if (error) throw error;
      if ((added[1] as number) < 0)
        throw pipeline.finishedErrors({ code: added[1] as number, parentKey: child.parentKey, command: 'addJob' });
      if (updated && (updated[1] as number) < 0)
        throw pipeline.finishedErrors({ code: updated[1] as number, jobId: parent.id, command: 'updateData' });
      if (data) parent.data = data;
      span?.setAttributes({ [TelemetryAttributes.JobName]: step.name, [TelemetryAttributes.JobId]: step.ref.jobId });
      switch (moved[1]) {
        case 0:
          return true;
        case 1:
          return false;
        default:
          throw pipeline.finishedErrors({ code: moved[1] as number, jobId: parent.id, command: 'moveToWaitingChildren', state: 'active' });
      }
    });
  }

  /** A stage carries the pipeline's deadline (the workers enforce it). */
  private payload(parent: Job<PipelineJobData>, data: object): object {
    const { deadline } = parent.data;
    return deadline === undefined ? data : { ...data, deadline };
  }

  /**
   * A stage gets the pipeline's `priority` (BullMQ: 1 highest). The parent fails if the stage fails
   * for good: no pipeline waits forever. Retryable failures are retried with exponential backoff.
   */
  private options(parent: Job<PipelineJobData>, ref: StageRef): JobsOptions {
    const { priority } = parent.data;
    return {
      jobId: ref.jobId,
      ...(priority ? { priority } : {}),
      parent: { id: parent.id!, queue: parent.queueQualifiedName },
      failParentOnFailure: true,
      attempts: this.config.JOB_ATTEMPTS,
      backoff: { type: 'exponential', delay: this.config.JOB_BACKOFF_MS },
      removeOnComplete: { age: this.config.RESULT_TTL_SECONDS },
      removeOnFail: { age: this.config.RESULT_TTL_SECONDS },
    };
  }

  // After the workers drained (beforeApplicationShutdown).
  async onApplicationShutdown(): Promise<void> {
    await Promise.all([...Object.values(this.queues), this.pipeline].map((q) => q.close()));
    await Promise.all([this.connection, this.transactions].map((c) => c.quit().catch(() => undefined)));
  }
}

/** Stage job ids are derived from the pipeline id, so a stage is queued once even if the orchestrator restarts. */
export function stageJobId(jobId: string, stage: string, round?: number): string {
  return round === undefined ? `${jobId}-${stage}` : `${jobId}-${stage}-${round}`;
}
