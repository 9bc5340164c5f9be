import { Inject, Injectable } from '@nestjs/common';
import type { Job } from 'bullmq';
import { ArtifactStore, CONFIG, JsonLogger, type Config } from '@lavida/config';
import { InvalidInputError, type EditJobData, type GenerateJobData, type GenerateResult, type ImageRef } from '@lavida/contracts';
import { decodeImageInput, editImage, ModelPackage, textToImage, type TextToImageResult } from '@lavida/model';
import { diffusionStepDuration, diffusionSteps, diffusionStepsPerSecond } from '@lavida/telemetry';
import { PeerRepository } from '../repositories/peer.repository.js';

/** Runs the generation branch's stages (text-to-image, editing) with the understanding peer, and stores the PNG. */
@Injectable()
export class GenerationService {
  private readonly logger = new JsonLogger('gen-worker', GenerationService.name);

  constructor(
    @Inject(CONFIG) private readonly config: Config,
    private readonly pkg: ModelPackage,
    private readonly peer: PeerRepository,
    private readonly artifacts: ArtifactStore,
  ) {}

  async generate(job: Job<GenerateJobData>, signal?: AbortSignal): Promise<GenerateResult> {
    const { data } = job;
    const feedback = data.feedback
      ? { verdict: data.feedback.verdict, pixels: await this.image(data.feedback.image, 'feedback.image') }
      : undefined;
    return this.run(job, 'generate', data.output, (options) => textToImage(this.pkg, this.peer, { ...data, feedback }, options), signal);
  }

  async edit(job: Job<EditJobData>, signal?: AbortSignal): Promise<GenerateResult> {
    const { data } = job;
    const pixels = await this.image(data.image, 'image');
    return this.run(job, 'edit', data.output, (options) => editImage(this.pkg, this.peer, { ...data, pixels }, options), signal);
  }

  /** An input image from the artefact store, checked against the model's size. */
  private async image(ref: ImageRef, what: string): Promise<Uint8Array> {
    if (!ref || typeof ref.jobId !== 'string' || typeof ref.name !== 'string') throw new InvalidInputError(`${what} must be {jobId, name}`);
    const bytes = await this.artifacts.get(ref.jobId, ref.name);
    if (!bytes) throw new InvalidInputError(`${what} ${ref.jobId}/${ref.name} does not exist (never stored, or expired)`);
    return decodeImageInput(bytes, this.pkg.manifest.image, what);
  }

  private async run(
    job: Job<{ jobId: string }>,
    stage: 'generate' | 'edit',
    output: string | undefined,
    work: (options: Parameters<typeof textToImage>[3]) => Promise<TextToImageResult>,
    signal?: AbortSignal,
  ): Promise<GenerateResult> {
    const { jobId } = job.data;
    const attempt = job.attemptsMade + 1;
    const started = performance.now();
    let lastProgress = 0;
    // Diffusion metrics: each step's wall time (the first one includes opening the session).
    const task = { task: stage };
    let lastStep = started;
    const result = await work({
      sessionId: `${jobId}/${attempt}`,
      signal,
      onStep: async (step, steps) => {
        const at = performance.now();
        diffusionSteps.inc(task);
        diffusionStepDuration.observe(task, (at - lastStep) / 1000);
        lastStep = at;
        // Progress is a Redis write: at most every 100 ms, and always the last step.
        const now = performance.now();
        if (step === steps || now - lastProgress >= 100) {
          lastProgress = now;
          await job.updateProgress({ stage, step, steps });
        }
      },
    });
    const name = output ?? 'image.png';
    await this.artifacts.put(jobId, name, result.png);
    const totalMs = performance.now() - started;
    if (lastStep > started) diffusionStepsPerSecond.set(task, result.steps / ((lastStep - started) / 1000));
    this.logger.log(stage === 'edit' ? 'edited' : 'generated', {
      jobId,
      attempt,
      steps: result.steps,
      ms: Math.round(totalMs),
      peer: result.peer,
    });
    return {
      tokens: result.tokens,
      artifact: { name, contentType: 'image/png', bytes: result.png.length },
      model: { name: this.pkg.manifest.name, version: this.pkg.manifest.version },
      timings: { totalMs, steps: result.steps },
      peer: result.peer,
    };
  }
}
