import { Cluster, Redis, type RedisOptions } from 'ioredis';
import type { Config } from './index.js';

/** A connection to Redis: one server, or a Redis Cluster (REDIS_CLUSTER=true). Both run every command the apps use. */
export type RedisClient = Redis | Cluster;

/**
 * A Redis connection from the configuration. With REDIS_CLUSTER=true, REDIS_URL names one node of a
 * Redis Cluster (its user, password and `rediss:` TLS apply to every node) and the client follows the
 * cluster's slot map and MOVED/ASK redirections; QUEUE_PREFIX carries a hash tag then, so that every
 * key, and so every multi-key script and transaction, is in one slot.
 */
export function redisClient(config: Pick<Config, 'REDIS_URL' | 'REDIS_CLUSTER'>, options: RedisOptions = {}): RedisClient {
  if (!config.REDIS_CLUSTER) return new Redis(config.REDIS_URL, options);
  const url = new URL(config.REDIS_URL);
  const { lazyConnect, ...redisOptions } = options;
  return new Cluster([{ host: url.hostname, port: Number(url.port || 6379) }], {
    lazyConnect,
    redisOptions: {
      ...redisOptions,
      ...(url.username ? { username: decodeURIComponent(url.username) } : {}),
      ...(url.password ? { password: decodeURIComponent(url.password) } : {}),
      ...(url.protocol === 'rediss:' ? { tls: {} } : {}),
    },
  });
}
