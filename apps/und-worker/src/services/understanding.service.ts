import { Injectable } from '@nestjs/common';
import type { Job } from 'bullmq';
import { ArtifactStore } from '@lavida/config';
import { InvalidInputError, type ImageRef, type UnderstandingJobData, type UnderstandingResult } from '@lavida/contracts';
import { decodeImageInput, ModelPackage, UnderstandingEngine, type TextTaskOptions } from '@lavida/model';

/** Runs the understanding branch's stages: answers, reflection, plans, grounding, modality. */
@Injectable()
export class UnderstandingService {
  private readonly engine: UnderstandingEngine;

  constructor(
    private readonly pkg: ModelPackage,
    private readonly artifacts: ArtifactStore,
  ) {
    this.engine = new UnderstandingEngine(pkg);
  }

  async run(job: Job<UnderstandingJobData>, signal?: AbortSignal): Promise<UnderstandingResult> {
    const data = job.data;
    const started = performance.now();
    let lastProgress = 0;
    const options: TextTaskOptions = {
      promptCache: data.promptCache === true,
      signal,
      onStep: async (step, steps) => {
        const now = performance.now();
        if (step === steps || now - lastProgress >= 100) {
          lastProgress = now;
          await job.updateProgress({ stage: data.task, step, steps });
        }
      },
    };
    const model = { name: this.pkg.manifest.name, version: this.pkg.manifest.version };
    const done = (forwards: number, fields: Partial<UnderstandingResult>): UnderstandingResult => ({
      task: data.task,
      ...fields,
      model,
      timings: { totalMs: performance.now() - started, forwards },
    });
    switch (data.task) {
      case 'understand': {
        const r = await this.engine.understand(await this.image(data.image), requireText(data.question, 'question'), options);
        return done(r.forwards, { text: r.text });
      }
      case 'reflect': {
        const r = await this.engine.reflect(await this.image(data.image), requireText(data.prompt, 'prompt'), options);
        return done(r.forwards, { text: r.text });
      }
      case 'plan': {
        const r = await this.engine.plan(requireText(data.prompt, 'prompt'), options);
        return done(r.forwards, { layout: r.layout });
      }
      case 'ground': {
        if (!Array.isArray(data.refs) || data.refs.some((r) => typeof r !== 'string'))
          throw new InvalidInputError('refs must be a list of strings');
        const r = await this.engine.ground(await this.image(data.image), data.refs, { ...options, steps: data.steps });
        return done(r.forwards, { boxes: r.boxes });
      }
      case 'respond': {
        const r = await this.engine.respond(requireText(data.prompt, 'prompt'));
        return done(r.forwards, r.kind === 'image' ? { modality: 'image' } : { modality: 'text', text: r.text });
      }
      default:
        throw new InvalidInputError(`unknown task ${(data as { task?: unknown }).task as string}`);
    }
  }

  private async image(ref: ImageRef): Promise<Uint8Array> {
    if (!ref || typeof ref.jobId !== 'string' || typeof ref.name !== 'string') throw new InvalidInputError('image must be {jobId, name}');
    const bytes = await this.artifacts.get(ref.jobId, ref.name);
    if (!bytes) throw new InvalidInputError(`image ${ref.jobId}/${ref.name} does not exist (never stored, or expired)`);
    return decodeImageInput(bytes, this.pkg.manifest.image);
  }
}

function requireText(value: unknown, field: string): string {
  if (typeof value !== 'string' || !value.trim()) throw new InvalidInputError(`${field} must be a non-empty string`);
  return value;
}
