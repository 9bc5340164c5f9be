import { Inject, Injectable, type OnApplicationShutdown } from '@nestjs/common';
import { Queue, type Job } from 'bullmq';
import { CONFIG, type Config, redisClient, type RedisClient } from '@lavida/config';
import { bullmqTelemetry } from '@lavida/telemetry';
import {
  JobName,
  QueueName,
  webhookKeys,
  type PipelineJobData,
  type PipelineResult,
  type StageRef,
  type WebhookAttempt,
  type WebhookDeliveryJobData,
  type WebhookDeliveryRecord,
  type WebhookDeliveryStatus,
  type WebhookEvent,
  type WebhookLogEntry,
  WEBHOOK_LOG_LENGTH,
} from '@lavida/contracts';
import type { WebhookMessage } from '../services/webhook-events.js';

/**
 * Webhook state in Redis: the delivery queue (one job per event, its job id the webhook-id), each
 * pipeline's delivery records (a hash, webhook-id → record with its attempts), the endpoints a
 * 410 Gone disabled, and lookups of pipeline and stage jobs for failure events.
 */
@Injectable()
export class WebhookRepository implements OnApplicationShutdown {
  private readonly redis: RedisClient;
  private readonly deliveries: Queue<WebhookDeliveryJobData>;
  private readonly pipelines: Queue<PipelineJobData, PipelineResult>;
  private readonly stageQueues: Record<string, Queue>;

  constructor(@Inject(CONFIG) private readonly config: Config) {
    this.redis = redisClient(config, { maxRetriesPerRequest: null });
    const options = { connection: this.redis, prefix: config.QUEUE_PREFIX };
    // With tracing on, a delivery is a span in the trace of the pipeline that emitted the event.
    this.deliveries = new Queue(QueueName.Webhooks, { ...options, ...bullmqTelemetry() });
    this.pipelines = new Queue(QueueName.Pipeline, options);
    this.stageQueues = {
      [QueueName.Generation]: new Queue(QueueName.Generation, options),
      [QueueName.Understanding]: new Queue(QueueName.Understanding, options),
    };
  }

  /**
   * Queues a delivery. Its job id is the webhook-id, fixed by the pipeline, the event and the stage,
   * so queuing it again (an orchestrator that restarted) is a no-op while the job is kept
   * (RESULT_TTL_SECONDS, as long as the pipeline). Retries follow WEBHOOK_RETRY_SCHEDULE_MS.
   */
  async enqueue(jobId: string, message: WebhookMessage): Promise<void> {
    const record: WebhookDeliveryRecord = {
      id: message.id,
      event: message.event,
      ...(message.stage === undefined ? {} : { stage: message.stage }),
      status: 'pending',
      created_at: new Date().toISOString(),
      attempts: [],
    };
    const key = webhookKeys.deliveries(this.config.QUEUE_PREFIX, jobId);
    await this.redis.multi().hsetnx(key, message.id, JSON.stringify(record)).expire(key, this.config.RESULT_TTL_SECONDS).exec();
    const data: WebhookDeliveryJobData = { jobId, event: message.event, url: message.url, body: message.body };
    await this.deliveries.add(JobName.Deliver, data, {
      jobId: message.id,
      attempts: this.config.WEBHOOK_RETRY_SCHEDULE_MS.length + 1,
      backoff: { type: 'custom' },
      removeOnComplete: { age: this.config.RESULT_TTL_SECONDS },
      removeOnFail: { age: this.config.RESULT_TTL_SECONDS },
    });
  }

  /**
   * Records an attempt and the delivery's status (only the worker holding the delivery job writes
   * its record), and logs the attempt in the capped log of every delivery (the admin dashboard's).
   */
  async record(
    jobId: string,
    id: string,
    event: WebhookEvent,
    status: WebhookDeliveryStatus,
    attempt: WebhookAttempt,
    url: string,
  ): Promise<void> {
    const key = webhookKeys.deliveries(this.config.QUEUE_PREFIX, jobId);
    const raw = await this.redis.hget(key, id);
    const record: WebhookDeliveryRecord = raw
      ? (JSON.parse(raw) as WebhookDeliveryRecord)
      : { id, event, status, created_at: attempt.at, attempts: [] };
    record.status = status;
    record.attempts.push(attempt);
    const entry: WebhookLogEntry = {
      job_id: jobId,
      webhook_id: id,
      url,
      event,
      ...(record.stage ? { stage: record.stage } : {}),
      status,
      ...attempt,
    };
    const log = webhookKeys.log(this.config.QUEUE_PREFIX);
    await this.redis
      .multi()
      .hset(key, id, JSON.stringify(record))
      .expire(key, this.config.RESULT_TTL_SECONDS)
      .lpush(log, JSON.stringify(entry))
      .ltrim(log, 0, WEBHOOK_LOG_LENGTH - 1)
      .exec();
  }

  async isDisabled(url: string): Promise<boolean> {
    return (await this.redis.sismember(webhookKeys.disabled(this.config.QUEUE_PREFIX), url)) === 1;
  }

  /** Disables an endpoint for good (it answered 410 Gone): later deliveries to it are skipped. */
  async disable(url: string): Promise<void> {
    await this.redis.sadd(webhookKeys.disabled(this.config.QUEUE_PREFIX), url);
  }

  getPipeline(id: string): Promise<Job<PipelineJobData, PipelineResult> | undefined> {
    return this.pipelines.getJob(id);
  }

  /** The reason of the first stage of these that failed, if any. */
  async stageFailure(refs: StageRef[]): Promise<string | undefined> {
    for (const ref of refs) {
      const job = await this.stageQueues[ref.queue]?.getJob(ref.jobId);
      if (job && (await job.getState()) === 'failed') return job.failedReason || 'failed';
    }
    return undefined;
  }

  /** Id of the last pipeline event the failure listener handled. */
  async cursor(): Promise<string | undefined> {
    return (await this.redis.get(webhookKeys.cursor(this.config.QUEUE_PREFIX))) ?? undefined;
  }

  async setCursor(eventId: string): Promise<void> {
    await this.redis.set(webhookKeys.cursor(this.config.QUEUE_PREFIX), eventId);
  }

  // After the workers drained (beforeApplicationShutdown).
  async onApplicationShutdown(): Promise<void> {
    await Promise.all([this.deliveries, this.pipelines, ...Object.values(this.stageQueues)].map((q) => q.close()));
    await this.redis.quit().catch(() => undefined);
  }
}
