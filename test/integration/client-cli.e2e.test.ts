import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PNG } from 'pngjs';
import { LavidaApiError, LavidaClient, type JobView } from '@lavida/client';
import { freshPrefix, startRedis, type TestRedis } from '../support/redis.js';
import { TestSystem } from '../support/system.js';
import { ROOT } from '../support/paths.js';
import { freePort } from '../support/wait.js';

const CLI = join(ROOT, 'apps/cli/dist/main.js');

interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

/** @lavida/client and the lavida CLI (a child process) against the real apps on the fixture model. */
describe('client and CLI', () => {
  let redis: TestRedis;
  let system: TestSystem;
  let client: LavidaClient;
  let dir: string;
  before(async () => {
    redis = await startRedis();
    // The text side answers every exchange 10 ms late, so that a long job is still running when it is canceled.
    system = await new TestSystem({ redisUrl: redis.url, prefix: freshPrefix(), undEnv: { FAULT_EXCHANGE_DELAY_MS: 10 } }).start();
    client = new LavidaClient({ baseUrl: system.apiUrl });
    dir = await mkdtemp(join(tmpdir(), 'lavida-cli-'));
  });
  after(async () => {
    await system?.stop();
    await redis?.stop();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  const cli = (...args: string[]): Promise<Run> =>
    new Promise((resolve) => {
      execFile(
        process.execPath,
        [CLI, ...args],
        { env: { ...process.env, LAVIDA_URL: system.apiUrl }, timeout: 30_000 },
        (error, stdout, stderr) => {
          resolve({ code: error ? (typeof error.code === 'number' ? error.code : -1) : 0, stdout, stderr });
        },
      );
    });
  const png = (bytes: Buffer) => PNG.sync.read(bytes);
  const input = (seed: number) => ({ task: 'text-to-image' as const, input: { prompt: 'a red circle', seed, steps: 2 } });

  let finished: JobView;

  it('client: createJob with wait answers the finished job; getJob and downloadFile by URL and by name', async () => {
    finished = await client.createJob(input(1), { wait: 30 });
    assert.equal(finished.status, 'succeeded', JSON.stringify(finished));
    assert.equal((await client.getJob(finished.id)).status, 'succeeded');
    const image = await client.downloadFile(finished.output!.image!);
    assert.equal(png(image).width, 64);
    assert.equal(png(image).height, 64);
    const name = finished.output!.image!.split('/').at(-1)!;
    assert.deepEqual(await client.downloadFile(name, finished.id), image);
  });

  it('client: waitForJob reports progress until the job ends; API errors carry status, code and field', async () => {
    const created = await client.createJob(input(2));
    assert.ok(['queued', 'processing'].includes(created.status), created.status);
    const seen: string[] = [];
    const done = await client.waitForJob(created.id, {
      timeoutMs: 20_000,
      intervalMs: 20,
      onProgress: (job) => void seen.push(job.status),
    });
    assert.equal(done.status, 'succeeded');
    assert.equal(seen.at(-1), 'succeeded');
    assert.ok(seen.length >= 1);

    const invalid = await client.createJob({ task: 'text-to-image', input: { prompt: 'x', steps: 0 } }).catch((e: unknown) => e);
    assert.ok(invalid instanceof LavidaApiError);
    assert.equal(invalid.status, 400);
    assert.equal(invalid.code, 'invalid_request');
    assert.equal(invalid.field, 'input.steps');
    const missing = await client.getJob('no-such-job').catch((e: unknown) => e);
    assert.ok(missing instanceof LavidaApiError);
    assert.equal(missing.status, 404);
  });

  it('client: pages through every job newest first; cancels a running job and leaves a finished one', async () => {
    const long = await client.createJob({ task: 'text-to-image', input: { prompt: 'a blue square', seed: 3, steps: 1024 } });
    const canceled = await client.cancelJob(long.id);
    assert.ok(['queued', 'processing', 'canceled'].includes(canceled.status), canceled.status);
    assert.equal((await client.waitForJob(long.id, { timeoutMs: 15_000, intervalMs: 50 })).status, 'canceled');
    assert.equal((await client.cancelJob(finished.id)).status, 'succeeded');

    const ids: string[] = [];
    let pages = 0;
    for await (const page of client.pages({ limit: 1 })) {
      pages += 1;
      ids.push(...page.results.map((job) => job.id));
    }
    assert.equal(ids.length, 3);
    assert.equal(new Set(ids).size, 3);
    assert.ok(pages >= 3);
    assert.equal(ids[0], long.id, 'newest first');
    assert.equal(ids[2], finished.id);
    const succeeded: string[] = [];
    for await (const job of client.jobs({ status: 'succeeded', limit: 1 })) succeeded.push(job.id);
    assert.equal(succeeded.length, 2);
    assert.ok(!succeeded.includes(long.id));
  });

  it('cli: submit --wait --out writes the PNG the api serves; --image is sent as base64', async () => {
    const out = join(dir, 'out');
    const run = await cli('submit', 'text-to-image', '--prompt', 'a red circle', '--seed', '1', '--steps', '2', '--wait', '--out', out);
    assert.equal(run.code, 0, run.stderr);
    const result = JSON.parse(run.stdout) as { id: string; status: string; output: { image: string; tokens?: unknown }; files: string[] };
    assert.equal(result.status, 'succeeded');
    assert.equal(result.output.tokens, undefined);
    assert.deepEqual(result.files, [join(out, `${result.id}.png`), join(out, `${result.id}-attempt-1.png`)]);
    const written = await readFile(result.files[0]);
    assert.equal(png(written).width, 64);
    assert.equal(png(written).height, 64);
    assert.deepEqual(written, await client.downloadFile(result.output.image));
    // Same seed and steps as the client's first job: the same image.
    assert.deepEqual(written, await client.downloadFile(finished.output!.image!));

    // --image is sent as base64: the api keeps the very bytes as the job's input.png. (The fixture model
    // has no task templates for grounding: there the job fails, and a failed job exits 1.)
    const ground = await cli('submit', 'ground', '--image', result.files[0], '--ref', 'the red circle', '--steps', '1', '--wait');
    const grounded = JSON.parse(ground.stdout) as {
      id: string;
      status: string;
      error: string | null;
      output: { boxes: number[][] } | null;
    };
    assert.equal(ground.code, grounded.status === 'succeeded' ? 0 : 1, ground.stderr);
    if (grounded.status === 'succeeded') assert.equal(grounded.output!.boxes.length, 1);
    else assert.ok(ground.stderr.includes(`job ${grounded.id} ${grounded.status}: ${grounded.error}`), ground.stderr);
    const job = await client.getJob(grounded.id);
    assert.deepEqual(job.input.refs, ['the red circle']);
    assert.match(String(job.input.image), /\/files\/input\.png$/);
    assert.deepEqual(await client.downloadFile(String(job.input.image)), written);
  });

  it('cli: submit, then wait with plain progress lines; get, list and cancel print JSON; a canceled job exits 1', async () => {
    const submitted = await cli('submit', 'text-to-image', '--prompt', 'a green square', '--seed', '5', '--steps', '2');
    assert.equal(submitted.code, 0, submitted.stderr);
    const { id } = JSON.parse(submitted.stdout) as { id: string };
    const waited = await cli('wait', id);
    assert.equal(waited.code, 0, waited.stderr);
    assert.equal((JSON.parse(waited.stdout) as { status: string }).status, 'succeeded');
    assert.match(waited.stderr, new RegExp(`job ${id}  succeeded`));
    assert.ok(!waited.stderr.includes('\r') && !waited.stderr.includes('\u001b'), 'no redrawing when stderr is not a TTY');

    const got = await cli('get', id);
    assert.equal((JSON.parse(got.stdout) as JobView).timeline[0].stage, 'generate');
    const listed = await cli('list', '--limit', '2', '--task', 'text-to-image');
    assert.equal(listed.code, 0, listed.stderr);
    assert.deepEqual(
      (JSON.parse(listed.stdout) as { id: string }[]).map((job) => job.id),
      [id, (await client.listJobs({ limit: 2, task: 'text-to-image' })).results[1].id],
    );

    const cancel = await cli('cancel', finished.id);
    assert.equal(cancel.code, 0, cancel.stderr);
    assert.equal((JSON.parse(cancel.stdout) as { status: string }).status, 'succeeded');
    assert.match(cancel.stderr, /succeeded/);

    const [canceled] = (await client.listJobs({ status: 'canceled' })).results;
    const failedWait = await cli('wait', canceled.id);
    assert.equal(failedWait.code, 1);
    assert.equal((JSON.parse(failedWait.stdout) as { status: string }).status, 'canceled');
  });

  it('cli: a usage error exits 2 with the usage; an api validation error exits 3 naming the field; no api exits 3', async () => {
    const usage = await cli('submit', 'text-to-image', '--seed', '1');
    assert.equal(usage.code, 2);
    assert.match(usage.stderr, /needs --prompt/);
    assert.match(usage.stderr, /Usage: lavida/);
    assert.equal(usage.stdout, '');

    const invalid = await cli('submit', 'text-to-image', '--prompt', 'x', '--steps', '0');
    assert.equal(invalid.code, 3);
    assert.match(invalid.stderr, /400 invalid_request: input\.steps/);

    const port = await freePort();
    const down = await cli('get', 'abc', '--url', `http://127.0.0.1:${port}`);
    assert.equal(down.code, 3);
    assert.ok(down.stderr.includes(`cannot reach the api: GET http://127.0.0.1:${port}/v1/jobs/abc: fetch failed`), down.stderr);
    assert.match(down.stderr, /ECONNREFUSED/);
  });
});
