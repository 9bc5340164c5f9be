import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { freshPrefix, startRedis, type TestRedis } from '../support/redis.js';
import { TestSystem } from '../support/system.js';
import { getJob, postJob, waitForJob } from '../support/http.js';
import { waitFor } from '../support/wait.js';

/** `priority` orders queued stages (1 first); `deadline_seconds` fails a job that runs past it. */
describe('priorities and deadlines', () => {
  let redis: TestRedis;
  let system: TestSystem;
  before(async () => {
    redis = await startRedis();
    // One generation at a time; the text side answers every frame 15 ms late, so that a 300-step image takes seconds.
    system = await new TestSystem({
      redisUrl: redis.url,
      prefix: freshPrefix(),
      env: { GEN_CONCURRENCY: 1 },
      undEnv: { FAULT_EXCHANGE_DELAY_MS: 15 },
    }).start();
  });
  after(async () => {
    await system?.stop();
    await redis?.stop();
  });

  const submit = async (input: Record<string, unknown>) => {
    const created = await postJob(system.apiUrl, { task: 'text-to-image', input: { prompt: 'two circles', ...input } });
    assert.equal(created.status, 202, JSON.stringify(created.json));
    return String(created.json.id);
  };
  const cancel = (id: string) => fetch(`${system.apiUrl}/v1/jobs/${id}/cancel`, { method: 'POST' });
  /** Submits a long job and waits until the gen-worker runs it. */
  const busy = async (seed: number) => {
    const id = await submit({ seed, steps: 300 });
    await waitFor(async () => ((await getJob(system.apiUrl, id)).progress?.step ?? 0) >= 1, 30_000, 'the long job to run', 20);
    return id;
  };
  const queued = (id: string) =>
    waitFor(async () => (await getJob(system.apiUrl, id)).timeline[0]?.status === 'queued', 10_000, `job ${id} to queue its stage`, 20);

  it('validates priority (1..10) and deadline_seconds (1..3600), naming the field', async () => {
    for (const [input, field] of [
      [{ priority: 0 }, 'input.priority'],
      [{ priority: 11 }, 'input.priority'],
      [{ priority: 1.5 }, 'input.priority'],
      [{ deadline_seconds: 0 }, 'input.deadline_seconds'],
      [{ deadline_seconds: 3601 }, 'input.deadline_seconds'],
    ] as const) {
      const created = await postJob(system.apiUrl, { task: 'text-to-image', input: { prompt: 'x', ...input } });
      assert.equal(created.status, 400, JSON.stringify(input));
      assert.equal((created.json.error as { field?: string }).field, field);
    }
    const ground = await postJob(system.apiUrl, { task: 'ground', input: { image: 'x', refs: ['a'], priority: 0 } });
    assert.equal(ground.status, 400, 'every task takes priority');
    assert.equal((ground.json.error as { field?: string }).field, 'input.priority');
  });

  it('with the gen-worker busy, a high-priority job queued after a low-priority one generates first', async () => {
    const running = await busy(1);
    const low = await submit({ seed: 2, steps: 2, priority: 10 });
    await queued(low);
    const high = await submit({ seed: 3, steps: 2, priority: 1 });
    await queued(high);
    assert.equal((await getJob(system.apiUrl, running)).status, 'processing', 'both queued while the long job runs');
    assert.equal((await cancel(running)).status, 200);
    const [lowJob, highJob] = await Promise.all([waitForJob(system.apiUrl, low, 30_000), waitForJob(system.apiUrl, high, 30_000)]);
    assert.equal(lowJob.status, 'succeeded', system.dump());
    assert.equal(highJob.status, 'succeeded', system.dump());
    const started = (job: typeof lowJob) => Date.parse(String((job.timeline[0] as { started_at?: string }).started_at));
    assert.ok(started(highJob) < started(lowJob), `high started ${started(highJob)}, low ${started(lowJob)}`);
    assert.equal((await getJob(system.apiUrl, high)).status, 'succeeded');
  });

  it('a job past deadline_seconds fails DEADLINE_EXCEEDED mid-diffusion within ~2 s, not retried', async () => {
    const submitted = Date.now();
    const id = await submit({ seed: 4, steps: 1000, deadline_seconds: 1 });
    const job = await waitForJob(system.apiUrl, id, 10_000);
    const took = Date.now() - submitted;
    assert.equal(job.status, 'failed', system.dump());
    assert.match(String(job.error), /^DEADLINE_EXCEEDED: /);
    assert.ok(took < 2500, `failed after ${took} ms`);
    const stage = job.timeline[0];
    assert.equal(stage.status, 'failed');
    assert.equal(stage.attempts, 1, 'a deadline is not retried');
    assert.match(String(stage.error), /DEADLINE_EXCEEDED: .*while the stage ran/);
    assert.ok((job.progress?.step ?? 0) < 1000, 'it stopped before the end');
  });

  it('a stage queued behind a busy worker past its deadline never starts', async () => {
    const running = await busy(5);
    const id = await submit({ seed: 6, steps: 2, deadline_seconds: 1 });
    await queued(id);
    await new Promise((resolve) => setTimeout(resolve, 1200));
    assert.equal((await cancel(running)).status, 200);
    const job = await waitForJob(system.apiUrl, id, 10_000);
    assert.equal(job.status, 'failed', system.dump());
    assert.match(String(job.error), /^DEADLINE_EXCEEDED: .*before the stage started/);
    assert.equal(job.timeline[0].attempts, 1);
    assert.ok(!job.progress?.step, 'no step ran');
  });
});
