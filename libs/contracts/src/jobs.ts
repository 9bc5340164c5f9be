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

/** An image kept in the artefact store (Redis): artefact `name` of job `jobId`, a PNG. */
export interface ImageRef {
  jobId: string;
  name: string;
}

/** One box of a layout plan. */
export interface PlanItem {
  /** What the box holds, e.g. `red circle`. */
  label: string;
  /** x1, y1, x2, y2 as the model's coordinate bins. */
  bins: [number, number, number, number];
  /** x1, y1, x2, y2 in pixels of the model's image. */
  box?: [number, number, number, number];
}

/** Data of a generation stage job (QueueName.Generation, JobName.Generate). */
export interface GenerateJobData extends TextToImageRequest {
  jobId: string;
  /** Artefact name of the image; default `image.png`. */
  output?: string;
  /** A layout plan the image follows. */
  plan?: PlanItem[];
  /** Regeneration: the critique of an earlier attempt and that attempt's image. */
  feedback?: { verdict: string; image: ImageRef };
}

/** Data of an editing stage job (QueueName.Generation, JobName.Edit). */
export interface EditJobData {
  jobId: string;
  instruction: string;
  image: ImageRef;
  seed: number;
  steps?: number;
  guidance?: number;
  /** Image guidance scale; 0 (default) uses two guidance rows, more adds the third. */
  imageGuidance?: number;
  temperature?: number;
  output?: string;
}

/** Data of an understanding-branch stage job (QueueName.Understanding). */
export type UnderstandingJobData = (
  | { task: 'understand'; image: ImageRef; question: string }
  | { task: 'reflect'; image: ImageRef; prompt: string }
  | { task: 'plan'; prompt: string }
  | { task: 'ground'; image: ImageRef; refs: string[]; steps?: number }
  | { task: 'respond'; prompt: string }
) & {
  jobId: string;
  /** Keep the prompt's keys and values between decoding steps (faster, approximate). */
  promptCache?: boolean;
};

/** Result of an understanding-branch stage. */
export interface UnderstandingResult {
  task: UnderstandingJobData['task'];
  /** Answer, description or verdict (understand, reflect; respond when text). */
  text?: string;
  /** Plan boxes (plan). */
  layout?: PlanItem[];
  /** One box per reference, pixels (ground). */
  boxes?: [number, number, number, number][];
  /** `image` when the model answers with an image (`[exp]`), else `text` (respond). */
  modality?: 'image' | 'text';
  model: { name: string; version: string };
  timings: { totalMs: number; forwards: number };
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
