import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { Queue, QueueEvents, type Job } from 'bullmq';
import { Redis } from 'ioredis';
import { artifactKey } from '@lavida/config';
import {
  JobName,
  QueueName,
  type EditJobData,
  type GenerateJobData,
  type GenerateResult,
  type UnderstandingJobData,
  type UnderstandingResult,
} from '@lavida/contracts';
import { decodePng, editImage, encodePng, LocalJointPeer, ModelPackage, textToImage, UnderstandingEngine } from '@lavida/model';
import { freshPrefix, startRedis, type TestRedis } from '../support/redis.js';
import { startApp, type AppProcess } from '../support/processes.js';
import { freePort } from '../support/wait.js';
import { MINI_MODEL } from '../support/paths.js';

/**
 * The two workers as real processes on the trained model, fed through real BullMQ queues: every
 * stage answers what the same task gives in one process, and bad stage input fails that job only,
 * once (not retried), with a message naming the problem.
 */
describe('stage workers: every task through BullMQ on lavida-o-mini', () => {
  let redis: TestRedis;
  let und: AppProcess;
  let gen: AppProcess;
  let prefix: string;
  let client: Redis;
  let generation: Queue;
  let understanding: Queue;
  let events: { generation: QueueEvents; understanding: QueueEvents };
  let pkg: ModelPackage;
  let engine: UnderstandingEngine;
  let local: LocalJointPeer;
  let source: Uint8Array;

  before(async () => {
    redis = await startRedis();
    prefix = freshPrefix();
    const [undPort, genPort] = [await freePort(), await freePort()];
    const env = {
      REDIS_URL: redis.url,
      QUEUE_PREFIX: prefix,
      MODEL_DIR: MINI_MODEL,
      GRPC_HOST: '127.0.0.1',
      UND_GRPC_PORT: undPort,
      GEN_GRPC_PORT: genPort,
      UND_PEERS: `127.0.0.1:${undPort}`,
      // Each worker serves the other: the gen-worker the image side of an und-worker's [exp] answer.
      GEN_PEERS: `127.0.0.1:${genPort}`,
    };
    und = startApp('und-worker', env);
    gen = startApp('gen-worker', env);
    client = new Redis(redis.url, { maxRetriesPerRequest: null });
    generation = new Queue(QueueName.Generation, { connection: client, prefix });
    understanding = new Queue(QueueName.Understanding, { connection: client, prefix });
    const { hostname: host, port } = new URL(redis.url);
    const connection = { host, port: Number(port), maxRetriesPerRequest: null };
    events = {
      generation: new QueueEvents(QueueName.Generation, { connection, prefix }),
      understanding: new QueueEvents(QueueName.Understanding, { connection, prefix }),
    };
    pkg = await ModelPackage.load(MINI_MODEL, { branch: 'all' });
    engine = new UnderstandingEngine(pkg);
    local = new LocalJointPeer(pkg);
    await Promise.all([
      // The und-worker consumes its queue and serves the text side over gRPC: wait for both.
      und.waitForLog('consuming'),
      und.waitForLog('serving'),
      gen.waitForLog('consuming'),
      events.generation.waitUntilReady(),
      events.understanding.waitUntilReady(),
    ]);
  });
  after(async () => {
    await Promise.all([und?.stop('SIGKILL'), gen?.stop('SIGKILL')]);
    await events?.generation.close();
    await events?.understanding.close();
    await generation?.close();
    await understanding?.close();
    await client?.quit();
    await pkg?.release();
    await redis?.stop();
  });

  const OPTS = { attempts: 3, backoff: { type: 'fixed', delay: 50 } };
  const run = async <R>(job: Job, queueEvents: QueueEvents): Promise<R> => (await job.waitUntilFinished(queueEvents, 60_000)) as R;
  const stage = (data: UnderstandingJobData) =>
    understanding.add(data.task, data, OPTS).then((job) => run<UnderstandingResult>(job, events.understanding));
  const failure = async (queue: Queue, name: string, data: object, queueEvents: QueueEvents): Promise<Job> => {
    const job = await queue.add(name, data, OPTS);
    await assert.rejects(job.waitUntilFinished(queueEvents, 60_000));
    const failed = (await queue.getJob(job.id!))!;
    assert.equal(await failed.getState(), 'failed');
    assert.equal(failed.attemptsMade, 1, `${name}: bad input is not retried (${failed.failedReason})`);
    return failed;
  };

  it('generate: the PNG in the artefact store and the tokens of a single-process run', async () => {
    const data: GenerateJobData = { jobId: 'j1', prompt: 'a blue circle', seed: 21, output: 'a.png' };
    const result = await run<GenerateResult>(await generation.add(JobName.Generate, data, OPTS), events.generation);
    const png = await client.getBuffer(artifactKey({ QUEUE_PREFIX: prefix }, 'j1', 'a.png'));
    assert.ok(png, 'the image is stored');
    source = decodePng(png).rgb;
    const single = await textToImage(pkg, local, { prompt: data.prompt, seed: data.seed }, { sessionId: 'local' });
    assert.deepEqual(result.tokens, single.tokens);
    assert.deepEqual(source, single.pixels);
  });

  it('understand, reflect, plan, ground (two refs, 1 and 4 steps) and respond equal the in-process engine', async () => {
    const image = { jobId: 'j1', name: 'a.png' };
    const answer = await stage({ jobId: 'u1', task: 'understand', image, question: 'what colour is the circle?' });
    assert.equal(answer.text, (await engine.understand(source, 'what colour is the circle?')).text);
    assert.equal(answer.model.name, 'lavida-o-mini');
    const verdict = await stage({ jobId: 'u2', task: 'reflect', image, prompt: 'a blue circle LUMINANCE : 0.300;' });
    assert.equal(verdict.text, (await engine.reflect(source, 'a blue circle')).text);
    const plan = await stage({ jobId: 'u3', task: 'plan', prompt: 'a red square above a green triangle' });
    assert.deepEqual(plan.layout, (await engine.plan('a red square above a green triangle')).layout);
    for (const steps of [1, 4]) {
      const refs = ['the blue circle', 'the circle'];
      const boxes = await stage({ jobId: 'u4', task: 'ground', image, refs, steps });
      const want = await engine.ground(source, refs, { steps });
      assert.deepEqual(boxes.boxes, want.boxes);
      assert.equal(boxes.timings.forwards, want.forwards);
      assert.equal(boxes.boxes?.length, 2);
    }
    const respond = await stage({ jobId: 'u5', task: 'respond', prompt: 'what shape is the green circle?' });
    const want = await engine.respond('what shape is the green circle?');
    assert.equal(want.kind, 'text');
    assert.equal(respond.modality, 'text');
    assert.equal(respond.text, want.kind === 'text' ? want.text : undefined);
    assert.equal(respond.image, undefined);
  });

  it('respond whose answer is [exp]: the und-worker drives text-to-image, the real gen-worker serves the image side; the PNG is stored', async () => {
    const decision = await engine.respond('a blue circle');
    assert.equal(decision.kind, 'image', 'lavida-o-mini answers a generation prompt with [exp]');
    // One correction sweep, asked for by the stage: the und-worker sends it to the gen-worker's image side (ImageSampling).
    const result = await stage({
      jobId: 'u6',
      task: 'respond',
      prompt: 'a blue circle',
      seed: 21,
      steps: 16,
      correctionSweeps: 1,
      output: 'answer.png',
    });
    assert.equal(result.modality, 'image');
    assert.equal(result.text, undefined);
    const single = await textToImage(
      pkg,
      local,
      { prompt: 'a blue circle', seed: 21, steps: 16, correctionSweeps: 1 },
      { sessionId: 'respond-local' },
    );
    assert.deepEqual(result.image?.tokens, single.tokens, 'the image of a single-process run');
    assert.deepEqual(result.image?.artifact, { name: 'answer.png', contentType: 'image/png', bytes: single.png.length });
    assert.match(result.peer ?? '', /^127\.0\.0\.1:\d+$/);
    const png = await client.getBuffer(artifactKey({ QUEUE_PREFIX: prefix }, 'u6', 'answer.png'));
    assert.ok(png && png.equals(single.png), 'the PNG in the artefact store');
    // The gen-worker served the session (serve_side SIDE_IMAGE), all 16 + 4 steps of it.
    const served = await gen.waitForLog('session ended');
    assert.equal(served.sessionId, 'u6/1');
    assert.equal(served.outcome, 'closed');
    assert.equal(served.steps, 20);
  });

  it("respond with a guidance interval: the und-worker sends the request's interval to the gen-worker's image side", async () => {
    const request = { prompt: 'a blue circle', seed: 22, steps: 16, correctionSweeps: 0 };
    // ImageSampling.cfg_interval: the served image side guides only the second half of the steps, as one process does.
    const result = await stage({ jobId: 'u7', task: 'respond', ...request, cfgInterval: [0.5, 1], output: 'late.png' });
    assert.equal(result.modality, 'image');
    assert.match(result.peer ?? '', /^127\.0\.0\.1:\d+$/);
    const single = await textToImage(pkg, local, { ...request, cfgInterval: [0.5, 1] }, { sessionId: 'respond-interval-local' });
    assert.deepEqual(result.image?.tokens, single.tokens, 'the image of a single-process run with the interval');
    // The package's own interval draws another image: had the interval not travelled, the tokens would differ.
    const own = await textToImage(pkg, local, request, { sessionId: 'respond-own-interval-local' });
    assert.notDeepEqual(own.tokens, single.tokens);
  });

  it('generate with a plan and with feedback on an earlier attempt, and edit, equal single-process runs', async () => {
    const layout = (await engine.plan('a blue circle')).layout;
    const planned: GenerateJobData = { jobId: 'j2', prompt: 'a blue circle', seed: 5, plan: layout, output: 'attempt-1.png' };
    const r1 = await run<GenerateResult>(await generation.add(JobName.Generate, planned, OPTS), events.generation);
    assert.deepEqual(
      r1.tokens,
      (await textToImage(pkg, local, { prompt: 'a blue circle', seed: 5, plan: layout }, { sessionId: 'l1' })).tokens,
    );
    const feedback: GenerateJobData = {
      jobId: 'j2',
      prompt: 'a blue circle',
      seed: 6,
      output: 'attempt-2.png',
      feedback: { verdict: 'the circle is missing', image: { jobId: 'j1', name: 'a.png' } },
    };
    const r2 = await run<GenerateResult>(await generation.add(JobName.Generate, feedback, OPTS), events.generation);
    const want2 = await textToImage(
      pkg,
      local,
      { ...feedback, feedback: { verdict: 'the circle is missing', pixels: source } },
      { sessionId: 'l2' },
    );
    assert.deepEqual(r2.tokens, want2.tokens);
    assert.equal(r2.artifact.name, 'attempt-2.png');
    const edit: EditJobData = {
      jobId: 'j3',
      instruction: 'change the blue circle to red',
      image: { jobId: 'j1', name: 'a.png' },
      seed: 8,
      imageGuidance: 1,
    };
    const r3 = await run<GenerateResult>(await generation.add(JobName.Edit, edit, OPTS), events.generation);
    assert.deepEqual(r3.tokens, (await editImage(pkg, local, { ...edit, pixels: source }, { sessionId: 'l3' })).tokens);
  });

  it('bad stage input fails only that job, once, naming the problem; the workers keep serving', async () => {
    const key = (name: string) => artifactKey({ QUEUE_PREFIX: prefix }, 'bad', name);
    await client.set(key('junk.png'), Buffer.from('not an image at all'));
    await client.set(key('cut.png'), encodePng(source, 64, 64).subarray(0, 200));
    await client.set(key('small.png'), encodePng(new Uint8Array(32 * 32 * 3), 32, 32));
    const image = (name: string) => ({ jobId: 'bad', name });
    const cases: [Queue, string, object, QueueEvents, RegExp][] = [
      [
        understanding,
        'understand',
        { jobId: 'b1', task: 'understand', image: image('gone.png'), question: 'what?' },
        events.understanding,
        /bad\/gone\.png does not exist/,
      ],
      [
        understanding,
        'understand',
        { jobId: 'b2', task: 'understand', image: image('junk.png'), question: 'what?' },
        events.understanding,
        /is not a PNG/,
      ],
      [
        understanding,
        'reflect',
        { jobId: 'b3', task: 'reflect', image: image('cut.png'), prompt: 'a circle' },
        events.understanding,
        /corrupt PNG/,
      ],
      [
        understanding,
        'ground',
        { jobId: 'b4', task: 'ground', image: image('small.png'), refs: ['the circle'] },
        events.understanding,
        /is 32x32, the model takes 64x64/,
      ],
      [
        understanding,
        'ground',
        { jobId: 'b5', task: 'ground', image: { jobId: 'j1', name: 'a.png' }, refs: [] },
        events.understanding,
        /refs must name at least one/,
      ],
      [understanding, 'paint', { jobId: 'b6', task: 'paint' }, events.understanding, /unknown job paint/],
      [
        understanding,
        'plan',
        { jobId: 'b7', task: 'plan', prompt: 'red '.repeat(200) },
        events.understanding,
        /longer than the model's context/,
      ],
      [
        generation,
        JobName.Edit,
        { jobId: 'b8', instruction: 'remove it', image: image('small.png'), seed: 1 },
        events.generation,
        /image is 32x32/,
      ],
      [
        generation,
        JobName.Generate,
        { jobId: 'b9', prompt: 'a circle', seed: 1, feedback: { verdict: 'no', image: image('junk.png') } },
        events.generation,
        /feedback\.image is not a PNG/,
      ],
      [generation, 'paint', { jobId: 'b10' }, events.generation, /unknown job paint/],
      [
        understanding,
        'respond',
        { jobId: 'b11', task: 'respond', prompt: 'a blue circle', steps: 0 },
        events.understanding,
        /steps must be a positive integer, got 0/,
      ],
      [
        understanding,
        'respond',
        { jobId: 'b12', task: 'respond', prompt: 'a blue circle', cfgInterval: [0, 1.5] },
        events.understanding,
        /cfg_interval must be \[lo, hi\] with 0 <= lo <= hi <= 1, got \[0, 1\.5\]/,
      ],
      [
        generation,
        JobName.Generate,
        { jobId: 'b13', prompt: 'a circle', seed: 1, cfgInterval: [0.6, 0.2] },
        events.generation,
        /cfg_interval must be \[lo, hi\] with 0 <= lo <= hi <= 1, got \[0\.6, 0\.2\]/,
      ],
    ];
    for (const [queue, name, data, queueEvents, reason] of cases) {
      const failed = await failure(queue, name, data, queueEvents);
      assert.match(failed.failedReason, /^INVALID_INPUT: /, `${name}: ${failed.failedReason}`);
      assert.match(failed.failedReason, reason);
    }
    const ok = await stage({
      jobId: 'u9',
      task: 'understand',
      image: { jobId: 'j1', name: 'a.png' },
      question: 'how many circles are there?',
    });
    assert.equal(typeof ok.text, 'string');
    const img = await run<GenerateResult>(
      await generation.add(JobName.Generate, { jobId: 'j9', prompt: 'a red square', seed: 2 }, OPTS),
      events.generation,
    );
    assert.equal(img.tokens.length, 64);
  });
});
