import { Inject, Injectable, type OnApplicationBootstrap, type BeforeApplicationShutdown } from '@nestjs/common';
import type { Job } from 'bullmq';
import { CONFIG, JsonLogger, StageProcessor, WorkerRegistry, type Config } from '@lavida/config';
import { InvalidInputError, JobName, QueueName, type EditJobData, type GenerateJobData, type GenerateResult } from '@lavida/contracts';
import { GenerationService } from './generation.service.js';

/** Consumes the generation queue. Retryable failures are thrown for BullMQ to retry; others are unrecoverable. */
@Injectable()
export class GenerationProcessor
  extends StageProcessor<GenerateJobData | EditJobData, GenerateResult>
  implements OnApplicationBootstrap, BeforeApplicationShutdown
{
  constructor(
    @Inject(CONFIG) config: Config,
    private readonly generation: GenerationService,
    registry: WorkerRegistry,
  ) {
    super(config, new JsonLogger('gen-worker', GenerationProcessor.name), QueueName.Generation, config.GEN_CONCURRENCY, registry);
  }

  protected async dispatch(job: Job<GenerateJobData | EditJobData, GenerateResult>, signal?: AbortSignal): Promise<GenerateResult> {
    switch (job.name as JobName) {
      case JobName.Generate:
        return await this.generation.generate(job as Job<GenerateJobData>, signal);
      case JobName.Edit:
        return await this.generation.edit(job as Job<EditJobData>, signal);
      default:
        throw new InvalidInputError(`unknown job ${job.name} on ${QueueName.Generation}`);
    }
  }
}
