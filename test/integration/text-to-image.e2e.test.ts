import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { decodePng, LocalJointPeer, ModelPackage, textToImage } from '@lavida/model';
import { freshPrefix, startRedis, type TestRedis } from '../support/redis.js';
import { TestSystem } from '../support/system.js';
import { postJob, waitForJob } from '../support/http.js';
import { FIXTURE_MODEL } from '../support/paths.js';

describe('text-to-image through every service', () => {
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

  it('202, then succeeded, then the PNG downloads; tokens equal a single-process run', async () => {
    const input = { prompt: 'a red circle left of a blue square', seed: 7, luminance: 0.125 };
    const created = await postJob(system.apiUrl, { task: 'text-to-image', input });
    assert.equal(created.status, 202, JSON.stringify(created.json));
    assert.match(String(created.json.id), /^[0-9a-f-]{36}$/);
    assert.ok(['queued', 'processing'].includes(String(created.json.status)));

    const job = await waitForJob(system.apiUrl, String(created.json.id));
    assert.equal(job.status, 'succeeded', system.dump());
    assert.equal(job.timeline[0].stage, 'generate');
    assert.equal(job.timeline[0].status, 'succeeded');
    assert.deepEqual(job.progress, { stage: 'generate', step: 16, steps: 16 });

    const png = await fetch(job.output!.image);
    assert.equal(png.status, 200);
    assert.equal(png.headers.get('content-type'), 'image/png');
    const image = decodePng(Buffer.from(await png.arrayBuffer()));
    assert.equal(image.width, 64);
    assert.equal(image.height, 64);

    const pkg = await ModelPackage.load(FIXTURE_MODEL, { branch: 'all' });
    try {
      const local = await textToImage(pkg, new LocalJointPeer(pkg), input, { sessionId: 'local' });
      assert.deepEqual(job.output!.tokens, local.tokens);
      assert.deepEqual(image.rgb, local.pixels);
    } finally {
      await pkg.release();
    }
  });

  it('answers 400 naming the wrong field, and keeps serving', async () => {
    const cases: [unknown, string][] = [
      [{ task: 'text-to-image', input: { prompt: 'a circle', seed: 'x' } }, 'input.seed'],
      [{ task: 'text-to-image', input: { prompt: '' } }, 'input.prompt'],
      [{ task: 'text-to-image', input: { prompt: 'a circle', steps: 0 } }, 'input.steps'],
      [{ task: 'text-to-image', input: { prompt: 'a circle', luminance: 2 } }, 'input.luminance'],
      [{ task: 'text-to-image', input: { prompt: 'a circle', colour: 'red' } }, 'input'],
      [{ task: 'paint', input: {} }, 'task'],
      [{ input: { prompt: 'a circle' } }, 'task'],
      [[1, 2], 'body'],
    ];
    for (const [body, field] of cases) {
      const { status, json } = await postJob(system.apiUrl, body);
      assert.equal(status, 400, JSON.stringify(body));
      const error = json.error as { field?: string; message: string };
      assert.equal(error.field, field, JSON.stringify(json));
      assert.ok(error.message.startsWith(field), error.message);
    }
    const malformed = await postJob(system.apiUrl, '{"task": "text-to-image",');
    assert.equal(malformed.status, 400);
    const tooLong = await postJob(system.apiUrl, { task: 'text-to-image', input: { prompt: 'a circle '.repeat(300) } });
    assert.equal(tooLong.status, 400);

    const ok = await postJob(system.apiUrl, { task: 'text-to-image', input: { prompt: 'a square', seed: 1 } });
    assert.equal(ok.status, 202);
    assert.equal((await waitForJob(system.apiUrl, String(ok.json.id))).status, 'succeeded');
  });

  it('a prompt longer than the model context fails the job without retries, naming the problem', async () => {
    const prompt = Array.from({ length: 70 }, () => 'circle').join(' ');
    const created = await postJob(system.apiUrl, { task: 'text-to-image', input: { prompt, seed: 1 } });
    assert.equal(created.status, 202);
    const job = await waitForJob(system.apiUrl, String(created.json.id));
    assert.equal(job.status, 'failed');
    assert.match(job.error!, /INVALID_INPUT: prompt is 70 tokens, longer than the model's context of 64/);
    assert.equal(job.timeline[0].attempts, 1);
  });

  it('404 for an unknown job and an unknown file', async () => {
    const missing = await fetch(`${system.apiUrl}/v1/jobs/00000000-0000-0000-0000-000000000000`);
    assert.equal(missing.status, 404);
    assert.equal(((await missing.json()) as { error: { code: string } }).error.code, 'not_found');
    const created = await postJob(system.apiUrl, { task: 'text-to-image', input: { prompt: 'a circle' } });
    const job = await waitForJob(system.apiUrl, String(created.json.id));
    const file = await fetch(`${job.urls.get}/files/nope.png`);
    assert.equal(file.status, 404);
    assert.match(((await file.json()) as { error: { message: string } }).error.message, /file nope.png of job .* not found/);
  });
});
