import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { freshPrefix, startRedis, type TestRedis } from '../support/redis.js';
import { TestSystem } from '../support/system.js';
import { getJob, postJob, waitForJob } from '../support/http.js';
import { waitFor } from '../support/wait.js';

/** POST /v1/jobs/{id}/cancel reaches the running stage (its AbortSignal) and removes queued ones. */
describe('cancellation', () => {
  let redis: TestRedis;
  let system: TestSystem;
  before(async () => {
    redis = await startRedis();
    // The text side answers every frame 15 ms late, so that a 300-step image takes seconds.
    system = await new TestSystem({ redisUrl: redis.url, prefix: freshPrefix(), undEnv: { FAULT_EXCHANGE_DELAY_MS: 15 } }).start();
  });
  after(async () => {
    await system?.stop();
    await redis?.stop();
  });

  const submit = async (seed: number) => {
    const created = await postJob(system.apiUrl, { task: 'text-to-image', input: { prompt: 'two circles', seed, steps: 300 } });
    assert.equal(created.status, 202);
    return String(created.json.id);
  };
  const cancel = (id: string) => fetch(`${system.apiUrl}/v1/jobs/${id}/cancel`, { method: 'POST' });

  it('a running job: its stage is aborted mid-diffusion, not retried, and the job ends canceled', async () => {
    const id = await submit(1);
    await waitFor(async () => ((await getJob(system.apiUrl, id)).progress?.step ?? 0) >= 3, 30_000, 'step 3', 20);
    const response = await cancel(id);
    assert.equal(response.status, 200);
    const asked = Date.now();
    const job = await waitForJob(system.apiUrl, id, 10_000);
    assert.equal(job.status, 'canceled', system.dump());
    assert.ok(Date.now() - asked < 5000, `canceled after ${Date.now() - asked} ms`);
    assert.equal(job.error, 'canceled by request');
    const stage = job.timeline[0];
    assert.equal(stage.status, 'canceled');
    assert.equal(stage.attempts, 1, 'a canceled stage is not retried');
    assert.ok((job.progress?.step ?? 0) < 300, 'it stopped before the end');
  });

  it('a queued job: its stage is removed and the job ends canceled at once, while the running one goes on', async () => {
    const running = await submit(2);
    await waitFor(async () => ((await getJob(system.apiUrl, running)).progress?.step ?? 0) >= 1, 30_000, 'the first job to run', 20);
    const queued = await submit(3);
    await waitFor(async () => (await getJob(system.apiUrl, queued)).timeline.length === 1, 10_000, 'the second job to queue its stage', 20);
    assert.equal((await getJob(system.apiUrl, queued)).timeline[0].status, 'queued');
    assert.equal((await cancel(queued)).status, 200);
    const job = await waitForJob(system.apiUrl, queued, 5000);
    assert.equal(job.status, 'canceled');
    assert.equal(job.timeline[0].status, 'canceled');
    assert.equal((await getJob(system.apiUrl, running)).status, 'processing', 'the other job is not harmed');
    assert.equal((await cancel(running)).status, 200);
    assert.equal((await waitForJob(system.apiUrl, running, 10_000)).status, 'canceled');
  });

  it('canceling a finished job changes nothing; an unknown job is 404', async () => {
    const created = await postJob(system.apiUrl, { task: 'text-to-image', input: { prompt: 'a square', seed: 4, steps: 2 } });
    const id = String(created.json.id);
    assert.equal((await waitForJob(system.apiUrl, id, 20_000)).status, 'succeeded');
    const response = await cancel(id);
    assert.equal(response.status, 200);
    assert.equal(((await response.json()) as { status: string }).status, 'succeeded');
    assert.equal((await cancel('no-such-job')).status, 404);
  });
});
