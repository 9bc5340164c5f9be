import type { WorkerHeartbeat } from '@lavida/config';
import type { Task, WebhookLogEntry } from '@lavida/contracts';
import type { JobDto, StageDto } from '../../dtos/job.dto.js';
import type { Throughput } from '../services/throughput.js';
import type { PeerLinkView } from '../services/peer-links.js';

/** A queue on the dashboard: its jobs per state, whether it is paused, its throughput. */
export interface AdminQueueDto {
  name: string;
  paused: boolean;
  counts: Record<string, number>;
  /** BullMQ workers connected to it. */
  workers: number;
  throughput: { completed: Throughput; failed: Throughput };
}

/** A job of one queue (Bull Board's row). */
export interface AdminQueueJobDto {
  id: string;
  name: string;
  state: string;
  attemptsMade: number;
  failedReason: string | null;
  created_at: string | null;
  started_at: string | null;
  finished_at: string | null;
  /** The pipeline job it belongs to, when its data names one. */
  jobId: string | null;
}

/** A row of the recent jobs. */
export interface AdminJobSummaryDto {
  id: string;
  task: Task;
  status: string;
  /** The prompt, instruction or question. */
  text: string | null;
  created_at: string;
  completed_at: string | null;
  duration_ms: number | null;
  /** `plan › generate 1 › reflect 1` */
  stages: string;
  /** The output image (admin URL), if any. */
  image: string | null;
  error: string | null;
}

/** How long a stage waited and ran, and what its engine reported. */
export interface AdminStageTimingDto {
  queued_at: string | null;
  /** From queued to started (the last attempt), ms. */
  wait_ms: number | null;
  /** From started to finished, ms. */
  run_ms: number | null;
  /** The engine's own time (GenerateResult / UnderstandingResult timings), ms. */
  engine_ms: number | null;
  /** Diffusion steps (generation) or forwards (understanding). */
  steps: number | null;
  forwards: number | null;
}

/** A job as `GET /v1/jobs/{id}` shows it, with file URLs under /admin and each stage's timing. */
export interface AdminJobDetailDto extends Omit<JobDto, 'timeline'> {
  duration_ms: number | null;
  timeline: (StageDto & { stage_job_id: string; queue: string; timing: AdminStageTimingDto })[];
}

export interface AdminWorkersDto {
  workers: WorkerHeartbeat[];
  links: PeerLinkView[];
}

export interface AdminWebhookLogDto {
  results: WebhookLogEntry[];
}
