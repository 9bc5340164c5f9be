import { Inject, Injectable } from '@nestjs/common';
import { CONFIG, type Config } from '@lavida/config';
import { RedisConnection } from './redis-connection.js';

/** What an Idempotency-Key stands for: the request body's hash and the job it created (or is creating). */
export interface IdempotencyRecord {
  /** SHA-256 (hex) of the canonical JSON body of the first request. */
  bodyHash: string;
  jobId: string;
  /** `pending` while the first request creates the job, then `created`. */
  state: 'pending' | 'created';
  createdAt: string;
}

/** Replaces the record only while it is still the reservation of this job id. */
const COMPLETE = `
local current = redis.call('GET', KEYS[1])
if current and cjson.decode(current).jobId == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[2], 'EX', ARGV[3])
  return 1
end
return 0
`;

/** Drops the reservation only while it is still this job id's. */
const RELEASE = `
local current = redis.call('GET', KEYS[1])
if current and cjson.decode(current).jobId == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
`;

/** Idempotency keys in Redis: `<QUEUE_PREFIX>:idempotency:<api key id or open>:<sha256 of the key>`. */
@Injectable()
export class IdempotencyRepository {
  constructor(
    @Inject(CONFIG) private readonly config: Config,
    private readonly connection: RedisConnection,
  ) {}

  key(scope: string, keyHash: string): string {
    return `${this.config.QUEUE_PREFIX}:idempotency:${scope}:${keyHash}`;
  }

  /** Reserves the key for a new job (SET NX): answers false when another request holds it. */
  async reserve(key: string, record: IdempotencyRecord, ttlSeconds: number): Promise<boolean> {
    return (await this.connection.redis.set(key, JSON.stringify(record), 'EX', ttlSeconds, 'NX')) === 'OK';
  }

  async get(key: string): Promise<IdempotencyRecord | undefined> {
    const raw = await this.connection.redis.get(key);
    return raw ? (JSON.parse(raw) as IdempotencyRecord) : undefined;
  }

  async complete(key: string, record: IdempotencyRecord, ttlSeconds: number): Promise<void> {
    await this.connection.redis.eval(COMPLETE, 1, key, record.jobId, JSON.stringify(record), String(ttlSeconds));
  }

  async release(key: string, jobId: string): Promise<void> {
    await this.connection.redis.eval(RELEASE, 1, key, jobId);
  }
}
