import type { JobStatus, Task, TextToImageInput } from '@lavida/contracts';

/** One stage of a job's timeline. */
export interface StageDto {
  stage: string;
  status: JobStatus;
  attempts: number;
  /** One line per failed attempt, oldest first. */
  logs: string[];
  progress: unknown;
  peer?: string;
  started_at: string | null;
  completed_at: string | null;
  error: string | null;
}

/** A job as the API shows it, after Replicate's predictions. */
export interface JobDto {
  id: string;
  task: Task;
  status: JobStatus;
  input: TextToImageInput;
  output: { image: string; tokens: number[]; model: string } | null;
  error: string | null;
  progress: unknown;
  created_at: string;
  started_at: string | null;
  completed_at: string | null;
  timeline: StageDto[];
  urls: { get: string };
}
