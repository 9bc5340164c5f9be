import { hostname } from 'node:os';
import type { Config } from './index.js';
import { JsonLogger } from './logger.js';
import { redisClient, type RedisClient } from './redis.js';

/** The kinds of process that publish heartbeats. */
export type WorkerKind = 'und-worker' | 'gen-worker' | 'orchestrator';

/**
 * `ok`; `degraded` (serving, but something it needs is not: a gen-worker with no understanding peer,
 * an und-worker with no generation peer for `[exp]` images); `draining` (shutting down).
 */
export type WorkerHealth = 'ok' | 'degraded' | 'draining';

/** A stage job a worker is running now. */
export interface WorkerCurrentJob {
  /** The pipeline (public) job id. */
  jobId?: string;
  /** The BullMQ job id of the stage. */
  stageJobId: string;
  /** The BullMQ job name: generate, edit, plan, reflect, … */
  stage: string;
  startedAt: string;
}

/**
 * One peer as the worker that drives sessions with it sees it (libs/wire's PeerSnapshot): an
 * understanding peer of a generation worker (UND_PEERS), or a generation peer of an understanding
 * worker (GEN_PEERS).
 */
export interface PeerLinkStats {
  address: string;
  health: string;
  inFlight: number;
  openFailures: number;
  lastError?: string;
  openMs?: number;
  /** Joint-layer exchanges (a step's first layer, each partial) answered by this peer. */
  exchanges?: number;
  /** Moving average of an exchange's round trip. */
  exchangeMs?: number;
  lastExchangeMs?: number;
  lastExchangeAt?: string;
}

/** What a worker publishes about itself every few seconds. */
export interface WorkerHeartbeat {
  kind: WorkerKind;
  id: string;
  host: string;
  pid: number;
  /** `cpu`, or `cuda:<index>`; absent for processes without a model. */
  device?: string;
  model?: { name: string; version: string };
  /** The BullMQ queue it consumes and how many of its jobs at once. */
  queue?: string;
  concurrency?: number;
  health: WorkerHealth;
  /** Why it is not `ok`. */
  healthReason?: string;
  current: WorkerCurrentJob[];
  /** Stage jobs finished since start, and of those the failed attempts. */
  processed: number;
  failed: number;
  startedAt: string;
  lastSeen: string;
  /** The gRPC address it serves (workers). */
  grpc?: { host: string; port: number };
  /**
   * The peers this worker drives sessions with, each with its health and exchange latency:
   * generation workers their understanding peers (UND_PEERS), understanding workers their
   * generation peers (GEN_PEERS).
   */
  peers?: PeerLinkStats[];
}

/** libs/wire's PeerSnapshot (times in ms since the epoch), structurally: what a peer client reports. */
type PeerSnapshotLike = Omit<PeerLinkStats, 'lastExchangeAt'> & { readonly lastExchangeAt?: number };

/** A peer client's snapshots as heartbeat fields (the last exchange's time as an ISO string). */
export function peerLinkStats(snapshots: readonly PeerSnapshotLike[]): PeerLinkStats[] {
  return snapshots.map(({ lastExchangeAt, ...peer }) => ({
    ...peer,
    ...(lastExchangeAt === undefined ? {} : { lastExchangeAt: new Date(lastExchangeAt).toISOString() }),
  }));
}

/**
 * The heartbeat's health from the peers a worker drives: `degraded`, naming `what`, while none of
 * them is SERVING.
 */
export function peerHealth(snapshots: readonly { health: string }[], what: string): { health: WorkerHealth; reason?: string } {
  return snapshots.some((p) => p.health === 'SERVING') ? { health: 'ok' } : { health: 'degraded', reason: `no ${what} is SERVING` };
}

/** Redis keys of the registry, under QUEUE_PREFIX. */
export const workerRegistryKeys = {
  /** Sorted set of `<kind>:<id>` by last heartbeat (ms). */
  index: (prefix: string) => `${prefix}:workers`,
  /** The heartbeat (JSON), expiring when the worker stops sending them. */
  worker: (prefix: string, kind: string, id: string) => `${prefix}:worker:${kind}:${id}`,
};

export interface WorkerRegistryOptions {
  kind: WorkerKind;
  device?: string;
  model?: { name: string; version: string };
  queue?: string;
  concurrency?: number;
  /** How often the heartbeat is written. @defaultValue 5000 */
  intervalMs?: number;
  /** How long a heartbeat stays without the next one; a worker silent longer is gone. @defaultValue 3 intervals */
  ttlMs?: number;
  /** Health beyond `ok`, asked at every heartbeat. */
  health?: () => { health: WorkerHealth; reason?: string };
  /** More fields, asked at every heartbeat (the peers a worker drives, its gRPC address). */
  extra?: () => Partial<Pick<WorkerHeartbeat, 'peers' | 'grpc'>>;
}

/** `cpu`, or `cuda:<index>`, from the configuration. */
export function deviceOf(config: Pick<Config, 'ORT_EXECUTION_PROVIDER' | 'ORT_DEVICE_ID'>): string {
  return config.ORT_EXECUTION_PROVIDER === 'cuda' ? `cuda:${config.ORT_DEVICE_ID}` : 'cpu';
}

/**
 * A process's entry in the worker registry: a heartbeat in Redis (`<prefix>:worker:<kind>:<id>`,
 * expiring after `ttlMs`) with its device, model, health and the stage jobs it runs, written every
 * `intervalMs` and at once when a job starts or ends. Read by the admin dashboard. Registered as a
 * NestJS provider, it starts with the app and removes itself on shutdown; a killed worker drops out
 * when its heartbeat expires.
 */
export class WorkerRegistry {
  private readonly logger: JsonLogger;
  private readonly redis: RedisClient;
  private readonly prefix: string;
  private readonly id: string;
  private readonly startedAt = new Date().toISOString();
  private readonly current = new Map<string, WorkerCurrentJob>();
  private fields: Partial<Pick<WorkerHeartbeat, 'grpc'>> = {};
  private processed = 0;
  private failed = 0;
  private draining = false;
  private timer?: NodeJS.Timeout;
  private warned = false;

  constructor(
    config: Pick<Config, 'REDIS_URL' | 'REDIS_CLUSTER' | 'QUEUE_PREFIX' | 'WORKER_ID'>,
    private readonly options: WorkerRegistryOptions,
  ) {
    this.logger = new JsonLogger(options.kind, WorkerRegistry.name);
    this.prefix = config.QUEUE_PREFIX;
    this.id = config.WORKER_ID;
    // Heartbeats are best effort: a Redis that is away fails them fast instead of queueing them.
    this.redis = redisClient(config, { maxRetriesPerRequest: 1, lazyConnect: true });
    this.redis.on('error', () => undefined);
  }

  private get intervalMs(): number {
    return this.options.intervalMs ?? 5000;
  }

  start(): void {
    if (this.timer) return;
    this.timer = setInterval(() => void this.beat(), this.intervalMs);
    this.timer.unref();
    void this.beat();
  }

  /** A stage job started. */
  begin(job: { id?: string; name: string; data?: unknown }): void {
    if (!job.id) return;
    const data = job.data as { jobId?: unknown } | undefined;
    this.current.set(job.id, {
      ...(typeof data?.jobId === 'string' ? { jobId: data.jobId } : {}),
      stageJobId: job.id,
      stage: job.name,
      startedAt: new Date().toISOString(),
    });
    void this.beat();
  }

  /** A stage job's attempt ended. */
  end(jobId: string | undefined, ok: boolean): void {
    if (!jobId || !this.current.delete(jobId)) return;
    this.processed += 1;
    if (!ok) this.failed += 1;
    void this.beat();
  }

  /** Fields known after start (the gRPC port bound). */
  set(fields: Partial<Pick<WorkerHeartbeat, 'grpc'>>): void {
    this.fields = { ...this.fields, ...fields };
    void this.beat();
  }

  /** The heartbeat as it would be written now. */
  snapshot(): WorkerHeartbeat {
    const { kind, device, model, queue, concurrency } = this.options;
    const health = this.draining ? { health: 'draining' as const } : (this.options.health?.() ?? { health: 'ok' as const });
    return {
      kind,
      id: this.id,
      host: hostname(),
      pid: process.pid,
      ...(device ? { device } : {}),
      ...(model ? { model } : {}),
      ...(queue ? { queue } : {}),
      ...(concurrency ? { concurrency } : {}),
      health: health.health,
      ...(health.reason ? { healthReason: health.reason } : {}),
      current: [...this.current.values()],
      processed: this.processed,
      failed: this.failed,
      startedAt: this.startedAt,
      lastSeen: new Date().toISOString(),
      ...this.fields,
      ...this.options.extra?.(),
    };
  }

  private async beat(): Promise<void> {
    const beat = this.snapshot();
    const ttlMs = this.options.ttlMs ?? this.intervalMs * 3;
    const key = workerRegistryKeys.worker(this.prefix, beat.kind, beat.id);
    try {
      await this.redis
        .multi()
        .set(key, JSON.stringify(beat), 'PX', ttlMs)
        .zadd(workerRegistryKeys.index(this.prefix), String(Date.now()), `${beat.kind}:${beat.id}`)
        .exec();
      this.warned = false;
    } catch (error) {
      if (!this.warned) this.logger.warn('heartbeat not written', { error: (error as Error).message });
      this.warned = true;
    }
  }

  // NestJS lifecycle: the registry is a provider of each worker app.
  onApplicationBootstrap(): void {
    this.start();
  }

  async beforeApplicationShutdown(): Promise<void> {
    this.draining = true;
    await this.beat();
  }

  async onApplicationShutdown(): Promise<void> {
    clearInterval(this.timer);
    this.timer = undefined;
    const key = workerRegistryKeys.worker(this.prefix, this.options.kind, this.id);
    await this.redis
      .multi()
      .del(key)
      .zrem(workerRegistryKeys.index(this.prefix), `${this.options.kind}:${this.id}`)
      .exec()
      .catch(() => undefined);
    await this.redis.quit().catch(() => undefined);
  }
}

/**
 * Every live worker's heartbeat (sorted by kind and id). Entries whose heartbeat expired are
 * dropped from the index.
 */
export async function listWorkers(redis: RedisClient, prefix: string): Promise<WorkerHeartbeat[]> {
  const members = await redis.zrange(workerRegistryKeys.index(prefix), '0', '-1');
  if (members.length === 0) return [];
  const keys = members.map((member) => {
    const colon = member.indexOf(':');
    return workerRegistryKeys.worker(prefix, member.slice(0, colon), member.slice(colon + 1));
  });
  const values = await redis.mget(...keys);
  const gone = members.filter((_, i) => values[i] === null);
  if (gone.length) await redis.zrem(workerRegistryKeys.index(prefix), ...gone);
  return values
    .filter((value): value is string => value !== null)
    .map((value) => JSON.parse(value) as WorkerHeartbeat)
    .sort((a, b) => a.kind.localeCompare(b.kind) || a.id.localeCompare(b.id));
}
