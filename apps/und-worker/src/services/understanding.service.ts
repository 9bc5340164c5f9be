import { Injectable } from '@nestjs/common';
import type { Job } from 'bullmq';
import { ArtifactStore, JsonLogger } from '@lavida/config';
import { InvalidInputError, type ImageRef, type UnderstandingJobData, type UnderstandingResult } from '@lavida/contracts';
import { decodeImageInput, ModelPackage, textToImageFromText, UnderstandingEngine, type TextTaskOptions } from '@lavida/model';
import { GenPeerRepository } from '../repositories/gen-peer.repository.js';

/**
 * Runs the understanding branch's stages: answers, reflection, plans (of images and of edits), grounding, and `respond`,
 * whose `[exp]` answer this worker expands into an image by driving text-to-image with a
 * generation peer serving the image side.
 */
@Injectable()
export class UnderstandingService {
  private readonly logger = new JsonLogger('und-worker', UnderstandingService.name);
  private readonly engine: UnderstandingEngine;

  constructor(
    private readonly pkg: ModelPackage,
    private readonly artifacts: ArtifactStore,
    private readonly genPeers: GenPeerRepository,
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
      case 'plan_edit': {
        const r = await this.engine.planEdit(await this.image(data.image), requireText(data.instruction, 'instruction'), options);
        return done(r.forwards, { layout: r.layout });
      }
      case 'ground': {
        if (!Array.isArray(data.refs) || data.refs.some((r) => typeof r !== 'string'))
          throw new InvalidInputError('refs must be a list of strings');
        const r = await this.engine.ground(await this.image(data.image), data.refs, { ...options, steps: data.steps });
        return done(r.forwards, { boxes: r.boxes });
      }
      case 'respond': {
        const prompt = requireText(data.prompt, 'prompt');
        const r = await this.engine.respond(prompt);
        if (r.kind === 'text') return done(r.forwards, { modality: 'text', text: r.text });
        // [exp]: the answer is an image. This worker drives text-to-image (its text side stops after
        // the last joint layer) and a generation worker serves the image side and samples it.
        const attempt = job.attemptsMade + 1;
        const image = await textToImageFromText(
          this.pkg,
          this.genPeers,
          {
            prompt,
            seed: data.seed ?? 0,
            steps: data.steps,
            guidance: data.guidance,
            temperature: data.temperature,
            correctionSweeps: data.correctionSweeps,
            cfgInterval: data.cfgInterval,
            luminance: data.luminance,
          },
          { sessionId: `${data.jobId}/${attempt}`, signal, onStep: options.onStep },
        );
        if (image.tokens.length !== r.imageTokens)
          throw new Error(`expanded ${r.imageTokens} image slots, generated ${image.tokens.length}`);
        const name = data.output ?? 'image.png';
        await this.artifacts.put(data.jobId, name, image.png);
        this.logger.log('generated', { jobId: data.jobId, attempt, steps: image.steps, peer: image.peer });
        return done(r.forwards, {
          modality: 'image',
          image: { artifact: { name, contentType: 'image/png', bytes: image.png.length }, tokens: image.tokens },
          peer: image.peer,
        });
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
