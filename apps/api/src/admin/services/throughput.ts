import type { Metrics } from 'bullmq';

/** Jobs finished per minute, oldest first, the last entry the current minute. */
export interface Throughput {
  perMinute: number[];
  /** Sums over the last 1, 5, 15 and 60 minutes (the current one included). */
  last1m: number;
  last5m: number;
  last15m: number;
  last60m: number;
}

/**
 * BullMQ's metrics as one count per minute for the last `minutes` minutes, ending at the minute of
 * `now`. BullMQ keeps `meta.count` (all jobs), and at `meta.prevTS` it closed the minutes before:
 * `data[0]` is the minute before prevTS's, `data[1]` the one before that, and so on, while the jobs
 * since prevTS (all in prevTS's minute, or a later job would have closed it) are
 * `count - prevCount`. Minutes after prevTS's had no job.
 */
export function perMinute(metrics: Pick<Metrics, 'meta' | 'data'>, now: number, minutes: number): Throughput {
  const counts = new Array<number>(minutes).fill(0);
  const { prevTS, count, prevCount } = metrics.meta;
  if (prevTS > 0) {
    const current = Math.floor(now / 60_000);
    const last = Math.floor(prevTS / 60_000);
    // Index i of counts is the minute current - (minutes - 1 - i).
    const at = (minute: number) => minutes - 1 - (current - minute);
    const pending = at(last);
    if (pending >= 0 && pending < minutes) counts[pending] = Math.max(0, count - prevCount);
    for (let k = 0; k < metrics.data.length; k++) {
      const i = at(last - 1 - k);
      if (i < 0) break;
      if (i < minutes) counts[i] = metrics.data[k];
    }
  }
  const sum = (n: number) => counts.slice(-n).reduce((a, b) => a + b, 0);
  return { perMinute: counts, last1m: sum(1), last5m: sum(5), last15m: sum(15), last60m: sum(60) };
}
