import { Inject, Injectable, type OnModuleDestroy } from '@nestjs/common';
import { Redis } from 'ioredis';
import { artifactKey, CONFIG, type Config } from '@lavida/config';

/** Images and other job outputs, kept in Redis until they expire (RESULT_TTL_SECONDS). */
@Injectable()
export class ArtifactRepository implements OnModuleDestroy {
  private readonly redis: Redis;

  constructor(@Inject(CONFIG) private readonly config: Config) {
    this.redis = new Redis(config.REDIS_URL, { maxRetriesPerRequest: 3, lazyConnect: true });
  }

  async put(jobId: string, name: string, bytes: Buffer): Promise<void> {
    await this.redis.set(artifactKey(this.config, jobId, name), bytes, 'EX', this.config.RESULT_TTL_SECONDS);
  }

  async onModuleDestroy(): Promise<void> {
    await this.redis.quit().catch(() => undefined);
  }
}
