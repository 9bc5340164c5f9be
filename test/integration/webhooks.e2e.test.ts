import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { freshPrefix, startRedis, type TestRedis } from '../support/redis.js';
import { TestSystem } from '../support/system.js';
import { getJob, postJob, waitForJob, type JobView } from '../support/http.js';
import { startApp, type AppProcess } from '../support/processes.js';
import { waitFor } from '../support/wait.js';
import { WebhookReceiver } from '../support/webhook-receiver.js';

/** The secret the system signs with; every delivery is verified with the standardwebhooks package. */
const SECRET = 'whsec_dGVzdC1zZWNyZXQtb2YtdGhlLXdlYmhvb2tzLXRlc3Q=';

interface WebhookView {
  url: string;
  events: string[];
  deliveries: {
    id: string;
    event: string;
    stage?: string;
    status: string;
    attempts: { attempt: number; at: string; status_code?: number; error?: string; ms: number }[];
  }[];
}

describe('webhooks (Standard Webhooks), delivered by queued jobs with retries', () => {
  let redis: TestRedis;
  let system: TestSystem;
  let receiver: WebhookReceiver;

  before(async () => {
    redis = await startRedis();
    receiver = await new WebhookReceiver(SECRET).start();
    system = await new TestSystem({
      redisUrl: redis.url,
      prefix: freshPrefix(),
      env: { WEBHOOK_SECRET: SECRET, WEBHOOK_ALLOW_PRIVATE: 'true', WEBHOOK_RETRY_SCHEDULE_MS: '200,300,300', WEBHOOK_TIMEOUT_MS: 3000 },
    }).start();
  });
  after(async () => {
    await system?.stop();
    await receiver?.stop();
    await redis?.stop();
  });

  const submit = async (body: object): Promise<string> => {
    const created = await postJob(system.apiUrl, { task: 'text-to-image', ...body });
    assert.equal(created.status, 202, JSON.stringify(created.json));
    return String(created.json.id);
  };
  const webhookOf = async (id: string) => ((await getJob(system.apiUrl, id)) as JobView & { webhook: WebhookView }).webhook;
  /** The job's deliveries once none is pending or retrying. */
  const settled = (id: string, count: number) =>
    waitFor(
      async () => {
        const webhook = await webhookOf(id);
        const done = webhook.deliveries.length === count && webhook.deliveries.every((d) => !['pending', 'retrying'].includes(d.status));
        return done ? webhook : undefined;
      },
      15_000,
      `${count} deliveries of job ${id} to settle`,
      100,
    );

  it('a succeeded job sends start, stage and completed (signed, fixed ids); the filter is honoured', async () => {
    const [all, filtered] = await Promise.all([
      submit({ input: { prompt: 'a red circle', seed: 1 }, webhook: `${receiver.url}/all` }),
      submit({
        input: { prompt: 'a blue square', seed: 2 },
        webhook: `${receiver.url}/filtered`,
        webhook_events_filter: ['completed', 'stage'],
      }),
    ]);
    const job = await waitForJob(system.apiUrl, all);
    assert.equal(job.status, 'succeeded', system.dump());
    assert.equal((await waitForJob(system.apiUrl, filtered)).status, 'succeeded');

    const webhook = await settled(all, 3);
    assert.equal(webhook.url, `${receiver.url}/all`);
    assert.deepEqual(webhook.events, ['start', 'stage', 'completed']);
    assert.deepEqual(
      webhook.deliveries.map((d) => [d.id, d.event, d.status, d.attempts.length, d.attempts[0].status_code]),
      [
        [`msg_${all}_start`, 'start', 'delivered', 1, 200],
        [`msg_${all}_stage_generate-1`, 'stage', 'delivered', 1, 200],
        [`msg_${all}_completed`, 'completed', 'delivered', 1, 200],
      ],
    );

    const received = receiver.for(all);
    assert.deepEqual(received.map((d) => d.id).sort(), webhook.deliveries.map((d) => d.id).sort());
    const byType = new Map(received.map((d) => [d.payload.type, d]));
    assert.deepEqual([...byType.keys()].sort(), ['job.completed', 'job.stage', 'job.start']);
    for (const d of received) {
      assert.equal(d.path, '/all');
      assert.equal(d.payload.data.task, 'text-to-image');
      assert.ok(!Number.isNaN(Date.parse(d.payload.timestamp)));
      assert.ok(Math.abs(Number(d.headers['webhook-timestamp']) - Date.now() / 1000) < 60);
    }
    assert.equal(byType.get('job.start')!.payload.data.status, 'processing');
    const stage = byType.get('job.stage')!.payload.data;
    assert.equal(stage.status, 'processing');
    assert.deepEqual(stage.stage, {
      name: 'generate',
      round: 1,
      job_id: `${all}-generate-1`,
      image: `/v1/jobs/${all}/files/attempt-1.png`,
    });
    const completed = byType.get('job.completed')!.payload.data;
    assert.equal(completed.status, 'succeeded');
    assert.deepEqual(completed.output!.tokens, job.output!.tokens);
    assert.equal(completed.output!.image, `/v1/jobs/${all}/files/attempt-1.png`);
    assert.equal(completed.output!.model, job.output!.model);

    const only = await settled(filtered, 2);
    assert.deepEqual(only.events, ['stage', 'completed']);
    assert.deepEqual(
      only.deliveries.map((d) => d.event),
      ['stage', 'completed'],
    );
    assert.deepEqual(
      receiver
        .for(filtered)
        .map((d) => d.payload.type)
        .sort(),
      ['job.completed', 'job.stage'],
    );
    assert.deepEqual(receiver.rejected, []);
  });

  it('a receiver that fails twice gets 3 attempts with the same webhook-id, and the job shows them', async () => {
    receiver.script.set('/flaky', [500, 503]);
    const id = await submit({
      input: { prompt: 'a circle', seed: 3 },
      webhook: `${receiver.url}/flaky`,
      webhook_events_filter: ['completed'],
    });
    const [delivery] = (await settled(id, 1)).deliveries;
    assert.equal(delivery.status, 'delivered');
    assert.deepEqual(
      delivery.attempts.map((a) => [a.attempt, a.status_code, a.error]),
      [
        [1, 500, 'HTTP 500'],
        [2, 503, 'HTTP 503'],
        [3, 200, undefined],
      ],
    );
    const received = receiver.deliveries.filter((d) => d.path === '/flaky');
    assert.equal(received.length, 3);
    assert.deepEqual(
      received.map((d) => d.id),
      [`msg_${id}_completed`, `msg_${id}_completed`, `msg_${id}_completed`],
    );
    // Every attempt sends the same body, signed anew.
    assert.equal(new Set(received.map((d) => JSON.stringify(d.payload))).size, 1);
    assert.deepEqual(receiver.rejected, []);
  });

  it("410 Gone disables the endpoint: a later job's delivery to it is skipped", async () => {
    receiver.script.set('/gone', [410, 410, 410]);
    const first = await submit({
      input: { prompt: 'a circle', seed: 4 },
      webhook: `${receiver.url}/gone`,
      webhook_events_filter: ['completed'],
    });
    const [gone] = (await settled(first, 1)).deliveries;
    assert.equal(gone.status, 'disabled');
    assert.deepEqual(
      gone.attempts.map((a) => a.status_code),
      [410],
    );
    const second = await submit({
      input: { prompt: 'a square', seed: 5 },
      webhook: `${receiver.url}/gone`,
      webhook_events_filter: ['completed'],
    });
    assert.equal((await waitForJob(system.apiUrl, second)).status, 'succeeded');
    const [skipped] = (await settled(second, 1)).deliveries;
    assert.equal(skipped.status, 'skipped');
    assert.equal(skipped.attempts.length, 1);
    assert.equal(skipped.attempts[0].status_code, undefined);
    assert.equal(receiver.deliveries.filter((d) => d.path === '/gone').length, 1);
  });

  it('a failed job still sends completed, with status failed and the error', async () => {
    const prompt = Array.from({ length: 70 }, () => 'circle').join(' ');
    const id = await submit({ input: { prompt, seed: 1 }, webhook: `${receiver.url}/failed` });
    const job = await waitForJob(system.apiUrl, id);
    assert.equal(job.status, 'failed');
    const webhook = await settled(id, 2);
    assert.deepEqual(
      webhook.deliveries.map((d) => [d.event, d.status]),
      [
        ['start', 'delivered'],
        ['completed', 'delivered'],
      ],
    );
    const completed = receiver.for(id).find((d) => d.payload.type === 'job.completed')!.payload.data;
    assert.equal(completed.status, 'failed');
    assert.match(completed.error!, /INVALID_INPUT: prompt is 70 tokens, longer than the model's context of 64/);
    assert.equal(completed.error, job.error);
    assert.deepEqual(receiver.rejected, []);
  });

  it('validates webhook fields (400 naming the field); link-local hosts are refused even when private ones are allowed', async () => {
    const cases: [object, string][] = [
      [{ webhook: 'ftp://example.com/hook' }, 'webhook'],
      [{ webhook: 'example.com/hook' }, 'webhook'],
      [{ webhook: 'http://169.254.169.254/latest' }, 'webhook'],
      [{ webhook: 'http://[fe80::1]/' }, 'webhook'],
      [{ webhook: `${receiver.url}/x`, webhook_events_filter: ['done'] }, 'webhook_events_filter.0'],
      [{ webhook_events_filter: ['start'] }, 'webhook_events_filter'],
    ];
    for (const [fields, field] of cases) {
      const { status, json } = await postJob(system.apiUrl, { task: 'text-to-image', input: { prompt: 'a circle' }, ...fields });
      assert.equal(status, 400, JSON.stringify(fields));
      assert.equal((json.error as { field: string }).field, field, JSON.stringify(json));
    }
  });

  it('without WEBHOOK_ALLOW_PRIVATE, loopback and private hosts are refused at submission', async () => {
    const api: AppProcess = startApp('api', { REDIS_URL: redis.url, QUEUE_PREFIX: freshPrefix(), API_HOST: '127.0.0.1', API_PORT: 0 });
    try {
      const apiUrl = String((await api.waitForLog('listening')).url).replace('[::1]', '127.0.0.1');
      for (const webhook of [`${receiver.url}/x`, 'http://localhost:8080/', 'http://[::1]/', 'http://10.0.0.1/', 'https://192.168.1.20/']) {
        const { status, json } = await postJob(apiUrl, { task: 'text-to-image', input: { prompt: 'a circle' }, webhook });
        assert.equal(status, 400, webhook);
        const error = json.error as { field: string; message: string };
        assert.equal(error.field, 'webhook');
        assert.match(error.message, /^webhook: host .* is a (loopback|private) address/);
      }
      const ok = await postJob(apiUrl, {
        task: 'text-to-image',
        input: { prompt: 'a circle' },
        webhook: 'https://hooks.example.com/lavida',
      });
      assert.equal(ok.status, 202, JSON.stringify(ok.json));
      const view = (await getJob(apiUrl, String(ok.json.id))) as JobView & { webhook: WebhookView };
      assert.deepEqual(view.webhook, { url: 'https://hooks.example.com/lavida', events: ['start', 'stage', 'completed'], deliveries: [] });
    } finally {
      await api.stop('SIGKILL');
    }
  });
});
