import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { Rng } from './rng.js';

describe('Rng', () => {
  it('is deterministic per seed and differs between seeds', () => {
    const a = new Rng(42);
    const b = new Rng(42);
    const c = new Rng(43);
    const sa = Array.from({ length: 8 }, () => a.nextU32());
    assert.deepEqual(
      sa,
      Array.from({ length: 8 }, () => b.nextU32()),
    );
    assert.notDeepEqual(
      sa,
      Array.from({ length: 8 }, () => c.nextU32()),
    );
    // Seeds above 2^32 are distinct from their low 32 bits.
    assert.notEqual(new Rng(2 ** 32 + 5).nextU32(), new Rng(5).nextU32());
  });

  it('keeps values in range and covers them roughly uniformly', () => {
    const rng = new Rng(1);
    const counts = new Array<number>(6).fill(0);
    for (let i = 0; i < 60000; i++) {
      const f = rng.nextFloat();
      assert.ok(f >= 0 && f < 1);
      counts[rng.nextInt(6)]++;
      const v = rng.int(8, 64);
      assert.ok(Number.isInteger(v) && v >= 8 && v <= 64);
    }
    for (const c of counts) assert.ok(Math.abs(c - 10000) < 500, `bucket count ${c}`);
  });

  it('shuffles to a permutation and picks members', () => {
    const rng = new Rng(9);
    const items = [1, 2, 3, 4, 5, 6, 7];
    const shuffled = rng.shuffle([...items]);
    assert.deepEqual([...shuffled].sort(), items);
    assert.ok(items.includes(rng.pick(items)));
    assert.throws(() => rng.pick([]));
    assert.throws(() => new Rng(-1));
    assert.throws(() => new Rng(1.5));
  });
});
