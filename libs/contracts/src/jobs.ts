import { z } from 'zod';
import { JobName, QueueName } from './queues.js';
import { webhookFields, type PipelineWebhook } from './webhooks.js';

/** Tasks a client can submit. */
export const TASKS = ['text-to-image', 'edit', 'ground', 'understand', 'respond'] as const;
export type Task = (typeof TASKS)[number];

const seed = z.number().int().min(0).max(0xffffffff);
const steps = z.number().int().min(1).max(1024);
const guidance = z.number().min(0).max(20);
const temperature = z.number().min(0).max(10);
/**
 * Correction sweeps after the last diffusion step (four steps each: masked parity classes of the grid
 * predicted again). Unset: the model's `sampling.correction_sweeps`; 0 switches them off.
 */
const correctionSweeps = z.number().int().min(0).max(16);
/** One end of a guidance interval: a fraction of the schedule's steps, 0..1. */
const intervalEnd = (end: 'lo' | 'hi') =>
  z
    .number({ error: `${end} must be a number 0..1` })
    .min(0, `${end} must be a number 0..1`)
    .max(1, `${end} must be a number 0..1`);
/**
 * The guidance interval [lo, hi]: step i of the schedule's S combines the guidance rows only where
 * lo <= i / S < hi, and samples from the conditional row elsewhere. Plain and planned images only (an
 * edit and a regeneration from a critique guide every step). Unset: the model's `sampling.cfg_interval`.
 */
export const CfgIntervalSchema = z
  .tuple([intervalEnd('lo'), intervalEnd('hi')], { error: 'must be [lo, hi]: two numbers 0..1' })
  .refine(([lo, hi]) => lo <= hi, { message: 'must be [lo, hi] with lo <= hi' });
/** An input image: a PNG, base64 (optionally as a `data:image/png;base64,` URL). Decoded and checked by the api. */
const imageInput = z.string().min(1, 'must not be empty').max(8_000_000, 'is too large');

/** Default of `priority`: the middle of 1..10. */
export const DEFAULT_PRIORITY = 5;

/** Scheduling fields every task's input takes. */
const scheduling = {
  /** 1 (highest) .. 10 (lowest), as BullMQ's priorities: applied to the pipeline and every stage it queues. @defaultValue 5 */
  priority: z.number().int().min(1).max(10).optional(),
  /** Seconds from submission after which the job fails with DEADLINE_EXCEEDED (a running stage is aborted). */
  deadline_seconds: z.number().int().min(1).max(3600).optional(),
};

/** Public input of a text-to-image request. */
export const TextToImageInputSchema = z
  .object({
    prompt: z.string().trim().min(1, 'must not be empty').max(2000),
    seed: seed.optional(),
    steps: steps.optional(),
    /**
     * Guidance of every image of the request. Unset: the model's `sampling.guidance`, and for the image drawn
     * with a plan and those regenerated from a critique its `plan_guidance` / `feedback_guidance` where it has them.
     */
    guidance: guidance.optional(),
    temperature: temperature.optional(),
    correction_sweeps: correctionSweeps.optional(),
    /**
     * Steps that combine the guidance rows, as [lo, hi] fractions of the schedule (the images drawn without
     * a critique: plain and planned; regenerations guide every step). Unset: the model's `sampling.cfg_interval`.
     */
    cfg_interval: CfgIntervalSchema.optional(),
    luminance: z.number().min(0).max(1).optional(),
    /** Plan a layout first (understanding branch) and generate with it. */
    plan: z.boolean().optional(),
    /** Reflect on each image (understanding branch) and regenerate with the critique until it is judged correct. */
    reflect: z.boolean().optional(),
    /** Most images when reflecting (1 = reflect once, never regenerate). @defaultValue 3 */
    rounds: z.number().int().min(1).max(8).optional(),
    ...scheduling,
  })
  .strict();
export type TextToImageInput = z.infer<typeof TextToImageInputSchema>;

/** Public input of an editing request. */
export const EditInputSchema = z
  .object({
    instruction: z.string().trim().min(1, 'must not be empty').max(2000),
    image: imageInput,
    seed: seed.optional(),
    steps: steps.optional(),
    guidance: guidance.optional(),
    image_guidance: guidance.optional(),
    temperature: temperature.optional(),
    correction_sweeps: correctionSweeps.optional(),
    /**
     * Plan the edit first (understanding branch: the region it changes, as a layout) and edit with that plan. Needs
     * a model with the editing-with-a-plan templates; the result carries the plan.
     */
    plan: z.boolean().optional(),
    ...scheduling,
  })
  .strict();
export type EditInput = z.infer<typeof EditInputSchema>;

/** Public input of a grounding request: one box per referring expression. */
export const GroundInputSchema = z
  .object({
    image: imageInput,
    refs: z.array(z.string().trim().min(1, 'must not be empty').max(500)).min(1, 'must name at least one object').max(16),
    steps: z.number().int().min(1).max(4).optional(),
    ...scheduling,
  })
  .strict();
export type GroundInput = z.infer<typeof GroundInputSchema>;

/** Public input of an understanding request (a question about the image, or "describe the image."). */
export const UnderstandInputSchema = z
  .object({
    image: imageInput,
    question: z.string().trim().min(1, 'must not be empty').max(2000),
    prompt_cache: z.boolean().optional(),
    ...scheduling,
  })
  .strict();
export type UnderstandInput = z.infer<typeof UnderstandInputSchema>;

/**
 * Public input of a `respond` request: the model chooses the answer's modality (`[exp]` = an image,
 * drawn as text-to-image of the prompt). The prompt and sampler fields are text-to-image's.
 */
export const RespondInputSchema = TextToImageInputSchema.pick({
  prompt: true,
  seed: true,
  steps: true,
  guidance: true,
  temperature: true,
  correction_sweeps: true,
  cfg_interval: true,
  luminance: true,
  priority: true,
  deadline_seconds: true,
}).strict();
export type RespondInput = z.infer<typeof RespondInputSchema>;

/** Body of `POST /v1/jobs`. */
export const CreateJobSchema = z.discriminatedUnion('task', [
  z.object({ task: z.literal('text-to-image'), input: TextToImageInputSchema, ...webhookFields }).strict(),
  z.object({ task: z.literal('edit'), input: EditInputSchema, ...webhookFields }).strict(),
  z.object({ task: z.literal('ground'), input: GroundInputSchema, ...webhookFields }).strict(),
  z.object({ task: z.literal('understand'), input: UnderstandInputSchema, ...webhookFields }).strict(),
  z.object({ task: z.literal('respond'), input: RespondInputSchema, ...webhookFields }).strict(),
]);
export type CreateJob = z.infer<typeof CreateJobSchema>;

/** Query of `GET /v1/jobs`. */
export const ListJobsQuerySchema = z
  .object({
    task: z.enum(TASKS).optional(),
    status: z.enum(['queued', 'processing', 'succeeded', 'failed', 'canceled']).optional(),
    limit: z.coerce.number().int().min(1).max(100).default(20),
    cursor: z.string().max(200).optional(),
  })
  .strict();
export type ListJobsQuery = z.infer<typeof ListJobsQuerySchema>;

/** A job's input as queued: images replaced by their artefact. */
export type PipelineInput =
  | ({ task: 'text-to-image' } & TextToImageInput)
  | ({ task: 'edit' } & Omit<EditInput, 'image'> & { image: ImageRef })
  | ({ task: 'ground' } & Omit<GroundInput, 'image'> & { image: ImageRef })
  | ({ task: 'understand' } & Omit<UnderstandInput, 'image'> & { image: ImageRef })
  | ({ task: 'respond' } & RespondInput);

/** One stage job of a pipeline, in the order queued. */
export interface StageRef {
  /** plan, plan_edit, generate, reflect, edit, ground, understand, respond */
  stage: 'plan' | 'plan_edit' | 'generate' | 'reflect' | 'edit' | 'ground' | 'understand' | 'respond';
  queue: QueueName;
  jobId: string;
  /** Round of a generate / reflect stage, from 1. */
  round?: number;
}

/** Data of a pipeline job (QueueName.Pipeline). */
export interface PipelineJobData {
  id: string;
  task: Task;
  input: PipelineInput;
  createdAt: string;
  /** Stage jobs queued so far; the orchestrator appends, the api shows them as the timeline. */
  stages?: StageRef[];
  /** Where to send which events (`webhook`, `webhook_events_filter`). */
  webhook?: PipelineWebhook;
  /** BullMQ priority (1 highest) of the pipeline and of every stage job it queues. */
  priority?: number;
  /** Absolute deadline (epoch ms): past it no stage starts, a running one is aborted, the job fails DEADLINE_EXCEEDED. */
  deadline?: number;
}

/** What every stage job carries besides its own data (set by the orchestrator from the pipeline). */
export interface StageJobCommon {
  /** The pipeline's absolute deadline (epoch ms), if it has one. */
  deadline?: number;
}

/** One image of a text-to-image pipeline. */
export interface AttemptResult {
  round: number;
  artifact: Artifact;
  tokens: number[];
  /** The reflection's verdict (`correct` or a reason), when reflecting. */
  verdict?: string;
}

/** Result of a pipeline. */
export interface PipelineResult {
  task: Task;
  /** The image (text-to-image: the accepted attempt, else the last; edit: the edited image; respond: an `[exp]` answer). */
  image?: { artifact: Artifact; tokens: number[] };
  /** respond: `image` when the model answered with an image (`[exp]`), else `text`. */
  modality?: 'image' | 'text';
  attempts?: AttemptResult[];
  /** Whether the reflection accepted the returned image. */
  accepted?: boolean;
  /** The layout the image was drawn with (text-to-image with `plan`; edit with `plan`: the edit's region). */
  plan?: PlanItem[];
  /** Answer (understand; respond when text). */
  text?: string;
  /** One box per reference, pixels (ground). */
  boxes?: [number, number, number, number][];
  model: { name: string; version: string };
}

/** A text-to-image request to the engine; unset options take the model's sampling defaults. */
export interface TextToImageRequest {
  prompt: string;
  seed: number;
  steps?: number;
  guidance?: number;
  temperature?: number;
  /** Correction sweeps after the last step; default the model's `sampling.correction_sweeps` (0: none). */
  correctionSweeps?: number;
  /**
   * Guidance interval [lo, hi]: the schedule's steps i of S with lo <= i / S < hi combine the guidance rows;
   * default the model's `sampling.cfg_interval` ([0, 1]: every step). Ignored for a regeneration from a
   * critique (an image prefix), which guides every step.
   */
  cfgInterval?: [number, number];
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
export interface GenerateJobData extends TextToImageRequest, StageJobCommon {
  jobId: string;
  /** Artefact name of the image; default `image.png`. */
  output?: string;
  /** A layout plan the image follows. */
  plan?: PlanItem[];
  /** Regeneration: the critique of an earlier attempt and that attempt's image. */
  feedback?: { verdict: string; image: ImageRef };
}

/** Data of an editing stage job (QueueName.Generation, JobName.Edit). */
export interface EditJobData extends StageJobCommon {
  jobId: string;
  instruction: string;
  image: ImageRef;
  seed: number;
  steps?: number;
  /** Text guidance scale; default the model's `sampling.edit_guidance` (else its `guidance`). */
  guidance?: number;
  /** Image guidance scale; 0 (default) leaves out the third guidance row, more adds it. */
  imageGuidance?: number;
  /** Default the model's `sampling.edit_temperature` (else its `temperature`). */
  temperature?: number;
  /** Default the model's `sampling.correction_sweeps`. */
  correctionSweeps?: number;
  output?: string;
  /** The edit's region (a plan_edit stage's layout): edit with the model's edit_plan template. */
  plan?: PlanItem[];
}

/** Data of an understanding-branch stage job (QueueName.Understanding). */
export type UnderstandingJobData = (
  | { task: 'understand'; image: ImageRef; question: string }
  | { task: 'reflect'; image: ImageRef; prompt: string }
  | { task: 'plan'; prompt: string }
  | { task: 'plan_edit'; image: ImageRef; instruction: string }
  | { task: 'ground'; image: ImageRef; refs: string[]; steps?: number }
  | ({ task: 'respond'; prompt: string } & RespondImageOptions)
) &
  StageJobCommon & {
    jobId: string;
    /** Keep the prompt's keys and values between decoding steps (faster, approximate). */
    promptCache?: boolean;
  };

/**
 * How a `respond` stage draws its image when the answer is `[exp]`: text-to-image driven by the
 * understanding worker, a generation worker serving the image side. Unset sampler options take the
 * model's defaults; `seed` defaults to 0.
 */
export interface RespondImageOptions {
  seed?: number;
  steps?: number;
  guidance?: number;
  temperature?: number;
  correctionSweeps?: number;
  /** Default the model's `sampling.cfg_interval`. */
  cfgInterval?: [number, number];
  /** Micro-conditioning, written into the prompt as text (`LUMINANCE : x;`). */
  luminance?: number;
  /** Artefact name of the image; default `image.png`. */
  output?: string;
}

/** Result of an understanding-branch stage. */
export interface UnderstandingResult {
  task: UnderstandingJobData['task'];
  /** Answer, description or verdict (understand, reflect; respond when text). */
  text?: string;
  /** Plan boxes (plan; plan_edit: the edit's region). */
  layout?: PlanItem[];
  /** One box per reference, pixels (ground). */
  boxes?: [number, number, number, number][];
  /** `image` when the model answers with an image (`[exp]`), else `text` (respond). */
  modality?: 'image' | 'text';
  /** The image of an `[exp]` answer (respond): stored in the artefact store, drawn with a generation peer. */
  image?: { artifact: Artifact; tokens: number[] };
  /** The generation worker that served the image side (respond with an image). */
  peer?: string;
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

/** Discriminated union of queued jobs. */
export type QueuedJob = { name: JobName.Pipeline; data: PipelineJobData } | { name: JobName.Generate; data: GenerateJobData };

/** Public job states, after Replicate's predictions. */
export type JobStatus = 'queued' | 'processing' | 'succeeded' | 'failed' | 'canceled';
