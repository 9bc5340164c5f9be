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
import { Cluster, Redis } from 'ioredis';
import { loadConfig, redisAnswers } from '@lavida/config';
import { TestSystem } from '../support/system.js';
import { freePort, waitFor } from '../support/wait.js';

const hasRedisServer = spawnSync('redis-server', ['--version']).status === 0;

/** A redis-server in cluster mode (no slots yet) on a free port, in a throw-away folder. */
async function startClusterNode(): Promise<{ port: number; url: string; stop: () => Promise<void> }> {
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
  let exited: string | undefined;
  child.once('exit', (code, signal) => (exited = `redis-server on port ${port} exited (${code ?? signal}) before it answered`));
  const stop = async (): Promise<void> => {
    if (!exited) {
      child.kill('SIGTERM');
      await new Promise((resolve) => child.once('exit', resolve));
    }
    rmSync(dir, { recursive: true, force: true });
  };
  try {
    // A fresh connection each poll (redisAnswers): a lazy client whose first connect came before the server listened stays
    // in its own reconnect loop, and every later connect() on it rejects, so it would never see the server.
    await waitFor(
      async () => {
        if (exited) throw new Error(exited);
        return redisAnswers(url);
      },
      10_000,
      'redis-server',
    );
  } catch (err) {
    await stop(); // a node that never answered leaves no process or folder behind
    throw err;
  }
  return { port, url, stop };
}

async function clusterOk(url: string): Promise<boolean> {
  const redis = new Redis(url);
  try {
    return /cluster_state:ok/.test(String(await redis.cluster('INFO')));
  } finally {
    redis.disconnect();
  }
}

/** Keys, an idempotent submission, webhooks, a cancellation and a pipeline: every kind of key the system writes. */
async function exercise(system: TestSystem, admin: string, receiverUrl: string, delivered: () => number): Promise<void> {
  const call = async (path: string, body?: unknown, headers: Record<string, string> = {}) => {
    const response = await fetch(`${system.apiUrl}${path}`, {
      method: body === undefined ? 'GET' : 'POST',
      headers: { authorization: `Bearer ${admin}`, ...(body === undefined ? {} : { 'content-type': 'application/json' }), ...headers },
      ...(body === undefined ? {} : { body: JSON.stringify(body) }),
    });
    return { status: response.status, json: (await response.json()) as Record<string, unknown> };
  };
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
  await waitFor(() => delivered() >= 3, 10_000, 'webhook deliveries');
  await waitFor(async () => (await call(`/v1/jobs/${String(long.json.id)}`)).json.status === 'canceled', 10_000, 'the long job canceled');
  // No app met a cross-slot error or a redirection it could not follow.
  assert.doesNotMatch(system.dump(), /CROSSSLOT|non local key|MOVED/);
}

/** Every key on `node`, by SCAN. */
async function keysOf(node: Redis): Promise<string[]> {
  const keys: string[] = [];
  let cursor = '0';
  do {
    const [next, batch] = await node.scan(cursor, 'COUNT', 1000);
    keys.push(...batch);
    cursor = next;
  } while (cursor !== '0');
  return keys;
}

const KINDS = [':pipeline:', ':generation:', ':artifact:', ':apikey', ':ratelimit:', ':idempotency:', ':canceled:', ':webhook-deliveries:'];

/** A webhook receiver that answers 200 and counts. */
async function startReceiver(): Promise<{ url: string; delivered: () => number; stop: () => void }> {
  let delivered = 0;
  const server: Server = createServer((req, res) => {
    req.resume();
    req.on('end', () => {
      delivered++;
      res.writeHead(200).end();
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/hook`,
    delivered: () => delivered,
    stop: () => server.close(),
  };
}

const clusterEnv = (admin: string) => ({ ADMIN_API_KEY: admin, WEBHOOK_ALLOW_PRIVATE: 'true', WEBHOOK_RETRY_SCHEDULE_MS: '200' });

/**
 * QUEUE_PREFIX with a hash tag ({…}): every key the system writes (BullMQ's queues and jobs, artefacts,
 * API keys, rate limits, idempotency keys, cancellations, webhook records, the worker registry) lands
 * in the hash slot of the tag. On one node in cluster mode that owns every slot, Redis Cluster's rules
 * apply (a multi-key command, MULTI or script across slots fails with CROSSSLOT) without redirections.
 */
describe('Redis Cluster: every key under one hash tag', { skip: hasRedisServer ? false : 'needs redis-server' }, () => {
  const tag = `lavida-${randomBytes(3).toString('hex')}`;
  const prefix = `{${tag}}`;
  const admin = `lv_${randomBytes(24).toString('base64url')}`;
  let node: Awaited<ReturnType<typeof startClusterNode>>;
  let system: TestSystem;
  let client: Redis;
  let receiver: Awaited<ReturnType<typeof startReceiver>>;

  before(async () => {
    node = await startClusterNode();
    client = new Redis(node.url);
    await client.cluster('ADDSLOTSRANGE', 0, 16383);
    await waitFor(() => clusterOk(node.url), 10_000, 'cluster_state:ok');
    receiver = await startReceiver();
    system = await new TestSystem({ redisUrl: node.url, prefix, env: clusterEnv(admin), undEnv: { FAULT_EXCHANGE_DELAY_MS: 20 } }).start();
  });
  after(async () => {
    await system?.stop();
    client?.disconnect();
    receiver?.stop();
    await node?.stop();
  });

  it('runs keys, idempotent submissions, webhooks, a cancellation and pipelines on a cluster-mode Redis', async () => {
    await exercise(system, admin, receiver.url, receiver.delivered);
  });

  it('every key the system wrote starts with the prefix and hashes to the slot of its tag', async () => {
    const keys = await keysOf(client);
    assert.ok(keys.length > 20, `keys written: ${keys.length}`);
    const slot = Number(await client.cluster('KEYSLOT', tag));
    assert.deepEqual(
      keys.filter((k) => !k.startsWith(`${prefix}:`)),
      [],
      'every key starts with QUEUE_PREFIX',
    );
    for (const k of keys) assert.equal(Number(await client.cluster('KEYSLOT', k)), slot, k);
    for (const kind of KINDS)
      assert.ok(
        keys.some((k) => k.includes(kind)),
        `a ${kind} key was written`,
      );
  });

  it('without a hash tag, BullMQ cannot queue on it: CROSSSLOT', async () => {
    const queue = new Queue('generation', { connection: client, prefix: 'untagged' });
    try {
      await assert.rejects(queue.add('generate', {}), /CROSSSLOT|non local key|different slot/i);
    } finally {
      await queue.close();
    }
  });

  it('REDIS_CLUSTER=true refuses a QUEUE_PREFIX without a hash tag', () => {
    assert.throws(
      () => loadConfig({ REDIS_CLUSTER: 'true', QUEUE_PREFIX: 'lavida' }),
      /QUEUE_PREFIX=lavida \(REDIS_CLUSTER=true needs a hash tag/,
    );
    assert.throws(() => loadConfig({ QUEUE_PREFIX: '{}' }), /QUEUE_PREFIX=\{\} \(expected at most one non-empty \{hash tag\}/);
    assert.equal(loadConfig({ REDIS_CLUSTER: 'true', QUEUE_PREFIX: '{lavida}' }).REDIS_CLUSTER, true);
  });
});

/**
 * A real three-node Redis Cluster, REDIS_CLUSTER=true, REDIS_URL naming a node that does not serve the
 * prefix's slot: every app follows the slot map (a plain client would get MOVED), and every key lands
 * on the one node that serves the tag.
 */
describe('a three-node Redis Cluster (REDIS_CLUSTER=true)', { skip: hasRedisServer ? false : 'needs redis-server' }, () => {
  const admin = `lv_${randomBytes(24).toString('base64url')}`;
  let nodes: Awaited<ReturnType<typeof startClusterNode>>[] = [];
  let system: TestSystem;
  let receiver: Awaited<ReturnType<typeof startReceiver>>;
  let tag = '';
  let owner: Redis;
  let cluster: Cluster;

  before(async () => {
    // Keep the nodes that did start, so that after() stops them when another one failed.
    const started = await Promise.allSettled([0, 1, 2].map(() => startClusterNode()));
    nodes = started.flatMap((r) => (r.status === 'fulfilled' ? [r.value] : []));
    for (const r of started) if (r.status === 'rejected') throw r.reason;
    const create = spawnSync(
      'redis-cli',
      ['--cluster', 'create', ...nodes.map((n) => `127.0.0.1:${n.port}`), '--cluster-replicas', '0', '--cluster-yes'],
      { encoding: 'utf8', timeout: 30_000 },
    );
    assert.equal(create.status, 0, `${create.stdout}\n${create.stderr}`);
    await waitFor(
      async () => (await Promise.all(nodes.map((n) => clusterOk(n.url)))).every(Boolean),
      20_000,
      'cluster_state:ok on every node',
    );
    // A tag whose slot another node than the one in REDIS_URL serves.
    const seed = new Redis(nodes[0].url);
    const slots = await seed.cluster('SLOTS');
    for (;;) {
      tag = `lavida-${randomBytes(3).toString('hex')}`;
      const slot = Number(await seed.cluster('KEYSLOT', tag));
      const range = slots.find(([from, to]) => slot >= from && slot <= to)!;
      if (range[2][1] !== nodes[0].port) {
        owner = new Redis(`redis://127.0.0.1:${range[2][1]}`);
        break;
      }
    }
    seed.disconnect();
    cluster = new Cluster([{ host: '127.0.0.1', port: nodes[0].port }]);
    receiver = await startReceiver();
    system = await new TestSystem({
      redisUrl: nodes[0].url,
      prefix: `{${tag}}`,
      env: { ...clusterEnv(admin), REDIS_CLUSTER: 'true' },
      undEnv: { FAULT_EXCHANGE_DELAY_MS: 20 },
    }).start();
  });
  after(async () => {
    await system?.stop();
    owner?.disconnect();
    cluster?.disconnect();
    receiver?.stop();
    await Promise.all(nodes.map((n) => n.stop()));
  });

  it('the apps follow the slot map: keys, idempotent submissions, webhooks, a cancellation and pipelines work', async () => {
    await exercise(system, admin, receiver.url, receiver.delivered);
  });

  it('every key is on the node that serves the tag, none elsewhere', async () => {
    const keys = await keysOf(owner);
    assert.ok(keys.length > 20, `keys on the tag's node: ${keys.length}`);
    assert.deepEqual(
      keys.filter((k) => !k.startsWith(`{${tag}}:`)),
      [],
    );
    for (const kind of KINDS)
      assert.ok(
        keys.some((k) => k.includes(kind)),
        `a ${kind} key was written`,
      );
    for (const node of nodes) {
      const redis = new Redis(node.url);
      try {
        if (node.port !== Number(owner.options.port)) assert.deepEqual(await keysOf(redis), [], `node ${node.port} holds no key`);
      } finally {
        redis.disconnect();
      }
    }
    // A cluster-aware client reads them through any node.
    assert.ok((await cluster.get(`{${tag}}:idempotency:${'x'}`)) === null);
    assert.ok(keys.some((k) => k.includes(':apikeys')));
    assert.equal(await cluster.type(keys.find((k) => k.endsWith(':apikeys'))!), 'hash');
  });
});
