import { Inject, Injectable } from '@nestjs/common';
import type { Job } from 'bullmq';
import { CONFIG, JsonLogger, type Config } from '@lavida/config';
import type { GenerateJobData, GenerateResult } from '@lavida/contracts';
import { ModelPackage, textToImage } from '@lavida/model';
import { ArtifactRepository } from '../repositories/artifact.repository.js';
import { PeerRepository } from '../repositories/peer.repository.js';

/** Runs one text-to-image stage: diffusion with the understanding peer, then the PNG. */
@Injectable()
export class GenerationService {
  private readonly logger = new JsonLogger('gen-worker', GenerationService.name);

  constructor(
    @Inject(CONFIG) private readonly config: Config,
    private readonly pkg: ModelPackage,
    private readonly peer: PeerRepository,
    private readonly artifacts: ArtifactRepository,
  ) {}

  async generate(job: Job<GenerateJobData>, signal?: AbortSignal): Promise<GenerateResult> {
    const { data } = job;
    const attempt = job.attemptsMade + 1;
    const log = this.logger.child({ jobId: data.jobId, attempt });
    const started = performance.now();
    let lastProgress = 0;
    const result = await textToImage(this.pkg, this.peer, data, {
      sessionId: `${data.jobId}/${attempt}`,
      signal,
      onStep: async (step, steps) => {
        // Progress is a Redis write: at most every 100 ms, and always the last step.
        const now = performance.now();
        if (step === steps || now - lastProgress >= 100) {
          lastProgress = now;
          await job.updateProgress({ stage: 'generate', step, steps });
        }
      },
    });
    await this.artifacts.put(data.jobId, 'image.png', result.png);
    const totalMs = performance.now() - started;
    log.log('generated', { steps: result.steps, ms: Math.round(totalMs), peer: result.peer });
    return {
      tokens: result.tokens,
      artifact: { name: 'image.png', contentType: 'image/png', bytes: result.png.length },
      model: { name: this.pkg.manifest.name, version: this.pkg.manifest.version },
      timings: { totalMs, steps: result.steps },
      peer: result.peer,
    };
  }
}
