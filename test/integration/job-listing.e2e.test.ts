import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { freshPrefix, startRedis, type TestRedis } from '../support/redis.js';
import { TestSystem } from '../support/system.js';
import { postJob, waitForJob } from '../support/http.js';

interface Page {
  results: { id: string; status: string; task: string }[];
  next: string | null;
}

/** GET /v1/jobs (newest first, cursor pages, filters) and Prefer: wait on POST /v1/jobs. */
describe('listing jobs and waiting for one', () => {
  let redis: TestRedis;
  let system: TestSystem;
  before(async () => {
    redis = await startRedis();
    system = await new TestSystem({ redisUrl: redis.url, prefix: freshPrefix() }).start();
  });
  after(async () => {
    await system?.stop();
    await redis?.stop();
  });

  it('Prefer: wait=N answers 201 with the finished job, within N seconds; without it 202', async () => {
    const body = JSON.stringify({ task: 'text-to-image', input: { prompt: 'a red circle', seed: 1, steps: 2 } });
    const response = await fetch(`${system.apiUrl}/v1/jobs`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', prefer: 'wait=30' },
      body,
    });
    assert.equal(response.status, 201);
    assert.equal(response.headers.get('preference-applied'), 'wait=30');
    const job = (await response.json()) as { status: string; output: { image: string } };
    assert.equal(job.status, 'succeeded');
    assert.match(job.output.image, /\/files\/attempt-1\.png$/);
    const quick = await fetch(`${system.apiUrl}/v1/jobs`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', prefer: 'wait=0' },
      body,
    });
    assert.equal(quick.status, 202);
  });

  it('newest first, in cursor pages without repeats, filtered by task and status', async () => {
    const ids: string[] = [];
    for (let i = 0; i < 5; i++) {
      const created = await postJob(system.apiUrl, { task: 'text-to-image', input: { prompt: 'a blue square', seed: i, steps: 2 } });
      ids.push(String(created.json.id));
    }
    for (const id of ids) await waitForJob(system.apiUrl, id, 20_000);
    const seen: string[] = [];
    let url: string | null = `${system.apiUrl}/v1/jobs?limit=2`;
    while (url) {
      const page = (await (await fetch(url)).json()) as Page;
      assert.ok(page.results.length <= 2);
      seen.push(...page.results.map((j) => j.id));
      url = page.next;
    }
    assert.equal(new Set(seen).size, seen.length, 'no job twice');
    assert.deepEqual(seen.slice(0, 5), [...ids].reverse(), 'newest first');
    assert.equal(seen.length, 7, 'every job (the 2 of the first test too)');
    const succeeded = (await (await fetch(`${system.apiUrl}/v1/jobs?status=succeeded&task=text-to-image&limit=100`)).json()) as Page;
    assert.equal(succeeded.results.length, 7);
    const none = (await (await fetch(`${system.apiUrl}/v1/jobs?task=edit`)).json()) as Page;
    assert.deepEqual(none, { results: [], next: null });
    for (const bad of ['limit=0', 'limit=x', 'status=done', 'cursor=zzz', 'colour=red']) {
      const response = await fetch(`${system.apiUrl}/v1/jobs?${bad}`);
      assert.equal(response.status, 400, bad);
    }
  });
});
