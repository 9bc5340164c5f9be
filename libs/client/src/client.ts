import { LavidaApiError, LavidaError, LavidaNetworkError, LavidaTimeoutError } from './errors.js';
import { parseServerSentEvents, type JobEvent } from './events.js';
import { isFinal, type CreateJob, type JobPage, type JobView, type ListJobsOptions } from './types.js';

export interface LavidaClientOptions {
  /** The api's base URL, e.g. `http://127.0.0.1:8080`. */
  baseUrl: string;
  /** Sent as `Authorization: Bearer <apiKey>` (only to the base URL's origin). */
  apiKey?: string;
  /** A fetch implementation; default Node's global fetch. */
  fetch?: typeof globalThis.fetch;
  /** Extra headers on every request. */
  headers?: Record<string, string>;
}

export interface RequestOptions {
  signal?: AbortSignal;
}

export interface CreateJobOptions extends RequestOptions {
  /**
   * `Prefer: wait=N`: the api answers when the job has finished, if within N seconds (it caps N at 60);
   * otherwise it answers the queued job as without it.
   */
  wait?: number;
  /** Sent as the `Idempotency-Key` header. */
  idempotencyKey?: string;
}

export interface WaitOptions extends RequestOptions {
  /** Gives up with a LavidaTimeoutError after this long; default no limit. */
  timeoutMs?: number;
  /** Time between polls; default 500 ms. */
  intervalMs?: number;
  /** Called with the first state seen and whenever the status, the progress or the running stage changes. */
  onProgress?: (job: JobView) => void | Promise<void>;
  /** Failed polls (network errors, 502/503/504) in a row that are retried; default 3. A 429 waits its `Retry-After` and is always retried. */
  retries?: number;
}

export interface EventsOptions extends RequestOptions {
  /** Reconnects after a stream that breaks before `done` (a network error), this many times in a row; default 3. */
  retries?: number;
}

const JOB_EVENTS = new Set(['status', 'stage', 'progress', 'done', 'error']);

const FILE_PATH = /\/v1\/jobs\/([^/?#]+)\/files\/([^/?#]+)$/;

/** A typed client of the job API (`/v1/jobs`). */
export class LavidaClient {
  readonly baseUrl: string;
  private readonly origin: string;
  private readonly apiKey?: string;
  private readonly fetchImpl: typeof globalThis.fetch;
  private readonly headers: Record<string, string>;

  constructor(options: LavidaClientOptions) {
    if (!URL.canParse(options.baseUrl)) throw new TypeError(`baseUrl is not an absolute URL: ${options.baseUrl}`);
    const url = new URL(options.baseUrl);
    if (url.protocol !== 'http:' && url.protocol !== 'https:') throw new TypeError(`baseUrl must be http(s): ${options.baseUrl}`);
    this.baseUrl = `${url.origin}${url.pathname}`.replace(/\/+$/, '');
    this.origin = url.origin;
    this.apiKey = options.apiKey || undefined;
    // Resolved per call, so that a fetch replaced after construction (tests) is used.
    this.fetchImpl = options.fetch ?? ((input, init) => globalThis.fetch(input, init));
    this.headers = { ...options.headers };
  }

  /** `POST /v1/jobs`: the queued job (202), or with `wait` the finished one when it finishes in time (201). */
  async createJob(body: CreateJob, options: CreateJobOptions = {}): Promise<JobView> {
    const headers: Record<string, string> = { 'content-type': 'application/json' };
    if (options.wait !== undefined) {
      if (!Number.isFinite(options.wait) || options.wait < 0) throw new TypeError(`wait must be a number of seconds ≥ 0: ${options.wait}`);
      headers.prefer = `wait=${Math.ceil(options.wait)}`;
    }
    if (options.idempotencyKey) headers['idempotency-key'] = options.idempotencyKey;
    return this.json<JobView>('POST', this.url('/v1/jobs'), { body: JSON.stringify(body), headers, signal: options.signal });
  }

  /** `GET /v1/jobs/{id}` */
  getJob(id: string, options: RequestOptions = {}): Promise<JobView> {
    return this.json<JobView>('GET', this.url(`/v1/jobs/${segment(id, 'id')}`), options);
  }

  /** `GET /v1/jobs`: one page, newest first. */
  listJobs(query: ListJobsOptions = {}, options: RequestOptions = {}): Promise<JobPage> {
    const params = new URLSearchParams();
    if (query.task) params.set('task', query.task);
    if (query.status) params.set('status', query.status);
    if (query.limit !== undefined) params.set('limit', String(query.limit));
    if (query.cursor) params.set('cursor', query.cursor);
    const search = params.toString();
    return this.json<JobPage>('GET', this.url(`/v1/jobs${search ? `?${search}` : ''}`), options);
  }

  /**
   * Every page of a listing, following each page's `next` (its cursor, against this client's base URL).
   * `limit` is the page size.
   */
  async *pages(query: ListJobsOptions = {}, options: RequestOptions = {}): AsyncGenerator<JobPage, void, undefined> {
    let page = await this.listJobs(query, options);
    for (;;) {
      yield page;
      if (!page.next) return;
      const cursor = URL.canParse(page.next) ? new URL(page.next).searchParams.get('cursor') : null;
      if (!cursor) throw new LavidaError(`the api's next page has no cursor: ${page.next}`);
      page = await this.listJobs({ ...query, cursor }, options);
    }
  }

  /** Every job of a listing, page after page (`for await (const job of client.jobs({ status: 'failed' }))`). */
  async *jobs(query: ListJobsOptions = {}, options: RequestOptions = {}): AsyncGenerator<JobView, void, undefined> {
    for await (const page of this.pages(query, options)) yield* page.results;
  }

  /** `POST /v1/jobs/{id}/cancel`: the job as it then is (a finished job is answered unchanged). */
  cancelJob(id: string, options: RequestOptions = {}): Promise<JobView> {
    return this.json<JobView>('POST', this.url(`/v1/jobs/${segment(id, 'id')}/cancel`), options);
  }

  /**
   * Polls `GET /v1/jobs/{id}` until the job is `succeeded`, `failed` or `canceled`, and answers it
   * (a failed job is answered, not thrown). Throws LavidaTimeoutError after `timeoutMs`.
   */
  async waitForJob(id: string, options: WaitOptions = {}): Promise<JobView> {
    const interval = options.intervalMs ?? 500;
    const retries = options.retries ?? 3;
    const deadline = options.timeoutMs === undefined ? Infinity : Date.now() + options.timeoutMs;
    let seen: string | undefined;
    let last: JobView | undefined;
    let failures = 0;
    for (;;) {
      let job: JobView;
      try {
        job = await this.getJob(id, { signal: options.signal });
        failures = 0;
      } catch (error) {
        if (options.signal?.aborted || Date.now() >= deadline) throw error;
        if (error instanceof LavidaApiError && error.status === 429) {
          await sleep(Math.min(Math.max(error.retryAfterMs ?? 1000, interval), 60_000, deadline - Date.now()), options.signal);
          continue;
        }
        const transient =
          error instanceof LavidaNetworkError || (error instanceof LavidaApiError && [502, 503, 504].includes(error.status));
        if (!transient || (failures += 1) > retries) throw error;
        await sleep(Math.min(interval * 2 ** failures, 5000, deadline - Date.now()), options.signal);
        continue;
      }
      last = job;
      const state = JSON.stringify([job.status, job.progress, job.timeline.length, job.timeline.at(-1)?.status]);
      if (state !== seen) {
        seen = state;
        await options.onProgress?.(job);
      }
      if (isFinal(job.status)) return job;
      const left = deadline - Date.now();
      if (left <= 0) throw new LavidaTimeoutError(last, options.timeoutMs ?? 0);
      await sleep(Math.min(interval, left), options.signal);
    }
  }

  /**
   * `GET /v1/jobs/{id}/events`: the job's server-sent events as they come (`for await (const e of
   * client.events(id))`), ending after `done` (or `error`). A stream that breaks before then is
   * reopened up to `retries` times in a row, and starts again with a `status` event holding the whole
   * job. An unknown job throws LavidaApiError 404 before any event.
   */
  async *events(id: string, options: EventsOptions = {}): AsyncGenerator<JobEvent, void, undefined> {
    const url = this.url(`/v1/jobs/${segment(id, 'id')}/events`);
    const retries = options.retries ?? 3;
    let failures = 0;
    for (;;) {
      const response = await this.request('GET', url, { headers: { accept: 'text/event-stream' }, signal: options.signal });
      if (!response.body) throw new LavidaApiError(response.status, 'invalid_response', 'the event stream has no body', url, 'GET');
      const body = response.body as unknown as AsyncIterable<Uint8Array>;
      try {
        for await (const raw of parseServerSentEvents(body)) {
          if (!JOB_EVENTS.has(raw.event)) continue;
          let data: unknown;
          try {
            data = JSON.parse(raw.data);
          } catch {
            throw new LavidaApiError(response.status, 'invalid_response', `an event is not JSON: ${raw.data.slice(0, 200)}`, url, 'GET');
          }
          failures = 0;
          yield { event: raw.event, data } as JobEvent;
          if (raw.event === 'done' || raw.event === 'error') return;
        }
      } catch (error) {
        if (error instanceof LavidaError || options.signal?.aborted) throw error;
        if ((failures += 1) > retries) throw new LavidaNetworkError(url, 'GET', error);
        await sleep(Math.min(250 * 2 ** failures, 5000), options.signal);
        continue;
      } finally {
        await response.body.cancel().catch(() => undefined);
      }
      // The stream ended without `done` (the server went away): reopen it.
      if ((failures += 1) > retries) throw new LavidaNetworkError(url, 'GET', new Error('the event stream ended before the job finished'));
      await sleep(Math.min(250 * 2 ** failures, 5000), options.signal);
    }
  }

  /**
   * The bytes of a job's file: a URL the api answered (`output.image`, `attempts[].image`, …), or a
   * file name (`image.png`, `attempt-1.png`, `input.png`) with the job's id. The api builds file URLs
   * from PUBLIC_URL or its request's host; they are fetched from this client's base URL.
   */
  async downloadFile(urlOrName: string, jobId?: string, options: RequestOptions = {}): Promise<Buffer> {
    const response = await this.request('GET', this.fileUrl(urlOrName, jobId), { signal: options.signal });
    return Buffer.from(await response.arrayBuffer());
  }

  /** The URL downloadFile fetches. */
  fileUrl(urlOrName: string, jobId?: string): string {
    if (jobId !== undefined && !urlOrName.includes('/'))
      return this.url(`/v1/jobs/${segment(jobId, 'jobId')}/files/${segment(urlOrName, 'name')}`);
    const absolute = URL.canParse(urlOrName);
    const path = absolute ? new URL(urlOrName).pathname : urlOrName.split(/[?#]/)[0];
    const file = FILE_PATH.exec(path);
    if (file) return this.url(`/v1/jobs/${file[1]}/files/${file[2]}`);
    if (absolute) return urlOrName;
    if (urlOrName.startsWith('/')) return this.url(urlOrName);
    throw new TypeError(`not a file URL: ${urlOrName} (a file name needs the job's id)`);
  }

  private url(path: string): string {
    return `${this.baseUrl}${path}`;
  }

  private async json<T>(
    method: string,
    url: string,
    init: { body?: string; headers?: Record<string, string>; signal?: AbortSignal },
  ): Promise<T> {
    const response = await this.request(method, url, init);
    const text = await response.text();
    try {
      return JSON.parse(text) as T;
    } catch {
      throw new LavidaApiError(response.status, 'invalid_response', `the answer is not JSON: ${text.slice(0, 200)}`, url, method);
    }
  }

  /** One request; an error status throws LavidaApiError, no answer LavidaNetworkError. */
  private async request(
    method: string,
    url: string,
    init: { body?: string; headers?: Record<string, string>; signal?: AbortSignal },
  ): Promise<Response> {
    const headers: Record<string, string> = { accept: 'application/json', ...this.headers, ...init.headers };
    if (this.apiKey && new URL(url).origin === this.origin) headers.authorization = `Bearer ${this.apiKey}`;
    let response: Response;
    try {
      response = await this.fetchImpl(url, { method, headers, body: init.body, signal: init.signal });
    } catch (error) {
      throw new LavidaNetworkError(url, method, error);
    }
    if (!response.ok) throw await LavidaApiError.from(response, method, url);
    return response;
  }
}

function segment(value: string, name: string): string {
  if (!value) throw new TypeError(`${name} must not be empty`);
  return encodeURIComponent(value);
}

function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(signal.reason as Error);
    const timer = setTimeout(() => {
      signal?.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    const onAbort = () => {
      clearTimeout(timer);
      reject(signal!.reason as Error);
    };
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}
