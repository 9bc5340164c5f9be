import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { Queue } from 'bullmq';
import { Redis } from 'ioredis';
import { freshPrefix, startRedis, type TestRedis } from '../support/redis.js';
import { TestSystem } from '../support/system.js';
import { getJob, postJob, waitForJob } from '../support/http.js';
import { startApp, type AppProcess } from '../support/processes.js';
import { FIXTURE_MODEL } from '../support/paths.js';
import { waitFor } from '../support/wait.js';

/**
 * SIGTERM to a generation worker mid-stage (what Kubernetes sends a pod it stops): the worker takes
 * no new job, finishes the running stage and exits 0; a second SIGTERM, or DRAIN_TIMEOUT_MS running
 * out, hands the stage back to its queue instead (not a failed attempt), where another worker
 * finishes it. The pipeline job succeeds either way: nothing is lost.
 */
describe('graceful drain: SIGTERM to a worker mid-job', () => {
  const prefix = freshPrefix();
  let redis: TestRedis;
  let system: TestSystem;
  let client: Redis;
  let stages: Queue;
  const genWorkers: AppProcess[] = [];
  let env: Record<string, string | number> = {};

  /** A gen-worker with the environment TestSystem gave the first one, and more. */
  async function startGen(extra: Record<string, string | number> = {}): Promise<AppProcess> {
    const app = startApp('gen-worker', { ...env, ...extra });
    genWorkers.push(app);
    await app.waitForLog('consuming');
    return app;
  }

  /** Submits a text-to-image job long enough to signal its worker mid-stage, and waits until it runs. */
  async function runningJob(seed: number): Promise<string> {
    const created = await postJob(system.apiUrl, { task: 'text-to-image', input: { prompt: 'a red circle', seed, steps: 64 } });
    assert.equal(created.status, 202, JSON.stringify(created.json));
    const id = String(created.json.id);
    await waitFor(async () => ((await getJob(system.apiUrl, id)).progress?.step ?? 0) >= 2, 30_000, `job ${id} at step 2`, 20);
    return id;
  }

  before(async () => {
    redis = await startRedis();
    client = new Redis(redis.url);
    // Slow joint-layer exchanges: 64 steps take seconds, long enough to signal the worker mid-stage.
    system = await new TestSystem({
      redisUrl: redis.url,
      prefix,
      env: { DRAIN_TIMEOUT_MS: 60_000 },
      undEnv: { FAULT_EXCHANGE_DELAY_MS: 25 },
    }).start();
    env = {
      REDIS_URL: redis.url,
      QUEUE_PREFIX: prefix,
      GRPC_HOST: '127.0.0.1',
      GEN_GRPC_PORT: 0,
      UND_GRPC_PORT: system.undPort,
      UND_PEERS: `127.0.0.1:${system.undPort}`,
      MODEL_DIR: FIXTURE_MODEL,
      DRAIN_TIMEOUT_MS: 60_000,
    };
    genWorkers.push(system.gen);
    stages = new Queue('generation', { connection: client, prefix });
  });
  after(async () => {
    await stages?.close();
    await Promise.all(genWorkers.map((app) => app.stop('SIGKILL')));
    await system?.stop();
    client?.disconnect();
    await redis?.stop();
  });

  it('finishes the running stage, then exits 0; the job succeeds with one attempt', async () => {
    const gen = system.gen;
    const id = await runningJob(1);
    gen.child.kill('SIGTERM');
    const draining = await gen.waitForLog('draining', 5000);
    assert.equal(draining.running, 1, 'one stage running when the drain began');
    await gen.waitForExit();
    assert.equal(gen.exitCode, 0, `exit ${gen.exitCode ?? gen.signal}: ${gen.output()}`);

    // It finished the stage before it exited: its own log says so, and nothing was handed back.
    const generated = gen.lines.find((l) => l.msg === 'generated' && l.jobId === id);
    assert.ok(generated, `the draining worker generated the image: ${gen.output()}`);
    assert.equal(generated.steps, 64);
    assert.ok(!gen.lines.some((l) => l.msg === 'stage handed back'));
    const drainedAt = gen.lines.findIndex((l) => l.msg === 'drained');
    assert.ok(drainedAt > gen.lines.indexOf(generated), 'drained after the stage finished');

    const done = await waitForJob(system.apiUrl, id, 20_000);
    assert.equal(done.status, 'succeeded', `${JSON.stringify(done)}\n${system.dump()}`);
    const stage = await stages.getJob(`${id}-generate-1`);
    assert.equal(stage?.attemptsStarted, 1, 'the stage ran once');
    assert.equal(stage?.attemptsMade, 1, 'one attempt, the one that succeeded');
  });

  it('a second SIGTERM hands the running stage back; another worker finishes it', async () => {
    const gen = await startGen();
    const id = await runningJob(2);
    gen.child.kill('SIGTERM');
    await gen.waitForLog('draining', 5000);
    gen.child.kill('SIGTERM');
    const handedBack = await gen.waitForLog('stage handed back', 10_000);
    assert.equal(handedBack.jobId, id);
    assert.match(String(handedBack.reason), /second SIGTERM/);
    await gen.waitForExit();
    assert.equal(gen.exitCode, 0, `exit ${gen.exitCode ?? gen.signal}: ${gen.output()}`);
    assert.ok(!gen.lines.some((l) => l.msg === 'generated'), 'the stage did not finish on the drained worker');

    // Back in its queue at once (no lock to expire), not failed.
    const stage = await stages.getJob(`${id}-generate-1`);
    assert.ok(stage);
    assert.ok(['wait', 'prioritized', 'waiting'].includes(await stage.getState()), await stage.getState());
    assert.equal(stage.attemptsMade, 0, 'a hand-back is not a failed attempt');

    const next = await startGen();
    const done = await waitForJob(system.apiUrl, id, 30_000);
    assert.equal(done.status, 'succeeded', `${JSON.stringify(done)}\n${system.dump()}`);
    assert.ok(
      next.lines.some((l) => l.msg === 'generated' && l.jobId === id),
      'the new worker finished the stage',
    );
    const finished = await stages.getJob(`${id}-generate-1`);
    assert.equal(finished?.attemptsStarted, 2, 'started twice: on the drained worker, then on the new one');
    assert.equal(finished?.attemptsMade, 1, 'one attempt counted: the hand-back is none');
    const generate = done.timeline.find((s) => s.stage === 'generate');
    assert.ok(
      generate?.logs.some((l) => /handed back: second SIGTERM/.test(l)),
      `the stage's log tells of the hand-back: ${JSON.stringify(generate)}`,
    );
    system.gen = next;
  });

  it('DRAIN_TIMEOUT_MS running out hands the stage back too', async () => {
    await system.gen.stop('SIGTERM');
    const gen = await startGen({ DRAIN_TIMEOUT_MS: 300 });
    const id = await runningJob(3);
    const signaled = Date.now();
    gen.child.kill('SIGTERM');
    const handedBack = await gen.waitForLog('stage handed back', 10_000);
    assert.match(String(handedBack.reason), /DRAIN_TIMEOUT_MS \(300 ms\)/);
    await gen.waitForExit();
    assert.equal(gen.exitCode, 0, gen.output());
    assert.ok(Date.now() - signaled < 10_000, 'exited soon after the drain timeout');

    await startGen();
    const done = await waitForJob(system.apiUrl, id, 30_000);
    assert.equal(done.status, 'succeeded', `${JSON.stringify(done)}\n${system.dump()}`);
    assert.equal((await stages.getJob(`${id}-generate-1`))?.attemptsMade, 1, 'the hand-back is no attempt');
  });

  it('an und-worker signaled mid-session serves the running session to its end, then exits 0', async () => {
    const und = system.und;
    const id = await runningJob(4);
    und.child.kill('SIGTERM');
    await und.waitForExit();
    assert.equal(und.exitCode, 0, und.output());
    // The session of the running stage ended normally (closed by the driver), before the process exited.
    const session = und.lines.find((l) => l.msg === 'session ended' && l.jobId === id);
    assert.equal(session?.outcome, 'closed', `the session was served to its end: ${und.output()}`);
    assert.equal(session?.steps, 64);
    const done = await waitForJob(system.apiUrl, id, 20_000);
    assert.equal(done.status, 'succeeded', `${JSON.stringify(done)}\n${system.dump()}`);
    assert.equal(done.timeline[0].attempts, 1, 'no retry: the exchange never broke');
  });
});
