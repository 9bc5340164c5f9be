import type { Metadata } from '@grpc/grpc-js';
import {
  contextWithSpan,
  exchangeBytes,
  exchangeRoundTrip,
  extractContext,
  injectContext,
  logFields,
  SpanKind,
  startSpan,
  type Context,
  type Span,
} from '@lavida/telemetry';

/** Name of the exchange's spans on both sides (the gRPC method). */
export const EXCHANGE_SPAN = 'lavida.peer.v1.JointAttentionService/Exchange';
/** gRPC metadata carrying the pipeline job id of a session, for the serving side's log lines. */
export const JOB_ID_METADATA = 'lavida-job-id';

const RPC = { 'rpc.system': 'grpc', 'rpc.service': 'lavida.peer.v1.JointAttentionService', 'rpc.method': 'Exchange' };

/**
 * The driving side of one session: a client span (a child of the running stage's span) and the
 * call's metadata carrying its trace context (`traceparent`) and the job id of the running stage.
 */
export function clientSession(metadata: Metadata, address: string, sessionId: string): Span {
  const span = startSpan(EXCHANGE_SPAN, {
    kind: SpanKind.CLIENT,
    attributes: { ...RPC, 'server.address': address, 'lavida.session_id': sessionId },
  });
  injectContext(contextWithSpan(span), metadata, { set: (carrier, key, value) => carrier.set(key, value) });
  const jobId = logFields()?.jobId;
  if (typeof jobId === 'string') metadata.set(JOB_ID_METADATA, jobId);
  return span;
}

/** The serving side of one session: a server span continuing the driver's trace, and the job id it sent. */
export function serverSession(metadata: Metadata): { span: Span; context: Context; jobId?: string } {
  const parent = extractContext(metadata, {
    keys: (carrier) => Object.keys(carrier.getMap()),
    get: (carrier, key) => {
      const values = carrier.get(key);
      return values.length ? String(values[0]) : undefined;
    },
  });
  const span = startSpan(EXCHANGE_SPAN, { kind: SpanKind.SERVER, attributes: RPC, parent });
  const jobId = metadata.get(JOB_ID_METADATA)[0];
  return { span, context: contextWithSpan(span, parent), ...(jobId !== undefined ? { jobId: String(jobId) } : {}) };
}

/** The exchange a request starts: `projections` is a text side's layer driving an image side (serve_side SIDE_IMAGE). */
export type ExchangeKind = 'open' | 'step' | 'partial' | 'projections' | 'close';

/** One exchange for lavida_exchange_round_trip_seconds and lavida_exchange_bytes_total. */
export function recordExchange(side: 'client' | 'server', kind: ExchangeKind, ms: number, sent: number, received: number): void {
  exchangeRoundTrip.observe({ side, kind }, ms / 1000);
  if (sent) exchangeBytes.inc({ side, direction: 'sent' }, sent);
  if (received) exchangeBytes.inc({ side, direction: 'received' }, received);
}
