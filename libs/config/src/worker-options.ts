import type { Config } from './index.js';

/** BullMQ Worker options for lock and stalled-job recovery, from the configuration. */
export function workerLockOptions(config: Pick<Config, 'LOCK_DURATION_MS' | 'STALLED_INTERVAL_MS'>): {
  lockDuration: number;
  stalledInterval: number;
} {
  return { lockDuration: config.LOCK_DURATION_MS, stalledInterval: config.STALLED_INTERVAL_MS };
}
