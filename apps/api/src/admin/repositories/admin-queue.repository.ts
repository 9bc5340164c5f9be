import { Inject, Injectable, type OnModuleDestroy } from '@nestjs/common';
import { Queue, type Job, type JobType, type Metrics } from 'bullmq';
import { CONFIG, listWorkers, type Config, type WorkerHeartbeat, redisClient, type RedisClient } from '@lavida/config';
import { QueueName, webhookKeys, type PipelineJobData, type StageRef, type WebhookLogEntry } from '@lavida/contracts';

/** Every queue the dashboard shows, in pipeline order. */
export const ADMIN_QUEUES: readonly QueueName[] = [QueueName.Pipeline, QueueName.Generation, QueueName.Understanding, QueueName.Webhooks];

/** The job states a queue is counted in. */
export const JOB_STATES: readonly JobType[] = ['waiting', 'prioritized', 'active', 'waiting-children', 'delayed', 'completed', 'failed'];

/**
 * The admin dashboard's view of Redis: every BullMQ queue (counts, metrics, pause and resume, retry
 * and removal), the worker registry's heartbeats, the webhook delivery log and login throttling.
 */
@Injectable()
export class AdminQueueRepository implements OnModuleDestroy {
  private readonly redis: RedisClient;
  private readonly queues: Map<string, Queue>;

  constructor(@Inject(CONFIG) private readonly config: Config) {
    // A few retries, then the request fails (500) instead of hanging while Redis is away.
    this.redis = redisClient(config, { maxRetriesPerRequest: 3 });
    this.queues = new Map(ADMIN_QUEUES.map((name) => [name, new Queue(name, { connection: this.redis, prefix: config.QUEUE_PREFIX })]));
  }

  /** The queue of this name, or undefined when it is not one of ours. */
  queue(name: string): Queue | undefined {
    return this.queues.get(name);
  }

  /** Every queue (for Bull Board). */
  all(): Queue[] {
    return [...this.queues.values()];
  }

  counts(queue: Queue): Promise<Record<string, number>> {
    return queue.getJobCounts(...JOB_STATES);
  }

  metrics(queue: Queue, type: 'completed' | 'failed', minutes: number): Promise<Metrics> {
    return queue.getMetrics(type, 0, minutes - 1);
  }

  /** BullMQ workers connected to the queue (by their Redis client names). */
  workerCount(queue: Queue): Promise<number> {
    return queue.getWorkersCount();
  }

  /** Jobs of one state, newest first. */
  jobs(queue: Queue, state: JobType, start: number, end: number): Promise<Job[]> {
    return queue.getJobs([state], start, end, false);
  }

  async pipeline(id: string): Promise<Job<PipelineJobData> | undefined> {
    return this.queues.get(QueueName.Pipeline)!.getJob(id);
  }

  async stage(ref: StageRef): Promise<Job | undefined> {
    return this.queues.get(ref.queue)?.getJob(ref.jobId);
  }

  workers(): Promise<WorkerHeartbeat[]> {
    return listWorkers(this.redis, this.config.QUEUE_PREFIX);
  }

  /** The newest `count` delivery attempts of every webhook. */
  async webhookLog(count: number): Promise<WebhookLogEntry[]> {
    const raw = await this.redis.lrange(webhookKeys.log(this.config.QUEUE_PREFIX), 0, count - 1);
    return raw.map((entry) => JSON.parse(entry) as WebhookLogEntry);
  }

  /** Failed logins from one address in the current minute (`add` counts one more). */
  async loginFailures(address: string, add: boolean): Promise<number> {
    const key = `${this.config.QUEUE_PREFIX}:admin-login-failures:${address}`;
    if (!add) return Number((await this.redis.get(key)) ?? 0);
    const count = await this.redis.incr(key);
    if (count === 1) await this.redis.pexpire(key, 60_000);
    return count;
  }

  async onModuleDestroy(): Promise<void> {
    await Promise.all(this.all().map((queue) => queue.close()));
    await this.redis.quit().catch(() => undefined);
  }
}
