import { setTimeout as sleep } from 'node:timers/promises';
import type { QueueEvents } from 'bullmq';

/**
 * Spaces a QueueEvents' reads of its stream by at least `ms` (the events in between arrive together,
 * at the next read; a read that waited for its first event is not delayed). Set before `run()`.
 */
export function batchReads(events: QueueEvents, ms: number, closing: AbortSignal): void {
  const backend = events.backend;
  const read = backend.readEvents.bind(backend);
  let last = 0;
  backend.readEvents = async (id, blockTimeout) => {
    const wait = last + ms - Date.now();
    if (wait > 0) {
      try {
        await sleep(wait, undefined, { signal: closing });
      } catch {
        // Closing: no read (QueueEvents' loop stops).
        return null;
      }
    }
    const data = await read(id, blockTimeout);
    last = data ? Date.now() : 0;
    return data;
  };
}
