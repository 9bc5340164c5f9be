import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { createServer, type IncomingHttpHeaders, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { gunzipSync } from 'node:zlib';
import { Queue } from 'bullmq';
import { Redis } from 'ioredis';
import { freshPrefix, startRedis, type TestRedis } from '../support/redis.js';
import { TestSystem } from '../support/system.js';
import { postJob, waitForJob, type JobView } from '../support/http.js';
import { waitFor } from '../support/wait.js';
import { MINI_MODEL } from '../support/paths.js';

/**
 * Observability of one real system: a text-to-image job with a plan, reflection and a webhook runs
 * through the four apps; then every app's /metrics shows each family with non-zero counts, one
 * trace (started by the client's traceparent) holds spans of all four apps with the exchange's
 * client and server spans linked, and the job's log lines carry its jobId and trace_id.
 */

const METRICS_TOKEN = 'metrics-token-of-the-test-0123456789';
const STEPS = 4;

/** One sample of the Prometheus text format. */
interface Sample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

function parseMetrics(text: string): Sample[] {
  const samples: Sample[] = [];
  for (const line of text.split('\n')) {
    if (!line || line.startsWith('#')) continue;
    const match = /^([a-zA-Z_:][\w:]*)(?:\{(.*)\})?\s+(\S+)/.exec(line);
    assert.ok(match, `not a Prometheus sample: ${line}`);
    const labels: Record<string, string> = {};
    for (const [, key, value] of (match[2] ?? '').matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g)) labels[key] = value;
    samples.push({ name: match[1], labels, value: Number(match[3]) });
  }
  return samples;
}

/** Sum of the samples of `name` whose labels include `labels`; undefined when there is none. */
function value(samples: Sample[], name: string, labels: Record<string, string> = {}): number | undefined {
  const matching = samples.filter((s) => s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v));
  return matching.length ? matching.reduce((sum, s) => sum + s.value, 0) : undefined;
}

function positive(samples: Sample[], name: string, labels: Record<string, string> = {}): number {
  const v = value(samples, name, labels);
  assert.ok(v !== undefined && v > 0, `${name}${JSON.stringify(labels)} should be > 0, is ${v}`);
  return v;
}

interface SpanRecord {
  service: string;
  traceId: string;
  spanId: string;
  parentSpanId: string;
  name: string;
  kind: number;
}

/** An OTLP/HTTP JSON receiver (POST /v1/traces), as a collector would be. */
class OtlpReceiver {
  readonly spans: SpanRecord[] = [];
  readonly requests: { contentType?: string }[] = [];
  private server?: Server;
  url = '';

  async start(): Promise<this> {
    this.server = createServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (chunk: Buffer) => chunks.push(chunk));
      req.on('end', () => {
        let body = Buffer.concat(chunks);
        if (req.headers['content-encoding'] === 'gzip') body = gunzipSync(body);
        this.requests.push({ contentType: req.headers['content-type'] });
        if (req.method === 'POST' && req.url === '/v1/traces') this.collect(JSON.parse(body.toString()) as OtlpTraces);
        res.writeHead(200, { 'content-type': 'application/json' }).end('{}');
      });
    });
    await new Promise<void>((resolve) => this.server!.listen(0, '127.0.0.1', resolve));
    this.url = `http://127.0.0.1:${(this.server.address() as AddressInfo).port}`;
    return this;
  }

  private collect(body: OtlpTraces): void {
    for (const resourceSpans of body.resourceSpans ?? []) {
      const service = resourceSpans.resource?.attributes?.find((a) => a.key === 'service.name')?.value?.stringValue ?? '';
      for (const scope of resourceSpans.scopeSpans ?? []) {
        for (const span of scope.spans ?? []) {
          this.spans.push({
            service,
            traceId: hex(span.traceId),
            spanId: hex(span.spanId),
            parentSpanId: hex(span.parentSpanId ?? ''),
            name: span.name,
            kind: span.kind,
          });
        }
      }
    }
  }

  async stop(): Promise<void> {
    this.server?.closeAllConnections();
    await new Promise((resolve) => (this.server ? this.server.close(resolve) : resolve(undefined)));
  }
}

interface OtlpTraces {
  resourceSpans?: {
    resource?: { attributes?: { key: string; value?: { stringValue?: string } }[] };
    scopeSpans?: { spans?: { traceId: string; spanId: string; parentSpanId?: string; name: string; kind: number }[] }[];
  }[];
}

/** OTLP/JSON ids are hex; base64 (protobuf JSON mapping) is accepted too. */
function hex(id: string): string {
  return /^[0-9a-f]*$/i.test(id) ? id.toLowerCase() : Buffer.from(id, 'base64').toString('hex');
}

/** A webhook receiver that answers 200 and keeps the headers of every delivery. */
async function webhookReceiver(): Promise<{ url: string; headers: IncomingHttpHeaders[]; server: Server }> {
  const headers: IncomingHttpHeaders[] = [];
  const server = createServer((req, res) => {
    req.resume();
    req.on('end', () => {
      headers.push(req.headers);
      res.writeHead(200).end();
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/hook`, headers, server };
}

const SPAN_KIND = { SERVER: 2, CLIENT: 3 };
const EXCHANGE = 'lavida.peer.v1.JointAttentionService/Exchange';

describe('metrics, traces and logs of one job through the four apps', () => {
  let redis: TestRedis;
  let system: TestSystem;
  let otlp: OtlpReceiver;
  let hooks: Awaited<ReturnType<typeof webhookReceiver>>;
  let job: JobView;
  const traceId = randomBytes(16).toString('hex');
  const clientSpanId = randomBytes(8).toString('hex');
  const scrapes: Record<string, Sample[]> = {};
  const prefix = freshPrefix();

  const metricsUrl = (app: 'api' | 'orchestrator' | 'und-worker' | 'gen-worker') =>
    app === 'api' ? `${system.apiUrl}/metrics` : `http://127.0.0.1:${system.metricsPorts[app]}/metrics`;
  const scrape = async (app: 'api' | 'orchestrator' | 'und-worker' | 'gen-worker'): Promise<Sample[]> => {
    const response = await fetch(metricsUrl(app), { headers: { authorization: `Bearer ${METRICS_TOKEN}` } });
    assert.equal(response.status, 200, `${app} /metrics`);
    assert.match(response.headers.get('content-type') ?? '', /^text\/plain; version=0\.0\.4/);
    const samples = parseMetrics(await response.text());
    assert.ok(
      samples.every((s) => s.labels.app === app),
      `${app}: every series is labelled app="${app}"`,
    );
    return samples;
  };

  before(async () => {
    redis = await startRedis();
    otlp = await new OtlpReceiver().start();
    hooks = await webhookReceiver();
    system = await new TestSystem({
      redisUrl: redis.url,
      prefix,
      metrics: true,
      env: {
        // The bundled model: the fixture has no task templates for plans and reflection.
        MODEL_DIR: MINI_MODEL,
        OTEL_EXPORTER_OTLP_ENDPOINT: otlp.url,
        OTEL_BSP_SCHEDULE_DELAY: 100,
        METRICS_TOKEN,
        WEBHOOK_ALLOW_PRIVATE: 'true',
        WEBHOOK_RETRY_SCHEDULE_MS: '200,200',
      },
    }).start();
    // The client's own trace: the api continues it.
    const created = await postJob(
      system.apiUrl,
      {
        task: 'text-to-image',
        // One correction sweep (four steps) after the schedule's: the request's value reaches the gen-worker.
        input: {
          prompt: 'a red circle left of a blue square',
          seed: 3,
          steps: STEPS,
          correction_sweeps: 1,
          plan: true,
          reflect: true,
          rounds: 2,
        },
        webhook: hooks.url,
      },
      { traceparent: `00-${traceId}-${clientSpanId}-01` },
    );
    assert.equal(created.status, 202, JSON.stringify(created.json));
    job = await waitForJob(system.apiUrl, String(created.json.id), 60_000);
    assert.equal(job.status, 'succeeded', system.dump());
    // Every webhook event delivered (start, a stage event per stage, completed).
    await waitFor(() => hooks.headers.length >= job.timeline.length + 2, 20_000, 'every webhook delivered');
    for (const app of ['api', 'orchestrator', 'und-worker', 'gen-worker'] as const) scrapes[app] = await scrape(app);
  });
  after(async () => {
    await system?.stop();
    hooks?.server.close();
    await otlp?.stop();
    await redis?.stop();
  });

  it('/metrics answers 401 without the METRICS_TOKEN, and /healthz answers on the metrics port', async () => {
    for (const app of ['api', 'orchestrator', 'gen-worker'] as const) {
      const response = await fetch(metricsUrl(app));
      assert.equal(response.status, 401, app);
      assert.equal(response.headers.get('www-authenticate'), 'Bearer');
    }
    const health = await fetch(`http://127.0.0.1:${system.metricsPorts['und-worker']}/healthz`);
    assert.equal(health.status, 200);
  });

  it('api: request durations by route, jobs submitted, process metrics', () => {
    const api = scrapes.api;
    positive(api, 'lavida_http_request_duration_seconds_count', { method: 'POST', route: '/v1/jobs', status_code: '202' });
    positive(api, 'lavida_http_request_duration_seconds_count', { method: 'GET', route: '/v1/jobs/:id', status_code: '200' });
    positive(api, 'lavida_http_request_duration_seconds_bucket', { route: '/v1/jobs', le: '+Inf' });
    assert.equal(value(api, 'lavida_jobs_submitted_total', { task: 'text-to-image' }), 1);
    positive(api, 'process_resident_memory_bytes');
    positive(api, 'nodejs_heap_size_used_bytes');
  });

  it('orchestrator: jobs by queue and state, queue depth, pipeline durations, webhook outcomes', async () => {
    const orch = scrapes.orchestrator;
    const stages = job.timeline.length;
    assert.equal(value(orch, 'lavida_jobs', { queue: 'pipeline', state: 'completed' }), 1);
    assert.equal(
      value(orch, 'lavida_jobs', { queue: 'generation', state: 'completed' }),
      job.timeline.filter((s) => s.stage === 'generate').length,
    );
    assert.equal(
      value(orch, 'lavida_jobs', { queue: 'understanding', state: 'completed' }),
      stages - job.timeline.filter((s) => s.stage === 'generate').length,
    );
    assert.equal(value(orch, 'lavida_jobs', { queue: 'webhooks', state: 'completed' }), stages + 2);
    for (const state of ['wait', 'prioritized', 'delayed', 'active', 'waiting-children', 'completed', 'failed']) {
      assert.notEqual(value(orch, 'lavida_jobs', { queue: 'generation', state }), undefined, `lavida_jobs state ${state}`);
    }
    for (const queue of ['pipeline', 'generation', 'understanding', 'webhooks'])
      assert.equal(value(orch, 'lavida_queue_depth', { queue }), 0);
    assert.equal(value(orch, 'lavida_pipeline_duration_seconds_count', { task: 'text-to-image', outcome: 'succeeded' }), 1);
    assert.equal(value(orch, 'lavida_webhook_deliveries_total', { outcome: 'delivered', status_class: '2xx' }), stages + 2);
    assert.equal(value(orch, 'lavida_webhook_delivery_duration_seconds_count', { outcome: 'delivered' }), stages + 2);
    positive(orch, 'lavida_webhook_delivery_duration_seconds_sum', { outcome: 'delivered' });

    // Queue depth counts every job not started yet: prioritized and delayed ones are not in the wait list.
    const connection = new Redis(redis.url, { maxRetriesPerRequest: null });
    const queue = new Queue('understanding', { connection, prefix });
    try {
      await queue.pause();
      await queue.add('respond', { task: 'respond', prompt: 'x' });
      await queue.add('respond', { task: 'respond', prompt: 'x' }, { priority: 3 });
      await queue.add('respond', { task: 'respond', prompt: 'x' }, { delay: 600_000 });
      const after = await scrape('orchestrator');
      assert.equal(value(after, 'lavida_queue_depth', { queue: 'understanding' }), 3);
      for (const state of ['wait', 'prioritized', 'delayed'])
        assert.equal(value(after, 'lavida_jobs', { queue: 'understanding', state }), 1, state);
    } finally {
      await queue.obliterate({ force: true }).catch(() => undefined);
      await queue.close();
      await connection.quit();
    }
  });

  it('gen-worker: stage latencies, diffusion steps, exchange bytes and round trips, model load', () => {
    const gen = scrapes['gen-worker'];
    const generates = job.timeline.filter((s) => s.stage === 'generate').length;
    assert.equal(
      value(gen, 'lavida_stage_duration_seconds_count', { queue: 'generation', stage: 'generate', outcome: 'succeeded' }),
      generates,
    );
    positive(gen, 'lavida_stage_duration_seconds_sum', { queue: 'generation', stage: 'generate' });
    assert.equal(value(gen, 'lavida_stage_wait_seconds_count', { queue: 'generation', stage: 'generate' }), generates);
    assert.equal(value(gen, 'lavida_diffusion_steps_total', { task: 'generate' }), generates * (STEPS + 4));
    assert.equal(value(gen, 'lavida_diffusion_step_duration_seconds_count', { task: 'generate' }), generates * (STEPS + 4));
    positive(gen, 'lavida_diffusion_step_duration_seconds_sum', { task: 'generate' });
    positive(gen, 'lavida_diffusion_steps_per_second', { task: 'generate' });
    positive(gen, 'lavida_exchange_bytes_total', { side: 'client', direction: 'sent' });
    positive(gen, 'lavida_exchange_bytes_total', { side: 'client', direction: 'received' });
    for (const kind of ['open', 'step', 'partial', 'close'])
      positive(gen, 'lavida_exchange_round_trip_seconds_count', { side: 'client', kind });
    assert.equal(value(gen, 'lavida_exchange_sessions_total', { side: 'client', outcome: 'closed' }), generates);
    positive(gen, 'lavida_model_load_seconds', { branch: 'gen' });
  });

  it('und-worker: stage latencies of plan and reflect, the serving side of the exchange, model load', () => {
    const und = scrapes['und-worker'];
    const gen = scrapes['gen-worker'];
    for (const stage of ['plan', 'reflect']) {
      const count = job.timeline.filter((s) => s.stage === stage).length;
      assert.equal(
        value(und, 'lavida_stage_duration_seconds_count', { queue: 'understanding', stage, outcome: 'succeeded' }),
        count,
        stage,
      );
    }
    // Both sides count the same tensor payload and the same exchanges.
    for (const [server, client] of [
      ['received', 'sent'],
      ['sent', 'received'],
    ]) {
      assert.equal(
        positive(und, 'lavida_exchange_bytes_total', { side: 'server', direction: server }),
        value(gen, 'lavida_exchange_bytes_total', { side: 'client', direction: client }),
      );
    }
    for (const kind of ['open', 'step', 'partial', 'close']) {
      assert.equal(
        positive(und, 'lavida_exchange_round_trip_seconds_count', { side: 'server', kind }),
        value(gen, 'lavida_exchange_round_trip_seconds_count', { side: 'client', kind }),
        kind,
      );
    }
    assert.equal(
      value(und, 'lavida_exchange_sessions_total', { side: 'server', outcome: 'closed' }),
      job.timeline.filter((s) => s.stage === 'generate').length,
    );
    positive(und, 'lavida_model_load_seconds', { branch: 'und' });
  });

  it("one trace, the client's, holds spans of the api, the orchestrator and both workers' exchange", async () => {
    const services = ['lavida-api', 'lavida-orchestrator', 'lavida-gen-worker', 'lavida-und-worker'];
    // Spans arrive as they end, batched: wait for every app's, and for every parent of every span.
    let orphans: SpanRecord[] = [];
    const spans = await waitFor(
      () => {
        const ours = otlp.spans.filter((s) => s.traceId === traceId);
        const ids = new Set(ours.map((s) => s.spanId));
        orphans = ours.filter((s) => s.parentSpanId !== clientSpanId && !ids.has(s.parentSpanId));
        const exchange = ours.some((s) => s.service === 'lavida-und-worker' && s.name === EXCHANGE);
        return services.every((service) => ours.some((s) => s.service === service)) && exchange && orphans.length === 0 ? ours : undefined;
      },
      20_000,
      `spans of ${services.join(', ')} in trace ${traceId}, every parent among them`,
    ).catch((error: Error) => {
      throw new Error(
        `${error.message}; orphans: ${JSON.stringify(orphans)}; services: ${[...new Set(otlp.spans.map((s) => s.service))].join(', ')}`,
      );
    });
    assert.ok(otlp.requests.every((r) => r.contentType === 'application/json'));
    const byId = new Map(spans.map((s) => [s.spanId, s]));
    // The api's request span continues the client's span; the submission is its child.
    const request = spans.find((s) => s.service === 'lavida-api' && s.name === 'POST /v1/jobs');
    assert.ok(request, JSON.stringify(spans.filter((s) => s.service === 'lavida-api')));
    assert.equal(request.parentSpanId, clientSpanId);
    const submit = spans.find((s) => s.name === 'job.submit');
    assert.equal(submit?.parentSpanId, request.spanId);
    // The orchestrator processes the pipeline and queues each stage in that trace.
    assert.ok(spans.some((s) => s.service === 'lavida-orchestrator' && s.name === 'process pipeline'));
    assert.ok(spans.some((s) => s.service === 'lavida-gen-worker' && s.name === 'process generation'));
    assert.ok(spans.some((s) => s.service === 'lavida-und-worker' && s.name === 'process understanding'));
    assert.ok(spans.some((s) => s.service === 'lavida-orchestrator' && s.name === 'process webhooks'));
    // The exchange: the und-worker's server span is a child of the gen-worker's client span.
    const servers = spans.filter((s) => s.service === 'lavida-und-worker' && s.name === EXCHANGE);
    for (const server of servers) {
      assert.equal(server.kind, SPAN_KIND.SERVER);
      const client = byId.get(server.parentSpanId);
      assert.equal(client?.service, 'lavida-gen-worker');
      assert.equal(client?.kind, SPAN_KIND.CLIENT);
      assert.equal(client?.name, EXCHANGE);
    }
    // Webhook deliveries carry the trace to the receiver.
    assert.ok(hooks.headers.every((h) => String(h.traceparent).includes(traceId)));
  });

  it('log lines written while the job ran carry its jobId (and its trace_id)', () => {
    const id = job.id;
    const lines = (app: 'orchestrator' | 'gen' | 'und') => system[app].lines;
    const named = (app: 'orchestrator' | 'gen' | 'und', msg: string) => lines(app).filter((l) => l.msg === msg);
    const expectations: [app: 'orchestrator' | 'gen' | 'und', msg: string, count: number][] = [
      ['orchestrator', 'stage queued', job.timeline.length],
      ['orchestrator', 'pipeline succeeded', 1],
      ['orchestrator', 'webhook delivered', job.timeline.length + 2],
      ['gen', 'generated', job.timeline.filter((s) => s.stage === 'generate').length],
      ['und', 'answered', job.timeline.filter((s) => s.stage !== 'generate').length],
      ['und', 'session ended', job.timeline.filter((s) => s.stage === 'generate').length],
    ];
    for (const [app, msg, count] of expectations) {
      const found = named(app, msg);
      assert.equal(found.length, count, `${app} "${msg}"`);
      for (const line of found) {
        assert.equal(line.jobId, id, `${app} ${JSON.stringify(line)}`);
        assert.equal(line.trace_id, traceId, `${app} ${JSON.stringify(line)}`);
      }
    }
    // Stage workers' lines name the stage job too.
    assert.ok(named('gen', 'generated').every((l) => typeof l.stageJobId === 'string' && l.stageJobId.startsWith(id)));
    // Every line of the job's trace names the job.
    for (const app of ['orchestrator', 'gen', 'und'] as const) {
      const traced = lines(app).filter((l) => l.trace_id === traceId);
      assert.ok(traced.length > 0, app);
      for (const line of traced) assert.equal(line.jobId, id, `${app} ${JSON.stringify(line)}`);
    }
  });
});
