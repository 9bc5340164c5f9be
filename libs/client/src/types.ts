import type {
  CreateJob,
  EditInput,
  GroundInput,
  JobStatus,
  PlanItem,
  RespondInput,
  Task,
  TextToImageInput,
  UnderstandInput,
  WebhookDeliveryRecord,
  WebhookEvent,
} from '@lavida/contracts';

// Request types come from the contracts (type-only: the client has no runtime dependency).
export type {
  CreateJob,
  EditInput,
  GroundInput,
  JobStatus,
  PlanItem,
  RespondInput,
  Task,
  TextToImageInput,
  UnderstandInput,
  WebhookDeliveryRecord,
  WebhookEvent,
};

/** A box as x1, y1, x2, y2 in pixels of the model's image. */
export type Box = [number, number, number, number];

/** The running stage's progress, as the workers report it. */
export interface JobProgress {
  /** generate, edit, plan, reflect, ground, understand, respond (an image answer reports its diffusion steps) */
  stage?: string;
  step?: number;
  steps?: number;
}

/**
 * One stage of a job's timeline (mirrors the api's StageDto).
 */
export interface StageView {
  /** plan, generate, reflect, edit, ground, understand, respond */
  stage: string;
  /** Round of a generate / reflect stage, from 1. */
  round?: number;
  status: JobStatus;
  attempts: number;
  /** One line per failed attempt, oldest first. */
  logs: string[];
  /** `{stage, step, steps}` once the stage reports; BullMQ's `0` before. */
  progress: JobProgress | number | null;
  peer?: string;
  image?: string;
  plan?: PlanItem[];
  verdict?: string;
  text?: string;
  boxes?: Box[];
  started_at: string | null;
  completed_at: string | null;
  error: string | null;
}

/** One image of a text-to-image job, with the reflection's verdict when reflecting. */
export interface AttemptView {
  round: number;
  /** URL of the PNG. */
  image: string;
  verdict?: string;
}

/** A job's output, by task (mirrors the api's OutputDto). */
export interface JobOutputView {
  /** text-to-image, edit, respond (an image answer): URL of the PNG (text-to-image: the accepted attempt, else the last). */
  image?: string;
  tokens?: number[];
  /** text-to-image: every attempt with its verdict. */
  attempts?: AttemptView[];
  accepted?: boolean;
  plan?: PlanItem[];
  /** understand; respond when the answer is text */
  text?: string;
  /** respond: `image` when the model answered with an image (`[exp]`, see `image`), else `text` (see `text`) */
  modality?: 'image' | 'text';
  /** ground: one box per reference */
  boxes?: Box[];
  /** `name@version` */
  model: string;
}

/** A job's webhook and its deliveries. */
export interface WebhookView {
  url: string;
  events: WebhookEvent[];
  deliveries: WebhookDeliveryRecord[];
}

/** A job as `GET /v1/jobs/{id}` answers it (mirrors the api's JobDto). */
export interface JobView {
  id: string;
  task: Task;
  status: JobStatus;
  /** The input as submitted; an input image is replaced by its file URL. */
  input: Record<string, unknown>;
  output: JobOutputView | null;
  error: string | null;
  /** The running (else the last) stage's progress. */
  progress: JobProgress | number | null;
  created_at: string;
  started_at: string | null;
  completed_at: string | null;
  timeline: StageView[];
  urls: { get: string };
  /** Only for jobs submitted with a webhook. */
  webhook?: WebhookView;
}

/** One page of `GET /v1/jobs`, newest first; `next` is the URL of the next page. */
export interface JobPage {
  results: JobView[];
  next: string | null;
}

/** Filters of `GET /v1/jobs`. */
export interface ListJobsOptions {
  task?: Task;
  status?: JobStatus;
  /** Page size, 1..100 (the api's default is 20). */
  limit?: number;
  /** Continues a listing: the `cursor` of a page's `next` URL. */
  cursor?: string;
}

/** Statuses a job never leaves. */
export const FINAL_STATUSES: readonly JobStatus[] = ['succeeded', 'failed', 'canceled'];

export function isFinal(status: JobStatus): boolean {
  return FINAL_STATUSES.includes(status);
}

/** The `{stage, step, steps}` of a progress value, or undefined (null, or BullMQ's numeric 0). */
export function progressOf(value: JobView['progress']): JobProgress | undefined {
  return value !== null && typeof value === 'object' ? value : undefined;
}
