import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { randomUUID } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { setTimeout as sleep } from 'node:timers/promises';
import { Queue, QueueEvents, Worker, type Job } from 'bullmq';
import { Redis } from 'ioredis';
import { hasRedisServer, REPO_ROOT, startLocalRedis } from '@lavida/config';
import {
  JobName,
  QueueName,
  type GenerateJobData,
  type GenerateResult,
  type PipelineJobData,
  type UnderstandingJobData,
  type UnderstandingResult,
} from '@lavida/contracts';
import { HOST, percentile } from './support.js';

/** Latency of one kind of hop, ms (job timestamps: millisecond resolution). */
export interface HopStats {
  count: number;
  p50Ms: number;
  p90Ms: number;
  p99Ms: number;
  maxMs: number;
  meanMs: number;
}

export interface OrchestrationBench {
  /** What ran: stages per pipeline, how many pipelines, how many in flight. */
  pipeline: string;
  stagesPerPipeline: number;
  pipelines: number;
  concurrency: number;
  warmup: number;
  seconds: number;
  pipelinesPerSecond: number;
  stagesPerSecond: number;
  /**
   * Stage finished (its finishedOn) → the next stage job created (its timestamp): the orchestrator's
   * work per hop (completion → parent back in its queue → picked up → next step computed, webhooks
   * checked, child queued). Between stages only (plan → generate, generate → reflect).
   */
  hopCreated: HopStats;
  /** Stage finished → the next stage started by a (no-op) worker: the hop as a stage sees it. */
  hopStarted: HopStats;
  /** Pipeline created → its first stage created (pick-up of a new pipeline). */
  firstStage: HopStats;
  /** Last stage finished → pipeline finished (result computed and stored). */
  lastStage: HopStats;
  /** Pipeline created → finished, the whole 3-stage pipeline with no-op stages. */
  endToEnd: HopStats;
  /**
   * CPU time per pipeline during the measured run: the orchestrator process (Linux /proc; NaN
   * elsewhere) and this process (the no-op workers and the submitting queue).
   */
  cpuMsPerPipeline: { orchestrator: number; benchWorkers: number };
  /** The same pipelines one at a time: the hop's own latency, without queueing behind others. */
  unloaded: { pipelines: number; hopCreated: HopStats; hopStarted: HopStats; endToEnd: HopStats };
  targets: { hopP50Ms: number; pipelinesPerSecond: number };
  redis: 'REDIS_URL' | 'redis-server';
}

const MODEL = { name: 'noop', version: '0' };

function stats(samples: number[]): HopStats {
  const mean = samples.reduce((a, b) => a + b, 0) / samples.length;
  return {
    count: samples.length,
    p50Ms: percentile(samples, 50),
    p90Ms: percentile(samples, 90),
    p99Ms: percentile(samples, 99),
    maxMs: Math.max(...samples),
    meanMs: Math.round(mean * 100) / 100,
  };
}

/** User + system CPU time of a process, ms (Linux /proc; NaN elsewhere). */
function cpuMs(pid: number | undefined): number {
  try {
    const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' ');
    // utime and stime: fields 14 and 15 of stat, in clock ticks (100 a second on Linux).
    return (Number(fields[11]) + Number(fields[12])) * 10;
  } catch {
    return Number.NaN;
  }
}

/** No-op stages: a minimal valid result at once (shapes of libs/contracts GenerateResult, UnderstandingResult). */
function generate(job: Job<GenerateJobData>): GenerateResult {
  return {
    tokens: [],
    artifact: { name: job.data.output ?? 'image.png', contentType: 'image/png', bytes: 0 },
    model: MODEL,
    timings: { totalMs: 0, steps: 0 },
    peer: 'noop',
  };
}

function understand(job: Job<UnderstandingJobData>): UnderstandingResult {
  const timings = { totalMs: 0, forwards: 0 };
  switch (job.data.task) {
    case 'plan':
      return { task: 'plan', layout: [], model: MODEL, timings };
    case 'reflect':
      // Accepted: the pipeline ends after one round (plan, generate, reflect).
      return { task: 'reflect', text: 'correct', model: MODEL, timings };
    default:
      return { task: job.data.task, text: '', model: MODEL, timings };
  }
}

/**
 * Orchestration overhead with no-op stages: the real orchestrator process (apps/orchestrator) on a
 * Redis (REDIS_URL, else a redis-server started here), and in this process BullMQ workers on the
 * generation and understanding queues that answer at once. Pipelines (text-to-image with plan and
 * reflect: plan → generate → reflect) go straight onto the pipeline queue, `concurrency` in flight.
 * Undefined when no Redis can be had.
 */
export async function measureOrchestration(options: {
  pipelines: number;
  concurrency: number;
  warmup: number;
  /** Pipelines run one at a time afterwards, for the hop without queueing. */
  unloaded: number;
}): Promise<OrchestrationBench | undefined> {
  const children: ChildProcess[] = [];
  let redisUrl = process.env.REDIS_URL;
  const source = redisUrl ? 'REDIS_URL' : 'redis-server';
  if (!redisUrl) {
    if (!hasRedisServer()) return undefined;
    const local = await startLocalRedis(HOST);
    children.push(local.child);
    redisUrl = local.url;
  }
  const prefix = `bench-orch-${process.pid}`;
  const connection = new Redis(redisUrl, { maxRetriesPerRequest: null });
  const queues = {
    pipeline: new Queue<PipelineJobData>(QueueName.Pipeline, { connection, prefix }),
    generation: new Queue(QueueName.Generation, { connection, prefix }),
    understanding: new Queue(QueueName.Understanding, { connection, prefix }),
  };
  // Connection options, not instances: BullMQ owns (and closes) these connections.
  const { hostname, port } = new URL(redisUrl);
  const connectionOptions = { host: hostname, port: Number(port || 6379), maxRetriesPerRequest: null };
  const events = new QueueEvents(QueueName.Pipeline, { connection: connectionOptions, prefix });
  const workerOptions = (concurrency: number) => ({ connection: connectionOptions, prefix, concurrency });
  const workers = [
    new Worker<GenerateJobData, GenerateResult>(QueueName.Generation, (job) => Promise.resolve(generate(job)), workerOptions(64)),
    new Worker<UnderstandingJobData, UnderstandingResult>(
      QueueName.Understanding,
      (job) => Promise.resolve(understand(job)),
      workerOptions(64),
    ),
  ];
  const finished = new Map<string, { resolve: () => void; reject: (error: Error) => void }>();
  events.on('completed', ({ jobId }) => finished.get(jobId)?.resolve());
  events.on('failed', ({ jobId, failedReason }) => finished.get(jobId)?.reject(new Error(`pipeline ${jobId} failed: ${failedReason}`)));

  let orchestrator: ChildProcess | undefined;
  try {
    await Promise.all([events.waitUntilReady(), ...workers.map((w) => w.waitUntilReady())]);
    orchestrator = spawn(process.execPath, [join(REPO_ROOT, 'apps/orchestrator/dist/main.js')], {
      env: { ...process.env, REDIS_URL: redisUrl, QUEUE_PREFIX: prefix, LOG_LEVEL: 'log' },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const lines = createInterface({ input: orchestrator.stdout! });
    orchestrator.stderr!.resume();
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error('the orchestrator did not log "consuming" within 60 s')), 60_000);
      lines.on('line', (line) => {
        if (line.includes('"msg":"consuming"') && line.includes(`"queue":"${QueueName.Pipeline}"`)) {
          clearTimeout(timer);
          resolve();
        }
      });
      orchestrator!.once('exit', (code) => reject(new Error(`the orchestrator exited with ${code}`)));
    });

    /** Runs `count` pipelines, `concurrency` at a time; answers their ids and the wall time. */
    const run = async (count: number, concurrency = options.concurrency): Promise<{ ids: string[]; ms: number }> => {
      const ids: string[] = [];
      let next = 0;
      const one = async (): Promise<void> => {
        while (next < count) {
          next += 1;
          const id = randomUUID();
          ids.push(id);
          const done = new Promise<void>((resolve, reject) => finished.set(id, { resolve, reject }));
          const data: PipelineJobData = {
            id,
            task: 'text-to-image',
            input: { task: 'text-to-image', prompt: 'a red circle left of a blue square', seed: 1, plan: true, reflect: true },
            createdAt: new Date().toISOString(),
          };
          await queues.pipeline.add(JobName.Pipeline, data, { jobId: id });
          await done;
          finished.delete(id);
        }
      };
      const start = performance.now();
      await Promise.all(Array.from({ length: Math.min(concurrency, count) }, one));
      return { ids, ms: performance.now() - start };
    };

    /** Hop latencies of finished pipelines, from their jobs' timestamps. */
    const hops = async (ids: string[]) => {
      const hopCreated: number[] = [];
      const hopStarted: number[] = [];
      const firstStage: number[] = [];
      const lastStage: number[] = [];
      const endToEnd: number[] = [];
      for (const id of ids) {
        const pipeline = await queues.pipeline.getJob(id);
        const stages = await Promise.all([
          queues.understanding.getJob(`${id}-plan`),
          queues.generation.getJob(`${id}-generate-1`),
          queues.understanding.getJob(`${id}-reflect-1`),
        ]);
        if (!pipeline?.finishedOn || stages.some((s) => !s?.finishedOn || !s.processedOn))
          throw new Error(`pipeline ${id}: a job is missing`);
        const [plan, gen, reflect] = stages as Job[];
        firstStage.push(plan.timestamp - pipeline.timestamp);
        for (const [from, to] of [
          [plan, gen],
          [gen, reflect],
        ]) {
          hopCreated.push(to.timestamp - from.finishedOn!);
          hopStarted.push(to.processedOn! - from.finishedOn!);
        }
        lastStage.push(pipeline.finishedOn - reflect.finishedOn!);
        endToEnd.push(pipeline.finishedOn - pipeline.timestamp);
      }
      return {
        hopCreated: stats(hopCreated),
        hopStarted: stats(hopStarted),
        firstStage: stats(firstStage),
        lastStage: stats(lastStage),
        endToEnd: stats(endToEnd),
      };
    };

    await run(options.warmup);
    const cpuBefore = { orchestrator: cpuMs(orchestrator.pid), bench: process.cpuUsage() };
    const { ids, ms } = await run(options.pipelines);
    const benchCpu = process.cpuUsage(cpuBefore.bench);
    const orchestratorCpuMs = cpuMs(orchestrator.pid) - cpuBefore.orchestrator;
    const loaded = await hops(ids);
    // One pipeline at a time: the hop without queueing behind other pipelines.
    const single = await run(options.unloaded, 1);
    const unloaded = await hops(single.ids);
    const seconds = ms / 1000;
    return {
      pipeline: 'text-to-image, plan + reflect (plan → generate → reflect), no-op stages',
      stagesPerPipeline: 3,
      pipelines: options.pipelines,
      concurrency: options.concurrency,
      warmup: options.warmup,
      seconds: Math.round(seconds * 100) / 100,
      pipelinesPerSecond: Math.round((options.pipelines / seconds) * 10) / 10,
      stagesPerSecond: Math.round(((options.pipelines * 3) / seconds) * 10) / 10,
      ...loaded,
      cpuMsPerPipeline: {
        orchestrator: Math.round((orchestratorCpuMs / options.pipelines) * 100) / 100,
        benchWorkers: Math.round(((benchCpu.user + benchCpu.system) / 1000 / options.pipelines) * 100) / 100,
      },
      unloaded: {
        pipelines: options.unloaded,
        hopCreated: unloaded.hopCreated,
        hopStarted: unloaded.hopStarted,
        endToEnd: unloaded.endToEnd,
      },
      targets: { hopP50Ms: 15, pipelinesPerSecond: 200 },
      redis: source,
    };
  } finally {
    if (orchestrator && orchestrator.exitCode === null && orchestrator.signalCode === null) {
      orchestrator.kill('SIGTERM');
      await Promise.race([once(orchestrator, 'exit'), sleep(3000)]);
      if (orchestrator.exitCode === null && orchestrator.signalCode === null) orchestrator.kill('SIGKILL');
    }
    await Promise.all(workers.map((w) => w.close()));
    await events.close();
    await Promise.all(Object.values(queues).map((q) => q.close()));
    if (source === 'REDIS_URL') {
      // Leave a shared Redis as we found it.
      const keys = await connection.keys(`${prefix}:*`);
      for (let i = 0; i < keys.length; i += 500) await connection.del(...keys.slice(i, i + 500));
    }
    await connection.quit().catch(() => undefined);
    for (const child of children) if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  }
}
