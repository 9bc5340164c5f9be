import { Inject, Injectable, type OnModuleDestroy } from '@nestjs/common';
import { CONFIG, type Config, redisClient, type RedisClient } from '@lavida/config';

/** One Redis connection shared by the api's key, rate-limit and idempotency repositories. */
@Injectable()
export class RedisConnection implements OnModuleDestroy {
  readonly redis: RedisClient;

  constructor(@Inject(CONFIG) config: Config) {
    // A few retries, then the request fails (500) instead of hanging while Redis is away.
    this.redis = redisClient(config, { maxRetriesPerRequest: 3 });
  }

  async onModuleDestroy(): Promise<void> {
    await this.redis.quit().catch(() => undefined);
  }
}
