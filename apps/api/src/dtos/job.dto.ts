import type { JobStatus, PlanItem, Task, WebhookDeliveryRecord, WebhookEvent } from '@lavida/contracts';

/** One stage of a job's timeline. */
export interface StageDto {
  /** plan, generate, reflect, edit, ground, understand, respond */
  stage: string;
  /** Round of a generate / reflect stage, from 1. */
  round?: number;
  status: JobStatus;
  attempts: number;
  /** One line per failed attempt, oldest first. */
  logs: string[];
  progress: unknown;
  peer?: string;
  /** What the stage produced: an image URL, a plan, a verdict, an answer, boxes. */
  image?: string;
  plan?: PlanItem[];
  verdict?: string;
  text?: string;
  boxes?: [number, number, number, number][];
  started_at: string | null;
  completed_at: string | null;
  error: string | null;
}

/** A job's output, by task. */
export interface OutputDto {
  /** text-to-image, edit, respond (an image answer): the PNG URL (text-to-image: the accepted attempt, else the last). */
  image?: string;
  tokens?: number[];
  /** text-to-image: every attempt with its verdict. */
  attempts?: { round: number; image: string; verdict?: string }[];
  accepted?: boolean;
  plan?: PlanItem[];
  /** understand; respond when the answer is text */
  text?: string;
  /** respond: `image` when the model answered with an image (`[exp]`), else `text` */
  modality?: 'image' | 'text';
  /** ground: one box per reference, x1, y1, x2, y2 in pixels */
  boxes?: [number, number, number, number][];
  model: string;
}

/** A job as the API shows it, after Replicate's predictions. */
export interface JobDto {
  id: string;
  task: Task;
  status: JobStatus;
  input: Record<string, unknown>;
  output: OutputDto | null;
  error: string | null;
  progress: unknown;
  created_at: string;
  started_at: string | null;
  completed_at: string | null;
  timeline: StageDto[];
  urls: { get: string };
  /** Only for jobs submitted with a webhook. */
  webhook?: WebhookDto;
}

/** A job's webhook and every delivery so far, each with its attempts. */
export interface WebhookDto {
  url: string;
  events: WebhookEvent[];
  deliveries: WebhookDeliveryRecord[];
}
