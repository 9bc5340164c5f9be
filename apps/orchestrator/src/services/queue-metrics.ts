import { Inject, Injectable, type OnApplicationShutdown } from '@nestjs/common';
import { Queue } from 'bullmq';
import { CONFIG, type Config, redisClient, type RedisClient } from '@lavida/config';
import { QueueName } from '@lavida/contracts';
import { JOB_STATES, registerQueueMetrics } from '@lavida/telemetry';

/**
 * `lavida_jobs{queue,state}` and `lavida_queue_depth{queue}` for every queue, read from Redis when
 * Prometheus scrapes the orchestrator (the process that always runs, whatever the workers scale to).
 */
@Injectable()
export class QueueMetrics implements OnApplicationShutdown {
  private readonly connection: RedisClient;
  private readonly queues: Map<string, Queue>;

  constructor(@Inject(CONFIG) config: Config) {
    this.connection = redisClient(config, { maxRetriesPerRequest: null });
    const names = [QueueName.Pipeline, QueueName.Generation, QueueName.Understanding, QueueName.Webhooks];
    this.queues = new Map(names.map((name) => [name, new Queue(name, { connection: this.connection, prefix: config.QUEUE_PREFIX })]));
    registerQueueMetrics(names, (name) => this.queues.get(name)!.getJobCounts(...JOB_STATES));
  }

  async onApplicationShutdown(): Promise<void> {
    await Promise.all([...this.queues.values()].map((queue) => queue.close()));
    await this.connection.quit().catch(() => undefined);
  }
}
