import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import type { QueueEvents } from 'bullmq';
import { batchReads } from './batch-reads.js';

type Read = (id: string, blockTimeout: number) => Promise<[string, [string, string[]][]][] | null | undefined>;

/** A QueueEvents stand-in: only its backend's readEvents, which answers `replies` in turn. */
function fakeEvents(replies: ([string, [string, string[]][]][] | null)[]): { events: QueueEvents; reads: number[] } {
  const reads: number[] = [];
  const backend: { readEvents: Read } = {
    readEvents: () => {
      reads.push(Date.now());
      return Promise.resolve(replies.shift() ?? null);
    },
  };
  return { events: { backend } as unknown as QueueEvents, reads };
}

const entry = (id: string): [string, [string, string[]][]][] => [['events', [[id, ['event', 'failed', 'jobId', 'j']]]]];

describe('batched event reads (QueueEvents of the webhook emitter)', () => {
  it('reads at once, then no sooner than `ms` after a read that returned events', async () => {
    const { events, reads } = fakeEvents([entry('1-0'), entry('2-0'), null, entry('3-0')]);
    batchReads(events, 60, new AbortController().signal);
    const read = (events.backend as unknown as { readEvents: Read }).readEvents;
    assert.deepEqual(await read('$', 1000), entry('1-0'));
    assert.deepEqual(await read('1-0', 1000), entry('2-0'));
    assert.ok(reads[1] - reads[0] >= 55, `second read after ${reads[1] - reads[0]} ms`);
    // A read that timed out empty does not delay the next one.
    assert.equal(await read('2-0', 1000), null);
    const before = Date.now();
    await read('2-0', 1000);
    assert.ok(Date.now() - before < 55, 'no wait after an empty read');
  });

  it('a pause cut short by closing reads nothing', async () => {
    const { events, reads } = fakeEvents([entry('1-0'), entry('2-0')]);
    const closing = new AbortController();
    batchReads(events, 10_000, closing.signal);
    const read = (events.backend as unknown as { readEvents: Read }).readEvents;
    await read('$', 1000);
    const pending = read('1-0', 1000);
    closing.abort();
    assert.equal(await pending, null);
    assert.equal(reads.length, 1);
  });
});
