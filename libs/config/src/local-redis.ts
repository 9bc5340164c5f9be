import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { createServer } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import { Redis } from 'ioredis';

/*
 * Development helpers for the tools that bring their own Redis (bench, the served-model evaluation):
 * a free port, a PING check, and a throw-away redis-server without persistence.
 */

/** A TCP port nothing listens on right now. */
export async function freePort(host = '127.0.0.1'): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, host, resolve);
  });
  const port = (server.address() as { port: number }).port;
  await new Promise((resolve) => server.close(resolve));
  return port;
}

/** Whether a Redis answers PING at `url` (one try, no retries). */
export async function redisAnswers(url: string): Promise<boolean> {
  const redis = new Redis(url, { lazyConnect: true, maxRetriesPerRequest: 0, retryStrategy: () => null });
  redis.on('error', () => undefined);
  try {
    await redis.connect();
    return (await redis.ping()) === 'PONG';
  } catch {
    return false;
  } finally {
    redis.disconnect();
  }
}

/** Whether `redis-server` is installed. */
export function hasRedisServer(): boolean {
  return spawnSync('redis-server', ['--version']).status === 0;
}

/**
 * A redis-server on a free port of `host`, without persistence, once it answers PING. The caller
 * owns `child` (kill it when done).
 */
export async function startLocalRedis(host = '127.0.0.1', timeoutMs = 15_000): Promise<{ url: string; child: ChildProcess }> {
  const port = await freePort(host);
  const child = spawn('redis-server', ['--port', String(port), '--bind', host, '--save', '', '--appendonly', 'no'], { stdio: 'ignore' });
  const url = `redis://${host}:${port}`;
  const deadline = Date.now() + timeoutMs;
  while (!(await redisAnswers(url))) {
    if (child.exitCode !== null) throw new Error(`redis-server exited with ${child.exitCode}`);
    if (Date.now() > deadline) {
      child.kill('SIGKILL');
      throw new Error(`redis-server did not answer PING within ${timeoutMs / 1000} s`);
    }
    await sleep(50);
  }
  return { url, child };
}
