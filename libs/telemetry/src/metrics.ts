import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from 'prom-client';

/**
 * The process's Prometheus registry: Node's default process metrics (unprefixed, as Prometheus
 * dashboards expect them) and the `lavida_` families below, every series labelled with `app`.
 */
export const registry = new Registry();

let defaults = false;

/** Labels every series with the app's name and starts the default process metrics (once). */
export function initMetrics(app: string): void {
  registry.setDefaultLabels({ app });
  if (defaults) return;
  defaults = true;
  collectDefaultMetrics({ register: registry });
}

const registers = [registry];
/** Seconds: from 5 ms to 10 min, for stages, pipelines and webhook deliveries. */
const SLOW = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600];
/** Seconds: from 0.1 ms to 5 s, for diffusion steps and joint-layer exchanges. */
const FAST = [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5];

// ---- stages (gen-worker, und-worker) ----

/** One attempt of a stage job, from its start to its end, by how it ended. */
export const stageDuration = new Histogram({
  name: 'lavida_stage_duration_seconds',
  help: 'Duration of one attempt of a stage job (queue, stage = job name, outcome: succeeded, retrying, failed, canceled, deadline_exceeded)',
  labelNames: ['queue', 'stage', 'outcome'] as const,
  buckets: SLOW,
  registers,
});

/** How long a stage job waited in its queue before its first attempt started. */
export const stageWait = new Histogram({
  name: 'lavida_stage_wait_seconds',
  help: 'Time a stage job waited in its queue before its first attempt started',
  labelNames: ['queue', 'stage'] as const,
  buckets: SLOW,
  registers,
});

// ---- diffusion (gen-worker) ----

export const diffusionSteps = new Counter({
  name: 'lavida_diffusion_steps_total',
  help: 'Diffusion steps run (rate() of it is the steps per second of the worker)',
  labelNames: ['task'] as const,
  registers,
});

export const diffusionStepDuration = new Histogram({
  name: 'lavida_diffusion_step_duration_seconds',
  help: 'Wall time of one diffusion step, its joint-layer exchanges included (the first step of a stage includes opening the session)',
  labelNames: ['task'] as const,
  buckets: FAST,
  registers,
});

export const diffusionStepsPerSecond = new Gauge({
  name: 'lavida_diffusion_steps_per_second',
  help: 'Diffusion steps per second of the last finished stage',
  labelNames: ['task'] as const,
  registers,
});

// ---- joint-attention exchange (gen-worker: client side, und-worker: server side) ----

export const exchangeBytes = new Counter({
  name: 'lavida_exchange_bytes_total',
  help: 'Tensor payload bytes of joint-attention exchanges (side: client = gen-worker, server = und-worker; direction seen from this side)',
  labelNames: ['side', 'direction'] as const,
  registers,
});

export const exchangeRoundTrip = new Histogram({
  name: 'lavida_exchange_round_trip_seconds',
  help: 'Joint-attention exchanges by kind (open, step, partial, close): client side from sending a request to its whole answer, server side from the whole request to its answer written',
  labelNames: ['side', 'kind'] as const,
  buckets: FAST,
  registers,
});

export const exchangeSessions = new Counter({
  name: 'lavida_exchange_sessions_total',
  help: 'Joint-attention sessions by how they ended (closed, failed, canceled)',
  labelNames: ['side', 'outcome'] as const,
  registers,
});

// ---- webhooks (orchestrator) ----

export const webhookDeliveries = new Counter({
  name: 'lavida_webhook_deliveries_total',
  help: 'Webhook delivery attempts (outcome: delivered, retrying, failed, disabled, skipped, refused; status_class: 2xx..5xx, or none without an answer)',
  labelNames: ['outcome', 'status_class'] as const,
  registers,
});

export const webhookDuration = new Histogram({
  name: 'lavida_webhook_delivery_duration_seconds',
  help: 'Duration of one webhook delivery attempt (resolve, connect, send, answer)',
  labelNames: ['outcome'] as const,
  buckets: SLOW,
  registers,
});

/** `2xx` for 204, `none` without a status (no answer, refused). */
export function statusClass(status?: number): string {
  return status === undefined ? 'none' : `${Math.floor(status / 100)}xx`;
}

// ---- pipelines (api, orchestrator) ----

export const jobsSubmitted = new Counter({
  name: 'lavida_jobs_submitted_total',
  help: 'Jobs accepted by the api (202/201), by task',
  labelNames: ['task'] as const,
  registers,
});

export const pipelineDuration = new Histogram({
  name: 'lavida_pipeline_duration_seconds',
  help: 'Time from submission to the end of a pipeline the orchestrator finished (outcome: succeeded, failed, canceled)',
  labelNames: ['task', 'outcome'] as const,
  buckets: SLOW,
  registers,
});

// ---- model (workers) ----

export const modelLoad = new Gauge({
  name: 'lavida_model_load_seconds',
  help: 'Time to load and check the model package at start-up',
  labelNames: ['model', 'version', 'branch'] as const,
  registers,
});

// ---- http (api) ----

export const httpDuration = new Histogram({
  name: 'lavida_http_request_duration_seconds',
  help: 'HTTP requests of the api by method, route (the matched pattern, or unmatched) and status code',
  labelNames: ['method', 'route', 'status_code'] as const,
  buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60],
  registers,
});

// ---- queues (orchestrator) ----

/** Every state BullMQ keeps a job in (a paused queue keeps its jobs in wait): prioritized and delayed jobs are not in the wait list. */
export const JOB_STATES = ['wait', 'prioritized', 'delayed', 'active', 'waiting-children', 'completed', 'failed'] as const;
export type JobStateName = (typeof JOB_STATES)[number];
/** States of jobs not started yet: the queue depth. */
const NOT_STARTED: readonly JobStateName[] = ['wait', 'prioritized', 'delayed'];

/** Reads one queue's counts by state (BullMQ's `getJobCounts(...JOB_STATES)`). */
export type QueueCounts = (queue: string) => Promise<Partial<Record<string, number>>>;

/** A scrape does not wait longer than this for a queue's counts. */
const QUEUE_READ_TIMEOUT_MS = 2000;

let queueGauges: { jobs: Gauge<'queue' | 'state'>; depth: Gauge<'queue'> } | undefined;

/**
 * `lavida_jobs{queue,state}` and `lavida_queue_depth{queue}`, read from Redis at every scrape (one
 * Lua call per queue). A queue that cannot be read within 2 s is left out of that scrape. Registered once per
 * process: its values are the same from every process that reads the same Redis.
 */
export function registerQueueMetrics(queues: readonly string[], counts: QueueCounts): void {
  if (queueGauges) throw new Error('queue metrics are registered already');
  let pending: Promise<Map<string, Partial<Record<string, number>>>> | undefined;
  // Both gauges collect from one read per scrape.
  const read = () =>
    (pending ??= (async () => {
      const out = new Map<string, Partial<Record<string, number>>>();
      await Promise.all(
        queues.map(async (queue) => {
          let timer: NodeJS.Timeout | undefined;
          try {
            const timeout = new Promise<never>((_, reject) => {
              timer = setTimeout(() => reject(new Error('timeout')), QUEUE_READ_TIMEOUT_MS);
            });
            out.set(queue, await Promise.race([counts(queue), timeout]));
          } catch {
            // Redis unreachable or slow: the scrape goes on without this queue.
          } finally {
            clearTimeout(timer);
          }
        }),
      );
      return out;
    })().finally(() => (pending = undefined)));
  const jobs = new Gauge({
    name: 'lavida_jobs',
    help: 'Jobs by queue and state, read from BullMQ (wait, prioritized, delayed, active, waiting-children, completed, failed)',
    labelNames: ['queue', 'state'] as const,
    registers,
    async collect() {
      this.reset();
      for (const [queue, byState] of await read()) {
        for (const state of JOB_STATES) this.set({ queue, state }, byState[state] ?? 0);
      }
    },
  });
  const depth = new Gauge({
    name: 'lavida_queue_depth',
    help: 'Jobs of a queue not started yet: waiting, prioritized and delayed (retries in backoff included)',
    labelNames: ['queue'] as const,
    registers,
    async collect() {
      this.reset();
      for (const [queue, byState] of await read()) {
        this.set(
          { queue },
          NOT_STARTED.reduce((sum, state) => sum + (byState[state] ?? 0), 0),
        );
      }
    },
  });
  queueGauges = { jobs, depth };
}
