import { randomBytes } from 'node:crypto';
import { hasRedisServer, startLocalRedis } from '@lavida/config';

export interface TestRedis {
  url: string;
  source: 'REDIS_URL' | 'testcontainers' | 'redis-server';
  stop(): Promise<void>;
}

/**
 * A real Redis for tests: REDIS_URL when set, else a testcontainers Redis when a Docker engine
 * answers, else a local redis-server on a free port.
 */
export async function startRedis(): Promise<TestRedis> {
  if (process.env.REDIS_URL) return { url: process.env.REDIS_URL, source: 'REDIS_URL', stop: async () => undefined };
  const container = await tryContainer();
  if (container) return container;
  if (!hasRedisServer()) {
    throw new Error('tests need Redis: set REDIS_URL, run a Docker engine, or install redis-server (apt-get install -y redis-server)');
  }
  const { url, child } = await startLocalRedis('127.0.0.1', 10_000);
  return {
    url,
    source: 'redis-server',
    stop: async () => {
      child.kill('SIGTERM');
      await new Promise((resolve) => child.once('exit', resolve));
    },
  };
}

async function tryContainer(): Promise<TestRedis | undefined> {
  try {
    const { GenericContainer } = await import('testcontainers');
    let timer: NodeJS.Timeout | undefined;
    const started = await Promise.race([
      new GenericContainer('redis:7-alpine').withExposedPorts(6379).start(),
      new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error('timeout')), 60_000);
      }),
    ]).finally(() => clearTimeout(timer));
    return {
      url: `redis://${started.getHost()}:${started.getMappedPort(6379)}`,
      source: 'testcontainers',
      stop: async () => {
        await started.stop();
      },
    };
  } catch {
    // No Docker engine here: testcontainers fails in milliseconds.
    return undefined;
  }
}

/** A fresh queue prefix, so tests never see each other's jobs. */
export function freshPrefix(): string {
  return `test-${randomBytes(4).toString('hex')}`;
}
