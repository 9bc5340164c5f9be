import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { perMinute } from './throughput.js';

const minute = 60_000;
const t0 = Date.UTC(2026, 0, 1, 12, 0, 0);

describe('perMinute (BullMQ metrics as counts per minute)', () => {
  it('no metrics yet: all zero', () => {
    const t = perMinute({ meta: { count: 0, prevTS: 0, prevCount: 0 }, data: [] }, t0, 5);
    assert.deepEqual(t.perMinute, [0, 0, 0, 0, 0]);
    assert.equal(t.last60m, 0);
  });

  it('jobs of the current minute are the pending count; closed minutes come from data, newest first', () => {
    // 3 jobs at 11:57, none at 11:58, 2 at 11:59 (closed at 12:00 by the first job of 12:00), 4 jobs at 12:00 so far.
    const metrics = { meta: { count: 9, prevTS: t0 + 5000, prevCount: 5 }, data: [2, 0, 3] };
    const t = perMinute(metrics, t0 + 30_000, 5);
    assert.deepEqual(t.perMinute, [0, 3, 0, 2, 4]);
    assert.equal(t.last1m, 4);
    assert.equal(t.last5m, 9);
  });

  it('minutes after the last job are zero, and the window drops what is older', () => {
    const metrics = { meta: { count: 9, prevTS: t0 + 5000, prevCount: 5 }, data: [2, 0, 3] };
    const t = perMinute(metrics, t0 + 3 * minute + 1, 4);
    // 12:00 (4) is the oldest minute of the window 12:00..12:03.
    assert.deepEqual(t.perMinute, [4, 0, 0, 0]);
    assert.equal(t.last5m, 4);
  });
});
