import { Inject, Injectable, type OnApplicationBootstrap, type OnApplicationShutdown } from '@nestjs/common';
import { UnrecoverableError, WaitingChildrenError, Worker, type Job } from 'bullmq';
import { Redis } from 'ioredis';
import { CONFIG, JsonLogger, type Config } from '@lavida/config';
import { JobName, QueueName, type GenerateResult, type PipelineJobData, type PipelineResult } from '@lavida/contracts';
import { StageQueueRepository } from '../repositories/stage-queue.repository.js';

/**
 * Sequences a pipeline's stages as BullMQ children: queue a stage, wait for it
 * (WaitingChildrenError), resume with its result. Every child edge fails the parent on failure,
 * so no pipeline waits forever.
 */
@Injectable()
export class PipelineProcessor implements OnApplicationBootstrap, OnApplicationShutdown {
  private readonly logger = new JsonLogger('orchestrator', PipelineProcessor.name);
  private worker?: Worker<PipelineJobData, PipelineResult>;

  constructor(
    @Inject(CONFIG) private readonly config: Config,
    private readonly stages: StageQueueRepository,
  ) {}

  onApplicationBootstrap(): void {
    this.worker = new Worker<PipelineJobData, PipelineResult>(QueueName.Pipeline, (job, token) => this.process(job, token), {
      connection: new Redis(this.config.REDIS_URL, { maxRetriesPerRequest: null }),
      prefix: this.config.QUEUE_PREFIX,
      concurrency: 64,
    });
    this.worker.on('error', (error) => this.logger.error('worker error', error));
    this.worker.on('failed', (job, error) => this.logger.warn('pipeline failed', { jobId: job?.id, error: error.message }));
    this.logger.log('consuming', { queue: QueueName.Pipeline });
  }

  async onApplicationShutdown(): Promise<void> {
    await this.worker?.close();
  }

  private async process(job: Job<PipelineJobData, PipelineResult>, token?: string): Promise<PipelineResult> {
    if (job.name !== (JobName.Pipeline as string)) throw new UnrecoverableError(`unknown job ${job.name} on ${QueueName.Pipeline}`);
    const log = this.logger.child({ jobId: job.id });
    switch (job.data.stage) {
      case undefined: {
        await this.stages.addGenerate(job);
        await job.updateData({ ...job.data, stage: 'generate' });
        log.log('stage queued', { stage: 'generate' });
        if (await job.moveToWaitingChildren(token!)) throw new WaitingChildrenError();
        return this.finish(job);
      }
      case 'generate':
        return this.finish(job);
      case 'done':
        throw new UnrecoverableError('pipeline already finished');
    }
  }

  private async finish(job: Job<PipelineJobData, PipelineResult>): Promise<PipelineResult> {
    const values = Object.values(await job.getChildrenValues<GenerateResult>());
    if (values.length !== 1) throw new UnrecoverableError(`expected one generate result, found ${values.length}`);
    await job.updateData({ ...job.data, stage: 'done' });
    this.logger.log('pipeline succeeded', { jobId: job.id });
    return { generate: values[0] };
  }
}
