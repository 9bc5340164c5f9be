import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Queue } from 'bullmq';
import { Redis } from 'ioredis';
import { TestSystem } from '../support/system.js';
import { freePort, waitFor } from '../support/wait.js';

const hasRedisServer = spawnSync('redis-server', ['--version']).status === 0;

/**
 * A Redis in cluster mode that owns every slot itself: one node, so a plain client never meets a
 * MOVED redirect, but Redis Cluster's rules apply: a multi-key command, a MULTI or a Lua script whose
 * keys hash to different slots fails with CROSSSLOT. What runs here runs on a Redis Cluster as far as
 * key placement goes.
 */
async function startClusterNode(): Promise<{ url: string; stop: () => Promise<void> }> {
  const dir = mkdtempSync(join(tmpdir(), 'lavida-cluster-'));
  const port = await freePort();
  const child: ChildProcess = spawn(
    'redis-server',
    ['--port', String(port), '--bind', '127.0.0.1', '--cluster-enabled', 'yes', '--cluster-config-file', join(dir, 'nodes.conf')].concat([
      '--dir',
      dir,
      '--save',
      '',
      '--appendonly',
      'no',
    ]),
    { stdio: 'ignore' },
  );
  const url = `redis://127.0.0.1:${port}`;
  const admin = new Redis(url, { lazyConnect: true, maxRetriesPerRequest: 0, retryStrategy: () => 100 });
  admin.on('error', () => undefined);
  await waitFor(
    async () =>
      (await admin.connect().then(
        () => true,
        () => false,
      )) && (await admin.ping()) === 'PONG',
    10_000,
    'redis-server',
  );
  await admin.cluster('ADDSLOTSRANGE', 0, 16383);
  await waitFor(async () => /cluster_state:ok/.test(String(await admin.cluster('INFO'))), 10_000, 'cluster_state:ok');
  admin.disconnect();
  return {
    url,
    stop: async () => {
      child.kill('SIGTERM');
      await new Promise((resolve) => child.once('exit', resolve));
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/**
 * QUEUE_PREFIX with a hash tag ({…}): every key the system writes (BullMQ's queues and jobs, artefacts,
 * API keys, rate limits, idempotency keys, cancellations, webhook records, the worker registry) lands
 * in the hash slot of the tag, so it runs on a Redis Cluster; without a tag BullMQ's own scripts fail.
 */
describe('Redis Cluster: every key under one hash tag', { skip: hasRedisServer ? false : 'needs redis-server' }, () => {
  const tag = `lavida-${randomBytes(3).toString('hex')}`;
  const prefix = `{${tag}}`;
  const admin = `lv_${randomBytes(24).toString('base64url')}`;
  let node: { url: string; stop: () => Promise<void> };
  let system: TestSystem;
  let client: Redis;
  let receiver: Server;
  let receiverUrl = '';
  let delivered = 0;

  before(async () => {
    node = await startClusterNode();
    client = new Redis(node.url);
    receiver = createServer((req, res) => {
      req.resume();
      req.on('end', () => {
        delivered++;
        res.writeHead(200).end();
      });
    });
    await new Promise<void>((resolve) => receiver.listen(0, '127.0.0.1', resolve));
    receiverUrl = `http://127.0.0.1:${(receiver.address() as AddressInfo).port}/hook`;
    system = await new TestSystem({
      redisUrl: node.url,
      prefix,
      env: { ADMIN_API_KEY: admin, WEBHOOK_ALLOW_PRIVATE: 'true', WEBHOOK_RETRY_SCHEDULE_MS: '200' },
      undEnv: { FAULT_EXCHANGE_DELAY_MS: 20 },
    }).start();
  });
  after(async () => {
    await system?.stop();
    client?.disconnect();
    receiver?.close();
    await node?.stop();
  });

  const call = async (path: string, body?: unknown, headers: Record<string, string> = {}) => {
    const response = await fetch(`${system.apiUrl}${path}`, {
      method: body === undefined ? 'GET' : 'POST',
      headers: { authorization: `Bearer ${admin}`, ...(body === undefined ? {} : { 'content-type': 'application/json' }), ...headers },
      ...(body === undefined ? {} : { body: JSON.stringify(body) }),
    });
    return { status: response.status, json: (await response.json()) as Record<string, unknown> };
  };

  it('runs keys, idempotent submissions, webhooks, a cancellation and pipelines on a cluster-mode Redis', async () => {
    const key = await call('/v1/keys', { name: 'cluster test', scopes: ['jobs'] });
    assert.equal(key.status, 201, JSON.stringify(key.json));

    const body = { task: 'text-to-image', input: { prompt: 'a red circle', seed: 1, steps: 4 }, webhook: receiverUrl };
    const first = await call('/v1/jobs', body, { 'idempotency-key': 'cluster-1' });
    assert.equal(first.status, 202, JSON.stringify(first.json));
    const replay = await call('/v1/jobs', body, { 'idempotency-key': 'cluster-1' });
    assert.equal(replay.json.id, first.json.id, 'the idempotency key answered the same job');

    const long = await call('/v1/jobs', { task: 'text-to-image', input: { prompt: 'a blue square', seed: 2, steps: 200 } });
    await waitFor(
      async () => ((await call(`/v1/jobs/${String(long.json.id)}`)).json.progress as { step?: number } | null)?.step,
      20_000,
      'the long job to run',
    );
    assert.equal((await call(`/v1/jobs/${String(long.json.id)}/cancel`, {})).status, 200);

    // The api needs the admin key: poll with it.
    const done = await waitFor(
      async () => {
        const job = (await call(`/v1/jobs/${String(first.json.id)}`)).json;
        return ['succeeded', 'failed', 'canceled'].includes(String(job.status)) ? job : undefined;
      },
      30_000,
      'the job to finish',
    );
    assert.equal(done.status, 'succeeded', `${JSON.stringify(done)}\n${system.dump()}`);
    await waitFor(() => delivered >= 3, 10_000, 'webhook deliveries');
    assert.equal((await call(`/v1/jobs/${String(long.json.id)}`)).json.status, 'canceled');

    // No app met a cross-slot error.
    assert.doesNotMatch(system.dump(), /CROSSSLOT|non local key/);
  });

  it('every key the system wrote starts with the prefix and hashes to the slot of its tag', async () => {
    const keys: string[] = [];
    let cursor = '0';
    do {
      const [next, batch] = await client.scan(cursor, 'COUNT', 1000);
      keys.push(...batch);
      cursor = next;
    } while (cursor !== '0');
    assert.ok(keys.length > 20, `keys written: ${keys.length}`);
    const slot = Number(await client.cluster('KEYSLOT', tag));
    const stray = keys.filter((k) => !k.startsWith(`${prefix}:`));
    assert.deepEqual(stray, [], 'every key starts with QUEUE_PREFIX');
    for (const k of keys) assert.equal(Number(await client.cluster('KEYSLOT', k)), slot, k);
    for (const kind of [
      ':pipeline:',
      ':generation:',
      ':artifact:',
      ':apikey',
      ':ratelimit:',
      ':idempotency:',
      ':canceled:',
      ':webhook-deliveries:',
    ]) {
      assert.ok(
        keys.some((k) => k.includes(kind)),
        `a ${kind} key was written`,
      );
    }
  });

  it('without a hash tag, BullMQ cannot queue on it: CROSSSLOT', async () => {
    const queue = new Queue('generation', { connection: client, prefix: 'untagged' });
    try {
      await assert.rejects(queue.add('generate', {}), /CROSSSLOT|non local key|different slot/i);
    } finally {
      await queue.close();
    }
  });
});
