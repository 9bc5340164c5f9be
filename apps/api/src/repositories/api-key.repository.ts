import { Inject, Injectable } from '@nestjs/common';
import { CONFIG, type Config } from '@lavida/config';
import type { ApiKeyRecord } from '../auth/principal.js';
import { RedisConnection } from './redis-connection.js';

/**
 * API keys in Redis, by the SHA-256 of the key (never the key itself):
 * `<QUEUE_PREFIX>:apikey:<sha256 hex>` → JSON record, and `<QUEUE_PREFIX>:apikeys` (a hash: id → sha256
 * hex) to list and revoke by id.
 */
@Injectable()
export class ApiKeyRepository {
  constructor(
    @Inject(CONFIG) private readonly config: Config,
    private readonly connection: RedisConnection,
  ) {}

  private get redis() {
    return this.connection.redis;
  }

  private recordKey(hash: string): string {
    return `${this.config.QUEUE_PREFIX}:apikey:${hash}`;
  }

  private get indexKey(): string {
    return `${this.config.QUEUE_PREFIX}:apikeys`;
  }

  /** The key whose SHA-256 (hex) is `hash`, if it exists and is not revoked. */
  async findByHash(hash: string): Promise<ApiKeyRecord | undefined> {
    const raw = await this.redis.get(this.recordKey(hash));
    return raw ? (JSON.parse(raw) as ApiKeyRecord) : undefined;
  }

  async create(record: ApiKeyRecord, hash: string): Promise<void> {
    await this.redis.multi().set(this.recordKey(hash), JSON.stringify(record)).hset(this.indexKey, record.id, hash).exec();
  }

  /**
   * Makes `record` the key with this hash, replacing an earlier key of the same id with another hash
   * (the configured admin key after ADMIN_API_KEY changed: the old one stops working).
   */
  async ensure(record: ApiKeyRecord, hash: string): Promise<void> {
    const previous = await this.redis.hget(this.indexKey, record.id);
    if (previous === hash && (await this.redis.exists(this.recordKey(hash)))) return;
    const tx = this.redis.multi();
    if (previous && previous !== hash) tx.del(this.recordKey(previous));
    await tx.set(this.recordKey(hash), JSON.stringify(record)).hset(this.indexKey, record.id, hash).exec();
  }

  /** Every key, oldest first. */
  async list(): Promise<ApiKeyRecord[]> {
    const hashes = Object.values(await this.redis.hgetall(this.indexKey));
    if (hashes.length === 0) return [];
    const raw = await this.redis.mget(hashes.map((hash) => this.recordKey(hash)));
    return raw
      .filter((value): value is string => value !== null)
      .map((value) => JSON.parse(value) as ApiKeyRecord)
      .sort((a, b) => a.createdAt.localeCompare(b.createdAt) || a.id.localeCompare(b.id));
  }

  /** Revokes a key: answers false when there is none with this id. */
  async revoke(id: string): Promise<boolean> {
    const hash = await this.redis.hget(this.indexKey, id);
    if (!hash) return false;
    await this.redis.multi().del(this.recordKey(hash)).hdel(this.indexKey, id).exec();
    return true;
  }
}
