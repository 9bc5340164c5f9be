import type { IncomingHttpHeaders } from 'node:http';
import type { NextFunction, Request, Response } from 'express';
import {
  contextWithSpan,
  extractContext,
  httpDuration,
  SpanKind,
  SpanStatusCode,
  startSpan,
  withContext,
  type Context,
} from '@lavida/telemetry';

/** Probes and scrapes: measured, never a trace of their own. */
const UNTRACED = new Set(['/healthz', '/readyz', '/metrics']);
const contexts = new WeakMap<Request, Context>();

/**
 * First middleware (before the body is parsed): lavida_http_request_duration_seconds for every
 * request, by the route it matched, and a server span continuing the caller's `traceparent`.
 */
export function httpTelemetry(req: Request, res: Response, next: NextFunction): void {
  const started = performance.now();
  const traced = !UNTRACED.has(req.path);
  const parent = traced ? extractContext(req.headers, headerGetter) : undefined;
  const span = parent
    ? startSpan(`${req.method} ${req.path}`, { kind: SpanKind.SERVER, parent, attributes: { 'http.request.method': req.method } })
    : undefined;
  if (span && parent) contexts.set(req, contextWithSpan(span, parent));
  res.once('close', () => {
    // The matched pattern (`/v1/jobs/:id`), never the path itself: the label set stays small.
    const path = (req.route as { path?: unknown } | undefined)?.path;
    const route = typeof path === 'string' ? `${req.baseUrl}${path}` : 'unmatched';
    httpDuration.observe({ method: req.method, route, status_code: String(res.statusCode) }, (performance.now() - started) / 1000);
    if (!span) return;
    span.updateName(`${req.method} ${route}`);
    span.setAttributes({ 'http.route': route, 'http.response.status_code': res.statusCode });
    if (res.statusCode >= 500) span.setStatus({ code: SpanStatusCode.ERROR });
    span.end();
  });
  next();
}

/** Second middleware (after the body parser, which loses the async context): the request's span is active in its handler. */
export function httpTraceContext(req: Request, _res: Response, next: NextFunction): void {
  const context = contexts.get(req);
  if (context) withContext(context, next);
  else next();
}

const headerGetter = {
  keys: (headers: IncomingHttpHeaders) => Object.keys(headers),
  get: (headers: IncomingHttpHeaders, key: string) => {
    const value = headers[key];
    return Array.isArray(value) ? value[0] : value;
  },
};
