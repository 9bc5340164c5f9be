import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { freshPrefix, startRedis, type TestRedis } from '../support/redis.js';
import { TestSystem } from '../support/system.js';
import { getJob, postJob, waitForJob } from '../support/http.js';
import { waitFor } from '../support/wait.js';

const EXCHANGE_TIMEOUT_MS = 3000;

describe('a joint-attention peer that dies or stalls mid-job', () => {
  let redis: TestRedis;
  let system: TestSystem;
  before(async () => {
    redis = await startRedis();
    system = await new TestSystem({
      redisUrl: redis.url,
      prefix: freshPrefix(),
      env: { JOB_ATTEMPTS: 5, JOB_BACKOFF_MS: 1000, EXCHANGE_TIMEOUT_MS },
      // Slow the text side down so that the job is surely mid-way when the peer goes.
      undEnv: { FAULT_EXCHANGE_DELAY_MS: 40 },
    }).start();
  });
  after(async () => {
    await system?.stop();
    await redis?.stop();
  });

  async function submitAndWaitForStep(step: number): Promise<string> {
    const created = await postJob(system.apiUrl, { task: 'text-to-image', input: { prompt: 'two circles', seed: 3, steps: 16 } });
    assert.equal(created.status, 202);
    const id = String(created.json.id);
    await waitFor(
      async () => ((await getJob(system.apiUrl, id)).progress?.step ?? 0) >= step,
      20_000,
      `job ${id} to reach step ${step}`,
      20,
    );
    return id;
  }

  it('kill -9 of the und-worker fails that attempt retryably within a bounded time; the retry succeeds once a peer is back', async () => {
    const id = await submitAndWaitForStep(3);
    const killedAt = Date.now();
    await system.und.stop('SIGKILL');

    const failed = await waitFor(
      async () => (await getJob(system.apiUrl, id)).timeline[0]?.logs.find((l) => l.startsWith('attempt 1 failed')),
      EXCHANGE_TIMEOUT_MS + 2000,
      'the first attempt to fail',
      20,
    );
    const detectedMs = Date.now() - killedAt;
    assert.match(failed, /^attempt 1 failed \(retryable\): PEER_UNAVAILABLE: /);
    assert.ok(detectedMs < EXCHANGE_TIMEOUT_MS, `failure noticed after ${detectedMs} ms`);

    await system.startUnd();
    const job = await waitForJob(system.apiUrl, id, 30_000);
    assert.equal(job.status, 'succeeded', system.dump());
    assert.ok(job.timeline[0].attempts >= 2, `attempts ${job.timeline[0].attempts}`);
    assert.ok(
      job.timeline[0].logs.every((l) => /\(retryable\): PEER_UNAVAILABLE/.test(l)),
      job.timeline[0].logs.join('\n'),
    );
  });

  it('a stalled und-worker (SIGSTOP) misses the exchange deadline; the job succeeds after it resumes', async () => {
    const id = await submitAndWaitForStep(2);
    const stoppedAt = Date.now();
    system.und.child.kill('SIGSTOP');
    try {
      const failed = await waitFor(
        async () => (await getJob(system.apiUrl, id)).timeline[0]?.logs.find((l) => l.startsWith('attempt 1 failed')),
        EXCHANGE_TIMEOUT_MS + 5000,
        'the first attempt to fail',
        20,
      );
      assert.match(failed, /PEER_UNAVAILABLE: peer 127\.0\.0\.1:\d+ did not answer (step|partial) within 3000 ms/);
      assert.ok(Date.now() - stoppedAt >= EXCHANGE_TIMEOUT_MS - 200);
    } finally {
      system.und.child.kill('SIGCONT');
    }
    const job = await waitForJob(system.apiUrl, id, 30_000);
    assert.equal(job.status, 'succeeded', system.dump());
  });
});
