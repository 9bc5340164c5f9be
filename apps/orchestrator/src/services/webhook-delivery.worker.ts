import { Inject, Injectable, type BeforeApplicationShutdown, type OnApplicationBootstrap } from '@nestjs/common';
import { UnrecoverableError, Worker, type Job } from 'bullmq';
import {
  CONFIG,
  DEV_WEBHOOK_SECRET,
  JsonLogger,
  workerLockOptions,
  workerMetricsOptions,
  type Config,
  redisClient,
  type RedisClient,
} from '@lavida/config';
import { JobName, QueueName, type WebhookAttempt, type WebhookDeliveryJobData, type WebhookDeliveryStatus } from '@lavida/contracts';
import { bullmqTelemetry, statusClass, traceHeaders, webhookDeliveries, webhookDuration, withLogFields } from '@lavida/telemetry';
import { WebhookRepository } from '../repositories/webhook.repository.js';
import { postWebhook, resolveWebhookHost, WebhookRefusedError, webhookSignature } from './webhook-client.js';

/**
 * Delivers webhooks (QueueName.Webhooks): each attempt checks that the endpoint is not disabled,
 * resolves and checks its host (SSRF rules) and POSTs the signed body to the checked address.
 * 2xx: delivered. 410 Gone: the endpoint is disabled for good. Anything else (another status, no
 * answer in WEBHOOK_TIMEOUT_MS, a network error) is retried after WEBHOOK_RETRY_SCHEDULE_MS. Every
 * attempt is recorded with the pipeline job.
 */
@Injectable()
export class WebhookDeliveryWorker implements OnApplicationBootstrap, BeforeApplicationShutdown {
  private readonly logger = new JsonLogger('orchestrator', WebhookDeliveryWorker.name);
  private worker?: Worker<WebhookDeliveryJobData, WebhookDeliveryStatus>;
  private connection?: RedisClient;

  constructor(
    @Inject(CONFIG) private readonly config: Config,
    private readonly webhooks: WebhookRepository,
  ) {}

  onApplicationBootstrap(): void {
    const schedule = this.config.WEBHOOK_RETRY_SCHEDULE_MS;
    this.connection = redisClient(this.config, { maxRetriesPerRequest: null });
    // Every log line of a delivery carries the job id; with tracing on, it is a span of the job's trace.
    const processor = (job: Job<WebhookDeliveryJobData, WebhookDeliveryStatus>) =>
      withLogFields({ jobId: job.data?.jobId, webhookId: job.id }, () => this.deliver(job));
    this.worker = new Worker<WebhookDeliveryJobData, WebhookDeliveryStatus>(QueueName.Webhooks, processor, {
      connection: this.connection,
      prefix: this.config.QUEUE_PREFIX,
      concurrency: this.config.WEBHOOK_CONCURRENCY,
      ...workerLockOptions(this.config),
      ...workerMetricsOptions(),
      ...bullmqTelemetry(),
      // Retry n waits the schedule's n-th delay.
      settings: { backoffStrategy: (attemptsMade: number) => schedule[Math.min(attemptsMade, schedule.length) - 1] ?? 0 },
    });
    this.worker.on('error', (error) => this.logger.error('webhook worker error', error));
    if (this.config.WEBHOOK_SECRET === DEV_WEBHOOK_SECRET && process.env.NODE_ENV === 'production') {
      this.logger.warn('WEBHOOK_SECRET is the public development secret: set your own so receivers can trust the signatures');
    }
    this.logger.log('consuming', { queue: QueueName.Webhooks });
  }

  // A drain: running jobs finish before the queues and connections they use close (onApplicationShutdown).
  async beforeApplicationShutdown(): Promise<void> {
    await this.worker?.close();
    await this.connection?.quit().catch(() => undefined);
  }

  private async deliver(job: Job<WebhookDeliveryJobData, WebhookDeliveryStatus>): Promise<WebhookDeliveryStatus> {
    if (job.name !== (JobName.Deliver as string)) throw new UnrecoverableError(`unknown job ${job.name} on ${QueueName.Webhooks}`);
    const { jobId, event, url, body } = job.data;
    const id = job.id!;
    const attempt = job.attemptsMade + 1;
    const last = attempt >= (job.opts.attempts ?? 1);
    const started = Date.now();
    const log = this.logger.child({ jobId, webhookId: id, attempt });
    const record = (status: WebhookDeliveryStatus, outcome: Omit<WebhookAttempt, 'attempt' | 'at' | 'ms'>) => {
      // Every attempt is recorded once: lavida_webhook_deliveries_total and its duration.
      const label = outcome.error?.startsWith('refused:') ? 'refused' : status;
      webhookDeliveries.inc({ outcome: label, status_class: statusClass(outcome.status_code) });
      webhookDuration.observe({ outcome: label }, (Date.now() - started) / 1000);
      return this.webhooks.record(
        jobId,
        id,
        event,
        status,
        {
          attempt,
          at: new Date(started).toISOString(),
          ...outcome,
          ms: Date.now() - started,
        },
        url,
      );
    };

    if (await this.webhooks.isDisabled(url)) {
      await record('skipped', { error: 'endpoint disabled (it answered 410 Gone)' });
      log.log('webhook skipped: endpoint disabled');
      return 'skipped';
    }
    let status: number;
    try {
      const target = new URL(url);
      const addresses = await resolveWebhookHost(target, this.config.WEBHOOK_ALLOW_PRIVATE);
      const timestamp = Math.floor(Date.now() / 1000);
      const headers = {
        'content-type': 'application/json',
        'user-agent': 'lavida-serve-webhooks',
        'webhook-id': id,
        'webhook-timestamp': String(timestamp),
        'webhook-signature': webhookSignature(this.config.WEBHOOK_SECRET, id, timestamp, body),
        // With tracing on, the receiver can continue the job's trace.
        ...traceHeaders(),
      };
      status = await postWebhook(target, addresses, headers, body, this.config.WEBHOOK_TIMEOUT_MS);
    } catch (error) {
      const message = (error as Error).message;
      if (error instanceof WebhookRefusedError) {
        await record('failed', { error: `refused: ${message}` });
        log.warn('webhook refused', { error: message });
        throw new UnrecoverableError(`refused: ${message}`);
      }
      await record(last ? 'failed' : 'retrying', { error: message });
      log.warn('webhook attempt failed', { error: message, last });
      throw error;
    }
    if (status >= 200 && status < 300) {
      await record('delivered', { status_code: status });
      log.log('webhook delivered', { status, ms: Date.now() - started });
      return 'delivered';
    }
    if (status === 410) {
      await this.webhooks.disable(url);
      await record('disabled', { status_code: status, error: 'endpoint gone: disabled' });
      log.warn('webhook endpoint gone: disabled', { url });
      return 'disabled';
    }
    await record(last ? 'failed' : 'retrying', { status_code: status, error: `HTTP ${status}` });
    log.warn('webhook attempt failed', { status, last });
    throw new Error(`HTTP ${status}`);
  }
}
