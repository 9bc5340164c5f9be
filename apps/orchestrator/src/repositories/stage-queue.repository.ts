import { Inject, Injectable, type OnModuleDestroy } from '@nestjs/common';
import { Queue, type Job } from 'bullmq';
import { Redis } from 'ioredis';
import { CONFIG, type Config } from '@lavida/config';
import { JobName, QueueName, type GenerateJobData, type PipelineJobData } from '@lavida/contracts';

/** Queues stage jobs as children of a pipeline job; the one place stage job ids and options are set. */
@Injectable()
export class StageQueueRepository implements OnModuleDestroy {
  private readonly generation: Queue<GenerateJobData>;

  constructor(@Inject(CONFIG) private readonly config: Config) {
    this.generation = new Queue(QueueName.Generation, {
      connection: new Redis(config.REDIS_URL, { maxRetriesPerRequest: null }),
      prefix: config.QUEUE_PREFIX,
    });
  }

  /** Queues the generate stage of a pipeline; the parent fails if the stage fails for good. */
  async addGenerate(parent: Job<PipelineJobData>): Promise<void> {
    const { id, input } = parent.data;
    await this.generation.add(
      JobName.Generate,
      {
        jobId: id,
        prompt: input.prompt,
        seed: input.seed ?? 0,
        steps: input.steps,
        guidance: input.guidance,
        temperature: input.temperature,
        luminance: input.luminance,
      },
      {
        jobId: stageJobId(id, 'generate'),
        parent: { id: parent.id!, queue: parent.queueQualifiedName },
        failParentOnFailure: true,
        attempts: this.config.JOB_ATTEMPTS,
        backoff: { type: 'exponential', delay: this.config.JOB_BACKOFF_MS },
        removeOnComplete: { age: this.config.RESULT_TTL_SECONDS },
        removeOnFail: { age: this.config.RESULT_TTL_SECONDS },
      },
    );
  }

  async onModuleDestroy(): Promise<void> {
    await this.generation.close();
  }
}

/** Stage job ids are derived from the pipeline id, so a stage is queued once even if the orchestrator restarts. */
export function stageJobId(jobId: string, stage: string): string {
  return `${jobId}-${stage}`;
}
