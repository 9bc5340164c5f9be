import type { Config } from './index.js';
import { redisClient, type RedisClient } from './redis.js';

type CancelConfig = Pick<Config, 'REDIS_URL' | 'REDIS_CLUSTER' | 'QUEUE_PREFIX' | 'RESULT_TTL_SECONDS'>;

/** Redis key marking a pipeline job as canceled by request. */
export function canceledKey(config: Pick<Config, 'QUEUE_PREFIX'>, jobId: string): string {
  return `${config.QUEUE_PREFIX}:canceled:${jobId}`;
}

/** Pub/sub channel on which cancellations reach the workers running a pipeline's stages. */
export function cancelChannel(config: Pick<Config, 'QUEUE_PREFIX'>): string {
  return `${config.QUEUE_PREFIX}:cancel`;
}

/** A cancellation as published: the pipeline and its stage job ids. */
export interface CancelMessage {
  jobId: string;
  stageJobIds: string[];
}

/** Marks a pipeline canceled and tells every worker to abort its stages. */
export async function requestCancel(redis: RedisClient, config: CancelConfig, message: CancelMessage): Promise<void> {
  await redis.set(canceledKey(config, message.jobId), new Date().toISOString(), 'EX', config.RESULT_TTL_SECONDS);
  await redis.publish(cancelChannel(config), JSON.stringify(message));
}

/** Whether a pipeline was canceled by request. */
export async function isCanceled(redis: RedisClient, config: Pick<Config, 'QUEUE_PREFIX'>, jobId: string): Promise<boolean> {
  return (await redis.exists(canceledKey(config, jobId))) === 1;
}

/**
 * A worker's subscription to cancellations: `onCancel` gets every stage job id to abort (the
 * BullMQ worker's `cancelJob` aborts the AbortSignal of the one it is running).
 */
export class CancelSubscriber {
  private readonly subscriber: RedisClient;

  constructor(
    config: CancelConfig,
    private readonly onCancel: (stageJobId: string, pipelineId: string) => void,
  ) {
    this.subscriber = redisClient(config, { maxRetriesPerRequest: null });
    this.subscriber.on('message', (_channel: string, raw: string) => {
      try {
        const message = JSON.parse(raw) as CancelMessage;
        for (const id of message.stageJobIds) this.onCancel(id, message.jobId);
      } catch {
        // not ours
      }
    });
    void this.subscriber.subscribe(cancelChannel(config));
  }

  async close(): Promise<void> {
    await this.subscriber.quit().catch(() => undefined);
  }
}
