import type { Config } from './index.js';

/** BullMQ Worker options for lock and stalled-job recovery, from the configuration. */
export function workerLockOptions(config: Pick<Config, 'LOCK_DURATION_MS' | 'STALLED_INTERVAL_MS'>): {
  lockDuration: number;
  stalledInterval: number;
} {
  return { lockDuration: config.LOCK_DURATION_MS, stalledInterval: config.STALLED_INTERVAL_MS };
}

/** Per-minute counts of completed and failed jobs kept by BullMQ (Queue.getMetrics): a day of them, for the admin dashboard. */
export const METRICS_MINUTES = 24 * 60;

/** BullMQ Worker options that record the queue's metrics (completed and failed jobs per minute). */
export function workerMetricsOptions(): { metrics: { maxDataPoints: number } } {
  return { metrics: { maxDataPoints: METRICS_MINUTES } };
}
