/**
 * The real serving stack for the evaluation: a Redis (REDIS_URL, else a redis-server started here),
 * the und-worker and gen-worker processes on a fresh queue prefix, and a BullMQ client that submits
 * stage jobs and moves images through the artefact store. Every child process is killed on exit,
 * error or signal.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { setTimeout as sleep } from 'node:timers/promises';
import { Queue, QueueEvents } from 'bullmq';
import { Redis } from 'ioredis';
import { artifactKey, freePort as freePortOn, hasRedisServer, REPO_ROOT, startLocalRedis } from '@lavida/config';
import {
  JobName,
  QueueName,
  type EditJobData,
  type GenerateJobData,
  type GenerateResult,
  type ImageRef,
  type UnderstandingJobData,
  type UnderstandingResult,
} from '@lavida/contracts';

const HOST = '127.0.0.1';

/** Child processes of this run; killed (SIGKILL) by `killAll`, which also runs on process exit. */
const children = new Set<ChildProcess>();

export function killAll(): void {
  for (const child of children) {
    if (child.exitCode === null && child.signalCode === null) {
      try {
        child.kill('SIGKILL');
      } catch {
        // already gone
      }
    }
  }
  children.clear();
}
process.on('exit', killAll);

function track(child: ChildProcess): ChildProcess {
  children.add(child);
  child.once('exit', () => children.delete(child));
  return child;
}

/** A free port on the stack's host. */
export const freePort = (): Promise<number> => freePortOn(HOST);

export interface RedisHandle {
  url: string;
  source: 'REDIS_URL' | 'redis-server';
  stop(): Promise<void>;
}

/** REDIS_URL when set, else a redis-server on a free port without persistence. */
export async function startRedis(): Promise<RedisHandle> {
  if (process.env.REDIS_URL) return { url: process.env.REDIS_URL, source: 'REDIS_URL', stop: async () => undefined };
  if (!hasRedisServer()) {
    throw new Error('the evaluation needs Redis: set REDIS_URL or install redis-server (apt-get install -y redis-server)');
  }
  const { url, child } = await startLocalRedis(HOST);
  track(child);
  return {
    url,
    source: 'redis-server',
    stop: async () => {
      if (child.exitCode !== null || child.signalCode !== null) return;
      const exited = new Promise((resolve) => child.once('exit', resolve));
      child.kill('SIGTERM');
      await Promise.race([exited, sleep(5000)]);
    },
  };
}

export type WorkerName = 'und-worker' | 'gen-worker';

/** A JSON log line (libs/config/src/logger.ts: one object a line) whose `msg` is `consuming`. */
function isConsuming(line: string): boolean {
  if (!line.includes('"consuming"')) return false;
  try {
    const parsed = JSON.parse(line) as { msg?: unknown };
    return parsed.msg === 'consuming';
  } catch {
    return false;
  }
}

/**
 * A worker process with its last log lines kept for error messages. One reader per output stream,
 * never paused: a worker writes its logs to a pipe synchronously, so an undrained pipe would block it.
 */
export class WorkerProcess {
  readonly tail: string[] = [];
  exit?: string;
  private consumed = false;
  private onConsuming?: () => void;

  constructor(
    readonly name: WorkerName,
    readonly child: ChildProcess,
    private readonly verbose: boolean,
  ) {
    for (const stream of [child.stdout!, child.stderr!]) {
      createInterface({ input: stream }).on('line', (line) => {
        this.tail.push(line);
        if (this.tail.length > 40) this.tail.shift();
        if (this.verbose) process.stderr.write(`[${name}] ${line}\n`);
        if (!this.consumed && isConsuming(line)) {
          this.consumed = true;
          this.onConsuming?.();
        }
      });
    }
    child.once('exit', (code, signal) => (this.exit = `exit code ${code ?? '-'}, signal ${signal ?? '-'}`));
  }

  get running(): boolean {
    return this.exit === undefined;
  }

  /** Resolves once the worker has logged `consuming` (its BullMQ worker is up). */
  consuming(timeoutMs: number): Promise<void> {
    if (this.consumed) return Promise.resolve();
    return new Promise((resolve, reject) => {
      const done = (error?: Error) => {
        clearTimeout(timer);
        this.child.off('exit', onExit);
        this.onConsuming = undefined;
        if (error) reject(error);
        else resolve();
      };
      const timer = setTimeout(
        () => done(new Error(`${this.name} did not log "consuming" within ${timeoutMs / 1000} s:\n${this.tail.join('\n')}`)),
        timeoutMs,
      );
      const onExit = () => done(new Error(`${this.name} exited (${this.exit ?? '?'}) before consuming:\n${this.tail.join('\n')}`));
      this.child.once('exit', onExit);
      this.onConsuming = () => done();
    });
  }

  async stop(): Promise<void> {
    if (!this.running) return;
    const exited = new Promise((resolve) => this.child.once('exit', resolve));
    this.child.kill('SIGTERM');
    await Promise.race([exited, sleep(10_000)]);
    if (this.running) this.child.kill('SIGKILL');
  }
}

export interface StackOptions {
  modelDir: string;
  redisUrl: string;
  /** Mirror the workers' log lines to stderr. */
  verbose: boolean;
}

export interface Stack {
  prefix: string;
  undPort: number;
  workers: WorkerProcess[];
  stop(): Promise<void>;
}

/** Starts the und-worker (gRPC peer on a free port) and the gen-worker (driving it), and waits until both consume. */
export async function startWorkers(options: StackOptions): Promise<Stack> {
  const prefix = `eval-${process.pid}-${randomBytes(3).toString('hex')}`;
  const undPort = await freePort();
  const env: Record<string, string> = {
    ...(process.env as Record<string, string>),
    REDIS_URL: options.redisUrl,
    QUEUE_PREFIX: prefix,
    MODEL_DIR: options.modelDir,
    GRPC_HOST: HOST,
    UND_GRPC_PORT: String(undPort),
    GEN_GRPC_PORT: '0',
    UND_PEERS: `${HOST}:${undPort}`,
    LOG_LEVEL: 'log',
  };
  const start = (name: WorkerName) =>
    new WorkerProcess(
      name,
      track(
        spawn(process.execPath, [join(REPO_ROOT, 'apps', name, 'dist', 'main.js')], {
          cwd: REPO_ROOT,
          env,
          stdio: ['ignore', 'pipe', 'pipe'],
        }),
      ),
      options.verbose,
    );
  const und = start('und-worker');
  const gen = start('gen-worker');
  const workers = [und, gen];
  try {
    await Promise.all([und.consuming(180_000), gen.consuming(180_000)]);
  } catch (error) {
    await Promise.all(workers.map((w) => w.stop()));
    throw error;
  }
  return { prefix, undPort, workers, stop: async () => void (await Promise.all(workers.map((w) => w.stop()))) };
}

/** A counting semaphore: at most `size` holders, FIFO. */
export class Limiter {
  private active = 0;
  private readonly waiting: (() => void)[] = [];

  constructor(private readonly size: number) {}

  async run<T>(work: () => Promise<T>): Promise<T> {
    if (this.active >= this.size) await new Promise<void>((resolve) => this.waiting.push(resolve));
    else this.active += 1;
    try {
      return await work();
    } finally {
      const next = this.waiting.shift();
      if (next) next();
      else this.active -= 1;
    }
  }
}

/** Per-part job statistics: count, worker time (the stage's own totalMs) and the wall span. */
export interface PartStats {
  jobs: number;
  workerMs: number;
  firstSubmit: number;
  lastFinish: number;
}

/**
 * Submits stage jobs on the contracts' queues and job names and waits for them with QueueEvents;
 * images go in and out through the artefact store (`artifactKey`).
 */
export class StageClient {
  private readonly redis: Redis;
  private readonly events: Record<QueueName.Generation | QueueName.Understanding, QueueEvents>;
  private readonly queues: {
    generation: Queue<GenerateJobData | EditJobData, GenerateResult>;
    understanding: Queue<UnderstandingJobData, UnderstandingResult>;
  };
  private readonly limits: { generation: Limiter; understanding: Limiter };
  readonly parts = new Map<string, PartStats>();
  /** Time of the last finished job (the stall watchdog reads it). */
  lastProgress = Date.now();
  finished = 0;
  retried = 0;
  /** Why each retried job failed its earlier attempts (its stack traces' first lines), by job id. */
  readonly retryReasons: Record<string, string[]> = {};

  constructor(
    redisUrl: string,
    readonly prefix: string,
    inFlight: { generation: number; understanding: number },
    private readonly jobTimeoutMs: number,
  ) {
    this.redis = new Redis(redisUrl, { maxRetriesPerRequest: null });
    const { hostname, port, password, username } = new URL(redisUrl);
    const eventsConnection = {
      host: hostname,
      port: Number(port || 6379),
      ...(password ? { password: decodeURIComponent(password) } : {}),
      ...(username ? { username: decodeURIComponent(username) } : {}),
      maxRetriesPerRequest: null,
    };
    this.queues = {
      generation: new Queue(QueueName.Generation, { connection: this.redis, prefix }),
      understanding: new Queue(QueueName.Understanding, { connection: this.redis, prefix }),
    };
    this.events = {
      [QueueName.Generation]: new QueueEvents(QueueName.Generation, { connection: eventsConnection, prefix }),
      [QueueName.Understanding]: new QueueEvents(QueueName.Understanding, { connection: eventsConnection, prefix }),
    };
    for (const e of Object.values(this.events)) e.setMaxListeners(1000);
    this.limits = { generation: new Limiter(inFlight.generation), understanding: new Limiter(inFlight.understanding) };
  }

  async ready(): Promise<void> {
    await Promise.all(Object.values(this.events).map((e) => e.waitUntilReady()));
  }

  /** Stores a PNG as artefact `name` of `jobId` and returns its reference. */
  async putImage(jobId: string, name: string, png: Buffer): Promise<ImageRef> {
    await this.redis.set(artifactKey({ QUEUE_PREFIX: this.prefix }, jobId, name), png, 'EX', 86_400);
    return { jobId, name };
  }

  async getImage(ref: ImageRef): Promise<Buffer> {
    const bytes = await this.redis.getBuffer(artifactKey({ QUEUE_PREFIX: this.prefix }, ref.jobId, ref.name));
    if (!bytes) throw new Error(`artefact ${ref.jobId}/${ref.name} is missing`);
    return bytes;
  }

  private stats(part: string): PartStats {
    let s = this.parts.get(part);
    if (!s) {
      s = { jobs: 0, workerMs: 0, firstSubmit: Date.now(), lastFinish: 0 };
      this.parts.set(part, s);
    }
    return s;
  }

  private async submit<R extends { timings: { totalMs: number } }>(
    queue: 'generation' | 'understanding',
    name: JobName,
    data: GenerateJobData | EditJobData | UnderstandingJobData,
    part: string,
  ): Promise<R> {
    return this.limits[queue].run(async () => {
      const s = this.stats(part);
      const q = this.queues[queue] as Queue;
      const job = await q.add(name, data, {
        attempts: 3,
        backoff: { type: 'exponential', delay: 1000 },
        removeOnComplete: { age: 3600 },
        removeOnFail: { age: 86_400 },
      });
      const events = this.events[queue === 'generation' ? QueueName.Generation : QueueName.Understanding];
      let result: R;
      try {
        result = (await job.waitUntilFinished(events, this.jobTimeoutMs)) as R;
      } catch (error) {
        throw new Error(`${queue}/${name} job ${job.id} (${data.jobId}, ${part}) failed: ${(error as Error).message}`);
      }
      s.jobs += 1;
      s.workerMs += result.timings.totalMs;
      s.lastFinish = Date.now();
      this.lastProgress = Date.now();
      this.finished += 1;
      const done = await q.getJob(job.id!);
      if ((done?.attemptsMade ?? 1) > 1) {
        this.retried += 1;
        this.retryReasons[`${data.jobId} (${part})`] = (done?.stacktrace ?? []).map((trace) => trace.split('\n')[0]);
      }
      return result;
    });
  }

  generate(data: GenerateJobData, part: string): Promise<GenerateResult> {
    return this.submit('generation', JobName.Generate, data, part);
  }

  edit(data: EditJobData, part: string): Promise<GenerateResult> {
    return this.submit('generation', JobName.Edit, data, part);
  }

  understanding(data: UnderstandingJobData, part: string): Promise<UnderstandingResult> {
    const name = {
      understand: JobName.Understand,
      reflect: JobName.Reflect,
      plan: JobName.Plan,
      plan_edit: JobName.PlanEdit,
      ground: JobName.Ground,
      respond: JobName.Respond,
    }[data.task];
    return this.submit('understanding', name, data, part);
  }

  /** Removes this run's queues and artefacts (matters when REDIS_URL is a shared Redis), then disconnects. */
  async close(cleanup: boolean): Promise<void> {
    await Promise.all(Object.values(this.events).map((e) => e.close().catch(() => undefined)));
    if (cleanup) {
      for (const q of Object.values(this.queues)) await (q as Queue).obliterate({ force: true }).catch(() => undefined);
      const pattern = `${this.prefix}:artifact:*`;
      let cursor = '0';
      do {
        const [next, keys] = await this.redis.scan(cursor, 'MATCH', pattern, 'COUNT', 1000);
        cursor = next;
        if (keys.length > 0) await this.redis.del(...keys);
      } while (cursor !== '0');
    }
    await Promise.all(Object.values(this.queues).map((q) => (q as Queue).close().catch(() => undefined)));
    await this.redis.quit().catch(() => undefined);
  }
}
