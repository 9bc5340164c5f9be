import { Inject, Injectable, type OnModuleDestroy } from '@nestjs/common';
import { Queue, type Job } from 'bullmq';
import { Redis } from 'ioredis';
import { artifactKey, CONFIG, type Config } from '@lavida/config';
import {
  JobName,
  QueueName,
  type GenerateJobData,
  type GenerateResult,
  type PipelineJobData,
  type PipelineResult,
} from '@lavida/contracts';

/** The API's view of Redis: pipeline jobs, their stage jobs, and artefacts. */
@Injectable()
export class JobQueueRepository implements OnModuleDestroy {
  private readonly redis: Redis;
  private readonly pipeline: Queue<PipelineJobData, PipelineResult>;
  private readonly generation: Queue<GenerateJobData, GenerateResult>;

  constructor(@Inject(CONFIG) private readonly config: Config) {
    this.redis = new Redis(config.REDIS_URL, { maxRetriesPerRequest: null });
    const options = { connection: this.redis, prefix: config.QUEUE_PREFIX };
    this.pipeline = new Queue(QueueName.Pipeline, options);
    this.generation = new Queue(QueueName.Generation, options);
  }

  async addPipeline(data: PipelineJobData): Promise<Job<PipelineJobData, PipelineResult>> {
    return this.pipeline.add(JobName.Pipeline, data, {
      jobId: data.id,
      removeOnComplete: { age: this.config.RESULT_TTL_SECONDS },
      removeOnFail: { age: this.config.RESULT_TTL_SECONDS },
    });
  }

  getPipeline(id: string): Promise<Job<PipelineJobData, PipelineResult> | undefined> {
    return this.pipeline.getJob(id);
  }

  getStage(jobId: string, stage: string): Promise<Job<GenerateJobData, GenerateResult> | undefined> {
    return this.generation.getJob(`${jobId}-${stage}`);
  }

  async stageLogs(job: Job): Promise<string[]> {
    return (await this.generation.getJobLogs(job.id!)).logs;
  }

  getArtifact(jobId: string, name: string): Promise<Buffer | null> {
    return this.redis.getBuffer(artifactKey(this.config, jobId, name));
  }

  async ping(): Promise<boolean> {
    return (await this.redis.ping()) === 'PONG';
  }

  async onModuleDestroy(): Promise<void> {
    await this.pipeline.close();
    await this.generation.close();
    await this.redis.quit().catch(() => undefined);
  }
}
