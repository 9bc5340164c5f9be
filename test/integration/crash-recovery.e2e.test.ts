import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { setTimeout as sleep } from 'node:timers/promises';
import { Queue } from 'bullmq';
import { Redis } from 'ioredis';
import { freshPrefix, startRedis, type TestRedis } from '../support/redis.js';
import { TestSystem } from '../support/system.js';
import { getJob, postJob, waitForJob, type JobView } from '../support/http.js';
import { startApp, type AppName, type AppProcess } from '../support/processes.js';
import { FIXTURE_MODEL } from '../support/paths.js';
import { waitFor } from '../support/wait.js';
import { WebhookReceiver } from '../support/webhook-receiver.js';

/** The secret the system signs with; every delivery is verified with the standardwebhooks package. */
const SECRET = 'whsec_Y3Jhc2gtcmVjb3Zlcnktd2ViaG9vay10ZXN0LXNlY3JldA==';

/**
 * BullMQ's stalled-job recovery, with a short lock (LOCK_DURATION_MS 4 s, renewed every 2 s) and a
 * stalled check every second (STALLED_INTERVAL_MS): a stage whose worker was killed goes back to its
 * queue once its lock expired and a stalled check saw it, a few seconds after the kill.
 */
const STALLED_RECOVERY_MS = 30_000;

interface WebhookView {
  deliveries: { id: string; event: string; status: string }[];
}

const stageOf = (job: JobView, stage: string) => job.timeline.find((s) => s.stage === stage);

/**
 * kill -9 of the orchestrator mid-pipeline and of the gen-worker mid-stage: the restarted process
 * (same environment) finishes the job, exactly once, and every webhook event arrives at least once,
 * always under the same webhook-id.
 */
describe('crash recovery: kill -9 mid-pipeline and mid-stage', () => {
  const prefix = freshPrefix();
  let redis: TestRedis;
  let system: TestSystem;
  let receiver: WebhookReceiver;
  let client: Redis;
  /** Every orchestrator and gen-worker process this test ran, the killed ones too (their logs count). */
  const orchestrators: AppProcess[] = [];
  const genWorkers: AppProcess[] = [];
  let env: Record<string, string | number> = {};

  const systemEnv = {
    WEBHOOK_SECRET: SECRET,
    WEBHOOK_ALLOW_PRIVATE: 'true',
    WEBHOOK_RETRY_SCHEDULE_MS: '200,500,1000,2000,4000',
    WEBHOOK_TIMEOUT_MS: 2000,
    JOB_BACKOFF_MS: 200,
    LOCK_DURATION_MS: 4000,
    STALLED_INTERVAL_MS: 1000,
  };

  /** Starts an app again with the environment TestSystem gave it (same Redis, prefix, ports). */
  async function restart(name: Extract<AppName, 'orchestrator' | 'gen-worker'>): Promise<AppProcess> {
    const app = startApp(name, env);
    await app.waitForLog('consuming');
    return app;
  }

  /** Waits until every delivery recorded so far is delivered, so that no delivery job is in flight. */
  async function deliveriesSettled(id: string, atLeast: number): Promise<void> {
    await waitFor(
      async () => {
        const job = (await getJob(system.apiUrl, id)) as JobView & { webhook?: WebhookView };
        const deliveries = job.webhook?.deliveries ?? [];
        return deliveries.length >= atLeast && deliveries.every((d) => d.status === 'delivered');
      },
      20_000,
      `${atLeast} webhook deliveries of ${id} delivered`,
    );
  }

  function assertWebhooks(id: string, expected: string[]): void {
    assert.deepEqual(receiver.rejected, [], 'every delivery verifies with WEBHOOK_SECRET');
    const byId = receiver.byId(id);
    assert.deepEqual([...byId.keys()].sort(), expected.map((e) => `msg_${id}_${e}`).sort(), 'one webhook-id per event');
    for (const [webhookId, deliveries] of byId) {
      // At least once; a retry or a re-emitted event carries the same id and the same signed body.
      assert.ok(deliveries.length >= 1);
      assert.equal(new Set(deliveries.map((d) => d.body)).size, 1, `${webhookId}: every delivery has the same body`);
    }
    const completed = [...byId.values()].map((d) => d[0].payload).filter((p) => p.type === 'job.completed');
    assert.equal(completed.length, 1, 'one job.completed');
    assert.equal(completed[0].data.status, 'succeeded');
  }

  /** The pipeline finished once: one `pipeline succeeded` across every orchestrator process that ran. */
  function assertSucceededOnce(id: string): void {
    const lines = orchestrators.flatMap((o) => o.lines.filter((l) => l.msg === 'pipeline succeeded' && l.jobId === id));
    assert.equal(lines.length, 1, `pipeline succeeded logged ${lines.length} times`);
  }

  before(async () => {
    redis = await startRedis();
    client = new Redis(redis.url);
    receiver = await new WebhookReceiver(SECRET).start();
    system = await new TestSystem({
      redisUrl: redis.url,
      prefix,
      env: systemEnv,
      // Slow joint-layer exchanges: a generate stage takes seconds, long enough to kill something in it.
      undEnv: { FAULT_EXCHANGE_DELAY_MS: 25 },
    }).start();
    // What TestSystem.start gave every app (support/system.ts), to start one again the same way.
    env = {
      REDIS_URL: redis.url,
      QUEUE_PREFIX: prefix,
      GRPC_HOST: '127.0.0.1',
      API_HOST: '127.0.0.1',
      API_PORT: 0,
      UND_GRPC_PORT: system.undPort,
      GEN_GRPC_PORT: 0,
      UND_PEERS: `127.0.0.1:${system.undPort}`,
      MODEL_DIR: FIXTURE_MODEL,
      ...systemEnv,
    };
    orchestrators.push(system.orchestrator);
    genWorkers.push(system.gen);
  });
  after(async () => {
    await Promise.all([...orchestrators, ...genWorkers].map((app) => app.stop('SIGKILL')));
    await system?.stop();
    client?.disconnect();
    await receiver?.stop();
    await redis?.stop();
  });

  it('orchestrator killed while a stage runs: the stage finishes alone, a new orchestrator completes the pipeline once', async (t) => {
    const started = Date.now();
    const created = await postJob(system.apiUrl, {
      task: 'text-to-image',
      // The fixture model has no task templates (plan and reflect need models/lavida-o-mini): one generate stage.
      input: { prompt: 'a red circle left of a blue square', seed: 5, steps: 64 },
      webhook: `${receiver.url}/orchestrator`,
    });
    assert.equal(created.status, 202, JSON.stringify(created.json));
    const id = String(created.json.id);

    // Mid-pipeline: job.start delivered, the generate stage running, the pipeline waiting for it.
    let last: JobView | undefined;
    await waitFor(
      async () => {
        last = await getJob(system.apiUrl, id);
        return stageOf(last, 'generate')?.status === 'processing';
      },
      30_000,
      'generate running',
      25,
    ).catch((error: Error) => assert.fail(`${error.message}: ${JSON.stringify(last)}`));
    await deliveriesSettled(id, 1);
    await sleep(300);
    const killed = system.orchestrator;
    await killed.stop('SIGKILL');
    assert.equal(killed.signal, 'SIGKILL');

    // Nobody orchestrates: the stage still finishes, the pipeline waits for an orchestrator.
    const waiting = await waitFor(
      async () => {
        const job = await getJob(system.apiUrl, id);
        return stageOf(job, 'generate')?.status === 'succeeded' ? job : undefined;
      },
      30_000,
      'generate to finish without an orchestrator',
    );
    await sleep(500);
    const stalled = await getJob(system.apiUrl, id);
    // The finished stage moved the pipeline back to its queue (BullMQ `wait`): shown as queued until an orchestrator takes it.
    assert.ok(['queued', 'processing'].includes(stalled.status), stalled.status);
    assert.equal(stalled.output, null, 'nobody finished the pipeline');
    assert.equal(waiting.timeline.length, 1);
    assert.ok(!receiver.byId(id).has(`msg_${id}_stage_generate-1`), 'no job.stage before an orchestrator runs');

    system.orchestrator = await restart('orchestrator');
    orchestrators.push(system.orchestrator);
    const done = await waitForJob(system.apiUrl, id, 30_000);
    assert.equal(done.status, 'succeeded', `${JSON.stringify(done)}\n${system.dump()}`);
    assert.deepEqual(
      done.timeline.map((s) => [s.stage, s.round ?? null, s.status]),
      [['generate', 1, 'succeeded']],
    );
    assert.equal(done.output?.attempts?.length, 1);
    assertSucceededOnce(id);

    await waitFor(() => receiver.byId(id).has(`msg_${id}_completed`), 20_000, 'job.completed webhook');
    await deliveriesSettled(id, 3);
    assertWebhooks(id, ['start', 'stage_generate-1', 'completed']);
    t.diagnostic(`orchestrator kill: ${Date.now() - started} ms from submit to job.completed`);
  });

  it('gen-worker killed mid-stage: the stalled stage is recovered by a restarted gen-worker and the job completes once', async (t) => {
    const created = await postJob(system.apiUrl, {
      task: 'text-to-image',
      input: { prompt: 'two green triangles', seed: 9, steps: 64 },
      webhook: `${receiver.url}/gen-worker`,
    });
    assert.equal(created.status, 202, JSON.stringify(created.json));
    const id = String(created.json.id);

    // Mid-stage: the generate stage reports a step of its diffusion loop.
    await waitFor(
      async () => {
        const job = await getJob(system.apiUrl, id);
        const generate = stageOf(job, 'generate');
        const step = (generate as { progress?: { step?: number } } | undefined)?.progress?.step ?? 0;
        return generate?.status === 'processing' && step >= 2;
      },
      30_000,
      'generate running with progress',
      25,
    );
    const killedAt = Date.now();
    const killed = system.gen;
    await killed.stop('SIGKILL');
    assert.equal(killed.signal, 'SIGKILL');
    assert.equal(stageOf(await getJob(system.apiUrl, id), 'generate')?.status, 'processing', 'the stage is left active, its lock held');

    system.gen = await restart('gen-worker');
    genWorkers.push(system.gen);
    const done = await waitForJob(system.apiUrl, id, STALLED_RECOVERY_MS);
    const recoveredMs = Date.now() - killedAt;
    assert.equal(done.status, 'succeeded', `${JSON.stringify(done)}\n${system.dump()}`);
    assert.deepEqual(
      done.timeline.map((s) => [s.stage, s.status]),
      [['generate', 'succeeded']],
    );
    assertSucceededOnce(id);

    // The stage job ran twice (started by the killed worker, then again after it stalled), finished once.
    const queue = new Queue('generation', { connection: client, prefix });
    try {
      const stage = await queue.getJob(`${id}-generate-1`);
      assert.ok(stage, 'the stage job is kept');
      assert.equal(await stage.getState(), 'completed');
      assert.ok(stage.attemptsStarted >= 2, `attemptsStarted ${stage.attemptsStarted}`);
      assert.ok(stage.returnvalue, 'the stage has its result');
    } finally {
      await queue.close();
    }

    await waitFor(() => receiver.byId(id).has(`msg_${id}_completed`), 20_000, 'job.completed webhook');
    await deliveriesSettled(id, 3);
    assertWebhooks(id, ['start', 'stage_generate-1', 'completed']);
    t.diagnostic(`gen-worker kill: recovered and completed ${recoveredMs} ms after the kill (BullMQ stalled check, default 30 s)`);
  });
});
