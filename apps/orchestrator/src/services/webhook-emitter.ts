import { Inject, Injectable, type OnApplicationBootstrap, type OnApplicationShutdown } from '@nestjs/common';
import { QueueEvents, type Job } from 'bullmq';
import { CONFIG, JsonLogger, type Config, redisClient, type RedisClient } from '@lavida/config';
import { QueueName, type PipelineJobData, type PipelineResult } from '@lavida/contracts';
import { WebhookRepository } from '../repositories/webhook.repository.js';
import { batchReads } from './batch-reads.js';
import { completedMessage, jobUrl, stageMessage, startMessage, type WebhookMessage } from './webhook-events.js';

type PipelineJob = Job<PipelineJobData, PipelineResult>;

/**
 * The pipeline queue's events are read at most once every this many ms: only `failed` matters here,
 * and a busy queue has a dozen events per pipeline, each of which would otherwise end a blocking
 * read of its own (a round trip and a wake-up). A failure's webhook is queued at most this much later.
 */
export const EVENTS_BATCH_MS = 50;

/**
 * Turns what happens to pipelines into webhook deliveries, for jobs with a webhook that wants the
 * event (queuing one never fails a pipeline). Every event has a fixed webhook-id, so emitting it
 * again (after a restart, or from two places) queues nothing new. Failures are heard twice: from
 * the pipeline worker of this process, and from the pipeline queue's events (a pipeline failed
 * anywhere), read on from the last one handled after a restart.
 */
@Injectable()
export class WebhookEmitter implements OnApplicationBootstrap, OnApplicationShutdown {
  private readonly logger = new JsonLogger('orchestrator', WebhookEmitter.name);
  private events?: QueueEvents;
  private connection?: RedisClient;
  private readonly closing = new AbortController();

  constructor(
    @Inject(CONFIG) private readonly config: Config,
    private readonly webhooks: WebhookRepository,
  ) {}

  async onApplicationBootstrap(): Promise<void> {
    this.connection = redisClient(this.config, { maxRetriesPerRequest: null });
    this.events = new QueueEvents(QueueName.Pipeline, {
      connection: this.connection,
      prefix: this.config.QUEUE_PREFIX,
      lastEventId: (await this.webhooks.cursor()) ?? '$',
      autorun: false,
    });
    batchReads(this.events, EVENTS_BATCH_MS, this.closing.signal);
    this.events.on('failed', ({ jobId }, eventId) => {
      this.failed(jobId)
        .then(() => this.webhooks.setCursor(eventId))
        .catch((error: Error) => this.logger.error('webhook for a failed pipeline not queued', { jobId, error: error.message }));
    });
    this.events.on('error', (error) => this.logger.error('pipeline events error', error));
    this.events.run().catch((error: Error) => this.logger.error('pipeline events error', error));
  }

  async onApplicationShutdown(): Promise<void> {
    this.closing.abort();
    await this.events?.close();
    await this.connection?.quit().catch(() => undefined);
  }

  /** job.start: the pipeline is processed for the first time. */
  async start(job: PipelineJob): Promise<void> {
    await this.send(job.data, startMessage(job.data, new Date()));
  }

  /** job.stage for every stage of the pipeline that has its result (those already sent are no-ops). */
  async stages(job: PipelineJob, results: ReadonlyMap<string, unknown>): Promise<void> {
    if (!job.data.webhook?.events.includes('stage')) return;
    const url = jobUrl(this.config.PUBLIC_URL, job.data.id);
    for (const ref of job.data.stages ?? []) {
      if (results.has(ref.jobId)) await this.send(job.data, stageMessage(job.data, ref, results.get(ref.jobId), url, new Date()));
    }
  }

  /** job.completed of a pipeline that succeeded. */
  async succeeded(job: PipelineJob, result: PipelineResult): Promise<void> {
    const url = jobUrl(this.config.PUBLIC_URL, job.data.id);
    await this.send(job.data, completedMessage(job.data, { status: 'succeeded', result }, url, new Date()));
  }

  /**
   * job.completed of a pipeline that failed or was canceled, with the error the api shows: the
   * failed stage's reason, else the pipeline's (`canceled by request` when canceled).
   */
  async failed(jobId: string): Promise<void> {
    const job = await this.webhooks.getPipeline(jobId);
    if (!job?.data.webhook?.events.includes('completed')) return;
    if ((await job.getState()) !== 'failed') return;
    const reason = job.failedReason ?? '';
    const stageFailure = await this.webhooks.stageFailure(job.data.stages ?? []);
    // Canceled by request: the pipeline stopped (CANCELED) or its running stage was aborted (CANCELED).
    const canceled = [reason, stageFailure].some((r) => r?.startsWith('CANCELED'));
    const error = canceled ? 'canceled by request' : (stageFailure ?? (reason || 'failed'));
    const status = canceled ? 'canceled' : 'failed';
    const url = jobUrl(this.config.PUBLIC_URL, jobId);
    const message = completedMessage(job.data, { status, error }, url, new Date());
    if (message) await this.webhooks.enqueue(jobId, message);
  }

  /** Queues an event of a running pipeline; a failure to queue it is logged, never fails the pipeline. */
  private async send(data: PipelineJobData, message: WebhookMessage | undefined): Promise<void> {
    if (!message) return;
    try {
      await this.webhooks.enqueue(data.id, message);
    } catch (error) {
      this.logger.error('webhook not queued', { jobId: data.id, webhookId: message.id, error: (error as Error).message });
    }
  }
}
