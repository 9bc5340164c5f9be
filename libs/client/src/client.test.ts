import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { LavidaApiError, LavidaClient, LavidaNetworkError, LavidaTimeoutError, type JobView } from './index.js';

interface Call {
  url: string;
  method: string;
  headers: Record<string, string>;
  body?: string;
}

/** A fetch that records each call and answers from `answer`. */
function fakeFetch(answer: (call: Call, index: number) => Response | Promise<Response>): { fetch: typeof fetch; calls: Call[] } {
  const calls: Call[] = [];
  const fn = async (input: string | URL | Request, init?: RequestInit) => {
    const call: Call = {
      url: input instanceof Request ? input.url : input.toString(),
      method: init?.method ?? 'GET',
      headers: Object.fromEntries(new Headers(init?.headers).entries()),
      body: typeof init?.body === 'string' ? init.body : undefined,
    };
    calls.push(call);
    return answer(call, calls.length - 1);
  };
  return { fetch: fn, calls };
}

const json = (body: unknown, status = 200) =>
  new Response(JSON.stringify(body), { status, headers: { 'content-type': 'application/json' } });

function job(overrides: Partial<JobView> = {}): JobView {
  return {
    id: 'j1',
    task: 'text-to-image',
    status: 'queued',
    input: { prompt: 'x' },
    output: null,
    error: null,
    progress: null,
    created_at: '2026-01-01T00:00:00.000Z',
    started_at: null,
    completed_at: null,
    timeline: [],
    urls: { get: 'http://public.example/v1/jobs/j1' },
    ...overrides,
  };
}

describe('LavidaClient', () => {
  it('creates a job with Prefer: wait, an idempotency key and the bearer key', async () => {
    const { fetch, calls } = fakeFetch(() => json(job({ status: 'succeeded' }), 201));
    const client = new LavidaClient({ baseUrl: 'http://api.test:8080/', apiKey: 'k-1', fetch });
    const created = await client.createJob(
      { task: 'text-to-image', input: { prompt: 'x', steps: 2 } },
      { wait: 30, idempotencyKey: 'abc' },
    );
    assert.equal(created.status, 'succeeded');
    assert.equal(calls[0].url, 'http://api.test:8080/v1/jobs');
    assert.equal(calls[0].method, 'POST');
    assert.equal(calls[0].headers.prefer, 'wait=30');
    assert.equal(calls[0].headers['idempotency-key'], 'abc');
    assert.equal(calls[0].headers.authorization, 'Bearer k-1');
    assert.equal(calls[0].headers['content-type'], 'application/json');
    assert.deepEqual(JSON.parse(calls[0].body!), { task: 'text-to-image', input: { prompt: 'x', steps: 2 } });
  });

  it("turns the api's error body into LavidaApiError with status, code, message and field", async () => {
    const body = { error: { status: 400, code: 'invalid_request', message: 'input.steps: Too small', field: 'input.steps' } };
    const { fetch } = fakeFetch(() => json(body, 400));
    const client = new LavidaClient({ baseUrl: 'http://api.test', fetch });
    const error = await client.createJob({ task: 'text-to-image', input: { prompt: 'x', steps: 0 } }).catch((e: unknown) => e);
    assert.ok(error instanceof LavidaApiError);
    assert.equal(error.status, 400);
    assert.equal(error.code, 'invalid_request');
    assert.equal(error.field, 'input.steps');
    assert.equal(error.message, 'input.steps: Too small');
    assert.equal(error.url, 'http://api.test/v1/jobs');
  });

  it('a non-JSON error (a proxy) still gives the status; no answer is a LavidaNetworkError with the URL', async () => {
    const proxy = new LavidaClient({
      baseUrl: 'http://api.test',
      fetch: fakeFetch(() => new Response('<h1>Bad Gateway</h1>', { status: 502 })).fetch,
    });
    const error = await proxy.getJob('j1').catch((e: unknown) => e);
    assert.ok(error instanceof LavidaApiError);
    assert.equal(error.status, 502);
    assert.equal(error.code, 'http_502');
    const refused = Object.assign(new Error(''), { code: 'ECONNREFUSED' });
    const down = new LavidaClient({
      baseUrl: 'http://api.test',
      fetch: fakeFetch(() => Promise.reject(new TypeError('fetch failed', { cause: refused }))).fetch,
    });
    const network = await down.getJob('a/b').catch((e: unknown) => e);
    assert.ok(network instanceof LavidaNetworkError);
    assert.equal(network.url, 'http://api.test/v1/jobs/a%2Fb');
    assert.match(network.message, /GET http:\/\/api\.test\/v1\/jobs\/a%2Fb: fetch failed: ECONNREFUSED/);
  });

  it('iterates every page by the cursor of `next`, against its own base URL', async () => {
    const pages = [
      { results: [job({ id: 'a' }), job({ id: 'b' })], next: 'http://public.example/v1/jobs?limit=2&status=succeeded&cursor=C1' },
      { results: [job({ id: 'c' })], next: null },
    ];
    const { fetch, calls } = fakeFetch((_call, i) => json(pages[i]));
    const client = new LavidaClient({ baseUrl: 'http://api.test', fetch });
    const ids: string[] = [];
    for await (const j of client.jobs({ status: 'succeeded', limit: 2 })) ids.push(j.id);
    assert.deepEqual(ids, ['a', 'b', 'c']);
    assert.deepEqual(
      calls.map((c) => c.url),
      ['http://api.test/v1/jobs?status=succeeded&limit=2', 'http://api.test/v1/jobs?status=succeeded&limit=2&cursor=C1'],
    );
  });

  it('waits for a job, calling onProgress on each change only', async () => {
    const states = [
      job(),
      job({ status: 'processing', progress: { stage: 'generate', step: 1, steps: 2 } }),
      job({ status: 'processing', progress: { stage: 'generate', step: 1, steps: 2 } }),
      job({ status: 'succeeded', progress: { stage: 'generate', step: 2, steps: 2 } }),
    ];
    const { fetch } = fakeFetch((_call, i) => json(states[Math.min(i, states.length - 1)]));
    const client = new LavidaClient({ baseUrl: 'http://api.test', fetch });
    const seen: string[] = [];
    const done = await client.waitForJob('j1', {
      intervalMs: 1,
      onProgress: (j) => void seen.push(`${j.status}:${JSON.stringify(j.progress)}`),
    });
    assert.equal(done.status, 'succeeded');
    assert.deepEqual(seen, [
      'queued:null',
      'processing:{"stage":"generate","step":1,"steps":2}',
      'succeeded:{"stage":"generate","step":2,"steps":2}',
    ]);
  });

  it('waits out a 429 by its Retry-After while polling', async () => {
    const limited = () =>
      new Response(JSON.stringify({ error: { status: 429, code: 'rate_limited', message: 'slow down' } }), {
        status: 429,
        headers: { 'retry-after': '0' },
      });
    const { fetch, calls } = fakeFetch((_call, i) => (i < 5 ? limited() : json(job({ status: 'succeeded' }))));
    const client = new LavidaClient({ baseUrl: 'http://api.test', fetch });
    assert.equal((await client.waitForJob('j1', { intervalMs: 1 })).status, 'succeeded');
    assert.equal(calls.length, 6);
    const direct = new LavidaClient({ baseUrl: 'http://api.test', fetch: fakeFetch(() => limited()).fetch });
    const error = await direct.getJob('j1').catch((e: unknown) => e);
    assert.ok(error instanceof LavidaApiError);
    assert.equal(error.code, 'rate_limited');
    assert.equal(error.retryAfterMs, 0);
  });

  it('retries a failed poll, and times out with the last state', async () => {
    let polls = 0;
    const { fetch } = fakeFetch(() =>
      polls++ === 0 ? Promise.reject(new TypeError('fetch failed')) : json(job({ status: 'processing' })),
    );
    const client = new LavidaClient({ baseUrl: 'http://api.test', fetch });
    const error = await client.waitForJob('j1', { intervalMs: 5, timeoutMs: 60 }).catch((e: unknown) => e);
    assert.ok(error instanceof LavidaTimeoutError, String(error));
    assert.equal(error.job.status, 'processing');
    assert.ok(polls >= 2);
  });

  it('downloads files from its base URL, by URL or by name, sending the key only to its own origin', async () => {
    const { fetch, calls } = fakeFetch(() => new Response(new Uint8Array([1, 2, 3])));
    const client = new LavidaClient({ baseUrl: 'http://api.test', apiKey: 'k', fetch });
    assert.deepEqual(await client.downloadFile('http://public.example/v1/jobs/j1/files/image.png'), Buffer.from([1, 2, 3]));
    await client.downloadFile('attempt-1.png', 'j1');
    await client.downloadFile('https://cdn.example/other.png');
    assert.deepEqual(
      calls.map((c) => [c.url, c.headers.authorization]),
      [
        ['http://api.test/v1/jobs/j1/files/image.png', 'Bearer k'],
        ['http://api.test/v1/jobs/j1/files/attempt-1.png', 'Bearer k'],
        ['https://cdn.example/other.png', undefined],
      ],
    );
    assert.throws(() => client.fileUrl('image.png'), /needs the job's id/);
  });
});

/** A text/event-stream response of these chunks; `fail` errors the stream after them (a broken connection). */
function eventStream(chunks: string[], fail = false): Response {
  const encoder = new TextEncoder();
  let next = 0;
  // Pulled one chunk at a time, so that the error comes after the chunks were read (error() drops queued ones).
  const body = new ReadableStream<Uint8Array>({
    pull(controller) {
      if (next < chunks.length) controller.enqueue(encoder.encode(chunks[next++]));
      else if (fail) controller.error(new TypeError('terminated'));
      else controller.close();
    },
  });
  return new Response(body, { status: 200, headers: { 'content-type': 'text/event-stream' } });
}

describe('server-sent events', () => {
  it('parses events split anywhere across chunks: CRLF, multi-line data, comments, id and retry', async () => {
    const { parseServerSentEvents } = await import('./events.js');
    const text =
      'retry: 1000\r\n\r\n: heartbeat\n\nevent: stage\ndata: {"a":\ndata: 1}\nid: 7\n\ndata:plain\r\revent: done\ndata: {}\n\nevent: cut\ndata: x';
    for (const size of [1, 2, 3, 5, 1000]) {
      const chunks: string[] = [];
      for (let i = 0; i < text.length; i += size) chunks.push(text.slice(i, i + size));
      const events = [];
      for await (const e of parseServerSentEvents(
        (async function* () {
          yield* chunks;
        })(),
      ))
        events.push(e);
      assert.deepEqual(
        events,
        [
          { event: 'stage', data: '{"a":\n1}', id: '7', retry: 1000 },
          { event: 'message', data: 'plain', id: '7', retry: 1000 },
          { event: 'done', data: '{}', id: '7', retry: 1000 },
        ],
        `chunks of ${size}`,
      );
    }
  });

  it("streams a job's events until done, reopening a broken stream, with the key and accept header", async () => {
    const running = job({ status: 'processing' });
    const { fetch, calls } = fakeFetch((_call, index) =>
      index === 0
        ? eventStream(
            [`retry: 1000\n\nevent: status\ndata: ${JSON.stringify(running)}\n\nevent: progress\ndata: {"id":"j1","stage":"gen`],
            true,
          )
        : eventStream([
            `event: status\ndata: ${JSON.stringify(running)}\n\n: heartbeat\n\nevent: unknown\ndata: 1\n\n`,
            'event: progress\ndata: {"id":"j1","stage":"generate","progress":{"step":3,"steps":16}}\n\n',
            `event: done\ndata: ${JSON.stringify(job({ status: 'succeeded' }))}\n\nevent: status\ndata: {}\n\n`,
          ]),
    );
    const client = new LavidaClient({ baseUrl: 'http://api.test', apiKey: 'k', fetch });
    const seen = [];
    for await (const e of client.events('j1')) seen.push(e);
    assert.deepEqual(
      seen.map((e) => e.event),
      ['status', 'status', 'progress', 'done'],
    );
    assert.deepEqual(seen[2].data, { id: 'j1', stage: 'generate', progress: { step: 3, steps: 16 } });
    assert.equal((seen[3].data as JobView).status, 'succeeded');
    assert.equal(calls.length, 2);
    assert.equal(calls[0].url, 'http://api.test/v1/jobs/j1/events');
    assert.equal(calls[0].headers.accept, 'text/event-stream');
    assert.equal(calls[0].headers.authorization, 'Bearer k');
  });

  it('gives up after `retries` broken streams in a row; an unknown job is a 404 before any event', async () => {
    const broken = fakeFetch(() => eventStream([': heartbeat\n\n'], true));
    const client = new LavidaClient({ baseUrl: 'http://api.test', fetch: broken.fetch });
    await assert.rejects(async () => {
      for await (const event of client.events('j1', { retries: 1 })) assert.fail(`no event expected: ${event.event}`);
    }, LavidaNetworkError);
    assert.equal(broken.calls.length, 2);
    const missing = new LavidaClient({
      baseUrl: 'http://api.test',
      fetch: fakeFetch(() => json({ error: { code: 'not_found', message: 'no job j9' } }, 404)).fetch,
    });
    await assert.rejects(
      async () => {
        for await (const event of missing.events('j9')) assert.fail(`no event expected: ${event.event}`);
      },
      (error: unknown) => error instanceof LavidaApiError && error.status === 404,
    );
  });
});
