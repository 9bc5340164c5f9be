import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { createHash, randomUUID } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { cpus } from 'node:os';
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
  /**
   * Last stage finished → the pipeline job taken by the orchestrator's worker (its processedOn): the
   * part of lastStage spent in the pipeline queue, before the orchestrator's own work.
   */
  lastPickUp: HopStats;
  /** Pipeline created → finished, the whole 3-stage pipeline with no-op stages. */
  endToEnd: HopStats;
  /**
   * CPU time per pipeline during the measured run: the orchestrator process (Linux /proc; NaN
   * elsewhere), this process (the no-op workers and the submitting queue) and Redis (INFO cpu: the
   * whole server, other clients of a shared REDIS_URL included).
   */
  cpuMsPerPipeline: { orchestrator: number; benchWorkers: number; redis: number };
  /**
   * Time the main thread of each process spent runnable but waiting for a CPU, per pipeline, during
   * the measured run (Linux /proc/<pid>/schedstat; NaN elsewhere, and for a REDIS_URL's server): how
   * much of each hop is the machine's CPUs being busy, with this bench or with anything else.
   */
  runQueueMsPerPipeline: { orchestrator: number; benchWorkers: number; redis: number };
  /**
   * What that CPU time allows at most, pipelines/s: every core of this machine busy with the three
   * processes and nothing else (cores × 1000 / their CPU ms per pipeline), and the orchestrator's one
   * thread busy all the time (1000 / its CPU ms per pipeline).
   */
  cpuCeilingPipelinesPerSecond: { cores: number; allCores: number; orchestratorThread: number };
  /**
   * Redis requests (round trips; a MULTI…EXEC is one) per pipeline, counted with MONITOR in runs
   * of their own after the measured ones, at `concurrency` in flight and one at a time: those of the
   * orchestrator process (per pipeline, and per orchestrator step: a pipeline has stagesPerPipeline
   * + 1 of them), those of this process's no-op stage workers and submissions (BullMQ commands and
   * the QueueEvents reads that learn a pipeline ended), and the commands Redis ran inside scripts.
   */
  redisRequests: { loaded: RequestCounts; unloaded: RequestCounts };
  /**
   * Open loop: pipelines submitted at a fixed offered rate (Poisson arrivals: exponential gaps from a
   * seeded generator), whatever is in flight, for `seconds`: the hop and the pipeline's latency at
   * that load, where the closed loop above runs the machine flat out.
   */
  openLoop: OpenLoopStats;
  /** The same pipelines one at a time: the hop's own latency, without queueing behind others. */
  unloaded: { pipelines: number; pipelinesPerSecond: number; hopCreated: HopStats; hopStarted: HopStats; endToEnd: HopStats };
  targets: { hopP50Ms: number; pipelinesPerSecond: number };
  redis: 'REDIS_URL' | 'redis-server';
}

/** A run at a fixed arrival rate (see OrchestrationBench.openLoop). */
export interface OpenLoopStats {
  arrivals: 'poisson';
  /** Offered rate, pipelines/s, and what was submitted: the measured rate over the submission window. */
  offeredPerSecond: number;
  submittedPerSecond: number;
  pipelines: number;
  seconds: number;
  /** Pipelines finished per second, from the first submission to the last finish. */
  completedPerSecond: number;
  /** Largest number of pipelines submitted and not finished at once. */
  maxInFlight: number;
  /** CPU time per pipeline of the three processes during the run (as cpuMsPerPipeline). */
  cpuMsPerPipeline: { orchestrator: number; benchWorkers: number; redis: number };
  hopCreated: HopStats;
  hopStarted: HopStats;
  firstStage: HopStats;
  lastStage: HopStats;
  endToEnd: HopStats;
}

/** Redis requests of one monitored run (see OrchestrationBench.redisRequests). */
export interface RequestCounts {
  pipelines: number;
  /** Requests of the orchestrator per pipeline, and per orchestrator step. */
  orchestratorPerPipeline: number;
  orchestratorPerStep: number;
  /** Requests of the orchestrator per pipeline by command (EVALSHA by BullMQ script name, MULTI for a transaction). */
  orchestratorByCommand: Record<string, number>;
  /** Requests of this process's no-op workers, submissions and QueueEvents per pipeline. */
  benchPerPipeline: number;
  /** Commands run inside Lua scripts per pipeline (all clients). */
  scriptCommandsPerPipeline: number;
}

const MODEL = { name: 'noop', version: '0' };
/** Stages of the benchmarked pipeline: plan → generate → reflect. */
const STAGES = 3;

/** A small seeded generator of uniform numbers in [0, 1) (mulberry32): the same arrivals every run. */
function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

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

/** Time the main thread of a process waited for a CPU, ms (Linux /proc/<pid>/schedstat; NaN elsewhere). */
function runQueueMs(pid: number | undefined): number {
  try {
    return Number(readFileSync(`/proc/${pid}/schedstat`, 'utf8').split(' ')[1]) / 1e6;
  } catch {
    return Number.NaN;
  }
}

/** CPU time of the Redis server, ms (INFO cpu: user + system, all its threads). */
async function redisCpuMs(redis: Redis): Promise<number> {
  const info = await redis.info('cpu');
  const field = (name: string) => Number(new RegExp(`^${name}:([\\d.]+)`, 'm').exec(info)?.[1]);
  return (field('used_cpu_user') + field('used_cpu_sys')) * 1000;
}

/** Script names by SHA1 of their source (EVALSHA shows only the SHA): BullMQ's and the orchestrator's step read. */
async function scriptNames(): Promise<Map<string, string>> {
  const require = createRequire(import.meta.url);
  const scripts = require('bullmq/dist/cjs/scripts/index.js') as Record<string, { name?: string; content?: string }>;
  const names = new Map<string, string>();
  const sha1 = (source: string) => createHash('sha1').update(source).digest('hex');
  for (const script of Object.values(scripts)) {
    if (script?.name && script.content) names.set(sha1(script.content), script.name);
  }
  // The orchestrator's own script, by path (the bench does not build against apps/): absent in older builds.
  const orchestrator = (await import(join(REPO_ROOT, 'apps/orchestrator/dist/services/step-read.js')).catch(() => undefined)) as
    { STEP_READ_LUA?: string } | undefined;
  if (orchestrator?.STEP_READ_LUA) names.set(sha1(orchestrator.STEP_READ_LUA), 'stepRead');
  return names;
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
  /** Pipelines of the runs that count Redis requests (MONITOR on), as loaded; one at a time: at most `unloaded`. */
  requestCount: number;
  /** Open-loop run: offered pipelines/s (Poisson arrivals) for this many seconds. */
  openLoop: { rate: number; seconds: number };
}): Promise<OrchestrationBench | undefined> {
  const children: ChildProcess[] = [];
  let redisUrl = process.env.REDIS_URL;
  const source = redisUrl ? 'REDIS_URL' : 'redis-server';
  let redisPid: number | undefined;
  if (!redisUrl) {
    if (!hasRedisServer()) return undefined;
    const local = await startLocalRedis(HOST);
    children.push(local.child);
    redisUrl = local.url;
    redisPid = local.child.pid;
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
    await Promise.all([
      events.waitUntilReady(),
      ...workers.map((w) => w.waitUntilReady()),
      ...Object.values(queues).map((q) => q.waitUntilReady()),
    ]);
    // Every connection of this process is open now: any other (but MONITOR's) is the orchestrator's
    // (or, on a shared REDIS_URL, another client's).
    const benchClients = new Set([...((await connection.client('LIST')) as string).matchAll(/\baddr=(\S+)/g)].map((m) => m[1]));
    // BENCH_ORCHESTRATOR_NODE_ARGS (e.g. `--cpu-prof --cpu-prof-dir=/tmp/prof`): node flags for the orchestrator, to profile it;
    // BENCH_ORCHESTRATOR_MAIN: another build's main.js to measure instead (an A/B against an earlier commit).
    const nodeArgs = (process.env.BENCH_ORCHESTRATOR_NODE_ARGS ?? '').split(' ').filter(Boolean);
    orchestrator = spawn(
      process.execPath,
      [...nodeArgs, process.env.BENCH_ORCHESTRATOR_MAIN ?? join(REPO_ROOT, 'apps/orchestrator/dist/main.js')],
      {
        env: { ...process.env, REDIS_URL: redisUrl, QUEUE_PREFIX: prefix, LOG_LEVEL: 'log' },
        stdio: ['ignore', 'pipe', 'pipe'],
      },
    );
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

    /** Submits one pipeline; answers its id and a promise of its end. */
    const submit = (): { id: string; done: Promise<void> } => {
      const id = randomUUID();
      const done = new Promise<void>((resolve, reject) => finished.set(id, { resolve, reject })).finally(() => finished.delete(id));
      const data: PipelineJobData = {
        id,
        task: 'text-to-image',
        input: { task: 'text-to-image', prompt: 'a red circle left of a blue square', seed: 1, plan: true, reflect: true },
        createdAt: new Date().toISOString(),
      };
      done.catch(() => undefined); // a failure is reported by whoever awaits it, not as unhandled meanwhile
      const added = queues.pipeline.add(JobName.Pipeline, data, { jobId: id });
      return { id, done: added.then(() => done) };
    };

    /** Runs `count` pipelines, `concurrency` at a time; answers their ids and the wall time. */
    const run = async (count: number, concurrency = options.concurrency): Promise<{ ids: string[]; ms: number }> => {
      const ids: string[] = [];
      let next = 0;
      const one = async (): Promise<void> => {
        while (next < count) {
          next += 1;
          const { id, done } = submit();
          ids.push(id);
          await done;
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
      const lastPickUp: number[] = [];
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
        if (pipeline.processedOn) lastPickUp.push(pipeline.processedOn - reflect.finishedOn!);
        endToEnd.push(pipeline.finishedOn - pipeline.timestamp);
      }
      return {
        hopCreated: stats(hopCreated),
        hopStarted: stats(hopStarted),
        firstStage: stats(firstStage),
        lastStage: stats(lastStage),
        lastPickUp: stats(lastPickUp),
        endToEnd: stats(endToEnd),
      };
    };

    /**
     * Open loop: pipelines arrive at `rate` a second on average, Poisson (exponential gaps, seeded:
     * every run offers the same arrival times), for `seconds`, none waiting for another to finish.
     */
    const openLoop = async (rate: number, seconds: number) => {
      const random = mulberry32(20240601);
      const arrivals: number[] = [];
      for (let t = 0; ;) {
        t += (-Math.log(1 - random()) / rate) * 1000;
        if (t >= seconds * 1000) break;
        arrivals.push(t);
      }
      const ids: string[] = [];
      const ends: Promise<void>[] = [];
      let inFlight = 0;
      let maxInFlight = 0;
      const start = performance.now();
      for (const at of arrivals) {
        const wait = start + at - performance.now();
        // Timers fire late by a ms or so: arrivals that are due go out together, at their due time or just after.
        if (wait >= 1) await sleep(wait);
        const { id, done } = submit();
        ids.push(id);
        inFlight += 1;
        maxInFlight = Math.max(maxInFlight, inFlight);
        ends.push(done.finally(() => (inFlight -= 1)));
      }
      const submittedMs = performance.now() - start;
      await Promise.all(ends);
      const ms = performance.now() - start;
      return { ids, submittedMs, ms, maxInFlight };
    };

    const scripts = await scriptNames();
    const steps = STAGES + 1;
    /** Redis requests of `count` pipelines, `concurrency` at a time, counted with MONITOR. */
    const countRequests = async (count: number, concurrency: number): Promise<RequestCounts> => {
      const monitor = await connection.monitor();
      const byCommand = new Map<string, number>();
      const inMulti = new Set<string>();
      let orchestratorRequests = 0;
      let benchRequests = 0;
      let scriptCommands = 0;
      monitor.on('monitor', (_time: string, args: string[], client: string) => {
        if (client === 'lua') {
          scriptCommands += 1;
          return;
        }
        const command = String(args[0]).toLowerCase();
        // A transaction is one request: MULTI, its commands and EXEC go together.
        if (inMulti.has(client)) {
          if (command === 'exec' || command === 'discard') inMulti.delete(client);
          return;
        }
        if (command === 'multi') inMulti.add(client);
        if (benchClients.has(client)) {
          benchRequests += 1;
          return;
        }
        orchestratorRequests += 1;
        const name = command === 'evalsha' ? (scripts.get(String(args[1])) ?? command) : command;
        byCommand.set(name, (byCommand.get(name) ?? 0) + 1);
      });
      await run(count, concurrency);
      // The orchestrator's last fetches after the last pipeline ended.
      await sleep(200);
      monitor.disconnect();
      const per = (n: number) => Math.round((n / count) * 100) / 100;
      return {
        pipelines: count,
        orchestratorPerPipeline: per(orchestratorRequests),
        orchestratorPerStep: per(orchestratorRequests / steps),
        orchestratorByCommand: Object.fromEntries([...byCommand].sort((a, b) => b[1] - a[1]).map(([name, n]) => [name, per(n)])),
        benchPerPipeline: per(benchRequests),
        scriptCommandsPerPipeline: per(scriptCommands),
      };
    };

    await run(options.warmup);
    const before = {
      cpu: { orchestrator: cpuMs(orchestrator.pid), bench: process.cpuUsage(), redis: await redisCpuMs(connection) },
      runQueue: { orchestrator: runQueueMs(orchestrator.pid), bench: runQueueMs(process.pid), redis: runQueueMs(redisPid) },
    };
    const { ids, ms } = await run(options.pipelines);
    const benchCpu = process.cpuUsage(before.cpu.bench);
    const benchCpuMs = (benchCpu.user + benchCpu.system) / 1000;
    const redisCpu = (await redisCpuMs(connection)) - before.cpu.redis;
    const orchestratorCpuMs = cpuMs(orchestrator.pid) - before.cpu.orchestrator;
    const runQueue = {
      orchestrator: runQueueMs(orchestrator.pid) - before.runQueue.orchestrator,
      benchWorkers: runQueueMs(process.pid) - before.runQueue.bench,
      redis: runQueueMs(redisPid) - before.runQueue.redis,
    };
    const loaded = await hops(ids);
    // Open loop at the target rate.
    const openBefore = { orchestrator: cpuMs(orchestrator.pid), bench: process.cpuUsage(), redis: await redisCpuMs(connection) };
    const open = await openLoop(options.openLoop.rate, options.openLoop.seconds);
    const openBench = process.cpuUsage(openBefore.bench);
    const openCpu = {
      orchestrator: cpuMs(orchestrator.pid) - openBefore.orchestrator,
      benchWorkers: (openBench.user + openBench.system) / 1000,
      redis: (await redisCpuMs(connection)) - openBefore.redis,
    };
    const openHops = await hops(open.ids);
    // One pipeline at a time: the hop without queueing behind other pipelines.
    const single = await run(options.unloaded, 1);
    const unloaded = await hops(single.ids);
    // Requests counted apart (MONITOR slows Redis down): as loaded, then one at a time.
    const redisRequests = {
      loaded: await countRequests(options.requestCount, options.concurrency),
      unloaded: await countRequests(Math.min(options.requestCount, options.unloaded), 1),
    };
    const seconds = ms / 1000;
    const perPipeline = (value: number) => Math.round((value / options.pipelines) * 100) / 100;
    return {
      pipeline: 'text-to-image, plan + reflect (plan → generate → reflect), no-op stages',
      stagesPerPipeline: STAGES,
      pipelines: options.pipelines,
      concurrency: options.concurrency,
      warmup: options.warmup,
      seconds: Math.round(seconds * 100) / 100,
      pipelinesPerSecond: Math.round((options.pipelines / seconds) * 10) / 10,
      stagesPerSecond: Math.round(((options.pipelines * STAGES) / seconds) * 10) / 10,
      ...loaded,
      cpuMsPerPipeline: {
        orchestrator: perPipeline(orchestratorCpuMs),
        benchWorkers: perPipeline(benchCpuMs),
        redis: perPipeline(redisCpu),
      },
      cpuCeilingPipelinesPerSecond: {
        cores: cpus().length,
        allCores: Math.round((cpus().length * 1000 * options.pipelines) / (orchestratorCpuMs + benchCpuMs + redisCpu)),
        orchestratorThread: Math.round((1000 * options.pipelines) / orchestratorCpuMs),
      },
      runQueueMsPerPipeline: {
        orchestrator: perPipeline(runQueue.orchestrator),
        benchWorkers: perPipeline(runQueue.benchWorkers),
        redis: perPipeline(runQueue.redis),
      },
      redisRequests,
      openLoop: {
        arrivals: 'poisson',
        offeredPerSecond: options.openLoop.rate,
        submittedPerSecond: Math.round((open.ids.length / (open.submittedMs / 1000)) * 10) / 10,
        pipelines: open.ids.length,
        seconds: Math.round(open.ms / 10) / 100,
        completedPerSecond: Math.round((open.ids.length / (open.ms / 1000)) * 10) / 10,
        maxInFlight: open.maxInFlight,
        cpuMsPerPipeline: {
          orchestrator: Math.round((openCpu.orchestrator / open.ids.length) * 100) / 100,
          benchWorkers: Math.round((openCpu.benchWorkers / open.ids.length) * 100) / 100,
          redis: Math.round((openCpu.redis / open.ids.length) * 100) / 100,
        },
        hopCreated: openHops.hopCreated,
        hopStarted: openHops.hopStarted,
        firstStage: openHops.firstStage,
        lastStage: openHops.lastStage,
        endToEnd: openHops.endToEnd,
      },
      unloaded: {
        pipelines: options.unloaded,
        pipelinesPerSecond: Math.round((options.unloaded / (single.ms / 1000)) * 10) / 10,
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
