import { Inject, Injectable, type OnModuleDestroy } from '@nestjs/common';
import { CONFIG, type Config, redisClient, type RedisClient } from '@lavida/config';
import { WEBHOOK_EVENTS, webhookKeys, type WebhookDeliveryRecord } from '@lavida/contracts';

/** The api's view of webhook deliveries: what the orchestrator recorded per pipeline job. */
@Injectable()
export class WebhookRepository implements OnModuleDestroy {
  private readonly redis: RedisClient;

  constructor(@Inject(CONFIG) private readonly config: Config) {
    this.redis = redisClient(config, { maxRetriesPerRequest: 3 });
  }

  /** A job's deliveries in the order the events happened (start, stages, completed). */
  async deliveries(jobId: string): Promise<WebhookDeliveryRecord[]> {
    const raw = await this.redis.hgetall(webhookKeys.deliveries(this.config.QUEUE_PREFIX, jobId));
    const order = (r: WebhookDeliveryRecord) => WEBHOOK_EVENTS.indexOf(r.event);
    return Object.values(raw)
      .map((value) => JSON.parse(value) as WebhookDeliveryRecord)
      .sort((a, b) => order(a) - order(b) || a.created_at.localeCompare(b.created_at));
  }

  async onModuleDestroy(): Promise<void> {
    await this.redis.quit().catch(() => undefined);
  }
}
