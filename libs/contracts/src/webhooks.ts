import { isIPv4, isIPv6 } from 'node:net';
import { z } from 'zod';
import type { JobStatus, PlanItem, Task } from './jobs.js';

/*
 * Webhooks (Standard Webhooks): per job, a URL and the events it wants. The orchestrator queues one
 * delivery job per event (QueueName.Webhooks, JobName.Deliver) whose job id is the `webhook-id`.
 */

/** Events a job's webhook can ask for (`webhook_events_filter`). */
export const WEBHOOK_EVENTS = ['start', 'stage', 'completed'] as const;
export type WebhookEvent = (typeof WEBHOOK_EVENTS)[number];

/** A job's webhook, as queued with the pipeline (PipelineJobData.webhook). */
export interface PipelineWebhook {
  url: string;
  events: WebhookEvent[];
}

/** An absolute http(s) URL without credentials, at most 2048 characters. */
export const WebhookUrlSchema = z
  .string()
  .max(2048, 'must be at most 2048 characters')
  .refine((value) => {
    if (!URL.canParse(value)) return false;
    const url = new URL(value);
    return (url.protocol === 'http:' || url.protocol === 'https:') && url.hostname !== '';
  }, 'must be an absolute http(s) URL')
  .refine(
    (value) => !URL.canParse(value) || (new URL(value).username === '' && new URL(value).password === ''),
    'must not contain credentials',
  );

/** The top-level webhook fields of every `POST /v1/jobs` body (Replicate style). */
export const webhookFields = {
  webhook: WebhookUrlSchema.optional(),
  /** Which events are sent; default all. */
  webhook_events_filter: z.array(z.enum(WEBHOOK_EVENTS)).min(1, 'must name at least one event').max(WEBHOOK_EVENTS.length).optional(),
};

/** What a finished stage produced, as in the job's timeline. */
export interface WebhookStage {
  /** plan, generate, reflect, edit, ground, understand, respond */
  name: string;
  round?: number;
  /** The stage job's id. */
  job_id: string;
  image?: string;
  plan?: PlanItem[];
  verdict?: string;
  text?: string;
  boxes?: [number, number, number, number][];
}

/** The JSON body of every webhook. */
export interface WebhookPayload {
  type: `job.${WebhookEvent}`;
  /** When the event happened (ISO 8601). */
  timestamp: string;
  data: {
    id: string;
    status: JobStatus;
    task: Task;
    /** job.stage: the stage that finished. */
    stage?: WebhookStage;
    /** job.completed of a succeeded job: its output, as `GET /v1/jobs/{id}` shows it. */
    output?: Record<string, unknown>;
    /** job.completed of a failed or canceled job. */
    error?: string;
  };
}

/** Data of a delivery job (QueueName.Webhooks, JobName.Deliver); its job id is the webhook-id. */
export interface WebhookDeliveryJobData {
  /** The pipeline job. */
  jobId: string;
  event: WebhookEvent;
  url: string;
  /** The exact body every attempt sends (the signature covers it). */
  body: string;
}

/**
 * The `webhook-id` (and delivery job id) of an event: fixed by the pipeline, the event and the
 * stage job, so an event emitted again (an orchestrator that restarted) is the same message.
 */
export function webhookId(jobId: string, event: WebhookEvent, stageJobId?: string): string {
  const stage = stageJobId === undefined ? '' : `_${stageJobId.startsWith(`${jobId}-`) ? stageJobId.slice(jobId.length + 1) : stageJobId}`;
  return `msg_${jobId}_${event}${stage}`;
}

/** Where a delivery stands: queued, retrying after a failure, or final. */
export type WebhookDeliveryStatus = 'pending' | 'retrying' | 'delivered' | 'failed' | 'disabled' | 'skipped';

/** One delivery attempt. */
export interface WebhookAttempt {
  /** From 1. */
  attempt: number;
  /** When it started (ISO 8601). */
  at: string;
  /** The receiver's HTTP status, when it answered. */
  status_code?: number;
  /** Why it failed, when it did not get a 2xx (or was skipped). */
  error?: string;
  ms: number;
}

/** A delivery as recorded per pipeline job (and shown by `GET /v1/jobs/{id}`). */
export interface WebhookDeliveryRecord {
  /** The webhook-id. */
  id: string;
  event: WebhookEvent;
  /** job.stage: the stage job's id. */
  stage?: string;
  status: WebhookDeliveryStatus;
  created_at: string;
  attempts: WebhookAttempt[];
}

/** Redis keys of webhook state (outside the BullMQ queue's own keys). */
export const webhookKeys = {
  /** Hash of a pipeline's deliveries: webhook-id → WebhookDeliveryRecord (JSON). */
  deliveries: (prefix: string, jobId: string) => `${prefix}:webhook-deliveries:${jobId}`,
  /** Set of endpoint URLs disabled by a 410 Gone: later deliveries to them are skipped. */
  disabled: (prefix: string) => `${prefix}:webhook-disabled`,
  /** Last pipeline event handled by the orchestrator's failure listener. */
  cursor: (prefix: string) => `${prefix}:webhook-events-cursor`,
  /** Capped list (newest first, WEBHOOK_LOG_LENGTH) of every delivery attempt: WebhookLogEntry (JSON). */
  log: (prefix: string) => `${prefix}:webhook-log`,
};

/** How many delivery attempts the log of every delivery keeps. */
export const WEBHOOK_LOG_LENGTH = 1000;

/** One delivery attempt in the log of every delivery (newest first), shown by the admin dashboard. */
export interface WebhookLogEntry extends WebhookAttempt {
  /** The pipeline job. */
  job_id: string;
  webhook_id: string;
  url: string;
  event: WebhookEvent;
  /** job.stage: the stage job's id. */
  stage?: string;
  /** The delivery's status after this attempt. */
  status: WebhookDeliveryStatus;
}

/** What kind of address an IP is, for the SSRF rules. */
export type AddressKind = 'public' | 'loopback' | 'private' | 'link-local' | 'unspecified' | 'multicast' | 'reserved';

/**
 * Whether a webhook may connect to an address of this kind: public ones always; private and
 * loopback ones only when allowed (WEBHOOK_ALLOW_PRIVATE); link-local, unspecified, multicast and
 * reserved ones never.
 */
export function addressAllowed(kind: AddressKind, allowPrivate: boolean): boolean {
  return kind === 'public' || (allowPrivate && (kind === 'private' || kind === 'loopback'));
}

/** The kind of an IPv4 or IPv6 address (IPv4-mapped, -compatible and NAT64 addresses as their IPv4 address). */
export function addressKind(ip: string): AddressKind {
  const address = ip.replace(/^\[|\]$/g, '').replace(/%.*$/, '');
  if (isIPv4(address)) return ipv4Kind(address.split('.').map(Number));
  if (!isIPv6(address)) throw new Error(`${ip} is not an IP address`);
  const b = ipv6Bytes(address);
  const zeros = (from: number, to: number) => b.slice(from, to).every((x) => x === 0);
  if (zeros(0, 16)) return 'unspecified';
  if (zeros(0, 15) && b[15] === 1) return 'loopback';
  // ::ffff:a.b.c.d (mapped), ::a.b.c.d (compatible, deprecated), 64:ff9b::a.b.c.d (NAT64).
  if (zeros(0, 10) && b[10] === 0xff && b[11] === 0xff) return ipv4Kind(b.slice(12));
  if (zeros(0, 12)) return ipv4Kind(b.slice(12));
  if (b[0] === 0x00 && b[1] === 0x64 && b[2] === 0xff && b[3] === 0x9b && zeros(4, 12)) return ipv4Kind(b.slice(12));
  if ((b[0] & 0xfe) === 0xfc) return 'private'; // fc00::/7 unique local
  if (b[0] === 0xfe && (b[1] & 0xc0) === 0x80) return 'link-local'; // fe80::/10
  if (b[0] === 0xfe && (b[1] & 0xc0) === 0xc0) return 'private'; // fec0::/10 site-local (deprecated)
  if (b[0] === 0xff) return 'multicast';
  return 'public';
}

function ipv4Kind([a, b, c]: number[]): AddressKind {
  if (a === 0) return 'unspecified'; // 0.0.0.0/8 "this network"
  if (a === 127) return 'loopback';
  if (a === 10 || (a === 172 && b >= 16 && b <= 31) || (a === 192 && b === 168)) return 'private';
  if (a === 100 && b >= 64 && b <= 127) return 'private'; // 100.64.0.0/10 shared (carrier-grade NAT)
  if (a === 169 && b === 254) return 'link-local';
  if (a >= 224 && a <= 239) return 'multicast';
  if (a >= 240) return 'reserved'; // 240.0.0.0/4 and the broadcast address
  if ((a === 192 && b === 0 && c === 0) || (a === 198 && (b === 18 || b === 19))) return 'reserved'; // IETF, benchmarking
  return 'public';
}

function ipv6Bytes(address: string): number[] {
  let text = address.toLowerCase();
  const tail: number[] = [];
  const dotted = /(\d+\.\d+\.\d+\.\d+)$/.exec(text);
  if (dotted) {
    tail.push(...dotted[1].split('.').map(Number));
    text = text.slice(0, -dotted[1].length) + '0:0';
  }
  const [head, rest] = text.includes('::') ? text.split('::') : [text, undefined];
  const groups = (part: string) => (part ? part.split(':').map((g) => parseInt(g, 16)) : []);
  const left = groups(head);
  const right = rest === undefined ? [] : groups(rest);
  const all = [...left, ...Array<number>(8 - left.length - right.length).fill(0), ...right];
  const bytes = all.flatMap((g) => [g >> 8, g & 0xff]);
  if (tail.length) bytes.splice(12, 4, ...tail);
  return bytes;
}

/**
 * The kind of a URL's host when it is known without resolving it: an IP literal, or `localhost`
 * (and `*.localhost`, which resolve to loopback). Undefined for other names.
 */
export function literalHostKind(hostname: string): AddressKind | undefined {
  const host = hostname.replace(/^\[|\]$/g, '');
  if (isIPv4(host) || isIPv6(host)) return addressKind(host);
  const name = host.toLowerCase().replace(/\.$/, '');
  if (name === 'localhost' || name.endsWith('.localhost')) return 'loopback';
  return undefined;
}
