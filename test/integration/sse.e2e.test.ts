import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { freshPrefix, startRedis, type TestRedis } from '../support/redis.js';
import { TestSystem } from '../support/system.js';
import { getJob, postJob, waitForJob } from '../support/http.js';
import { waitFor } from '../support/wait.js';
import { LavidaApiError, LavidaClient, type JobEvent } from '@lavida/client';

interface SseEvent {
  event: string;
  data: Record<string, unknown>;
}

/** Reads a text/event-stream until it ends (or `until` says stop), parsing `event:` / `data:` blocks. */
async function readEvents(response: Response, until?: (e: SseEvent) => boolean): Promise<{ events: SseEvent[]; comments: string[] }> {
  const events: SseEvent[] = [];
  const comments: string[] = [];
  const decoder = new TextDecoder();
  let buffer = '';
  const reader = (response.body as ReadableStream<Uint8Array>).getReader();
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buffer += decoder.decode(value, { stream: true });
    let end: number;
    while ((end = buffer.indexOf('\n\n')) >= 0) {
      const block = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      let event = 'message';
      const data: string[] = [];
      for (const line of block.split('\n')) {
        if (line.startsWith(':')) comments.push(line);
        else if (line.startsWith('event: ')) event = line.slice(7);
        else if (line.startsWith('data: ')) data.push(line.slice(6));
      }
      if (data.length === 0) continue;
      const parsed = { event, data: JSON.parse(data.join('\n')) as Record<string, unknown> };
      events.push(parsed);
      if (until?.(parsed)) {
        await reader.cancel();
        return { events, comments };
      }
    }
  }
  return { events, comments };
}

/** GET /v1/jobs/{id}/events: the job's progress as server-sent events, ending with `done`. */
describe('job events (SSE)', () => {
  let redis: TestRedis;
  let system: TestSystem;
  before(async () => {
    redis = await startRedis();
    // The text side answers every frame 15 ms late: a 60-step image takes long enough to watch.
    system = await new TestSystem({ redisUrl: redis.url, prefix: freshPrefix(), undEnv: { FAULT_EXCHANGE_DELAY_MS: 15 } }).start();
  });
  after(async () => {
    await system?.stop();
    await redis?.stop();
  });

  const events = (id: string, signal?: AbortSignal) => fetch(`${system.apiUrl}/v1/jobs/${id}/events`, { signal });

  it('an unknown job is 404 (JSON) before any stream', async () => {
    const response = await events('no-such-job');
    assert.equal(response.status, 404);
    assert.match(response.headers.get('content-type') ?? '', /application\/json/);
    const body = (await response.json()) as { error: { status: number } };
    assert.equal(body.error.status, 404);
  });

  it('streams status, stage and progress changes, then done with the final job, and ends', async () => {
    const created = await postJob(system.apiUrl, { task: 'text-to-image', input: { prompt: 'a red circle', seed: 1, steps: 60 } });
    assert.equal(created.status, 202);
    const id = String(created.json.id);
    const response = await events(id);
    assert.equal(response.status, 200);
    assert.match(response.headers.get('content-type') ?? '', /^text\/event-stream/);
    assert.match(response.headers.get('cache-control') ?? '', /no-cache/);
    const { events: seen } = await readEvents(response);

    assert.equal(seen[0].event, 'status', 'the first event is the job');
    assert.equal(seen[0].data.id, id);
    const last = seen.at(-1)!;
    assert.equal(last.event, 'done', JSON.stringify(seen.map((e) => e.event)));
    assert.equal(last.data.status, 'succeeded');
    assert.ok((last.data.output as { image?: string }).image, 'done carries the output');
    assert.equal(seen.filter((e) => e.event === 'done').length, 1);

    const stages = seen.filter((e) => e.event === 'stage');
    // The stage was seen running: in a stage event, or already in the first event's timeline (the
    // stream may open after the stage started).
    const initial = (seen[0].data.timeline as { stage: string; status: string }[] | undefined) ?? [];
    assert.ok(
      stages.some((e) => e.data.stage === 'generate' && e.data.status === 'processing') ||
        initial.some((s) => s.stage === 'generate' && s.status === 'processing'),
      JSON.stringify({ initial, stages }),
    );
    assert.ok(
      stages.some((e) => e.data.stage === 'generate' && e.data.status === 'succeeded'),
      JSON.stringify(stages),
    );

    const steps = seen.filter((e) => e.event === 'progress').map((e) => (e.data.progress as { step: number }).step);
    assert.ok(steps.length >= 3, `progress events: ${JSON.stringify(steps)}`);
    for (let i = 1; i < steps.length; i++) assert.ok(steps[i] > steps[i - 1], `steps only grow: ${JSON.stringify(steps)}`);
    assert.equal(steps.at(-1), 60);
    const progress = seen.find((e) => e.event === 'progress')!;
    assert.equal(progress.data.stage, 'generate');
    assert.equal(progress.data.id, id);

    // Only changes are sent: no two equal progress events, and far fewer events than polls.
    assert.equal(new Set(steps).size, steps.length);
  });

  it('the typed client streams the same events (LavidaClient.events), ending with done', async () => {
    const client = new LavidaClient({ baseUrl: system.apiUrl });
    const created = await client.createJob({ task: 'text-to-image', input: { prompt: 'a blue square', seed: 4, steps: 30 } });
    const seen: JobEvent[] = [];
    for await (const event of client.events(created.id)) seen.push(event);
    assert.equal(seen[0].event, 'status');
    assert.equal(seen.at(-1)!.event, 'done');
    assert.equal((seen.at(-1)!.data as { status: string }).status, 'succeeded');
    const steps = seen.flatMap((e) => (e.event === 'progress' && typeof e.data.progress === 'object' ? [e.data.progress.step ?? 0] : []));
    assert.ok(steps.length >= 2 && steps.at(-1) === 30, JSON.stringify(steps));
    await assert.rejects(
      async () => {
        for await (const event of client.events('no-such-job')) assert.fail(`no event expected: ${event.event}`);
      },
      (error: unknown) => error instanceof LavidaApiError && error.status === 404,
    );
  });

  it('a finished job: its status, then done at once', async () => {
    const created = await postJob(system.apiUrl, { task: 'text-to-image', input: { prompt: 'a square', seed: 2, steps: 2 } });
    const id = String(created.json.id);
    assert.equal((await waitForJob(system.apiUrl, id, 20_000)).status, 'succeeded');
    const started = Date.now();
    const { events: seen } = await readEvents(await events(id));
    assert.deepEqual(
      seen.map((e) => e.event),
      ['status', 'done'],
    );
    assert.equal(seen[1].data.status, 'succeeded');
    assert.ok(Date.now() - started < 2000);
  });

  it('a canceled job ends its stream with done (canceled); a client that disconnects does not stop the job', async () => {
    const created = await postJob(system.apiUrl, { task: 'text-to-image', input: { prompt: 'two circles', seed: 3, steps: 300 } });
    const id = String(created.json.id);
    // A client that goes away mid-stream.
    const abort = new AbortController();
    const first = await events(id, abort.signal);
    await readEvents(first, (e) => e.event === 'progress');
    abort.abort();
    assert.equal((await getJob(system.apiUrl, id)).status, 'processing');

    const response = await events(id);
    const reading = readEvents(response);
    await waitFor(async () => ((await getJob(system.apiUrl, id)).progress?.step ?? 0) >= 3, 30_000, 'step 3', 20);
    assert.equal((await fetch(`${system.apiUrl}/v1/jobs/${id}/cancel`, { method: 'POST' })).status, 200);
    const { events: seen } = await reading;
    const last = seen.at(-1)!;
    assert.equal(last.event, 'done');
    assert.equal(last.data.status, 'canceled');
    assert.ok(
      seen.some((e) => e.event === 'status' && e.data.status === 'processing') || seen[0].data.status === 'processing',
      'it was processing',
    );
    // The api goes on serving (the aborted stream left nothing behind that blocks it).
    assert.equal((await getJob(system.apiUrl, id)).status, 'canceled');
  });
});
