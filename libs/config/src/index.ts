import { hostname } from 'node:os';
import { fileURLToPath } from 'node:url';
import { resolve } from 'node:path';
import { z } from 'zod';

/** Repository root, for defaults that point into the checkout (the bundled model). */
export const REPO_ROOT = resolve(fileURLToPath(new URL('.', import.meta.url)), '../../..');

const int = (min: number, max: number) => z.coerce.number().int().min(min).max(max);
const hostPort = z.string().regex(/^[^\s:,]+:\d{1,5}$/, 'expected host:port');
/** A value, or nothing (an empty value counts as unset). */
const optionalString = z.preprocess((value) => (value === '' ? undefined : value), z.string().min(1).optional());

/** Development default of WEBHOOK_SECRET: public, so set your own anywhere receivers rely on the signature. */
export const DEV_WEBHOOK_SECRET = 'whsec_bGF2aWRhLXNlcnZlLWRldmVsb3BtZW50LXNlY3JldCE=';
/** A retry delay: at most a week. */
const WEEK_MS = 7 * 86_400_000;
const delayMs = z.number().int().max(WEEK_MS);
/** A Standard Webhooks secret: `whsec_` and the base64 of 24 to 64 bytes. */
const webhookSecret = z.string().refine((value) => {
  const match = /^whsec_([A-Za-z0-9+/]+={0,2})$/.exec(value);
  if (!match || match[1].length % 4 !== 0) return false;
  const bytes = Buffer.from(match[1], 'base64').length;
  return bytes >= 24 && bytes <= 64;
}, 'expected whsec_ and the base64 of 24 to 64 bytes');

const schema = z.object({
  /** Redis for queues, job state and artefacts. @defaultValue redis://127.0.0.1:6379 */
  REDIS_URL: z.string().url().default('redis://127.0.0.1:6379'),
  /**
   * REDIS_URL is one node of a Redis Cluster: the apps follow the cluster's slot map. QUEUE_PREFIX
   * must then carry a hash tag, `{lavida}`. @defaultValue false
   */
  REDIS_CLUSTER: z
    .enum(['true', 'false'])
    .default('false')
    .transform((value) => value === 'true'),
  /**
   * Prefix of every Redis key (queues, job state, artefacts, keys, rate limits); a Redis Cluster
   * needs a hash tag, `{lavida}`, so that every key hashes to one slot. @defaultValue lavida
   */
  QUEUE_PREFIX: z
    .string()
    .min(1)
    .regex(/^[^{}]*(\{[^{}]+\}[^{}]*)?$/, 'expected at most one non-empty {hash tag}, like {lavida}')
    .default('lavida'),
  /** Address the HTTP api binds. @defaultValue 0.0.0.0 */
  API_HOST: z.string().min(1).default('0.0.0.0'),
  /** Port of the HTTP api. @defaultValue 8080 */
  API_PORT: int(0, 65535).default(8080),
  /** Base of URLs in responses; by default taken from the request's Host header. */
  PUBLIC_URL: z.string().url().optional(),
  /** Largest accepted request body. @defaultValue 1mb */
  API_BODY_LIMIT: z.string().default('1mb'),
  /** Model package folder. @defaultValue the bundled trained model, models/lavida-o-mini */
  MODEL_DIR: z.string().min(1).default(resolve(REPO_ROOT, 'models/lavida-o-mini')),
  /** onnxruntime execution provider: cpu or cuda. @defaultValue cpu */
  ORT_EXECUTION_PROVIDER: z.enum(['cpu', 'cuda']).default('cpu'),
  /** GPU index for the cuda provider. @defaultValue 0 */
  ORT_DEVICE_ID: int(0, 64).default(0),
  /** onnxruntime intra-op threads; one was fastest on two cores. @defaultValue 1 */
  ORT_INTRA_OP_THREADS: int(0, 256).default(1),
  /** Address the workers' gRPC servers bind. @defaultValue 0.0.0.0 */
  GRPC_HOST: z.string().min(1).default('0.0.0.0'),
  /** gRPC port of the understanding worker. @defaultValue 50051 */
  UND_GRPC_PORT: int(0, 65535).default(50051),
  /** gRPC port of the generation worker. @defaultValue 50052 */
  GEN_GRPC_PORT: int(0, 65535).default(50052),
  /** Understanding peers for the generation worker: chosen by gRPC health and sessions in flight, with failover. @defaultValue 127.0.0.1:50051 */
  UND_PEERS: z
    .string()
    .default('127.0.0.1:50051')
    .transform((value) =>
      value
        .split(',')
        .map((peer) => peer.trim())
        .filter(Boolean),
    )
    .pipe(z.array(hostPort).min(1)),
  /**
   * Generation peers for the understanding worker: when a `respond` answer is `[exp]` (an image), it
   * drives text-to-image with one of them serving the image side, chosen by gRPC health and sessions
   * in flight, with failover. @defaultValue 127.0.0.1:50052
   */
  GEN_PEERS: z
    .string()
    .default('127.0.0.1:50052')
    .transform((value) =>
      value
        .split(',')
        .map((peer) => peer.trim())
        .filter(Boolean),
    )
    .pipe(z.array(hostPort).min(1)),
  /** Deadline of one joint-layer exchange, and of opening a session. @defaultValue 10000 */
  EXCHANGE_TIMEOUT_MS: int(1, 600_000).default(10_000),
  /** Tensors above this many bytes travel in chunks. @defaultValue 1048576 */
  TENSOR_CHUNK_BYTES: int(1024, 64 * 1024 * 1024).default(1024 * 1024),
  /** Largest gRPC message accepted; must exceed the chunk size. @defaultValue 16777216 */
  GRPC_MAX_MESSAGE_BYTES: int(64 * 1024, 1024 * 1024 * 1024).default(16 * 1024 * 1024),
  /**
   * PEM file of the CA that every peer's certificate must chain to. With GRPC_TLS_CERT and
   * GRPC_TLS_KEY (all three or none), the workers' gRPC links use mutual TLS: servers ask for and
   * verify a client certificate, clients verify the server's. Unset: plaintext.
   */
  GRPC_TLS_CA: optionalString,
  /** PEM file of this worker's certificate (chain), presented as server and as client. */
  GRPC_TLS_CERT: optionalString,
  /** PEM file of this worker's private key. */
  GRPC_TLS_KEY: optionalString,
  /**
   * Name the understanding peers' server certificates are checked against when a generation worker
   * dials them, instead of the host in UND_PEERS. Used for that direction only.
   */
  GRPC_TLS_SERVER_NAME: optionalString,
  /**
   * Name the generation peers' server certificates are checked against when an understanding worker
   * dials them (an `[exp]` image), instead of the host in GEN_PEERS. Used for that direction only:
   * GRPC_TLS_SERVER_NAME never applies to it.
   */
  GRPC_TLS_GEN_SERVER_NAME: optionalString,
  /**
   * A second, plaintext gRPC port serving only grpc.health.v1 (for probes that cannot present a
   * client certificate, like the kubelet's); unset: health is served on the worker's port only.
   */
  GRPC_HEALTH_PORT: z.preprocess((value) => (value === '' ? undefined : value), int(0, 65535).optional()),
  /**
   * How the generation worker spreads sessions over the addresses one UND_PEERS entry resolves to:
   * round_robin for a headless Service name that resolves to every understanding pod. @defaultValue pick_first
   */
  GRPC_LB_POLICY: z.enum(['pick_first', 'round_robin']).default('pick_first'),
  /**
   * On SIGTERM a worker takes no new job and lets its running ones finish for this long; then (or
   * on a second SIGTERM) it hands them back to their queue for another worker. @defaultValue 25000
   */
  DRAIN_TIMEOUT_MS: int(0, 86_400_000).default(25_000),
  /** Generation jobs one worker runs at once. @defaultValue 1 */
  GEN_CONCURRENCY: int(1, 64).default(1),
  /** Understanding jobs (answers, plans, grounding, reflection) one worker runs at once. @defaultValue 1 */
  UND_CONCURRENCY: int(1, 64).default(1),
  /**
   * How long a worker's lock on a running job lasts (renewed at half of it while the job runs); a
   * worker that dies (kill -9) loses its jobs to the stalled-job check once the lock lapses.
   * @defaultValue 30000
   */
  LOCK_DURATION_MS: int(1000, 3_600_000).default(30_000),
  /** How often workers look for stalled jobs (whose worker died) to hand them back. @defaultValue 30000 */
  STALLED_INTERVAL_MS: int(500, 3_600_000).default(30_000),
  /** Attempts of a stage job for retryable failures. @defaultValue 3 */
  JOB_ATTEMPTS: int(1, 100).default(3),
  /** First retry delay (exponential backoff). @defaultValue 1000 */
  JOB_BACKOFF_MS: int(0, 3_600_000).default(1000),
  /** How long results and images are kept. @defaultValue 86400 */
  RESULT_TTL_SECONDS: int(1, 365 * 86400).default(86_400),
  /** Name of this process in logs and metadata. @defaultValue host-pid */
  WORKER_ID: z.string().min(1).default(`${hostname()}-${process.pid}`),
  /** Signs every webhook (Standard Webhooks). @defaultValue DEV_WEBHOOK_SECRET, a public development secret */
  WEBHOOK_SECRET: webhookSecret.default(DEV_WEBHOOK_SECRET),
  /** Deadline of one webhook delivery attempt (connect, send, answer). @defaultValue 10000 */
  WEBHOOK_TIMEOUT_MS: int(1, 300_000).default(10_000),
  /** Delays before each retry of a failed delivery, comma-separated; its length is the number of retries. @defaultValue 5 s, 5 min, 30 min, 2 h, 5 h */
  WEBHOOK_RETRY_SCHEDULE_MS: z
    .string()
    .default('5000,300000,1800000,7200000,18000000')
    .transform((value) =>
      value
        .split(',')
        .map((delay) => delay.trim())
        .filter(Boolean),
    )
    .pipe(z.array(z.string().regex(/^\d+$/, 'expected comma-separated milliseconds')).max(50))
    .transform((delays) => delays.map(Number))
    .pipe(z.array(delayMs)),
  /** Let webhooks reach private (RFC 1918, fc00::/7) and loopback addresses; link-local, multicast and unspecified ones never. @defaultValue false */
  WEBHOOK_ALLOW_PRIVATE: z
    .enum(['true', 'false'])
    .default('false')
    .transform((value) => value === 'true'),
  /** Webhook deliveries one orchestrator runs at once. @defaultValue 16 */
  WEBHOOK_CONCURRENCY: int(1, 1024).default(16),
  /** Fault injection for tests: delay before the understanding side answers each frame. @defaultValue 0 */
  FAULT_EXCHANGE_DELAY_MS: int(0, 60_000).default(0),
  /**
   * The first admin API key (scope admin): when set, every /v1 route needs `Authorization: Bearer <key>`
   * and only its SHA-256 hash is kept in Redis; unset (or empty), the api runs open, without keys.
   */
  ADMIN_API_KEY: z.preprocess(
    (value) => (value === '' ? undefined : value),
    z
      .string()
      .min(16, 'expected at least 16 characters')
      .max(512)
      .regex(/^[\x21-\x7e]+$/, 'expected printable ASCII without spaces')
      .optional(),
  ),
  /**
   * Requests per minute per API key (per client IP when the api is open), unless the key has its own
   * limit; 0 = no limit. Room for a client polling a job every 100 ms. @defaultValue 1200
   */
  RATE_LIMIT_PER_MINUTE: int(0, 1_000_000).default(1200),
  /**
   * Port of the orchestrator's and the workers' Prometheus endpoint (`/metrics`, `/healthz`); 0 = off.
   * The api serves `/metrics` on API_PORT instead. @defaultValue 9464 orchestrator, 9465 und-worker, 9466 gen-worker
   */
  METRICS_PORT: z.preprocess((value) => (value === '' ? undefined : value), int(0, 65535).optional()),
  /** Address the metrics endpoint binds. @defaultValue 0.0.0.0 */
  METRICS_HOST: z.string().min(1).default('0.0.0.0'),
  /** When set, `/metrics` (every app) needs `Authorization: Bearer <token>`; unset, it is open (an internal port). */
  METRICS_TOKEN: z.preprocess(
    (value) => (value === '' ? undefined : value),
    z.string().min(16, 'expected at least 16 characters').optional(),
  ),
});

/** Validated configuration of every app. */
export type Config = z.infer<typeof schema>;

/** Every variable the configuration reads (deploy:check refuses manifests that set others). */
export const CONFIG_KEYS: readonly string[] = Object.keys(schema.shape);

/** Thrown when the environment does not validate; its message names every bad variable. */
export class ConfigError extends Error {
  constructor(message: string) {
    super(message);
    this.name = this.constructor.name;
  }
}

/**
 * Reads and validates the configuration once. A bad variable throws
 * `Invalid environment variables: KEY=value (reason)`.
 */
export function loadConfig(env: NodeJS.ProcessEnv = process.env): Config {
  const result = schema.safeParse(env);
  if (result.success) {
    // On a Redis Cluster every key must hash to one slot: BullMQ's scripts touch several keys at once.
    if (result.data.REDIS_CLUSTER && !/\{[^{}]+\}/.test(result.data.QUEUE_PREFIX)) {
      throw new ConfigError(
        `Invalid environment variables: QUEUE_PREFIX=${result.data.QUEUE_PREFIX} (REDIS_CLUSTER=true needs a hash tag, like {lavida})`,
      );
    }
    return result.data;
  }
  const problems = result.error.issues.map((issue) => {
    const key = String(issue.path[0]);
    // Never print a secret: keys and secrets are named, not shown.
    const value = /KEY|SECRET|TOKEN|PASSWORD/i.test(key) ? '<redacted>' : (env[key] ?? '');
    return `${key}=${value} (${issue.message})`;
  });
  throw new ConfigError(`Invalid environment variables: ${problems.join(', ')}`);
}

/** Loads the configuration, or prints the problem and exits with status 1. */
export function loadConfigOrExit(env: NodeJS.ProcessEnv = process.env): Config {
  try {
    return loadConfig(env);
  } catch (error) {
    if (error instanceof ConfigError) {
      console.error(error.message);
      process.exit(1);
    }
    throw error;
  }
}

/** Queue names carry this prefix in Redis; artefact keys too. */
export function artifactKey(config: Pick<Config, 'QUEUE_PREFIX'>, jobId: string, name: string): string {
  return `${config.QUEUE_PREFIX}:artifact:${jobId}:${name}`;
}

import { JsonLogger } from './logger.js';
export { JsonLogger };

/** Injection token of the validated Config in the NestJS apps. */
export const CONFIG = Symbol.for('lavida.config');

/**
 * Runs an app's start-up; any failure is logged as `refusing to start: …` and exits with status 1,
 * so a bad model package or configuration never leaves a half-started process.
 */
export async function runApp(app: string, start: (logger: JsonLogger) => Promise<unknown>): Promise<void> {
  const logger = new JsonLogger(app);
  try {
    await start(logger);
  } catch (error) {
    logger.fatal(`refusing to start: ${(error as Error).message}`);
    process.exit(1);
  }
}
export { ArtifactStore } from './artifacts.js';
export { peerTlsFiles, peerTlsServerName, type PeerTlsFiles, type PeerTlsRole } from './peer-tls.js';
export { redisClient, type RedisClient } from './redis.js';
export { workerLockOptions, workerMetricsOptions } from './worker-options.js';
export { canceledKey, cancelChannel, CancelSubscriber, isCanceled, requestCancel, type CancelMessage } from './cancel.js';
export { StageProcessor, StageWorker, type StageJobData, type StageWorkerOptions } from './stage-worker.js';
export { freePort, hasRedisServer, redisAnswers, startLocalRedis } from './local-redis.js';
export { DEFAULT_METRICS_PORTS, serveMetrics, startTelemetry, TelemetryShutdown, type AppName } from './telemetry.js';
export {
  deviceOf,
  listWorkers,
  peerHealth,
  peerLinkStats,
  WorkerRegistry,
  workerRegistryKeys,
  type PeerLinkStats,
  type WorkerCurrentJob,
  type WorkerHealth,
  type WorkerHeartbeat,
  type WorkerKind,
  type WorkerRegistryOptions,
} from './worker-registry.js';
