import { AsyncLocalStorage } from 'node:async_hooks';
import {
  context,
  propagation,
  ROOT_CONTEXT,
  SpanKind,
  SpanStatusCode,
  trace,
  type Attributes,
  type Context,
  type Span,
  type TextMapGetter,
  type TextMapSetter,
} from '@opentelemetry/api';
import type { NodeTracerProvider, Sampler, SamplingResult } from '@opentelemetry/sdk-trace-node';
import type { BullMQOtel } from 'bullmq-otel';

export { SpanKind, SpanStatusCode, type Span, type Context };

let provider: NodeTracerProvider | undefined;
let bullmq: BullMQOtel | undefined;

/**
 * Which trace exporter the environment asks for (the standard OpenTelemetry variables): none unless
 * `OTEL_TRACES_EXPORTER` is `otlp` or `console`, or an OTLP endpoint is set
 * (`OTEL_EXPORTER_OTLP_ENDPOINT`, `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`); `OTEL_TRACES_EXPORTER=none`
 * or `OTEL_SDK_DISABLED=true` turn tracing off.
 */
export function tracesExporter(env: NodeJS.ProcessEnv = process.env): 'otlp' | 'console' | undefined {
  if (env.OTEL_SDK_DISABLED === 'true') return undefined;
  const wanted = (env.OTEL_TRACES_EXPORTER ?? '')
    .split(',')
    .map((name) => name.trim())
    .filter(Boolean);
  if (wanted.includes('none')) return undefined;
  if (wanted.includes('otlp')) return 'otlp';
  if (wanted.includes('console')) return 'console';
  if (env.OTEL_EXPORTER_OTLP_TRACES_ENDPOINT || env.OTEL_EXPORTER_OTLP_ENDPOINT) return 'otlp';
  return undefined;
}

/** Root spans of BullMQ's background loops (polling, stalled-job checks): not worth a trace each. */
const QUIET_ROOTS = /^(getNextJob|startStalledCheckTimer|moveStalledJobsToWait|close|pause|resume)\b/;

/**
 * Starts tracing for this process when the environment configures an exporter (see
 * `tracesExporter`): service.name `lavida-<app>` (unless `OTEL_SERVICE_NAME`), W3C trace context,
 * spans batched to the exporter (`OTEL_BSP_*`). Returns whether tracing is on. Without it every
 * span below is a no-op, and the SDK is never loaded.
 */
export async function initTracing(app: string, env: NodeJS.ProcessEnv = process.env): Promise<boolean> {
  if (provider) return true;
  const exporter = tracesExporter(env);
  if (!exporter) return false;
  const [sdk, { resourceFromAttributes }, { OTLPTraceExporter }, { BullMQOtel }] = await Promise.all([
    import('@opentelemetry/sdk-trace-node'),
    import('@opentelemetry/resources'),
    import('@opentelemetry/exporter-trace-otlp-http'),
    import('bullmq-otel'),
  ]);
  const quietRoots: Sampler = {
    shouldSample: (_context: Context, _traceId: string, name: string): SamplingResult => ({
      decision: QUIET_ROOTS.test(name) ? sdk.SamplingDecision.NOT_RECORD : sdk.SamplingDecision.RECORD_AND_SAMPLED,
    }),
    toString: () => 'QuietRootSampler',
  };
  provider = new sdk.NodeTracerProvider({
    resource: resourceFromAttributes({
      'service.name': env.OTEL_SERVICE_NAME || `lavida-${app}`,
      'service.namespace': 'lavida',
    }),
    sampler: new sdk.ParentBasedSampler({ root: quietRoots }),
    spanProcessors: [new sdk.BatchSpanProcessor(exporter === 'otlp' ? new OTLPTraceExporter() : new sdk.ConsoleSpanExporter())],
  });
  provider.register();
  bullmq = new BullMQOtel({ tracerName: 'bullmq' });
  return true;
}

/** Whether this process traces. */
export function tracingEnabled(): boolean {
  return provider !== undefined;
}

/** Sends the spans still buffered and stops tracing. */
export async function shutdownTracing(): Promise<void> {
  const current = provider;
  provider = undefined;
  bullmq = undefined;
  await current?.shutdown().catch(() => undefined);
}

/**
 * BullMQ's telemetry option for a Queue or a Worker (spread it into the options): with tracing on,
 * adding a job records the active trace context in the job, and processing it continues that trace.
 */
export function bullmqTelemetry(): { telemetry?: BullMQOtel } {
  return bullmq ? { telemetry: bullmq } : {};
}

const tracer = () => trace.getTracer('lavida');

/** Runs `fn` in a new active span (ended when it settles; a throw marks it as an error). */
export async function inSpan<T>(
  name: string,
  options: { kind?: SpanKind; attributes?: Attributes; parent?: Context },
  fn: (span: Span) => Promise<T>,
): Promise<T> {
  const parent = options.parent ?? context.active();
  return tracer().startActiveSpan(
    name,
    { kind: options.kind ?? SpanKind.INTERNAL, attributes: options.attributes },
    parent,
    async (span) => {
      try {
        return await fn(span);
      } catch (error) {
        endWithError(span, error);
        throw error;
      } finally {
        span.end();
      }
    },
  );
}

/** Starts a span that the caller ends, a child of `parent` (default: the active context). */
export function startSpan(name: string, options: { kind?: SpanKind; attributes?: Attributes; parent?: Context } = {}): Span {
  return tracer().startSpan(
    name,
    { kind: options.kind ?? SpanKind.INTERNAL, attributes: options.attributes },
    options.parent ?? context.active(),
  );
}

/** Marks a span as failed with this error (the caller still ends it). */
export function endWithError(span: Span, error: unknown): void {
  span.recordException(error instanceof Error ? error : String(error));
  span.setStatus({ code: SpanStatusCode.ERROR, message: error instanceof Error ? error.message : String(error) });
}

/** The context with this span active, for `injectContext` or running code under it. */
export function contextWithSpan(span: Span, parent: Context = context.active()): Context {
  return trace.setSpan(parent, span);
}

/** Runs `fn` with `ctx` as the active context. */
export function withContext<T>(ctx: Context, fn: () => T): T {
  return context.with(ctx, fn);
}

/** Writes `ctx`'s trace context (W3C `traceparent`, `tracestate`) into a carrier: HTTP headers, gRPC metadata. */
export function injectContext<C>(ctx: Context, carrier: C, setter: TextMapSetter<C>): void {
  propagation.inject(ctx, carrier, setter);
}

/** The active trace context as HTTP headers (`traceparent`, `tracestate`); empty without tracing. */
export function traceHeaders(): Record<string, string> {
  const headers: Record<string, string> = {};
  propagation.inject(context.active(), headers, { set: (carrier, key, value) => (carrier[key] = value) });
  return headers;
}

/** The trace context a carrier brings (the root context when it brings none). */
export function extractContext<C>(carrier: C, getter: TextMapGetter<C>): Context {
  return propagation.extract(ROOT_CONTEXT, carrier, getter);
}

/** `trace_id` and `span_id` of the active span, for log lines; empty without one. */
export function traceFields(): { trace_id?: string; span_id?: string } {
  const span = trace.getActiveSpan();
  if (!span) return {};
  const { traceId, spanId, traceFlags } = span.spanContext();
  // Unsampled (no-op) spans carry no trace worth naming.
  if (!(traceFlags & 1)) return {};
  return { trace_id: traceId, span_id: spanId };
}

// ---- log context ----

const logContext = new AsyncLocalStorage<Record<string, unknown>>();

/** Runs `fn` with these fields on every log line it (and whatever it awaits) writes: e.g. the job id. */
export function withLogFields<T>(fields: Record<string, unknown>, fn: () => T): T {
  return logContext.run({ ...logContext.getStore(), ...fields }, fn);
}

/** The log fields of the running job, if any. */
export function logFields(): Record<string, unknown> | undefined {
  return logContext.getStore();
}
