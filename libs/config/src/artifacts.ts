import type { Config } from './index.js';
import { artifactKey } from './index.js';
import { redisClient, type RedisClient } from './redis.js';

/** Images and other job outputs, kept in Redis until they expire (RESULT_TTL_SECONDS). */
export class ArtifactStore {
  private readonly redis: RedisClient;

  constructor(private readonly config: Pick<Config, 'REDIS_URL' | 'REDIS_CLUSTER' | 'QUEUE_PREFIX' | 'RESULT_TTL_SECONDS'>) {
    this.redis = redisClient(config, { maxRetriesPerRequest: 3, lazyConnect: true });
  }

  async put(jobId: string, name: string, bytes: Buffer): Promise<void> {
    await this.redis.set(artifactKey(this.config, jobId, name), bytes, 'EX', this.config.RESULT_TTL_SECONDS);
  }

  /** The artefact's bytes, or undefined when it does not exist (never written, or expired). */
  async get(jobId: string, name: string): Promise<Buffer | undefined> {
    return (await this.redis.getBuffer(artifactKey(this.config, jobId, name))) ?? undefined;
  }

  // After the workers drained (beforeApplicationShutdown): a stage finishing in the drain still stores its image.
  async onApplicationShutdown(): Promise<void> {
    await this.redis.quit().catch(() => undefined);
  }
}
