import { Inject, Injectable } from '@nestjs/common';
import { CONFIG, type Config } from '@lavida/config';
import { RedisConnection } from './redis-connection.js';

/**
 * Fixed window, atomic: counts the request and starts the window (its expiry) on the first one in a
 * single script, so concurrent requests never read-then-write. Answers the count and the window's
 * remaining milliseconds.
 */
const CONSUME = `
local count = redis.call('INCR', KEYS[1])
local ttl = redis.call('PTTL', KEYS[1])
if ttl < 0 then
  redis.call('PEXPIRE', KEYS[1], ARGV[1])
  ttl = tonumber(ARGV[1])
end
return {count, ttl}
`;

export interface WindowUsage {
  /** Requests counted in this window, this one included. */
  count: number;
  /** Milliseconds until the window ends. */
  resetMs: number;
}

@Injectable()
export class RateLimitRepository {
  constructor(
    @Inject(CONFIG) private readonly config: Config,
    private readonly connection: RedisConnection,
  ) {}

  /** Counts one request of `subject` (`key:<id>` or `ip:<address>`) in its current window. */
  async consume(subject: string, windowMs: number): Promise<WindowUsage> {
    const key = `${this.config.QUEUE_PREFIX}:ratelimit:${subject}`;
    const [count, resetMs] = (await this.connection.redis.eval(CONSUME, 1, key, String(windowMs))) as [number, number];
    return { count, resetMs };
  }
}
