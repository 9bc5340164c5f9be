import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import type { ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { FlowProducer, Worker, type Job } from 'bullmq';
import { Redis } from 'ioredis';
import { canceledKey, hasRedisServer, startLocalRedis } from '@lavida/config';
import { QueueName } from '@lavida/contracts';
import { parseStepRead, STEP_READ_COMMAND, STEP_READ_LUA, stepReadKeys, type StepReadCommand } from './step-read.js';

/** A real Redis: REDIS_URL when set, else a throw-away redis-server. */
async function redisUrl(): Promise<{ url: string; child?: ChildProcess }> {
  if (process.env.REDIS_URL) return { url: process.env.REDIS_URL };
  if (!hasRedisServer()) throw new Error('this test needs Redis: set REDIS_URL or install redis-server');
  return startLocalRedis();
}

describe('step read (cancel mark and stage results in one request)', () => {
  let server: { url: string; child?: ChildProcess };
  let redis: Redis;
  const config = { QUEUE_PREFIX: `test-${randomBytes(4).toString('hex')}` };

  before(async () => {
    server = await redisUrl();
    redis = new Redis(server.url, { maxRetriesPerRequest: null });
    redis.defineCommand(STEP_READ_COMMAND, { numberOfKeys: 2, lua: STEP_READ_LUA });
  });

  after(async () => {
    const keys = await redis.keys(`${config.QUEUE_PREFIX}:*`);
    if (keys.length) await redis.del(...keys);
    await redis.quit();
    server.child?.kill('SIGKILL');
  });

  const read = (job: Job<{ id: string }>) => {
    const keys = stepReadKeys(config, job);
    return (redis as unknown as StepReadCommand)[STEP_READ_COMMAND](keys.canceled, keys.processed).then(parseStepRead);
  };

  it('answers what Job.getChildrenValues and the cancel mark answer, through real BullMQ children', async () => {
    // Connection options, not instances: BullMQ owns (and closes) these connections.
    const { hostname, port } = new URL(server.url);
    const connection = { host: hostname, port: Number(port || 6379), maxRetriesPerRequest: null };
    const prefix = config.QUEUE_PREFIX;
    const flows = new FlowProducer({ connection, prefix });
    const results: Record<string, unknown> = {
      plan: { task: 'plan', layout: [{ ref: 'a: b', box: [1, 2, 3, 4] }] },
      'generate-1': { tokens: [1, 2, 3], artifact: { name: 'attempt-1.png' } },
    };
    const worker = new Worker(QueueName.Understanding, (job) => Promise.resolve(results[job.name]), { connection, prefix, concurrency: 2 });
    try {
      const id = `p-${randomBytes(4).toString('hex')}`;
      const { job: parent } = await flows.add({
        name: 'pipeline',
        queueName: QueueName.Pipeline,
        data: { id },
        opts: { jobId: id },
        children: Object.keys(results).map((name) => ({
          name,
          queueName: QueueName.Understanding,
          data: {},
          opts: { jobId: `${id}-${name}` },
        })),
      });
      // Both children done: the parent moves from waiting-children to wait.
      for (let i = 0; i < 200 && (await parent.getState()) !== 'waiting'; i++) await new Promise((r) => setTimeout(r, 25));
      assert.equal(await parent.getState(), 'waiting');

      const step = await read(parent as Job<{ id: string }>);
      assert.equal(step.canceled, false);
      const values = await parent.getChildrenValues();
      assert.equal(Object.keys(values).length, 2);
      // Keyed by stage job id (the fields are `<prefix>:<queue>:<job id>`), the same values.
      assert.deepEqual(step.results, new Map(Object.entries(values).map(([key, value]) => [key.slice(key.lastIndexOf(':') + 1), value])));
      assert.deepEqual(step.results.get(`${id}-plan`), results.plan);

      await redis.set(canceledKey(config, id), new Date().toISOString());
      assert.equal((await read(parent as Job<{ id: string }>)).canceled, true);
    } finally {
      await worker.close();
      await flows.close();
    }
  });

  it('a pipeline with no finished stage reads no results', async () => {
    const job = { data: { id: 'none' }, id: 'none', queueQualifiedName: `${config.QUEUE_PREFIX}:${QueueName.Pipeline}` } as Job<{
      id: string;
    }>;
    assert.deepEqual(await read(job), { canceled: false, results: new Map() });
  });

  it('refuses a reply of another shape', () => {
    assert.throws(() => parseStepRead([1]), /unexpected reply/);
    assert.throws(() => parseStepRead(null), /unexpected reply/);
  });
});
