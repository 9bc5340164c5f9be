import { z } from 'zod';
import { JobName } from './queues.js';

/** Tasks a client can submit. */
export const TASKS = ['text-to-image'] as const;
export type Task = (typeof TASKS)[number];

/** Public input of a text-to-image request. */
export const TextToImageInputSchema = z
  .object({
    prompt: z.string().trim().min(1, 'must not be empty').max(2000),
    seed: z.number().int().min(0).max(0xffffffff).optional(),
    steps: z.number().int().min(1).max(1024).optional(),
    guidance: z.number().min(0).max(20).optional(),
    temperature: z.number().min(0).max(10).optional(),
    luminance: z.number().min(0).max(1).optional(),
  })
  .strict();
export type TextToImageInput = z.infer<typeof TextToImageInputSchema>;

/** Body of `POST /v1/jobs`. */
export const CreateJobSchema = z.discriminatedUnion('task', [
  z.object({ task: z.literal('text-to-image'), input: TextToImageInputSchema }).strict(),
]);
export type CreateJob = z.infer<typeof CreateJobSchema>;

/** Data of a pipeline job (QueueName.Pipeline). */
export interface PipelineJobData {
  id: string;
  task: Task;
  input: TextToImageInput;
  createdAt: string;
  /** Where the orchestrator is in the pipeline. */
  stage?: 'generate' | 'done';
}

/** A text-to-image request to the engine; unset options take the model's sampling defaults. */
export interface TextToImageRequest {
  prompt: string;
  seed: number;
  steps?: number;
  guidance?: number;
  temperature?: number;
  /** Micro-conditioning: background grey level / 255, written into the prompt as text. */
  luminance?: number;
}

/** Data of a generation stage job (QueueName.Generation). */
export interface GenerateJobData extends TextToImageRequest {
  jobId: string;
}

/** An artefact a stage wrote to the artefact store. */
export interface Artifact {
  name: string;
  contentType: string;
  bytes: number;
}

/** Result of a generation stage. */
export interface GenerateResult {
  tokens: number[];
  artifact: Artifact;
  model: { name: string; version: string };
  timings: { totalMs: number; steps: number };
  peer: string;
}

/** Result of a pipeline. */
export interface PipelineResult {
  generate: GenerateResult;
}

/** Discriminated union of queued jobs. */
export type QueuedJob = { name: JobName.Pipeline; data: PipelineJobData } | { name: JobName.Generate; data: GenerateJobData };

/** Public job states, after Replicate's predictions. */
export type JobStatus = 'queued' | 'processing' | 'succeeded' | 'failed' | 'canceled';
