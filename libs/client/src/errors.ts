import type { JobView } from './types.js';

/** Base class of every error the client throws. */
export class LavidaError extends Error {
  override name = 'LavidaError';
}

/** The api answered with an error status: `{"error":{status,code,message,field}}`. */
export class LavidaApiError extends LavidaError {
  override name = 'LavidaApiError';

  constructor(
    /** HTTP status of the answer. */
    readonly status: number,
    /** The api's error code (`invalid_request`, `invalid_image`, `not_found`, …); `http_<status>` when the body had none. */
    readonly code: string,
    message: string,
    /** The request's URL and method. */
    readonly url: string,
    readonly method: string,
    /** The wrong field of a 400 (e.g. `input.steps`). */
    readonly field?: string,
    /** A 429's or 503's `Retry-After`, in milliseconds. */
    readonly retryAfterMs?: number,
  ) {
    super(message);
  }

  /** Reads an error answer; a body that is not the api's error shape still gives status and text. */
  static async from(response: Response, method: string, url: string): Promise<LavidaApiError> {
    const text = await response.text().catch(() => '');
    let parsed: unknown;
    try {
      parsed = JSON.parse(text);
    } catch {
      parsed = undefined;
    }
    const retryAfter = retryAfterMs(response.headers.get('retry-after'));
    const error = (parsed as { error?: unknown } | undefined)?.error;
    if (error && typeof error === 'object') {
      const body = error as { status?: unknown; code?: unknown; message?: unknown; field?: unknown };
      return new LavidaApiError(
        typeof body.status === 'number' ? body.status : response.status,
        typeof body.code === 'string' ? body.code : `http_${response.status}`,
        typeof body.message === 'string' ? body.message : response.statusText || `HTTP ${response.status}`,
        url,
        method,
        typeof body.field === 'string' ? body.field : undefined,
        retryAfter,
      );
    }
    const detail = text.trim().replace(/\s+/g, ' ').slice(0, 200);
    return new LavidaApiError(
      response.status,
      `http_${response.status}`,
      detail || response.statusText || `HTTP ${response.status}`,
      url,
      method,
      undefined,
      retryAfter,
    );
  }
}

/** `Retry-After`: seconds or an HTTP date. */
function retryAfterMs(value: string | null): number | undefined {
  if (!value) return undefined;
  if (/^\d+$/.test(value.trim())) return Number(value) * 1000;
  const at = Date.parse(value);
  return Number.isNaN(at) ? undefined : Math.max(0, at - Date.now());
}

/** The request did not get an answer (connection refused, DNS, reset, aborted). */
export class LavidaNetworkError extends LavidaError {
  override name = 'LavidaNetworkError';

  constructor(
    readonly url: string,
    readonly method: string,
    cause: unknown,
  ) {
    super(`${method} ${url}: ${describeCause(cause)}`, { cause });
  }
}

/** waitForJob ran out of time; `job` is the last state seen. */
export class LavidaTimeoutError extends LavidaError {
  override name = 'LavidaTimeoutError';

  constructor(
    readonly job: JobView,
    readonly timeoutMs: number,
  ) {
    super(`job ${job.id} did not finish within ${timeoutMs} ms (status ${job.status})`);
  }
}

/** fetch's TypeError says only "fetch failed": the reason is in its cause (ECONNREFUSED, ENOTFOUND, …). */
function describeCause(cause: unknown): string {
  const parts: string[] = [];
  let current: unknown = cause;
  for (let depth = 0; current && depth < 4; depth += 1) {
    if (current instanceof Error) {
      const code = (current as { code?: unknown }).code;
      const message = current.message;
      // Node's AggregateError of a refused dual-stack connect has an empty message and the code.
      const text = typeof code === 'string' ? (message.includes(code) ? message : message ? `${message} (${code})` : code) : message;
      if (text && !parts.includes(text)) parts.push(text);
      current = current.cause;
    } else {
      parts.push(typeof current === 'string' ? current : JSON.stringify(current));
      break;
    }
  }
  return parts.join(': ') || 'request failed';
}
