import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { Redis } from 'ioredis';
import { freshPrefix, startRedis, type TestRedis } from '../support/redis.js';
import { TestSystem } from '../support/system.js';
import { startApp, type AppProcess } from '../support/processes.js';

const sha256 = (text: string) => createHash('sha256').update(text).digest('hex');
const newKey = () => `lv_${randomBytes(32).toString('base64url')}`;

interface ErrorBody {
  error: { status: number; code: string; message: string; field?: string };
}
interface KeyView {
  id: string;
  name: string;
  scopes: string[];
  created_at: string;
  rate_limit_per_minute: number | null;
  key?: string;
}
interface JobView {
  id: string;
  status: string;
  input: { prompt?: string };
}

/** A request with an optional API key; the answer's status, headers and JSON body (null when empty). */
async function call(
  url: string,
  options: { method?: string; key?: string; body?: unknown; headers?: Record<string, string> } = {},
): Promise<{ status: number; headers: Headers; json: unknown }> {
  const response = await fetch(url, {
    method: options.method ?? (options.body === undefined ? 'GET' : 'POST'),
    headers: {
      ...(options.body === undefined ? {} : { 'content-type': 'application/json' }),
      ...(options.key ? { authorization: `Bearer ${options.key}` } : {}),
      ...options.headers,
    },
    ...(options.body === undefined ? {} : { body: typeof options.body === 'string' ? options.body : JSON.stringify(options.body) }),
  });
  const text = await response.text();
  return { status: response.status, headers: response.headers, json: text ? (JSON.parse(text) as unknown) : null };
}

const job = (prompt: string) => ({ task: 'text-to-image', input: { prompt, seed: 1, steps: 2 } });

/** ADMIN_API_KEY set: Bearer keys with scopes, key management, per-key rate limits, Idempotency-Key. */
describe('API keys, rate limits and idempotency', () => {
  const admin = newKey();
  const prefix = freshPrefix();
  let redis: TestRedis;
  let client: Redis;
  let system: TestSystem;
  let api = '';

  const createKey = async (body: Record<string, unknown>): Promise<KeyView> => {
    const created = await call(`${api}/v1/keys`, { key: admin, body });
    assert.equal(created.status, 201, JSON.stringify(created.json));
    return created.json as KeyView;
  };

  before(async () => {
    redis = await startRedis();
    client = new Redis(redis.url);
    system = await new TestSystem({ redisUrl: redis.url, prefix, env: { ADMIN_API_KEY: admin, RATE_LIMIT_PER_MINUTE: 1000 } }).start();
    api = system.apiUrl;
  });
  after(async () => {
    client?.disconnect();
    await system?.stop();
    await redis?.stop();
  });

  it('401 with WWW-Authenticate for a missing, malformed or unknown key; health checks stay open', async () => {
    const cases: [string, Record<string, string>][] = [
      ['missing', {}],
      ['unknown', { authorization: `Bearer ${newKey()}` }],
      ['not bearer', { authorization: `Basic ${Buffer.from(`x:${admin}`).toString('base64')}` }],
      ['empty bearer', { authorization: 'Bearer ' }],
    ];
    for (const [what, headers] of cases) {
      for (const [method, path] of [
        ['GET', '/v1/jobs'],
        ['GET', '/v1/keys'],
        ['POST', '/v1/jobs/x/cancel'],
      ]) {
        const answer = await call(`${api}${path}`, { method, headers });
        assert.equal(answer.status, 401, `${what} ${method} ${path}`);
        assert.match(answer.headers.get('www-authenticate') ?? '', /^Bearer realm="lavida"/, what);
        const error = (answer.json as ErrorBody).error;
        assert.equal(error.status, 401);
        assert.equal(error.code, 'unauthorized');
        assert.ok(error.message.length > 0);
      }
    }
    const post = await call(`${api}/v1/jobs`, { body: job('no key') });
    assert.equal(post.status, 401);
    for (const path of ['/healthz', '/readyz']) assert.equal((await call(`${api}${path}`)).status, 200, path);
    assert.equal((await call(`${api}/v1/jobs`, { key: admin })).status, 200);
    assert.equal(
      (await call(`${api}/v1/jobs`, { headers: { authorization: `bearer ${admin}` } })).status,
      200,
      'scheme is case-insensitive',
    );
  });

  it('an admin creates a key that runs jobs; it is shown once, listed without secrets, 403 on key management', async () => {
    const created = await call(`${api}/v1/keys`, { key: admin, body: { name: 'ci runner', scopes: ['jobs'] } });
    assert.equal(created.status, 201, JSON.stringify(created.json));
    assert.equal(created.headers.get('cache-control'), 'no-store');
    const view = created.json as KeyView;
    assert.match(view.key!, /^lv_[A-Za-z0-9_-]{43}$/);
    assert.match(view.id, /^key_[0-9a-f]{24}$/);
    assert.deepEqual(view.scopes, ['jobs']);
    assert.equal(view.rate_limit_per_minute, null);
    const key = view.key!;

    const done = await call(`${api}/v1/jobs`, { key, body: job('a red circle'), headers: { prefer: 'wait=30' } });
    assert.equal(done.status, 201, JSON.stringify(done.json));
    const id = (done.json as JobView).id;
    assert.equal((done.json as JobView).status, 'succeeded');
    assert.equal((await call(`${api}/v1/jobs/${id}`, { key })).status, 200);
    assert.equal((await call(`${api}/v1/jobs/${id}/cancel`, { key, method: 'POST' })).status, 200);

    for (const [method, path, body] of [
      ['GET', '/v1/keys', undefined],
      ['POST', '/v1/keys', { name: 'escalate', scopes: ['admin'] }],
      ['DELETE', `/v1/keys/${view.id}`, undefined],
    ] as const) {
      const answer = await call(`${api}${path}`, { method, key, body });
      assert.equal(answer.status, 403, `${method} ${path}`);
      assert.equal((answer.json as ErrorBody).error.code, 'forbidden');
    }

    const listed = await call(`${api}/v1/keys`, { key: admin });
    assert.equal(listed.status, 200);
    const results = (listed.json as { results: KeyView[] }).results;
    assert.deepEqual(
      results.find((k) => k.id === view.id),
      { id: view.id, name: 'ci runner', scopes: ['jobs'], created_at: view.created_at, rate_limit_per_minute: null },
    );
    assert.ok(results.some((k) => k.id === 'key_admin' && k.scopes.includes('admin')));
    const text = JSON.stringify(listed.json);
    for (const secret of [key, admin, sha256(key), sha256(admin)]) assert.ok(!text.includes(secret), 'no key, no hash in the listing');
    for (const k of results) assert.deepEqual(Object.keys(k).sort(), ['created_at', 'id', 'name', 'rate_limit_per_minute', 'scopes']);

    // An admin key made by the admin manages keys too.
    const second = await createKey({ name: 'second admin', scopes: ['admin'] });
    const third = await call(`${api}/v1/keys`, { key: second.key, body: { name: 'made by the second admin' } });
    assert.equal(third.status, 201);
    assert.deepEqual((third.json as KeyView).scopes, ['jobs'], 'scopes default to jobs');
    assert.equal((await call(`${api}/v1/jobs`, { key: second.key })).status, 200, 'admin includes jobs');
  });

  it('bad key bodies answer 400 naming the field', async () => {
    const cases: [unknown, string][] = [
      [{}, 'name'],
      [{ name: '' }, 'name'],
      [{ name: 'x', scopes: ['root'] }, 'scopes.0'],
      [{ name: 'x', scopes: [] }, 'scopes'],
      [{ name: 'x', rate_limit_per_minute: 0 }, 'rate_limit_per_minute'],
      [{ name: 'x', secret: 'mine' }, 'body'],
    ];
    for (const [body, field] of cases) {
      const answer = await call(`${api}/v1/keys`, { key: admin, body });
      assert.equal(answer.status, 400, JSON.stringify(body));
      assert.equal((answer.json as ErrorBody).error.field, field, JSON.stringify(answer.json));
    }
  });

  it('Redis holds the SHA-256 of each key, never the key', async () => {
    const { key, id } = await createKey({ name: 'scanned' });
    const names: string[] = [];
    let cursor = '0';
    do {
      const [next, batch] = await client.scan(cursor, 'MATCH', `${prefix}:*`, 'COUNT', 1000);
      cursor = next;
      names.push(...batch);
    } while (cursor !== '0');
    const apiKeys = names.filter((name) => name.startsWith(`${prefix}:apikey:`));
    assert.ok(apiKeys.includes(`${prefix}:apikey:${sha256(key!)}`));
    assert.ok(apiKeys.includes(`${prefix}:apikey:${sha256(admin)}`));
    for (const name of apiKeys) assert.match(name, new RegExp(`^${prefix}:apikey:[0-9a-f]{64}$`));
    const record = JSON.parse((await client.get(`${prefix}:apikey:${sha256(key!)}`))!) as Record<string, unknown>;
    assert.deepEqual(Object.keys(record).sort(), ['createdAt', 'id', 'name', 'scopes']);
    assert.deepEqual({ id: record.id, name: record.name, scopes: record.scopes }, { id, name: 'scanned', scopes: ['jobs'] });
    // No key name and no value anywhere under the prefix holds a key in clear.
    for (const name of names) {
      const type = await client.type(name);
      const values =
        type === 'string'
          ? [(await client.getBuffer(name))!.toString('latin1')]
          : type === 'hash'
            ? Object.entries(await client.hgetall(name)).flat()
            : [];
      for (const text of [name, ...values]) {
        assert.ok(!text.includes(key!), `${name} holds a key`);
        assert.ok(!text.includes(admin), `${name} holds the admin key`);
      }
    }
  });

  it('a revoked key answers 401; unknown ids 404; the configured admin key cannot be revoked', async () => {
    const { key, id } = await createKey({ name: 'short-lived' });
    assert.equal((await call(`${api}/v1/jobs`, { key })).status, 200);
    const revoked = await call(`${api}/v1/keys/${id}`, { key: admin, method: 'DELETE' });
    assert.equal(revoked.status, 204);
    assert.equal(revoked.json, null);
    const after = await call(`${api}/v1/jobs`, { key });
    assert.equal(after.status, 401);
    assert.equal((after.json as ErrorBody).error.code, 'unauthorized');
    assert.match(after.headers.get('www-authenticate') ?? '', /^Bearer/);
    assert.equal((await call(`${api}/v1/keys/${id}`, { key: admin, method: 'DELETE' })).status, 404);
    const listed = (await call(`${api}/v1/keys`, { key: admin })).json as { results: KeyView[] };
    assert.ok(!listed.results.some((k) => k.id === id));
    const own = await call(`${api}/v1/keys/key_admin`, { key: admin, method: 'DELETE' });
    assert.equal(own.status, 409);
    assert.equal((await call(`${api}/v1/jobs`, { key: admin })).status, 200);
  });

  it('429 with Retry-After past a key`s limit, RateLimit headers on every answer, other keys unaffected', async () => {
    const limited = await createKey({ name: 'limited', rate_limit_per_minute: 5 });
    const other = await createKey({ name: 'other' });
    for (let i = 0; i < 5; i++) {
      // Errors count and carry the headers too (a 404 here).
      const answer = await call(`${api}/v1/jobs${i === 2 ? '/missing' : ''}`, { key: limited.key });
      assert.equal(answer.status, i === 2 ? 404 : 200);
      assert.equal(answer.headers.get('ratelimit-limit'), '5');
      assert.equal(answer.headers.get('ratelimit-remaining'), String(4 - i));
      const reset = Number(answer.headers.get('ratelimit-reset'));
      assert.ok(reset >= 1 && reset <= 60, String(reset));
      assert.equal(answer.headers.get('retry-after'), null);
    }
    const over = await call(`${api}/v1/jobs`, { key: limited.key });
    assert.equal(over.status, 429);
    assert.equal((over.json as ErrorBody).error.code, 'rate_limited');
    assert.equal((over.json as ErrorBody).error.status, 429);
    const retryAfter = Number(over.headers.get('retry-after'));
    assert.ok(retryAfter >= 1 && retryAfter <= 60, String(retryAfter));
    assert.equal(over.headers.get('ratelimit-remaining'), '0');
    assert.equal(over.headers.get('ratelimit-limit'), '5');
    assert.equal((await call(`${api}/v1/jobs`, { key: limited.key, body: job('over the limit') })).status, 429);

    const fine = await call(`${api}/v1/jobs`, { key: other.key });
    assert.equal(fine.status, 200);
    assert.equal(fine.headers.get('ratelimit-limit'), '1000', 'RATE_LIMIT_PER_MINUTE when the key has no limit of its own');
    assert.equal((await call(`${api}/v1/jobs`, { key: admin })).status, 200);
    const health = await call(`${api}/healthz`);
    assert.equal(health.headers.get('ratelimit-limit'), null, 'health checks are not limited');
  });

  it('Idempotency-Key: the same body replays the same job (Prefer: wait too), another body 422, scoped per API key', async () => {
    const { key } = await createKey({ name: 'idempotent' });
    const idem = `order-${randomBytes(4).toString('hex')}`;
    const body = { task: 'text-to-image', input: { prompt: 'a green triangle', seed: 3, steps: 2 } };
    const first = await call(`${api}/v1/jobs`, { key, body, headers: { 'idempotency-key': idem } });
    assert.equal(first.status, 202, JSON.stringify(first.json));
    assert.equal(first.headers.get('idempotent-replayed'), null);
    const id = (first.json as JobView).id;

    // Same body in another key order: the canonical JSON is the same.
    const reordered = { input: { steps: 2, seed: 3, prompt: 'a green triangle' }, task: 'text-to-image' };
    const again = await call(`${api}/v1/jobs`, { key, body: reordered, headers: { 'idempotency-key': idem } });
    assert.equal(again.status, 202);
    assert.equal(again.headers.get('idempotent-replayed'), 'true');
    assert.equal((again.json as JobView).id, id);
    assert.equal(again.headers.get('location'), first.headers.get('location'));

    const waited = await call(`${api}/v1/jobs`, { key, body, headers: { 'idempotency-key': idem, prefer: 'wait=30' } });
    assert.equal(waited.status, 201);
    assert.equal((waited.json as JobView).id, id);
    assert.equal((waited.json as JobView).status, 'succeeded');
    assert.equal(waited.headers.get('idempotent-replayed'), 'true');

    const changed = await call(`${api}/v1/jobs`, { key, body: job('a different prompt'), headers: { 'idempotency-key': idem } });
    assert.equal(changed.status, 422);
    assert.equal((changed.json as ErrorBody).error.code, 'idempotency_key_reused');

    // Another API key has its own idempotency keys.
    const other = await call(`${api}/v1/jobs`, { key: admin, body, headers: { 'idempotency-key': idem } });
    assert.equal(other.status, 202);
    assert.notEqual((other.json as JobView).id, id);
    assert.equal(other.headers.get('idempotent-replayed'), null);

    // Prefer: wait on a first request with a key.
    const fresh = await call(`${api}/v1/jobs`, {
      key,
      body: job('a yellow star'),
      headers: { 'idempotency-key': `${idem}-w`, prefer: 'wait=30' },
    });
    assert.equal(fresh.status, 201);
    assert.equal((fresh.json as JobView).status, 'succeeded');

    const tooLong = await call(`${api}/v1/jobs`, { key, body, headers: { 'idempotency-key': 'k'.repeat(256) } });
    assert.equal(tooLong.status, 400);
    assert.equal((tooLong.json as ErrorBody).error.field, 'Idempotency-Key');
    const longest = await call(`${api}/v1/jobs`, { key, body, headers: { 'idempotency-key': 'k'.repeat(255) } });
    assert.equal(longest.status, 202);

    // A rejected first request (400) does not keep the key: corrected, it creates the job.
    const retryKey = `${idem}-retry`;
    const bad = await call(`${api}/v1/jobs`, {
      key,
      body: { task: 'text-to-image', input: { prompt: '' } },
      headers: { 'idempotency-key': retryKey },
    });
    assert.equal(bad.status, 400);
    const corrected = await call(`${api}/v1/jobs`, { key, body: job('corrected'), headers: { 'idempotency-key': retryKey } });
    assert.equal(corrected.status, 202);
    assert.equal(corrected.headers.get('idempotent-replayed'), null);
  });

  it('10 concurrent requests with one Idempotency-Key create exactly one job', async () => {
    const { key } = await createKey({ name: 'concurrent' });
    const prompt = `concurrent ${randomBytes(4).toString('hex')}`;
    const answers = await Promise.all(
      Array.from({ length: 10 }, () =>
        call(`${api}/v1/jobs`, { key, body: job(prompt), headers: { 'idempotency-key': `race-${prompt}` } }),
      ),
    );
    for (const answer of answers) assert.equal(answer.status, 202, JSON.stringify(answer.json));
    const ids = new Set(answers.map((answer) => (answer.json as JobView).id));
    assert.equal(ids.size, 1, 'one job id for all');
    assert.equal(answers.filter((answer) => answer.headers.get('idempotent-replayed') === 'true').length, 9);
    const listed = await call(`${api}/v1/jobs?limit=100`, { key });
    const jobs = (listed.json as { results: JobView[] }).results.filter((j) => j.input.prompt === prompt);
    assert.equal(jobs.length, 1, 'exactly one job in the listing');
    assert.equal(jobs[0].id, [...ids][0]);
  });
});

/** ADMIN_API_KEY unset: the api is open (a warning at start), rate limited per client IP. */
describe('the open api', () => {
  let redis: TestRedis;
  let app: AppProcess;
  let api = '';
  before(async () => {
    redis = await startRedis();
    app = startApp('api', {
      REDIS_URL: redis.url,
      QUEUE_PREFIX: freshPrefix(),
      API_HOST: '127.0.0.1',
      API_PORT: 0,
      RATE_LIMIT_PER_MINUTE: 3,
    });
    api = String((await app.waitForLog('listening')).url).replace('[::1]', '127.0.0.1');
  });
  after(async () => {
    await app?.stop('SIGKILL');
    await redis?.stop();
  });

  it('warns at start, needs no key, limits per IP, and has no key management', async () => {
    const warning = await app.waitForLog(
      'ADMIN_API_KEY is not set: the api is open, every request is allowed without an API key (set it in production)',
    );
    assert.equal(warning.level, 'warn');
    for (let i = 0; i < 3; i++) {
      const answer = await call(`${api}/v1/jobs`);
      assert.equal(answer.status, 200);
      assert.equal(answer.headers.get('ratelimit-remaining'), String(2 - i));
    }
    const over = await call(`${api}/v1/jobs`, { headers: { authorization: 'Bearer anything' } });
    assert.equal(over.status, 429);
    assert.ok(Number(over.headers.get('retry-after')) >= 1);
    assert.equal((await call(`${api}/healthz`)).status, 200);
    const keys = await call(`${api}/v1/keys`, { body: { name: 'x', scopes: ['admin'] } });
    assert.equal(keys.status, 403);
    assert.equal((keys.json as ErrorBody).error.code, 'auth_disabled');
  });
});
