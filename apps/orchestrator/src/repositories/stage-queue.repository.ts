import { Inject, Injectable, type OnApplicationShutdown } from '@nestjs/common';
import { Queue, type Job } from 'bullmq';
import { CONFIG, type Config, redisClient, type RedisClient } from '@lavida/config';
import { bullmqTelemetry } from '@lavida/telemetry';
import { QueueName, type PipelineJobData, type StageRef } from '@lavida/contracts';

/** Queues stage jobs as children of a pipeline job; the one place stage job ids and options are set. */
@Injectable()
export class StageQueueRepository implements OnApplicationShutdown {
  private readonly connection: RedisClient;
  private readonly queues: Record<QueueName.Generation | QueueName.Understanding, Queue>;

  constructor(@Inject(CONFIG) private readonly config: Config) {
    this.connection = redisClient(config, { maxRetriesPerRequest: null });
    // With tracing on, a stage job carries the trace context of the pipeline run that queued it.
    const options = { connection: this.connection, prefix: config.QUEUE_PREFIX, ...bullmqTelemetry() };
    this.queues = {
      [QueueName.Generation]: new Queue(QueueName.Generation, options),
      [QueueName.Understanding]: new Queue(QueueName.Understanding, options),
    };
  }

  /**
   * Queues a stage. Its job id is derived from the pipeline id and the stage, so queuing it again
   * (an orchestrator that restarted mid-pipeline) is a no-op. The parent fails if the stage fails
   * for good: no pipeline waits forever. Retryable failures are retried with exponential backoff.
   * The stage gets the pipeline's `priority` (BullMQ: 1 highest) and its `deadline`.
   */
  async add(parent: Job<PipelineJobData>, ref: StageRef, name: string, data: object): Promise<void> {
    const queue = this.queues[ref.queue as QueueName.Generation | QueueName.Understanding];
    // Stages inherit the pipeline's priority and carry its deadline (the workers enforce it).
    const { priority, deadline } = parent.data;
    await queue.add(name, deadline === undefined ? data : { ...data, deadline }, {
      jobId: ref.jobId,
      ...(priority ? { priority } : {}),
      parent: { id: parent.id!, queue: parent.queueQualifiedName },
      failParentOnFailure: true,
      attempts: this.config.JOB_ATTEMPTS,
      backoff: { type: 'exponential', delay: this.config.JOB_BACKOFF_MS },
      removeOnComplete: { age: this.config.RESULT_TTL_SECONDS },
      removeOnFail: { age: this.config.RESULT_TTL_SECONDS },
    });
  }

  // After the workers drained (beforeApplicationShutdown).
  async onApplicationShutdown(): Promise<void> {
    await Promise.all(Object.values(this.queues).map((q) => q.close()));
    await this.connection.quit().catch(() => undefined);
  }
}

/** Stage job ids are derived from the pipeline id, so a stage is queued once even if the orchestrator restarts. */
export function stageJobId(jobId: string, stage: string, round?: number): string {
  return round === undefined ? `${jobId}-${stage}` : `${jobId}-${stage}-${round}`;
}
